//! Errors of the connectors. Each names the source and, where it applies, the table, column
//! and row key; none contains a connection secret.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to source `{source_name}`")]
    Connect {
        source_name: String,
        #[source]
        source: sqlx::Error,
    },

    #[error("source `{source_name}`, table `{table}`: {what} failed")]
    Query {
        source_name: String,
        table: String,
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },

    #[error("source `{source_name}` has no table `{table}`")]
    NoSuchTable { source_name: String, table: String },

    #[error("source `{source_name}`, table `{table}`, column `{column}`, row {row_key}: {problem}")]
    Value { source_name: String, table: String, column: String, row_key: String, problem: String },

    #[error("source `{source_name}`: `{kind}` sources are not supported by this build yet")]
    Unsupported { source_name: String, kind: &'static str },

    #[error("cannot build a batch for source `{source_name}`, table `{table}`")]
    Arrow {
        source_name: String,
        table: String,
        #[source]
        source: arrow::error::ArrowError,
    },
}
