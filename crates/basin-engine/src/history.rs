//! A table's commit history and rolling it back: `restore` writes a new commit whose content is
//! an earlier version, so the history (and the bad version) stays readable.

use basin_core::AssetKey;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::json;

use crate::error::{Error, Result};
use crate::lake::{AsOf, Lake};

/// One commit of a table, as Basin reports it.
#[derive(Debug, Clone)]
pub struct Commit {
    pub version: u64,
    pub timestamp: Option<DateTime<Utc>>,
    pub operation: String,
    pub run_id: Option<String>,
    pub sql_hash: Option<String>,
    /// Output rows from the commit's `operationMetrics`, when the operation records them.
    pub rows: Option<u64>,
    /// The source schema changes an ingest landed with (`basin.schema_changes`), in words:
    /// `column note added; column phone removed (accepted: NULL from here on)`.
    pub schema_changes: Option<String>,
}

/// The last `limit` commits of a table, newest first.
pub async fn history(lake: &Lake, key: &AssetKey, limit: Option<usize>) -> Result<Vec<Commit>> {
    let table = lake.table(key).await?.ok_or_else(|| Error::TableNotFound { table: key.clone() })?;
    let latest = table.version().unwrap_or(0);
    let infos: Vec<_> = table.history(limit).collect().await;
    let mut out = Vec::new();
    for (i, info) in infos.into_iter().enumerate() {
        let info = info.map_err(Error::delta(key, "history"))?;
        let text = |k: &str| info.info.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let rows = crate::delta::commit_rows(&info);
        out.push(Commit {
            version: info.info.get("version").and_then(|v| v.as_u64()).unwrap_or(latest.saturating_sub(i as u64)),
            timestamp: info.timestamp.and_then(DateTime::from_timestamp_millis),
            operation: info.operation.clone().unwrap_or_default(),
            run_id: text("basin.run_id"),
            sql_hash: text("basin.sql_hash"),
            rows,
            schema_changes: info.info.get("basin.schema_changes").map(describe_schema_changes),
        });
    }
    Ok(out)
}

/// A commit's `basin.schema_changes` in words.
fn describe_schema_changes(changes: &serde_json::Value) -> String {
    let list = |kind: &str| changes.get(kind).and_then(|l| l.as_array()).cloned().unwrap_or_default();
    let text = |v: &serde_json::Value, k: &str| v.get(k).and_then(|t| t.as_str()).unwrap_or("?").to_string();
    let mut out = Vec::new();
    for c in list("added") {
        out.push(format!("column {} added ({})", text(&c, "column"), text(&c, "type")));
    }
    for (kind, what) in [("widened", "widened"), ("narrowed", "narrowed (allowed)")] {
        for c in list(kind) {
            out.push(format!("column {} {what} from {} to {}", text(&c, "column"), text(&c, "from"), text(&c, "to")));
        }
    }
    for c in list("removed") {
        out.push(format!("column {} removed (accepted: NULL from here on)", text(&c, "column")));
    }
    for c in list("replaced") {
        out.push(format!(
            "column {} changed type from {} to {} (accepted: new values in {})",
            text(&c, "column"),
            text(&c, "from"),
            text(&c, "to"),
            text(&c, "into")
        ));
    }
    out.join("; ")
}

/// Restore `key` to an earlier version or time, as a new commit. Returns the new version.
pub async fn restore(lake: &Lake, key: &AssetKey, target: &AsOf, run_id: &str) -> Result<u64> {
    let table = lake.table(key).await?.ok_or_else(|| Error::TableNotFound { table: key.clone() })?;
    lake.check_as_of(key, &table, target).await?;
    // By commit time, as `basin history` prints it and `--as-of` reads it.
    let at_version = match target {
        AsOf::Timestamp(t) => crate::lake::version_at(&table, t).await,
        AsOf::Version(_) => None,
    };
    let mut builder = table.restore().with_commit_properties(crate::delta::commit_properties([
        ("basin.run_id".to_string(), json!(run_id)),
        ("basin.operation".to_string(), json!("restore")),
    ]));
    builder = match target {
        AsOf::Version(v) => builder.with_version_to_restore(*v),
        AsOf::Timestamp(t) => match at_version {
            Some(v) => builder.with_version_to_restore(v),
            None => builder.with_datetime_to_restore(*t),
        },
    };
    let (table, _metrics) = builder.await.map_err(Error::delta(key, "restore"))?;
    Ok(table.version().unwrap_or_default())
}
