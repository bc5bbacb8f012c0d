//! Delta commits as Basin makes and reads them: the properties of every write, the rows a
//! commit recorded, the latest ingest's commit information, the writers' dictionary limit.
//! A leaf of the engine: it knows deltalake, not the lake or its tables' kinds.

use deltalake::DeltaTable;
use futures::StreamExt;

use basin_core::AssetKey;

use crate::error::{Error, Result};

/// Commit properties for every Basin write: `metadata`, and no silent rebase. Each write reads
/// the table first (what it replaces, the keys it merges, the rows an increment must not
/// repeat), and delta-rs's conflict check does not treat a full overwrite as having read the
/// whole table: two replaces of an empty table would both commit and double its rows. So a
/// write whose table moved since it read it fails (a transient failure, retried by the daemon)
/// instead of being rebased onto the other writer's version.
pub(crate) fn commit_properties(
    metadata: impl IntoIterator<Item = (String, serde_json::Value)>,
) -> deltalake::kernel::transaction::CommitProperties {
    deltalake::kernel::transaction::CommitProperties::default().with_metadata(metadata).with_max_retries(0)
}

/// Output rows a commit recorded in its `operationMetrics` (writes and merges name them
/// differently), if any.
pub(crate) fn commit_rows(info: &deltalake::kernel::CommitInfo) -> Option<u64> {
    let metrics = info.info.get("operationMetrics")?;
    ["num_added_rows", "num_output_rows", "numOutputRows"]
        .iter()
        .find_map(|k| metrics.get(*k).and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok())))
}

/// Output rows of the table's latest commit, from its `operationMetrics`.
pub(crate) async fn last_commit_rows(table: &DeltaTable) -> u64 {
    let mut history = table.history(Some(1));
    let Some(Ok(info)) = history.next().await else { return 0 };
    commit_rows(&info).unwrap_or(0)
}

/// Bytes a column chunk's dictionary may take before the column falls back to plain encoding.
pub(crate) const DICTIONARY_PAGE_LIMIT: usize = 64 * 1024;

/// The commit information of the table's latest ingest (the newest commit saying how the
/// table is loaded, `basin.bronze`); `None` if no commit does.
pub(crate) async fn latest_ingest(
    table: &DeltaTable,
    key: &AssetKey,
) -> Result<Option<std::collections::HashMap<String, serde_json::Value>>> {
    latest_with(table, key, "basin.bronze").await
}

/// The commit information of the newest commit that records `entry`; `None` if none does.
pub(crate) async fn latest_with(
    table: &DeltaTable,
    key: &AssetKey,
    entry: &str,
) -> Result<Option<std::collections::HashMap<String, serde_json::Value>>> {
    let mut history = table.history(None);
    while let Some(info) = history.next().await {
        let info = info.map_err(Error::delta(key, "history"))?.info;
        if info.contains_key(entry) {
            return Ok(Some(info));
        }
    }
    Ok(None)
}
