//! Rows to Arrow batches, shared by the connectors: one [`ColumnBuilder`] per column, a batch
//! handed over every [`BATCH_ROWS`] rows through a bounded channel, so at most a few batches
//! of a table are in memory whatever its size.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::Stream;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::types::{ColumnBuilder, Value};
use crate::{BATCH_ROWS, Extract};

/// Batches in flight between a reader task and the writer.
const IN_FLIGHT: usize = 2;

pub(crate) struct Batcher {
    pub schema: SchemaRef,
    pub source: String,
    pub table: String,
    columns: Vec<ColumnBuilder>,
    rows: usize,
    zero_dates: Arc<AtomicU64>,
}

impl Batcher {
    pub fn new(schema: SchemaRef, source: &str, table: &str, zero_dates: Arc<AtomicU64>) -> Self {
        let columns = schema.fields().iter().map(|f| ColumnBuilder::new(f.data_type())).collect();
        Batcher { schema, source: source.to_string(), table: table.to_string(), columns, rows: 0, zero_dates }
    }

    /// Append `value` to column `column`; the error text says why it does not fit.
    #[inline]
    pub fn append(&mut self, column: usize, value: Value<'_>) -> Result<(), String> {
        if self.columns[column].append(value)? {
            self.zero_dates.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// A zero date (`0000-00-00`) read from a binary value: NULL, counted for the run's report.
    pub fn zero_date(&mut self, column: usize) {
        let _ = self.columns[column].append(Value::Null);
        self.zero_dates.fetch_add(1, Ordering::Relaxed);
    }

    /// The builder of one column, for values that need more than [`Batcher::append`] (lists).
    pub fn column(&mut self, column: usize) -> &mut ColumnBuilder {
        &mut self.columns[column]
    }

    /// Close the current row; true when a batch is full.
    #[inline]
    pub fn end_row(&mut self) -> bool {
        self.rows += 1;
        self.rows == BATCH_ROWS
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn finish(&mut self) -> Result<RecordBatch> {
        self.rows = 0;
        let arrays = self.columns.iter_mut().map(|c| c.finish()).collect();
        RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| Error::Arrow {
            source_name: self.source.clone(),
            table: self.table.clone(),
            source: e,
        })
    }

    /// The error for a value that does not fit its column, naming the row by its key.
    pub fn value_error(&self, column: usize, row_key: String, problem: String) -> Error {
        Error::Value {
            source_name: self.source.clone(),
            table: self.table.clone(),
            column: self.schema.field(column).name().clone(),
            row_key,
            problem,
        }
    }
}

/// The sending half a reader task fills, and the [`Extract`] that reads it.
pub(crate) fn channel(schema: SchemaRef) -> (mpsc::Sender<Result<RecordBatch>>, Extract, Arc<AtomicU64>) {
    let (tx, rx) = mpsc::channel::<Result<RecordBatch>>(IN_FLIGHT);
    let zero_dates = Arc::new(AtomicU64::new(0));
    let extract = Extract { schema, batches: Box::pin(receiver_stream(rx)), zero_dates: zero_dates.clone() };
    (tx, extract, zero_dates)
}

fn receiver_stream(rx: mpsc::Receiver<Result<RecordBatch>>) -> impl Stream<Item = Result<RecordBatch>> + Send {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) })
}

/// Read `rows` into batches sent over `tx`, `push` appending each row (true when the batch is
/// full). Stops at the first error, sent as the stream's last item, or when the reader is gone.
pub(crate) async fn pump<R>(
    mut rows: impl Stream<Item = Result<R, sqlx::Error>> + Unpin,
    mut batch: Batcher,
    tx: mpsc::Sender<Result<RecordBatch>>,
    mut push: impl FnMut(&mut Batcher, &R) -> Result<bool>,
) {
    use futures::StreamExt;
    while let Some(row) = rows.next().await {
        let result = match row {
            Ok(row) => push(&mut batch, &row),
            Err(e) => Err(Error::Query {
                source_name: batch.source.clone(),
                table: batch.table.clone(),
                what: "reading rows",
                source: e,
            }),
        };
        match result {
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
            Ok(true) if tx.send(batch.finish()).await.is_err() => return,
            Ok(_) => {}
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(batch.finish()).await;
    }
}

/// SQL conditions for a key range over the quoted key column.
pub(crate) fn range_conditions(quoted: &str, range: &crate::KeyRange) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(lo) = range.from {
        out.push(format!("{quoted} >= {lo}"));
    }
    if let Some(hi) = range.to {
        out.push(format!("{quoted} < {hi}"));
    }
    out
}

/// `name=value, …` for the key columns of a row, or a note that the table has no key.
pub(crate) fn row_key(names: &[&str], values: impl Iterator<Item = Option<String>>) -> String {
    if names.is_empty() {
        return "(no primary key)".to_string();
    }
    names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}={}", v.unwrap_or_else(|| "NULL".into())))
        .collect::<Vec<_>>()
        .join(", ")
}
