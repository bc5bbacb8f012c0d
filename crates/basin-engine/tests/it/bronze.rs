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

use crate::support::{TestProject, query};

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

#[tokio::test]
async fn added_columns_are_accepted_and_removed_ones_stop_the_table() {
    let p = TestProject::new();
    let lake = p.lake();
    BronzeWriter::new(&lake, key(), "v3", "r1", day(1)).replace_today(stream(&[(1, 1, "a")], false)).await.unwrap();
    BronzeWriter::new(&lake, key(), "v3", "r2", day(2)).replace_today(stream(&[(2, 2, "b")], true)).await.unwrap();
    assert_eq!(query(&lake, "SELECT id, note FROM bronze.v3__invoice ORDER BY id").await, vec!["1|NULL", "2|new"]);

    let err = BronzeWriter::new(&lake, key(), "v3", "r3", day(3))
        .replace_today(only_two_columns(&[(3, 3)]))
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::SchemaDrift { detail, .. } if detail.contains("`status` was removed")), "{err:?}");
    assert_eq!(lake.table(&key()).await.unwrap().unwrap().version(), Some(1), "nothing may land");
}
