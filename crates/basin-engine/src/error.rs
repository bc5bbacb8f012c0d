//! Errors of the engine. Each says which table and what to do; kinds separate the user's
//! mistakes (bad SQL, an incompatible schema) from unavailable storage and our own bugs.

use basin_core::failure::FailureCategory;
use basin_core::{AssetKey, ErrorKind};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the lake at {root}")]
    OpenLake {
        root: String,
        #[source]
        source: object_store::Error,
    },

    #[error("cannot list the lake at {root}")]
    ListLake {
        root: String,
        #[source]
        source: object_store::Error,
    },

    #[error("Delta operation `{operation}` on {table} failed")]
    Delta {
        table: AssetKey,
        operation: &'static str,
        #[source]
        source: Box<deltalake::DeltaTableError>,
    },

    /// Another writer (a run of the daemon, a manual `basin ingest`) committed to the table
    /// between this operation's read and its commit. Delta's optimistic concurrency refused
    /// this commit, so none of it is visible.
    #[error(
        "another run committed to {table} while this run's `{operation}` was writing it{version}; nothing of \
         this run landed in {table}, and a retry starts from the new version",
        version = version.map(|v| format!(" (version {v})")).unwrap_or_default()
    )]
    Conflict { table: AssetKey, operation: &'static str, version: Option<u64> },

    #[error("{context}")]
    Query {
        context: String,
        #[source]
        source: Box<datafusion::error::DataFusionError>,
    },

    #[error("table {table} does not exist in the lake")]
    TableNotFound { table: AssetKey },

    #[error(
        "column `{column}` of {table} changed type from {existing} to {new}, which an incremental \
         model cannot apply in place; rebuild it with `basin run {table} --full-refresh`"
    )]
    IncompatibleSchema { table: AssetKey, column: String, existing: String, new: String },

    #[error("column `{column}` named in `{setting}` of {table} is not in the model's result")]
    MissingColumn { table: AssetKey, setting: &'static str, column: String },

    #[error("daily-partitioned model {table}: {problem}")]
    Partition { table: AssetKey, problem: String },
    #[error("scd2 model {table}: {problem}")]
    Scd2 { table: AssetKey, problem: String },

    #[error("invalid time-travel target `{0}`: use a version number or an RFC 3339 timestamp")]
    InvalidAsOf(String),

    #[error(
        "the rows built for {table} do not have one row per unique_key [{columns}]: {samples}; nothing was \
         committed. Make the query return each key once (e.g. the latest row per key) and no NULL key"
    )]
    DuplicateKey { table: AssetKey, columns: String, samples: String },

    #[error("{table} has {range}: {asked} is outside them (`basin history {table}` lists them)")]
    OutOfRange { table: AssetKey, asked: String, range: String },

    #[error(
        "bronze is immutable: refusing to write partition {date} of {table}, which already has the \
         later partition {latest}; check the clock of the machine running Basin"
    )]
    BronzeImmutable { table: AssetKey, date: chrono::NaiveDate, latest: chrono::NaiveDate },

    #[error("breaking schema change in the source of {table}: {detail}; nothing was landed")]
    SchemaDrift { table: AssetKey, detail: String },

    #[error("cannot ingest {table}")]
    Source {
        table: AssetKey,
        #[source]
        source: Box<basin_connectors::Error>,
    },

    #[error("cannot list the tables of source `{name}`")]
    SourceCatalog {
        name: String,
        #[source]
        source: Box<basin_connectors::Error>,
    },

    #[error(
        "tables {} of source `{origin}` would all land as {key}; nothing was ingested. Give all but one its \
         own bronze name in sources/{origin}.toml: [[tables]] name = \"{}\" as = \"{}_2\"",
        tables.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", "),
        tables.last().map(String::as_str).unwrap_or_default(),
        key.name.strip_prefix(&format!("{origin}__")).unwrap_or(&key.name)
    )]
    NameCollision { origin: String, key: AssetKey, tables: Vec<String> },

    #[error("no source `{name}` (sources: {known})")]
    UnknownSource { name: String, known: String },

    #[error("incremental table {table} has no primary key; set `primary_key` in its source file")]
    NoPrimaryKey { table: AssetKey },

    #[error(
        "incremental table {table} has no cursor; set `cursor` for it in `[[tables]]`, or `cursor` in the \
         source's `[defaults]`"
    )]
    NoCursor { table: AssetKey },

    #[error(
        "refusing to replace {table}: it holds {before} rows and the new build has {after} (at least {min_rows} \
         must stay, max_shrink {max_shrink}); nothing was committed. If the data really shrank, run again with \
         --allow-shrink"
    )]
    Shrink { table: AssetKey, before: u64, after: u64, min_rows: u64, max_shrink: f64 },

    #[error(
        "the source returned no rows for {table}, whose last snapshot had {previous}: nothing was landed. If the \
         table really is empty now, run again with --allow-shrink"
    )]
    EmptySnapshot { table: AssetKey, previous: u64 },
}

impl Error {
    /// Whether trying again may succeed (a source connection dropped or killed mid-read).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Source { source, .. } if source.is_transient())
    }

    /// The category a run's retry policy decides on.
    pub fn failure_category(&self) -> FailureCategory {
        use datafusion::error::DataFusionError as Df;
        match self {
            Error::Source { source, .. } | Error::SourceCatalog { source, .. } if source.is_auth() => {
                FailureCategory::Auth
            }
            Error::Source { source, .. } | Error::SourceCatalog { source, .. }
                if matches!(source.as_ref(), basin_connectors::Error::Connect { .. }) =>
            {
                FailureCategory::SourceUnavailable
            }
            Error::SourceCatalog { source, .. } if source.is_transient() => FailureCategory::Transient,
            _ if self.is_transient() => FailureCategory::Transient,
            Error::Query { source, .. } if matches!(source.find_root(), Df::ResourcesExhausted(_)) => {
                FailureCategory::OutOfMemory
            }
            // deltalake hands a DataFusion error of its write plan back as text.
            Error::Delta { source, .. } if matches!(source.as_ref(), deltalake::DeltaTableError::Generic(m) if m.starts_with("Resources exhausted")) => {
                FailureCategory::OutOfMemory
            }
            Error::OpenLake { .. } | Error::ListLake { .. } => FailureCategory::Transient,
            // Another writer committed to the same table first: the next attempt starts from
            // its version.
            Error::Conflict { .. } => FailureCategory::Transient,
            Error::Delta { .. } if self.kind() == ErrorKind::Unavailable => FailureCategory::Transient,
            Error::Query { .. } if self.kind() == ErrorKind::Unavailable => FailureCategory::Transient,
            Error::Query { .. }
            | Error::TableNotFound { .. }
            | Error::IncompatibleSchema { .. }
            | Error::MissingColumn { .. }
            | Error::Scd2 { .. }
            | Error::Partition { .. }
            | Error::UnknownSource { .. }
            | Error::NameCollision { .. }
            | Error::InvalidAsOf(_)
            | Error::OutOfRange { .. } => FailureCategory::BadQuery,
            Error::Source { source, .. } if matches!(source.as_ref(), basin_connectors::Error::NoSuchTable { .. }) => {
                FailureCategory::BadQuery
            }
            Error::Shrink { .. } | Error::EmptySnapshot { .. } => FailureCategory::Guardrail,
            Error::DuplicateKey { .. } => FailureCategory::BadData,
            Error::Source { source, .. }
                if matches!(
                    source.as_ref(),
                    basin_connectors::Error::Value { .. }
                        | basin_connectors::Error::File { .. }
                        | basin_connectors::Error::Arrow { .. }
                ) =>
            {
                FailureCategory::BadData
            }
            _ => FailureCategory::Other,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        use datafusion::error::DataFusionError as Df;
        match self {
            Error::OpenLake { .. } | Error::ListLake { .. } => ErrorKind::Unavailable,
            Error::Delta { source, .. } => match source.as_ref() {
                deltalake::DeltaTableError::NotATable(_) | deltalake::DeltaTableError::InvalidVersion(_) => {
                    ErrorKind::NotFound
                }
                deltalake::DeltaTableError::VersionAlreadyExists(_) => ErrorKind::Conflict,
                deltalake::DeltaTableError::ObjectStore { .. } => ErrorKind::Unavailable,
                _ => ErrorKind::Invalid,
            },
            Error::Query { source, .. } => match source.as_ref() {
                Df::Internal(_) => ErrorKind::Internal,
                Df::ObjectStore(_) | Df::IoError(_) => ErrorKind::Unavailable,
                _ => ErrorKind::Invalid,
            },
            Error::TableNotFound { .. } => ErrorKind::NotFound,
            Error::IncompatibleSchema { .. }
            | Error::MissingColumn { .. }
            | Error::Scd2 { .. }
            | Error::Partition { .. }
            | Error::InvalidAsOf(_)
            | Error::OutOfRange { .. }
            | Error::DuplicateKey { .. }
            | Error::SchemaDrift { .. } => ErrorKind::Invalid,
            Error::BronzeImmutable { .. }
            | Error::Shrink { .. }
            | Error::EmptySnapshot { .. }
            | Error::Conflict { .. } => ErrorKind::Conflict,
            Error::Source { source, .. } | Error::SourceCatalog { source, .. } => match source.as_ref() {
                basin_connectors::Error::Connect { .. } | basin_connectors::Error::Query { .. } => {
                    ErrorKind::Unavailable
                }
                basin_connectors::Error::NoSuchTable { .. } => ErrorKind::NotFound,
                _ => ErrorKind::Invalid,
            },
            Error::NoPrimaryKey { .. } | Error::NoCursor { .. } | Error::NameCollision { .. } => ErrorKind::Invalid,
            Error::UnknownSource { .. } => ErrorKind::NotFound,
        }
    }

    pub(crate) fn delta(table: &AssetKey, operation: &'static str) -> impl FnOnce(deltalake::DeltaTableError) -> Self {
        let table = table.clone();
        move |source| {
            use deltalake::kernel::transaction::TransactionError as Tx;
            let version = match &source {
                deltalake::DeltaTableError::VersionAlreadyExists(v)
                | deltalake::DeltaTableError::Transaction { source: Tx::VersionAlreadyExists(v) } => Some(*v),
                deltalake::DeltaTableError::Transaction {
                    source: Tx::CommitConflict(_) | Tx::MaxCommitAttempts(_),
                } => None,
                _ => return Error::Delta { table, operation, source: Box::new(source) },
            };
            tracing::debug!(%table, operation, "commit refused: {source}");
            Error::Conflict { table, operation, version }
        }
    }

    pub(crate) fn query(context: impl Into<String>) -> impl FnOnce(datafusion::error::DataFusionError) -> Self {
        let context = context.into();
        move |source| Error::Query { context, source: Box::new(source) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::kernel::transaction::TransactionError as Tx;

    /// A commit refused because another run committed first says so, names the table and the
    /// version, and is retried (`transient`); other Delta errors keep their cause.
    #[test]
    fn a_lost_commit_race_says_what_happened_and_is_transient() {
        let table = AssetKey::parse("bronze.shop__orders").unwrap();
        let lost = Error::delta(&table, "append")(deltalake::DeltaTableError::Transaction {
            source: Tx::VersionAlreadyExists(7),
        });
        let text = lost.to_string();
        assert!(text.contains("another run committed to bronze.shop__orders"), "{text}");
        assert!(text.contains("(version 7)") && text.contains("nothing of this run landed"), "{text}");
        assert_eq!(lost.failure_category(), FailureCategory::Transient);
        assert_eq!(lost.kind(), ErrorKind::Conflict);

        let retried_out =
            Error::delta(&table, "merge")(deltalake::DeltaTableError::Transaction { source: Tx::MaxCommitAttempts(0) });
        assert!(!retried_out.to_string().contains("Failed to commit transaction"), "{retried_out}");
        assert_eq!(retried_out.failure_category(), FailureCategory::Transient);

        let other = Error::delta(&table, "open")(deltalake::DeltaTableError::NotATable("x".into()));
        assert!(matches!(other, Error::Delta { .. }));
        assert_eq!(other.kind(), ErrorKind::NotFound);
    }
}
