//! Sources as streams of Arrow `RecordBatch`es: each connector reads a table in batches over a
//! bounded channel, so memory stays flat whatever the table's size, and answers the questions
//! ingestion asks a source (which tables, which key, how many rows, how far the cursor goes).

mod batch;
pub mod error;
pub mod files;
pub mod mysql;
pub mod postgres;
pub mod sqlite;
pub mod types;

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use basin_core::source::{Source, SourceKind};
use futures::Stream;

pub use error::{Error, Result};

/// Rows per Arrow batch read from a source.
pub const BATCH_ROWS: usize = 8192;

/// A table's rows as they are read.
pub struct Extract {
    pub schema: SchemaRef,
    pub batches: Pin<Box<dyn Stream<Item = Result<RecordBatch>> + Send>>,
    /// Zero dates read as NULL so far (MySQL's `0000-00-00`), for the run's report.
    pub zero_dates: Arc<std::sync::atomic::AtomicU64>,
}

/// The rows an incremental read takes: `cursor` from `from` (inclusive; none on the first
/// run) up to `to` (inclusive), both as SQL literal text of the cursor's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub cursor: String,
    pub from: Option<String>,
    pub to: String,
}

/// A range of an integer key, `from` inclusive and `to` exclusive, for reading a large table
/// in parallel chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    pub column: String,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

#[async_trait::async_trait]
pub trait Connector: Send + Sync {
    /// Table names in the source's catalog.
    async fn tables(&self) -> Result<Vec<String>>;
    /// The table's column names, in order; `NoSuchTable` if the catalog does not have it.
    async fn columns(&self, table: &str) -> Result<Vec<String>>;
    /// The Arrow schema the table's rows are read as, from the catalog alone (no row is read);
    /// `None` for sources that only know it by reading (files).
    async fn schema(&self, _table: &str) -> Result<Option<SchemaRef>> {
        Ok(None)
    }
    /// The table's primary key columns from the catalog (empty if it has none).
    async fn primary_key(&self, table: &str) -> Result<Vec<String>>;
    /// Exact row count (`COUNT(*)`, never an estimate), within `window` if given.
    async fn count(&self, table: &str, window: Option<&Window>) -> Result<u64>;
    /// The greatest value of `cursor`, as SQL literal text; `None` for an empty table.
    async fn max_cursor(&self, table: &str, cursor: &str) -> Result<Option<String>>;
    /// Smallest and greatest value of an integer key column (`None` when the table is empty or
    /// the column is not an integer, or the source cannot read key ranges).
    async fn key_bounds(&self, _table: &str, _column: &str) -> Result<Option<(i64, i64)>> {
        Ok(None)
    }
    /// Stream the table's rows, within `window` and `range` if given.
    async fn extract_range(&self, table: &str, window: Option<&Window>, range: Option<&KeyRange>) -> Result<Extract> {
        self.extract_columns(table, None, window, range).await
    }
    /// [`Connector::extract_range`] of only the columns `only`, when given (database sources).
    async fn extract_columns(
        &self,
        table: &str,
        _only: Option<&[String]>,
        _window: Option<&Window>,
        _range: Option<&KeyRange>,
    ) -> Result<Extract> {
        Err(Error::NoSuchTable { source_name: "(a source without columns to select)".into(), table: table.to_string() })
    }
    /// The values of the primary key columns `keys` of every row, nothing else: what a key
    /// snapshot compares with the lake to notice deleted rows.
    async fn extract_keys(&self, table: &str, keys: &[String]) -> Result<Extract> {
        self.extract_columns(table, Some(keys), None, None).await
    }
    /// File sources: the files the table's pattern matches now, in path order (`None` for
    /// sources that are not files).
    async fn list_files(&self, _table: &str) -> Result<Option<Vec<String>>> {
        Ok(None)
    }
    /// File sources: the rows of just these files, and how many there are.
    async fn extract_files(&self, table: &str, _files: &[String]) -> Result<(Extract, u64)> {
        Err(Error::NoSuchTable { source_name: "(not a files source)".into(), table: table.to_string() })
    }
    /// Stream the table's rows, within `window` if given.
    async fn extract(&self, table: &str, window: Option<&Window>) -> Result<Extract> {
        self.extract_range(table, window, None).await
    }
}

/// Keep only the catalog columns `only` names (all when `None`); a name the catalog lacks is
/// an error.
pub(crate) fn keep_only<C>(
    columns: &mut Vec<C>,
    only: Option<&[String]>,
    name: impl Fn(&C) -> &String,
    source: &str,
    table: &str,
) -> Result<()> {
    let Some(only) = only else { return Ok(()) };
    if let Some(missing) = only.iter().find(|k| !columns.iter().any(|c| name(c) == *k)) {
        return Err(Error::column(source, table, missing, "the key column does not exist"));
    }
    columns.retain(|c| only.contains(name(c)));
    Ok(())
}

/// Connect to a source as its config says.
pub async fn connect(source: &Source) -> Result<Arc<dyn Connector>> {
    match source.config.kind {
        SourceKind::Sqlite => Ok(Arc::new(sqlite::SqliteConnector::connect(source).await?)),
        SourceKind::Mysql => Ok(Arc::new(mysql::MysqlConnector::connect(source).await?)),
        SourceKind::Postgres => Ok(Arc::new(postgres::PostgresConnector::connect(source).await?)),
        SourceKind::Files => Ok(Arc::new(files::FilesConnector::connect(source)?)),
    }
}
