//! `basin check SELECTION`: the checks of the selected assets on their current data, without
//! building anything (in a run, the run engine evaluates them after each build).

use basin_core::check::{CheckKind, Severity};
use basin_core::{AssetKey, Project};
use basin_engine::Lake;
use basin_engine::work::{History, evaluate_checks};
use basin_meta::MetaStore;

/// What checks of `key` know about its materialisations outside a run: the latest build is
/// judged against those before it. The store is read only when a check judges the history.
async fn history(project: &Project, store: &dyn MetaStore, key: &AssetKey) -> History {
    let asset = key.to_string();
    if !project.checks.get(key).is_some_and(|specs| specs.iter().any(|s| s.reads_history())) {
        return History::default();
    }
    let history = store.materializations(Some(&asset), 31).await.unwrap_or_else(|e| {
        tracing::warn!(%asset, "cannot read materialisations for checks: {e}");
        Vec::new()
    });
    History {
        rows_written: history.first().map(|m| m.rows.max(0) as u64),
        earlier_rows: history.iter().skip(1).map(|m| m.rows).collect(),
        last_materialized: history.first().map(|m| m.at),
        reconciliation: None,
    }
}

/// `basin check SELECTION`: evaluate the checks of the selected assets on their current data,
/// store the results (without a run), print them. Whether every `error` check passed.
pub async fn check(project: &Project, lake: &Lake, keys: &[AssetKey]) -> anyhow::Result<bool> {
    let store = basin_orchestrator::record::open_store(project).await?;
    let session = lake.session(&basin_engine::materialize::view_definitions(project), None).await?;
    let ctx = session.ctx;
    let (mut evaluated, mut failed, mut warned) = (0, 0, 0);
    println!("{:<7} {:<36} {:<40} {:<28} threshold", "result", "asset", "check", "observed");
    for key in project.graph.order(keys.iter()) {
        if project.checks.get(key).is_none_or(|c| c.is_empty()) {
            continue;
        }
        if project.bronze.contains_key(key) {
            // A bronze table's checks read its current state.
            if let Err(e) = lake.register_current_state(&ctx, key).await {
                tracing::debug!(%key, "no current state: {e}");
            }
        }
        let version = lake.table(key).await.ok().flatten().and_then(|t| t.version());
        let checked = evaluate_checks(project, &ctx, key, history(project, store.as_ref(), key).await).await;
        for o in &checked.outcomes {
            evaluated += 1;
            let result = match (o.passed, o.severity) {
                (true, _) => "pass",
                (false, Severity::Error) => {
                    failed += 1;
                    "FAIL"
                }
                (false, Severity::Warn) => {
                    warned += 1;
                    "warn"
                }
            };
            println!("{result:<7} {:<36} {:<40} {:<28} {}", key.to_string(), o.name, o.observed, o.threshold);
            for s in o.samples.iter().take(5) {
                println!("{:<7} {:<36} {:<40}   e.g. {s}", "", "", "");
            }
        }
        basin_orchestrator::record::store_check_results(store.as_ref(), key, version, &checked).await?;
    }
    let skipped = "(reconcile is judged when a table is ingested)";
    let has_reconcile =
        keys.iter().any(|k| project.checks.get(k).is_some_and(|c| c.iter().any(|s| s.kind == CheckKind::Reconcile)));
    println!(
        "{evaluated} check(s): {} passed, {failed} failed, {warned} warned{}",
        evaluated - failed - warned,
        if has_reconcile { format!(" {skipped}") } else { String::new() }
    );
    Ok(failed == 0)
}
