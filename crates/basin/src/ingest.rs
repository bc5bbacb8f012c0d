//! `basin ingest SOURCE[.TABLE] …`: land source tables in bronze. A run of the run engine
//! whose selection is the tables (listed, or discovered in the source): they go concurrently up
//! to their source's connection limit, and one table's failure does not stop the others.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use basin_core::{AssetKey, Project};
use basin_engine::Lake;
use basin_engine::work::{LakeMaterializer, asset_error, tables_for};
use basin_meta::Finish;
use basin_orchestrator::Recorder;
use basin_orchestrator::run::Outcome;

use crate::run::{Lines, Output};

/// What `basin ingest` lets through that it refuses by default.
#[derive(Debug, Default)]
pub struct Flags {
    /// `--allow-shrink`.
    pub allow_shrink: bool,
    /// `--accept-schema-change`: the bronze keys, comma-separated.
    pub accept_schema_change: Option<String>,
}

/// The exit code: `0` if every table landed and passed its `error` checks.
pub async fn run(
    project: &Project,
    lake: &Lake,
    args: &[String],
    flags: Flags,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let mut new = basin_meta::NewRun::new(args.to_vec(), "in_process");
    if flags.allow_shrink {
        new.tags.insert(crate::run::ALLOW_SHRINK_TAG.into(), "true".into());
    }
    if let Some(accepted) = flags.accept_schema_change {
        new.tags.insert(basin_orchestrator::run::ACCEPT_SCHEMA_CHANGE_TAG.into(), accepted);
    }
    let sources: std::collections::BTreeSet<&str> = args.iter().map(|a| a.split('.').next().unwrap_or(a)).collect();
    if let [only] = sources.into_iter().collect::<Vec<_>>()[..] {
        new.tags.insert("source".into(), only.to_string());
    }
    let recorder = Recorder::begin(project, new).await?;
    let materializer = LakeMaterializer::new(Arc::new(project.clone()), lake.clone());
    let tables = match tables_for(project, materializer.connections(), args).await {
        Ok(t) => t,
        Err(e) => {
            let error = asset_error(&e);
            recorder.finish(Finish::Failure { category: error.category, message: error.message }).await?;
            return Err(e.into());
        }
    };
    let run_id = recorder.id().to_string();
    if output != Output::Json {
        eprintln!("ingest {run_id} — {} table(s)", tables.len());
    }
    let keys: Vec<_> = tables.iter().map(|t| t.key.clone()).collect();
    let limit = tables.iter().map(|t| project.sources[&t.source].max_connections()).max().unwrap_or(1);
    let materializer = materializer.with_tables(tables);
    // Its own table follows, not `run`'s summary.
    let rendering = if output == Output::Json { Output::Json } else { Output::Problems };
    let report = crate::run::run_with(project, &materializer, &keys, recorder, limit, rendering, Lines::None).await?;
    if output == Output::Json {
        return Ok(crate::exit::of_report(&report));
    }
    if report.canceled() {
        eprintln!("ingest {run_id} canceled");
        return Ok(crate::exit::of_report(&report));
    }
    let (mut ingested, mut failed, mut checks) = (0, 0, 0);
    for (key, outcome) in report.outcomes() {
        match outcome {
            Outcome::Built(m) | Outcome::CheckFailed(m, _) => {
                ingested += 1;
                let status = if matches!(outcome, Outcome::CheckFailed(..)) { "CHECK" } else { "ok" };
                println!("{status:<8} {:<40} {:>9.2}s  {}", key.to_string(), m.duration.as_secs_f64(), m.describe());
                for o in report.checks(key).iter().flat_map(|c| &c.outcomes).filter(|o| !o.passed) {
                    println!("{}", crate::run::failure_line(key, o));
                }
                checks += usize::from(matches!(outcome, Outcome::CheckFailed(..)));
            }
            Outcome::Failed(e) => {
                failed += 1;
                println!("{:<8} {:<40} {:>10}  {}", "FAILED", key.to_string(), "", e.message);
            }
            Outcome::Skipped(why) => println!("{:<8} {:<40} {:>10}  {why}", "skipped", key.to_string(), ""),
        }
    }
    println!("{ingested} ingested, {failed} failed, {checks} with failed checks");
    Ok(crate::exit::of_report(&report))
}

/// `validate --connect`: connect to every source and check that each listed table exists with
/// its cursor and primary-key columns. One diagnostic per problem, at the source file; and the
/// schema each table is read as, from the source's catalog, by bronze key.
pub async fn check_sources(project: &Project) -> (Vec<basin_core::Diagnostic>, BTreeMap<AssetKey, SchemaRef>) {
    use basin_core::Diagnostic;
    use basin_core::diagnostic::Location;
    let mut out = Vec::new();
    let mut schemas = BTreeMap::new();
    for source in project.sources.values() {
        let at = || Location::file(&source.file);
        let connector = match basin_connectors::connect(source).await {
            Ok(c) => c,
            Err(e) => {
                out.push(
                    Diagnostic::error(at(), basin_core::error::chain(&e))
                        .with_hint("check `url` and that the source is reachable"),
                );
                continue;
            }
        };
        if !source.config.include.is_empty() {
            match connector.tables().await {
                Ok(catalog) => {
                    let all: Vec<_> = source.tables.iter().cloned().chain(source.discovered(&catalog)).collect();
                    for (key, tables) in basin_core::source::Source::collisions(&all) {
                        let named: Vec<String> = tables.iter().map(|t| format!("`{t}`")).collect();
                        let table = key.name.strip_prefix(&format!("{}__", source.name)).unwrap_or(&key.name);
                        out.push(
                            Diagnostic::error(at(), format!("tables {} would all land as {key}", named.join(", ")))
                                .with_hint(format!(
                                    "give all but one its own bronze name: [[tables]] name = \"{}\" as = \"{table}_2\"",
                                    tables.last().map(String::as_str).unwrap_or_default()
                                )),
                        );
                    }
                }
                Err(e) => out.push(
                    Diagnostic::error(at(), basin_core::error::chain(&e))
                        .with_hint("`include` discovers tables from the source's catalog, which cannot be listed"),
                ),
            }
        }
        for table in &source.tables {
            let columns = match connector.columns(&table.name).await {
                Ok(c) => c,
                Err(e) => {
                    out.push(
                        Diagnostic::error(at(), basin_core::error::chain(&e))
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
            match connector.schema(&table.name).await {
                Ok(Some(schema)) => {
                    schemas.insert(table.key.clone(), schema);
                }
                Ok(None) => {}
                Err(e) => out.push(Diagnostic::error(at(), basin_core::error::chain(&e))),
            }
        }
    }
    (out, schemas)
}
