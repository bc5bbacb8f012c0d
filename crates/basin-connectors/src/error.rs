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

    #[error("source `{source_name}`, table `{table}`, file {file}: {problem}")]
    File { source_name: String, table: String, file: String, problem: String },

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

impl Error {
    /// A problem with a column itself (missing, or a bound that does not fit it), not a row.
    pub fn column(source_name: &str, table: &str, column: &str, problem: impl Into<String>) -> Error {
        Error::Value {
            source_name: source_name.to_string(),
            table: table.to_string(),
            column: column.to_string(),
            row_key: "-".into(),
            problem: problem.into(),
        }
    }

    /// Whether trying again may succeed: a dropped or killed connection, a server restarting,
    /// a deadlock or a pool timeout. Wrong credentials, missing tables and bad values are not.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Connect { source, .. } | Error::Query { source, .. } => transient(source),
            _ => false,
        }
    }

    /// Whether the source refused the credentials (wrong password, unknown user, no access to
    /// the database): trying again will not help.
    pub fn is_auth(&self) -> bool {
        let Error::Connect { source: sqlx::Error::Database(db), .. } = self else { return false };
        if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
            // Access denied for user / to database, plugin auth failures.
            return matches!(my.number(), 1044 | 1045 | 1698);
        }
        // PostgreSQL class 28: invalid authorization specification / password.
        db.code().is_some_and(|c| c.starts_with("28"))
    }
}

fn transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                // Interrupted/killed query or connection, server gone or shutting down, lock
                // wait timeout, deadlock, too many connections.
                return matches!(my.number(), 1317 | 1927 | 2006 | 2013 | 1053 | 1205 | 1213 | 1040);
            }
            let code = db.code().unwrap_or_default();
            // PostgreSQL: connection exceptions, admin/crash shutdown (pg_terminate_backend),
            // serialization failures and deadlocks, too many connections.
            code.starts_with("08") || code.starts_with("57P") || matches!(code.as_ref(), "40001" | "40P01" | "53300")
        }
        _ => false,
    }
}
