//! `basin run` and `basin plan`: build the selected models in dependency order, independent
//! ones concurrently (bounded), skipping everything downstream of a failure and saying why.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use basin_core::failure::FailureCategory;
use basin_core::model::{Materialization, Model};
use basin_core::{AssetKey, Project};
use basin_engine::{Action, Lake, Materialized, ModelRun};
use basin_meta::{Finish, Level};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio::task::JoinSet;

use crate::checks::Checked;
use crate::record::Recorder;

/// The run tag that turns the guardrail on destructive writes off (`--allow-shrink`).
pub const ALLOW_SHRINK_TAG: &str = "allow_shrink";

/// A time-ordered run id, stamped on every commit the run makes.
pub fn new_run_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A build's result: what it committed and what its checks found, or its error and failure
/// category.
type Built = Result<(Materialized, Checked), (String, FailureCategory)>;

enum Outcome {
    Built(Materialized),
    /// Committed, but an `error` check failed: downstream assets are skipped.
    CheckFailed(Materialized, String),
    Failed(String),
    Skipped(String),
}

pub struct Report {
    run_id: String,
    outcomes: BTreeMap<AssetKey, Outcome>,
    /// In build order, the failures (not the skips they caused).
    failures: Vec<(AssetKey, String, FailureCategory)>,
    canceled: bool,
}

impl Report {
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Whether something failed other than checks (and what they stopped).
    pub fn failed_otherwise(&self) -> bool {
        self.canceled || self.outcomes.values().any(|o| matches!(o, Outcome::Failed(_)))
    }

    pub fn failed(&self) -> bool {
        self.canceled || self.outcomes.values().any(|o| !matches!(o, Outcome::Built(_)))
    }

    /// How the run ends in the metadata store: canceled, failed as its first failure, or done.
    pub fn finish(&self) -> Finish {
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

/// How much `run` prints: every asset and a summary table, or only failures and skips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Full,
    Problems,
}

fn describe(m: &Materialized) -> String {
    let what = match &m.action {
        Action::Created => "created".to_string(),
        Action::Replaced => "replaced".to_string(),
        Action::Merged { inserted, updated } => format!("merged: {inserted} inserted, {updated} updated"),
        Action::ReplacedPartitions { partitions } => format!("replaced {partitions} partition(s)"),
        Action::ReplacedDays { range } => format!("replaced days {range}"),
        Action::NoNewData => "no new data".to_string(),
        Action::View => return "view registered".to_string(),
        Action::Ingested { detail } => return detail.clone(),
    };
    let version = m.version.map(|v| format!(", version {v}")).unwrap_or_default();
    format!("{what}, {} rows{version}", m.rows)
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// [`run`] as the run `recorder` records, ended in the metadata store with its outcome.
pub async fn run_recorded(
    project: &Project,
    lake: &Lake,
    keys: &[AssetKey],
    recorder: Recorder,
    concurrency: usize,
    verbosity: Verbosity,
) -> anyhow::Result<Report> {
    let full_refresh = recorder.run().full_refresh;
    let result = run(project, lake, keys, full_refresh, concurrency, verbosity, &recorder).await;
    let finish = match &result {
        Ok(report) => report.finish(),
        Err(e) => Finish::Failure { category: category_of(e), message: error_chain(e.as_ref()) },
    };
    let id = recorder.id().to_string();
    if !recorder.finish(finish).await? {
        tracing::warn!(run = %id, "the run had already been ended in the metadata store (canceled or taken for dead)");
    }
    result
}

/// Materialise `keys` (a selection) in dependency order.
pub async fn run(
    project: &Project,
    lake: &Lake,
    keys: &[AssetKey],
    full_refresh: bool,
    concurrency: usize,
    verbosity: Verbosity,
    recorder: &Recorder,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let partition = match recorder.run().partition.as_deref() {
        Some(p) => Some(basin_core::partition::DayRange::parse(p).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let run = ModelRun {
        run_id: recorder.id().to_string(),
        full_refresh,
        partition,
        max_shrink: project.config.run.max_shrink.unwrap_or(basin_core::config::DEFAULT_MAX_SHRINK),
        allow_shrink: recorder.run().tags.get(ALLOW_SHRINK_TAG).is_some_and(|v| v == "true"),
    };
    let cancel = recorder.canceled();
    tokio::pin!(cancel);
    let mut canceled = false;
    let mut failures = Vec::new();
    let selected: BTreeSet<&AssetKey> = keys.iter().collect();
    let views_outside = views_outside(project, &selected);
    let order: Vec<AssetKey> = project.graph.order(keys.iter()).into_iter().cloned().collect();
    let connections = crate::ingest::Connections::default();
    let waits_for: BTreeMap<&AssetKey, Vec<&AssetKey>> =
        order.iter().map(|k| (k, waits_for(project, k, &selected))).collect();
    // Views outside the selection are registered too, so selected models can read them.
    let session = lake.session(&basin_engine::materialize::view_definitions(project), None).await?;
    let ctx = session.ctx;

    let tty = std::io::stderr().is_terminal();
    let bars = MultiProgress::new();
    let overall = if tty {
        let bar = bars.add(ProgressBar::new(order.len() as u64));
        bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}").expect("valid template"));
        Some(bar)
    } else {
        None
    };
    let say = |line: String| match &overall {
        Some(bar) => bar.println(line),
        None => eprintln!("{line}"),
    };
    let full = verbosity == Verbosity::Full;
    if full {
        say(format!("run {} — {} asset(s), up to {concurrency} at once", run.run_id, order.len()));
    }

    let shared = std::sync::Arc::new(project.clone());
    let mut outcomes: BTreeMap<AssetKey, Outcome> = BTreeMap::new();
    let mut pending: Vec<AssetKey> = order.clone();
    let mut running: JoinSet<(AssetKey, Built)> = JoinSet::new();
    let mut spinners: BTreeMap<AssetKey, ProgressBar> = BTreeMap::new();
    loop {
        // Settle what can be decided without running: skip assets whose upstream did not build.
        let mut i = 0;
        while i < pending.len() && running.len() < concurrency {
            let key = &pending[i];
            let ups = &waits_for[key];
            if let Some(bad) = ups.iter().find(|u| {
                matches!(outcomes.get(**u), Some(Outcome::Failed(_) | Outcome::Skipped(_) | Outcome::CheckFailed(..)))
            }) {
                let reason = match &outcomes[*bad] {
                    Outcome::Failed(_) => format!("upstream {bad} failed"),
                    Outcome::CheckFailed(_, why) => format!("upstream check failed: {bad} {why}"),
                    _ => format!("upstream {bad} was skipped"),
                };
                say(format!("  skip   {key}: {reason}"));
                recorder.event("asset_skipped", Level::Warn, Some(&key.to_string()), reason.clone()).await;
                outcomes.insert(pending.remove(i), Outcome::Skipped(reason));
                if let Some(b) = &overall {
                    b.inc(1);
                }
                continue;
            }
            if ups.iter().all(|u| outcomes.contains_key(*u)) {
                let key = pending.remove(i);
                recorder.event("asset_started", Level::Info, Some(&key.to_string()), "started").await;
                let (lake, ctx, run) = (lake.clone(), ctx.clone(), run.clone());
                if tty {
                    let s = bars.add(ProgressBar::new_spinner());
                    s.set_message(format!("building {key}"));
                    s.enable_steady_tick(Duration::from_millis(120));
                    spinners.insert(key.clone(), s);
                }
                let store = recorder.store().clone();
                if let Some(table) = project.bronze.get(&key).cloned() {
                    let (project, connections) = (shared.clone(), connections.clone());
                    let bar = spinners.get(&key).cloned();
                    running.spawn(async move {
                        let ingested = crate::ingest::ingest_one(
                            &project,
                            &lake,
                            &connections,
                            &table,
                            &run.run_id,
                            run.allow_shrink,
                            bar,
                        )
                        .await;
                        let result = match ingested {
                            Ok(i) => crate::checks::after_ingest(&project, &lake, &ctx, store.as_ref(), &i)
                                .await
                                .map(|checked| (crate::ingest::materialized(&i), checked))
                                .map_err(|e| (error_chain(&e), e.failure_category())),
                            Err(e) => Err((error_chain(e.as_ref()), category_of(&e))),
                        };
                        (table.key.clone(), result)
                    });
                    continue;
                }
                let model = project.models[&key].clone();
                let project = shared.clone();
                running.spawn(async move {
                    let result = match run.materialize(&lake, &ctx, &model).await {
                        Ok(m) => {
                            let checked =
                                crate::checks::evaluate(&project, store.as_ref(), &ctx, &model.key, Some(m.rows), None)
                                    .await;
                            Ok((m, checked))
                        }
                        Err(e) => Err((error_chain(&e), e.failure_category())),
                    };
                    (model.key.clone(), result)
                });
                continue;
            }
            i += 1;
        }
        let done = tokio::select! {
            done = running.join_next() => done,
            () = &mut cancel, if !canceled => {
                // Commits are atomic: aborting a build leaves its table at its last version. A
                // build busy on the CPU stops at its next yield; the run does not wait for it.
                canceled = true;
                running.abort_all();
                running.detach_all();
                say("  run canceled: stopping".to_string());
                for key in pending.drain(..) {
                    outcomes.insert(key, Outcome::Skipped("run canceled".into()));
                }
                for key in &order {
                    outcomes.entry(key.clone()).or_insert_with(|| Outcome::Skipped("run canceled".into()));
                }
                continue;
            }
        };
        let Some(done) = done else { break };
        let (key, result) = done.expect("a build task panicked");
        if let Some(s) = spinners.remove(&key) {
            s.finish_and_clear();
        }
        if let Some(b) = &overall {
            b.inc(1);
        }
        match result {
            Ok((m, checked)) => {
                if full {
                    say(format!("  built  {key} ({}) in {}", describe(&m), secs(m.duration)));
                }
                record_built(recorder, project, &m).await;
                crate::checks::record(recorder, &key, m.version, &checked).await;
                for line in crate::checks::failure_lines(&key, &checked) {
                    say(line);
                }
                refresh_views_over(&views_outside, &ctx, &key).await;
                match checked.blocking_reason() {
                    Some(why) => {
                        failures.push((key.clone(), format!("check failed: {why}"), FailureCategory::CheckFailed));
                        outcomes.insert(key, Outcome::CheckFailed(m, why));
                    }
                    None => {
                        outcomes.insert(key, Outcome::Built(m));
                    }
                }
            }
            Err((e, category)) => {
                say(format!("  FAIL   {key}: {e}"));
                record_failed(recorder, &key, &e, category).await;
                failures.push((key.clone(), e.clone(), category));
                outcomes.insert(key, Outcome::Failed(e));
            }
        }
    }
    if let Some(b) = overall {
        b.finish_and_clear();
    }

    let report = Report { run_id: run.run_id.clone(), outcomes, failures, canceled };
    if full {
        print_summary(&report, &order, started.elapsed());
    }
    Ok(report)
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

/// Views outside the selection, in dependency order, each with everything it reads.
fn views_outside<'a>(project: &'a Project, selected: &BTreeSet<&AssetKey>) -> Vec<(&'a Model, BTreeSet<&'a AssetKey>)> {
    project
        .ordered(project.graph.keys())
        .into_iter()
        .filter(|m| m.config.materialized == Materialization::View && !selected.contains(&m.key))
        .map(|m| (m, project.graph.with_ancestors(&m.key).into_iter().collect()))
        .collect()
}

/// Views not built in this run but reading a table it just rebuilt are re-planned, so that
/// later models of the run read the new version through them.
async fn refresh_views_over(
    views: &[(&Model, BTreeSet<&AssetKey>)],
    ctx: &basin_engine::datafusion::prelude::SessionContext,
    key: &AssetKey,
) {
    for (view, reads) in views {
        if reads.contains(key)
            && let Err(e) = basin_engine::materialize::refresh_view(ctx, view).await
        {
            tracing::warn!(view = %view.key, "cannot refresh view: {e}");
        }
    }
}

/// How a run with these failures (in the order they happened) ends: as its first, or done.
pub fn failures_finish(failures: &[(AssetKey, String, FailureCategory)]) -> Finish {
    match failures {
        [] => Finish::Success,
        [(key, error, category), rest @ ..] => {
            let more = if rest.is_empty() { String::new() } else { format!(" (and {} more failed)", rest.len()) };
            Finish::Failure { category: *category, message: format!("{key}: {error}{more}") }
        }
    }
}

/// The run's record of an asset that failed.
pub async fn record_failed(recorder: &Recorder, key: &AssetKey, error: &str, category: FailureCategory) {
    recorder.event("asset_failed", Level::Error, Some(&key.to_string()), format!("{category}: {error}")).await;
}

/// The run's record of a built asset: an event, and a materialisation when it committed.
pub async fn record_built(recorder: &Recorder, project: &Project, m: &Materialized) {
    let asset = m.key.to_string();
    recorder.event("asset_materialized", Level::Info, Some(&asset), describe(m)).await;
    if m.version.is_some() {
        recorder
            .materialized(&basin_meta::Materialization {
                run_id: recorder.id().to_string(),
                asset,
                partition: match &m.action {
                    Action::ReplacedDays { range } => Some(range.clone()),
                    _ => None,
                },
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

/// The failure category of an error from the engine or a connector, wherever in the chain.
pub fn category_of(e: &anyhow::Error) -> FailureCategory {
    for cause in e.chain() {
        if let Some(engine) = cause.downcast_ref::<basin_engine::Error>() {
            return engine.failure_category();
        }
        if let Some(source) = cause.downcast_ref::<basin_connectors::Error>() {
            return if source.is_auth() {
                FailureCategory::Auth
            } else if matches!(source, basin_connectors::Error::Connect { .. }) {
                FailureCategory::SourceUnavailable
            } else if source.is_transient() {
                FailureCategory::Transient
            } else {
                FailureCategory::Other
            };
        }
    }
    FailureCategory::Other
}

pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

fn print_summary(report: &Report, order: &[AssetKey], elapsed: Duration) {
    let (mut built, mut failed, mut skipped, mut rows) = (0, 0, 0, 0u64);
    println!("{:<8} {:<40} {:>10} {:>9}  detail", "status", "asset", "rows", "time");
    for key in order {
        let Some(outcome) = report.outcomes.get(key) else { continue };
        match outcome {
            Outcome::Built(m) => {
                built += 1;
                rows += m.rows;
                println!("{:<8} {:<40} {:>10} {:>9}  {}", "ok", key.to_string(), m.rows, secs(m.duration), describe(m));
            }
            Outcome::CheckFailed(m, why) => {
                failed += 1;
                rows += m.rows;
                println!(
                    "{:<8} {:<40} {:>10} {:>9}  {}; check failed: {why}",
                    "CHECK",
                    key.to_string(),
                    m.rows,
                    secs(m.duration),
                    describe(m)
                );
            }
            Outcome::Failed(e) => {
                failed += 1;
                println!("{:<8} {:<40} {:>10} {:>9}  {e}", "FAILED", key.to_string(), "", "");
            }
            Outcome::Skipped(why) => {
                skipped += 1;
                println!("{:<8} {:<40} {:>10} {:>9}  {why}", "skipped", key.to_string(), "", "");
            }
        }
    }
    println!("{built} built, {failed} failed, {skipped} skipped, {rows} rows written in {}", secs(elapsed));
}

/// Print what `run` would do for `keys`, in order, and why. Reads the lake, writes nothing.
pub async fn plan(project: &Project, lake: &Lake, keys: &[AssetKey], full_refresh: bool) -> anyhow::Result<()> {
    let existing: BTreeSet<AssetKey> = lake.list_tables().await?.into_iter().collect();
    let ordered = project.graph.order(keys.iter());
    println!("{:>5}  {:<40} {:<12} action", "step", "asset", "materialized");
    for (i, key) in ordered.iter().enumerate() {
        if let Some(t) = project.bronze.get(key) {
            let action = match (&t.mode, &t.cursor) {
                (basin_core::source::Mode::Incremental, Some(c)) => {
                    format!(
                        "ingest from {}.{} where {c} is past the watermark (minus {}s lag)",
                        t.source,
                        t.name,
                        t.lag.as_secs()
                    )
                }
                (basin_core::source::Mode::Incremental, None) => {
                    format!("ingest the files of {}.{} that no earlier run landed", t.source, t.name)
                }
                _ => format!("ingest a full snapshot of {}.{} into today's partition", t.source, t.name),
            };
            println!("{:>5}  {:<40} {:<12} {action}", i + 1, key.to_string(), "source");
            continue;
        }
        let model = &project.models[*key];
        let kind = model.config.materialized;
        let exists = existing.contains(key);
        let action = match kind {
            Materialization::View => "register view (no data written)".to_string(),
            _ if model.config.partitions.is_some() => format!(
                "replace the days it builds (--partition; default yesterday) of [{}]{}",
                model.config.partition_by.0.join(", "),
                if exists { "" } else { ", creating the table" }
            ),
            _ if !exists => "create: the table does not exist yet".to_string(),
            Materialization::Table => {
                let changed = last_sql_hash(lake, key).await.is_some_and(|h| h != model.sql_hash());
                format!("replace in full{}", if changed { " (SQL changed since the last build)" } else { "" })
            }
            Materialization::Incremental if full_refresh => "rebuild from scratch (--full-refresh)".to_string(),
            Materialization::Incremental if !model.config.unique_key.0.is_empty() => {
                format!("merge on [{}]", model.config.unique_key.0.join(", "))
            }
            Materialization::Scd2 => format!(
                "history on [{}]: close changed and deleted keys, open their new versions (kept by --full-refresh)",
                model.config.unique_key.0.join(", ")
            ),
            Materialization::Incremental => {
                format!(
                    "replace the partitions of [{}] present in the new data",
                    model.config.partition_by.0.join(", ")
                )
            }
        };
        let ups: Vec<String> = project.graph.upstream(key).iter().map(|k| k.to_string()).collect();
        let after = if ups.is_empty() { String::new() } else { format!("; after {}", ups.join(", ")) };
        println!("{:>5}  {:<40} {:<12} {action}{after}", i + 1, key.to_string(), kind.as_str());
    }
    println!("{} asset(s); nothing was written", ordered.len());
    Ok(())
}

async fn last_sql_hash(lake: &Lake, key: &AssetKey) -> Option<String> {
    basin_engine::history::history(lake, key, Some(1)).await.ok()?.into_iter().next()?.sql_hash
}
