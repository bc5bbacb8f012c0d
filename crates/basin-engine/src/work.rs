//! The engine as the run engine's [`Materializer`]: a run's session over the lake, where each
//! ingestion and build is registered as it commits, so that later assets of the run read it;
//! ingestion of a source table (its connection pool opened once per run and source) and the
//! build of a model, each followed by its checks on the version just committed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use basin_connectors::Connector;
use basin_core::model::{Materialization, Model};
use basin_core::outcome::{Action, Checked, Materialized};
use basin_core::source::{Mode, Source, SourceTable};
use basin_core::work::{AssetError, CheckJob, Job, Materializer, RunSpec, RunWork};
use basin_core::{AssetKey, Project};
use chrono::{DateTime, Utc};
use datafusion::prelude::SessionContext;

use crate::checks::CheckContext;
use crate::error::{Error, Result};
use crate::ingest::{IngestOptions, Ingested, Progress, ingest_table_retrying};
use crate::lake::Lake;
use crate::materialize::ModelRun;

/// One connection pool per source, opened on first use.
#[derive(Default, Clone)]
pub struct Connections {
    open: Arc<tokio::sync::Mutex<BTreeMap<String, Arc<dyn Connector>>>>,
}

impl Connections {
    pub async fn get(&self, source: &Source) -> std::result::Result<Arc<dyn Connector>, basin_connectors::Error> {
        let mut open = self.open.lock().await;
        if let Some(c) = open.get(&source.name) {
            return Ok(c.clone());
        }
        let c = basin_connectors::connect(source).await?;
        open.insert(source.name.clone(), c.clone());
        Ok(c)
    }
}

/// An engine error as a run reports it: its message with its causes, and its category.
pub fn asset_error(e: &Error) -> AssetError {
    AssetError::new(basin_core::error::chain(e), e.failure_category())
}

/// The engine's materializer over `lake`, for `project`'s assets and any source tables named
/// with [`LakeMaterializer::with_tables`] (tables discovered in a source).
pub struct LakeMaterializer {
    project: Arc<Project>,
    lake: Lake,
    tables: BTreeMap<AssetKey, SourceTable>,
    connections: Connections,
}

impl LakeMaterializer {
    pub fn new(project: Arc<Project>, lake: Lake) -> LakeMaterializer {
        let tables = project.bronze.clone().into_iter().collect();
        LakeMaterializer { project, lake, tables, connections: Connections::default() }
    }

    /// Also ingest these tables (discovered in their source) when a run selects them.
    pub fn with_tables(mut self, tables: impl IntoIterator<Item = SourceTable>) -> LakeMaterializer {
        self.tables.extend(tables.into_iter().map(|t| (t.key.clone(), t)));
        self
    }

    pub fn connections(&self) -> &Connections {
        &self.connections
    }
}

#[async_trait]
impl Materializer for LakeMaterializer {
    async fn begin(&self, spec: &RunSpec) -> std::result::Result<Arc<dyn RunWork>, AssetError> {
        let project = &self.project;
        // Views outside the selection are registered too, so selected models can read them.
        let session = self
            .lake
            .session(&crate::materialize::view_definitions(project), None)
            .await
            .map_err(|e| asset_error(&e))?;
        let selected: BTreeSet<&AssetKey> = spec.assets.iter().collect();
        let views_outside = project
            .ordered(project.graph.keys())
            .into_iter()
            .filter(|m| m.config.materialized == Materialization::View && !selected.contains(&m.key))
            .map(|m| (m.clone(), project.graph.with_ancestors(&m.key).into_iter().cloned().collect()))
            .collect();
        let run = ModelRun {
            full_refresh: spec.full_refresh,
            partition: spec.partition,
            max_shrink: project.config.run.max_shrink.unwrap_or(basin_core::config::DEFAULT_MAX_SHRINK),
            allow_shrink: spec.allow_shrink,
            accept_schema_change: spec.accept_schema_change.iter().cloned().collect(),
            ..ModelRun::new(spec.run_id.clone())
        };
        Ok(Arc::new(LakeRun {
            project: project.clone(),
            lake: self.lake.clone(),
            tables: self.tables.clone(),
            connections: self.connections.clone(),
            ctx: session.ctx,
            run,
            views_outside,
        }))
    }
}

/// One run's work over the lake.
struct LakeRun {
    project: Arc<Project>,
    lake: Lake,
    tables: BTreeMap<AssetKey, SourceTable>,
    connections: Connections,
    ctx: SessionContext,
    run: ModelRun,
    /// Views outside the selection, in dependency order, each with everything it reads.
    views_outside: Vec<(Model, BTreeSet<AssetKey>)>,
}

#[async_trait]
impl RunWork for LakeRun {
    async fn materialize(&self, job: Job) -> std::result::Result<(Materialized, Checked), AssetError> {
        let history = |written| History {
            rows_written: Some(written),
            earlier_rows: job.earlier_rows.clone(),
            last_materialized: Some(Utc::now()),
            reconciliation: None,
            reconciles_keys: false,
        };
        if let Some(table) = self.tables.get(&job.key) {
            let i = ingest(&self.project, &self.lake, &self.connections, table, &self.run, &job.progress)
                .await
                .map_err(|e| asset_error(&e))?;
            let checked = after_ingest(&self.project, &self.lake, &self.ctx, &i, history(i.rows))
                .await
                .map_err(|e| asset_error(&e))?;
            return Ok((materialized(&i), checked));
        }
        let Some(model) = self.project.models.get(&job.key) else {
            return Err(AssetError::new(
                format!("{} is neither a model nor a source table of the project", job.key),
                basin_core::failure::FailureCategory::BadQuery,
            ));
        };
        let m = self.run.materialize(&self.lake, &self.ctx, model).await.map_err(|e| asset_error(&e))?;
        let checked = evaluate_checks(&self.project, &self.ctx, &model.key, history(m.rows)).await;
        Ok((m, checked))
    }

    /// Views not built in this run but reading a table it just rebuilt are re-planned, so that
    /// later models of the run read the new version through them.
    async fn built(&self, key: &AssetKey) {
        for (view, reads) in &self.views_outside {
            if reads.contains(key)
                && let Err(e) = crate::materialize::refresh_view(&self.ctx, view).await
            {
                tracing::warn!(view = %view.key, "cannot refresh view: {e}");
            }
        }
    }

    async fn check(&self, job: CheckJob) -> std::result::Result<(Option<u64>, Checked), AssetError> {
        let key = &job.key;
        // The session registered every bronze table's current state when it began, and
        // `after_ingest` re-registers it after this run's ingestion.
        let version = self.lake.table(key).await.ok().flatten().and_then(|t| t.version());
        let mut recorded = job.materializations.iter();
        let latest = recorded.next();
        let history = History {
            rows_written: latest.map(|(rows, _)| (*rows).max(0) as u64),
            earlier_rows: recorded.map(|(rows, _)| *rows).collect(),
            last_materialized: latest.map(|(_, at)| *at),
            reconciliation: None,
            reconciles_keys: false,
        };
        Ok((version, evaluate_checks(&self.project, &self.ctx, key, history).await))
    }
}

/// Ingest one table, opening its source's connection if needed; its progress goes to `report`
/// while it reads.
async fn ingest(
    project: &Project,
    lake: &Lake,
    connections: &Connections,
    table: &SourceTable,
    run: &ModelRun,
    report: &Arc<dyn Fn(basin_core::work::Progress) + Send + Sync>,
) -> Result<Ingested> {
    let source = &project.sources[&table.source];
    let connector =
        connections.get(source).await.map_err(|e| Error::Source { table: table.key.clone(), source: Box::new(e) })?;
    let (retries, retry_delay) = source.retries();
    let progress = Arc::new(Progress::default());
    let options = IngestOptions {
        parallel: source.max_connections(),
        retries,
        retry_delay,
        progress: Some(progress.clone()),
        allow_shrink: run.allow_shrink,
        accept_schema_change: run.accept_schema_change.contains(&table.key),
    };
    let ticker = {
        let report = report.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                report(basin_core::work::Progress {
                    rows: progress.rows.load(Ordering::Relaxed),
                    chunks_done: progress.chunks_done.load(Ordering::Relaxed),
                    chunks: progress.chunks.load(Ordering::Relaxed),
                });
            }
        })
    };
    let result = ingest_table_retrying(lake, connector, table, &run.run_id, Utc::now(), options).await;
    ticker.abort();
    result
}

/// An ingest as the run records it, like a model's build. An increment that landed no rows
/// commits only its watermark: that version changes no data, so it is not recorded as a
/// materialisation (eager models downstream would rebuild for nothing).
pub fn materialized(i: &Ingested) -> Materialized {
    let changed = i.rows > 0 || i.table.mode == Mode::Full || i.key_snapshot.is_some_and(|k| k.deleted > 0);
    Materialized {
        key: i.table.key.clone(),
        action: Action::Ingested { detail: describe(i) },
        version: i.version.filter(|_| changed),
        rows: i.rows,
        duration: i.duration,
        read: Vec::new(),
    }
}

/// `incremental, watermark updated_at=…: 12 rows landed; source 12 / read 12 (…)`.
pub fn describe(i: &Ingested) -> String {
    let mode = match i.table.mode {
        Mode::Full => "full snapshot".to_string(),
        Mode::Incremental if i.table.cursor.is_none() => format!("new files ({})", i.chunks),
        Mode::Incremental => {
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
    let keys = match i.key_snapshot {
        Some(k) => {
            format!("; key snapshot: {} source keys, {} deleted, {} current", k.source_keys, k.deleted, k.current_keys)
        }
        None => String::new(),
    };
    let rate = i.reconciliation.read_rows as f64 / i.duration.as_secs_f64().max(1e-9);
    format!(
        "{mode}: {} rows landed; source {} / read {} ({rate:.0} rows/s){chunks}{zero}{version}{attempts}{keys}",
        i.rows, i.reconciliation.source_rows, i.reconciliation.read_rows
    )
}

/// The tables `args` name: `SOURCE` (every listed or discovered table) or `SOURCE.TABLE`.
pub async fn tables_for(project: &Project, connections: &Connections, args: &[String]) -> Result<Vec<SourceTable>> {
    let mut out: Vec<SourceTable> = Vec::new();
    for arg in args {
        let (name, table) = match arg.split_once('.') {
            Some((s, t)) => (s, Some(t)),
            None => (arg.as_str(), None),
        };
        let Some(source) = project.sources.get(name) else {
            let names: Vec<&str> = project.sources.keys().map(String::as_str).collect();
            let known = if names.is_empty() { "none".into() } else { names.join(", ") };
            return Err(Error::UnknownSource { name: name.to_string(), known });
        };
        match table {
            Some(t) => out.push(
                source
                    .tables
                    .iter()
                    .find(|x| x.name == t)
                    .or_else(|| source.tables.iter().find(|x| x.name.eq_ignore_ascii_case(t)))
                    .cloned()
                    .unwrap_or_else(|| source.discovered_table(t)),
            ),
            None => {
                out.extend(source.tables.iter().cloned());
                if !source.config.include.is_empty() {
                    let unlisted = |e| Error::SourceCatalog { name: source.name.clone(), source: Box::new(e) };
                    let catalog = connections.get(source).await.map_err(unlisted)?.tables().await.map_err(unlisted)?;
                    out.extend(source.discovered(&catalog));
                }
            }
        }
    }
    // A table named twice (`shop shop.orders`) is ingested once.
    let mut named = BTreeSet::new();
    out.retain(|t| named.insert((t.source.clone(), t.name.clone())));
    // Two source tables under one bronze name would write one Delta table: refuse before
    // reading anything.
    if let Some((key, tables)) = basin_core::source::Source::collisions(&out).into_iter().next() {
        let origin = out.iter().find(|t| t.key == key).map(|t| t.source.clone()).unwrap_or_default();
        return Err(Error::NameCollision { origin, key, tables });
    }
    Ok(out)
}

/// What checks of an asset know about its materialisations: rows written now (`None` outside
/// a build) and earlier (newest first), when it was last built, and an ingestion's counts.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub rows_written: Option<u64>,
    pub earlier_rows: Vec<i64>,
    pub last_materialized: Option<DateTime<Utc>>,
    pub reconciliation: Option<(u64, u64)>,
    /// `reconciliation` counts keys (the source's against the current state's), not rows.
    pub reconciles_keys: bool,
}

/// The relation checks of `key` read: a bronze table's current state (the latest snapshot, or
/// the latest version of each key), a model's table or view.
fn relation(project: &Project, ctx: &SessionContext, key: &AssetKey) -> AssetKey {
    if project.bronze.contains_key(key) {
        let current = AssetKey::new(crate::bronze::CURRENT_SCHEMA, &key.name);
        if ctx.table_exist(format!("{}.{}", current.schema, current.name)).unwrap_or(false) {
            return current;
        }
    }
    key.clone()
}

/// Evaluate the checks of `key` over `ctx` (where the version to check is registered).
pub async fn evaluate_checks(project: &Project, ctx: &SessionContext, key: &AssetKey, history: History) -> Checked {
    let Some(specs) = project.checks.get(key).filter(|s| !s.is_empty()) else { return Checked::default() };
    let key_columns = match (project.models.get(key), project.bronze.get(key)) {
        (Some(m), _) => m.config.unique_key.0.clone(),
        (_, Some(t)) => t.primary_key.clone(),
        _ => Vec::new(),
    };
    let c = CheckContext {
        now: Utc::now(),
        key_columns,
        rows_written: history.rows_written,
        earlier_rows: history.earlier_rows,
        last_materialized: history.last_materialized,
        reconciliation: history.reconciliation,
        reconciles_keys: history.reconciles_keys,
    };
    let on = relation(project, ctx, key);
    Checked { outcomes: crate::checks::evaluate(ctx, &on, specs, &c).await }
}

/// After an ingestion: register the new version of its bronze table and its current state in
/// `ctx` (so later builds of the run read them), then evaluate the table's checks, `reconcile`
/// with this ingestion's counts.
async fn after_ingest(
    project: &Project,
    lake: &Lake,
    ctx: &SessionContext,
    i: &Ingested,
    history: History,
) -> Result<Checked> {
    let key = &i.table.key;
    if let Some(t) = lake.table(key).await? {
        lake.register_table(ctx, key, &t).await?;
        lake.register_current_state(ctx, key, &t).await?;
    }
    // Where deletes are tracked by key snapshots, the keys the source has against the keys of
    // the current state; otherwise the rows of the read against the source's count.
    let (reconciliation, reconciles_keys) = match i.key_snapshot {
        Some(k) => (Some((k.source_keys, k.current_keys)), true),
        None => (Some((i.reconciliation.source_rows, i.reconciliation.read_rows)), false),
    };
    Ok(evaluate_checks(project, ctx, key, History { reconciliation, reconciles_keys, ..history }).await)
}
