//! The lake: every asset is a Delta table at `<root>/<schema>/<name>`. One object store for the
//! root is shared by every table, and one factory builds the DataFusion session that models,
//! `basin sql` and the server read through, with each table registered under its schema.

use std::collections::BTreeMap;
use std::sync::Arc;

use basin_core::AssetKey;
use basin_core::config::{Secret, StorageRoot};
use chrono::{DateTime, Utc};
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider, TableProvider};
use datafusion::datasource::ViewTable;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use deltalake::{DeltaTable, DeltaTableBuilder};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::path::Path as StorePath;
use url::Url;

use crate::error::{Error, Result};
use crate::files_table::FilesTable;

/// Which version of each table a session reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AsOf {
    Version(u64),
    Timestamp(DateTime<Utc>),
}

impl std::str::FromStr for AsOf {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if let Ok(v) = s.parse::<u64>() {
            return Ok(AsOf::Version(v));
        }
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Ok(AsOf::Timestamp(t.with_timezone(&Utc)));
        }
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f") {
            return Ok(AsOf::Timestamp(t.and_utc()));
        }
        if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Ok(AsOf::Timestamp(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc()));
        }
        Err(Error::InvalidAsOf(s.to_string()))
    }
}

impl std::fmt::Display for AsOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AsOf::Version(v) => write!(f, "version {v}"),
            AsOf::Timestamp(t) => write!(f, "{}", t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        }
    }
}

/// The versions of a table that can be read, and when the first and the last were committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRange {
    pub first: u64,
    pub last: u64,
    pub first_time: Option<DateTime<Utc>>,
    pub last_time: Option<DateTime<Utc>>,
}

impl std::fmt::Display for VersionRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let time = |t: Option<DateTime<Utc>>| {
            t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)).unwrap_or_else(|| "?".into())
        };
        if self.first == self.last {
            write!(f, "one version, {}, from {}", self.first, time(self.first_time))
        } else {
            write!(
                f,
                "versions {}–{}, from {} to {}",
                self.first,
                self.last,
                time(self.first_time),
                time(self.last_time)
            )
        }
    }
}

/// The newest version of `table` (loaded at its latest) whose commit time
/// (`commitInfo.timestamp`, what `basin history` prints) is at or before `t`; `None` before its
/// first commit.
pub(crate) async fn version_at(table: &DeltaTable, t: &DateTime<Utc>) -> Option<u64> {
    let last = table.version()?;
    let commits: Vec<_> = table.history(None).collect().await;
    let at = t.timestamp_millis();
    // Newest first, one per version down from the latest.
    commits.iter().enumerate().find_map(|(i, c)| {
        let committed = c.as_ref().ok()?.timestamp?;
        (committed <= at).then(|| last.saturating_sub(i as u64))
    })
}

impl VersionRange {
    /// The versions of `table` up to the one loaded, from its commit history.
    pub async fn of(table: &DeltaTable) -> VersionRange {
        let last = table.version().unwrap_or(0);
        let commits: Vec<_> = table.history(None).collect().await;
        let n = commits.len() as u64;
        let time = |c: Option<&deltalake::DeltaResult<deltalake::kernel::CommitInfo>>| {
            c.and_then(|c| c.as_ref().ok()?.timestamp).and_then(DateTime::from_timestamp_millis)
        };
        VersionRange {
            first: last.saturating_sub(n.saturating_sub(1)),
            last,
            first_time: time(commits.last()),
            last_time: time(commits.first()),
        }
    }

    /// Whether `as_of` names a version of this range (a time at or after its first commit).
    pub fn holds(&self, as_of: &AsOf) -> bool {
        match as_of {
            AsOf::Version(v) => (self.first..=self.last).contains(v),
            AsOf::Timestamp(t) => self.first_time.is_none_or(|first| *t >= first),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Lake {
    /// The root as users wrote it, for messages (never with credentials).
    display: String,
    /// URL of the root directory, ending in `/`.
    root_url: Url,
    /// The object store holding the root, with `/` at the store's own root.
    store: Arc<dyn ObjectStore>,
}

/// A DataFusion session over the lake, and the views that could not be registered.
pub struct LakeSession {
    pub ctx: SessionContext,
    /// Views whose SQL did not plan (e.g. an upstream table not built yet), with the reason.
    pub unavailable_views: Vec<(AssetKey, String)>,
    /// Tables of the lake that could not be opened or registered, with where they are and why:
    /// left out of the session (and logged once as a warning) so that the others stay usable.
    pub unavailable_tables: Vec<(AssetKey, String)>,
    /// The tables registered, at the versions the session reads.
    pub tables: Vec<(AssetKey, DeltaTable)>,
    /// Of a session at a version or time: the tables that have no such version (or did not
    /// exist yet at that time), each with the versions it has.
    pub out_of_range: Vec<(AssetKey, String)>,
}

impl Lake {
    /// Open the lake at `root`. Object-store `options` carry credentials and endpoints.
    pub fn open(root: &StorageRoot, options: &BTreeMap<String, Secret>) -> Result<Lake> {
        let display = root.to_string();
        let open_err = |source| Error::OpenLake { root: display.clone(), source };
        let (root_url, store): (Url, Arc<dyn ObjectStore>) = match root {
            StorageRoot::Local(path) => {
                let abs = std::path::absolute(path)
                    .map_err(|e| open_err(object_store::Error::Generic { store: "local", source: Box::new(e) }))?;
                let url = Url::from_directory_path(&abs).map_err(|_| {
                    open_err(object_store::Error::Generic {
                        store: "local",
                        source: format!("not an absolute path: {}", abs.display()).into(),
                    })
                })?;
                (url, Arc::new(object_store::local::LocalFileSystem::new()))
            }
            StorageRoot::Url(url) if url.scheme() == "memory" => {
                (dir_url(url), Arc::new(object_store::memory::InMemory::new()))
            }
            StorageRoot::Url(url) => {
                let opts = options.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.expose().to_string()));
                let (store, _) = object_store::parse_url_opts(url, opts).map_err(open_err)?;
                (dir_url(url), Arc::from(store))
            }
        };
        Ok(Lake { display, root_url, store })
    }

    /// An in-memory lake, for tests and throwaway sessions.
    pub fn in_memory() -> Lake {
        Lake::open(&StorageRoot::Url(Url::parse("memory:///lake/").expect("valid")), &BTreeMap::new())
            .expect("in-memory lake")
    }

    pub fn root_display(&self) -> &str {
        &self.display
    }

    /// The URL of the root directory (ending in `/`), without credentials.
    pub fn root_url(&self) -> &Url {
        &self.root_url
    }

    /// The URL of an asset's table.
    pub fn table_url(&self, key: &AssetKey) -> Url {
        self.root_url.join(&format!("{}/{}/", key.schema, key.name)).expect("asset keys are valid path segments")
    }

    /// The data files of `table` (table `key` at the version loaded): URL and size in bytes.
    pub fn data_files(&self, key: &AssetKey, table: &DeltaTable) -> Result<Vec<(Url, u64)>> {
        let root = self.table_url(key);
        let Ok(state) = table.snapshot() else { return Ok(Vec::new()) };
        state
            .snapshot()
            .log_data()
            .iter()
            .map(|f| {
                let url = root.join(&f.path()).map_err(|e| Error::Delta {
                    table: key.clone(),
                    operation: "list data files",
                    source: Box::new(deltalake::DeltaTableError::Generic(format!("file {}: {e}", f.path()))),
                })?;
                Ok((url, f.size() as u64))
            })
            .collect()
    }

    pub(crate) fn builder(&self, key: &AssetKey) -> Result<DeltaTableBuilder> {
        let url = self.table_url(key);
        Ok(DeltaTableBuilder::from_url(url.clone())
            .map_err(Error::delta(key, "open"))?
            .with_storage_backend(self.store.clone(), url))
    }

    /// The table of `key` at its latest version, or `None` if no Delta table is there.
    pub async fn table(&self, key: &AssetKey) -> Result<Option<DeltaTable>> {
        self.table_as_of(key, None).await
    }

    /// The table of `key` at a version or timestamp; `None` if there is no table.
    ///
    /// A time reads the newest version whose commit time (`commitInfo.timestamp`, what `basin
    /// history` prints) is at or before it. (Delta's own lookup goes by the log files'
    /// modification times, written a moment after the commit time: a time copied from the
    /// history could then read the version before.)
    pub async fn table_as_of(&self, key: &AssetKey, as_of: Option<&AsOf>) -> Result<Option<DeltaTable>> {
        if !self.exists(key).await? {
            return Ok(None);
        }
        let load = |builder: DeltaTableBuilder| async move {
            match builder.load().await {
                Ok(t) => Ok(Some(t)),
                Err(deltalake::DeltaTableError::NotATable(_)) => Ok(None),
                Err(e) => Err(Error::delta(key, "load")(e)),
            }
        };
        match as_of {
            None => load(self.builder(key)?).await,
            Some(AsOf::Version(v)) => load(self.builder(key)?.with_version(*v)).await,
            Some(AsOf::Timestamp(t)) => {
                let Some(latest) = load(self.builder(key)?).await? else { return Ok(None) };
                match version_at(&latest, t).await {
                    Some(v) if Some(v) == latest.version() => Ok(Some(latest)),
                    Some(v) => load(self.builder(key)?.with_version(v)).await,
                    // Before the first commit: as Delta says (the caller reports the range).
                    None => load(self.builder(key)?.with_timestamp(*t)).await,
                }
            }
        }
    }

    /// The versions of `key` that can be read; `None` if there is no table.
    pub async fn version_range(&self, key: &AssetKey) -> Result<Option<VersionRange>> {
        match self.table(key).await? {
            Some(table) => Ok(Some(VersionRange::of(&table).await)),
            None => Ok(None),
        }
    }

    /// `Ok` if `as_of` names a version of `key`, opened as `table`, else the range it has. For
    /// a version, `table` is the latest; for a time, any version (the first commit is shared).
    pub async fn check_as_of(&self, key: &AssetKey, table: &DeltaTable, as_of: &AsOf) -> Result<()> {
        let range = VersionRange::of(table).await;
        if range.holds(as_of) {
            return Ok(());
        }
        Err(Error::OutOfRange { table: key.clone(), asked: as_of.to_string(), range: range.to_string() })
    }

    /// Whether a Delta table exists at `key`: its `_delta_log` holds at least one file.
    pub async fn exists(&self, key: &AssetKey) -> Result<bool> {
        let url = self.table_url(key).join("_delta_log/").expect("valid path");
        let prefix = StorePath::from_url_path(url.path())
            .map_err(|e| Error::ListLake { root: self.display.clone(), source: e.into() })?;
        match self.store.list(Some(&prefix)).next().await {
            None | Some(Err(object_store::Error::NotFound { .. })) => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) => Err(Error::ListLake { root: self.display.clone(), source: e }),
        }
    }

    /// Move table `key` out of the lake, into `<root>/_dropped/<schema>/<name>/<time>/`, whole
    /// (its log first, so that it stops being a table before its files move); `None` if
    /// nothing is there. Nothing is deleted: the folder can be moved back, or deleted to free
    /// the space. Repeating it finishes a move that was interrupted.
    pub async fn drop_table(&self, key: &AssetKey, at: chrono::DateTime<chrono::Utc>) -> Result<Option<Url>> {
        let err = |source| Error::ListLake { root: self.display.clone(), source };
        let table = self.table_url(key);
        let prefix = StorePath::from_url_path(table.path()).map_err(|e| err(e.into()))?;
        let mut objects: Vec<StorePath> =
            match self.store.list(Some(&prefix)).map_ok(|o| o.location).try_collect().await {
                Ok(o) => o,
                Err(object_store::Error::NotFound { .. }) => Vec::new(),
                Err(e) => return Err(err(e)),
            };
        if objects.is_empty() {
            return Ok(None);
        }
        let log = format!("{prefix}/_delta_log/");
        objects.sort_by_key(|o| (!o.as_ref().starts_with(&log), o.as_ref().to_string()));
        let stamp = at.format("%Y%m%dT%H%M%S%.3fZ");
        let dest = self
            .root_url
            .join(&format!("{DROPPED}/{}/{}/{stamp}/", key.schema, key.name))
            .expect("asset keys are valid path segments");
        let dest_prefix = StorePath::from_url_path(dest.path()).map_err(|e| err(e.into()))?;
        for object in objects {
            let rest = object.as_ref().strip_prefix(prefix.as_ref()).unwrap_or(object.as_ref()).trim_start_matches('/');
            let to = StorePath::from(format!("{dest_prefix}/{rest}"));
            object_store::ObjectStoreExt::rename(self.store.as_ref(), &object, &to).await.map_err(err)?;
        }
        // A local lake keeps the emptied folders; they are no table, but would look like one.
        if let Ok(dir) = table.to_file_path() {
            let _ = std::fs::remove_dir_all(dir);
        }
        Ok(Some(dest))
    }

    /// Rows of table `key` at its latest version, from its files' statistics; `None` when
    /// there is no table.
    pub async fn row_count(&self, key: &AssetKey) -> Result<Option<u64>> {
        match self.table(key).await? {
            Some(table) => crate::materialize::table_rows(key, &table).map(Some),
            None => Ok(None),
        }
    }

    /// A handle on `key` whether or not a table exists there yet (writes create it).
    pub(crate) async fn table_or_new(&self, key: &AssetKey) -> Result<DeltaTable> {
        match self.table(key).await? {
            Some(t) => Ok(t),
            None => self.builder(key)?.build().map_err(Error::delta(key, "open")),
        }
    }

    /// Every Delta table in the lake: `<root>/<schema>/<name>/_delta_log`.
    pub async fn list_tables(&self) -> Result<Vec<AssetKey>> {
        let list_err = |source| Error::ListLake { root: self.display.clone(), source };
        let root = StorePath::from_url_path(self.root_url.path()).map_err(|e| list_err(e.into()))?;
        let schemas = match self.store.list_with_delimiter(Some(&root)).await {
            Ok(r) => r.common_prefixes,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(list_err(e)),
        };
        let tables = futures::stream::iter(schemas)
            // Where `basin drop` keeps dropped tables: no schema of the lake's.
            .filter(|schema| std::future::ready(schema.filename() != Some(DROPPED)))
            .map(|schema| async move {
                let schema_name = schema.filename().unwrap_or_default().to_string();
                let listing = self.store.list_with_delimiter(Some(&schema)).await?;
                let mut keys = Vec::new();
                for table in listing.common_prefixes {
                    let has_log = self
                        .store
                        .list_with_delimiter(Some(&table))
                        .await?
                        .common_prefixes
                        .iter()
                        .any(|p| p.filename() == Some("_delta_log"));
                    if has_log {
                        keys.push(AssetKey::new(schema_name.clone(), table.filename().unwrap_or_default()));
                    }
                }
                Ok::<_, object_store::Error>(keys)
            })
            .buffer_unordered(8)
            .try_collect::<Vec<_>>()
            .await
            .map_err(list_err)?;
        let mut keys: Vec<AssetKey> = tables.into_iter().flatten().collect();
        keys.sort();
        Ok(keys)
    }

    /// A session with every table of the lake registered as `<schema>.<name>`, then `views`
    /// (in dependency order) registered over them.
    pub async fn session(&self, views: &[(AssetKey, String)], as_of: Option<&AsOf>) -> Result<LakeSession> {
        self.session_reading(views, as_of, false).await
    }

    /// A session for serving queries, as [`Lake::session`] at the latest versions, except that
    /// each table whose version is only its Parquet files (no partitions, deletion vectors or
    /// column mapping) is read as those files ([`FilesTable`]): listed once here instead of
    /// by the Delta scan on every query.
    pub async fn serving_session(&self, views: &[(AssetKey, String)]) -> Result<LakeSession> {
        self.session_reading(views, None, true).await
    }

    async fn session_reading(
        &self,
        views: &[(AssetKey, String)],
        as_of: Option<&AsOf>,
        files: bool,
    ) -> Result<LakeSession> {
        let ctx = new_context();
        let keys = self.list_tables().await?;
        let loaded = futures::stream::iter(keys)
            .map(|key| async move {
                let table = self.table_as_of(&key, as_of).await;
                (key, table)
            })
            .buffer_unordered(8)
            .collect::<Vec<_>>()
            .await;
        let mut tables = Vec::new();
        let mut unavailable_tables = Vec::new();
        let mut out_of_range = Vec::new();
        for (key, table) in loaded {
            let registered = match (table, as_of) {
                // A time before the table's first commit: it did not exist then.
                (Ok(Some(t)), Some(a @ AsOf::Timestamp(_))) => match self.check_as_of(&key, &t, a).await {
                    Ok(()) => self.register_everything(&ctx, &key, &t, files).await.map(|()| t),
                    Err(e) => {
                        out_of_range.push((key, e.to_string()));
                        continue;
                    }
                },
                (Ok(Some(t)), _) => self.register_everything(&ctx, &key, &t, files).await.map(|()| t),
                (Ok(None), _) => continue,
                // A version or time the table does not have: left out, and said why when a
                // query names it.
                (Err(e), Some(a)) => {
                    let reason = match self.version_range(&key).await {
                        Ok(Some(range)) if !range.holds(a) => {
                            Error::OutOfRange { table: key.clone(), asked: a.to_string(), range: range.to_string() }
                                .to_string()
                        }
                        _ => basin_core::error::chain(&e),
                    };
                    out_of_range.push((key, reason));
                    continue;
                }
                (Err(e), None) => Err(e),
            };
            match registered {
                Ok(table) => tables.push((key, table)),
                // One table the lake cannot open or register does not stop the others.
                Err(e) => {
                    let at = self.table_url(&key);
                    let reason = basin_core::error::chain(&e);
                    tracing::warn!(table = %key, path = %at, "left out of the session: {reason}");
                    let exact = datafusion::common::TableReference::partial(key.schema.as_str(), key.name.as_str());
                    let _ = ctx.deregister_table(exact);
                    unavailable_tables.push((key, format!("{at}: {reason}")));
                }
            }
        }
        let mut unavailable_views = Vec::new();
        for (key, sql) in views {
            match ctx.sql(sql).await {
                Ok(df) => register_view(&ctx, key, df, sql)?,
                Err(e) => unavailable_views.push((key.clone(), e.to_string())),
            }
        }
        Ok(LakeSession { ctx, unavailable_views, unavailable_tables, out_of_range, tables })
    }

    /// Register `table` as `key`, and for a bronze table its current state.
    async fn register_everything(
        &self,
        ctx: &SessionContext,
        key: &AssetKey,
        table: &DeltaTable,
        files: bool,
    ) -> Result<()> {
        self.register_table_reading(ctx, key, table, files).await?;
        if key.schema == basin_core::source::BRONZE {
            self.register_current_state(ctx, key, table).await?;
        }
        Ok(())
    }

    /// Register `bronze_current.<name>`, the current state of bronze table `key`, opened as
    /// `table` and already registered in `ctx`.
    pub async fn register_current_state(&self, ctx: &SessionContext, key: &AssetKey, table: &DeltaTable) -> Result<()> {
        // The exact name: a table name with capitals or spaces is not an SQL identifier as is.
        let provider = ctx
            .table_provider(datafusion::common::TableReference::partial(key.schema.as_str(), key.name.as_str()))
            .await
            .map_err(Error::query(format!("cannot read {key}")))?;
        let columns: Vec<String> = provider.schema().fields().iter().map(|f| f.name().clone()).collect();
        let Some(sql) = crate::current::current_state_sql(table, key, &columns).await? else { return Ok(()) };
        let df = ctx.sql(&sql).await.map_err(Error::query(format!("cannot define the current state of {key}")))?;
        register_view(ctx, &AssetKey::new(crate::current::CURRENT_SCHEMA, &key.name), df, &sql)
    }

    /// Register (or re-register) the table of `key` in `ctx` at the table's loaded version.
    pub async fn register_table(&self, ctx: &SessionContext, key: &AssetKey, table: &DeltaTable) -> Result<()> {
        self.register_table_reading(ctx, key, table, false).await
    }

    /// [`Lake::register_table`], reading the table as its Parquet files when `files` is set
    /// and the version allows it.
    async fn register_table_reading(
        &self,
        ctx: &SessionContext,
        key: &AssetKey,
        table: &DeltaTable,
        files: bool,
    ) -> Result<()> {
        table.update_datafusion_session(&ctx.state()).map_err(Error::delta(key, "register"))?;
        let provider = table.table_provider().await.map_err(Error::query(format!("cannot read table {key}")))?;
        let provider = match files.then(|| FilesTable::try_new(table, &self.table_url(key), provider.schema())) {
            Some(Some(files)) => Arc::new(files),
            _ => provider,
        };
        register_provider(ctx, key, provider)?;
        if let Some(tables) = ctx.state().config().get_extension::<SessionTables>() {
            tables.0.lock().unwrap_or_else(|e| e.into_inner()).insert(key.clone(), table.clone());
        }
        Ok(())
    }
}
fn dir_url(url: &Url) -> Url {
    let mut url = url.clone();
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    url
}

/// The folder under the root where `basin drop` moves tables.
const DROPPED: &str = "_dropped";

/// The DataFusion session settings every Basin session uses.
/// Bytes the queries of this process may hold (0: no limit); see [`set_memory_limit`].
static MEMORY_LIMIT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Limit the memory every later session's queries may hold: sorts, joins and aggregations
/// spill to disk near it, and a query that still cannot fit fails with "resources exhausted"
/// (an `out_of_memory` failure) instead of the process being OOM-killed. For worker processes.
pub fn set_memory_limit(bytes: Option<usize>) {
    MEMORY_LIMIT.store(bytes.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
}

/// The Delta tables registered in a session, at the versions it reads: what a model's build
/// records as the versions of its inputs, and reads their changes from.
#[derive(Debug, Default)]
pub(crate) struct SessionTables(std::sync::Mutex<std::collections::HashMap<AssetKey, DeltaTable>>);

/// The table registered as `key` in `ctx`, at the version the session reads (`None`: not a
/// Delta table of the lake, e.g. a view).
pub(crate) fn registered_table(ctx: &SessionContext, key: &AssetKey) -> Option<DeltaTable> {
    let tables = ctx.state().config().get_extension::<SessionTables>()?;
    let map = tables.0.lock().unwrap_or_else(|e| e.into_inner());
    map.get(key).cloned()
}

pub(crate) fn new_context() -> SessionContext {
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_default_catalog_and_schema("basin", "public")
        // Positions in the SQL for the planner's errors (`file:line:col` of a model).
        .set_bool("datafusion.sql_parser.collect_spans", true)
        .with_extension(Arc::new(SessionTables::default()));
    // Delta's planner executes the write and merge nodes deltalake adds to plans.
    let mut state = datafusion::execution::SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_query_planner(deltalake::delta_datafusion::planner::DeltaPlanner::new());
    let limit = MEMORY_LIMIT.load(std::sync::atomic::Ordering::Relaxed);
    if limit > 0
        && let Ok(runtime) =
            datafusion::execution::runtime_env::RuntimeEnvBuilder::new().with_memory_limit(limit, 1.0).build_arc()
    {
        state = state.with_runtime_env(runtime);
    }
    let ctx = SessionContext::new_with_state(state.build());
    crate::functions::register(&ctx);
    ctx
}

/// Register `sql` (planned as `df`) as the view `key` in `ctx`.
pub(crate) fn register_view(ctx: &SessionContext, key: &AssetKey, df: DataFrame, sql: &str) -> Result<()> {
    let view = ViewTable::new(df.into_unoptimized_plan(), Some(sql.to_string()));
    register_provider(ctx, key, Arc::new(view))
}

/// Register rows held in memory (the metadata store's tables, such as `basin.check_results`)
/// as `key` in `ctx`.
pub fn register_batches(
    ctx: &SessionContext,
    key: &AssetKey,
    schema: datafusion::arrow::datatypes::SchemaRef,
    batches: Vec<datafusion::arrow::array::RecordBatch>,
) -> Result<()> {
    let table = datafusion::datasource::MemTable::try_new(schema, vec![batches])
        .map_err(Error::query(format!("cannot register {key}")))?;
    register_provider(ctx, key, Arc::new(table))
}

/// Put `provider` in `ctx` as `<schema>.<name>`, creating the schema, replacing any earlier one.
pub(crate) fn register_provider(ctx: &SessionContext, key: &AssetKey, provider: Arc<dyn TableProvider>) -> Result<()> {
    // Models of one run finish concurrently: creating a schema must not replace one that
    // another task created a moment earlier.
    static CREATE_SCHEMA: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let catalog = ctx.catalog("basin").expect("the default catalog exists");
    let schema = {
        let _guard = CREATE_SCHEMA.lock().unwrap_or_else(|e| e.into_inner());
        match catalog.schema(&key.schema) {
            Some(s) => s,
            None => {
                let s: Arc<dyn SchemaProvider> = Arc::new(MemorySchemaProvider::new());
                catalog.register_schema(&key.schema, s.clone()).map_err(Error::query("cannot create a schema"))?;
                s
            }
        }
    };
    let _ = schema.deregister_table(&key.name);
    schema.register_table(key.name.clone(), provider).map_err(Error::query(format!("cannot register {key}")))?;
    Ok(())
}
