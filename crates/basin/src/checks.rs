//! `basin check SELECTION`: prints what the run engine's check pass
//! ([`basin_orchestrator::check`]) evaluates on the selected assets' current data.

use std::sync::Arc;

use basin_core::check::{CheckKind, Severity};
use basin_core::{AssetKey, Project};
use basin_engine::Lake;
use basin_engine::work::LakeMaterializer;

/// Evaluate, store and print the checks of `keys`. Whether every `error` check passed.
pub async fn check(project: &Project, lake: &Lake, keys: &[AssetKey]) -> anyhow::Result<bool> {
    let store = basin_orchestrator::record::open_store(project).await?;
    let materializer = LakeMaterializer::new(Arc::new(project.clone()), lake.clone());
    let (mut evaluated, mut failed, mut warned) = (0, 0, 0);
    println!("{:<7} {:<36} {:<40} {:<28} threshold", "result", "asset", "check", "observed");
    basin_orchestrator::check::check(project, &materializer, store.as_ref(), keys, |key, checked| {
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
    })
    .await?;
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
