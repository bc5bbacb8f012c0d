//! Checks as runs use them: evaluated after each materialisation (in the build's own task, on
//! the version just committed), recorded in the metadata store and the run's events, and
//! `basin check SELECTION` on the current data without building anything.

use std::sync::Arc;

use basin_core::check::{Check, CheckKind, CheckSpec, Severity};
use basin_core::{AssetKey, Project};
use basin_engine::Lake;
use basin_engine::checks::{CheckContext, CheckOutcome};
use basin_engine::datafusion::prelude::SessionContext;
use basin_meta::{CheckResult, Level, MetaStore};

use crate::record::Recorder;

/// The checks of one materialisation.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    pub outcomes: Vec<CheckOutcome>,
}

impl Checked {
    /// The failed `error` checks: what stops downstream assets.
    pub fn blocking(&self) -> impl Iterator<Item = &CheckOutcome> {
        self.outcomes.iter().filter(|o| !o.passed && o.severity == Severity::Error)
    }

    /// `not_null(customer_id): 12 rows` for each blocking failure.
    pub fn blocking_reason(&self) -> Option<String> {
        let failed: Vec<String> = self.blocking().map(|o| format!("{}: {}", o.name, o.observed)).collect();
        (!failed.is_empty()).then(|| failed.join("; "))
    }
}

/// What checks of `key` know about its materialisations: rows written now (`None` outside a
/// build) and earlier, and when it was last built. The store is read only when a check
/// judges the history (`volume_change`, `freshness` of the last build).
async fn context(
    project: &Project,
    store: &dyn MetaStore,
    key: &AssetKey,
    specs: &[CheckSpec],
    written: Option<u64>,
    reconciliation: Option<(u64, u64)>,
) -> CheckContext {
    let asset = key.to_string();
    let needs_history =
        specs.iter().any(|s| matches!(s.check, Check::VolumeChange { .. } | Check::Freshness { column: None, .. }));
    let history = if needs_history {
        store.materializations(Some(&asset), 31).await.unwrap_or_else(|e| {
            tracing::warn!(%asset, "cannot read materialisations for checks: {e}");
            Vec::new()
        })
    } else {
        Vec::new()
    };
    let now = chrono::Utc::now();
    let key_columns = match (project.models.get(key), project.bronze.get(key)) {
        (Some(m), _) => m.config.unique_key.0.clone(),
        (_, Some(t)) => t.primary_key.clone(),
        _ => Vec::new(),
    };
    let (rows_written, earlier_rows, last_materialized) = match written {
        // Built just now: the history is of earlier builds.
        Some(rows) => (Some(rows), history.iter().map(|m| m.rows).collect(), Some(now)),
        // `basin check`: the latest build is judged against those before it.
        None => (
            history.first().map(|m| m.rows.max(0) as u64),
            history.iter().skip(1).map(|m| m.rows).collect(),
            history.first().map(|m| m.at),
        ),
    };
    CheckContext { now, key_columns, rows_written, earlier_rows, last_materialized, reconciliation }
}

/// The relation checks of `key` read: a bronze table's current state (the latest snapshot, or
/// the latest version of each key), a model's table or view.
fn relation(project: &Project, ctx: &SessionContext, key: &AssetKey) -> AssetKey {
    if project.bronze.contains_key(key) {
        let current = AssetKey::new(basin_engine::bronze::CURRENT_SCHEMA, &key.name);
        if ctx.table_exist(format!("{}.{}", current.schema, current.name)).unwrap_or(false) {
            return current;
        }
    }
    key.clone()
}

/// Evaluate the checks of `key` over `ctx` (where the version to check is registered).
pub async fn evaluate(
    project: &Project,
    store: &dyn MetaStore,
    ctx: &SessionContext,
    key: &AssetKey,
    written: Option<u64>,
    reconciliation: Option<(u64, u64)>,
) -> Checked {
    let Some(specs) = project.checks.get(key).filter(|s| !s.is_empty()) else { return Checked::default() };
    let c = context(project, store, key, specs, written, reconciliation).await;
    let on = relation(project, ctx, key);
    Checked { outcomes: basin_engine::checks::evaluate(ctx, &on, specs, &c).await }
}

/// After an ingestion: register the new version of its bronze table and its current state in
/// `ctx` (so later builds of the run read them), then evaluate the table's checks, `reconcile`
/// with this ingestion's counts.
pub async fn after_ingest(
    project: &Project,
    lake: &Lake,
    ctx: &SessionContext,
    store: &dyn MetaStore,
    i: &basin_engine::ingest::Ingested,
) -> basin_engine::Result<Checked> {
    let key = &i.table.key;
    if let Some(t) = lake.table(key).await? {
        lake.register_table(ctx, key, &t).await?;
        lake.register_current_state(ctx, key).await?;
    }
    let counts = (i.reconciliation.source_rows, i.reconciliation.read_rows);
    Ok(evaluate(project, store, ctx, key, Some(i.rows), Some(counts)).await)
}

/// The outcomes as the metadata store keeps them.
pub fn results(run_id: Option<&str>, key: &AssetKey, version: Option<u64>, checked: &Checked) -> Vec<CheckResult> {
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

/// Store a run's check results, with an event for each failure (`check_failed`, at error or
/// warn level by severity) and one for the passes.
pub async fn record(recorder: &Recorder, key: &AssetKey, version: Option<u64>, checked: &Checked) {
    if checked.outcomes.is_empty() {
        return;
    }
    if let Err(e) = recorder.store().add_check_results(&results(Some(recorder.id()), key, version, checked)).await {
        tracing::warn!(run = %recorder.id(), asset = %key, "cannot record check results: {e}");
    }
    let asset = key.to_string();
    let mut events = Vec::new();
    for o in checked.outcomes.iter().filter(|o| !o.passed) {
        let level = if o.severity == Severity::Error { Level::Error } else { Level::Warn };
        let samples = if o.samples.is_empty() { String::new() } else { format!("; e.g. {}", o.samples.join(" | ")) };
        events.push(basin_meta::NewEvent::new(
            "check_failed",
            level,
            Some(&asset),
            format!("{}{samples}", o.summary()),
        ));
    }
    let passed = checked.outcomes.iter().filter(|o| o.passed).count();
    if passed > 0 {
        events.push(basin_meta::NewEvent::new(
            "checks_passed",
            Level::Info,
            Some(&asset),
            format!("{passed} of {} check(s) passed", checked.outcomes.len()),
        ));
    }
    recorder.events(&events).await;
}

/// One line per failed check, for the run's output.
pub fn failure_lines(key: &AssetKey, checked: &Checked) -> Vec<String> {
    checked
        .outcomes
        .iter()
        .filter(|o| !o.passed)
        .map(|o| {
            let label = if o.severity == Severity::Error { "CHECK" } else { "warn" };
            let samples = if o.samples.is_empty() {
                String::new()
            } else {
                let shown: Vec<&str> = o.samples.iter().take(3).map(String::as_str).collect();
                let more = if o.samples.len() > 3 { ", …" } else { "" };
                format!(" — e.g. {}{more}", shown.join("; "))
            };
            format!("  {label:<6} {key} {}{samples}", o.summary())
        })
        .collect()
}

/// `basin check SELECTION`: evaluate the checks of the selected assets on their current data,
/// store the results (without a run), print them. Whether every `error` check passed.
pub async fn check(project: &Project, lake: &Lake, keys: &[AssetKey]) -> anyhow::Result<bool> {
    let store: Arc<dyn MetaStore> = crate::record::open_store(project).await?;
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
        let checked = evaluate(project, store.as_ref(), &ctx, key, None, None).await;
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
        store.add_check_results(&results(None, key, version, &checked)).await?;
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
