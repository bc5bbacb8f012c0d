//! Backfills as runs: a range of days cut into runs of at most `per_run` days, queued in one
//! transaction and tagged `kind=backfill`, `backfill=<id>`. The backfill *is* its runs, so its
//! progress is theirs and nothing is lost when a process dies; whoever does the runs (a daemon,
//! or `basin backfill` in its own process) takes them from the queue.

use std::collections::BTreeMap;

use basin_core::partition::DayRange;
use basin_meta::{MetaStore, NewRun, Run, RunFilter, RunStatus};

use crate::Result;

/// The tag naming a run's backfill.
pub const TAG: &str = "backfill";

/// Queue a new backfill of `selection` over `range`; its id and runs, in day order.
pub async fn create(
    store: &dyn MetaStore,
    selection: Vec<String>,
    range: DayRange,
    per_run: u64,
    launcher: &str,
) -> Result<(String, Vec<Run>)> {
    let id = format!("bf-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let runs = range
        .chunks(per_run)
        .into_iter()
        .map(|r| {
            let mut new = NewRun { partition: Some(r.to_string()), ..NewRun::new(selection.clone(), launcher) };
            new.tags.insert("kind".into(), "backfill".into());
            new.tags.insert(TAG.into(), id.clone());
            new
        })
        .collect();
    let runs = store.create_runs(runs).await?;
    Ok((id, runs))
}

/// The latest attempt at each range of backfill `id`, in day order (none: no such backfill).
pub async fn ranges(store: &dyn MetaStore, id: &str) -> Result<Vec<(DayRange, Run)>> {
    let runs = store
        .runs(&RunFilter { tag: Some((TAG.into(), id.into())), limit: Some(1_000_000), ..Default::default() })
        .await?;
    let mut latest: BTreeMap<DayRange, Run> = BTreeMap::new();
    for run in runs {
        let Some(range) = run.partition.as_deref().and_then(|p| DayRange::parse(p).ok()) else { continue };
        match latest.get(&range) {
            Some(seen) if seen.attempt >= run.attempt => {}
            _ => {
                latest.insert(range, run);
            }
        }
    }
    Ok(latest.into_iter().collect())
}

/// A range queued again: how its latest attempt had ended, and the new attempt.
pub struct Requeued {
    pub range: DayRange,
    pub was: RunStatus,
    pub again: Run,
}

/// Queue again the ranges of backfill `id` whose latest attempt failed or was canceled (the
/// daemon's own retry where it has not queued one yet; else a new attempt).
pub async fn requeue(store: &dyn MetaStore, id: &str) -> Result<Vec<Requeued>> {
    let mut out = Vec::new();
    for (range, run) in ranges(store, id).await? {
        if !matches!(run.status, RunStatus::Failure | RunStatus::Canceled) {
            continue;
        }
        let again = match store.retry_run(&run.id, chrono::Utc::now()).await? {
            Some(r) => r,
            None => {
                let next = NewRun {
                    partition: run.partition.clone(),
                    tags: run.tags.clone(),
                    priority: run.priority,
                    attempt: run.attempt + 1,
                    parent_run_id: Some(run.id.clone()),
                    ..NewRun::new(run.selection.clone(), &run.launcher)
                };
                store.create_run(next).await?
            }
        };
        out.push(Requeued { range, was: run.status, again });
    }
    Ok(out)
}
