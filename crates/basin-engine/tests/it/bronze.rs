//! The bronze contract, one test per promise, on real Delta tables.

use std::sync::Arc;

use basin_core::AssetKey;
use basin_engine::Error;
use basin_engine::bronze::{BronzeWriter, Watermark, last_watermark};
use basin_engine::datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use basin_engine::datafusion::arrow::datatypes::{DataType, Field, Schema};
use basin_engine::datafusion::execution::SendableRecordBatchStream;
use basin_engine::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use chrono::{DateTime, TimeZone, Utc};

use crate::support::{TestProject, parquet_files, query};

fn key() -> AssetKey {
    AssetKey::parse("bronze.v3__invoice").unwrap()
}

fn day(d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, d, 2, 30, 0).unwrap()
}

/// Rows `(id, updated, status)`; `extra` adds a column.
fn stream(rows: &[(i64, i64, &str)], extra: bool) -> SendableRecordBatchStream {
    let mut fields = vec![
        Field::new("id", DataType::Int64, false),
        Field::new("updated", DataType::Int64, false),
        Field::new("status", DataType::Utf8, true),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
        Arc::new(Int64Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
        Arc::new(StringArray::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())),
    ];
    if extra {
        fields.push(Field::new("note", DataType::Utf8, true));
        columns.push(Arc::new(StringArray::from(rows.iter().map(|_| "new").collect::<Vec<_>>())));
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    Box::pin(RecordBatchStreamAdapter::new(schema, futures::stream::iter(vec![Ok(batch)])))
}

fn only_two_columns(rows: &[(i64, i64)]) -> SendableRecordBatchStream {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("updated", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
            Arc::new(Int64Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
        ],
    )
    .unwrap();
    Box::pin(RecordBatchStreamAdapter::new(schema, futures::stream::iter(vec![Ok(batch)])))
}

fn watermark(value: i64) -> Watermark {
    Watermark { column: "updated".into(), value: value.to_string(), data_type: "Int64".into() }
}

#[tokio::test]
async fn full_snapshots_replace_only_today_and_carry_metadata() {
    let p = TestProject::new();
    let lake = p.lake();
    let w = BronzeWriter::new(&lake, key(), "v3", "run-1", day(1));
    w.replace_today(stream(&[(1, 10, "open"), (2, 10, "paid")], false)).await.unwrap();
    // A retry on the same day: one complete snapshot for today, never two.
    let w = BronzeWriter::new(&lake, key(), "v3", "run-2", day(1));
    let c = w.replace_today(stream(&[(1, 11, "paid"), (2, 10, "paid"), (3, 12, "open")], false)).await.unwrap();
    assert_eq!(c.rows, 3);
    // The next day adds a partition; yesterday's stays as it was.
    let w = BronzeWriter::new(&lake, key(), "v3", "run-3", day(2));
    w.replace_today(stream(&[(1, 11, "paid")], false)).await.unwrap();

    assert_eq!(
        query(&lake, "SELECT CAST(_ingestion_date AS VARCHAR), _run_id, _source, COUNT(*) FROM bronze.v3__invoice GROUP BY 1, 2, 3 ORDER BY 1").await,
        vec!["2024-03-01|run-2|v3|3", "2024-03-02|run-3|v3|1"]
    );
    assert_eq!(
        query(&lake, "SELECT DISTINCT CAST(_extracted_at AS VARCHAR) FROM bronze.v3__invoice WHERE _run_id = 'run-3'")
            .await,
        vec!["2024-03-02T02:30:00Z"]
    );
    assert!(p.path().join("lake/bronze/v3__invoice/_ingestion_date=2024-03-01").is_dir());
}

#[tokio::test]
async fn writes_into_an_earlier_day_are_refused() {
    let p = TestProject::new();
    let lake = p.lake();
    BronzeWriter::new(&lake, key(), "v3", "r", day(5)).replace_today(stream(&[(1, 1, "a")], false)).await.unwrap();
    let err = BronzeWriter::new(&lake, key(), "v3", "r", day(4))
        .replace_today(stream(&[(9, 9, "x")], false))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BronzeImmutable { .. }), "{err:?}");
    assert!(err.to_string().contains("2024-03-04") && err.to_string().contains("2024-03-05"), "{err}");
    let err = BronzeWriter::new(&lake, key(), "v3", "r", day(4))
        .append_increment(stream(&[(9, 9, "x")], false), &["id".into()], watermark(9))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BronzeImmutable { .. }), "{err:?}");
    assert_eq!(query(&lake, "SELECT id FROM bronze.v3__invoice").await, vec!["1"]);
}

#[tokio::test]
async fn increments_skip_landed_rows_and_commit_the_watermark_with_them() {
    let p = TestProject::new();
    let lake = p.lake();
    let pk = vec!["id".to_string()];
    let c = BronzeWriter::new(&lake, key(), "v3", "r1", day(1))
        .append_increment(stream(&[(1, 10, "open"), (2, 20, "open")], false), &pk, watermark(20))
        .await
        .unwrap();
    assert_eq!((c.version, c.rows), (Some(0), 2));
    // The next read re-reads the lag window: (2, 20) again, plus a change to 1 and a new 3.
    let c = BronzeWriter::new(&lake, key(), "v3", "r2", day(1))
        .append_increment(stream(&[(2, 20, "open"), (1, 25, "paid"), (3, 30, "open")], false), &pk, watermark(30))
        .await
        .unwrap();
    assert_eq!(c.rows, 2, "the re-read row must not land twice");
    assert_eq!(
        query(&lake, "SELECT id, updated, status FROM bronze.v3__invoice ORDER BY id, updated").await,
        vec!["1|10|open", "1|25|paid", "2|20|open", "3|30|open"]
    );
    assert_eq!(last_watermark(&lake, &key()).await.unwrap(), Some(watermark(30)));
    // The watermark is in the very commit that holds the rows.
    let commits = basin_engine::history::history(&lake, &key(), None).await.unwrap();
    assert_eq!((commits[0].version, commits[0].rows), (1, Some(2)));
    let t = lake.table(&key()).await.unwrap().unwrap();
    let log =
        std::fs::read_to_string(p.path().join("lake/bronze/v3__invoice/_delta_log/00000000000000000001.json")).unwrap();
    assert!(log.contains(r#""basin.watermark":{"column":"updated","data_type":"Int64","value":"30"}"#), "{log}");
    assert!(log.contains("\"add\""), "rows and watermark in one commit: {log}");
    assert_eq!(t.version(), Some(1));
}

/// The current state of an incremental table whose keys each landed once (an append-only
/// source) is the table itself; once a key lands again (an update), it is the latest row of
/// each key. Both read the same rows a ranking of every key's versions would.
#[tokio::test]
async fn current_state_reads_the_table_itself_while_every_key_landed_once() {
    let p = TestProject::new();
    let lake = p.lake();
    let pk = vec!["id".to_string()];
    let columns: Vec<String> = ["id", "updated", "status"].iter().map(|c| c.to_string()).collect();
    let current = async || basin_engine::bronze::current_state_sql(&lake, &key(), &columns).await.unwrap().unwrap();
    let rows = async || query(&lake, "SELECT id, updated, status FROM bronze_current.v3__invoice ORDER BY id").await;
    BronzeWriter::new(&lake, key(), "v3", "r1", day(1))
        .append_increment(stream(&[(1, 10, "open"), (2, 20, "open")], false), &pk, watermark(20))
        .await
        .unwrap();
    // Appended keys, and the lag's re-read of key 2, which does not land again.
    BronzeWriter::new(&lake, key(), "v3", "r2", day(2))
        .append_increment(stream(&[(2, 20, "open"), (3, 30, "open"), (4, 30, "open")], false), &pk, watermark(30))
        .await
        .unwrap();
    assert!(!current().await.contains("GROUP BY"), "every key landed once: {}", current().await);
    assert_eq!(rows().await, ["1|10|open", "2|20|open", "3|30|open", "4|30|open"]);
    // Key 1 changes: its range overlaps the first run's, and the latest row per key is read.
    BronzeWriter::new(&lake, key(), "v3", "r3", day(3))
        .append_increment(stream(&[(1, 40, "paid"), (5, 40, "open")], false), &pk, watermark(40))
        .await
        .unwrap();
    assert!(current().await.contains("GROUP BY"), "{}", current().await);
    assert_eq!(rows().await, ["1|40|paid", "2|20|open", "3|30|open", "4|30|open", "5|40|open"]);
}

/// Rows `(id, qty)` with `qty` of `qty_type` (Int32 or Int64) and `amount` as Decimal128(p, 2).
fn typed(rows: &[(i64, i64)], qty_type: DataType, amount_precision: u8) -> SendableRecordBatchStream {
    use basin_engine::datafusion::arrow::array::{Decimal128Array, Int32Array};
    let qty: ArrayRef = match qty_type {
        DataType::Int32 => Arc::new(Int32Array::from(rows.iter().map(|r| r.1 as i32).collect::<Vec<_>>())),
        _ => Arc::new(Int64Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
    };
    let amount = Decimal128Array::from(rows.iter().map(|r| r.1 as i128 * 100 + 25).collect::<Vec<_>>())
        .with_precision_and_scale(amount_precision, 2)
        .unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("qty", qty_type, true),
        Field::new("amount", DataType::Decimal128(amount_precision, 2), true),
    ]));
    let columns = vec![
        Arc::new(Int64Array::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())) as ArrayRef,
        qty,
        Arc::new(amount),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    Box::pin(RecordBatchStreamAdapter::new(schema, futures::stream::iter(vec![Ok(batch)])))
}

fn commit_log(p: &TestProject, version: u64) -> serde_json::Value {
    let path = p.path().join(format!("lake/bronze/v3__invoice/_delta_log/{version:020}.json"));
    let log = std::fs::read_to_string(path).unwrap();
    let info = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|a| a.get("commitInfo").is_some());
    info.unwrap()["commitInfo"].clone()
}

/// A source that widens a column in place (`INT` → `BIGINT`, `DECIMAL(10,2)` → `DECIMAL(16,2)`)
/// keeps loading: bronze stored the widest type of the family from the start, and the commit
/// records the change. A narrowed column stops the table unless allowed; an incompatible change
/// always does; nothing lands for a stopped write.
#[tokio::test]
async fn widened_types_are_accepted_and_recorded_narrowed_ones_stop_the_table() {
    let p = TestProject::new();
    let lake = p.lake();
    let write = async |run: &str, d: u32, s| BronzeWriter::new(&lake, key(), "v3", run, day(d)).replace_today(s).await;
    write("r1", 1, typed(&[(1, 7)], DataType::Int32, 10)).await.unwrap();
    let t = lake.table(&key()).await.unwrap().unwrap();
    let schema = t.snapshot().unwrap().snapshot().arrow_schema();
    assert_eq!(schema.field_with_name("qty").unwrap().data_type(), &DataType::Int64);
    assert_eq!(schema.field_with_name("amount").unwrap().data_type(), &DataType::Decimal128(18, 2));
    let first = commit_log(&p, 0);
    assert_eq!(first["basin.source_types"]["qty"], "Int32", "the source's own types are recorded: {first}");
    assert!(first.get("basin.schema_changes").is_none(), "a first load changes nothing: {first}");

    // Widened in the source: lands beside the old rows, and the commit says what changed.
    write("r2", 2, typed(&[(2, 3_000_000_000)], DataType::Int64, 16)).await.unwrap();
    let second = commit_log(&p, 1);
    let changes = &second["basin.schema_changes"]["widened"];
    assert_eq!(changes[0], serde_json::json!({ "column": "qty", "from": "Int32", "to": "Int64" }), "{second}");
    assert_eq!(changes[1]["from"], "Decimal128(10, 2)", "{second}");
    assert_eq!(
        query(&lake, "SELECT id, qty, amount FROM bronze.v3__invoice ORDER BY id").await,
        vec!["1|7|7.25", "2|3000000000|3000000000.25"]
    );
    assert_eq!(lake.table(&key()).await.unwrap().unwrap().version(), Some(1));

    // Narrowed back: refused, naming the column and both types; nothing lands.
    let err = write("r3", 3, typed(&[(3, 5)], DataType::Int32, 16)).await.unwrap_err();
    assert!(
        matches!(&err, Error::SchemaDrift { detail, .. } if detail.contains("`qty` narrowed in the source from Int64 to Int32")),
        "{err:?}"
    );
    assert_eq!(lake.table(&key()).await.unwrap().unwrap().version(), Some(1), "nothing may land");
    // Allowed (`--allow-shrink`): lands in the wider column, recorded as narrowed.
    BronzeWriter::new(&lake, key(), "v3", "r3", day(3))
        .allow_narrowing(true)
        .replace_today(typed(&[(3, 5)], DataType::Int32, 16))
        .await
        .unwrap();
    assert_eq!(commit_log(&p, 2)["basin.schema_changes"]["narrowed"][0]["column"], "qty");
    assert_eq!(query(&lake, "SELECT qty FROM bronze.v3__invoice WHERE id = 3").await, vec!["5"]);

    // Incompatible: a number that became text stops the table.
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("qty", DataType::Utf8, true),
        Field::new("amount", DataType::Decimal128(16, 2), true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![4])),
        Arc::new(StringArray::from(vec!["four"])),
        Arc::new(
            basin_engine::datafusion::arrow::array::Decimal128Array::from(vec![1])
                .with_precision_and_scale(16, 2)
                .unwrap(),
        ),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let text = || {
        let (schema, batch) = (schema.clone(), batch.clone());
        Box::pin(RecordBatchStreamAdapter::new(schema, futures::stream::iter(vec![Ok(batch)])))
    };
    let err = write("r4", 4, text()).await.unwrap_err();
    assert!(
        matches!(&err, Error::SchemaDrift { detail, .. } if detail.contains("`qty` changed type from Int64 to Utf8")
            && detail.contains("--accept-schema-change bronze.v3__invoice")),
        "the error names the way out: {err:?}"
    );
    assert_eq!(lake.table(&key()).await.unwrap().unwrap().version(), Some(2), "nothing may land");

    // Accepted: the text lands in a new column alongside; `qty` keeps its numbers, and is NULL
    // in the rows landed from now on.
    let accepting =
        |run: &str, d: u32| BronzeWriter::new(&lake, key(), "v3", run, day(d)).accept_schema_change(true, "v3.invoice");
    accepting("r4", 4).replace_today(text()).await.unwrap();
    let accepted = commit_log(&p, 3);
    assert_eq!(
        accepted["basin.schema_changes"]["replaced"][0],
        serde_json::json!({ "column": "qty", "from": "Int64", "to": "Utf8", "into": "qty__v2" }),
        "{accepted}"
    );
    assert_eq!(accepted["basin.columns"]["renamed"], serde_json::json!({ "qty": "qty__v2" }), "{accepted}");
    assert_eq!(
        query(&lake, "SELECT id, qty, qty__v2 FROM bronze.v3__invoice ORDER BY id").await,
        vec!["1|7|NULL", "2|3000000000|NULL", "3|5|NULL", "4|NULL|four"]
    );
    // Later runs go on filling the new column without being told again.
    BronzeWriter::new(&lake, key(), "v3", "r5", day(5)).replace_today(text()).await.unwrap();
    let later = commit_log(&p, 4);
    assert!(later.get("basin.schema_changes").is_none(), "nothing changed since: {later}");
    assert_eq!(later["basin.columns"]["retired"], serde_json::json!(["qty"]), "{later}");
    assert_eq!(
        query(&lake, "SELECT qty, qty__v2 FROM bronze.v3__invoice WHERE _run_id = 'r5'").await,
        vec!["NULL|four"]
    );
}

#[tokio::test]
async fn added_columns_are_accepted_and_removed_ones_stop_the_table() {
    let p = TestProject::new();
    let lake = p.lake();
    BronzeWriter::new(&lake, key(), "v3", "r1", day(1)).replace_today(stream(&[(1, 1, "a")], false)).await.unwrap();
    BronzeWriter::new(&lake, key(), "v3", "r2", day(2)).replace_today(stream(&[(2, 2, "b")], true)).await.unwrap();
    assert_eq!(query(&lake, "SELECT id, note FROM bronze.v3__invoice ORDER BY id").await, vec!["1|NULL", "2|new"]);
    let log =
        std::fs::read_to_string(p.path().join("lake/bronze/v3__invoice/_delta_log/00000000000000000001.json")).unwrap();
    assert!(log.contains(r#""basin.schema_changes":{"added":[{"column":"note","type":"Utf8"}]"#), "recorded: {log}");

    let err = BronzeWriter::new(&lake, key(), "v3", "r3", day(3))
        .replace_today(only_two_columns(&[(3, 3)]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::SchemaDrift { detail, .. } if detail.contains("`status` was removed")
            && detail.contains("run again with --accept-schema-change")),
        "the error names the way out: {err:?}"
    );
    assert_eq!(lake.table(&key()).await.unwrap().unwrap().version(), Some(1), "nothing may land");

    // Accepted: the column stays, NULL from now on; the next runs need no flag; the commit
    // records what was accepted.
    BronzeWriter::new(&lake, key(), "v3", "r3", day(3))
        .accept_schema_change(true, "v3.invoice")
        .replace_today(only_two_columns(&[(3, 3)]))
        .await
        .unwrap();
    let accepted = commit_log(&p, 2);
    assert_eq!(
        accepted["basin.schema_changes"]["removed"],
        serde_json::json!([{ "column": "status" }, { "column": "note" }]),
        "{accepted}"
    );
    assert_eq!(accepted["basin.schema_changes"]["accepted"], true, "{accepted}");
    BronzeWriter::new(&lake, key(), "v3", "r4", day(4)).replace_today(only_two_columns(&[(4, 4)])).await.unwrap();
    assert_eq!(
        query(&lake, "SELECT id, status FROM bronze.v3__invoice ORDER BY id").await,
        vec!["1|a", "2|b", "3|NULL", "4|NULL"]
    );
}

/// Bronze is kept for ever: its files are zstd-compressed, and a unique column's dictionary
/// stops small instead of growing to a megabyte in every row group.
#[tokio::test]
async fn bronze_files_are_zstd_compressed_with_small_dictionaries() {
    use basin_engine::datafusion::parquet::basic::Compression;
    use basin_engine::datafusion::parquet::file::reader::{FileReader, SerializedFileReader};

    let p = TestProject::new();
    let lake = p.lake();
    let statuses = ["open", "paid", "void", "late"];
    let rows: Vec<(i64, i64, &str)> = (0..200_000).map(|i| (i, 1_000_000 + i, statuses[i as usize % 4])).collect();
    let w = BronzeWriter::new(&lake, key(), "v3", "run-1", day(1));
    assert_eq!(w.replace_today(stream(&rows, false)).await.unwrap().rows, 200_000);

    let dir = p.path().join("lake/bronze/v3__invoice/_ingestion_date=2024-03-01");
    let files = parquet_files(&dir);
    assert!(!files.is_empty(), "no parquet file in {}", dir.display());
    for file in files {
        let reader = SerializedFileReader::new(std::fs::File::open(&file).unwrap()).unwrap();
        for rg in reader.metadata().row_groups() {
            let column = |name: &str| {
                rg.columns().iter().find(|c| c.column_path().string() == name).unwrap_or_else(|| panic!("{name}"))
            };
            for c in rg.columns() {
                assert!(matches!(c.compression(), Compression::ZSTD(_)), "{}: {:?}", c.column_path(), c.compression());
            }
            let dictionary = |name: &str| {
                let c = column(name);
                c.dictionary_page_offset().map_or(0, |d| c.data_page_offset() - d)
            };
            // 200,000 distinct keys: the dictionary stops near 64 KiB (8,192 values).
            assert!(dictionary("id") <= 80 * 1024, "id's dictionary page of {} bytes", dictionary("id"));
            // Four statuses and one run id: all in the dictionary.
            for name in ["status", "_run_id"] {
                assert!(column(name).dictionary_page_offset().is_some(), "{name} has a dictionary");
                assert!(dictionary(name) < 1024, "{name}'s dictionary page of {} bytes", dictionary(name));
            }
        }
    }
    assert_eq!(
        query(
            &lake,
            "SELECT COUNT(DISTINCT id), MAX(updated), COUNT(*) FILTER (WHERE status = 'late') FROM bronze.v3__invoice"
        )
        .await,
        vec!["200000|1199999|50000"]
    );
}
