//! Ingesting one source table into bronze: read the source's bounds, stream the rows through
//! the bronze writer, then reconcile what landed against the source's own count.
//! - `full`: `COUNT(*)` before and after the read bracket the snapshot; the landed rows must be
//!   within 1% of it;
//! - both: the rows read must be within 1% of the source's `COUNT(*)` over the same rows.
//! - `incremental`: the window is `[watermark − lag, MAX(cursor)]`, fixed before reading, so
//!   the new watermark is known before the commit that stores it with the rows.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use basin_connectors::{Connector, Window};
use basin_core::source::{Mode, SourceTable};
use chrono::{DateTime, NaiveDateTime, Utc};
use datafusion::error::DataFusionError;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;

use crate::bronze::{BronzeWriter, Watermark, last_watermark};
use crate::error::{Error, Result};
use crate::lake::Lake;

/// Share of the source's count the rows read may differ by.
pub const TOLERANCE: f64 = 0.01;

/// Source against bronze after one table's ingestion.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconciliation {
    /// Rows the source reported (`COUNT(*)`, in the window for incremental reads).
    pub source_rows: u64,
    /// Rows read from the source in this run.
    pub read_rows: u64,
    pub within_tolerance: bool,
}

#[derive(Debug, Clone)]
pub struct Ingested {
    pub table: SourceTable,
    pub version: Option<u64>,
    /// Rows landed in bronze (after leaving out rows already there).
    pub rows: u64,
    pub watermark: Option<Watermark>,
    pub zero_dates: u64,
    pub reconciliation: Reconciliation,
    pub duration: Duration,
}

/// Ingest `table` from `connector` into bronze, as of `now`.
pub async fn ingest_table(
    lake: &Lake,
    connector: Arc<dyn Connector>,
    table: &SourceTable,
    run_id: &str,
    now: DateTime<Utc>,
) -> Result<Ingested> {
    let started = Instant::now();
    let writer = BronzeWriter::new(lake, table.key.clone(), &table.source, run_id, now);
    let source_err = |e: basin_connectors::Error| Error::Source { table: table.key.clone(), source: Box::new(e) };
    let read = Arc::new(AtomicU64::new(0));

    let (commit, source_rows, zero_dates) = match table.mode {
        Mode::Full => {
            let before = connector.count(&table.name, None).await.map_err(source_err)?;
            let extract = connector.extract(&table.name, None).await.map_err(source_err)?;
            let zero = extract.zero_dates.clone();
            let commit = writer.replace_today(counted(extract, read.clone())).await?;
            (commit, before, zero.load(Ordering::Relaxed))
        }
        Mode::Incremental => {
            let cursor = table.cursor.clone().expect("validated: incremental tables have a cursor");
            let primary_key = match table.primary_key.as_slice() {
                [] => connector.primary_key(&table.name).await.map_err(source_err)?,
                pk => pk.to_vec(),
            };
            if primary_key.is_empty() {
                return Err(Error::NoPrimaryKey { table: table.key.clone() });
            }
            let Some(upper) = connector.max_cursor(&table.name, &cursor).await.map_err(source_err)? else {
                // An empty source table: nothing to read, the watermark stays.
                let reconciliation = Reconciliation { source_rows: 0, read_rows: 0, within_tolerance: true };
                return Ok(Ingested {
                    table: table.clone(),
                    version: None,
                    rows: 0,
                    watermark: last_watermark(lake, &table.key).await?,
                    zero_dates: 0,
                    reconciliation,
                    duration: started.elapsed(),
                });
            };
            let from = last_watermark(lake, &table.key).await?.map(|w| minus_lag(&w.value, table.lag));
            let window = Window { cursor: cursor.clone(), from, to: upper.clone() };
            let in_window = connector.count(&table.name, Some(&window)).await.map_err(source_err)?;
            let extract = connector.extract(&table.name, Some(&window)).await.map_err(source_err)?;
            let cursor_type =
                extract.schema.field_with_name(&cursor).map(|f| f.data_type().to_string()).unwrap_or_default();
            let zero = extract.zero_dates.clone();
            let watermark = Watermark { column: cursor, value: upper, data_type: cursor_type };
            let commit = writer.append_increment(counted(extract, read.clone()), &primary_key, watermark).await?;
            (commit, in_window, zero.load(Ordering::Relaxed))
        }
    };
    let read_rows = read.load(Ordering::Relaxed);
    // Rows may change between the count and the read (in an incremental window too: a row
    // updated meanwhile leaves it, and comes back with the next run's lag window).
    let allowed = (source_rows as f64 * TOLERANCE).floor() as u64;
    let reconciliation =
        Reconciliation { source_rows, read_rows, within_tolerance: source_rows.abs_diff(read_rows) <= allowed };
    if !reconciliation.within_tolerance {
        return Err(Error::Reconciliation { table: table.key.clone(), source_rows, read_rows });
    }
    Ok(Ingested {
        table: table.clone(),
        version: commit.version,
        rows: commit.rows,
        watermark: commit.watermark,
        zero_dates,
        reconciliation,
        duration: started.elapsed(),
    })
}

/// The extracted batches as a DataFusion stream, counting rows as they pass.
fn counted(
    extract: basin_connectors::Extract,
    read: Arc<AtomicU64>,
) -> datafusion::execution::SendableRecordBatchStream {
    let stream = extract.batches.map(move |b| {
        b.inspect(|b| {
            read.fetch_add(b.num_rows() as u64, Ordering::Relaxed);
        })
        .map_err(|e| DataFusionError::External(Box::new(e)))
    });
    Box::pin(RecordBatchStreamAdapter::new(extract.schema, stream))
}

/// The watermark minus the lag window, for date-time cursors; other cursors (increasing ids)
/// are re-read from the watermark itself, and overlap is removed by the writer.
fn minus_lag(value: &str, lag: Duration) -> String {
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(value, format) {
            let earlier = t - chrono::Duration::from_std(lag).unwrap_or_default();
            return earlier.format("%Y-%m-%d %H:%M:%S%.f").to_string();
        }
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_applies_to_date_times_only() {
        assert_eq!(minus_lag("2024-02-03 09:00:00", Duration::from_secs(300)), "2024-02-03 08:55:00");
        assert_eq!(minus_lag("2024-02-03 00:01:00.5", Duration::from_secs(120)), "2024-02-02 23:59:00.500");
        assert_eq!(minus_lag("1042", Duration::from_secs(300)), "1042");
    }
}
