//! The SQLite connector on a real database file.

use std::sync::atomic::Ordering;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Date32Type, Decimal128Type, Int64Type, TimeUnit, TimestampMicrosecondType};
use basin_connectors::{Connector, Error, Window, sqlite::SqliteConnector};
use basin_core::Project;
use futures::TryStreamExt;
use sqlx::Connection;

struct Fixture {
    _dir: tempfile::TempDir,
    connector: SqliteConnector,
}

async fn fixture(setup: &[&str]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("src.db");
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    for sql in setup {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
    std::fs::write(dir.path().join("basin.toml"), "[project]\nname = \"t\"\n").unwrap();
    std::fs::create_dir_all(dir.path().join("sources")).unwrap();
    std::fs::write(
        dir.path().join("sources/app.toml"),
        format!("kind = \"sqlite\"\nurl = \"sqlite://{}\"\ninclude = [\"*\"]\n", db.display()),
    )
    .unwrap();
    let (project, _) = Project::load_valid(dir.path()).unwrap();
    let connector = SqliteConnector::connect(&project.sources["app"]).await.unwrap();
    Fixture { _dir: dir, connector }
}

async fn all(connector: &SqliteConnector, table: &str, window: Option<&Window>) -> (Vec<RecordBatch>, u64) {
    let extract = connector.extract(table, window).await.unwrap();
    let zero = extract.zero_dates.clone();
    let batches: Vec<RecordBatch> = extract.batches.try_collect().await.unwrap();
    (batches, zero.load(Ordering::Relaxed))
}

const INVOICE: &[&str] = &[
    "CREATE TABLE invoice (id INTEGER PRIMARY KEY, total DECIMAL(18,4), paid BOOLEAN, issued DATE, updated_at DATETIME, note TEXT, blob BLOB, ratio REAL)",
    "INSERT INTO invoice VALUES (1, 12.5, 1, '2024-01-31', '2024-02-01 10:00:00', 'é ü 😀', x'00ff', 0.25)",
    "INSERT INTO invoice VALUES (2, '12345678.1234', 0, '0000-00-00', '2024-02-02 11:30:00.123456', NULL, NULL, NULL)",
    "INSERT INTO invoice VALUES (3, NULL, NULL, NULL, '2024-02-03 09:00:00', 'x', NULL, 1e10)",
];

#[tokio::test]
async fn types_map_without_loss() {
    let f = fixture(INVOICE).await;
    let (batches, zero_dates) = all(&f.connector, "invoice", None).await;
    assert_eq!(zero_dates, 1, "the zero date is counted");
    let b = &batches[0];
    let schema = b.schema();
    let types: Vec<&DataType> = schema.fields().iter().map(|f| f.data_type()).collect();
    assert_eq!(
        types,
        vec![
            &DataType::Int64,
            &DataType::Decimal128(18, 4),
            &DataType::Boolean,
            &DataType::Date32,
            &DataType::Timestamp(TimeUnit::Microsecond, None),
            &DataType::Utf8,
            &DataType::Binary,
            &DataType::Float64
        ]
    );
    let total = b.column(1).as_primitive::<Decimal128Type>();
    assert_eq!((total.value(0), total.value(1)), (125_000, 123_456_781_234));
    assert!(total.is_null(2));
    assert!(b.column(2).as_boolean().value(0) && !b.column(2).as_boolean().value(1));
    let issued = b.column(3).as_primitive::<Date32Type>();
    assert_eq!(issued.value(0), 19753);
    assert!(issued.is_null(1), "0000-00-00 becomes NULL");
    let updated = b.column(4).as_primitive::<TimestampMicrosecondType>();
    assert_eq!(updated.value(1) % 1_000_000, 123_456, "microseconds are kept");
    assert_eq!(b.column(5).as_string::<i32>().value(0), "é ü 😀");
    assert_eq!(b.column(6).as_binary::<i32>().value(0), &[0x00, 0xff]);
    assert_eq!(b.column(0).as_primitive::<Int64Type>().values().to_vec(), vec![1, 2, 3]);
}

#[tokio::test]
async fn catalog_counts_and_windows() {
    let f = fixture(INVOICE).await;
    assert_eq!(f.connector.tables().await.unwrap(), vec!["invoice"]);
    assert_eq!(f.connector.primary_key("invoice").await.unwrap(), vec!["id"]);
    assert_eq!(f.connector.count("invoice", None).await.unwrap(), 3);
    assert_eq!(f.connector.max_cursor("invoice", "updated_at").await.unwrap().as_deref(), Some("2024-02-03 09:00:00"));
    let window = Window {
        cursor: "updated_at".into(),
        from: Some("2024-02-02 00:00:00".into()),
        to: "2024-02-02 23:59:59".into(),
    };
    assert_eq!(f.connector.count("invoice", Some(&window)).await.unwrap(), 1);
    let (batches, _) = all(&f.connector, "invoice", Some(&window)).await;
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    let by_id = Window { cursor: "id".into(), from: Some("2".into()), to: "3".into() };
    assert_eq!(f.connector.count("invoice", Some(&by_id)).await.unwrap(), 2);
}

#[tokio::test]
async fn large_tables_stream_in_batches() {
    let f = fixture(&[
        "CREATE TABLE big (id INTEGER PRIMARY KEY, v TEXT)",
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) INSERT INTO big SELECT i, 'row ' || i FROM n",
    ])
    .await;
    let (batches, _) = all(&f.connector, "big", None).await;
    assert_eq!(batches.len(), 3, "8192-row batches");
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 20000);
}

#[tokio::test]
async fn bad_values_name_table_column_and_row() {
    let f = fixture(&[
        "CREATE TABLE t (id INTEGER PRIMARY KEY, amount INTEGER)",
        "INSERT INTO t VALUES (1, 5), (7, 'lots')",
    ])
    .await;
    let extract = f.connector.extract("t", None).await.unwrap();
    let err = extract.batches.try_collect::<Vec<_>>().await.unwrap_err();
    assert!(matches!(&err, Error::Value { column, row_key, .. } if column == "amount" && row_key == "id=7"), "{err:?}");
    assert_eq!(err.to_string(), "source `app`, table `t`, column `amount`, row id=7: `lots` is not an integer");
}

#[tokio::test]
async fn names_cannot_inject_sql() {
    let f = fixture(&["CREATE TABLE t (id INTEGER PRIMARY KEY)"]).await;
    let evil = "t\"; DROP TABLE t; --";
    assert!(matches!(f.connector.extract(evil, None).await, Err(Error::NoSuchTable { .. })));
    let window = Window { cursor: "id".into(), from: Some("0 OR 1=1); DROP TABLE t; --".into()), to: "9".into() };
    f.connector.count("t", Some(&window)).await.unwrap();
    let bad_cursor = Window { cursor: "id = id; --".into(), from: None, to: "1".into() };
    assert!(f.connector.count("t", Some(&bad_cursor)).await.is_err());
    assert_eq!(f.connector.tables().await.unwrap(), vec!["t"], "the table survives");
}

#[tokio::test]
async fn missing_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("basin.toml"), "[project]\nname = \"t\"\n").unwrap();
    std::fs::create_dir_all(dir.path().join("sources")).unwrap();
    std::fs::write(
        dir.path().join("sources/app.toml"),
        "kind = \"sqlite\"\nurl = \"sqlite:///nonexistent/x.db\"\ninclude = [\"*\"]\n",
    )
    .unwrap();
    let (project, _) = Project::load_valid(dir.path()).unwrap();
    let err = SqliteConnector::connect(&project.sources["app"]).await.err().unwrap();
    assert!(err.to_string().contains("cannot connect to source `app`"), "{err}");
}
