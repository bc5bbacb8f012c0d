//! The orchestrator: what `basin daemon` does on every tick. It knows runs, schedules and
//! processes, never tables: the work of a run is done by a `basin worker` process, a command
//! (a container per run), or in process through the [`RunInProcess`] trait, which the binary
//! implements with the engine. Its tests therefore run a whole night in milliseconds with a
//! [`basin_core::clock::ManualClock`].
//!
//! One tick, in order:
//! 1. schedules: each tick due since the schedule's cursor is queued, in the same transaction
//!    that moves the cursor (a restarted daemon catches up on missed ticks; two daemons never
//!    both take one);
//! 2. automation (eager, on_cron) and sensors ([`sensors`]) queue runs the same way;
//! 3. workers: a launched worker that exited without ending its run fails it as
//!    `worker_died` at once;
//! 4. monitor (every `monitor_interval`): runs whose worker stopped heartbeating are failed as
//!    `worker_died` (whoever launched them); runs past `run_timeout` are stopped and failed as
//!    `timeout`; canceled runs have their worker killed;
//! 5. retries: each failed queued run is retried once per the retry policy (backoff doubling)
//!    or settled;
//! 6. queue: runs that fit the global and per-tag limits, and write no asset (partition) a run
//!    in flight writes ([`footprints`]), are claimed and launched;
//! 7. watchdog (every `[watchdog] interval`, one daemon per interval): every asset and
//!    schedule classified and stored, changes alerted ([`watchdog`], [`alerts`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use basin_core::clock::Clock;
use basin_core::daemon::{RetryPolicies, Schedule};
use basin_core::failure::FailureCategory;
use basin_meta::{DaemonBeat, Finish, Footprint, MetaStore, NewRun, QueueLimits, Run, RunStatus};
use chrono::{DateTime, Utc};

pub mod alerts;
pub mod backfill;
pub mod check;
pub mod record;
pub mod run;
pub mod sensors;
mod standby;
pub mod status;
pub mod watchdog;

pub use record::Recorder;
pub use run::{Materializer, RunEvent, RunWork};
pub use sensors::{Observation, Observe, Sensor};

pub type Result<T, E = basin_meta::Error> = std::result::Result<T, E>;

/// Does the work of one queued run in this process (the `in_process` launcher): take the run
/// (`start_run`), heartbeat it, run it, end it.
#[async_trait]
pub trait RunInProcess: Send + Sync {
    async fn execute(&self, run_id: String);
}

/// How a claimed run gets a worker.
#[derive(Clone)]
pub enum Launcher {
    /// `program worker --run-id ID -C project` as a child process (its own memory and failure
    /// domain), output appended to `logs/<run id>.log`.
    Subprocess {
        program: PathBuf,
        project: PathBuf,
        logs: PathBuf,
        /// Workers kept started ahead of their runs ([`standby`]).
        standby: usize,
    },
    /// `sh -c TEMPLATE` with `{run_id}` and `{project}` replaced, shell-quoted.
    Command {
        template: String,
        project: PathBuf,
        logs: PathBuf,
    },
    InProcess(Arc<dyn RunInProcess>),
}

impl Launcher {
    pub fn name(&self) -> &'static str {
        match self {
            Launcher::Subprocess { .. } => "subprocess",
            Launcher::Command { .. } => "command",
            Launcher::InProcess(_) => "in_process",
        }
    }
}

enum Worker {
    Process(tokio::process::Child),
    Task(tokio::task::JoinHandle<()>),
}

impl Worker {
    /// `Some(description)` once it has ended.
    fn exited(&mut self) -> Option<String> {
        match self {
            Worker::Process(c) => match c.try_wait() {
                Ok(Some(status)) => Some(status.to_string()),
                Ok(None) => None,
                Err(e) => Some(format!("cannot be waited for: {e}")),
            },
            Worker::Task(t) => t.is_finished().then(|| "its task ended".to_string()),
        }
    }

    /// Stop it. A worker process leads its own process group, and the whole group goes: a
    /// `command` launcher's `sh -c` and what it started, a worker's own children.
    fn kill(&mut self) {
        match self {
            Worker::Process(c) => {
                if let Some(pid) = c.id() {
                    let _ = std::process::Command::new("kill")
                        .args(["-KILL", "--", &format!("-{pid}")])
                        .stderr(Stdio::null())
                        .status();
                }
                let _ = c.start_kill();
            }
            Worker::Task(t) => t.abort(),
        }
    }
}

/// An asset with `automation = "eager"` and the materialised assets it reads (views looked
/// through).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eager {
    pub asset: String,
    pub upstream: Vec<String>,
}

/// An asset with `automation = "on_cron"`: after each tick of `schedule`, materialised once
/// every asset in `upstream` has been materialised since that tick.
#[derive(Debug, Clone)]
pub struct OnCron {
    pub asset: String,
    pub upstream: Vec<String>,
    pub schedule: Schedule,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub limits: QueueLimits,
    pub retry: RetryPolicies,
    /// A run whose heartbeat is older than this is taken for dead.
    pub dead_after: Duration,
    pub monitor_interval: Duration,
    pub run_timeout: Option<Duration>,
}

/// What one tick did, for the daemon's log.
#[derive(Debug, Default)]
pub struct Tick {
    pub notices: Vec<String>,
    pub queued: Vec<Run>,
    pub launched: Vec<Run>,
    /// The watchdog's cycle, if this tick did one.
    pub watchdog: Option<watchdog::Cycle>,
}

pub struct Daemon {
    id: String,
    store: Arc<dyn MetaStore>,
    clock: Arc<dyn Clock>,
    settings: Settings,
    schedules: Vec<Schedule>,
    launcher: Launcher,
    eager: Vec<Eager>,
    on_cron: Vec<OnCron>,
    sensors: Vec<Sensor>,
    sensor_state: BTreeMap<String, sensors::SensorState>,
    pool: Option<standby::Pool>,
    workers: BTreeMap<String, (Worker, DateTime<Utc>)>,
    last_monitor: Option<DateTime<Utc>>,
    started_at: DateTime<Utc>,
    footprint: Footprints,
    watchdog: Option<watchdog::Watchdog>,
}

/// How the daemon tells what a queued run will write.
pub type Footprints = Arc<dyn Fn(&Run) -> Footprint + Send + Sync>;

/// Footprints on a project's asset graph: the assets a run's selection resolves to now (none
/// if it no longer resolves: such a run fails as it starts, writing nothing), in the run's
/// partition.
pub fn footprints(graph: basin_core::graph::AssetGraph) -> Footprints {
    Arc::new(move |run: &Run| Footprint {
        assets: basin_core::selection::select(&graph, &run.selection.join(" "))
            .map(|keys| keys.into_iter().map(ToString::to_string).collect())
            .unwrap_or_default(),
        partition: run.partition.clone(),
    })
}

impl Daemon {
    pub fn new(
        store: Arc<dyn MetaStore>,
        clock: Arc<dyn Clock>,
        settings: Settings,
        schedules: Vec<Schedule>,
        launcher: Launcher,
    ) -> Daemon {
        let started_at = clock.now();
        let pool = match &launcher {
            Launcher::Subprocess { standby, logs, .. } if *standby > 0 => Some(standby::Pool::new(*standby, logs)),
            _ => None,
        };
        Daemon {
            id: format!("daemon@{}", basin_meta::this_worker()),
            store,
            clock,
            settings,
            schedules,
            launcher,
            eager: Vec::new(),
            on_cron: Vec::new(),
            sensors: Vec::new(),
            sensor_state: BTreeMap::new(),
            pool,
            workers: BTreeMap::new(),
            last_monitor: None,
            started_at,
            footprint: Arc::new(|_: &Run| Footprint::default()),
            watchdog: None,
        }
    }

    /// Classify every asset and schedule each interval, and alert on changes.
    pub fn with_watchdog(mut self, watchdog: watchdog::Watchdog) -> Daemon {
        self.watchdog = Some(watchdog);
        self
    }

    /// Start no run while another run in flight writes one of its assets (see [`footprints`]);
    /// without this, runs are exclusive only through the limits.
    pub fn with_footprints(mut self, footprint: Footprints) -> Daemon {
        self.footprint = footprint;
        self
    }

    /// Materialise these assets when their upstream changes.
    pub fn with_automation(mut self, eager: Vec<Eager>) -> Daemon {
        self.eager = eager;
        self
    }

    /// Materialise these assets once per cron tick, when their upstream has caught up.
    pub fn with_cron_automation(mut self, on_cron: Vec<OnCron>) -> Daemon {
        self.on_cron = on_cron;
        self
    }

    /// Queue runs when these sensors see a change.
    pub fn with_sensors(mut self, sensors: Vec<Sensor>) -> Daemon {
        self.sensors = sensors;
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs this daemon launched that have not ended yet.
    pub fn running(&self) -> usize {
        self.workers.len()
    }

    /// One pass; see the crate documentation.
    pub async fn tick(&mut self) -> Result<Tick> {
        let now = self.clock.now();
        let mut tick = Tick::default();
        self.schedules(now, &mut tick).await?;
        self.automation(now, &mut tick).await?;
        self.sensors(now, &mut tick).await?;
        self.collect_exits(&mut tick).await?;
        let monitor_due = self.last_monitor.is_none_or(|t| {
            now - t >= chrono::Duration::from_std(self.settings.monitor_interval).unwrap_or(chrono::Duration::MAX)
        });
        if monitor_due {
            self.last_monitor = Some(now);
            self.store
                .daemon_heartbeat(&DaemonBeat {
                    id: self.id.clone(),
                    host: basin_meta::this_worker().split(':').next().unwrap_or_default().to_string(),
                    pid: i64::from(std::process::id()),
                    started_at: self.started_at,
                    heartbeat_at: now,
                })
                .await?;
            self.monitor(now, &mut tick).await?;
        }
        self.retries(now, &mut tick).await?;
        self.launch(&mut tick).await?;
        if let Some(w) = &self.watchdog {
            // A failed cycle is told and tried again next tick; it never stops the queue.
            match w.cycle(&self.store, &self.schedules, now).await {
                Ok(Some(cycle)) => {
                    for e in &cycle.transitions {
                        let from = e.from_class.as_deref().unwrap_or("new");
                        tick.notices.push(format!("watchdog: {} {from} → {}: {}", e.subject, e.to_class, e.reason));
                    }
                    for a in &cycle.actions {
                        let what = a.action.as_deref().unwrap_or_default();
                        tick.notices.push(format!("watchdog {what} {}: {}", a.subject, a.reason));
                    }
                    for r in &cycle.slo {
                        tick.notices.push(format!("slo: {} {} {}", r.asset, r.day, r.verdict));
                    }
                    for (channel, n, _) in &cycle.deliveries {
                        tick.notices.push(format!("alert {} {} on {channel}", n.state.as_str(), n.subject));
                    }
                    tick.watchdog = Some(cycle);
                }
                Ok(None) => {}
                Err(e) => tick.notices.push(format!("watchdog cycle failed: {e}")),
            }
        }
        Ok(tick)
    }

    async fn schedules(&mut self, now: DateTime<Utc>, tick: &mut Tick) -> Result<()> {
        for s in &self.schedules {
            let cursor = s.cursor_name();
            // First sight of a schedule: it starts from now, not from the beginning of time.
            let Some(mut last) = self.store.cursor(&cursor).await? else {
                self.store.advance_cursor(&cursor, None, &now.to_rfc3339()).await?;
                continue;
            };
            loop {
                let Some(from) = DateTime::parse_from_rfc3339(&last).ok().map(|t| t.to_utc()) else {
                    tick.notices
                        .push(format!("schedule {}: unreadable cursor `{last}`; restarting it from now", s.name));
                    self.store.advance_cursor(&cursor, Some(&last), &now.to_rfc3339()).await?;
                    break;
                };
                let Some(due) = s.next_after(from).filter(|t| *t <= now) else { break };
                let value = due.to_rfc3339();
                let mut tags = s.tags.clone();
                tags.insert("schedule".into(), s.name.clone());
                tags.insert("tick".into(), value.clone());
                let run = NewRun {
                    priority: s.priority,
                    tags,
                    ..NewRun::new(vec![s.selection.clone()], self.launcher.name())
                };
                match self.store.enqueue_tick(&cursor, Some(&last), &value, run).await? {
                    Some(run) => {
                        tick.notices.push(format!("schedule {}: tick {value} queued run {}", s.name, run.id));
                        tick.queued.push(run);
                        last = value;
                    }
                    // Another daemon took it; carry on from where it left the cursor.
                    None => match self.store.cursor(&cursor).await? {
                        Some(v) => last = v,
                        None => break,
                    },
                }
            }
        }
        Ok(())
    }

    /// Automated assets, from one read of the latest materialisations and the runs in flight.
    /// While an automated run of an asset is queued or running, it is not queued again. Each
    /// asset's cursor moves in the same transaction as its run is queued, so several daemons
    /// queue it once.
    ///
    /// Eager: queued when an upstream asset has a materialisation newer than both its own
    /// last materialisation and the upstream state its last automated run was queued for;
    /// many upstream updates become one run.
    ///
    /// On cron: queued once per tick, as soon as every upstream asset has been materialised
    /// since that tick.
    ///
    /// Neither is queued while an upstream asset's latest `error` check has failed.
    async fn automation(&mut self, now: DateTime<Utc>, tick: &mut Tick) -> Result<()> {
        if self.eager.is_empty() && self.on_cron.is_empty() {
            return Ok(());
        }
        let latest = self.store.latest_materializations().await?;
        let handled = self.store.cursors("automation:").await?;
        let active: BTreeSet<String> =
            self.store.active_runs().await?.into_iter().filter_map(|r| r.tags.get("automation").cloned()).collect();
        // Bad data does not spread: an asset waits while an upstream's latest `error` check
        // has failed, until a materialisation of that upstream passes its checks.
        let failing: BTreeSet<String> = self.store.failing_checks().await?.into_iter().map(|c| c.asset).collect();
        for e in &self.eager {
            if active.contains(&e.asset) || e.upstream.iter().any(|u| failing.contains(u)) {
                continue;
            }
            let Some((newest, by)) = e.upstream.iter().filter_map(|u| latest.get(u).map(|t| (*t, u))).max() else {
                continue;
            };
            let cursor = format!("automation:{}", e.asset);
            let seen = handled.get(&cursor).and_then(|v| DateTime::parse_from_rfc3339(v).ok()).map(|t| t.to_utc());
            let since = seen.into_iter().chain(latest.get(&e.asset).copied()).max();
            if since.is_some_and(|s| newest <= s) {
                continue;
            }
            let value = newest.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            let mut run = NewRun::new(vec![e.asset.clone()], self.launcher.name());
            run.tags.insert("automation".into(), e.asset.clone());
            let expected = handled.get(&cursor).map(String::as_str);
            if let Some(queued) = self.store.enqueue_tick(&cursor, expected, &value, run).await? {
                tick.notices.push(format!("eager {}: {by} changed at {value}; queued run {}", e.asset, queued.id));
                tick.queued.push(queued);
            }
        }
        let cron_handled =
            if self.on_cron.is_empty() { BTreeMap::new() } else { self.store.cursors("on_cron:").await? };
        for c in &self.on_cron {
            let Some(due) = c.schedule.last_at_or_before(now) else { continue };
            let value = due.to_rfc3339();
            let cursor = format!("on_cron:{}", c.asset);
            let Some(handled) = cron_handled.get(&cursor) else {
                // First sight: from the current tick on; a tick before the daemon knew the
                // asset is not made up.
                self.store.advance_cursor(&cursor, None, &value).await?;
                continue;
            };
            if *handled == value || active.contains(&c.asset) || c.upstream.iter().any(|u| failing.contains(u)) {
                continue;
            }
            if !c.upstream.iter().all(|u| latest.get(u).is_some_and(|t| *t >= due)) {
                continue;
            }
            let mut run = NewRun::new(vec![c.asset.clone()], self.launcher.name());
            run.tags.insert("automation".into(), c.asset.clone());
            run.tags.insert("tick".into(), value.clone());
            if let Some(queued) = self.store.enqueue_tick(&cursor, Some(handled), &value, run).await? {
                tick.notices
                    .push(format!("on_cron {}: tick {value}, upstream updated; queued run {}", c.asset, queued.id));
                tick.queued.push(queued);
            }
        }
        Ok(())
    }

    /// Workers that ended: a run they did not end fails now, without waiting for heartbeats.
    async fn collect_exits(&mut self, tick: &mut Tick) -> Result<()> {
        let mut ended = Vec::new();
        for (id, (worker, _)) in self.workers.iter_mut() {
            if let Some(how) = worker.exited() {
                ended.push((id.clone(), how));
            }
        }
        for (id, how) in ended {
            self.workers.remove(&id);
            let Some(run) = self.store.run(&id).await? else { continue };
            if run.status.is_terminal() {
                tick.notices.push(format!("run {id} ended: {}", describe(&run)));
                continue;
            }
            let message = format!("its worker exited ({how}) without ending the run");
            if self.store.finish_run(&id, &Finish::Failure { category: FailureCategory::WorkerDied, message }).await? {
                tick.notices.push(format!("run {id} failed: worker_died: its worker exited ({how})"));
            }
        }
        Ok(())
    }

    async fn monitor(&mut self, now: DateTime<Utc>, tick: &mut Tick) -> Result<()> {
        let dead_after = chrono::Duration::from_std(self.settings.dead_after).unwrap_or(chrono::Duration::MAX);
        for run in self.store.reap_dead(now - dead_after).await? {
            if let Some((mut w, _)) = self.workers.remove(&run.id) {
                w.kill();
            }
            tick.notices.push(format!("run {} failed: {}", run.id, describe(&run)));
        }
        let timeout = self.settings.run_timeout.and_then(|t| chrono::Duration::from_std(t).ok());
        let ids: Vec<String> = self.workers.keys().cloned().collect();
        for id in ids {
            let Some(run) = self.store.run(&id).await? else { continue };
            let since = run.started_at.unwrap_or(self.workers[&id].1);
            let finish = if run.cancel_requested && !run.status.is_terminal() {
                Some(Finish::Canceled { message: "canceled; its worker was stopped".into() })
            } else if let Some(limit) = timeout.filter(|t| now - since > *t && !run.status.is_terminal()) {
                let message = format!("stopped after running longer than {}s", limit.num_seconds());
                Some(Finish::Failure { category: FailureCategory::Timeout, message })
            } else {
                None
            };
            if let Some(finish) = finish {
                if let Some((mut w, _)) = self.workers.remove(&id) {
                    w.kill();
                }
                if self.store.finish_run(&id, &finish).await? {
                    tick.notices.push(format!("run {id} {}", describe_finish(&finish)));
                }
            }
        }
        Ok(())
    }

    async fn retries(&mut self, now: DateTime<Utc>, tick: &mut Tick) -> Result<()> {
        for failed in self.store.unretried_failures().await? {
            let category = failed.failure_category.unwrap_or(FailureCategory::Other);
            let events =
                if self.settings.retry.assets.is_empty() { Vec::new() } else { self.store.events(&failed.id).await? };
            let failed_assets = events.iter().filter(|e| e.kind == "asset_failed").filter_map(|e| e.asset.as_deref());
            match self.settings.retry.for_run(&failed.tags, failed_assets).next(failed.attempt, category) {
                Some(wait) => {
                    let at = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::zero());
                    if let Some(retry) = self.store.retry_run(&failed.id, at).await? {
                        tick.notices.push(format!(
                            "run {} failed ({category}); attempt {} queued as run {} in {}s",
                            failed.id,
                            retry.attempt,
                            retry.id,
                            wait.as_secs()
                        ));
                        tick.queued.push(retry);
                    }
                }
                None => self.store.settle_failure(&failed.id).await?,
            }
        }
        Ok(())
    }

    async fn launch(&mut self, tick: &mut Tick) -> Result<()> {
        let free = self.settings.limits.max_concurrent_runs.saturating_sub(self.workers.len());
        for run in self.store.claim_queued(&self.settings.limits, &self.id, free, &*self.footprint).await? {
            let warm = match (&mut self.pool, &self.launcher) {
                (Some(pool), Launcher::Subprocess { logs, .. }) => pool.hand(&run.id, logs).await,
                _ => None,
            };
            let standby = warm.is_some();
            match warm.map(|c| Ok(Worker::Process(c))).unwrap_or_else(|| self.spawn(&run)) {
                Ok(worker) => {
                    let detail = match &worker {
                        Worker::Process(c) if standby => format!("standby pid {}", c.id().unwrap_or_default()),
                        Worker::Process(c) => format!("pid {}", c.id().unwrap_or_default()),
                        Worker::Task(_) => "in process".into(),
                    };
                    self.workers.insert(run.id.clone(), (worker, self.clock.now()));
                    tick.notices.push(format!("run {} launched ({detail}): {}", run.id, run.selection.join(" ")));
                    tick.launched.push(run);
                }
                Err(e) => {
                    let message = format!("cannot launch its worker: {e}");
                    self.store
                        .finish_run(&run.id, &Finish::Failure { category: FailureCategory::Other, message })
                        .await?;
                    tick.notices.push(format!("run {} failed: cannot launch its worker: {e}", run.id));
                }
            }
        }
        if let (Some(pool), Launcher::Subprocess { program, project, logs, .. }) = (&mut self.pool, &self.launcher)
            && let Err(e) = pool.refill(program, project, logs)
        {
            tick.notices.push(format!("cannot start a standby worker: {e}"));
        }
        Ok(())
    }

    /// Standby workers started and waiting for a run.
    pub fn standby_workers(&self) -> usize {
        self.pool.as_ref().map_or(0, |p| p.idle())
    }

    fn spawn(&self, run: &Run) -> std::io::Result<Worker> {
        let log = |logs: &PathBuf| -> std::io::Result<(Stdio, Stdio)> {
            std::fs::create_dir_all(logs)?;
            let file =
                std::fs::OpenOptions::new().create(true).append(true).open(logs.join(format!("{}.log", run.id)))?;
            Ok((Stdio::from(file.try_clone()?), Stdio::from(file)))
        };
        // A worker process: in its own process group (a Ctrl-C meant for the daemon does not
        // reach the workers, which finish their runs on their own), output to the run's log.
        let child = |mut command: tokio::process::Command, logs: &PathBuf| -> std::io::Result<Worker> {
            let (out, err) = log(logs)?;
            let child = command.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0).spawn()?;
            Ok(Worker::Process(child))
        };
        match &self.launcher {
            Launcher::Subprocess { program, project, logs, .. } => {
                let mut command = tokio::process::Command::new(program);
                command.arg("worker").arg("--run-id").arg(&run.id).arg("-C").arg(project);
                child(command, logs)
            }
            Launcher::Command { template, project, logs } => {
                let script = template
                    .replace("{run_id}", &shell_quote(&run.id))
                    .replace("{project}", &shell_quote(&project.display().to_string()));
                let mut command = tokio::process::Command::new("sh");
                command.arg("-c").arg(script).current_dir(project);
                child(command, logs)
            }
            Launcher::InProcess(m) => {
                let (m, id) = (m.clone(), run.id.clone());
                Ok(Worker::Task(tokio::spawn(async move { m.execute(id).await })))
            }
        }
    }

    /// Tick until `shutdown` resolves, every `poll`. Workers keep running after the daemon
    /// stops; a restarted daemon (or any other) finds their runs through the store.
    pub async fn run_until(
        &mut self,
        poll: Duration,
        shutdown: impl std::future::Future<Output = ()>,
        mut report: impl FnMut(&Tick),
    ) -> Result<()> {
        tokio::pin!(shutdown);
        loop {
            match self.tick().await {
                Ok(t) => report(&t),
                // The store being briefly unreachable must not end the daemon.
                Err(e) => report(&Tick { notices: vec![format!("tick failed: {e}")], ..Default::default() }),
            }
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep(poll) => {}
            }
        }
    }
}

fn describe(run: &Run) -> String {
    match (run.status, &run.failure_category, &run.failure_message) {
        (RunStatus::Failure, Some(c), Some(m)) => format!("{c}: {m}"),
        (s, _, Some(m)) => format!("{s}: {m}"),
        (s, _, None) => s.to_string(),
    }
}

fn describe_finish(f: &Finish) -> String {
    match f {
        Finish::Success => "succeeded".into(),
        Finish::Failure { category, message } => format!("failed: {category}: {message}"),
        Finish::Canceled { message } => format!("canceled: {message}"),
    }
}

/// `'…'` with embedded quotes escaped, for `sh -c`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn shell_quoting_survives_quotes_and_spaces() {
        assert_eq!(super::shell_quote("/tmp/my project"), "'/tmp/my project'");
        assert_eq!(super::shell_quote("it's"), "'it'\\''s'");
    }
}
