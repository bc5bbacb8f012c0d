//! The metadata store: everything Basin knows about its runs, kept in SQL (the data itself is
//! in Delta). One trait, [`MetaStore`], with a SQLite backend (the default: one file under the
//! project, WAL mode, a busy timeout) and a PostgreSQL backend (several daemons and workers on
//! several machines sharing one queue). Both run the same SQL where they can and the same test
//! suite.
//!
//! What it holds: runs (status, selection, partition, tags, launcher, attempt, parent run,
//! timestamps, failure category and message), their events and logs, materialisations, the
//! cursors of schedules and sensors, and daemon heartbeats. The schema is versioned
//! ([`migrations`]) and upgraded when a store is opened.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use basin_core::clock::Clock;
pub use basin_core::failure::FailureCategory;
use chrono::{DateTime, Utc};

pub mod migrations;
mod sql;

pub use sql::SqlStore;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the metadata store at {url}")]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("unsupported metadata store URL `{0}`: use sqlite://PATH or postgres://…")]
    Url(String),
    #[error(
        "the metadata store at {url} has schema version {found}, newer than this Basin knows ({known}); upgrade Basin"
    )]
    NewerSchema { url: String, found: i64, known: i64 },
    #[error("metadata store: {context}")]
    Sql {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("no run with id `{0}`")]
    NoSuchRun(String),
    #[error("run {id} is {status}, it cannot be started")]
    NotStartable { id: String, status: RunStatus },
    #[error("metadata store: unreadable value in column `{column}`: {detail}")]
    Corrupt { column: &'static str, detail: String },
}

impl Error {
    /// Whether the store could not be reached (or refused the credentials), as opposed to a
    /// store that answered something wrong.
    pub fn is_unreachable(&self) -> bool {
        match self {
            Error::Open { .. } => true,
            Error::Sql { source, .. } => {
                matches!(
                    source,
                    sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_)
                )
            }
            _ => false,
        }
    }
}

/// Where a run is in its life. `Queued` → `Starting` (claimed by a daemon, being launched) →
/// `Started` (a worker heartbeats it) → one of the three terminal states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RunStatus {
    Queued,
    Starting,
    Started,
    Success,
    Failure,
    Canceled,
}

impl RunStatus {
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Queued,
        RunStatus::Starting,
        RunStatus::Started,
        RunStatus::Success,
        RunStatus::Failure,
        RunStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "QUEUED",
            RunStatus::Starting => "STARTING",
            RunStatus::Started => "STARTED",
            RunStatus::Success => "SUCCESS",
            RunStatus::Failure => "FAILURE",
            RunStatus::Canceled => "CANCELED",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, RunStatus::Success | RunStatus::Failure | RunStatus::Canceled)
    }

    /// Held by a worker or a launching daemon: counted against the queue's limits and watched
    /// for heartbeats.
    pub fn is_in_flight(self) -> bool {
        matches!(self, RunStatus::Starting | RunStatus::Started)
    }
}

impl std::str::FromStr for RunStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        RunStatus::ALL.into_iter().find(|st| st.as_str().eq_ignore_ascii_case(s)).ok_or_else(|| {
            format!("unknown run status `{s}` (one of queued, starting, started, success, failure, canceled)")
        })
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run to record: queued for a daemon, or already started by the process creating it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    /// The selection terms as the user wrote them (`+silver.x`, `tag:nightly`).
    pub selection: Vec<String>,
    pub partition: Option<String>,
    /// `source=v3`, `kind=backfill`, `schedule=nightly`: what queue limits and filters see.
    pub tags: BTreeMap<String, String>,
    /// `in_process`, `subprocess` or `command`.
    pub launcher: String,
    /// Higher first; FIFO within one priority.
    pub priority: i64,
    /// 1 for a first attempt; a retry is `parent.attempt + 1` with `parent_run_id` set.
    pub attempt: i64,
    pub parent_run_id: Option<String>,
    pub full_refresh: bool,
    /// `Some(worker)`: the caller runs it now (`basin run`), so it starts `Started`;
    /// `None`: it is queued.
    pub started_by: Option<String>,
    /// A queued run is not claimed before this time (a retry's backoff).
    pub not_before: Option<DateTime<Utc>>,
}

impl NewRun {
    pub fn new(selection: Vec<String>, launcher: &str) -> Self {
        NewRun {
            selection,
            partition: None,
            tags: BTreeMap::new(),
            launcher: launcher.to_string(),
            priority: 0,
            attempt: 1,
            parent_run_id: None,
            full_refresh: false,
            started_by: None,
            not_before: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub id: String,
    pub status: RunStatus,
    pub selection: Vec<String>,
    pub partition: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub launcher: String,
    pub priority: i64,
    pub attempt: i64,
    pub parent_run_id: Option<String>,
    pub full_refresh: bool,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    /// Who holds it: `host:pid` of the worker, or the daemon that claimed it.
    pub worker: Option<String>,
    pub cancel_requested: bool,
    pub failure_category: Option<FailureCategory>,
    pub failure_message: Option<String>,
    /// Went through the queue (a daemon's run), as opposed to started by its own process.
    /// Only queued runs are retried by a daemon.
    pub queued: bool,
    /// A daemon has decided whether to retry this failed run (and queued the retry if so).
    pub retried: bool,
    pub not_before: Option<DateTime<Utc>>,
}

impl Run {
    pub fn duration(&self) -> Option<chrono::Duration> {
        Some(self.finished_at? - self.started_at?)
    }
}

/// How a run ended, as its worker (or whoever found it dead) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    Success,
    Failure { category: FailureCategory, message: String },
    Canceled { message: String },
}

impl Finish {
    pub fn status(&self) -> RunStatus {
        match self {
            Finish::Success => RunStatus::Success,
            Finish::Failure { .. } => RunStatus::Failure,
            Finish::Canceled { .. } => RunStatus::Canceled,
        }
    }
}

/// What a worker learns from its heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// Carry on.
    Continue,
    /// Someone asked to cancel the run: stop and finish it as canceled.
    Cancel,
    /// The run is no longer held by anyone (it was finished, or found dead and failed):
    /// stop without reporting.
    Gone(RunStatus),
}

/// What `basin cancel` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancel {
    /// It was queued (or its worker was gone): canceled now.
    Canceled,
    /// Its worker was asked to stop; it will finish the run as canceled.
    Requested,
    /// It had already ended.
    AlreadyFinished(RunStatus),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }

    fn parse(s: &str) -> Level {
        match s {
            "debug" => Level::Debug,
            "warn" => Level::Warn,
            "error" => Level::Error,
            _ => Level::Info,
        }
    }
}

/// One thing that happened in a run: `run_started`, `asset_started`, `asset_materialized`,
/// `asset_failed`, `asset_skipped`, `run_success`, `run_failure`, `run_canceled`, or `log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub kind: String,
    pub level: Level,
    pub asset: Option<String>,
    pub message: String,
}

impl NewEvent {
    pub fn new(kind: &str, level: Level, asset: Option<&str>, message: impl Into<String>) -> Self {
        NewEvent { kind: kind.to_string(), level, asset: asset.map(str::to_string), message: message.into() }
    }

    pub fn log(level: Level, message: impl Into<String>) -> Self {
        NewEvent::new("log", level, None, message)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Increasing in the order events were recorded.
    pub id: i64,
    pub run_id: String,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub level: Level,
    pub asset: Option<String>,
    pub message: String,
}

/// One commit of one asset by one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Materialization {
    pub run_id: String,
    pub asset: String,
    pub partition: Option<String>,
    pub delta_version: Option<i64>,
    pub rows: i64,
    pub bytes: Option<i64>,
    pub duration_ms: i64,
    pub sql_hash: Option<String>,
    pub schema_hash: Option<String>,
    /// Set by the store when recorded.
    pub at: DateTime<Utc>,
}

/// What one check found about one version of an asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// The run that evaluated it; `None` for `basin check` outside a run.
    pub run_id: Option<String>,
    pub asset: String,
    /// `not_null(customer_id)`.
    pub check_name: String,
    pub check_type: String,
    /// `error` or `warn`.
    pub severity: String,
    pub passed: bool,
    /// What was found (`12 rows`, `0.031`), and what was allowed (`0 rows`, `<= 0.01`).
    pub observed: String,
    pub threshold: String,
    /// Up to 20 keys of failing rows.
    pub samples: Vec<String>,
    pub delta_version: Option<i64>,
    pub duration_ms: i64,
    pub at: DateTime<Utc>,
}

/// One statement served by the SQL endpoint (`basin serve`), as `basin.query_log` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryLogEntry {
    pub at: DateTime<Utc>,
    pub user: String,
    pub role: String,
    /// `postgres` (the wire protocol) or `http`.
    pub protocol: String,
    pub query: String,
    pub duration_ms: i64,
    pub rows: i64,
    /// Bytes the query's scans read from the lake's files, where measured.
    pub bytes_scanned: Option<i64>,
    /// The SQLSTATE and message of a failed statement.
    pub sqlstate: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckFilter {
    pub asset: Option<String>,
    pub run_id: Option<String>,
    pub limit: Option<i64>,
}

/// Which runs `runs` lists (newest first).
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub status: Option<RunStatus>,
    /// Runs with an event about this asset.
    pub asset: Option<String>,
    pub since: Option<DateTime<Utc>>,
    /// Runs with this tag (`key`, `value`).
    pub tag: Option<(String, String)>,
    /// Runs whose id contains this (`basin runs show 7f3e9a2c`: a few characters of a long id).
    pub id_part: Option<String>,
    pub limit: Option<i64>,
}

/// The run queue's limits: at most `max_concurrent_runs` in flight, and at most
/// `tag_limits["source=v3"]` in flight among runs tagged `source=v3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueLimits {
    pub max_concurrent_runs: usize,
    pub tag_limits: BTreeMap<String, usize>,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits { max_concurrent_runs: 8, tag_limits: BTreeMap::new() }
    }
}

impl QueueLimits {
    /// Would starting a run with `tags` stay within the limits, given the tags of the runs in
    /// flight?
    pub fn admits(&self, tags: &BTreeMap<String, String>, in_flight: &[BTreeMap<String, String>]) -> bool {
        if in_flight.len() >= self.max_concurrent_runs {
            return false;
        }
        tags.iter().all(|(k, v)| {
            let key = format!("{k}={v}");
            match self.tag_limits.get(&key) {
                None => true,
                Some(&limit) => in_flight.iter().filter(|t| t.get(k) == Some(v)).count() < limit,
            }
        })
    }
}

/// What a run writes, as far as the queue can tell: the assets its selection resolves to, in
/// one partition or in all of them. Two runs whose footprints overlap would race for the same
/// Delta commits (one of them losing its work), so the queue starts the later one only once
/// the earlier has ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Footprint {
    pub assets: BTreeSet<String>,
    /// `None`: every partition (or an unpartitioned run).
    pub partition: Option<String>,
}

impl Footprint {
    pub fn overlaps(&self, other: &Footprint) -> bool {
        let same_partitions = match (&self.partition, &other.partition) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        same_partitions && !self.assets.is_disjoint(&other.assets)
    }
}

/// How the queue learns a run's footprint (the daemon resolves selections on its project).
pub type FootprintOf<'a> = &'a (dyn Fn(&Run) -> Footprint + Sync);

/// A daemon's heartbeat, so others (and `basin status`) can see who is alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonBeat {
    pub id: String,
    pub host: String,
    pub pid: i64,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
}

/// The cursor a watchdog cycle is claimed through (see [`MetaStore::watchdog_cycle`]).
pub const WATCHDOG_CURSOR: &str = "watchdog:cycle";

/// The watchdog's class of one subject (an asset, or `schedule:NAME`), as `basin.asset_status`
/// shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchStatus {
    pub subject: String,
    /// `healthy`, `running_ok`, `running_long`, `zombie`, `hard_failure`, …
    pub class: String,
    pub reason: String,
    pub run_id: Option<String>,
    /// When it entered this class (set by the store from the cycle that first saw it).
    pub since: DateTime<Utc>,
    /// The cycle that last looked at it.
    pub checked_at: DateTime<Utc>,
}

/// A change of class, or an action the watchdog took (`action` set), as
/// `basin.watchdog_events` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub subject: String,
    /// `None` the first time the watchdog sees the subject.
    pub from_class: Option<String>,
    pub to_class: String,
    pub reason: String,
    pub run_id: Option<String>,
    /// `relaunch` (a run queued for a transient failure), `escalate` (it stopped relaunching);
    /// `None` for a change of class.
    pub action: Option<String>,
}

/// An alert open on a channel for a subject: the class it fired for, and whether it still
/// fires (a resolved one is kept with `firing = false`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAlert {
    pub channel: String,
    pub subject: String,
    pub class: String,
    pub firing: bool,
    pub fired_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One notification's delivery (or failure to deliver), as `basin.alert_deliveries` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertDelivery {
    pub at: DateTime<Utc>,
    pub channel: String,
    pub dedup_key: String,
    /// `firing`, `resolved`, `test` or `heartbeat`.
    pub state: String,
    pub subject: String,
    pub class: String,
    pub attempts: i64,
    pub delivered: bool,
    /// The last attempt's error, secrets left out.
    pub error: Option<String>,
}

/// One day of one asset's freshness SLO, as `basin.slo_results` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SloResult {
    pub asset: String,
    /// The local day judged, `YYYY-MM-DD`.
    pub day: String,
    pub deadline: DateTime<Utc>,
    /// `met`, `met_late` or `missed`.
    pub verdict: String,
    /// The build that met it (or came late).
    pub built_at: Option<DateTime<Utc>>,
    pub judged_at: DateTime<Utc>,
}

/// The metadata store. Every method is one atomic step: safe to call from several processes
/// on one SQLite file, or several machines on one PostgreSQL database.
#[async_trait]
pub trait MetaStore: Send + Sync + fmt::Debug {
    /// Record a run (queued, or started by the caller) and its first event.
    async fn create_run(&self, run: NewRun) -> Result<Run>;
    /// Record several runs in one transaction: all of them or none.
    async fn create_runs(&self, runs: Vec<NewRun>) -> Result<Vec<Run>>;
    async fn run(&self, id: &str) -> Result<Option<Run>>;
    async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>>;
    /// A worker takes a queued or claimed run; refused if it was canceled or finished.
    async fn start_run(&self, id: &str, worker: &str) -> Result<Run>;
    async fn heartbeat(&self, id: &str) -> Result<Beat>;
    /// End a run that has not ended yet; `false` if it already had (found dead, canceled).
    async fn finish_run(&self, id: &str, finish: &Finish) -> Result<bool>;
    async fn request_cancel(&self, id: &str) -> Result<Cancel>;
    /// Fail every in-flight run with no heartbeat since `stale_before` as `worker_died`;
    /// returns them as they are now.
    async fn reap_dead(&self, stale_before: DateTime<Utc>) -> Result<Vec<Run>>;
    /// Take up to `max` queued runs that fit the limits and whose footprint overlaps no run in
    /// flight (nor one claimed before it), highest priority first and FIFO within a priority,
    /// marking them `Starting` for `claimer`. Two claimers never get the same run.
    async fn claim_queued(
        &self,
        limits: &QueueLimits,
        claimer: &str,
        max: usize,
        footprint: FootprintOf<'_>,
    ) -> Result<Vec<Run>>;
    /// Move cursor `cursor` from `expected` (`None`: not set yet) to `value` and queue `run`,
    /// in one transaction: both or neither. `None` if the cursor had moved (another daemon
    /// took the tick).
    async fn enqueue_tick(&self, cursor: &str, expected: Option<&str>, value: &str, run: NewRun)
    -> Result<Option<Run>>;
    /// Queue the next attempt of failed run `parent`, not before `not_before`; once only
    /// (`None` if it was already retried, or is not a failed queued run).
    async fn retry_run(&self, parent: &str, not_before: DateTime<Utc>) -> Result<Option<Run>>;
    /// Failed queued runs no retry was decided for yet, oldest first.
    async fn unretried_failures(&self) -> Result<Vec<Run>>;
    /// Record that failed run `id` will not be retried, so it is not considered again.
    async fn settle_failure(&self, id: &str) -> Result<()>;

    async fn add_events(&self, run_id: &str, events: &[NewEvent]) -> Result<()>;
    async fn events(&self, run_id: &str) -> Result<Vec<Event>>;

    /// Record what checks found (their `at` is the store's clock).
    async fn add_check_results(&self, results: &[CheckResult]) -> Result<()>;
    /// Check results, newest first.
    async fn check_results(&self, filter: &CheckFilter) -> Result<Vec<CheckResult>>;
    /// Each asset's checks whose latest result is a failure of severity `error`.
    async fn failing_checks(&self) -> Result<Vec<CheckResult>>;
    async fn record_materialization(&self, m: &Materialization) -> Result<()>;
    /// Record statements served by the SQL endpoint (each keeps its own `at`).
    async fn add_query_log(&self, entries: &[QueryLogEntry]) -> Result<()>;
    /// The SQL endpoint's statements, newest first.
    async fn query_log(&self, limit: i64) -> Result<Vec<QueryLogEntry>>;
    /// Newest first; of one asset, or of all.
    async fn materializations(&self, asset: Option<&str>, limit: i64) -> Result<Vec<Materialization>>;

    async fn cursor(&self, name: &str) -> Result<Option<String>>;
    /// Every cursor whose name starts with `prefix`, by name.
    async fn cursors(&self, prefix: &str) -> Result<BTreeMap<String, String>>;
    /// When each asset was last materialised, by asset.
    async fn latest_materializations(&self) -> Result<BTreeMap<String, DateTime<Utc>>>;
    /// Runs queued or in flight.
    async fn active_runs(&self) -> Result<Vec<Run>>;
    /// How many runs the store holds, by status and failure category (`None` for runs that did
    /// not fail): what the metrics endpoint counts.
    async fn run_counts(&self) -> Result<Vec<(String, Option<String>, i64)>>;
    /// Each asset's latest `asset_started`, `asset_materialized`, `asset_failed` or
    /// `asset_skipped` event: how its last build went, or that one is going.
    async fn latest_asset_events(&self) -> Result<Vec<Event>>;
    /// Set a cursor only if it still holds `expected` (`None`: not set yet); `false` if another
    /// process moved it first. Schedules use it so that a tick is taken once.
    async fn advance_cursor(&self, name: &str, expected: Option<&str>, value: &str) -> Result<bool>;

    async fn daemon_heartbeat(&self, beat: &DaemonBeat) -> Result<()>;
    async fn daemons(&self) -> Result<Vec<DaemonBeat>>;

    /// One watchdog cycle, taken by one daemon: moves cursor `cursor` from `expected` to
    /// `value` and, in the same transaction, stores `statuses` (every subject's class now) and
    /// a [`WatchEvent`] for each subject whose class changed. `None` when the cursor had
    /// moved (another daemon took this cycle): nothing is written.
    async fn watchdog_cycle(
        &self,
        cursor: &str,
        expected: Option<&str>,
        value: &str,
        statuses: &[WatchStatus],
    ) -> Result<Option<Vec<WatchEvent>>>;
    /// The stored class of every subject.
    async fn watch_statuses(&self) -> Result<Vec<WatchStatus>>;
    /// The newest `limit` transitions and actions, newest first.
    async fn watch_events(&self, limit: i64) -> Result<Vec<WatchEvent>>;
    /// Record actions (the `id` given is ignored).
    async fn add_watch_actions(&self, actions: &[WatchEvent]) -> Result<()>;
    /// Actions at or after `since`, oldest first.
    async fn watch_actions(&self, since: DateTime<Utc>) -> Result<Vec<WatchEvent>>;
    async fn open_alerts(&self) -> Result<Vec<OpenAlert>>;
    async fn set_alert(&self, alert: &OpenAlert) -> Result<()>;
    async fn add_alert_delivery(&self, delivery: &AlertDelivery) -> Result<()>;
    /// The newest `limit` deliveries, newest first.
    async fn alert_deliveries(&self, limit: i64) -> Result<Vec<AlertDelivery>>;
    /// Deliveries counted by (channel, state, delivered).
    async fn alert_delivery_counts(&self) -> Result<Vec<(String, String, bool, i64)>>;
    /// Store SLO judgements, each replacing the one of its (asset, day).
    async fn record_slo_results(&self, results: &[SloResult]) -> Result<()>;
    /// Judgements whose deadline is at or after `since`, by asset then day.
    async fn slo_results(&self, since: DateTime<Utc>) -> Result<Vec<SloResult>>;
    /// Each asset's latest judged deadline.
    async fn slo_latest(&self) -> Result<BTreeMap<String, DateTime<Utc>>>;
}

/// Open the store at `url` (`sqlite://PATH`, relative to `project_dir`; or `postgres://…`),
/// creating and upgrading its schema as needed.
pub async fn open(url: &str, project_dir: &Path, clock: Arc<dyn Clock>) -> Result<Arc<dyn MetaStore>> {
    Ok(Arc::new(SqlStore::open(url, project_dir, clock).await?))
}

/// `host:pid` of this process: how a worker names itself.
pub fn this_worker() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    format!("{host}:{}", std::process::id())
}
