//! The run engine: one run of a selection, whoever starts it (`basin run`, `basin ingest`, a
//! daemon's worker or in-process task, a backfill, the demo). It orders the assets, builds
//! independent ones concurrently (bounded), waits for what each reads (through views outside
//! the selection too), skips everything downstream of a failure or of a failed `error` check
//! and says why, records events, materialisations and check results in the metadata store, and
//! stops on cancel. One asset's panic fails that asset, not the run.
//!
//! The work on tables is a [`Materializer`]'s (the engine's, wired by the binary); progress goes
//! out as typed [`RunEvent`]s to whoever subscribes (the CLI's rendering; later lineage,
//! metrics and the UI).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use basin_core::failure::FailureCategory;
use basin_core::model::Materialization;
use basin_core::outcome::{Action, CheckOutcome, Checked, Materialized};
use basin_core::partition::DayRange;
use basin_core::{AssetKey, Project};
use basin_meta::{Finish, Level};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::record::Recorder;

/// The run tag that turns the guardrail on destructive writes off (`--allow-shrink`).
pub const ALLOW_SHRINK_TAG: &str = "allow_shrink";
/// The run tag listing the source tables (bronze keys, comma-separated) whose schema change the
/// run accepts.
pub const ACCEPT_SCHEMA_CHANGE_TAG: &str = "accept_schema_change";

pub use basin_core::work::{AssetError, Job, Materializer, Progress, RunSpec, RunWork};

/// What happens in a run, as it happens.
#[derive(Debug, Clone)]
pub enum RunEvent {
    RunStarted {
        run_id: String,
        assets: usize,
        concurrency: usize,
    },
    AssetStarted {
        key: AssetKey,
    },
    /// An ingestion's rows so far (sent while it reads).
    AssetProgress {
        key: AssetKey,
        rows: u64,
        chunks_done: u64,
        chunks: u64,
    },
    /// A source table landed in bronze.
    AssetLanded {
        built: Materialized,
    },
    /// A model was built.
    AssetBuilt {
        built: Materialized,
    },
    CheckEvaluated {
        key: AssetKey,
        outcome: CheckOutcome,
    },
    AssetFailed {
        key: AssetKey,
        error: AssetError,
    },
    AssetSkipped {
        key: AssetKey,
        reason: String,
    },
    RunCanceled,
    RunFinished {
        run_id: String,
        finish: Finish,
        elapsed: Duration,
    },
}

impl RunEvent {
    /// The event as one JSON object (`--format json`, one per line).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let built = |event: &str, m: &Materialized| {
            json!({
                "event": event,
                "asset": m.key.to_string(),
                "rows": m.rows,
                "version": m.version,
                "duration_ms": m.duration.as_millis() as u64,
                "detail": m.describe(),
            })
        };
        match self {
            RunEvent::RunStarted { run_id, assets, concurrency } => {
                json!({"event": "run_started", "run_id": run_id, "assets": assets, "concurrency": concurrency})
            }
            RunEvent::AssetStarted { key } => json!({"event": "asset_started", "asset": key.to_string()}),
            RunEvent::AssetProgress { key, rows, chunks_done, chunks } => json!({
                "event": "asset_progress", "asset": key.to_string(), "rows": rows,
                "chunks_done": chunks_done, "chunks": chunks,
            }),
            RunEvent::AssetLanded { built: m } => built("asset_landed", m),
            RunEvent::AssetBuilt { built: m } => built("asset_built", m),
            RunEvent::CheckEvaluated { key, outcome: o } => json!({
                "event": "check_evaluated", "asset": key.to_string(), "check": o.name,
                "severity": o.severity.as_str(), "passed": o.passed, "observed": o.observed,
                "threshold": o.threshold, "samples": o.samples,
            }),
            RunEvent::AssetFailed { key, error } => json!({
                "event": "asset_failed", "asset": key.to_string(), "category": error.category.to_string(),
                "error": error.message,
            }),
            RunEvent::AssetSkipped { key, reason } => {
                json!({"event": "asset_skipped", "asset": key.to_string(), "reason": reason})
            }
            RunEvent::RunCanceled => json!({"event": "run_canceled"}),
            RunEvent::RunFinished { run_id, finish, elapsed } => {
                let (status, category, message) = match finish {
                    Finish::Success => ("success", None, None),
                    Finish::Failure { category, message } => ("failure", Some(category.to_string()), Some(message)),
                    Finish::Canceled { message } => ("canceled", None, Some(message)),
                };
                json!({
                    "event": "run_finished", "run_id": run_id, "status": status, "category": category,
                    "message": message, "elapsed_ms": elapsed.as_millis() as u64,
                })
            }
        }
    }
}

/// A subscriber to a run's events. Called on the run's task: it must not block.
pub type Subscriber = Arc<dyn Fn(&RunEvent) + Send + Sync>;

/// Where a run's events go.
#[derive(Clone, Default)]
pub struct Events {
    subscribers: Vec<Subscriber>,
}

impl Events {
    pub fn to(subscriber: Subscriber) -> Events {
        Events { subscribers: vec![subscriber] }
    }

    pub fn subscribe(&mut self, subscriber: Subscriber) {
        self.subscribers.push(subscriber);
    }

    pub fn emit(&self, event: &RunEvent) {
        for s in &self.subscribers {
            s(event);
        }
    }
}

/// How one run goes: its bound on concurrent builds and who follows it.
#[derive(Clone)]
pub struct RunOptions {
    pub concurrency: usize,
    pub events: Events,
}

/// How an asset ended in a run.
#[derive(Debug, Clone)]
pub enum Outcome {
    Built(Materialized),
    /// Committed, but an `error` check failed: downstream assets are skipped.
    CheckFailed(Materialized, String),
    Failed(AssetError),
    Skipped(String),
}

/// A run's result, as the CLI renders it.
#[derive(Debug)]
pub struct Report {
    run_id: String,
    /// The selection in build order.
    order: Vec<AssetKey>,
    outcomes: BTreeMap<AssetKey, Outcome>,
    /// In build order, the failures (not the skips they caused).
    failures: Vec<(AssetKey, AssetError)>,
    canceled: bool,
    /// What the checks of each built asset found.
    checked: BTreeMap<AssetKey, Checked>,
    /// What stopped the run before any asset (a materializer that could not start).
    aborted: Option<AssetError>,
    elapsed: Duration,
}

impl Report {
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// What stopped the whole run before it built anything.
    pub fn aborted(&self) -> Option<&AssetError> {
        self.aborted.as_ref()
    }

    /// What the checks of `key` found, if it was built.
    pub fn checks(&self, key: &AssetKey) -> Option<&Checked> {
        self.checked.get(key)
    }

    pub fn canceled(&self) -> bool {
        self.canceled
    }

    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// Whether something failed other than checks (and what they stopped).
    pub fn failed_otherwise(&self) -> bool {
        self.canceled || self.aborted.is_some() || self.outcomes.values().any(|o| matches!(o, Outcome::Failed(_)))
    }

    pub fn failed(&self) -> bool {
        self.canceled || self.aborted.is_some() || self.outcomes.values().any(|o| !matches!(o, Outcome::Built(_)))
    }

    /// The category of the run's first failure, if it failed.
    pub fn failure_category(&self) -> Option<FailureCategory> {
        match self.finish() {
            Finish::Failure { category, .. } => Some(category),
            _ => None,
        }
    }

    /// How the run ends in the metadata store: canceled, failed as its first failure, or done.
    pub fn finish(&self) -> Finish {
        if let Some(e) = &self.aborted {
            return Finish::Failure { category: e.category, message: e.message.clone() };
        }
        if self.canceled {
            return Finish::Canceled { message: "canceled while running".into() };
        }
        match failures_finish(&self.failures) {
            Finish::Success if self.failed() => {
                Finish::Failure { category: FailureCategory::Other, message: "some assets were skipped".into() }
            }
            finish => finish,
        }
    }

    /// Each asset of the selection with how it ended, in build order.
    pub fn outcomes(&self) -> impl Iterator<Item = (&AssetKey, &Outcome)> {
        self.order.iter().filter_map(|k| self.outcomes.get(k).map(|o| (k, o)))
    }

    /// What was built (committed, whatever its checks found), in key order.
    pub fn built(&self) -> impl Iterator<Item = &Materialized> {
        self.outcomes.values().filter_map(|o| match o {
            Outcome::Built(m) | Outcome::CheckFailed(m, _) => Some(m),
            _ => None,
        })
    }

    /// Assets whose `error` checks failed, with what failed.
    pub fn check_failures(&self) -> impl Iterator<Item = (&AssetKey, &str)> {
        self.outcomes.iter().filter_map(|(k, o)| match o {
            Outcome::CheckFailed(_, why) => Some((k, why.as_str())),
            _ => None,
        })
    }

    /// Assets skipped, with the reason.
    pub fn skipped(&self) -> impl Iterator<Item = (&AssetKey, &str)> {
        self.outcomes.iter().filter_map(|(k, o)| match o {
            Outcome::Skipped(why) => Some((k, why.as_str())),
            _ => None,
        })
    }
}

/// How a run with these failures (in the order they happened) ends: as its first, or done.
pub fn failures_finish(failures: &[(AssetKey, AssetError)]) -> Finish {
    match failures {
        [] => Finish::Success,
        [(key, error), rest @ ..] => {
            let more = if rest.is_empty() { String::new() } else { format!(" (and {} more failed)", rest.len()) };
            Finish::Failure { category: error.category, message: format!("{key}: {}{more}", error.message) }
        }
    }
}

/// The run `recorder` records: materialise `keys` (a selection; keys the project's graph does
/// not know, such as tables discovered in a source, come last), then end the run in the
/// metadata store with its outcome.
pub async fn run(
    project: &Project,
    materializer: &dyn Materializer,
    recorder: Recorder,
    keys: &[AssetKey],
    options: RunOptions,
) -> crate::Result<Report> {
    let started = Instant::now();
    let report = match spec(project, &recorder, keys) {
        Ok(spec) => match materializer.begin(&spec).await {
            Ok(work) => drive(project, work, &recorder, spec, &options).await,
            Err(e) => Report::stopped(spec, e),
        },
        Err(e) => Report::stopped(
            RunSpec {
                run_id: recorder.id().to_string(),
                assets: Vec::new(),
                full_refresh: false,
                partition: None,
                allow_shrink: false,
                accept_schema_change: Vec::new(),
            },
            e,
        ),
    };
    let report = Report { elapsed: started.elapsed(), ..report };
    let finish = report.finish();
    let id = recorder.id().to_string();
    let ended = recorder.finish(finish.clone()).await?;
    if !ended {
        tracing::warn!(run_id = %id, "the run had already been ended in the metadata store (canceled or taken for dead)");
    }
    options.events.emit(&RunEvent::RunFinished { run_id: id, finish, elapsed: report.elapsed });
    Ok(report)
}

impl Report {
    fn stopped(spec: RunSpec, error: AssetError) -> Report {
        Report {
            run_id: spec.run_id,
            order: spec.assets,
            outcomes: BTreeMap::new(),
            failures: Vec::new(),
            canceled: false,
            checked: BTreeMap::new(),
            aborted: Some(error),
            elapsed: Duration::ZERO,
        }
    }
}

fn spec(project: &Project, recorder: &Recorder, keys: &[AssetKey]) -> Result<RunSpec, AssetError> {
    let run = recorder.run();
    let partition = match run.partition.as_deref() {
        Some(p) => Some(DayRange::parse(p).map_err(|e| AssetError::new(e, FailureCategory::BadQuery))?),
        None => None,
    };
    let mut assets: Vec<AssetKey> = project.graph.order(keys.iter()).into_iter().cloned().collect();
    let known: BTreeSet<AssetKey> = assets.iter().cloned().collect();
    assets.extend(keys.iter().filter(|k| !known.contains(*k)).cloned());
    Ok(RunSpec {
        run_id: recorder.id().to_string(),
        assets,
        full_refresh: run.full_refresh,
        partition,
        allow_shrink: run.tags.get(ALLOW_SHRINK_TAG).is_some_and(|v| v == "true"),
        accept_schema_change: run
            .tags
            .get(ACCEPT_SCHEMA_CHANGE_TAG)
            .map(|v| v.split(',').filter_map(|k| AssetKey::parse(k.trim())).collect())
            .unwrap_or_default(),
    })
}

type Done = (AssetKey, Result<(Materialized, Checked), AssetError>);

async fn drive(
    project: &Project,
    work: Arc<dyn RunWork>,
    recorder: &Recorder,
    spec: RunSpec,
    options: &RunOptions,
) -> Report {
    let events = &options.events;
    let concurrency = options.concurrency.max(1);
    events.emit(&RunEvent::RunStarted { run_id: spec.run_id.clone(), assets: spec.assets.len(), concurrency });
    let cancel = recorder.canceled();
    tokio::pin!(cancel);
    let mut canceled = false;
    let mut failures = Vec::new();
    let selected: BTreeSet<&AssetKey> = spec.assets.iter().collect();
    let waits_for: BTreeMap<&AssetKey, Vec<&AssetKey>> =
        spec.assets.iter().map(|k| (k, waits_for(project, k, &selected))).collect();

    let mut outcomes: BTreeMap<AssetKey, Outcome> = BTreeMap::new();
    let mut checked_all: BTreeMap<AssetKey, Checked> = BTreeMap::new();
    let mut pending: Vec<AssetKey> = spec.assets.clone();
    let mut running: JoinSet<Done> = JoinSet::new();
    let mut tasks: HashMap<tokio::task::Id, AssetKey> = HashMap::new();
    loop {
        // Settle what can be decided without running: skip assets whose upstream did not build.
        let mut i = 0;
        while i < pending.len() && running.len() < concurrency {
            let key = &pending[i];
            let ups = &waits_for[key];
            if let Some(bad) =
                ups.iter().find(|u| matches!(outcomes.get(**u), Some(o) if !matches!(o, Outcome::Built(_))))
            {
                let reason = match &outcomes[*bad] {
                    Outcome::Failed(_) => format!("upstream {bad} failed"),
                    Outcome::CheckFailed(_, why) => format!("upstream check failed: {bad} {why}"),
                    _ => format!("upstream {bad} was skipped"),
                };
                let key = pending.remove(i);
                recorder.event("asset_skipped", Level::Warn, Some(&key.to_string()), reason.clone()).await;
                events.emit(&RunEvent::AssetSkipped { key: key.clone(), reason: reason.clone() });
                outcomes.insert(key, Outcome::Skipped(reason));
                continue;
            }
            if ups.iter().all(|u| outcomes.contains_key(*u)) {
                let key = pending.remove(i);
                recorder.event("asset_started", Level::Info, Some(&key.to_string()), "started").await;
                events.emit(&RunEvent::AssetStarted { key: key.clone() });
                let progress = {
                    let (events, key) = (events.clone(), key.clone());
                    Arc::new(move |p: Progress| {
                        events.emit(&RunEvent::AssetProgress {
                            key: key.clone(),
                            rows: p.rows,
                            chunks_done: p.chunks_done,
                            chunks: p.chunks,
                        })
                    })
                };
                let job = Job { earlier_rows: earlier_rows(project, recorder, &key).await, key, progress };
                let span = tracing::info_span!("asset", run_id = %spec.run_id, asset = %job.key);
                let work = work.clone();
                let key = job.key.clone();
                let handle = running.spawn(
                    async move {
                        let key = job.key.clone();
                        (key, work.materialize(job).await)
                    }
                    .instrument(span),
                );
                tasks.insert(handle.id(), key);
                continue;
            }
            i += 1;
        }
        let done = tokio::select! {
            done = running.join_next_with_id() => done,
            () = &mut cancel, if !canceled => {
                // Commits are atomic: aborting a build leaves its table at its last version. A
                // build busy on the CPU stops at its next yield; the run does not wait for it.
                canceled = true;
                running.abort_all();
                running.detach_all();
                events.emit(&RunEvent::RunCanceled);
                for key in pending.drain(..) {
                    outcomes.insert(key, Outcome::Skipped("run canceled".into()));
                }
                for key in &spec.assets {
                    outcomes.entry(key.clone()).or_insert_with(|| Outcome::Skipped("run canceled".into()));
                }
                continue;
            }
        };
        let Some(done) = done else { break };
        let (key, result) = match done {
            Ok((id, (key, result))) => {
                tasks.remove(&id);
                (key, result)
            }
            // One asset's panic fails that asset; the run goes on with what does not need it.
            Err(e) => {
                let Some(key) = tasks.remove(&e.id()) else { continue };
                let message = if e.is_panic() {
                    format!("internal error (a bug in Basin): {}", panic_message(e.into_panic()))
                } else {
                    "its task was stopped".to_string()
                };
                (key, Err(AssetError::new(message, FailureCategory::Other)))
            }
        };
        match result {
            Ok((m, checked)) => {
                let event = match m.action {
                    Action::Ingested { .. } => RunEvent::AssetLanded { built: m.clone() },
                    _ => RunEvent::AssetBuilt { built: m.clone() },
                };
                record_built(recorder, project, &m).await;
                events.emit(&event);
                recorder.checks(&key, m.version, &checked).await;
                for outcome in &checked.outcomes {
                    events.emit(&RunEvent::CheckEvaluated { key: key.clone(), outcome: outcome.clone() });
                }
                work.built(&key).await;
                let blocking = checked.blocking_reason();
                checked_all.insert(key.clone(), checked);
                match blocking {
                    Some(why) => {
                        failures.push((
                            key.clone(),
                            AssetError::new(format!("check failed: {why}"), FailureCategory::CheckFailed),
                        ));
                        outcomes.insert(key, Outcome::CheckFailed(m, why));
                    }
                    None => {
                        outcomes.insert(key, Outcome::Built(m));
                    }
                }
            }
            Err(error) => {
                recorder
                    .event(
                        "asset_failed",
                        Level::Error,
                        Some(&key.to_string()),
                        format!("{}: {}", error.category, error.message),
                    )
                    .await;
                events.emit(&RunEvent::AssetFailed { key: key.clone(), error: error.clone() });
                failures.push((key.clone(), error.clone()));
                outcomes.insert(key, Outcome::Failed(error));
            }
        }
    }
    Report {
        run_id: spec.run_id,
        order: spec.assets,
        outcomes,
        failures,
        canceled,
        checked: checked_all,
        aborted: None,
        elapsed: Duration::ZERO,
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// Rows of `key`'s earlier materialisations, newest first, when one of its checks judges them.
async fn earlier_rows(project: &Project, recorder: &Recorder, key: &AssetKey) -> Vec<i64> {
    if !project.checks.get(key).is_some_and(|specs| specs.iter().any(|s| s.reads_history())) {
        return Vec::new();
    }
    match recorder.store().materializations(Some(&key.to_string()), 31).await {
        Ok(history) => history.into_iter().map(|m| m.rows).collect(),
        Err(e) => {
            tracing::warn!(asset = %key, "cannot read materialisations for checks: {e}");
            Vec::new()
        }
    }
}

/// The selected assets `key` must wait for: its selected upstreams, and those it reads
/// through views outside the selection (a view is evaluated when read, so it shows whatever
/// its own upstreams hold at that moment).
fn waits_for<'a>(project: &'a Project, key: &AssetKey, selected: &BTreeSet<&AssetKey>) -> Vec<&'a AssetKey> {
    let mut out = Vec::new();
    let mut stack = project.graph.upstream(key);
    let mut seen = BTreeSet::new();
    while let Some(up) = stack.pop() {
        if up == key || !seen.insert(up) {
            continue;
        }
        if selected.contains(up) {
            out.push(up);
        } else if project.models.get(up).is_some_and(|m| m.config.materialized == Materialization::View) {
            stack.extend(project.graph.upstream(up));
        }
    }
    out.sort();
    out
}

/// The run's record of a built asset: an event, and a materialisation when it committed.
async fn record_built(recorder: &Recorder, project: &Project, m: &Materialized) {
    let asset = m.key.to_string();
    recorder.event("asset_materialized", Level::Info, Some(&asset), m.describe()).await;
    if m.version.is_some() {
        recorder
            .materialized(&basin_meta::Materialization {
                run_id: recorder.id().to_string(),
                asset,
                partition: m.partition().map(str::to_string),
                delta_version: m.version.map(|v| v as i64),
                rows: m.rows as i64,
                bytes: None,
                duration_ms: m.duration.as_millis() as i64,
                sql_hash: project.models.get(&m.key).map(|model| model.sql_hash()),
                schema_hash: None,
                at: chrono::Utc::now(),
            })
            .await;
    }
}
