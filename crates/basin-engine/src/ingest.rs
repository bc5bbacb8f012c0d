//! Ingesting one source table into bronze: read the source's bounds, stream the rows through
//! the bronze writer, and count what the source holds beside what was read. The `reconcile`
//! check (on every bronze table, 1% unless configured) judges the two numbers after the commit.
//! - `full`: the count is `COUNT(*)` of the table; a count of zero where the last snapshot had
//!   rows is refused before reading (unless allowed);
//! - `incremental`: the window is `[watermark − lag, MAX(cursor)]`, fixed before reading (the
//!   count is over the same window, taken while its rows stream once there is a watermark), so
//!   the new watermark is known before the commit that stores it with the rows.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use basin_connectors::{Connector, Extract, KeyRange, Window};
use basin_core::source::{Deletes, Mode, SourceTable};
use chrono::{DateTime, NaiveDateTime, Utc};
use datafusion::error::DataFusionError;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt, TryStreamExt};

use crate::bronze::{Backfill, BronzeWriter, Overlap, Watermark, ingested_files, last_backfill, last_watermark};
use crate::error::{Error, Result};
use crate::lake::Lake;

/// Source against bronze after one table's ingestion.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconciliation {
    /// Rows the source reported (`COUNT(*)`, in the window for incremental reads).
    pub source_rows: u64,
    /// Rows read from the source in this run.
    pub read_rows: u64,
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
    /// Key-range chunks the table was read in (1 when read in one query).
    pub chunks: usize,
    /// Attempts it took (more than 1 after transient failures).
    pub attempts: u32,
    /// The key snapshot this run took (`deletes = "key_snapshot"`), if it took one.
    pub key_snapshot: Option<KeySnapshot>,
}

/// A read of the source's primary keys, compared with the table's current keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySnapshot {
    /// Keys the source has.
    pub source_keys: u64,
    /// Current keys it no longer has, tombstoned by this run.
    pub deleted: u64,
    /// Keys of the table's current state after the tombstones.
    pub current_keys: u64,
}

/// A table's read as it goes, for progress displays.
#[derive(Debug, Default)]
pub struct Progress {
    pub rows: AtomicU64,
    pub chunks: AtomicU64,
    pub chunks_done: AtomicU64,
}

impl Ingested {
    /// A run that found nothing to read: no commit, the watermark as it was.
    fn nothing_new(table: &SourceTable, watermark: Option<Watermark>, started: Instant) -> Ingested {
        Ingested {
            table: table.clone(),
            version: None,
            rows: 0,
            watermark,
            key_snapshot: None,
            zero_dates: 0,
            reconciliation: Reconciliation { source_rows: 0, read_rows: 0 },
            duration: started.elapsed(),
            chunks: 0,
            attempts: 1,
        }
    }
}

/// How a table is read: chunks in parallel, retries after transient failures.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Chunks of one table read at once (at most the source's connection limit).
    pub parallel: usize,
    /// Further attempts after a transient failure, and the wait before the first (doubling).
    pub retries: u32,
    pub retry_delay: Duration,
    /// Counters this read updates as it goes.
    pub progress: Option<Arc<Progress>>,
    /// `--allow-shrink`: land an empty `full` snapshot even when the previous one had rows,
    /// and a source column whose type narrowed.
    pub allow_shrink: bool,
    /// `--accept-schema-change`: land past a removed column or a type that no longer fits.
    pub accept_schema_change: bool,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            parallel: 1,
            retries: 0,
            retry_delay: Duration::from_secs(1),
            progress: None,
            allow_shrink: false,
            accept_schema_change: false,
        }
    }
}

/// [`ingest_table`], tried again after a transient failure (a dropped or killed connection, a
/// server restarting) up to `options.retries` times with doubling waits. A failed attempt
/// lands nothing, so a retry starts clean.
pub async fn ingest_table_retrying(
    lake: &Lake,
    connector: Arc<dyn Connector>,
    table: &SourceTable,
    run_id: &str,
    now: DateTime<Utc>,
    options: IngestOptions,
) -> Result<Ingested> {
    let mut delay = options.retry_delay;
    let mut attempt = 1;
    loop {
        match ingest_table(lake, connector.clone(), table, run_id, now, options.clone()).await {
            Err(e) if e.is_transient() && attempt <= options.retries => {
                tracing::warn!(table = %table.key, attempt, error = %e, "transient failure; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
                attempt += 1;
            }
            Err(e) => return Err(e),
            Ok(mut ingested) => {
                ingested.attempts = attempt;
                return Ok(ingested);
            }
        }
    }
}

/// Ingest `table` from `connector` into bronze, as of `now`.
pub async fn ingest_table(
    lake: &Lake,
    connector: Arc<dyn Connector>,
    table: &SourceTable,
    run_id: &str,
    now: DateTime<Utc>,
    options: IngestOptions,
) -> Result<Ingested> {
    let started = Instant::now();
    // Every commit of this run's writers says the same about narrowing, drift and deletes.
    let new_writer = || {
        BronzeWriter::new(lake, table.key.clone(), &table.source, run_id, now)
            .allow_narrowing(options.allow_shrink)
            .accept_schema_change(
                options.accept_schema_change || table.accept_schema_change,
                &format!("{}.{}", table.source, table.name),
            )
            .with_deletes(table.deletes.as_ref())
    };
    let writer = new_writer();
    let source_err = |e: basin_connectors::Error| Error::Source { table: table.key.clone(), source: Box::new(e) };
    let progress = options.progress.clone().unwrap_or_default();
    progress.rows.store(0, Ordering::Relaxed);
    progress.chunks.store(1, Ordering::Relaxed);
    progress.chunks_done.store(0, Ordering::Relaxed);
    let failure = Failure::default();
    let mut chunks = 0;
    let mut carried = 0;
    let mut key_snapshot = None;
    let landed = |result: Result<crate::bronze::BronzeCommit>| failure.first(&table.key, result);

    let (commit, source_rows, zero_dates) = match table.mode {
        Mode::Full => {
            let before = connector.count(&table.name, None).await.map_err(source_err)?;
            // A source that suddenly returns nothing is refused before anything is read or
            // landed: its last snapshot stays the table's current state.
            if before == 0 && !options.allow_shrink {
                let previous = last_snapshot_rows(lake, &table.key).await?;
                if previous > 0 {
                    return Err(Error::EmptySnapshot { table: table.key.clone(), previous });
                }
            }
            let primary_key = match table.primary_key.as_slice() {
                [] => connector.primary_key(&table.name).await.map_err(source_err)?,
                pk => pk.to_vec(),
            };
            let ranges =
                plan_ranges(&connector, table, &primary_key, options.parallel, None).await.map_err(source_err)?;
            let (extract, n) =
                open(&connector, table, None, ranges, options.parallel, &progress).await.map_err(source_err)?;
            let zero = extract.zero_dates.clone();
            chunks = n;
            let writer = writer.with_source_rows(before);
            let commit = landed(writer.replace_today(counted(extract, progress.clone(), failure.clone())).await)?;
            (commit, before, zero.load(Ordering::Relaxed))
        }
        Mode::Incremental if let Some(files) = connector.list_files(&table.name).await.map_err(source_err)? => {
            // Files: only those no earlier run landed, recorded with the rows.
            let done = ingested_files(lake, &table.key).await?;
            let new: Vec<String> = files.into_iter().filter(|f| !done.contains(f)).collect();
            if new.is_empty() {
                return Ok(Ingested::nothing_new(table, None, started));
            }
            let (extract, rows) = connector.extract_files(&table.name, &new).await.map_err(source_err)?;
            chunks = new.len();
            let zero = extract.zero_dates.clone();
            let stream = counted(extract, progress.clone(), failure.clone());
            let commit = landed(writer.with_source_rows(rows).append_files(stream, &new).await)?;
            (commit, rows, zero.load(Ordering::Relaxed))
        }
        Mode::Incremental => {
            // Listed tables are validated to have one; a discovered table takes the defaults'.
            let Some(cursor) = table.cursor.clone() else {
                return Err(Error::NoCursor { table: table.key.clone() });
            };
            let primary_key = match table.primary_key.as_slice() {
                [] => connector.primary_key(&table.name).await.map_err(source_err)?,
                pk => pk.to_vec(),
            };
            if primary_key.is_empty() {
                return Err(Error::NoPrimaryKey { table: table.key.clone() });
            }
            let Some(upper) = connector.max_cursor(&table.name, &cursor).await.map_err(source_err)? else {
                // An empty source table: nothing to read, the watermark stays.
                return Ok(Ingested::nothing_new(table, last_watermark(lake, &table.key).await?, started));
            };
            let previous = last_watermark(lake, &table.key).await?;
            // A first load interrupted part-way resumes where it stopped, towards the same target.
            let resume = if previous.is_none() { last_backfill(lake, &table.key).await? } else { None };
            let upper = resume.as_ref().map_or(upper, |b| b.to.clone());
            let from = previous.map(|w| minus_lag(&w.value, table.lag));
            let window = Window { cursor: cursor.clone(), from, to: upper.clone() };
            // Past a watermark the window's count is taken while its rows stream (see
            // `count_alongside`): on a source that has just had a day of updates, whichever of
            // the two scans comes first pays for visiting the changed rows' pages. A first load
            // counts first, as its rounds record the count in each commit.
            let in_window = match window.from {
                Some(_) => None,
                None => Some(connector.count(&table.name, Some(&window)).await.map_err(source_err)?),
            };
            let counted_alongside = Arc::new(OnceLock::new());
            let parallel = options.parallel.max(1);
            let start = resume.as_ref().map(|b| b.done_below);
            // Past a watermark the window is small and read through the cursor's index: one query.
            let ranges = if window.from.is_some() {
                Vec::new()
            } else {
                plan_ranges(&connector, table, &primary_key, parallel, start).await.map_err(source_err)?
            };
            carried = resume.as_ref().map_or(0, |b| b.landed);
            // A first load of more chunks than connections commits each round of chunks with
            // its progress, so an interruption costs one round, not the whole table.
            let rounds: Vec<Vec<KeyRange>> = if window.from.is_none() && ranges.len() > parallel {
                ranges.chunks(parallel).map(<[KeyRange]>::to_vec).collect()
            } else {
                vec![ranges]
            };
            progress.chunks.store(rounds.iter().map(|r| r.len().max(1) as u64).sum(), Ordering::Relaxed);
            let (mut total, mut zeros, mut last) = (0, 0, None);
            let n_rounds = rounds.len();
            for (i, round) in rounds.into_iter().enumerate() {
                let done_below = round.last().and_then(|r| r.to);
                let (mut extract, n) =
                    open(&connector, table, Some(&window), round, parallel, &progress).await.map_err(source_err)?;
                if in_window.is_none() {
                    let count = {
                        let (connector, name, window) = (connector.clone(), table.name.clone(), window.clone());
                        async move { connector.count(&name, Some(&window)).await }.boxed()
                    };
                    extract = count_alongside(extract, count, parallel > 1, counted_alongside.clone());
                }
                let zero = extract.zero_dates.clone();
                chunks += n;
                let cursor_type =
                    extract.schema.field_with_name(&cursor).map(|f| f.data_type().to_string()).unwrap_or_default();
                let watermark = Watermark { column: cursor.clone(), value: upper.clone(), data_type: cursor_type };
                let backfill = match done_below {
                    Some(done_below) if i + 1 < n_rounds => Some(Backfill {
                        column: primary_key[0].clone(),
                        to: upper.clone(),
                        done_below,
                        landed: carried + total,
                    }),
                    _ => None,
                };
                let writer = new_writer()
                    .with_overlap(match &window.from {
                        Some(from) => Overlap::From(from.clone()),
                        None => Overlap::Nothing,
                    })
                    .with_backfill(backfill);
                let writer = match in_window {
                    Some(rows) => writer.with_source_rows(rows),
                    None => writer,
                };
                let stream = counted(extract, progress.clone(), failure.clone());
                let commit = landed(writer.append_increment(stream, &primary_key, watermark).await)?;
                total += commit.rows;
                zeros += zero.load(Ordering::Relaxed);
                last = Some(commit);
            }
            let mut commit = last.expect("at least one round");
            commit.rows = total;
            if let (Some(Deletes::KeySnapshot { every }), Some(watermark)) = (&table.deletes, &commit.watermark)
                && key_snapshot_due(lake, &table.key, *every).await?
            {
                let extract = connector.extract_keys(&table.name, &primary_key).await.map_err(source_err)?;
                let read = Arc::new(Progress::default());
                let keys = counted(extract, read.clone(), failure.clone());
                let (tombstones, deleted, current_keys) =
                    failure.first(&table.key, writer.land_tombstones(keys, &primary_key, watermark).await)?;
                if let Some(t) = tombstones {
                    commit.version = t.version;
                }
                key_snapshot =
                    Some(KeySnapshot { source_keys: read.rows.load(Ordering::Relaxed), deleted, current_keys });
            }
            // The rows end only once their count is in; should a write ever stop reading early,
            // the count is taken now.
            let source_rows = match in_window.or_else(|| counted_alongside.get().copied()) {
                Some(rows) => rows,
                None => connector.count(&table.name, Some(&window)).await.map_err(source_err)?,
            };
            (commit, source_rows, zeros)
        }
    };
    // A resumed first load counts what earlier runs landed of it.
    let read_rows = progress.rows.load(Ordering::Relaxed) + carried;
    // Rows may change between the count and the read (in an incremental window too: a row
    // updated meanwhile leaves it, and comes back with the next run's lag window), hence the
    // reconcile check's tolerance.
    let reconciliation = Reconciliation { source_rows, read_rows };
    Ok(Ingested {
        table: table.clone(),
        version: commit.version,
        rows: commit.rows,
        watermark: commit.watermark,
        zero_dates,
        reconciliation,
        duration: started.elapsed(),
        chunks,
        attempts: 1,
        key_snapshot,
    })
}

/// Whether an incremental run takes its key snapshot now: every run when `every` is 1, else
/// every `every`-th run that landed an increment (counted by the table's increment commits,
/// this run's included).
async fn key_snapshot_due(lake: &Lake, key: &basin_core::AssetKey, every: u32) -> Result<bool> {
    if every <= 1 {
        return Ok(true);
    }
    let Some(table) = lake.table(key).await? else { return Ok(false) };
    let mut increments = 0u64;
    let mut history = table.history(None);
    while let Some(info) = history.next().await {
        let info = info.map_err(Error::delta(key, "history"))?.info;
        if info.contains_key("basin.watermark") && !info.contains_key("basin.tombstones") {
            increments += 1;
        }
    }
    Ok(increments.is_multiple_of(u64::from(every)))
}

/// Rows of the latest full snapshot of a bronze table (its latest commit's), 0 without one.
async fn last_snapshot_rows(lake: &Lake, key: &basin_core::AssetKey) -> Result<u64> {
    let Some(table) = lake.table(key).await? else { return Ok(0) };
    Ok(crate::delta::last_commit_rows(&table).await)
}

/// The first source error of a read, kept for the table's error.
#[derive(Clone, Default)]
struct Failure(Arc<Mutex<Option<basin_connectors::Error>>>);

impl Failure {
    fn keep(&self, e: basin_connectors::Error) {
        self.0.lock().expect("failure slot").get_or_insert(e);
    }

    fn take(&self) -> Option<basin_connectors::Error> {
        self.0.lock().expect("failure slot").take()
    }

    /// `result`, or the source's error that made it fail, when there was one: the source's
    /// own error says why a read failed, not the writer's wrapping of it.
    fn first<T>(&self, table: &basin_core::AssetKey, result: Result<T>) -> Result<T> {
        result.map_err(|e| match self.take() {
            Some(source) => Error::Source { table: table.clone(), source: Box::new(source) },
            None => e,
        })
    }
}

type Batches = futures::stream::BoxStream<'static, basin_connectors::Result<arrow::array::RecordBatch>>;

/// Key ranges to read a table in: none (one query) unless it has a single integer primary key
/// spanning more than `chunk_rows` values and may use more than one connection. `start`
/// resumes a backfill at a key.
async fn plan_ranges(
    connector: &Arc<dyn Connector>,
    table: &SourceTable,
    primary_key: &[String],
    parallel: usize,
    start: Option<i64>,
) -> basin_connectors::Result<Vec<KeyRange>> {
    let [key] = primary_key else { return Ok(Vec::new()) };
    Ok(match connector.key_bounds(&table.name, key).await? {
        Some((lo, hi)) if (hi as i128 - lo as i128) >= table.chunk_rows as i128 && parallel > 1 => {
            let mut ranges = key_ranges(key, start.unwrap_or(lo).max(lo), hi, table.chunk_rows);
            if let (Some(s), Some(first)) = (start, ranges.first_mut()) {
                first.from = Some(s);
            }
            ranges
        }
        _ => Vec::new(),
    })
}

/// A table's rows as one stream: a single query when `ranges` is empty, else the key-range
/// chunks read `parallel` at a time, each chunk's query opened only when a connection is free
/// for it.
async fn open(
    connector: &Arc<dyn Connector>,
    table: &SourceTable,
    window: Option<&Window>,
    ranges: Vec<KeyRange>,
    parallel: usize,
    progress: &Arc<Progress>,
) -> basin_connectors::Result<(Extract, usize)> {
    let parallel = parallel.max(1);
    if ranges.is_empty() {
        return Ok((connector.extract(&table.name, window).await?, 1));
    }
    // The first chunk opens now, so the schema is known and a bad query fails here.
    let first = connector.extract_range(&table.name, window, Some(&ranges[0])).await?;
    let (schema, zero) = (first.schema.clone(), first.zero_dates.clone());
    let n = ranges.len();
    progress.chunks.fetch_max(n as u64, Ordering::Relaxed);
    // Each chunk's stream ends by counting itself done.
    let done = {
        let progress = progress.clone();
        move |batches: Batches| -> Batches {
            let progress = progress.clone();
            let end = futures::stream::once(async move {
                progress.chunks_done.fetch_add(1, Ordering::Relaxed);
            })
            .filter_map(|()| futures::future::ready(None));
            batches.chain(end).boxed()
        }
    };
    let first = done(first.batches.boxed());
    let rest = ranges.into_iter().skip(1).map({
        let (connector, name, window, zero) = (connector.clone(), table.name.clone(), window.cloned(), zero.clone());
        let done = done.clone();
        move |range| {
            let (connector, name, window, zero) = (connector.clone(), name.clone(), window.clone(), zero.clone());
            let opened = async move {
                let e = connector.extract_range(&name, window.as_ref(), Some(&range)).await?;
                let z = e.zero_dates.clone();
                // Zero dates of every chunk add up in the first chunk's counter.
                Ok::<_, basin_connectors::Error>(e.batches.inspect(move |_| {
                    zero.fetch_add(z.swap(0, Ordering::Relaxed), Ordering::Relaxed);
                }))
            };
            done(futures::stream::once(opened).try_flatten().boxed())
        }
    });
    let all: Batches = futures::stream::iter(std::iter::once(first).chain(rest)).flatten_unordered(parallel).boxed();
    Ok((Extract { schema, batches: all, zero_dates: zero }, n))
}

/// `extract`'s rows, ending only once `count` (the source's count of the same window) is in,
/// which it puts in `slot`. `beside`: the count runs while the rows stream, on another of the
/// source's connections; otherwise it starts after the last row, when the read has released
/// its connection. A failed count ends the rows with its error, so the table fails and nothing
/// commits, as for a failed read.
fn count_alongside(
    extract: Extract,
    count: BoxFuture<'static, basin_connectors::Result<u64>>,
    beside: bool,
    slot: Arc<OnceLock<u64>>,
) -> Extract {
    let batches = Alongside { rows: Some(extract.batches), count: Some(count), beside, slot };
    Extract { schema: extract.schema, batches: Box::pin(batches), zero_dates: extract.zero_dates }
}

struct Alongside {
    /// `None` once the rows have ended (their query and connection dropped).
    rows: Option<Pin<Box<dyn Stream<Item = basin_connectors::Result<arrow::array::RecordBatch>> + Send>>>,
    /// `None` once the count is in.
    count: Option<BoxFuture<'static, basin_connectors::Result<u64>>>,
    beside: bool,
    slot: Arc<OnceLock<u64>>,
}

impl Stream for Alongside {
    type Item = basin_connectors::Result<arrow::array::RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(rows) = &mut this.rows {
            if this.beside
                && let Some(Err(e)) = poll_count(&mut this.count, &this.slot, cx)
            {
                this.rows = None;
                return Poll::Ready(Some(Err(e)));
            }
            match rows.poll_next_unpin(cx) {
                Poll::Ready(None) => this.rows = None,
                other => return other,
            }
        }
        match poll_count(&mut this.count, &this.slot, cx) {
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            _ if this.count.is_some() => Poll::Pending,
            _ => Poll::Ready(None),
        }
    }
}

/// Polls the count if it is still running; `Some` with its outcome when it has just ended.
fn poll_count(
    count: &mut Option<BoxFuture<'static, basin_connectors::Result<u64>>>,
    slot: &OnceLock<u64>,
    cx: &mut Context<'_>,
) -> Option<basin_connectors::Result<()>> {
    let Poll::Ready(outcome) = count.as_mut()?.poll_unpin(cx) else { return None };
    *count = None;
    Some(outcome.map(|n| {
        let _ = slot.set(n);
    }))
}

/// Half-open ranges of `chunk` key values covering `lo..=hi`.
fn key_ranges(column: &str, lo: i64, hi: i64, chunk: u64) -> Vec<KeyRange> {
    let mut out = Vec::new();
    let mut from = lo as i128;
    while from <= hi as i128 {
        let to = from + chunk as i128;
        let last = to > hi as i128;
        out.push(KeyRange {
            column: column.to_string(),
            from: (!out.is_empty()).then_some(from as i64),
            to: (!last).then_some(to as i64),
        });
        from = to;
    }
    out
}

/// The extracted batches as a DataFusion stream, counting rows as they pass and keeping the
/// first source error.
fn counted(
    extract: Extract,
    progress: Arc<Progress>,
    failure: Failure,
) -> datafusion::execution::SendableRecordBatchStream {
    let stream = extract.batches.map(move |b| match b {
        Ok(b) => {
            progress.rows.fetch_add(b.num_rows() as u64, Ordering::Relaxed);
            Ok(b)
        }
        Err(e) => {
            let message = e.to_string();
            failure.keep(e);
            Err(DataFusionError::Execution(message))
        }
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
    fn key_ranges_cover_every_key_once() {
        let r = key_ranges("id", 1, 25, 10);
        let bounds: Vec<(Option<i64>, Option<i64>)> = r.iter().map(|r| (r.from, r.to)).collect();
        // The first and last ranges are open, so keys added meanwhile are read too.
        assert_eq!(bounds, [(None, Some(11)), (Some(11), Some(21)), (Some(21), None)]);
        assert_eq!(key_ranges("id", i64::MAX - 1, i64::MAX, 1).len(), 2);
    }

    /// Two batches, and a count that notes how many of them had been taken when it started.
    fn rows_and_count(
        fails: bool,
    ) -> (Extract, BoxFuture<'static, basin_connectors::Result<u64>>, Arc<AtomicU64>, Arc<AtomicU64>) {
        use arrow::array::{Int64Array, RecordBatch};
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
            "id",
            arrow::datatypes::DataType::Int64,
            false,
        )]));
        let taken = Arc::new(AtomicU64::new(0));
        let batch = |n: i64| RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![n]))]).unwrap();
        let batches = futures::stream::iter([batch(1), batch(2)]).then({
            let taken = taken.clone();
            move |b| {
                let taken = taken.clone();
                async move {
                    // Each batch takes a while to come, as from a server.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    taken.fetch_add(1, Ordering::SeqCst);
                    Ok(b)
                }
            }
        });
        let started_after = Arc::new(AtomicU64::new(u64::MAX));
        let count = {
            let (taken, started_after) = (taken.clone(), started_after.clone());
            async move {
                started_after.store(taken.load(Ordering::SeqCst), Ordering::SeqCst);
                if fails {
                    return Err(basin_connectors::Error::NoSuchTable { source_name: "app".into(), table: "t".into() });
                }
                Ok(2)
            }
            .boxed()
        };
        let extract = Extract { schema, batches: batches.boxed(), zero_dates: Default::default() };
        (extract, count, taken, started_after)
    }

    #[tokio::test]
    async fn the_count_runs_beside_the_read_or_after_it_and_the_rows_end_only_once_it_is_in() {
        for beside in [true, false] {
            let (extract, count, taken, started_after) = rows_and_count(false);
            let slot = Arc::new(OnceLock::new());
            let rows: Vec<_> = count_alongside(extract, count, beside, slot.clone()).batches.collect().await;
            assert_eq!(rows.iter().filter(|r| r.is_ok()).count(), 2);
            assert_eq!(taken.load(Ordering::SeqCst), 2);
            // Beside: it started before any row had come; else after the last one.
            assert_eq!(started_after.load(Ordering::SeqCst), if beside { 0 } else { 2 }, "beside = {beside}");
            assert_eq!(slot.get(), Some(&2), "the count is in when the rows end");
        }
    }

    #[tokio::test]
    async fn a_failed_count_ends_the_rows_with_its_error() {
        for beside in [true, false] {
            let (extract, count, _, _) = rows_and_count(true);
            let slot = Arc::new(OnceLock::new());
            let rows: Vec<_> = count_alongside(extract, count, beside, slot.clone()).batches.collect().await;
            let err = rows.iter().find_map(|r| r.as_ref().err()).expect("an error among the rows");
            assert_eq!(err.to_string(), "source `app` has no table `t`");
            assert!(rows.last().unwrap().is_err(), "nothing after the error; beside = {beside}");
            assert_eq!(slot.get(), None);
        }
    }

    #[test]
    fn lag_applies_to_date_times_only() {
        assert_eq!(minus_lag("2024-02-03 09:00:00", Duration::from_secs(300)), "2024-02-03 08:55:00");
        assert_eq!(minus_lag("2024-02-03 00:01:00.5", Duration::from_secs(120)), "2024-02-02 23:59:00.500");
        assert_eq!(minus_lag("1042", Duration::from_secs(300)), "1042");
    }
}
