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
/// The metadata columns Basin adds to every bronze row.
pub const METADATA_COLUMNS: [&str; 4] = [INGESTION_DATE, RUN_ID, EXTRACTED_AT, SOURCE];

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
pub(crate) async fn current_state_of(
    table: &DeltaTable,
    key: &AssetKey,
    columns: &[String],
    table_ref: &str,
) -> Result<Option<String>> {
    let Some(how) = crate::delta::latest_ingest(table, key).await?.and_then(|mut i| i.remove("basin.bronze")) else {
        return Ok(None);
    };
    let data: Vec<String> =
        columns.iter().filter(|c| !METADATA_COLUMNS.contains(&c.as_str())).map(|c| quote(c)).collect();
    let list = data.join(", ");
    let pk: Vec<String> = how["primary_key"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).map(quote).collect())
        .unwrap_or_default();
    Ok(Some(match (how["mode"].as_str(), how["cursor"].as_str()) {
        // Every key landed once (an append-only source, or a first load): every row is current.
        (Some("incremental"), Some(_)) if keys_landed_once(table, &how) => {
            format!("SELECT {list} FROM {table_ref}")
        }
        // The row with the key's highest cursor. The writer never lands a (key, cursor) twice,
        // so that row is unique, and a hash aggregate joined back is several times faster
        // than ranking every row with a window (which sorts the whole table).
        (Some("incremental"), Some(cursor)) if !pk.is_empty() => {
            let qualified: Vec<String> = data.iter().map(|c| format!("t.{c}")).collect();
            let on: Vec<String> = pk.iter().map(|k| format!("t.{k} = latest.{k}")).collect();
            format!(
                "SELECT {} FROM {table_ref} AS t \
                 JOIN (SELECT {pk}, MAX({c}) AS __basin_latest FROM {table_ref} GROUP BY {pk}) AS latest \
                 ON {} AND t.{c} = latest.__basin_latest",
                qualified.join(", "),
                on.join(" AND "),
                pk = pk.join(", "),
                c = quote(cursor),
            )
        }
        // Files land once each: every row is current.
        (Some("files"), _) => format!("SELECT {list} FROM {table_ref}"),
        _ => format!(
            "SELECT {list} FROM {table_ref} WHERE {d} = (SELECT MAX({d}) FROM {table_ref})",
            d = quote(INGESTION_DATE)
        ),
    }))
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
fn keys_landed_once(table: &DeltaTable, how: &serde_json::Value) -> bool {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::common::Column;
    use datafusion::common::pruning::PruningStatistics;
    let Some([key]) = how["primary_key"].as_array().map(Vec::as_slice) else { return false };
    let Some(key) = key.as_str() else { return false };
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
