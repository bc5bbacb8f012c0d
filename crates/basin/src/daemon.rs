//! `basin daemon`, `basin worker` and `basin run --queue`: the orchestrator wired to the
//! engine. The daemon's decisions live in `basin-orchestrator`; here are the settings it reads
//! from `basin.toml`, the launchers it gets, and the worker that does one queued run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use basin_core::Project;
use basin_core::clock::SystemClock;
use basin_core::daemon::Schedule;
use basin_core::model::{Automation, Materialization};
use basin_meta::{Finish, NewRun, QueueLimits};
use basin_orchestrator::{Daemon, Eager, Launcher, OnCron, RunInProcess, Settings};

use basin_orchestrator::record::{Recorder, open_store};

/// How often the daemon looks at its schedules and queue.
const POLL: Duration = Duration::from_millis(100);

/// `basin run --queue`: queue a run for the daemon.
pub async fn enqueue(
    project: &Project,
    selection: Vec<String>,
    full_refresh: bool,
    priority: i64,
    tags: &[String],
    partition: Option<String>,
) -> anyhow::Result<ExitCode> {
    let mut new =
        NewRun { full_refresh, priority, partition, ..NewRun::new(selection, &project.config.daemon.launcher) };
    for t in tags {
        let (k, v) = crate::runs::parse_tag(t)?;
        new.tags.insert(k, v);
    }
    let run = basin_orchestrator::record::queue(project, new).await?;
    println!("{}", run.id);
    eprintln!("queued run {}; `basin daemon` launches it (`basin runs show {}` to follow it)", run.id, run.id);
    Ok(ExitCode::SUCCESS)
}

/// `basin worker --run-id ID`: take the queued run, build its selection, end it.
pub async fn worker(start: &Path, run_id: &str) -> anyhow::Result<ExitCode> {
    let (project, lake) = crate::open::open(start)?;
    basin_engine::lake::set_memory_limit(project.config.daemon.worker_memory_limit());
    Ok(if execute(&project, &lake, run_id).await? { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `basin worker --standby` (what the daemon keeps ahead of its runs): open the store, wait
/// on stdin for a run id, take that run, and only then read the project, so the run sees the
/// models as they are when it starts. An empty stdin (the daemon let it go) ends it quietly.
pub async fn standby(start: &Path) -> anyhow::Result<ExitCode> {
    let dir = Project::find(start)?;
    let file = dir.join(basin_core::config::PROJECT_FILE);
    let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let config = basin_core::config::parse_project_config(&text, &mut Vec::new())
        .with_context(|| format!("{} cannot be read", file.display()))?;
    let store = basin_meta::open(config.metadata.url.expose(), &dir, Arc::new(SystemClock)).await?;
    let line = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await??;
    let run_id = line.trim();
    if run_id.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let Some(run) = basin_orchestrator::record::take_standby(store.as_ref(), run_id).await? else {
        eprintln!("run {run_id} was canceled or taken meanwhile; nothing to do");
        return Ok(ExitCode::SUCCESS);
    };
    let (project, lake) = match crate::open::open(&dir) {
        Ok(opened) => opened,
        Err(e) => {
            let message = format!("the project cannot be loaded: {}", basin_core::error::chain(e.as_ref()));
            let category = basin_core::failure::FailureCategory::BadQuery;
            basin_orchestrator::record::fail_taken(store.as_ref(), run_id, category, message).await?;
            return Err(e);
        }
    };
    basin_engine::lake::set_memory_limit(project.config.daemon.worker_memory_limit());
    let recorder = Recorder::adopt(&project, store, run);
    Ok(if run_taken(&project, &lake, recorder).await? { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Do queued run `run_id` in this process; whether it succeeded.
pub(crate) async fn execute(project: &Project, lake: &basin_engine::Lake, run_id: &str) -> anyhow::Result<bool> {
    let recorder = match Recorder::take(project, run_id).await {
        Ok(r) => r,
        // Canceled or taken meanwhile: nothing to do, and nothing wrong with this worker.
        Err(basin_meta::Error::NotStartable { status, .. }) => {
            eprintln!("run {run_id} is {status}; nothing to do");
            return Ok(true);
        }
        Err(e) => return Err(e.into()),
    };
    run_taken(project, lake, recorder).await
}

/// Build the selection of a run this process has taken, and end it; whether it succeeded.
async fn run_taken(project: &Project, lake: &basin_engine::Lake, recorder: Recorder) -> anyhow::Result<bool> {
    let keys = match crate::open::select(project, &recorder.run().selection) {
        Ok(k) => k,
        Err(e) => {
            let message = format!("its selection no longer resolves: {}", basin_core::error::chain(e.as_ref()));
            recorder
                .finish(Finish::Failure { category: basin_core::failure::FailureCategory::BadQuery, message })
                .await?;
            return Err(e);
        }
    };
    let concurrency = project.config.run.effective_concurrency().max(1);
    let report = crate::run::run(project, lake, &keys, recorder, concurrency, crate::run::Output::Full).await?;
    Ok(!report.failed())
}

/// The `in_process` launcher: a queued run done by a task of the daemon itself.
struct InProcess {
    dir: PathBuf,
}

#[async_trait::async_trait]
impl RunInProcess for InProcess {
    async fn execute(&self, run_id: String) {
        let outcome = match crate::open::open(&self.dir) {
            Ok((project, lake)) => execute(&project, &lake, &run_id).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            eprintln!("run {run_id}: {}", basin_core::error::chain(e.as_ref()));
        }
    }
}

fn launcher(project: &Project) -> anyhow::Result<Launcher> {
    let logs = project.dir.join(".basin/logs");
    Ok(match project.config.daemon.launcher.as_str() {
        "in_process" => Launcher::InProcess(Arc::new(InProcess { dir: project.dir.clone() })),
        "command" => Launcher::Command {
            template: project.config.daemon.command.clone().context("`launcher = \"command\"` needs a `command`")?,
            project: project.dir.clone(),
            logs,
        },
        _ => Launcher::Subprocess {
            program: std::env::current_exe().context("cannot find the basin executable to launch workers")?,
            project: project.dir.clone(),
            logs,
            standby: project.config.daemon.standby_workers,
        },
    })
}

pub fn settings(project: &Project) -> anyhow::Result<Settings> {
    let d = &project.config.daemon;
    Ok(Settings {
        limits: QueueLimits { max_concurrent_runs: d.max_concurrent_runs.max(1), tag_limits: d.tag_limits.clone() },
        retry: d
            .retry_policies(project.models.values().filter_map(|m| Some((m.key.to_string(), m.config.retry.as_ref()?))))
            .map_err(anyhow::Error::msg)?,
        dead_after: project.config.run.dead_after(),
        monitor_interval: project.config.run.heartbeat_interval(),
        run_timeout: d.run_timeout(),
    })
}

/// How `basin status` and the watchdog judge classes.
pub fn status_options(project: &Project) -> basin_orchestrator::status::Options {
    let w = &project.config.watchdog;
    basin_orchestrator::status::Options {
        heartbeat: project.config.run.heartbeat_interval(),
        running_long_factor: w.running_long_factor,
        duration_window: w.duration_window.max(3),
        slos: slos(project),
    }
}

/// The models' freshness SLOs (a project that loaded has valid ones).
pub fn slos(project: &Project) -> std::collections::BTreeMap<String, basin_core::slo::Slo> {
    project.models.values().filter_map(|m| Some((m.key.to_string(), m.config.slo.as_ref()?.parse().ok()?))).collect()
}

/// The `[[alerts]]` channels with their secrets read from the environment, and each one's
/// `select` resolved on the project. A variable not set is an error naming it.
pub fn alerter(
    project: &Project,
    store: Arc<dyn basin_meta::MetaStore>,
    clock: Arc<dyn basin_core::clock::Clock>,
) -> anyhow::Result<basin_orchestrator::alerts::Alerter> {
    let mut channels = Vec::new();
    for a in &project.config.alerts {
        let assets = match &a.select {
            Some(s) => Some(
                crate::open::select(project, std::slice::from_ref(s))
                    .with_context(|| format!("alert channel `{}`: `select`", a.name))?
                    .into_iter()
                    .map(|k| k.to_string())
                    .collect(),
            ),
            None => None,
        };
        channels.push(
            basin_orchestrator::alerts::Channel::new(a, assets, |v| std::env::var(v).ok())
                .map_err(anyhow::Error::msg)?,
        );
    }
    Ok(basin_orchestrator::alerts::Alerter::new(&project.config.project.name, channels, store, clock))
}

/// The daemon's watchdog, per `[watchdog]` and `[[alerts]]`.
pub fn watchdog(
    project: &Project,
    store: Arc<dyn basin_meta::MetaStore>,
    clock: Arc<dyn basin_core::clock::Clock>,
) -> anyhow::Result<basin_orchestrator::watchdog::Watchdog> {
    let w = &project.config.watchdog;
    let heartbeat = match &w.heartbeat_url {
        Some(url) => {
            Some(basin_core::config::interpolate_env(url.expose(), |v| std::env::var(v).ok()).map_err(|var| {
                anyhow::anyhow!("`watchdog.heartbeat_url` uses environment variable `{var}`, which is not set")
            })?)
        }
        None => None,
    };
    let assets = project.graph.keys().map(|k| k.to_string()).collect();
    Ok(basin_orchestrator::watchdog::Watchdog::new(
        assets,
        w.interval(),
        status_options(project),
        alerter(project, store, clock)?,
    )
    .with_heartbeat(heartbeat)
    .with_remedies(basin_orchestrator::watchdog::Remedies {
        relaunch: w.relaunch,
        max_per_cycle: w.max_relaunches_per_cycle,
        cooldown: w.relaunch_cooldown(),
        max_strikes: w.max_strikes,
        launcher: project.config.daemon.launcher.clone(),
    }))
}

/// `basin daemon`: tick until SIGINT or SIGTERM.
pub async fn run(project: Project, serve: bool, metrics_listen: Option<&str>) -> anyhow::Result<ExitCode> {
    let store = open_store(&project).await?;
    if let Some(addr) = metrics_listen {
        let lake = basin_engine::Lake::open(&project.storage_root(), &project.config.storage.options)?;
        let server = basin_server::Server::new(&project, lake, store.clone())?;
        let (bound, serving) = basin_server::bind_metrics(server, addr).await?;
        eprintln!("metrics at http://{bound}/metrics");
        tokio::spawn(async move {
            if let Err(e) = serving.await {
                tracing::error!(error = %e, "the metrics endpoint stopped");
            }
        });
    }
    if serve {
        let lake = basin_engine::Lake::open(&project.storage_root(), &project.config.storage.options)?;
        let endpoint = crate::open::serve(&project, lake, store.clone()).await?;
        tokio::spawn(async move {
            if let Err(e) = endpoint.await {
                tracing::error!(error = %e, "the SQL endpoint stopped");
            }
        });
    }
    let schedules: Vec<Schedule> =
        project.config.schedules.iter().map(Schedule::parse).collect::<Result<_, _>>().map_err(anyhow::Error::msg)?;
    let launcher = launcher(&project)?;
    let settings = settings(&project)?;
    let (mut eager, mut on_cron) = (Vec::new(), Vec::new());
    for m in project.models.values() {
        let (asset, upstream) = (m.key.to_string(), materialized_upstream(&project, &m.key));
        match m.config.automation {
            Some(Automation::Eager) => eager.push(Eager { asset, upstream }),
            Some(Automation::OnCron) => {
                let schedule = m.config.cron_schedule(&asset).context("on_cron without `cron`")?;
                on_cron.push(OnCron { schedule: schedule.map_err(anyhow::Error::msg)?, asset, upstream });
            }
            None => {}
        }
    }
    let automated = eager.len() + on_cron.len();
    let watchdog = watchdog(&project, store.clone(), Arc::new(SystemClock))?;
    let watching = format!(
        "  watchdog every {}s, alerting {} channel(s){}",
        watchdog.interval().as_secs(),
        project.config.alerts.len(),
        if project.config.watchdog.heartbeat_url.is_some() { ", pinging its heartbeat URL" } else { "" }
    );
    let mut daemon = Daemon::new(store, Arc::new(SystemClock), settings.clone(), schedules.clone(), launcher.clone())
        .with_watchdog(watchdog)
        .with_automation(eager)
        .with_cron_automation(on_cron)
        .with_sensors(crate::sensors::sensors(&project)?)
        .with_footprints(basin_orchestrator::footprints(project.graph.clone()));
    eprintln!(
        "basin daemon {} on {}: {} schedule(s), launcher {}, up to {} run(s) at once{}",
        daemon.id(),
        project.dir.display(),
        schedules.len(),
        launcher.name(),
        settings.limits.max_concurrent_runs,
        if settings.limits.tag_limits.is_empty() {
            String::new()
        } else {
            let limits: Vec<String> = settings.limits.tag_limits.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            format!(" ({})", limits.join(", "))
        }
    );
    for s in &schedules {
        eprintln!("  schedule {}: `{}` ({}) → {}", s.name, s.cron_text, s.timezone, s.selection);
    }
    for (name, what) in crate::sensors::describe(&project) {
        eprintln!("  sensor {name}: {what}");
    }
    if automated > 0 {
        eprintln!("  {automated} automated asset(s) (eager, on_cron)");
    }
    eprintln!("{watching}");
    daemon
        .run_until(POLL, shutdown(), |tick| {
            for n in &tick.notices {
                println!("{} {n}", chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ"));
            }
        })
        .await?;
    eprintln!(
        "basin daemon stopped; {} run(s) it launched are still running and will end on their own",
        daemon.running()
    );
    Ok(ExitCode::SUCCESS)
}

/// The materialised assets `key` reads: a view is looked through to what it reads, since a
/// view has no materialisations.
fn materialized_upstream(project: &Project, key: &basin_core::AssetKey) -> Vec<String> {
    let mut upstream = std::collections::BTreeSet::new();
    let mut stack = project.graph.upstream(key);
    let mut seen = std::collections::BTreeSet::new();
    while let Some(up) = stack.pop() {
        if !seen.insert(up) {
            continue;
        }
        match project.models.get(up) {
            Some(v) if v.config.materialized == Materialization::View => stack.extend(project.graph.upstream(up)),
            _ => {
                upstream.insert(up.to_string());
            }
        }
    }
    upstream.into_iter().collect()
}

async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
