//! `basin ingest SOURCE[.TABLE] …`: land source tables in bronze. Tables of one source run
//! concurrently up to its connection limit; one table's failure does not stop the others.

use std::collections::BTreeMap;
use std::sync::Arc;

use basin_connectors::Connector;
use basin_core::Project;
use basin_core::failure::FailureCategory;
use basin_core::source::{Source, SourceTable};
use basin_engine::Lake;
use basin_engine::ingest::Progress;
use basin_engine::ingest::{IngestOptions, Ingested, ingest_table_retrying};
use basin_meta::{Finish, Level};
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar};
use std::io::IsTerminal;
use std::sync::atomic::Ordering;

/// One connection pool per source, opened on first use.
#[derive(Default, Clone)]
pub struct Connections {
    open: Arc<tokio::sync::Mutex<BTreeMap<String, Arc<dyn Connector>>>>,
}

impl Connections {
    pub async fn get(&self, source: &Source) -> anyhow::Result<Arc<dyn Connector>> {
        let mut open = self.open.lock().await;
        if let Some(c) = open.get(&source.name) {
            return Ok(c.clone());
        }
        let c = basin_connectors::connect(source).await?;
        open.insert(source.name.clone(), c.clone());
        Ok(c)
    }
}

/// An ingest as the run records it, like a model's build. An increment that landed no rows
/// commits only its watermark: that version changes no data, so it is not recorded as a
/// materialisation (eager models downstream would rebuild for nothing).
pub fn materialized(i: &Ingested) -> basin_engine::Materialized {
    let changed = i.rows > 0 || i.table.mode == basin_core::source::Mode::Full;
    basin_engine::Materialized {
        key: i.table.key.clone(),
        action: basin_engine::Action::Ingested { detail: describe(i) },
        version: i.version.filter(|_| changed),
        rows: i.rows,
        duration: i.duration,
    }
}

pub fn describe(i: &Ingested) -> String {
    let mode = match i.table.mode {
        basin_core::source::Mode::Full => "full snapshot".to_string(),
        basin_core::source::Mode::Incremental if i.table.cursor.is_none() => format!("new files ({})", i.chunks),
        basin_core::source::Mode::Incremental => {
            format!(
                "incremental, watermark {}",
                i.watermark.as_ref().map_or("-".to_string(), |w| format!("{}={}", w.column, w.value))
            )
        }
    };
    let zero = if i.zero_dates > 0 { format!(", {} zero date(s) as NULL", i.zero_dates) } else { String::new() };
    let version = i.version.map(|v| format!(", version {v}")).unwrap_or_default();
    let chunks =
        if i.chunks > 1 && i.table.cursor.is_some() { format!(", {} chunks", i.chunks) } else { String::new() };
    let attempts = if i.attempts > 1 { format!(", after {} attempts", i.attempts) } else { String::new() };
    let rate = i.reconciliation.read_rows as f64 / i.duration.as_secs_f64().max(1e-9);
    format!(
        "{mode}: {} rows landed; source {} / read {} ({rate:.0} rows/s){chunks}{zero}{version}{attempts}",
        i.rows, i.reconciliation.source_rows, i.reconciliation.read_rows
    )
}

/// The tables `args` name: `SOURCE` (every listed or discovered table) or `SOURCE.TABLE`.
async fn tables_for(project: &Project, connections: &Connections, args: &[String]) -> anyhow::Result<Vec<SourceTable>> {
    let mut out: Vec<SourceTable> = Vec::new();
    for arg in args {
        let (name, table) = match arg.split_once('.') {
            Some((s, t)) => (s, Some(t)),
            None => (arg.as_str(), None),
        };
        let Some(source) = project.sources.get(name) else {
            let names: Vec<&str> = project.sources.keys().map(String::as_str).collect();
            anyhow::bail!(
                "no source `{name}` (sources: {})",
                if names.is_empty() { "none".into() } else { names.join(", ") }
            );
        };
        match table {
            Some(t) => out.push(
                source
                    .tables
                    .iter()
                    .find(|x| x.name.eq_ignore_ascii_case(t))
                    .cloned()
                    .unwrap_or_else(|| source.discovered_table(t)),
            ),
            None => {
                out.extend(source.tables.iter().cloned());
                if !source.config.include.is_empty() {
                    let catalog = connections.get(source).await?.tables().await?;
                    for t in catalog {
                        if source.discovers(&t) && !source.tables.iter().any(|x| x.name.eq_ignore_ascii_case(&t)) {
                            out.push(source.discovered_table(&t));
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Ingest one table, opening its source's connection if needed.
pub async fn ingest_one(
    project: &Project,
    lake: &Lake,
    connections: &Connections,
    table: &SourceTable,
    run_id: &str,
    allow_shrink: bool,
    bar: Option<ProgressBar>,
) -> anyhow::Result<Ingested> {
    let source = &project.sources[&table.source];
    let connector = connections.get(source).await?;
    let (retries, retry_delay) = source.retries();
    let progress = Arc::new(Progress::default());
    let options = IngestOptions {
        parallel: source.max_connections(),
        retries,
        retry_delay,
        progress: Some(progress.clone()),
        allow_shrink,
    };
    // On a terminal: rows, rows/s and chunks of this table, refreshed while it reads.
    let ticker = bar.map(|bar| {
        let key = table.key.to_string();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            loop {
                let rows = progress.rows.load(Ordering::Relaxed);
                let (done, chunks) =
                    (progress.chunks_done.load(Ordering::Relaxed), progress.chunks.load(Ordering::Relaxed));
                let rate = rows as f64 / started.elapsed().as_secs_f64().max(1e-3);
                let chunked = if chunks > 1 { format!(", chunk {done}/{chunks}") } else { String::new() };
                bar.set_message(format!("ingesting {key}: {rows} rows, {rate:.0} rows/s{chunked}"));
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        })
    });
    let result = ingest_table_retrying(lake, connector, table, run_id, chrono::Utc::now(), options).await;
    if let Some(t) = ticker {
        t.abort();
    }
    Ok(result?)
}

pub async fn run(project: &Project, lake: &Lake, args: &[String], allow_shrink: bool) -> anyhow::Result<bool> {
    let mut new = basin_meta::NewRun::new(args.to_vec(), "in_process");
    if allow_shrink {
        new.tags.insert(crate::run::ALLOW_SHRINK_TAG.into(), "true".into());
    }
    let sources: std::collections::BTreeSet<&str> = args.iter().map(|a| a.split('.').next().unwrap_or(a)).collect();
    if let [only] = sources.into_iter().collect::<Vec<_>>()[..] {
        new.tags.insert("source".into(), only.to_string());
    }
    let recorder = crate::record::Recorder::begin(project, new).await?;
    let connections = Connections::default();
    let tables = match tables_for(project, &connections, args).await {
        Ok(t) => t,
        Err(e) => {
            let category = crate::run::category_of(&e);
            let message = crate::run::error_chain(e.as_ref());
            recorder.finish(Finish::Failure { category, message }).await?;
            return Err(e);
        }
    };
    let run_id = recorder.id().to_string();
    eprintln!("ingest {run_id} — {} table(s)", tables.len());
    // Checks of each table read its new version through this session.
    let ctx = lake.session(&[], None).await?.ctx;
    let limit = tables.iter().map(|t| project.sources[&t.source].max_connections()).max().unwrap_or(1);
    let bars = std::io::stderr().is_terminal().then(MultiProgress::new);
    let cancel = recorder.canceled();
    let ingest_all = futures::stream::iter(tables)
        .map(|t| {
            let (connections, run_id, recorder, ctx) = (connections.clone(), run_id.clone(), &recorder, &ctx);
            let bar = bars.as_ref().map(|b| {
                let bar = b.add(ProgressBar::new_spinner());
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                bar
            });
            async move {
                let asset = t.key.to_string();
                recorder.event("asset_started", Level::Info, Some(&asset), "started").await;
                let r = ingest_one(project, lake, &connections, &t, &run_id, allow_shrink, bar.clone()).await;
                if let Some(bar) = bar {
                    bar.finish_and_clear();
                }
                let r = match r {
                    Ok(i) => {
                        crate::run::record_built(recorder, project, &materialized(&i)).await;
                        match crate::checks::after_ingest(project, lake, ctx, recorder.store().as_ref(), &i).await {
                            Ok(checked) => {
                                crate::checks::record(recorder, &t.key, i.version, &checked).await;
                                Ok((i, checked))
                            }
                            Err(e) => Err(anyhow::Error::new(e)),
                        }
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = &r {
                    let (error, category) = (crate::run::error_chain(e.as_ref()), crate::run::category_of(e));
                    crate::run::record_failed(recorder, &t.key, &error, category).await;
                }
                (t, r)
            }
        })
        .buffer_unordered(limit)
        .collect::<Vec<(SourceTable, anyhow::Result<(Ingested, crate::checks::Checked)>)>>();
    // A cancel stops the reads where they are: nothing lands from a table whose commit did
    // not happen.
    let results = tokio::select! {
        results = ingest_all => results,
        () = cancel => {
            eprintln!("ingest {run_id} canceled");
            recorder.finish(Finish::Canceled { message: "canceled while running".into() }).await?;
            return Ok(false);
        }
    };
    let mut failures = Vec::new();
    for (t, r) in &results {
        match r {
            Ok((i, checked)) => {
                let status = if checked.blocking_reason().is_some() { "CHECK" } else { "ok" };
                println!("{status:<8} {:<40} {:>9.2}s  {}", t.key.to_string(), i.duration.as_secs_f64(), describe(i));
                for line in crate::checks::failure_lines(&t.key, checked) {
                    println!("{line}");
                }
                if let Some(why) = checked.blocking_reason() {
                    failures.push((t.key.clone(), format!("check failed: {why}"), FailureCategory::CheckFailed));
                }
            }
            Err(e) => {
                let message = crate::run::error_chain(e.as_ref());
                println!("{:<8} {:<40} {:>10}  {message}", "FAILED", t.key.to_string(), "");
                failures.push((t.key.clone(), message, crate::run::category_of(e)));
            }
        }
    }
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    println!("{} ingested, {failed} failed, {} with failed checks", results.len() - failed, failures.len() - failed);
    recorder.finish(crate::run::failures_finish(&failures)).await?;
    Ok(failures.is_empty())
}

/// `validate --connect`: connect to every source and check that each listed table exists with
/// its cursor and primary-key columns. One diagnostic per problem, at the source file.
pub async fn check_sources(project: &Project) -> Vec<basin_core::Diagnostic> {
    use basin_core::Diagnostic;
    use basin_core::diagnostic::Location;
    let mut out = Vec::new();
    for source in project.sources.values() {
        let at = || Location::file(&source.file);
        let connector = match basin_connectors::connect(source).await {
            Ok(c) => c,
            Err(e) => {
                out.push(
                    Diagnostic::error(at(), crate::run::error_chain(&e))
                        .with_hint("check `url` and that the source is reachable"),
                );
                continue;
            }
        };
        for table in &source.tables {
            let columns = match connector.columns(&table.name).await {
                Ok(c) => c,
                Err(e) => {
                    out.push(
                        Diagnostic::error(at(), crate::run::error_chain(&e))
                            .with_hint("check the table's `name` against the source"),
                    );
                    continue;
                }
            };
            for (what, column) in
                table.cursor.iter().map(|c| ("cursor", c)).chain(table.primary_key.iter().map(|c| ("primary_key", c)))
            {
                if !columns.contains(column) {
                    out.push(
                        Diagnostic::error(
                            at(),
                            format!("`{what}` column `{column}` is not in {}.{}", source.name, table.name),
                        )
                        .with_hint(format!("its columns are: {}", columns.join(", "))),
                    );
                }
            }
        }
    }
    out
}
