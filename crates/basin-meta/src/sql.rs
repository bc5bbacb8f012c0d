//! [`MetaStore`] on SQLite and PostgreSQL through sqlx. One SQL text serves both where the
//! dialects agree (`$n` parameters work on both); the differences are how a write transaction
//! takes its lock (SQLite: `BEGIN IMMEDIATE`, which waits out other writers under the busy
//! timeout instead of failing with "database is locked" when a reader turns writer;
//! PostgreSQL: an advisory lock where two daemons must not decide at once) and the identity
//! columns of the schema.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use basin_core::clock::Clock;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, ColumnIndex, Decode, Row, Type};

use crate::migrations::{LEDGER, MIGRATIONS, latest};
use crate::{AlertDelivery, OpenAlert, SloResult, WatchEvent, WatchStatus};
use crate::{
    Beat, Cancel, CheckFilter, CheckResult, DaemonBeat, Error, Event, FailureCategory, Finish, Footprint, FootprintOf,
    Level, Materialization, MetaStore, NewEvent, NewRun, QueryLogEntry, QueueLimits, Result, Run, RunFilter, RunStatus,
};

/// Advisory-lock keys (PostgreSQL) for the decisions only one process may take at a time.
const MIGRATION_LOCK: i64 = 0x6261_7369_6e00;
const QUEUE_LOCK: i64 = 0x6261_7369_6e01;

/// How long a SQLite writer waits for another before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(60);

const RUN_COLUMNS: &str = "id, status, selection, partition_key, tags, launcher, priority, attempt, parent_run_id, \
     full_refresh, created_at, started_at, finished_at, heartbeat_at, worker, cancel_requested, failure_category, \
     failure_message, queued, retried, not_before";

enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The SQL metadata store; see the module documentation.
pub struct SqlStore {
    pool: Pool,
    clock: Arc<dyn Clock>,
    /// For messages: the URL without its password.
    url: String,
}

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore").field("url", &self.url).finish()
    }
}

/// Run `$body` with `$p` bound to the typed pool of either backend.
macro_rules! on_pool {
    ($self:expr, $p:ident => $body:expr) => {
        match &$self.pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

/// Run `$body` in a write transaction `$tx` (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: holding
/// advisory lock `$lock` if one is given), committed if `$body` does not return early.
macro_rules! in_tx {
    ($self:expr, $lock:expr, $tx:ident => $body:expr) => {
        match &$self.pool {
            Pool::Sqlite(p) => {
                let mut $tx = p.begin_with("BEGIN IMMEDIATE").await.map_err(sql("begin a transaction"))?;
                let out = $body;
                $tx.commit().await.map_err(sql("commit"))?;
                out
            }
            Pool::Postgres(p) => {
                let mut $tx = p.begin().await.map_err(sql("begin a transaction"))?;
                let lock: Option<i64> = $lock;
                if let Some(key) = lock {
                    sqlx::query("SELECT pg_advisory_xact_lock($1)")
                        .bind(key)
                        .execute(&mut *$tx)
                        .await
                        .map_err(sql("take a lock"))?;
                }
                let out = $body;
                $tx.commit().await.map_err(sql("commit"))?;
                out
            }
        }
    };
}

fn sql(context: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |source| Error::Sql { context, source }
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(column: &'static str, v: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(v).ok_or(Error::Corrupt { column, detail: format!("{v} is not a time") })
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{}", &rest[authority_end..]),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// A pool on a SQLite file. Switching a new file to WAL takes an exclusive lock for which
/// SQLite does not wait, so processes opening one new store at once (a daemon starting while
/// a run is queued) may see "database is locked" here: tried again for up to the busy timeout.
async fn connect_sqlite(options: SqliteConnectOptions) -> Result<SqlitePool, sqlx::Error> {
    let started = std::time::Instant::now();
    let mut wait = Duration::from_millis(10);
    loop {
        let attempt = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(SQLITE_BUSY_TIMEOUT)
            .connect_with(options.clone())
            .await;
        match attempt {
            Err(sqlx::Error::Database(e))
                if e.code().is_some_and(|c| c == "5" || c == "517") && started.elapsed() < SQLITE_BUSY_TIMEOUT =>
            {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

/// Decoding one row into the types both backends share.
trait Get<'r> {
    fn text(&'r self, c: &'static str) -> Result<String>;
    fn opt_text(&'r self, c: &'static str) -> Result<Option<String>>;
    fn int(&'r self, c: &'static str) -> Result<i64>;
    fn opt_int(&'r self, c: &'static str) -> Result<Option<i64>>;
    fn flag(&'r self, c: &'static str) -> Result<bool>;
}

impl<'r, R: Row> Get<'r> for R
where
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    bool: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&'r self, c: &'static str) -> Result<String> {
        self.try_get(c).map_err(sql("read a row"))
    }
    fn opt_text(&'r self, c: &'static str) -> Result<Option<String>> {
        self.try_get(c).map_err(sql("read a row"))
    }
    fn int(&'r self, c: &'static str) -> Result<i64> {
        self.try_get(c).map_err(sql("read a row"))
    }
    fn opt_int(&'r self, c: &'static str) -> Result<Option<i64>> {
        self.try_get(c).map_err(sql("read a row"))
    }
    fn flag(&'r self, c: &'static str) -> Result<bool> {
        self.try_get(c).map_err(sql("read a row"))
    }
}

fn run_from<'r>(r: &'r impl Get<'r>) -> Result<Run> {
    let time =
        |c: &'static str| -> Result<Option<DateTime<Utc>>> { r.opt_int(c)?.map(|v| from_micros(c, v)).transpose() };
    let status = r.text("status")?;
    Ok(Run {
        id: r.text("id")?,
        status: RunStatus::from_str(&status).map_err(|detail| Error::Corrupt { column: "status", detail })?,
        selection: serde_json::from_str(&r.text("selection")?)
            .map_err(|e| Error::Corrupt { column: "selection", detail: e.to_string() })?,
        partition: r.opt_text("partition_key")?,
        tags: serde_json::from_str(&r.text("tags")?)
            .map_err(|e| Error::Corrupt { column: "tags", detail: e.to_string() })?,
        launcher: r.text("launcher")?,
        priority: r.int("priority")?,
        attempt: r.int("attempt")?,
        parent_run_id: r.opt_text("parent_run_id")?,
        full_refresh: r.flag("full_refresh")?,
        created_at: from_micros("created_at", r.int("created_at")?)?,
        started_at: time("started_at")?,
        finished_at: time("finished_at")?,
        heartbeat_at: time("heartbeat_at")?,
        worker: r.opt_text("worker")?,
        cancel_requested: r.flag("cancel_requested")?,
        failure_category: r
            .opt_text("failure_category")?
            .map(|c| FailureCategory::from_str(&c))
            .transpose()
            .map_err(|detail| Error::Corrupt { column: "failure_category", detail })?,
        failure_message: r.opt_text("failure_message")?,
        queued: r.flag("queued")?,
        retried: r.flag("retried")?,
        not_before: time("not_before")?,
    })
}

fn event_from<'r>(r: &'r impl Get<'r>) -> Result<Event> {
    Ok(Event {
        id: r.int("id")?,
        run_id: r.text("run_id")?,
        at: from_micros("at", r.int("at")?)?,
        kind: r.text("kind")?,
        level: Level::parse(&r.text("level")?),
        asset: r.opt_text("asset")?,
        message: r.text("message")?,
    })
}

fn materialization_from<'r>(r: &'r impl Get<'r>) -> Result<Materialization> {
    Ok(Materialization {
        run_id: r.text("run_id")?,
        asset: r.text("asset")?,
        partition: r.opt_text("partition_key")?,
        delta_version: r.opt_int("delta_version")?,
        rows: r.int("row_count")?,
        bytes: r.opt_int("bytes")?,
        duration_ms: r.int("duration_ms")?,
        sql_hash: r.opt_text("sql_hash")?,
        schema_hash: r.opt_text("schema_hash")?,
        at: from_micros("at", r.int("at")?)?,
    })
}

fn check_result_from<'r>(r: &'r impl Get<'r>) -> Result<CheckResult> {
    let samples = r.text("samples")?;
    Ok(CheckResult {
        run_id: r.opt_text("run_id")?,
        asset: r.text("asset")?,
        check_name: r.text("check_name")?,
        check_type: r.text("check_type")?,
        severity: r.text("severity")?,
        passed: r.flag("passed")?,
        observed: r.text("observed")?,
        threshold: r.text("threshold")?,
        samples: serde_json::from_str(&samples)
            .map_err(|e| Error::Corrupt { column: "samples", detail: e.to_string() })?,
        delta_version: r.opt_int("delta_version")?,
        duration_ms: r.int("duration_ms")?,
        at: from_micros("at", r.int("at")?)?,
    })
}

const QUERY_LOG_COLUMNS: &str =
    "at, user_name, role, protocol, query, duration_ms, rows_returned, bytes_scanned, sqlstate, error";

const CHECK_COLUMNS: &str = "run_id, asset, check_name, check_type, severity, passed, observed, threshold, samples, \
                             delta_version, duration_ms, at";

fn daemon_from<'r>(r: &'r impl Get<'r>) -> Result<DaemonBeat> {
    Ok(DaemonBeat {
        id: r.text("id")?,
        host: r.text("host")?,
        pid: r.int("pid")?,
        started_at: from_micros("started_at", r.int("started_at")?)?,
        heartbeat_at: from_micros("heartbeat_at", r.int("heartbeat_at")?)?,
    })
}

/// `($1, $2, …), ($n+1, …)`: `rows` rows of `columns` parameters.
fn placeholders(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", (1..=columns).map(|c| format!("${}", r * columns + c)).collect::<Vec<_>>().join(", ")))
        .collect::<Vec<_>>()
        .join(", ")
}

fn watch_status_from<'r>(r: &'r impl Get<'r>) -> Result<WatchStatus> {
    Ok(WatchStatus {
        subject: r.text("subject")?,
        class: r.text("class")?,
        reason: r.text("reason")?,
        run_id: r.opt_text("run_id")?,
        since: from_micros("since", r.int("since")?)?,
        checked_at: from_micros("checked_at", r.int("checked_at")?)?,
    })
}

fn watch_event_from<'r>(r: &'r impl Get<'r>) -> Result<WatchEvent> {
    Ok(WatchEvent {
        id: r.int("id")?,
        at: from_micros("at", r.int("at")?)?,
        subject: r.text("subject")?,
        from_class: r.opt_text("from_class")?,
        to_class: r.text("to_class")?,
        reason: r.text("reason")?,
        run_id: r.opt_text("run_id")?,
        action: r.opt_text("action")?,
    })
}

const INSERT_EVENT: &str =
    "INSERT INTO run_events (run_id, at, kind, level, asset, message) VALUES ($1, $2, $3, $4, $5, $6)";

/// Insert events inside an open transaction (`$tx`), all stamped `$at`.
macro_rules! insert_events {
    ($tx:expr, $run_id:expr, $at:expr, $events:expr) => {
        for e in $events {
            sqlx::query(INSERT_EVENT)
                .bind($run_id)
                .bind($at)
                .bind(&e.kind)
                .bind(e.level.as_str())
                .bind(e.asset.as_deref())
                .bind(&e.message)
                .execute(&mut *$tx)
                .await
                .map_err(sql("record an event"))?;
        }
    };
}

const INSERT_RUN: &str = "INSERT INTO runs (id, status, selection, partition_key, tags, launcher, priority, attempt, \
     parent_run_id, full_refresh, created_at, started_at, heartbeat_at, worker, cancel_requested, queued, not_before) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $13, FALSE, $14, $15)";

/// Insert run `$new` and its first event inside an open transaction; evaluates to the run.
macro_rules! insert_run {
    ($tx:expr, $new:expr, $now:expr) => {{
        let new: &NewRun = $new;
        let id = uuid::Uuid::now_v7().to_string();
        let (status, started) = match &new.started_by {
            Some(_) => (RunStatus::Started, Some($now)),
            None => (RunStatus::Queued, None),
        };
        let event = match &new.started_by {
            Some(w) => NewEvent::new("run_started", Level::Info, None, format!("started by {w}")),
            None => NewEvent::new("run_queued", Level::Info, None, format!("queued: {}", new.selection.join(" "))),
        };
        sqlx::query(INSERT_RUN)
            .bind(&id)
            .bind(status.as_str())
            .bind(serde_json::to_string(&new.selection).expect("strings serialise"))
            .bind(new.partition.as_deref())
            .bind(serde_json::to_string(&new.tags).expect("strings serialise"))
            .bind(&new.launcher)
            .bind(new.priority)
            .bind(new.attempt)
            .bind(new.parent_run_id.as_deref())
            .bind(new.full_refresh)
            .bind($now)
            .bind(started)
            .bind(new.started_by.as_deref())
            .bind(new.started_by.is_none())
            .bind(new.not_before.map(micros))
            .execute(&mut *$tx)
            .await
            .map_err(sql("record a run"))?;
        insert_events!($tx, &id, $now, [&event]);
        let text = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(text)).bind(&id).fetch_one(&mut *$tx).await.map_err(sql("read a run"))?;
        run_from(&row)
    }};
}

/// Move cursor `$name` from `$expected` (`None`: not set yet) to `$value` on executor `$ex`;
/// evaluates to whether it moved (it had not been moved by someone else first).
macro_rules! move_cursor {
    ($ex:expr, $name:expr, $expected:expr, $value:expr, $now:expr) => {{
        let expected: Option<&str> = $expected;
        let result =
            match expected {
                None => sqlx::query(
                    "INSERT INTO cursors (name, value, updated_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
                )
                .bind($name)
                .bind($value)
                .bind($now)
                .execute($ex)
                .await,
                Some(old) => {
                    sqlx::query("UPDATE cursors SET value = $2, updated_at = $3 WHERE name = $1 AND value = $4")
                        .bind($name)
                        .bind($value)
                        .bind($now)
                        .bind(old)
                        .execute($ex)
                        .await
                }
            };
        result.map_err(sql("move a cursor"))?.rows_affected() == 1
    }};
}

/// `text` as a LIKE pattern matching itself literally (with `ESCAPE '\'`).
fn like_literal(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

fn finish_event(finish: &Finish) -> NewEvent {
    match finish {
        Finish::Success => NewEvent::new("run_success", Level::Info, None, "run succeeded"),
        Finish::Failure { category, message } => {
            NewEvent::new("run_failure", Level::Error, None, format!("run failed ({category}): {message}"))
        }
        Finish::Canceled { message } => NewEvent::new("run_canceled", Level::Warn, None, message.clone()),
    }
}

impl SqlStore {
    /// See [`crate::open`].
    pub async fn open(url: &str, project_dir: &Path, clock: Arc<dyn Clock>) -> Result<SqlStore> {
        let shown = redact(url);
        let open_err = |source| Error::Open { url: shown.clone(), source };
        let pool = if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            let path = path.split('?').next().unwrap_or(path);
            if path.is_empty() {
                return Err(Error::Url(shown));
            }
            let path = project_dir.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| open_err(sqlx::Error::Io(e)))?;
            }
            let options = SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true);
            Pool::Sqlite(connect_sqlite(options).await.map_err(open_err)?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url).map_err(open_err)?.application_name("basin-meta");
            Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(15))
                    .connect_with(options)
                    .await
                    .map_err(open_err)?,
            )
        } else {
            return Err(Error::Url(shown));
        };
        let store = SqlStore { pool, clock, url: shown };
        store.migrate().await?;
        Ok(store)
    }

    fn is_sqlite(&self) -> bool {
        matches!(self.pool, Pool::Sqlite(_))
    }

    fn now(&self) -> i64 {
        micros(self.clock.now())
    }

    /// The schema version this store is at.
    pub async fn schema_version(&self) -> Result<i64> {
        on_pool!(self, p => {
            let v: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM meta_migrations")
                .fetch_one(p)
                .await
                .map_err(sql("read the schema version"))?;
            Ok(v.unwrap_or(0))
        })
    }

    async fn migrate(&self) -> Result<()> {
        // The common case, a store already at this version, is a read: no write lock, so many
        // workers opening the store at once do not queue behind each other.
        match self.schema_version().await {
            Ok(v) if v == latest() => return Ok(()),
            Ok(v) if v > latest() => {
                return Err(Error::NewerSchema { url: self.url.clone(), found: v, known: latest() });
            }
            _ => {}
        }
        let sqlite = self.is_sqlite();
        let now = self.now();
        in_tx!(self, Some(MIGRATION_LOCK), tx => {
            sqlx::raw_sql(LEDGER).execute(&mut *tx).await.map_err(sql("create the migration ledger"))?;
            let current: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM meta_migrations")
                .fetch_one(&mut *tx)
                .await
                .map_err(sql("read the schema version"))?;
            let current = current.unwrap_or(0);
            if current > latest() {
                return Err(Error::NewerSchema { url: self.url.clone(), found: current, known: latest() });
            }
            for m in MIGRATIONS.iter().filter(|m| m.version > current) {
                let text = if sqlite { m.sqlite } else { m.postgres };
                sqlx::raw_sql(text).execute(&mut *tx).await.map_err(sql("migrate the schema"))?;
                sqlx::query("INSERT INTO meta_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                    .bind(m.version)
                    .bind(m.name)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(sql("record a migration"))?;
            }
        });
        Ok(())
    }
}

#[async_trait]
impl MetaStore for SqlStore {
    async fn create_run(&self, new: NewRun) -> Result<Run> {
        let now = self.now();
        in_tx!(self, None, tx => {
            insert_run!(tx, &new, now)
        })
    }

    async fn create_runs(&self, runs: Vec<NewRun>) -> Result<Vec<Run>> {
        let now = self.now();
        in_tx!(self, None, tx => {
            let mut out = Vec::with_capacity(runs.len());
            for new in &runs {
                out.push(insert_run!(tx, new, now)?);
            }
            Ok(out)
        })
    }

    async fn run(&self, id: &str) -> Result<Option<Run>> {
        let text = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1");
        on_pool!(self, p => {
            let row = sqlx::query(AssertSqlSafe(text)).bind(id).fetch_optional(p).await.map_err(sql("read a run"))?;
            row.as_ref().map(run_from).transpose()
        })
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        let mut clauses = Vec::new();
        let mut texts: Vec<String> = Vec::new();
        let mut n = 0;
        let mut param = || {
            n += 1;
            format!("${n}")
        };
        if let Some(s) = filter.status {
            clauses.push(format!("status = {}", param()));
            texts.push(s.as_str().to_string());
        }
        if let Some(a) = &filter.asset {
            clauses.push(format!(
                "EXISTS (SELECT 1 FROM run_events e WHERE e.asset = {} AND e.run_id = runs.id)",
                param()
            ));
            texts.push(a.clone());
        }
        if let Some((k, v)) = &filter.tag {
            // Tags are a JSON object of strings; match the serialised pair exactly.
            clauses.push(format!("tags LIKE {} ESCAPE '\\'", param()));
            let pair = serde_json::to_string(&BTreeMap::from([(k, v)])).expect("strings serialise");
            let inner = pair.trim_start_matches('{').trim_end_matches('}');
            texts.push(format!("%{}%", like_literal(inner)));
        }
        if let Some(prefix) = &filter.id_part {
            clauses.push(format!("id LIKE {} ESCAPE '\\'", param()));
            texts.push(format!("%{}%", like_literal(prefix)));
        }
        let since = filter.since.map(micros);
        if since.is_some() {
            clauses.push(format!("created_at >= {}", param()));
        }
        let where_ = if clauses.is_empty() { String::new() } else { format!(" WHERE {}", clauses.join(" AND ")) };
        let limit = filter.limit.unwrap_or(50);
        let text = format!("SELECT {RUN_COLUMNS} FROM runs{where_} ORDER BY seq DESC LIMIT {limit}");
        on_pool!(self, p => {
            let mut q = sqlx::query(AssertSqlSafe(text));
            for t in &texts {
                q = q.bind(t.clone());
            }
            if let Some(s) = since {
                q = q.bind(s);
            }
            let rows = q.fetch_all(p).await.map_err(sql("list runs"))?;
            rows.iter().map(run_from).collect()
        })
    }

    async fn start_run(&self, id: &str, worker: &str) -> Result<Run> {
        let now = self.now();
        let text = format!(
            "UPDATE runs SET status = 'STARTED', worker = $2, started_at = $3, heartbeat_at = $3 \
             WHERE id = $1 AND status IN ('QUEUED', 'STARTING') AND NOT cancel_requested RETURNING {RUN_COLUMNS}"
        );
        let started = in_tx!(self, None, tx => {
            let row = sqlx::query(AssertSqlSafe(text))
                .bind(id)
                .bind(worker)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await
                .map_err(sql("start a run"))?;
            match row {
                Some(r) => {
                    let event = NewEvent::new("run_started", Level::Info, None, format!("started by {worker}"));
                    insert_events!(tx, id, now, [&event]);
                    Some(run_from(&r)?)
                }
                None => None,
            }
        });
        match started {
            Some(run) => Ok(run),
            None => match self.run(id).await? {
                None => Err(Error::NoSuchRun(id.to_string())),
                Some(run) => Err(Error::NotStartable {
                    id: id.to_string(),
                    status: if run.cancel_requested && !run.status.is_terminal() {
                        RunStatus::Canceled
                    } else {
                        run.status
                    },
                }),
            },
        }
    }

    async fn heartbeat(&self, id: &str) -> Result<Beat> {
        let now = self.now();
        let cancel: Option<bool> = on_pool!(self, p => {
            sqlx::query_scalar(
                "UPDATE runs SET heartbeat_at = $2 WHERE id = $1 AND status IN ('STARTING', 'STARTED') \
                 RETURNING cancel_requested",
            )
            .bind(id)
            .bind(now)
            .fetch_optional(p)
            .await
            .map_err(sql("heartbeat"))?
        });
        match cancel {
            Some(true) => Ok(Beat::Cancel),
            Some(false) => Ok(Beat::Continue),
            None => match self.run(id).await? {
                Some(run) => Ok(Beat::Gone(run.status)),
                None => Err(Error::NoSuchRun(id.to_string())),
            },
        }
    }

    async fn finish_run(&self, id: &str, finish: &Finish) -> Result<bool> {
        let now = self.now();
        let (category, message) = match finish {
            Finish::Success => (None, None),
            Finish::Failure { category, message } => (Some(category.as_str()), Some(message.as_str())),
            Finish::Canceled { message } => (None, Some(message.as_str())),
        };
        let event = finish_event(finish);
        in_tx!(self, None, tx => {
            let done = sqlx::query(
                "UPDATE runs SET status = $2, finished_at = $3, failure_category = $4, failure_message = $5 \
                 WHERE id = $1 AND status NOT IN ('SUCCESS', 'FAILURE', 'CANCELED')",
            )
            .bind(id)
            .bind(finish.status().as_str())
            .bind(now)
            .bind(category)
            .bind(message)
            .execute(&mut *tx)
            .await
            .map_err(sql("finish a run"))?
            .rows_affected()
                == 1;
            if done {
                insert_events!(tx, id, now, [&event]);
            }
            Ok(done)
        })
    }

    async fn request_cancel(&self, id: &str) -> Result<Cancel> {
        let now = self.now();
        in_tx!(self, None, tx => {
            let status: Option<String> = sqlx::query_scalar("SELECT status FROM runs WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(sql("read a run"))?;
            let status = status.ok_or_else(|| Error::NoSuchRun(id.to_string()))?;
            let status = RunStatus::from_str(&status).map_err(|detail| Error::Corrupt { column: "status", detail })?;
            match status {
                RunStatus::Queued => {
                    sqlx::query(
                        "UPDATE runs SET status = 'CANCELED', finished_at = $2, cancel_requested = TRUE, \
                         failure_message = 'canceled before it started' WHERE id = $1",
                    )
                    .bind(id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(sql("cancel a run"))?;
                    let event = NewEvent::new("run_canceled", Level::Warn, None, "canceled before it started");
                    insert_events!(tx, id, now, [&event]);
                    Ok(Cancel::Canceled)
                }
                s if s.is_in_flight() => {
                    sqlx::query("UPDATE runs SET cancel_requested = TRUE WHERE id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(sql("cancel a run"))?;
                    let event = NewEvent::new("cancel_requested", Level::Warn, None, "cancellation requested");
                    insert_events!(tx, id, now, [&event]);
                    Ok(Cancel::Requested)
                }
                s => Ok(Cancel::AlreadyFinished(s)),
            }
        })
    }

    async fn reap_dead(&self, stale_before: DateTime<Utc>) -> Result<Vec<Run>> {
        let now = self.now();
        let text = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE status IN ('STARTING', 'STARTED') \
             AND (heartbeat_at IS NULL OR heartbeat_at < $1)"
        );
        let candidates: Vec<Run> = on_pool!(self, p => {
            let rows = sqlx::query(AssertSqlSafe(text))
                .bind(micros(stale_before))
                .fetch_all(p)
                .await
                .map_err(sql("find dead runs"))?;
            rows.iter().map(run_from).collect::<Result<Vec<_>>>()?
        });
        let mut reaped = Vec::new();
        for run in candidates {
            let last = run.heartbeat_at.map_or_else(|| "never".to_string(), |t| t.to_rfc3339());
            let message = format!(
                "its worker ({}) stopped heartbeating; last heartbeat: {last}",
                run.worker.as_deref().unwrap_or("unknown")
            );
            let finish = Finish::Failure { category: FailureCategory::WorkerDied, message };
            let event = finish_event(&finish);
            // Re-checked in the update: a heartbeat that arrived meanwhile keeps the run alive.
            let done = in_tx!(self, None, tx => {
                let done = sqlx::query(
                    "UPDATE runs SET status = 'FAILURE', finished_at = $2, failure_category = 'worker_died', \
                     failure_message = $3 WHERE id = $1 AND status IN ('STARTING', 'STARTED') \
                     AND (heartbeat_at IS NULL OR heartbeat_at < $4)",
                )
                .bind(&run.id)
                .bind(now)
                .bind(match &finish { Finish::Failure { message, .. } => message.as_str(), _ => "" })
                .bind(micros(stale_before))
                .execute(&mut *tx)
                .await
                .map_err(sql("fail a dead run"))?
                .rows_affected()
                    == 1;
                if done {
                    insert_events!(tx, &run.id, now, [&event]);
                }
                done
            });
            if done && let Some(r) = self.run(&run.id).await? {
                reaped.push(r);
            }
        }
        Ok(reaped)
    }

    async fn claim_queued(
        &self,
        limits: &QueueLimits,
        claimer: &str,
        max: usize,
        footprint: FootprintOf<'_>,
    ) -> Result<Vec<Run>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let now = self.now();
        // A daemon asks many times a second; with nothing claimable a read answers, without the
        // write lock that every worker's events would otherwise queue behind.
        let claimable: Option<i64> = on_pool!(self, p => {
            sqlx::query_scalar(
                "SELECT seq FROM runs WHERE status = 'QUEUED' AND NOT cancel_requested \
                 AND (not_before IS NULL OR not_before <= $1) LIMIT 1",
            )
            .bind(now)
            .fetch_optional(p)
            .await
            .map_err(sql("read the queue"))?
        });
        if claimable.is_none() {
            return Ok(Vec::new());
        }
        let queued_text = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE status = 'QUEUED' AND NOT cancel_requested \
             AND (not_before IS NULL OR not_before <= $1) ORDER BY priority DESC, seq ASC"
        );
        let flying_text = format!("SELECT {RUN_COLUMNS} FROM runs WHERE status IN ('STARTING', 'STARTED')");
        let claim_text = format!(
            "UPDATE runs SET status = 'STARTING', worker = $2, heartbeat_at = $3 \
             WHERE id = $1 AND status = 'QUEUED' RETURNING {RUN_COLUMNS}"
        );
        in_tx!(self, Some(QUEUE_LOCK), tx => {
            let flying = sqlx::query(AssertSqlSafe(flying_text.clone()))
                .fetch_all(&mut *tx)
                .await
                .map_err(sql("read the runs in flight"))?;
            let flying = flying.iter().map(run_from).collect::<Result<Vec<_>>>()?;
            let mut in_flight: Vec<BTreeMap<String, String>> = flying.iter().map(|r| r.tags.clone()).collect();
            let mut writing: Vec<Footprint> = flying.iter().map(footprint).collect();
            let rows = sqlx::query(AssertSqlSafe(queued_text.clone()))
                .bind(now)
                .fetch_all(&mut *tx)
                .await
                .map_err(sql("read the queue"))?;
            let queued = rows.iter().map(run_from).collect::<Result<Vec<_>>>()?;
            let mut claimed = Vec::new();
            for run in queued {
                if claimed.len() == max || in_flight.len() >= limits.max_concurrent_runs {
                    break;
                }
                if !limits.admits(&run.tags, &in_flight) {
                    continue;
                }
                let writes = footprint(&run);
                if writing.iter().any(|w| w.overlaps(&writes)) {
                    continue;
                }
                let row = sqlx::query(AssertSqlSafe(claim_text.clone()))
                    .bind(&run.id)
                    .bind(claimer)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(sql("claim a run"))?;
                if let Some(r) = row {
                    let event = NewEvent::new("run_starting", Level::Info, None, format!("claimed by {claimer}"));
                    insert_events!(tx, &run.id, now, [&event]);
                    in_flight.push(run.tags.clone());
                    writing.push(writes);
                    claimed.push(run_from(&r)?);
                }
            }
            Ok(claimed)
        })
    }

    async fn enqueue_tick(
        &self,
        cursor: &str,
        expected: Option<&str>,
        value: &str,
        run: NewRun,
    ) -> Result<Option<Run>> {
        let now = self.now();
        in_tx!(self, None, tx => {
            if move_cursor!(&mut *tx, cursor, expected, value, now) {
                insert_run!(tx, &run, now).map(Some)
            } else {
                Ok(None)
            }
        })
    }

    async fn retry_run(&self, parent: &str, not_before: DateTime<Utc>) -> Result<Option<Run>> {
        let now = self.now();
        let text = format!(
            "UPDATE runs SET retried = TRUE WHERE id = $1 AND status = 'FAILURE' AND queued AND NOT retried \
             RETURNING {RUN_COLUMNS}"
        );
        in_tx!(self, None, tx => {
            let row = sqlx::query(AssertSqlSafe(text))
                .bind(parent)
                .fetch_optional(&mut *tx)
                .await
                .map_err(sql("mark a run retried"))?;
            match row {
                None => Ok(None),
                Some(r) => {
                    let p = run_from(&r)?;
                    let next = NewRun {
                        selection: p.selection.clone(),
                        partition: p.partition.clone(),
                        tags: p.tags.clone(),
                        launcher: p.launcher.clone(),
                        priority: p.priority,
                        attempt: p.attempt + 1,
                        parent_run_id: Some(p.id.clone()),
                        full_refresh: p.full_refresh,
                        started_by: None,
                        not_before: Some(not_before),
                    };
                    let retry = insert_run!(tx, &next, now)?;
                    let event = NewEvent::new(
                        "run_retried",
                        Level::Info,
                        None,
                        format!("attempt {} queued as run {} for {}", next.attempt, retry.id, not_before.to_rfc3339()),
                    );
                    insert_events!(tx, parent, now, [&event]);
                    Ok(Some(retry))
                }
            }
        })
    }

    async fn unretried_failures(&self) -> Result<Vec<Run>> {
        let text =
            format!("SELECT {RUN_COLUMNS} FROM runs WHERE status = 'FAILURE' AND queued AND NOT retried ORDER BY seq");
        on_pool!(self, p => {
            let rows = sqlx::query(AssertSqlSafe(text)).fetch_all(p).await.map_err(sql("read failed runs"))?;
            rows.iter().map(run_from).collect()
        })
    }

    async fn settle_failure(&self, id: &str) -> Result<()> {
        on_pool!(self, p => {
            sqlx::query("UPDATE runs SET retried = TRUE WHERE id = $1")
                .bind(id)
                .execute(p)
                .await
                .map_err(sql("settle a failed run"))?;
        });
        Ok(())
    }

    async fn add_events(&self, run_id: &str, events: &[NewEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let now = self.now();
        if let [event] = events {
            // One statement commits by itself; a transaction would only hold the lock longer.
            on_pool!(self, p => {
                let mut conn = p.acquire().await.map_err(sql("record an event"))?;
                insert_events!(conn, run_id, now, [event]);
            });
            return Ok(());
        }
        in_tx!(self, None, tx => {
            insert_events!(tx, run_id, now, events);
        });
        Ok(())
    }

    async fn events(&self, run_id: &str) -> Result<Vec<Event>> {
        on_pool!(self, p => {
            let rows = sqlx::query(
                "SELECT id, run_id, at, kind, level, asset, message FROM run_events WHERE run_id = $1 ORDER BY id",
            )
            .bind(run_id)
            .fetch_all(p)
            .await
            .map_err(sql("read events"))?;
            rows.iter().map(event_from).collect()
        })
    }

    async fn add_check_results(&self, results: &[CheckResult]) -> Result<()> {
        if results.is_empty() {
            return Ok(());
        }
        let now = self.now();
        let text = format!(
            "INSERT INTO check_results ({CHECK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        );
        in_tx!(self, None, tx => {
            for c in results {
                sqlx::query(AssertSqlSafe(text.clone()))
                    .bind(c.run_id.as_deref())
                    .bind(&c.asset)
                    .bind(&c.check_name)
                    .bind(&c.check_type)
                    .bind(&c.severity)
                    .bind(c.passed)
                    .bind(&c.observed)
                    .bind(&c.threshold)
                    .bind(serde_json::to_string(&c.samples).expect("strings serialise"))
                    .bind(c.delta_version)
                    .bind(c.duration_ms)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(sql("record check results"))?;
            }
        });
        Ok(())
    }

    async fn check_results(&self, filter: &CheckFilter) -> Result<Vec<CheckResult>> {
        let text = format!(
            "SELECT {CHECK_COLUMNS} FROM check_results WHERE ($1 IS NULL OR asset = $1) AND ($2 IS NULL OR run_id = $2) \
             ORDER BY id DESC LIMIT $3"
        );
        on_pool!(self, p => {
            let rows = sqlx::query(AssertSqlSafe(text))
                .bind(filter.asset.as_deref())
                .bind(filter.run_id.as_deref())
                .bind(filter.limit.unwrap_or(i64::MAX))
                .fetch_all(p)
                .await
                .map_err(sql("read check results"))?;
            rows.iter().map(check_result_from).collect()
        })
    }

    async fn failing_checks(&self) -> Result<Vec<CheckResult>> {
        let text = format!(
            "SELECT {CHECK_COLUMNS} FROM check_results WHERE id IN \
             (SELECT MAX(id) FROM check_results GROUP BY asset, check_name) AND NOT passed AND severity = 'error' \
             ORDER BY asset, check_name"
        );
        on_pool!(self, p => {
            let rows = sqlx::query(AssertSqlSafe(text)).fetch_all(p).await.map_err(sql("read failing checks"))?;
            rows.iter().map(check_result_from).collect()
        })
    }

    async fn add_query_log(&self, entries: &[QueryLogEntry]) -> Result<()> {
        // Many rows per INSERT: each statement is a round trip (to SQLite's worker thread or
        // to the server), and a busy endpoint hands over hundreds of entries at once. 64 rows
        // of 10 values stay under every SQLite's limit of 999 parameters.
        const ROWS: usize = 64;
        if entries.is_empty() {
            return Ok(());
        }
        in_tx!(self, None, tx => {
            for chunk in entries.chunks(ROWS) {
                let text = format!("INSERT INTO query_log ({QUERY_LOG_COLUMNS}) VALUES {}", placeholders(chunk.len(), 10));
                let mut query = sqlx::query(AssertSqlSafe(text));
                for q in chunk {
                    query = query
                        .bind(micros(q.at))
                        .bind(&q.user)
                        .bind(&q.role)
                        .bind(&q.protocol)
                        .bind(&q.query)
                        .bind(q.duration_ms)
                        .bind(q.rows)
                        .bind(q.bytes_scanned)
                        .bind(q.sqlstate.as_deref())
                        .bind(q.error.as_deref());
                }
                query.execute(&mut *tx).await.map_err(sql("record the query log"))?;
            }
        });
        Ok(())
    }

    async fn query_log(&self, limit: i64) -> Result<Vec<QueryLogEntry>> {
        let text = format!("SELECT {QUERY_LOG_COLUMNS} FROM query_log ORDER BY id DESC LIMIT $1");
        on_pool!(self, p => {
            let rows = sqlx::query(AssertSqlSafe(text)).bind(limit).fetch_all(p).await.map_err(sql("read the query log"))?;
            rows.iter()
                .map(|r| {
                    Ok(QueryLogEntry {
                        at: from_micros("at", r.int("at")?)?,
                        user: r.text("user_name")?,
                        role: r.text("role")?,
                        protocol: r.text("protocol")?,
                        query: r.text("query")?,
                        duration_ms: r.int("duration_ms")?,
                        rows: r.int("rows_returned")?,
                        bytes_scanned: r.opt_int("bytes_scanned")?,
                        sqlstate: r.opt_text("sqlstate")?,
                        error: r.opt_text("error")?,
                    })
                })
                .collect()
        })
    }

    async fn record_materialization(&self, m: &Materialization) -> Result<()> {
        let now = self.now();
        on_pool!(self, p => {
            sqlx::query(
                "INSERT INTO materializations (run_id, asset, partition_key, delta_version, row_count, bytes, \
                 duration_ms, sql_hash, schema_hash, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&m.run_id)
            .bind(&m.asset)
            .bind(m.partition.as_deref())
            .bind(m.delta_version)
            .bind(m.rows)
            .bind(m.bytes)
            .bind(m.duration_ms)
            .bind(m.sql_hash.as_deref())
            .bind(m.schema_hash.as_deref())
            .bind(now)
            .execute(p)
            .await
            .map_err(sql("record a materialisation"))?;
        });
        Ok(())
    }

    async fn materializations(&self, asset: Option<&str>, limit: i64) -> Result<Vec<Materialization>> {
        on_pool!(self, p => {
            // Two texts, so that one asset's history is read through its index.
            const COLUMNS: &str = "SELECT run_id, asset, partition_key, delta_version, row_count, bytes, duration_ms, \
                 sql_hash, schema_hash, at FROM materializations";
            let rows = match asset {
                Some(a) => sqlx::query(AssertSqlSafe(format!("{COLUMNS} WHERE asset = $1 ORDER BY id DESC LIMIT $2")))
                    .bind(a)
                    .bind(limit)
                    .fetch_all(p)
                    .await,
                None => sqlx::query(AssertSqlSafe(format!("{COLUMNS} ORDER BY id DESC LIMIT $1"))).bind(limit).fetch_all(p).await,
            }
            .map_err(sql("read materialisations"))?;
            rows.iter().map(materialization_from).collect()
        })
    }

    async fn cursor(&self, name: &str) -> Result<Option<String>> {
        on_pool!(self, p => {
            sqlx::query_scalar("SELECT value FROM cursors WHERE name = $1")
                .bind(name)
                .fetch_optional(p)
                .await
                .map_err(sql("read a cursor"))
        })
    }

    async fn cursors(&self, prefix: &str) -> Result<BTreeMap<String, String>> {
        let pattern = format!("{}%", like_literal(prefix));
        on_pool!(self, p => {
            let rows: Vec<(String, String)> =
                sqlx::query_as("SELECT name, value FROM cursors WHERE name LIKE $1 ESCAPE '\\'")
                    .bind(pattern)
                    .fetch_all(p)
                    .await
                    .map_err(sql("read cursors"))?;
            Ok(rows.into_iter().collect())
        })
    }

    async fn latest_materializations(&self) -> Result<BTreeMap<String, DateTime<Utc>>> {
        on_pool!(self, p => {
            let rows: Vec<(String, i64)> = sqlx::query_as("SELECT asset, MAX(at) FROM materializations GROUP BY asset")
                .fetch_all(p)
                .await
                .map_err(sql("read materialisations"))?;
            rows.into_iter().map(|(a, t)| Ok((a, from_micros("at", t)?))).collect()
        })
    }

    async fn active_runs(&self) -> Result<Vec<Run>> {
        let text =
            format!("SELECT {RUN_COLUMNS} FROM runs WHERE status IN ('QUEUED', 'STARTING', 'STARTED') ORDER BY seq");
        on_pool!(self, p => {
            let rows = sqlx::query(AssertSqlSafe(text)).fetch_all(p).await.map_err(sql("read active runs"))?;
            rows.iter().map(run_from).collect()
        })
    }

    async fn latest_asset_events(&self) -> Result<Vec<Event>> {
        on_pool!(self, p => {
            let rows = sqlx::query(
                "SELECT id, run_id, at, kind, level, asset, message FROM run_events WHERE id IN \
                 (SELECT MAX(id) FROM run_events WHERE asset IS NOT NULL \
                  AND kind IN ('asset_started', 'asset_materialized', 'asset_failed', 'asset_skipped') \
                  GROUP BY asset) ORDER BY asset",
            )
            .fetch_all(p)
            .await
            .map_err(sql("read the latest asset events"))?;
            rows.iter().map(event_from).collect()
        })
    }

    async fn run_counts(&self) -> Result<Vec<(String, Option<String>, i64)>> {
        on_pool!(self, p => {
            sqlx::query_as("SELECT status, failure_category, COUNT(*) FROM runs GROUP BY status, failure_category")
                .fetch_all(p)
                .await
                .map_err(sql("count runs"))
        })
    }

    async fn advance_cursor(&self, name: &str, expected: Option<&str>, value: &str) -> Result<bool> {
        let now = self.now();
        on_pool!(self, p => Ok(move_cursor!(p, name, expected, value, now)))
    }

    async fn daemon_heartbeat(&self, beat: &DaemonBeat) -> Result<()> {
        on_pool!(self, p => {
            sqlx::query(
                "INSERT INTO daemons (id, host, pid, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
            )
            .bind(&beat.id)
            .bind(&beat.host)
            .bind(beat.pid)
            .bind(micros(beat.started_at))
            .bind(micros(beat.heartbeat_at))
            .execute(p)
            .await
            .map_err(sql("record a daemon heartbeat"))?;
        });
        Ok(())
    }

    async fn watchdog_cycle(
        &self,
        cursor: &str,
        expected: Option<&str>,
        value: &str,
        statuses: &[WatchStatus],
    ) -> Result<Option<Vec<WatchEvent>>> {
        let now = self.now();
        in_tx!(self, None, tx => {
            if !move_cursor!(&mut *tx, cursor, expected, value, now) {
                return Ok(None);
            }
            let rows = sqlx::query("SELECT subject, class, reason, run_id, since, checked_at FROM asset_status")
                .fetch_all(&mut *tx)
                .await
                .map_err(sql("read the watchdog's classes"))?;
            let mut stored: BTreeMap<String, WatchStatus> = BTreeMap::new();
            for r in &rows {
                let s = watch_status_from(r)?;
                stored.insert(s.subject.clone(), s);
            }
            // What changed: (status, the time it entered its class, its old class if it changed).
            let mut writes: Vec<(&WatchStatus, i64)> = Vec::new();
            let mut moved: Vec<(&WatchStatus, Option<String>)> = Vec::new();
            for s in statuses {
                let old = stored.remove(&s.subject);
                let changed_class = old.as_ref().is_none_or(|o| o.class != s.class);
                if !changed_class && old.as_ref().is_some_and(|o| o.reason == s.reason && o.run_id == s.run_id) {
                    continue;
                }
                // A subject keeps the time it entered its class while the class holds.
                let since = match &old {
                    Some(o) if !changed_class => o.since,
                    _ => s.since,
                };
                writes.push((s, micros(since)));
                if changed_class {
                    moved.push((s, old.map(|o| o.class)));
                }
            }
            // Many rows per statement: a first cycle over 10,000 assets writes them all.
            const ROWS: usize = 100;
            for chunk in writes.chunks(ROWS) {
                let text = format!(
                    "INSERT INTO asset_status (subject, class, reason, run_id, since, checked_at) VALUES {} \
                     ON CONFLICT (subject) DO UPDATE SET class = excluded.class, reason = excluded.reason, \
                     run_id = excluded.run_id, since = excluded.since, checked_at = excluded.checked_at",
                    placeholders(chunk.len(), 6)
                );
                let mut query = sqlx::query(AssertSqlSafe(text));
                for (s, since) in chunk {
                    query = query.bind(&s.subject).bind(&s.class).bind(&s.reason).bind(s.run_id.as_deref()).bind(*since).bind(now);
                }
                query.execute(&mut *tx).await.map_err(sql("store the watchdog's classes"))?;
            }
            let mut events = Vec::new();
            for chunk in moved.chunks(ROWS) {
                let text = format!(
                    "INSERT INTO watchdog_events (at, subject, from_class, to_class, reason, run_id) VALUES {} \
                     RETURNING id, at, subject, from_class, to_class, reason, run_id, action",
                    placeholders(chunk.len(), 6)
                );
                let mut query = sqlx::query(AssertSqlSafe(text));
                for (s, from) in chunk {
                    query = query.bind(now).bind(&s.subject).bind(from.as_deref()).bind(&s.class).bind(&s.reason).bind(s.run_id.as_deref());
                }
                for row in query.fetch_all(&mut *tx).await.map_err(sql("record the watchdog's transitions"))? {
                    events.push(watch_event_from(&row)?);
                }
            }
            events.sort_by_key(|e| e.id);
            // Subjects gone from the project (an asset dropped, a schedule removed).
            let gone: Vec<&String> = stored.keys().collect();
            for chunk in gone.chunks(ROWS) {
                let list = (1..=chunk.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
                let text = format!("DELETE FROM asset_status WHERE subject IN ({list})");
                let mut query = sqlx::query(AssertSqlSafe(text));
                for g in chunk {
                    query = query.bind(*g);
                }
                query.execute(&mut *tx).await.map_err(sql("forget watchdog subjects"))?;
            }
            // Every row was looked at by this cycle: that is the cursor's time (`watch_statuses`
            // reads it from there), not a write of every row.
            Ok(Some(events))
        })
    }

    async fn watch_statuses(&self) -> Result<Vec<WatchStatus>> {
        on_pool!(self, p => {
            // `checked_at`: the last cycle's time, where the cycle cursor is kept.
            let rows = sqlx::query(
                "SELECT subject, class, reason, run_id, since, COALESCE((SELECT updated_at FROM cursors WHERE name = $1), \
                 checked_at) AS checked_at FROM asset_status ORDER BY subject",
            )
            .bind(crate::WATCHDOG_CURSOR)
            .fetch_all(p)
                .await
                .map_err(sql("read the watchdog's classes"))?;
            rows.iter().map(watch_status_from).collect()
        })
    }

    async fn watch_events(&self, limit: i64) -> Result<Vec<WatchEvent>> {
        on_pool!(self, p => {
            let rows = sqlx::query(
                "SELECT id, at, subject, from_class, to_class, reason, run_id, action FROM watchdog_events \
                 ORDER BY id DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(p)
            .await
            .map_err(sql("read the watchdog's transitions"))?;
            rows.iter().map(watch_event_from).collect()
        })
    }

    async fn add_watch_actions(&self, actions: &[WatchEvent]) -> Result<()> {
        if actions.is_empty() {
            return Ok(());
        }
        in_tx!(self, None, tx => {
            for a in actions {
                sqlx::query(
                    "INSERT INTO watchdog_events (at, subject, from_class, to_class, reason, run_id, action) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(micros(a.at))
                .bind(&a.subject)
                .bind(a.from_class.as_deref())
                .bind(&a.to_class)
                .bind(&a.reason)
                .bind(a.run_id.as_deref())
                .bind(a.action.as_deref())
                .execute(&mut *tx)
                .await
                .map_err(sql("record a watchdog action"))?;
            }
        });
        Ok(())
    }

    async fn watch_actions(&self, since: DateTime<Utc>) -> Result<Vec<WatchEvent>> {
        on_pool!(self, p => {
            let rows = sqlx::query(
                "SELECT id, at, subject, from_class, to_class, reason, run_id, action FROM watchdog_events \
                 WHERE action IS NOT NULL AND at >= $1 ORDER BY id",
            )
            .bind(micros(since))
            .fetch_all(p)
            .await
            .map_err(sql("read the watchdog's actions"))?;
            rows.iter().map(watch_event_from).collect()
        })
    }

    async fn open_alerts(&self) -> Result<Vec<OpenAlert>> {
        on_pool!(self, p => {
            let rows = sqlx::query("SELECT channel, subject, class, firing, fired_at, updated_at FROM alerts ORDER BY channel, subject")
                .fetch_all(p)
                .await
                .map_err(sql("read alerts"))?;
            rows.iter()
                .map(|r| {
                    Ok(OpenAlert {
                        channel: r.text("channel")?,
                        subject: r.text("subject")?,
                        class: r.text("class")?,
                        firing: r.flag("firing")?,
                        fired_at: from_micros("fired_at", r.int("fired_at")?)?,
                        updated_at: from_micros("updated_at", r.int("updated_at")?)?,
                    })
                })
                .collect()
        })
    }

    async fn set_alert(&self, a: &OpenAlert) -> Result<()> {
        on_pool!(self, p => {
            sqlx::query(
                "INSERT INTO alerts (channel, subject, class, firing, fired_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (channel, subject) DO UPDATE SET class = excluded.class, firing = excluded.firing, \
                 fired_at = excluded.fired_at, updated_at = excluded.updated_at",
            )
            .bind(&a.channel)
            .bind(&a.subject)
            .bind(&a.class)
            .bind(a.firing)
            .bind(micros(a.fired_at))
            .bind(micros(a.updated_at))
            .execute(p)
            .await
            .map_err(sql("record an alert"))?;
        });
        Ok(())
    }

    async fn add_alert_delivery(&self, d: &AlertDelivery) -> Result<()> {
        on_pool!(self, p => {
            sqlx::query(
                "INSERT INTO alert_deliveries (at, channel, dedup_key, state, subject, class, attempts, delivered, error) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(micros(d.at))
            .bind(&d.channel)
            .bind(&d.dedup_key)
            .bind(&d.state)
            .bind(&d.subject)
            .bind(&d.class)
            .bind(d.attempts)
            .bind(d.delivered)
            .bind(d.error.as_deref())
            .execute(p)
            .await
            .map_err(sql("record an alert delivery"))?;
        });
        Ok(())
    }

    async fn alert_deliveries(&self, limit: i64) -> Result<Vec<AlertDelivery>> {
        on_pool!(self, p => {
            let rows = sqlx::query(
                "SELECT at, channel, dedup_key, state, subject, class, attempts, delivered, error FROM alert_deliveries \
                 ORDER BY id DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(p)
            .await
            .map_err(sql("read alert deliveries"))?;
            rows.iter()
                .map(|r| {
                    Ok(AlertDelivery {
                        at: from_micros("at", r.int("at")?)?,
                        channel: r.text("channel")?,
                        dedup_key: r.text("dedup_key")?,
                        state: r.text("state")?,
                        subject: r.text("subject")?,
                        class: r.text("class")?,
                        attempts: r.int("attempts")?,
                        delivered: r.flag("delivered")?,
                        error: r.opt_text("error")?,
                    })
                })
                .collect()
        })
    }

    async fn alert_delivery_counts(&self) -> Result<Vec<(String, String, bool, i64)>> {
        on_pool!(self, p => {
            sqlx::query_as(
                "SELECT channel, state, delivered, COUNT(*) FROM alert_deliveries GROUP BY channel, state, delivered",
            )
            .fetch_all(p)
            .await
            .map_err(sql("count alert deliveries"))
        })
    }

    async fn record_slo_results(&self, results: &[SloResult]) -> Result<()> {
        if results.is_empty() {
            return Ok(());
        }
        in_tx!(self, None, tx => {
            for chunk in results.chunks(100) {
                let text = format!(
                    "INSERT INTO slo_results (asset, day, deadline, verdict, built_at, judged_at) VALUES {} \
                     ON CONFLICT (asset, day) DO UPDATE SET deadline = excluded.deadline, verdict = excluded.verdict, \
                     built_at = excluded.built_at, judged_at = excluded.judged_at",
                    placeholders(chunk.len(), 6)
                );
                let mut query = sqlx::query(AssertSqlSafe(text));
                for r in chunk {
                    query = query
                        .bind(&r.asset)
                        .bind(&r.day)
                        .bind(micros(r.deadline))
                        .bind(&r.verdict)
                        .bind(r.built_at.map(micros))
                        .bind(micros(r.judged_at));
                }
                query.execute(&mut *tx).await.map_err(sql("record SLO results"))?;
            }
        });
        Ok(())
    }

    async fn slo_results(&self, since: DateTime<Utc>) -> Result<Vec<SloResult>> {
        on_pool!(self, p => {
            let rows = sqlx::query(
                "SELECT asset, day, deadline, verdict, built_at, judged_at FROM slo_results WHERE deadline >= $1 \
                 ORDER BY asset, day",
            )
            .bind(micros(since))
            .fetch_all(p)
            .await
            .map_err(sql("read SLO results"))?;
            rows.iter()
                .map(|r| {
                    Ok(SloResult {
                        asset: r.text("asset")?,
                        day: r.text("day")?,
                        deadline: from_micros("deadline", r.int("deadline")?)?,
                        verdict: r.text("verdict")?,
                        built_at: r.opt_int("built_at")?.map(|v| from_micros("built_at", v)).transpose()?,
                        judged_at: from_micros("judged_at", r.int("judged_at")?)?,
                    })
                })
                .collect()
        })
    }

    async fn slo_latest(&self) -> Result<BTreeMap<String, DateTime<Utc>>> {
        on_pool!(self, p => {
            let rows: Vec<(String, i64)> = sqlx::query_as("SELECT asset, MAX(deadline) FROM slo_results GROUP BY asset")
                .fetch_all(p)
                .await
                .map_err(sql("read SLO results"))?;
            rows.into_iter().map(|(a, t)| Ok((a, from_micros("deadline", t)?))).collect()
        })
    }

    async fn daemons(&self) -> Result<Vec<DaemonBeat>> {
        on_pool!(self, p => {
            let rows = sqlx::query("SELECT id, host, pid, started_at, heartbeat_at FROM daemons ORDER BY heartbeat_at DESC")
                .fetch_all(p)
                .await
                .map_err(sql("read daemons"))?;
            rows.iter().map(daemon_from).collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(redact("postgres://basin:s3cret@db:5432/meta"), "postgres://basin:***@db:5432/meta");
        assert_eq!(redact("postgres://basin@db/meta"), "postgres://basin@db/meta");
        assert_eq!(redact("sqlite://.basin/basin.db"), "sqlite://.basin/basin.db");
    }
}
