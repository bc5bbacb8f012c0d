//! What needs a person, read from the metadata store (`basin status`): the daemons and whether
//! they still beat, each schedule's last tick against the one due (a missed tick: no daemon
//! queued it), the queue and the runs in flight, and every asset with its class:
//! `healthy`, `running_ok`, `running_long` (building for longer than its usual duration,
//! p95 of its recent builds, times a factor), `zombie` (building in a run whose worker stopped
//! heartbeating), `backfilling`, `retrying` (its last build failed and a retry is queued),
//! `hard_failure` (its last build failed and nothing will retry it), `failing_checks` (an
//! `error` check failed on its current data), `stale_no_run` (its last run skipped it), or
//! `never_built`. The daemon's watchdog ([`crate::watchdog`]) stores these classes every
//! cycle; `basin status` computes them afresh.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use basin_core::daemon::Schedule;
use basin_core::failure::FailureCategory;
use basin_meta::{DaemonBeat, MetaStore, Run, RunStatus};
use chrono::{DateTime, Utc};

/// The tag of a run the watchdog queued to relaunch a failed one: the failed run's id.
pub const RELAUNCH_OF: &str = "relaunch_of";

/// How an asset stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    Zombie,
    HardFailure,
    FailingChecks,
    /// It missed its freshness SLO: its latest deadline passed without a build.
    Late,
    Retrying,
    /// Its last run did not build it (an upstream failed or was skipped, the run was
    /// canceled): its data is older than the run meant it to be.
    StaleNoRun,
    RunningLong,
    NeverBuilt,
    Backfilling,
    RunningOk,
    Healthy,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Zombie => "zombie",
            Class::HardFailure => "hard_failure",
            Class::RunningLong => "running_long",
            Class::Backfilling => "backfilling",
            Class::FailingChecks => "failing_checks",
            Class::Late => "late",
            Class::Retrying => "retrying",
            Class::StaleNoRun => "stale_no_run",
            Class::NeverBuilt => "never_built",
            Class::RunningOk => "running_ok",
            Class::Healthy => "healthy",
        }
    }

    /// Whether a person must act: nothing will mend it by itself.
    pub fn needs_a_human(self) -> bool {
        matches!(self, Class::HardFailure | Class::FailingChecks | Class::Zombie | Class::Late)
    }
}

/// How the classes are judged.
#[derive(Debug, Clone)]
pub struct Options {
    /// The runs' heartbeat interval: a daemon silent for three is gone, a run's worker silent
    /// for three is a zombie.
    pub heartbeat: std::time::Duration,
    /// `running_long`: past p95 of the asset's recent build durations times this.
    pub running_long_factor: f64,
    /// Recent builds the p95 is taken over (at least three are needed to judge).
    pub duration_window: usize,
    /// Assets' freshness SLOs: an asset that missed its latest deadline is `late`.
    pub slos: BTreeMap<String, basin_core::slo::Slo>,
}

impl Options {
    pub fn new(heartbeat: std::time::Duration) -> Options {
        Options { heartbeat, running_long_factor: 2.0, duration_window: 20, slos: BTreeMap::new() }
    }
}

#[derive(Debug, Clone)]
pub struct AssetStatus {
    pub asset: String,
    pub class: Class,
    /// Why, in a line: the failure and its run, the failing checks.
    pub reason: String,
    /// Since when: the event or check that set the class.
    pub since: Option<DateTime<Utc>>,
    pub run_id: Option<String>,
    /// The failure's category, for a failed build.
    pub category: Option<FailureCategory>,
}

#[derive(Debug, Clone)]
pub struct Daemon {
    pub id: String,
    pub host: String,
    pub pid: i64,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    /// It beat within the last three heartbeat intervals.
    pub alive: bool,
}

/// A schedule's last tick against the one due by now.
#[derive(Debug, Clone)]
pub struct ScheduleStatus {
    pub name: String,
    pub cron: String,
    /// The last tick a daemon queued (`None`: no daemon has seen the schedule).
    pub last_queued: Option<DateTime<Utc>>,
    /// The latest tick at or before now.
    pub due: Option<DateTime<Utc>>,
    /// The due tick was not queued within the grace: no daemon running, or one stuck.
    pub missed: bool,
    /// The newest run the schedule queued: id and status.
    pub last_run: Option<(String, RunStatus)>,
}

#[derive(Debug, Clone)]
pub struct Status {
    pub at: DateTime<Utc>,
    pub daemons: Vec<Daemon>,
    pub schedules: Vec<ScheduleStatus>,
    pub queued: usize,
    /// Runs starting or running: id, status, since when.
    pub running: Vec<RunningRun>,
    pub assets: Vec<AssetStatus>,
    /// Each asset's latest materialisation, as read for the classes.
    pub built: BTreeMap<String, DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct RunningRun {
    pub id: String,
    pub status: String,
    pub since: DateTime<Utc>,
    pub selection: Vec<String>,
}

impl Status {
    /// Whether anything needs a person.
    pub fn needs_a_human(&self) -> bool {
        self.assets.iter().any(|a| a.class.needs_a_human()) || self.schedules.iter().any(|s| s.missed)
    }

    /// The status as one JSON document (`basin status --format json`).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let time = |t: &DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        json!({
            "at": time(&self.at),
            "needs_a_human": self.needs_a_human(),
            "daemons": self.daemons.iter().map(|d| json!({
                "id": d.id, "host": d.host, "pid": d.pid, "alive": d.alive,
                "started_at": time(&d.started_at), "heartbeat_at": time(&d.heartbeat_at),
            })).collect::<Vec<_>>(),
            "schedules": self.schedules.iter().map(|s| json!({
                "name": s.name, "cron": s.cron, "missed": s.missed,
                "last_queued": s.last_queued.as_ref().map(time), "due": s.due.as_ref().map(time),
                "last_run": s.last_run.as_ref().map(|(id, st)| json!({"id": id, "status": st.as_str()})),
            })).collect::<Vec<_>>(),
            "queued": self.queued,
            "running": self.running.iter().map(|r| json!({
                "id": r.id, "status": r.status, "since": time(&r.since), "selection": r.selection,
            })).collect::<Vec<_>>(),
            "assets": self.assets.iter().map(|a| json!({
                "asset": a.asset, "class": a.class.as_str(), "reason": a.reason,
                "since": a.since.as_ref().map(time), "run_id": a.run_id,
            })).collect::<Vec<_>>(),
        })
    }
}

/// The status of `assets` (every asset of the project) and `schedules` at `now`; a daemon is
/// alive when it beat within three heartbeat intervals, and a schedule missed its tick when
/// the tick due is not queued within that long (plus a minute).
pub async fn status(
    store: &Arc<dyn MetaStore>,
    assets: &[String],
    schedules: &[Schedule],
    now: DateTime<Utc>,
    options: &Options,
) -> basin_meta::Result<Status> {
    let stale = chrono::Duration::from_std(options.heartbeat * 3).unwrap_or(chrono::Duration::MAX);
    let grace = stale.checked_add(&chrono::Duration::minutes(1)).unwrap_or(chrono::Duration::MAX);
    let mut schedule_status = Vec::new();
    for s in schedules {
        let last_queued = store
            .cursor(&s.cursor_name())
            .await?
            .and_then(|v| DateTime::parse_from_rfc3339(&v).ok())
            .map(|t| t.to_utc());
        let due = s.last_at_or_before(now);
        let missed = match (due, last_queued) {
            (Some(due), Some(last)) => due > last && now - due > grace,
            (Some(due), None) => now - due > grace,
            (None, _) => false,
        };
        let filter = basin_meta::RunFilter {
            tag: Some(("schedule".to_string(), s.name.clone())),
            limit: Some(1),
            ..Default::default()
        };
        let last_run = store.runs(&filter).await?.into_iter().next().map(|r| (r.id, r.status));
        schedule_status.push(ScheduleStatus {
            name: s.name.clone(),
            cron: s.cron_text.clone(),
            last_queued,
            due,
            missed,
            last_run,
        });
    }
    let daemons = store
        .daemons()
        .await?
        .into_iter()
        .map(|d: DaemonBeat| Daemon {
            alive: now - d.heartbeat_at <= stale,
            id: d.id,
            host: d.host,
            pid: d.pid,
            started_at: d.started_at,
            heartbeat_at: d.heartbeat_at,
        })
        .collect();
    let active: Vec<Run> = store.active_runs().await?;
    let queued = active.iter().filter(|r| r.status == RunStatus::Queued).count();
    // Failed runs that something will try again: a retry queued by the retry policy, or a
    // relaunch queued by the watchdog.
    let retries: BTreeSet<&str> = active
        .iter()
        .filter_map(|r| r.parent_run_id.as_deref().or(r.tags.get(RELAUNCH_OF).map(String::as_str)))
        .collect();
    // A run in flight whose worker has not beaten for three intervals: the daemon's monitor
    // fails it as `worker_died`, unless no daemon is running.
    let silent: BTreeSet<&str> = active
        .iter()
        .filter(|r| r.status == RunStatus::Started && r.heartbeat_at.is_some_and(|h| now - h > stale))
        .map(|r| r.id.as_str())
        .collect();
    let backfills: BTreeSet<&str> =
        active.iter().filter(|r| r.tags.contains_key(crate::backfill::TAG)).map(|r| r.id.as_str()).collect();
    let running: Vec<RunningRun> = active
        .iter()
        .filter(|r| r.status != RunStatus::Queued)
        .map(|r| RunningRun {
            id: r.id.clone(),
            status: r.status.as_str().to_lowercase(),
            since: r.started_at.unwrap_or(r.created_at),
            selection: r.selection.clone(),
        })
        .collect();

    let latest: BTreeMap<String, basin_meta::Event> =
        store.latest_asset_events().await?.into_iter().filter_map(|e| Some((e.asset.clone()?, e))).collect();
    let built = store.latest_materializations().await?;
    let mut failing: BTreeMap<String, Vec<basin_meta::CheckResult>> = BTreeMap::new();
    for c in store.failing_checks().await? {
        failing.entry(c.asset.clone()).or_default().push(c);
    }

    let mut out = Vec::new();
    for asset in assets {
        let event = latest.get(asset);
        let status = |class: Class, reason: String, since: Option<DateTime<Utc>>| AssetStatus {
            asset: asset.clone(),
            class,
            reason,
            since,
            run_id: event.map(|e| e.run_id.clone()),
            category: None,
        };
        let s = match event {
            Some(e) if e.kind == "asset_started" && silent.contains(e.run_id.as_str()) => status(
                Class::Zombie,
                format!(
                    "building in run {}, whose worker has not sent a heartbeat for over {}s",
                    e.run_id,
                    stale.num_seconds()
                ),
                Some(e.at),
            ),
            Some(e) if e.kind == "asset_started" && running.iter().any(|r| r.id == e.run_id) => {
                let elapsed = now - e.at;
                let usual = usual_duration(store, asset, options.duration_window).await?;
                match usual.filter(|p95| elapsed.as_seconds_f64() > p95.as_seconds_f64() * options.running_long_factor)
                {
                    Some(p95) => status(
                        Class::RunningLong,
                        format!(
                            "building in run {} for {}s; its usual build takes {}s (p95), and {}x that has passed",
                            e.run_id,
                            elapsed.num_seconds(),
                            p95.num_seconds(),
                            options.running_long_factor
                        ),
                        Some(e.at),
                    ),
                    None if backfills.contains(e.run_id.as_str()) => {
                        status(Class::Backfilling, format!("building in backfill run {}", e.run_id), Some(e.at))
                    }
                    None => status(Class::RunningOk, format!("building in run {}", e.run_id), Some(e.at)),
                }
            }
            Some(e) if e.kind == "asset_failed" => {
                let category = e.message.split_once(": ").and_then(|(c, _)| c.parse::<FailureCategory>().ok());
                let class = if retries.contains(e.run_id.as_str()) { Class::Retrying } else { Class::HardFailure };
                let what = match category {
                    Some(c) => format!("its last build failed ({c})"),
                    None => "its last build failed".to_string(),
                };
                let message = e.message.split_once(": ").map_or(e.message.as_str(), |(_, m)| m);
                let message = message.lines().next().unwrap_or_default();
                AssetStatus { category, ..status(class, format!("{what} in run {}: {message}", e.run_id), Some(e.at)) }
            }
            Some(e) if e.kind == "asset_skipped" && !failing.contains_key(asset) => {
                status(Class::StaleNoRun, format!("not built by run {}: {}", e.run_id, e.message), Some(e.at))
            }
            _ => match (failing.get(asset), built.get(asset)) {
                (Some(checks), _) => {
                    let names: Vec<String> =
                        checks.iter().map(|c| format!("{} ({})", c.check_name, c.observed)).collect();
                    let since = checks.iter().map(|c| c.at).max();
                    status(Class::FailingChecks, format!("failing: {}", names.join(", ")), since)
                }
                (None, Some(at)) => status(Class::Healthy, "built".to_string(), Some(*at)),
                (None, None) => status(Class::NeverBuilt, "no build recorded".to_string(), None),
            },
        };
        // A missed promise outranks what is otherwise fine or pending; a failure, a zombie or
        // failing checks stay the class (they are the cause, and alert on their own).
        let s = match options.slos.get(asset).and_then(|slo| slo.late(built.get(asset).copied(), now)) {
            Some(reason) if !matches!(s.class, Class::Zombie | Class::HardFailure | Class::FailingChecks) => {
                AssetStatus { class: Class::Late, reason, since: s.since.or(Some(now)), ..s }
            }
            _ => s,
        };
        out.push(s);
    }
    out.sort_by(|a, b| a.class.cmp(&b.class).then(a.asset.cmp(&b.asset)));
    Ok(Status { at: now, daemons, schedules: schedule_status, queued, running, assets: out, built })
}

/// p95 of the asset's `window` most recent build durations; `None` with fewer than three.
async fn usual_duration(
    store: &Arc<dyn MetaStore>,
    asset: &str,
    window: usize,
) -> basin_meta::Result<Option<chrono::Duration>> {
    let limit = i64::try_from(window.max(3)).unwrap_or(i64::MAX);
    let mut durations: Vec<i64> =
        store.materializations(Some(asset), limit).await?.into_iter().map(|m| m.duration_ms).collect();
    if durations.len() < 3 {
        return Ok(None);
    }
    durations.sort_unstable();
    // Nearest rank: the smallest duration at least 95% of the builds took no longer than.
    let rank = (durations.len() * 95).div_ceil(100).max(1) - 1;
    Ok(Some(chrono::Duration::milliseconds(durations[rank])))
}
