//! `basin run` and `basin plan` as the terminal shows them. The run itself is the run engine's
//! (`basin_orchestrator::run`, with the engine's materializer); here are the wiring and the
//! rendering of its events: progress bars on a terminal, plain lines otherwise, or one JSON
//! object per event (`--format json`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use basin_core::model::Materialization;
use basin_core::outcome::{CheckOutcome, Materialized};
use basin_core::{AssetKey, Project};
use basin_engine::Lake;
use basin_engine::work::LakeMaterializer;
use basin_orchestrator::Recorder;
use basin_orchestrator::run::{Events, Outcome, Report, RunEvent, RunOptions};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

pub use basin_orchestrator::run::ALLOW_SHRINK_TAG;

/// A time-ordered run id, stamped on every commit the run makes.
pub fn new_run_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// How `run` reports: every asset and a summary table, only failures and skips, or one JSON
/// object per event on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Full,
    Problems,
    Json,
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// Run `keys` as the run `recorder` records, with the engine over `lake`, rendered as `output`.
pub async fn run(
    project: &Project,
    lake: &Lake,
    keys: &[AssetKey],
    recorder: Recorder,
    concurrency: usize,
    output: Output,
) -> anyhow::Result<Report> {
    let materializer = LakeMaterializer::new(Arc::new(project.clone()), lake.clone());
    let lines = if output == Output::Problems { Lines::Problems } else { Lines::Every };
    run_with(project, &materializer, keys, recorder, concurrency, output, lines).await
}

/// What the terminal renderer prints as the run goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// A line per asset built, failed or skipped.
    Every,
    /// Failures, skips and failed checks.
    Problems,
    /// Only progress bars (`basin ingest` prints its table at the end).
    None,
}

pub async fn run_with(
    project: &Project,
    materializer: &LakeMaterializer,
    keys: &[AssetKey],
    recorder: Recorder,
    concurrency: usize,
    output: Output,
    lines: Lines,
) -> anyhow::Result<Report> {
    let events = match output {
        Output::Json => Events::to(Arc::new(json_lines)),
        _ => Events::to(Arc::new(Terminal::new(lines).into_subscriber())),
    };
    let report =
        basin_orchestrator::run::run(project, materializer, recorder, keys, RunOptions { concurrency, events }).await?;
    if let Some(e) = report.aborted() {
        if output != Output::Json {
            eprintln!("run {} failed before building anything: {}", report.run_id(), e.message);
        }
    } else if output == Output::Full {
        print_summary(&report);
    }
    Ok(report)
}

/// `--format json`: each event (but progress ticks) as one line of JSON on stdout.
fn json_lines(event: &RunEvent) {
    if matches!(event, RunEvent::AssetProgress { .. }) {
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", event.to_json());
}

/// Progress bars on a terminal (stderr), plain lines otherwise.
struct Terminal {
    lines: Lines,
    bars: MultiProgress,
    tty: bool,
    state: Mutex<Bars>,
}

#[derive(Default)]
struct Bars {
    overall: Option<ProgressBar>,
    spinners: BTreeMap<AssetKey, (ProgressBar, Instant)>,
}

impl Terminal {
    fn new(lines: Lines) -> Terminal {
        Terminal { lines, bars: MultiProgress::new(), tty: std::io::stderr().is_terminal(), state: Mutex::default() }
    }

    fn into_subscriber(self) -> impl Fn(&RunEvent) + Send + Sync {
        move |event| self.on(event)
    }

    fn say(&self, bars: &Bars, line: String) {
        match &bars.overall {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn done(&self, bars: &mut Bars, key: &AssetKey) {
        if let Some((s, _)) = bars.spinners.remove(key) {
            s.finish_and_clear();
        }
        if let Some(b) = &bars.overall {
            b.inc(1);
        }
    }

    fn on(&self, event: &RunEvent) {
        let Ok(mut bars) = self.state.lock() else { return };
        let every = self.lines == Lines::Every;
        let problems = self.lines != Lines::None;
        match event {
            RunEvent::RunStarted { run_id, assets, concurrency } => {
                if self.tty {
                    let bar = self.bars.add(ProgressBar::new(*assets as u64));
                    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}") {
                        bar.set_style(style);
                    }
                    bars.overall = Some(bar);
                }
                if every {
                    self.say(&bars, format!("run {run_id} — {assets} asset(s), up to {concurrency} at once"));
                }
            }
            RunEvent::AssetStarted { key } => {
                if self.tty {
                    let s = self.bars.add(ProgressBar::new_spinner());
                    s.set_message(format!("building {key}"));
                    s.enable_steady_tick(Duration::from_millis(120));
                    bars.spinners.insert(key.clone(), (s, Instant::now()));
                }
            }
            RunEvent::AssetProgress { key, rows, chunks_done, chunks } => {
                if let Some((s, started)) = bars.spinners.get(key) {
                    let rate = *rows as f64 / started.elapsed().as_secs_f64().max(1e-3);
                    let chunked = if *chunks > 1 { format!(", chunk {chunks_done}/{chunks}") } else { String::new() };
                    s.set_message(format!("ingesting {key}: {rows} rows, {rate:.0} rows/s{chunked}"));
                }
            }
            RunEvent::AssetLanded { built } | RunEvent::AssetBuilt { built } => {
                self.done(&mut bars, &built.key);
                if every {
                    let line = format!("  built  {} ({}) in {}", built.key, built.describe(), secs(built.duration));
                    self.say(&bars, line);
                }
            }
            RunEvent::CheckEvaluated { key, outcome } => {
                if problems && !outcome.passed {
                    self.say(&bars, failure_line(key, outcome));
                }
            }
            RunEvent::AssetFailed { key, error } => {
                self.done(&mut bars, key);
                if problems {
                    self.say(&bars, format!("  FAIL   {key}: {}", error.message));
                }
            }
            RunEvent::AssetSkipped { key, reason } => {
                self.done(&mut bars, key);
                if problems {
                    self.say(&bars, format!("  skip   {key}: {reason}"));
                }
            }
            RunEvent::RunCanceled => {
                for (_, (s, _)) in std::mem::take(&mut bars.spinners) {
                    s.finish_and_clear();
                }
                self.say(&bars, "  run canceled: stopping".to_string());
            }
            RunEvent::RunFinished { .. } => {
                if let Some(b) = bars.overall.take() {
                    b.finish_and_clear();
                }
            }
        }
    }
}

/// One line for a failed check, for the run's output.
pub fn failure_line(key: &AssetKey, o: &CheckOutcome) -> String {
    let label = if o.blocks() { "CHECK" } else { "warn" };
    let samples = if o.samples.is_empty() {
        String::new()
    } else {
        let shown: Vec<&str> = o.samples.iter().take(3).map(String::as_str).collect();
        let more = if o.samples.len() > 3 { ", …" } else { "" };
        format!(" — e.g. {}{more}", shown.join("; "))
    };
    format!("  {label:<6} {key} {}{samples}", o.summary())
}

fn print_summary(report: &Report) {
    let (mut built, mut failed, mut skipped, mut rows) = (0, 0, 0, 0u64);
    let line = |status: &str, key: &AssetKey, m: Option<&Materialized>, detail: String| {
        let (n, t) = m.map_or((String::new(), String::new()), |m| (m.rows.to_string(), secs(m.duration)));
        println!("{status:<8} {:<40} {n:>10} {t:>9}  {detail}", key.to_string());
    };
    println!("{:<8} {:<40} {:>10} {:>9}  detail", "status", "asset", "rows", "time");
    for (key, outcome) in report.outcomes() {
        match outcome {
            Outcome::Built(m) => {
                built += 1;
                rows += m.rows;
                line("ok", key, Some(m), m.describe());
            }
            Outcome::CheckFailed(m, why) => {
                failed += 1;
                rows += m.rows;
                line("CHECK", key, Some(m), format!("{}; check failed: {why}", m.describe()));
            }
            Outcome::Failed(e) => {
                failed += 1;
                line("FAILED", key, None, e.message.clone());
            }
            Outcome::Skipped(why) => {
                skipped += 1;
                line("skipped", key, None, why.clone());
            }
        }
    }
    println!("{built} built, {failed} failed, {skipped} skipped, {rows} rows written in {}", secs(report.elapsed()));
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
        let reads = match basin_engine::materialize::incremental_reads(lake, model, full_refresh).await {
            Ok(reads) if !reads.is_empty() => reads.iter().map(|r| format!("; {}", r.describe())).collect(),
            Ok(_)
                if kind == Materialization::Incremental
                    && model.config.partitions.is_none()
                    && model.config.incremental_from.is_none() =>
            {
                "; reads every table whole (name the table to read as changes in `incremental_from`)".to_string()
            }
            Ok(_) => String::new(),
            Err(e) => format!("; cannot tell what it reads: {e}"),
        };
        let action = format!("{action}{reads}");
        let ups: Vec<String> = project.graph.upstream(key).iter().map(|k| k.to_string()).collect();
        let after = if ups.is_empty() { String::new() } else { format!("; after {}", ups.join(", ")) };
        println!("{:>5}  {:<40} {:<12} {action}{after}", i + 1, key.to_string(), kind.as_str());
    }
    println!("{} asset(s); nothing was written", ordered.len());
    let tables: Vec<AssetKey> = existing.into_iter().collect();
    let orphans: Vec<String> = project.orphans(&tables).iter().map(|k| k.to_string()).collect();
    if !orphans.is_empty() {
        println!(
            "note: nothing in the project defines {} (still queryable, never updated); `basin drop ASSET` takes a \
             table out of the lake",
            orphans.join(", ")
        );
    }
    Ok(())
}

async fn last_sql_hash(lake: &Lake, key: &AssetKey) -> Option<String> {
    basin_engine::history::history(lake, key, Some(1)).await.ok()?.into_iter().next()?.sql_hash
}
