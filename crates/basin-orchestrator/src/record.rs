//! Every run is recorded in the metadata store, whoever starts it: `basin run`, `basin ingest`,
//! the demo, or a daemon's worker. While it runs, a heartbeat task tells the store the process
//! is alive and learns whether someone asked to cancel it; a process that dies stops
//! heartbeating, and the next monitor pass (`basin runs`, the daemon) fails the run as
//! `worker_died` instead of leaving it STARTED.

use std::sync::Arc;

use basin_core::clock::SystemClock;
use basin_core::failure::FailureCategory;
use basin_core::outcome::Checked;
use basin_core::{AssetKey, Project};
use basin_meta::{Beat, CheckResult, Finish, Level, Materialization, MetaStore, NewEvent, NewRun, Run};
use tokio::sync::watch;

use crate::Result;

/// Open the project's metadata store (`[metadata] url`, a SQLite file by default).
pub async fn open_store(project: &Project) -> Result<Arc<dyn MetaStore>> {
    basin_meta::open(project.config.metadata.url.expose(), &project.dir, Arc::new(SystemClock)).await
}

/// Fail the runs whose worker stopped heartbeating; what was failed.
pub async fn reap(project: &Project, store: &dyn MetaStore) -> Result<Vec<Run>> {
    let dead_after = chrono::Duration::from_std(project.config.run.dead_after()).unwrap_or(chrono::Duration::MAX);
    store
        .reap_dead(
            chrono::Utc::now().checked_sub_signed(dead_after).unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC),
        )
        .await
}

/// Queue a run for the daemon (`basin run --queue`).
pub async fn queue(project: &Project, new: NewRun) -> Result<Run> {
    open_store(project).await?.create_run(new).await
}

/// A standby worker takes queued run `run_id` before it reads the project: `None` if the run
/// can no longer start (canceled, or taken by another worker meanwhile).
pub async fn take_standby(store: &dyn MetaStore, run_id: &str) -> Result<Option<Run>> {
    match store.start_run(run_id, &basin_meta::this_worker()).await {
        Ok(run) => Ok(Some(run)),
        Err(basin_meta::Error::NotStartable { status, .. }) => {
            tracing::info!(run_id, "run is {status}; nothing to do");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// End a run this process took but could not begin (its project no longer loads).
pub async fn fail_taken(store: &dyn MetaStore, run_id: &str, category: FailureCategory, message: String) -> Result<()> {
    store.finish_run(run_id, &Finish::Failure { category, message }).await.map(|_| ())
}

/// Ask run `id` to stop (`basin runs cancel`): a queued run is canceled at once, a running one
/// by its worker at its next heartbeat.
pub async fn cancel(store: &dyn MetaStore, id: &str) -> Result<basin_meta::Cancel> {
    store.request_cancel(id).await
}

/// One run being recorded by this process.
pub struct Recorder {
    store: Arc<dyn MetaStore>,
    run: Run,
    canceled: watch::Receiver<bool>,
    /// Ends the heartbeat thread.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Recorder {
    /// Record a run this process starts now.
    pub async fn begin(project: &Project, mut new: NewRun) -> Result<Recorder> {
        let store = open_store(project).await?;
        new.started_by = Some(basin_meta::this_worker());
        let run = store.create_run(new).await?;
        Ok(Recorder::watch(project, store, run))
    }

    /// Take a queued run (as a daemon's worker does) and record it from here on.
    pub async fn take(project: &Project, run_id: &str) -> Result<Recorder> {
        let store = open_store(project).await?;
        let run = store.start_run(run_id, &basin_meta::this_worker()).await?;
        Ok(Recorder::watch(project, store, run))
    }

    /// Record a run this process has already taken with `store`.
    pub fn adopt(project: &Project, store: Arc<dyn MetaStore>, run: Run) -> Recorder {
        Recorder::watch(project, store, run)
    }

    pub fn run(&self) -> &Run {
        &self.run
    }

    /// Heartbeats come from a thread of their own, with its own runtime and connection to the
    /// store: queries that keep every worker thread of the main runtime busy must not delay
    /// them, or a live run would be taken for dead.
    fn watch(project: &Project, store: Arc<dyn MetaStore>, run: Run) -> Recorder {
        let (tx, canceled) = watch::channel(false);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let interval = project.config.run.heartbeat_interval();
        let (url, dir, id) = (project.config.metadata.url.clone(), project.dir.clone(), run.id.clone());
        let beating = std::thread::Builder::new().name("basin-heartbeat".into()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => return tracing::error!(run = %id, "cannot start the heartbeat: {e}"),
            };
            runtime.block_on(async move {
                let store = match basin_meta::open(url.expose(), &dir, Arc::new(SystemClock)).await {
                    Ok(s) => s,
                    Err(e) => return tracing::error!(run = %id, "cannot open the metadata store for heartbeats: {e}"),
                };
                let mut stopped = stopped;
                loop {
                    tokio::select! {
                        _ = &mut stopped => return,
                        _ = tokio::time::sleep(interval) => {}
                    }
                    match store.heartbeat(&id).await {
                        Ok(Beat::Continue) => {}
                        Ok(Beat::Cancel | Beat::Gone(_)) => {
                            tx.send_if_modified(|c| !std::mem::replace(c, true));
                        }
                        // The store being briefly unreachable must not stop the run; a longer
                        // gap makes the monitor fail it, which the next beat then learns.
                        Err(e) => tracing::warn!(run = %id, "heartbeat failed: {e}"),
                    }
                }
            })
        });
        if let Err(e) = &beating {
            tracing::error!(run = %run.id, "cannot start the heartbeat thread: {e}");
        }
        Recorder { store, run, canceled, stop: Some(stop) }
    }

    pub fn id(&self) -> &str {
        &self.run.id
    }

    pub fn store(&self) -> &Arc<dyn MetaStore> {
        &self.store
    }

    /// Resolves when the run should stop: it was canceled, or it is no longer held by this
    /// process. Never resolves otherwise.
    pub fn canceled(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.canceled.clone();
        async move {
            // The borrow `wait_for` returns is dropped here, before the caller acts on it: a
            // held borrow would block the heartbeat thread's next send.
            if rx.wait_for(|c| *c).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Record events; a store that cannot take them is reported but does not fail the run.
    pub async fn events(&self, events: &[NewEvent]) {
        if let Err(e) = self.store.add_events(&self.run.id, events).await {
            tracing::warn!(run = %self.run.id, "cannot record events: {e}");
        }
    }

    pub async fn event(&self, kind: &str, level: Level, asset: Option<&str>, message: impl Into<String>) {
        self.events(&[NewEvent::new(kind, level, asset, message)]).await
    }

    pub async fn materialized(&self, m: &Materialization) {
        if let Err(e) = self.store.record_materialization(m).await {
            tracing::warn!(run = %self.run.id, asset = %m.asset, "cannot record a materialisation: {e}");
        }
    }

    /// End the run. `false` if it had already ended (found dead, or canceled meanwhile).
    pub async fn finish(mut self, finish: Finish) -> Result<bool> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.store.finish_run(&self.run.id, &finish).await
    }

    /// Store the check results of `key` at `version`, with an event for each failure
    /// (`check_failed`, at error or warn level by severity) and one for the passes.
    pub async fn checks(&self, key: &AssetKey, version: Option<u64>, checked: &Checked) {
        if checked.outcomes.is_empty() {
            return;
        }
        if let Err(e) = self.store.add_check_results(&check_results(Some(self.id()), key, version, checked)).await {
            tracing::warn!(run = %self.id(), asset = %key, "cannot record check results: {e}");
        }
        let asset = key.to_string();
        let mut events = Vec::new();
        for o in checked.outcomes.iter().filter(|o| !o.passed) {
            let level = if o.blocks() { Level::Error } else { Level::Warn };
            let samples =
                if o.samples.is_empty() { String::new() } else { format!("; e.g. {}", o.samples.join(" | ")) };
            events.push(NewEvent::new("check_failed", level, Some(&asset), format!("{}{samples}", o.summary())));
        }
        let passed = checked.outcomes.iter().filter(|o| o.passed).count();
        if passed > 0 {
            events.push(NewEvent::new(
                "checks_passed",
                Level::Info,
                Some(&asset),
                format!("{passed} of {} check(s) passed", checked.outcomes.len()),
            ));
        }
        self.events(&events).await;
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Check outcomes as the metadata store keeps them (`run_id` `None` for `basin check`).
pub fn check_results(
    run_id: Option<&str>,
    key: &AssetKey,
    version: Option<u64>,
    checked: &Checked,
) -> Vec<CheckResult> {
    let at = chrono::Utc::now();
    checked
        .outcomes
        .iter()
        .map(|o| CheckResult {
            run_id: run_id.map(str::to_string),
            asset: key.to_string(),
            check_name: o.name.clone(),
            check_type: o.kind.as_str().to_string(),
            severity: o.severity.as_str().to_string(),
            passed: o.passed,
            observed: o.observed.clone(),
            threshold: o.threshold.clone(),
            samples: o.samples.clone(),
            delta_version: version.map(|v| v as i64),
            duration_ms: o.duration.as_millis() as i64,
            at,
        })
        .collect()
}

/// `basin check`: store results evaluated outside a run.
pub async fn store_check_results(
    store: &dyn MetaStore,
    key: &AssetKey,
    version: Option<u64>,
    checked: &Checked,
) -> Result<()> {
    store.add_check_results(&check_results(None, key, version, checked)).await
}
