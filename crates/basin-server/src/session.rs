//! The lake as the endpoint serves it: a snapshot of the lake's catalog (one Delta version of
//! every table), replaced when the metadata store records a new materialisation (checked
//! before every statement) or after `refresh_interval`. A statement plans against one
//! snapshot, so it reads one consistent version of each table; statements after a build see
//! the build.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use basin_core::AssetKey;
use basin_engine::Lake;
use basin_meta::MetaStore;
use datafusion::catalog::{CatalogProvider, TableProvider};
use datafusion::common::TableReference;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::{ViewTable, source_as_provider};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::DfSessionService;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::{context::EmptyContextProvider, setup_pg_catalog};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use crate::Error;
use crate::catalog::{RoleCatalog, Tags};
use crate::policy::Role;
use crate::system::SystemSchema;

/// What a role queries through: its session (grants and masks in its catalog) and the
/// PostgreSQL protocol service over it.
pub struct RoleSession {
    pub ctx: Arc<SessionContext>,
    pub service: Arc<DfSessionService>,
    /// The snapshot this session reads, numbered in the order snapshots were taken.
    pub generation: u64,
    /// That snapshot's catalog of the lake, before grants and masks.
    lake: Arc<dyn CatalogProvider>,
    /// Plans views for `ctx`'s catalog; kept alive as long as `ctx`.
    _definer: Arc<SessionContext>,
}

impl RoleSession {
    /// The plan of an admitted statement ([`crate::statement::admit`]), planned from the
    /// statement the client's text was parsed into, never from text again; refused by
    /// DataFusion too if it defines, writes or sets anything.
    pub async fn plan(&self, statement: Statement) -> datafusion::error::Result<LogicalPlan> {
        let plan = self.ctx.state().statement_to_plan(DfStatement::Statement(Box::new(statement))).await?;
        crate::statement::verify(&plan)?;
        Ok(plan)
    }

    /// Whether `plan`, planned in a session of this snapshot or an earlier one, reads this
    /// snapshot's version of every lake table it reads: not when a table it reads was
    /// materialised again, or dropped, since it was planned.
    pub async fn reads_current_tables(&self, plan: &LogicalPlan) -> bool {
        let mut scans = Vec::new();
        lake_scans(plan, &mut scans);
        for (name, provider) in scans {
            let name = name.resolve("basin", "public");
            if name.schema.as_ref() == crate::system::SCHEMA {
                continue;
            }
            // Schemas not of the lake (`pg_catalog`, `information_schema`) do not change.
            let Some(schema) = self.lake.schema(&name.schema) else { continue };
            match schema.table(&name.table).await {
                Ok(Some(current)) if same_provider(&current, &provider) => {}
                _ => return false,
            }
        }
        true
    }
}

/// The table scans of `plan` (with its subqueries and the plans of the views it reads, which
/// are where a masked table's scan is) other than of views.
fn lake_scans(plan: &LogicalPlan, scans: &mut Vec<(TableReference, Arc<dyn TableProvider>)>) {
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = source_as_provider(&scan.source)
        {
            match (provider.as_ref() as &dyn std::any::Any).downcast_ref::<ViewTable>() {
                Some(view) => lake_scans(view.logical_plan(), scans),
                None => scans.push((scan.table_name.clone(), provider)),
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
}

fn same_provider(a: &Arc<dyn TableProvider>, b: &Arc<dyn TableProvider>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}

struct Snapshot {
    generation: u64,
    fingerprint: Option<String>,
    built: Instant,
    base: SessionContext,
    roles: Mutex<HashMap<String, Arc<RoleSession>>>,
}

pub struct Lakehouse {
    lake: Lake,
    views: Vec<(AssetKey, String)>,
    /// Tables clustered by a key (`cluster_by`): read by lookups, their page indexes are
    /// loaded once per snapshot instead of once per query.
    clustered: Vec<AssetKey>,
    tags: Arc<Tags>,
    pub store: Arc<dyn MetaStore>,
    refresh_interval: Duration,
    current: tokio::sync::RwLock<Option<Arc<Snapshot>>>,
    rebuilding: tokio::sync::Mutex<()>,
    looks: Arc<Looks>,
}

type Fingerprint = Result<Option<String>, Arc<basin_meta::Error>>;
type Look = Shared<BoxFuture<'static, Fingerprint>>;

/// Looks at the store's newest materialisation, shared by the statements that arrive together.
/// A statement must see every materialisation recorded before it arrived, so it may share a
/// look that starts after it arrived, never one already under way: statements arriving while
/// one look runs share the next, which starts when that one ends. Under load one look serves
/// many statements; alone, a statement takes its own at once.
#[derive(Default)]
struct Looks(Mutex<Queued>);

#[derive(Default)]
struct Queued {
    running: Option<(u64, Look)>,
    next: Option<(u64, Look)>,
    taken: u64,
}

impl Looks {
    /// The look this statement waits for; `look` takes one, if a new one is needed.
    fn join(self: &Arc<Self>, look: impl FnOnce() -> BoxFuture<'static, Fingerprint> + Send + 'static) -> Look {
        let mut queued = self.0.lock().expect("lock");
        if let Some((_, next)) = &queued.next {
            return next.clone();
        }
        let after = queued.running.as_ref().map(|(_, look)| look.clone());
        queued.taken += 1;
        let id = queued.taken;
        let looks = self.clone();
        let look = async move {
            if let Some(running) = after {
                let _ = running.await;
            }
            let fingerprint = look().await;
            let mut queued = looks.0.lock().expect("lock");
            if queued.running.as_ref().is_some_and(|(running, _)| *running == id) {
                queued.running = queued.next.take();
            }
            fingerprint
        }
        .boxed()
        .shared();
        match queued.running {
            None => queued.running = Some((id, look.clone())),
            Some(_) => queued.next = Some((id, look.clone())),
        }
        look
    }
}

impl Lakehouse {
    pub fn new(
        lake: Lake,
        views: Vec<(AssetKey, String)>,
        clustered: Vec<AssetKey>,
        tags: Tags,
        store: Arc<dyn MetaStore>,
        refresh_interval: Duration,
    ) -> Lakehouse {
        Lakehouse {
            lake,
            views,
            clustered,
            tags: Arc::new(tags),
            store,
            refresh_interval,
            current: tokio::sync::RwLock::new(None),
            rebuilding: tokio::sync::Mutex::new(()),
            looks: Arc::default(),
        }
    }

    /// The newest materialisation the store knows of, as a token that changes with each.
    async fn fingerprint(&self) -> Result<Option<String>, Error> {
        let store = self.store.clone();
        let look = self.looks.join(move || {
            async move {
                let latest = store.materializations(None, 1).await.map_err(Arc::new)?;
                Ok(latest
                    .first()
                    .map(|m| format!("{}@{:?}@{}@{}", m.asset, m.delta_version, m.run_id, m.at.timestamp_micros())))
            }
            .boxed()
        });
        look.await.map_err(Error::SharedMeta)
    }

    /// `role`'s session over the current snapshot of the lake.
    pub async fn session(&self, role: &Arc<Role>) -> Result<Arc<RoleSession>, Error> {
        let fingerprint = self.fingerprint().await?;
        let fresh = |s: &Snapshot| s.fingerprint == fingerprint && s.built.elapsed() < self.refresh_interval;
        let current = self.current.read().await.clone();
        let snapshot = match current {
            Some(s) if fresh(&s) => s,
            _ => {
                let _one = self.rebuilding.lock().await;
                let current = self.current.read().await.clone();
                match current {
                    Some(s) if fresh(&s) => s,
                    stale => {
                        let generation = stale.map_or(1, |s| s.generation + 1);
                        let s = Arc::new(self.build(fingerprint, generation).await?);
                        *self.current.write().await = Some(s.clone());
                        s
                    }
                }
            }
        };
        self.role_session_of(&snapshot, role)
    }

    fn role_session_of(&self, snapshot: &Snapshot, role: &Arc<Role>) -> Result<Arc<RoleSession>, Error> {
        if let Some(s) = snapshot.roles.lock().expect("lock").get(&role.name) {
            return Ok(s.clone());
        }
        let s = Arc::new(self.role_session(snapshot, role)?);
        snapshot.roles.lock().expect("lock").insert(role.name.clone(), s.clone());
        Ok(s)
    }

    async fn build(&self, fingerprint: Option<String>, generation: u64) -> Result<Snapshot, Error> {
        let session = self.lake.serving_session(&self.views).await?;
        for (key, reason) in &session.unavailable_views {
            tracing::warn!(%key, reason, "view not served: its SQL does not plan");
        }
        let catalog = session.ctx.catalog("basin").expect("the lake's catalog");
        catalog.register_schema(crate::system::SCHEMA, Arc::new(SystemSchema::new(self.store.clone())))?;
        // In the background: the snapshot serves meanwhile, reading page indexes as before.
        let mut files = Vec::new();
        for (key, table) in session.tables.iter().filter(|(k, _)| self.clustered.contains(k)) {
            match self.lake.data_files(key, table) {
                Ok(f) => files.extend(f),
                Err(e) => tracing::debug!(%key, error = %e, "page indexes not preloaded"),
            }
        }
        let runtime = session.ctx.runtime_env();
        tokio::spawn(async move {
            if let Err(e) = load_page_indexes(&runtime, &files).await {
                tracing::debug!(error = %e, "page indexes not preloaded");
            }
        });
        Ok(Snapshot {
            generation,
            fingerprint,
            built: Instant::now(),
            base: session.ctx,
            roles: Mutex::new(HashMap::new()),
        })
    }

    fn role_session(&self, snapshot: &Snapshot, role: &Arc<Role>) -> Result<RoleSession, Error> {
        let base = &snapshot.base;
        let base_catalog = base.catalog("basin").expect("the lake's catalog");
        // The role's queries share the lake's object stores and Parquet metadata cache, and its
        // memory limit.
        let metadata = base.runtime_env().cache_manager.get_file_metadata_cache();
        // The lake's stores only, read-only: no statement reaches another file or URL.
        let stores =
            crate::stores::LakeStores::new(base.runtime_env().object_store_registry.clone(), self.lake.root_url());
        let mut runtime = RuntimeEnvBuilder::new()
            .with_object_store_registry(Arc::new(stores))
            .with_cache_manager(CacheManagerConfig::default().with_file_metadata_cache(Some(metadata)));
        if let Some(limit) = role.memory_limit {
            runtime = runtime.with_memory_limit(limit, 1.0);
        }
        let runtime = runtime.build_arc()?;
        let make = |grants: bool| {
            let mut config =
                SessionConfig::new().with_information_schema(true).with_default_catalog_and_schema("basin", "public");
            // A file is split into byte ranges scanned in parallel only when it is large: each
            // range opens the file and reads its footer and page index again, which for a
            // served lookup costs more than the page it reads.
            config.options_mut().optimizer.repartition_file_min_size = 128 * 1024 * 1024;
            // The dialect of the endpoints' parser ([`crate::statement`]), for what
            // datafusion-postgres plans from text (cursors, `SHOW` of a setting).
            config.options_mut().sql_parser.dialect = datafusion::config::Dialect::PostgreSQL;
            let state = SessionStateBuilder::new()
                .with_default_features()
                .with_config(config)
                .with_runtime_env(runtime.clone())
                .with_physical_optimizer_rule(Arc::new(crate::meter::MeterRule))
                .build();
            let ctx = Arc::new(SessionContext::new_with_state(state));
            basin_engine::functions::register(&ctx);
            let catalog = Arc::new(RoleCatalog::new(base_catalog.clone(), role.clone(), self.tags.clone(), grants));
            ctx.register_catalog("basin", catalog.clone());
            (ctx, catalog)
        };
        let (definer, definer_catalog) = make(false);
        definer_catalog.set_definer(&definer);
        let (ctx, catalog) = make(true);
        catalog.set_definer(&definer);
        setup_pg_catalog(&ctx, "basin", EmptyContextProvider).map_err(|e| Error::Query(*e))?;
        Ok(RoleSession {
            service: Arc::new(DfSessionService::new(ctx.clone())),
            ctx,
            generation: snapshot.generation,
            lake: base_catalog,
            _definer: definer,
        })
    }
}

/// Put the footer and page index of each of `files` (URL, size) into `runtime`'s Parquet
/// metadata cache. The scan caches the footers it reads, but loads the page index of a file
/// apart from them on every query (DataFusion keeps what it read with the footer only), which
/// for a lookup costs as much as the page it reads; a cached entry that holds the page index
/// is used as it is, keyed as the scans look for it ([`basin_engine::files_table::cache_key`]).
async fn load_page_indexes(runtime: &RuntimeEnv, files: &[(url::Url, u64)]) -> datafusion::error::Result<()> {
    use basin_engine::files_table::{cache_key, page_indexed_metadata};
    use datafusion::datasource::object_store::ObjectStoreUrl;

    let cache = runtime.cache_manager.get_file_metadata_cache();
    for (url, size) in files {
        let store = runtime.object_store(ObjectStoreUrl::parse(&url[..url::Position::BeforePath])?)?;
        page_indexed_metadata(store.as_ref(), &cache_key(url, *size)?, &cache).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A store whose newest materialisation the test sets, counting the looks taken, each of
    /// which reads the store when it starts and ends when the test lets it.
    struct Store {
        latest: Arc<Mutex<String>>,
        looks: Arc<AtomicUsize>,
        ends: Arc<tokio::sync::Semaphore>,
    }

    impl Store {
        fn look(&self) -> impl FnOnce() -> BoxFuture<'static, Fingerprint> + Send + 'static {
            let (latest, looks, ends) = (self.latest.clone(), self.looks.clone(), self.ends.clone());
            move || {
                async move {
                    looks.fetch_add(1, Ordering::SeqCst);
                    let seen = latest.lock().unwrap().clone();
                    ends.acquire().await.unwrap().forget();
                    Ok(Some(seen))
                }
                .boxed()
            }
        }
    }

    #[tokio::test]
    async fn a_statement_shares_only_a_look_that_starts_after_it_arrived() {
        let store = Store {
            latest: Arc::new(Mutex::new("v1".into())),
            looks: Arc::default(),
            ends: Arc::new(tokio::sync::Semaphore::new(0)),
        };
        let looks = Arc::new(Looks::default());
        let poll = |f: &mut Look| futures::FutureExt::now_or_never(&mut *f);

        // Alone, a statement takes its own look at once.
        let mut a = looks.join(store.look());
        assert!(poll(&mut a).is_none());
        assert_eq!(store.looks.load(Ordering::SeqCst), 1);
        // A build is recorded while that look is under way: statements arriving now must see it,
        // so they share the next look, which waits for the running one to end.
        *store.latest.lock().unwrap() = "v2".into();
        let mut b = looks.join(store.look());
        let mut c = looks.join(store.look());
        assert!(poll(&mut b).is_none() && poll(&mut c).is_none());
        assert_eq!(store.looks.load(Ordering::SeqCst), 1, "the next look starts after the running one");
        store.ends.add_permits(1);
        assert_eq!(a.await.unwrap().as_deref(), Some("v1"));
        assert!(poll(&mut b).is_none(), "b's look has started");
        assert_eq!(store.looks.load(Ordering::SeqCst), 2);
        // Arriving while b's look runs: a third look, after it.
        let mut d = looks.join(store.look());
        *store.latest.lock().unwrap() = "v3".into();
        store.ends.add_permits(1);
        assert_eq!(b.await.unwrap().as_deref(), Some("v2"));
        assert_eq!(c.await.unwrap().as_deref(), Some("v2"), "c shared b's look");
        store.ends.add_permits(1);
        assert_eq!(poll(&mut d).and_then(Result::ok).flatten().as_deref(), Some("v3"));
        assert_eq!(store.looks.load(Ordering::SeqCst), 3, "four statements, three looks");
        // With nothing running, the next statement takes a new look at once again.
        store.ends.add_permits(1);
        assert_eq!(looks.join(store.look()).await.unwrap().as_deref(), Some("v3"));
        assert_eq!(store.looks.load(Ordering::SeqCst), 4);
    }
}
