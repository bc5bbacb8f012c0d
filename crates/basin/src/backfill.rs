//! `basin backfill SELECTION --from DAY --to DAY`: build daily-partitioned models over a range
//! of days. The range is cut into runs of at most `--per-run` days (one query per run, not one
//! per day), all recorded as queued runs in one transaction and tagged `kind=backfill`,
//! `backfill=<id>`: the backfill *is* its runs, so its progress is theirs and nothing is lost
//! when a process dies. This process then does them in order (a running daemon may take some),
//! or with `--queue` leaves them to `basin daemon` (where `"kind=backfill" = 1` in
//! `[daemon.tag_limits]` keeps backfills from crowding out the nightly runs).
//! `--resume ID` requeues what failed, was canceled or died, and goes on.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use basin_core::partition::DayRange;
use basin_core::{AssetKey, Project};
use basin_meta::{MetaStore, Run, RunStatus};
use basin_orchestrator::backfill;
use basin_orchestrator::record::open_store;

/// Refuse assets that are not daily-partitioned: a range of days means nothing to them.
pub fn partitioned_only(project: &Project, keys: &[AssetKey]) -> anyhow::Result<()> {
    let other: Vec<String> = keys
        .iter()
        .filter(|k| project.models.get(*k).is_none_or(|m| m.config.partitions.is_none()))
        .map(ToString::to_string)
        .collect();
    if !other.is_empty() {
        anyhow::bail!(
            "not daily-partitioned: {}; only models with `partitions = \"daily\"` are built by days \
             (select just those, or run the others with `basin run`)",
            other.join(", ")
        );
    }
    Ok(())
}

/// Queue a new backfill's runs; its id and runs.
pub async fn create(
    project: &Project,
    selection: Vec<String>,
    range: DayRange,
    per_run: u64,
    launcher: &str,
) -> anyhow::Result<(String, Vec<Run>)> {
    let store = open_store(project).await?;
    Ok(backfill::create(store.as_ref(), selection, range, per_run, launcher).await?)
}

/// The latest attempt at each range of backfill `id`, in day order.
async fn ranges(store: &dyn MetaStore, id: &str) -> anyhow::Result<Vec<(DayRange, Run)>> {
    let ranges = backfill::ranges(store, id).await?;
    if ranges.is_empty() {
        anyhow::bail!(
            "no backfill `{id}` (its id is printed when it starts; `basin runs --tag kind=backfill` lists them)"
        );
    }
    Ok(ranges)
}

/// Do the queued runs of backfill `id` in this process, in day order, printing progress;
/// whether every range succeeded.
pub async fn work(project: &Project, lake: &basin_engine::Lake, id: &str) -> anyhow::Result<bool> {
    let store = open_store(project).await?;
    let total = ranges(store.as_ref(), id).await?.len();
    let started = Instant::now();
    loop {
        let ranges = ranges(store.as_ref(), id).await?;
        let Some((range, run)) = ranges.iter().find(|(_, r)| r.status == RunStatus::Queued) else { break };
        let done = ranges.iter().filter(|(_, r)| r.status == RunStatus::Success).count();
        println!("backfill {id}: [{}/{total}] {range} (run {})", done + 1, run.id);
        let t = Instant::now();
        crate::daemon::execute(project, lake, &run.id).await?;
        let after = store.run(&run.id).await?.map(|r| r.status.to_string()).unwrap_or_default();
        println!("backfill {id}: {range} {after} in {:.1}s", t.elapsed().as_secs_f64());
    }
    // Ranges another worker (a daemon) holds are waited for: the backfill ends when they do.
    wait_while_in_flight(project, store.as_ref(), id).await?;
    let ranges = ranges(store.as_ref(), id).await?;
    let failed: Vec<String> = ranges
        .iter()
        .filter(|(_, r)| r.status != RunStatus::Success)
        .map(|(d, r)| format!("{d} ({})", r.status))
        .collect();
    println!(
        "backfill {id}: {}/{total} range(s) done in {:.1}s{}",
        total - failed.len(),
        started.elapsed().as_secs_f64(),
        if failed.is_empty() {
            String::new()
        } else {
            format!("; not done: {} — `basin backfill --resume {id}` requeues them", failed.join(", "))
        }
    );
    Ok(failed.is_empty())
}

async fn wait_while_in_flight(project: &Project, store: &dyn MetaStore, id: &str) -> anyhow::Result<()> {
    let mut told = false;
    loop {
        basin_orchestrator::record::reap(project, store).await?;
        let busy: Vec<(DayRange, Run)> =
            ranges(store, id).await?.into_iter().filter(|(_, r)| r.status.is_in_flight()).collect();
        let Some((range, run)) = busy.first() else { return Ok(()) };
        if !told {
            println!(
                "backfill {id}: waiting for {} range(s) in flight elsewhere, e.g. {range} (run {}, worker {})",
                busy.len(),
                run.id,
                run.worker.as_deref().unwrap_or("?")
            );
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Requeue the ranges of backfill `id` that failed, were canceled or whose worker died (once
/// its heartbeat is stale); how many.
pub async fn requeue(project: &Project, id: &str) -> anyhow::Result<usize> {
    let store = open_store(project).await?;
    wait_while_in_flight(project, store.as_ref(), id).await?;
    ranges(store.as_ref(), id).await?;
    let requeued = backfill::requeue(store.as_ref(), id).await?;
    for r in &requeued {
        println!("backfill {id}: {} was {}; attempt {} queued as run {}", r.range, r.was, r.again.attempt, r.again.id);
    }
    Ok(requeued.len())
}

/// `basin backfill --status ID`: each range, its latest attempt and how it stands.
pub async fn status(project: &Project, id: &str) -> anyhow::Result<ExitCode> {
    let store: Arc<dyn MetaStore> = open_store(project).await?;
    basin_orchestrator::record::reap(project, store.as_ref()).await?;
    let ranges = ranges(store.as_ref(), id).await?;
    let done = ranges.iter().filter(|(_, r)| r.status == RunStatus::Success).count();
    let selection = ranges.first().map(|(_, r)| r.selection.join(" ")).unwrap_or_default();
    println!("backfill {id}: {selection}, {done}/{} range(s) done", ranges.len());
    println!("{:<24} {:<9} {:>7} {:<36} {:>9}", "RANGE", "STATUS", "ATTEMPT", "RUN", "DURATION");
    for (range, run) in &ranges {
        let took = run.duration().map(|d| format!("{:.1}s", d.num_milliseconds() as f64 / 1000.0)).unwrap_or_default();
        println!("{:<24} {:<9} {:>7} {:<36} {:>9}", range.to_string(), run.status.as_str(), run.attempt, run.id, took);
    }
    Ok(if done == ranges.len() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
