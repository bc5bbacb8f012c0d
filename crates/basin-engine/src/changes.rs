//! An incremental model's inputs read as what they gained since its last build.
//!
//! Every build records, in its commit, the version of each lake table its query read
//! (`basin.inputs`). The next incremental build reads each table of
//! [`Model::incremental_inputs`] as the rows the commits after that version added — bronze
//! tables only ever append, so that is exactly the new rows; `bronze_current.x` becomes the
//! current state of the keys those rows hold — and MERGEs only them. A table whose commits
//! since then did more than append (rows rewritten or removed, a schema change) is read whole,
//! and the build says why. The other tables the query reads (dimensions joined to the facts)
//! are read whole, as always.

use std::collections::BTreeMap;

use basin_core::AssetKey;
use basin_core::model::Model;
use basin_core::outcome::InputRead;
use basin_core::project::asset_of;
use basin_core::source::BRONZE_CURRENT;
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use deltalake::kernel::Action;
use futures::StreamExt;

use crate::current::quote;
use crate::error::{Error, Result};
use crate::lake::registered_table;

/// The commit property holding the versions a build read.
pub(crate) const INPUTS: &str = "basin.inputs";

/// The versions of the lake tables `model` reads, as `ctx` reads them: what its build records.
pub(crate) fn input_versions(ctx: &SessionContext, model: &Model) -> BTreeMap<String, u64> {
    model
        .refs
        .iter()
        .filter_map(|r| asset_of(&r.parts))
        .filter_map(|key| Some((key.to_string(), registered_table(ctx, &key)?.version()?)))
        .collect()
}

/// The versions the newest build of `table` recorded having read; `None` when that build
/// recorded none (built before Basin recorded them).
async fn last_inputs(table: &DeltaTable, key: &AssetKey) -> Result<Option<BTreeMap<String, u64>>> {
    let mut history = table.history(None);
    while let Some(info) = history.next().await {
        let info = info.map_err(Error::delta(key, "history"))?.info;
        if info.contains_key("basin.model") {
            return Ok(info.get(INPUTS).and_then(|v| serde_json::from_value(v.clone()).ok()));
        }
    }
    Ok(None)
}

/// How one incremental input will be read.
pub(crate) struct Planned {
    /// The reference as the query names it.
    parts: Vec<String>,
    asset: AssetKey,
    table: DeltaTable,
    pub read: InputRead,
    /// Whether the build merges into a table that rows deleted upstream must leave.
    propagate_deletes: bool,
    /// Of a table updated in place, read through its change data feed: its key.
    key: Option<Vec<String>>,
}

impl Planned {
    /// The input table's columns.
    fn columns(&self) -> Result<Vec<String>> {
        let snapshot = self.table.snapshot().map_err(Error::delta(&self.asset, "load"))?;
        Ok(snapshot.snapshot().arrow_schema().fields().iter().map(|f| f.name().clone()).collect())
    }
}

/// The assets `model` reads as changes.
pub(crate) fn incremental_assets(model: &Model) -> Vec<AssetKey> {
    model.incremental_inputs().iter().filter_map(|p| asset_of(p)).collect()
}

/// How the next build of `model` (whose table is `existing`) reads its incremental inputs, at
/// the versions `table_of` gives (those its session reads).
pub(crate) async fn plan(
    table_of: impl Fn(&AssetKey) -> Option<DeltaTable>,
    model: &Model,
    existing: Option<&DeltaTable>,
    full_refresh: bool,
) -> Result<Vec<Planned>> {
    let inputs = model.incremental_inputs();
    if inputs.is_empty() {
        return Ok(Vec::new());
    }
    let last = match existing {
        Some(t) if !full_refresh => last_inputs(t, &model.key).await?,
        _ => None,
    };
    let mut planned = Vec::new();
    for parts in inputs {
        let Some(asset) = asset_of(&parts) else { continue };
        let Some(table) = table_of(&asset) else {
            tracing::debug!(model = %model.key, input = %asset, "not a lake table: read whole");
            continue;
        };
        let Some(head) = table.version() else { continue };
        let whole = |because: String| InputRead {
            table: asset.clone(),
            version: head,
            after: None,
            rows: None,
            whole_because: Some(because),
            change_feed: false,
        };
        let mut key = None;
        let read = match (existing, full_refresh, &last) {
            (None, _, _) => whole("first build".into()),
            (_, true, _) => whole("--full-refresh".into()),
            (_, _, None) => whole("the last build did not record the versions it read".into()),
            (_, _, Some(last)) => match last.get(&asset.to_string()) {
                None => whole("the last build did not read it".into()),
                Some(&after) if after > head => {
                    whole(format!("the last build read version {after}, newer than its latest ({head}): recreated?"))
                }
                Some(&after) => match appended_rows(&table, &asset, after, head).await? {
                    Ok(Appended::Rows(rows)) => InputRead {
                        table: asset.clone(),
                        version: head,
                        after: Some(after),
                        rows,
                        whole_because: None,
                        change_feed: false,
                    },
                    // Updated in place: the latest change of each key, by the table's key.
                    Ok(Appended::ChangeFeed) => match model_key(&table, &asset).await? {
                        Some(k) => {
                            key = Some(k);
                            InputRead {
                                table: asset.clone(),
                                version: head,
                                after: Some(after),
                                rows: None,
                                whole_because: None,
                                change_feed: true,
                            }
                        }
                        None => whole(format!("its commits since version {after} rewrote rows, and it records no key")),
                    },
                    Err(because) => whole(because),
                },
            },
        };
        let propagate_deletes = existing.is_some() && !full_refresh;
        planned.push(Planned { parts, asset, table, read, propagate_deletes, key });
    }
    Ok(planned)
}

/// What the commits after a version did to a table.
enum Appended {
    /// Only added rows (this many; `None`: some file has no row count).
    Rows(Option<u64>),
    /// Rewrote rows too, every such commit writing change data (a MERGE into a table with
    /// the change data feed on): readable as the feed.
    ChangeFeed,
}

/// What the commits after `after` up to `head` did, when all they did was add rows or rewrite
/// them with change data; otherwise why the table must be read whole.
async fn appended_rows(
    table: &DeltaTable,
    key: &AssetKey,
    after: u64,
    head: u64,
) -> Result<std::result::Result<Appended, String>> {
    let log = table.log_store();
    let mut rows = Some(0u64);
    let mut rewritten = false;
    for version in after + 1..=head {
        let Some(bytes) = log.read_commit_entry(version).await.map_err(Error::delta(key, "read the log"))? else {
            return Ok(Err(format!("version {version} is no longer in its log")));
        };
        let actions = deltalake::logstore::get_actions(version, &bytes).map_err(Error::delta(key, "read the log"))?;
        let change_data = actions.iter().any(|a| matches!(a, Action::Cdc(_)));
        for action in actions {
            match action {
                Action::Add(add) if add.data_change => {
                    let n = add
                        .stats
                        .as_deref()
                        .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok()?.get("numRecords")?.as_u64());
                    rows = rows.zip(n).map(|(a, b)| a + b);
                }
                Action::Remove(remove) if remove.data_change && change_data => rewritten = true,
                Action::Remove(remove) if remove.data_change => {
                    return Ok(Err(format!("version {version} rewrote or removed rows")));
                }
                Action::Metadata(_) => return Ok(Err(format!("version {version} changed its schema or settings"))),
                _ => {}
            }
        }
        rewritten |= change_data;
    }
    Ok(Ok(if rewritten { Appended::ChangeFeed } else { Appended::Rows(rows) }))
}

/// The key of a model's table, as its newest build recorded it (`basin.unique_key`).
async fn model_key(table: &DeltaTable, key: &AssetKey) -> Result<Option<Vec<String>>> {
    let mut history = table.history(None);
    while let Some(info) = history.next().await {
        let info = info.map_err(Error::delta(key, "history"))?.info;
        if info.contains_key("basin.model") {
            let unique: Option<Vec<String>> = info.get(UNIQUE_KEY).and_then(|v| serde_json::from_value(v.clone()).ok());
            return Ok(unique.filter(|k| !k.is_empty()));
        }
    }
    Ok(None)
}

/// The commit property holding a model table's key.
pub(crate) const UNIQUE_KEY: &str = "basin.unique_key";

/// A model's SQL with its incremental inputs bound to their changes.
pub(crate) struct Bound {
    pub sql: String,
    pub read: Vec<InputRead>,
    /// The model's query over the last rows of the keys deleted upstream (in what it reads of
    /// a `bronze_current` table that tracks deletes): the rows the build deletes.
    pub deleted_sql: Option<String>,
    /// The tables registered for this build, dropped by [`Bound::release`].
    registered: Vec<String>,
}

impl Bound {
    /// Whether every input is read as changes and none has any: the build has nothing to do.
    pub fn nothing_new(&self) -> bool {
        !self.read.is_empty() && self.read.iter().all(|r| r.after.is_some() && r.rows == Some(0))
    }

    pub fn release(&self, ctx: &SessionContext) {
        for name in &self.registered {
            let _ = ctx.deregister_table(name.as_str());
        }
    }
}

/// Bind `sql`, the query of `model`, to the changes of its incremental inputs as `planned`:
/// each is registered under a name of this build (`tag`) and the query reads it there.
pub(crate) async fn bind(ctx: &SessionContext, sql: &str, planned: Vec<Planned>, tag: &str) -> Result<Bound> {
    let mut bound = Bound { sql: sql.to_string(), read: Vec::new(), deleted_sql: None, registered: Vec::new() };
    for (i, p) in planned.into_iter().enumerate() {
        let name = format!("__basin_changes_{tag}_{i}");
        let before = bound.sql.clone();
        let result = match p.read.after {
            Some(after) => bind_one(ctx, &mut bound, &p, after, &name).await,
            None => Ok(()),
        };
        let result = match result {
            Ok(()) => bind_deleted(ctx, &mut bound, &p, &name, &before).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            bound.release(ctx);
            return Err(e);
        }
        bound.read.push(p.read);
    }
    Ok(bound)
}

/// Bind an input updated in place to its change data feed (registered as `raw`): as `name`,
/// the latest version of each key changed since the last build; and when the build merges,
/// as `<name>_deleted`, the last rows of the keys whose latest change deleted them, over which
/// the query runs to find the rows the MERGE deletes.
async fn bind_change_feed(
    ctx: &SessionContext,
    bound: &mut Bound,
    p: &Planned,
    key: &[String],
    columns: &[String],
    raw: &str,
    name: &str,
) -> Result<()> {
    let failed = || Error::query(format!("cannot read the change data feed of {}", p.asset));
    let list = columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
    let keys = key.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
    // Of each key's changes, the newest commit's; in it a delete or an insert or a
    // post-image, never a pre-image.
    let latest = format!(
        "SELECT {list}, _change_type AS __basin_change FROM (SELECT {list}, _change_type, ROW_NUMBER() OVER \
         (PARTITION BY {keys} ORDER BY _commit_version DESC) AS __basin_rank FROM {} \
         WHERE _change_type <> 'update_preimage') AS c WHERE __basin_rank = 1",
        quote(raw)
    );
    let before = bound.sql.clone();
    for (view, wanted) in [(name.to_string(), "<>"), (format!("{name}_deleted"), "=")] {
        let sql = format!("SELECT {list} FROM ({latest}) AS l WHERE __basin_change {wanted} 'delete'");
        let df = ctx.sql(&sql).await.map_err(failed())?;
        ctx.register_table(view.as_str(), df.into_view()).map_err(failed())?;
        bound.registered.push(view);
    }
    let rename = |sql: &str, to: &str| {
        basin_core::sql_refs::rename_table(sql, &p.parts, to).map_err(|e| Error::Query {
            context: format!("cannot bind the changes of {}", p.asset),
            source: Box::new(datafusion::error::DataFusionError::Plan(e)),
        })
    };
    bound.sql = rename(&bound.sql, name)?;
    if p.propagate_deletes && bound.deleted_sql.is_none() {
        bound.deleted_sql = Some(rename(&before, &format!("{name}_deleted"))?);
    }
    Ok(())
}

/// For an input of the current state of a bronze table that tracks deletes: register the last
/// rows of the keys deleted in what the build reads of it (its changes, or all of it) as
/// `<name>_deleted`, and set `sql` (the query before the input was bound to its changes, named
/// `name`) over them as [`Bound::deleted_sql`].
async fn bind_deleted(ctx: &SessionContext, bound: &mut Bound, p: &Planned, name: &str, sql: &str) -> Result<()> {
    if !p.propagate_deletes
        || bound.deleted_sql.is_some()
        || p.parts.first().map(String::as_str) != Some(BRONZE_CURRENT)
    {
        return Ok(());
    }
    let whole = format!("{}.{}", quote(&p.asset.schema), quote(&p.asset.name));
    let changes = match p.read.after {
        Some(after) if after < p.read.version => quote(&format!("{name}_raw")),
        Some(_) => return Ok(()),
        None => whole.clone(),
    };
    let columns = p.columns()?;
    let Some(view_sql) = crate::current::deleted_rows_of(&p.table, &p.asset, &columns, &changes, &whole).await? else {
        return Ok(());
    };
    let failed = || Error::query(format!("cannot read the keys deleted from {}", p.asset));
    let deleted = format!("{name}_deleted");
    let df = ctx.sql(&view_sql).await.map_err(failed())?;
    ctx.register_table(deleted.as_str(), df.into_view()).map_err(failed())?;
    bound.registered.push(deleted.clone());
    bound.deleted_sql =
        Some(basin_core::sql_refs::rename_table(sql, &p.parts, &deleted).map_err(|e| Error::Query {
            context: format!("cannot bind the keys deleted from {}", p.asset),
            source: Box::new(datafusion::error::DataFusionError::Plan(e)),
        })?);
    Ok(())
}

async fn bind_one(ctx: &SessionContext, bound: &mut Bound, p: &Planned, after: u64, name: &str) -> Result<()> {
    let failed = || Error::query(format!("cannot read the changes of {}", p.asset));
    let reference = p.parts.iter().map(|s| quote(s)).collect::<Vec<_>>().join(".");
    let head = p.read.version;
    let view_sql = if after >= head {
        format!("SELECT * FROM {reference} WHERE false")
    } else {
        let raw = format!("{name}_raw");
        let cdf = p.table.clone().scan_cdf().with_starting_version(after + 1).with_ending_version(head);
        let provider = deltalake::delta_datafusion::DeltaCdfTableProvider::try_new(cdf)
            .map_err(Error::delta(&p.asset, "read changes"))?;
        ctx.register_table(raw.as_str(), std::sync::Arc::new(provider)).map_err(failed())?;
        bound.registered.push(raw.clone());
        let columns = p.columns()?;
        if let Some(key) = &p.key {
            return bind_change_feed(ctx, bound, p, key, &columns, &raw, name).await;
        }
        let current = if p.parts.first().map(String::as_str) == Some(BRONZE_CURRENT) {
            crate::current::current_state_of(&p.table, &p.asset, &columns, &quote(&raw)).await?
        } else {
            None
        };
        current.unwrap_or_else(|| {
            let list = columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
            format!("SELECT {list} FROM {}", quote(&raw))
        })
    };
    let df = ctx.sql(&view_sql).await.map_err(failed())?;
    ctx.register_table(name, df.into_view()).map_err(failed())?;
    bound.registered.push(name.to_string());
    bound.sql = basin_core::sql_refs::rename_table(&bound.sql, &p.parts, name).map_err(|e| Error::Query {
        context: format!("cannot bind the changes of {}", p.asset),
        source: Box::new(datafusion::error::DataFusionError::Plan(e)),
    })?;
    Ok(())
}
