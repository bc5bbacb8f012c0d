//! The current state of bronze tables (`bronze_current.<table>`): the latest snapshot of a
//! full table, the latest version of each key of an incremental one, every row of a files
//! table; and the metadata columns Basin adds to bronze rows. Read by the lake when it builds a
//! session, so it depends only on Delta, not on the lake or the bronze writer.

use std::collections::BTreeMap;

use basin_core::AssetKey;
use datafusion::arrow::datatypes::DataType;
use deltalake::DeltaTable;

use crate::error::Result;

pub const INGESTION_DATE: &str = "_ingestion_date";
pub const RUN_ID: &str = "_run_id";
pub const EXTRACTED_AT: &str = "_extracted_at";
pub const SOURCE: &str = "_source";
/// `true` on a tombstone: a row saying its key was deleted in the source (its other data
/// columns are NULL). The column exists once a key snapshot has landed a tombstone.
pub const DELETED: &str = "_tombstone";
/// The metadata columns Basin adds to bronze rows.
pub const METADATA_COLUMNS: [&str; 5] = [INGESTION_DATE, RUN_ID, EXTRACTED_AT, SOURCE, DELETED];

/// The schema of the current-state views over bronze tables.
pub const CURRENT_SCHEMA: &str = "bronze_current";

/// The SQL of a bronze table's current state: for full snapshots the latest day's snapshot,
/// for incremental tables the latest version of each primary key. Without the metadata
/// columns. `None` if no ingest commit says how the table is loaded.
pub async fn current_state_sql(table: &DeltaTable, key: &AssetKey, columns: &[String]) -> Result<Option<String>> {
    let table_ref = format!("{}.{}", quote(&key.schema), quote(&key.name));
    current_state_of(table, key, columns, &table_ref).await
}

/// [`current_state_sql`] of the rows `table_ref` holds: the table, or part of its rows with
/// its columns (the rows it gained since a version, of which it is the current state of the
/// keys they hold).
///
/// Deleted keys are left out: a key whose latest row is a tombstone (the tombstone carries the
/// cursor of the row it deletes, so it ties with it and wins), or whose latest row has the
/// soft-delete column set.
pub(crate) async fn current_state_of(
    table: &DeltaTable,
    key: &AssetKey,
    columns: &[String],
    table_ref: &str,
) -> Result<Option<String>> {
    let Some(how) = How::of(table, key).await? else { return Ok(None) };
    let list = how.data(columns).join(", ");
    let live = match &how.soft {
        Some(c) => format!(" WHERE {} IS NULL", quote(c)),
        None => String::new(),
    };
    Ok(Some(match (how.mode.as_str(), &how.cursor) {
        // Every key landed once (an append-only source, or a first load): every row is current.
        ("incremental", Some(_)) if !how.tombstones && keys_landed_once(table, &how.primary_key) => {
            format!("SELECT {list} FROM {table_ref}{live}")
        }
        // The row with the key's highest cursor. The writer never lands a (key, cursor) twice,
        // so that row is unique, and a hash aggregate joined back is several times faster
        // than ranking every row with a window (which sorts the whole table).
        ("incremental", Some(cursor)) if !how.primary_key.is_empty() => {
            let qualified: Vec<String> = how.data(columns).iter().map(|c| format!("t.{c}")).collect();
            let mut filters = Vec::new();
            if how.tombstones {
                filters.push("(latest.__basin_deleted IS NULL OR latest.__basin_deleted < latest.__basin_latest)");
            }
            let soft = how.soft.as_ref().map(|c| format!("t.{} IS NULL", quote(c)));
            filters.extend(soft.as_deref());
            format!(
                "SELECT {} FROM {table_ref} AS t JOIN ({}) AS latest ON {}{}",
                qualified.join(", "),
                how.latest(cursor, table_ref),
                how.on(cursor),
                if filters.is_empty() { String::new() } else { format!(" WHERE {}", filters.join(" AND ")) },
            )
        }
        // Files land once each: every row is current.
        ("files", _) => format!("SELECT {list} FROM {table_ref}{live}"),
        _ => format!(
            "SELECT {list} FROM {table_ref} WHERE {d} = (SELECT MAX({d}) FROM {table_ref}){}",
            how.soft.as_ref().map(|c| format!(" AND {} IS NULL", quote(c))).unwrap_or_default(),
            d = quote(INGESTION_DATE)
        ),
    }))
}

/// The last rows before deletion of the keys deleted in `changes_ref` (the table's rows since a
/// version, or the table itself, `whole_ref`): for a tombstoned key the row it deleted, for a
/// soft-deleted one its latest row. A model run over them finds the rows it must delete. `None`
/// when the table tracks no deletes, or cannot (a `full` table without a soft-delete column).
pub(crate) async fn deleted_rows_of(
    table: &DeltaTable,
    key: &AssetKey,
    columns: &[String],
    changes_ref: &str,
    whole_ref: &str,
) -> Result<Option<String>> {
    let Some(how) = How::of(table, key).await? else { return Ok(None) };
    let qualified: Vec<String> = how.data(columns).iter().map(|c| format!("t.{c}")).collect();
    let soft = how.soft.as_ref().map(|c| format!("t.{} IS NOT NULL", quote(c)));
    Ok(match (how.mode.as_str(), &how.cursor) {
        ("incremental", Some(cursor)) if !how.primary_key.is_empty() && (how.tombstones || soft.is_some()) => {
            let mut deleted = Vec::new();
            if how.tombstones {
                deleted.push("latest.__basin_deleted = latest.__basin_latest".to_string());
            }
            deleted.extend(soft);
            let (rows, not_tombstone) = if how.tombstones {
                (whole_ref, format!("t.{} IS NOT TRUE AND ", quote(DELETED)))
            } else {
                (changes_ref, String::new())
            };
            Some(format!(
                "SELECT {} FROM {rows} AS t JOIN ({}) AS latest ON {} WHERE {not_tombstone}({})",
                qualified.join(", "),
                how.latest(cursor, changes_ref),
                how.on(cursor),
                deleted.join(" OR "),
            ))
        }
        ("full", _) if soft.is_some() => Some(format!(
            "SELECT {} FROM {changes_ref} AS t WHERE t.{d} = (SELECT MAX({d}) FROM {changes_ref}) AND {}",
            qualified.join(", "),
            soft.unwrap_or_default(),
            d = quote(INGESTION_DATE)
        )),
        _ => None,
    })
}

/// How a bronze table is loaded, as its latest ingest commit says, and whether it has
/// tombstones.
struct How {
    mode: String,
    cursor: Option<String>,
    primary_key: Vec<String>,
    soft: Option<String>,
    tombstones: bool,
}

impl How {
    async fn of(table: &DeltaTable, key: &AssetKey) -> Result<Option<How>> {
        let Some(how) = crate::delta::latest_ingest(table, key).await?.and_then(|mut i| i.remove("basin.bronze"))
        else {
            return Ok(None);
        };
        let tombstones = table.snapshot().is_ok_and(|s| s.snapshot().arrow_schema().field_with_name(DELETED).is_ok());
        Ok(Some(How {
            mode: how["mode"].as_str().unwrap_or("full").to_string(),
            cursor: how["cursor"].as_str().map(str::to_string),
            primary_key: how["primary_key"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str()).map(str::to_string).collect())
                .unwrap_or_default(),
            soft: how["deletes"]["soft"].as_str().map(str::to_string),
            tombstones,
        }))
    }

    /// The data columns of `columns`, quoted.
    fn data(&self, columns: &[String]) -> Vec<String> {
        columns.iter().filter(|c| !METADATA_COLUMNS.contains(&c.as_str())).map(|c| quote(c)).collect()
    }

    /// Each key's highest cursor (`__basin_latest`), and its highest tombstone's
    /// (`__basin_deleted`) when the table has tombstones.
    fn latest(&self, cursor: &str, table_ref: &str) -> String {
        let pk = self.primary_key.iter().map(|k| quote(k)).collect::<Vec<_>>().join(", ");
        let deleted = if self.tombstones {
            format!(", MAX(CASE WHEN {} THEN {c} END) AS __basin_deleted", quote(DELETED), c = quote(cursor))
        } else {
            String::new()
        };
        format!("SELECT {pk}, MAX({c}) AS __basin_latest{deleted} FROM {table_ref} GROUP BY {pk}", c = quote(cursor))
    }

    fn on(&self, cursor: &str) -> String {
        let mut on: Vec<String> =
            self.primary_key.iter().map(|k| format!("t.{k} = latest.{k}", k = quote(k))).collect();
        on.push(format!("t.{} = latest.__basin_latest", quote(cursor)));
        on.join(" AND ")
    }
}

/// Whether no key of an incremental bronze table has landed twice, so that its current state
/// is the table itself (no aggregate over every key, no join back), as its Delta file
/// statistics prove. One ingest run lands each key at most once: a read returns each row of
/// the source's primary key once, the lag's repeats of landed rows are left out, and the
/// rounds of a first load read disjoint key ranges. So it is enough that the key ranges of
/// different runs do not overlap, as when the source only appends or the table has had its
/// first load only. Bronze files are never removed, so this holds of every older version too.
/// Only for one integer key (exact statistics); any file without statistics, or holding rows
/// of more than one run, answers no.
fn keys_landed_once(table: &DeltaTable, primary_key: &[String]) -> bool {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::common::Column;
    use datafusion::common::pruning::PruningStatistics;
    let [key] = primary_key else { return false };
    let Ok(state) = table.snapshot() else { return false };
    let snapshot = state.snapshot();
    let integer = snapshot.arrow_schema().field_with_name(key).is_ok_and(|f| f.data_type().is_integer());
    if !integer {
        return false;
    }
    let files = snapshot.log_data();
    if files.num_files() == 0 {
        return true;
    }
    let (k, run) = (Column::from_name(key), Column::from_name(RUN_ID));
    let stats = |c: &Column, max: bool| if max { files.max_values(c) } else { files.min_values(c) };
    let as_type = |a: Option<datafusion::arrow::array::ArrayRef>, t: &DataType| {
        a.and_then(|a| datafusion::arrow::compute::cast(&a, t).ok()).filter(|a| a.null_count() == 0)
    };
    let (Some(lo), Some(hi), Some(run_lo), Some(run_hi)) = (
        as_type(stats(&k, false), &DataType::Int64),
        as_type(stats(&k, true), &DataType::Int64),
        as_type(stats(&run, false), &DataType::Utf8),
        as_type(stats(&run, true), &DataType::Utf8),
    ) else {
        return false;
    };
    let (lo, hi) = (lo.as_primitive::<Int64Type>(), hi.as_primitive::<Int64Type>());
    let (run_lo, run_hi) = (run_lo.as_string::<i32>(), run_hi.as_string::<i32>());
    let mut runs: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for i in 0..lo.len() {
        if run_lo.value(i) != run_hi.value(i) {
            return false;
        }
        let range = runs.entry(run_lo.value(i)).or_insert((lo.value(i), hi.value(i)));
        *range = (range.0.min(lo.value(i)), range.1.max(hi.value(i)));
    }
    let mut ranges: Vec<(i64, i64)> = runs.into_values().collect();
    ranges.sort_unstable();
    ranges.windows(2).all(|w| w[0].1 < w[1].0)
}

/// `name` as a quoted SQL identifier.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
