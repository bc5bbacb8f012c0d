//! `basin check SELECTION`: the checks of the selected assets on their data as it is, outside
//! any run (in a run, [`crate::run`] evaluates them after each build). Results are stored
//! without a run id, so `basin runs checks` and freshness judgements see them.

use basin_core::outcome::Checked;
use basin_core::work::{CheckJob, Materializer, RunSpec};
use basin_core::{AssetKey, Project};
use basin_meta::MetaStore;

use crate::run::AssetError;

/// What stopped `basin check` before it had evaluated every check.
#[derive(Debug)]
pub enum CheckError {
    /// The lake could not be read (the work could not begin, or one asset's checks failed to
    /// run at all — a failing check is an outcome, not this).
    Work(AssetKey, AssetError),
    Store(basin_meta::Error),
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckError::Work(key, e) => write!(f, "cannot evaluate the checks of {key}: {e}"),
            CheckError::Store(_) => f.write_str("cannot store the check results"),
        }
    }
}

impl std::error::Error for CheckError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CheckError::Work(..) => None,
            CheckError::Store(e) => Some(e),
        }
    }
}

/// Evaluate the checks of `keys` in dependency order (assets without checks are left out) and
/// store each asset's results as they come; `each` sees them in that order.
pub async fn check(
    project: &Project,
    materializer: &dyn Materializer,
    store: &dyn MetaStore,
    keys: &[AssetKey],
    mut each: impl FnMut(&AssetKey, &Checked),
) -> Result<Vec<(AssetKey, Checked)>, CheckError> {
    let order: Vec<AssetKey> = project
        .graph
        .order(keys.iter())
        .into_iter()
        .filter(|k| project.checks.get(k).is_some_and(|c| !c.is_empty()))
        .cloned()
        .collect();
    let Some(first) = order.first() else { return Ok(Vec::new()) };
    let spec = RunSpec {
        run_id: String::new(),
        assets: order.clone(),
        full_refresh: false,
        partition: None,
        allow_shrink: false,
        accept_schema_change: Vec::new(),
    };
    let work = materializer.begin(&spec).await.map_err(|e| CheckError::Work(first.clone(), e))?;
    let mut results = Vec::with_capacity(order.len());
    for key in order {
        let job = CheckJob { materializations: materializations(project, store, &key).await, key: key.clone() };
        let (version, checked) = work.check(job).await.map_err(|e| CheckError::Work(key.clone(), e))?;
        crate::record::store_check_results(store, &key, version, &checked).await.map_err(CheckError::Store)?;
        each(&key, &checked);
        results.push((key, checked));
    }
    Ok(results)
}

/// The materialisations of `key` its checks judge (the store is read only when one does).
async fn materializations(
    project: &Project,
    store: &dyn MetaStore,
    key: &AssetKey,
) -> Vec<(i64, chrono::DateTime<chrono::Utc>)> {
    if !project.checks.get(key).is_some_and(|specs| specs.iter().any(|s| s.reads_history())) {
        return Vec::new();
    }
    let asset = key.to_string();
    match store.materializations(Some(&asset), 31).await {
        Ok(history) => history.into_iter().map(|m| (m.rows, m.at)).collect(),
        Err(e) => {
            tracing::warn!(%asset, "cannot read materialisations for checks: {e}");
            Vec::new()
        }
    }
}
