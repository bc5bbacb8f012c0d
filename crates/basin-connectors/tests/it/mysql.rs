//! The MySQL/MariaDB connector against the real server: every column type, column by column.

use arrow::datatypes::{DataType, TimeUnit};
use basin_connectors::mysql::MysqlConnector;
use basin_connectors::{Connector, Error, Window};
use basin_testkit::{Server, TestDb};

use crate::support::{cell, killed_mid_stream, read_all, source};

const TYPES: &[&str] = &[
    "SET SESSION sql_mode = ''",
    "CREATE TABLE types (
        id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
        ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED, mi MEDIUMINT,
        miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT,
        flag TINYINT(1), b BOOLEAN, bit1 BIT(1), bit10 BIT(10), bit64 BIT(64), y YEAR,
        d DECIMAL(20,6), dbig DECIMAL(50,10), f FLOAT, db DOUBLE,
        dt DATE, dtm DATETIME(6), ts TIMESTAMP(3) NULL, tm TIME(2), dtz DATETIME, dpart DATE,
        c CHAR(3), vc VARCHAR(20), tx TEXT, e ENUM('small','large'), st SET('x','y','z'), js JSON,
        bl BLOB, vb VARBINARY(4)
    ) CHARACTER SET utf8mb4",
    "INSERT INTO types VALUES (18446744073709551615,
        -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295, -9223372036854775808,
        1, 0, b'1', b'1111111111', b'1111111111111111111111111111111111111111111111111111111111111111', 2155,
        -12345678901234.123456, 1234567890123456789012345678901234567890.0123456789, 1.5, 0.1,
        '0000-00-00', '2024-02-29 23:59:59.999999', '2024-06-01 12:00:00.123', '-838:59:59.00',
        '0000-00-00 00:00:00', '2024-00-00',
        'é', '😀 emoji', 'ünïcödé', 'large', 'x,z', '{\"a\": [1, 2]}', x'00FF', x'DEADBEEF')",
    "INSERT INTO types (id) VALUES (1)",
];

#[tokio::test]
async fn every_type_maps_without_loss() {
    let Some(db) = TestDb::create(Server::Mysql, "types").await else { return };
    db.execute(TYPES).await;
    let f = source(&db, "");
    let c = MysqlConnector::connect(&f.source).await.unwrap();
    assert_eq!(c.primary_key("types").await.unwrap(), ["id"]);
    let (batches, zero_dates) = read_all(&c, "types", None).await;
    assert_eq!(zero_dates, 3, "the zero dates (a DATE, a DATETIME, a DATE with month 00) are counted");
    let b = &batches[0];
    assert_eq!(b.num_rows(), 2);
    let schema = b.schema();
    let expected: &[(&str, DataType, &str)] = &[
        ("id", DataType::Decimal128(20, 0), "18446744073709551615"),
        ("ti", DataType::Int8, "-128"),
        ("tiu", DataType::Int16, "255"),
        ("si", DataType::Int16, "-32768"),
        ("siu", DataType::Int32, "65535"),
        ("mi", DataType::Int32, "-8388608"),
        ("miu", DataType::Int32, "16777215"),
        ("i", DataType::Int32, "-2147483648"),
        ("iu", DataType::Int64, "4294967295"),
        ("bi", DataType::Int64, "-9223372036854775808"),
        ("flag", DataType::Boolean, "true"),
        ("b", DataType::Boolean, "false"),
        ("bit1", DataType::Boolean, "true"),
        ("bit10", DataType::Int64, "1023"),
        ("bit64", DataType::Decimal128(20, 0), "18446744073709551615"),
        ("y", DataType::Int16, "2155"),
        ("d", DataType::Decimal128(20, 6), "-12345678901234.123456"),
        ("dbig", DataType::Utf8, "1234567890123456789012345678901234567890.0123456789"),
        ("f", DataType::Float32, "1.5"),
        ("db", DataType::Float64, "0.1"),
        ("dt", DataType::Date32, ""),
        ("dtm", DataType::Timestamp(TimeUnit::Microsecond, None), "2024-02-29T23:59:59.999999"),
        ("ts", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), "2024-06-01T12:00:00.123Z"),
        ("tm", DataType::Utf8, "-838:59:59.00"),
        ("dtz", DataType::Timestamp(TimeUnit::Microsecond, None), ""),
        ("dpart", DataType::Date32, ""),
        ("c", DataType::Utf8, "é"),
        ("vc", DataType::Utf8, "😀 emoji"),
        ("tx", DataType::Utf8, "ünïcödé"),
        ("e", DataType::Utf8, "large"),
        ("st", DataType::Utf8, "x,z"),
        ("js", DataType::Utf8, "{\"a\": [1, 2]}"),
        ("bl", DataType::Binary, "00ff"),
        ("vb", DataType::Binary, "deadbeef"),
    ];
    // The big row is the second by primary key order of insertion; find it by id.
    let row = (0..2).find(|&r| cell(b, "id", r) != "1").unwrap();
    let nulls = 1 - row;
    for (name, data_type, value) in expected {
        assert_eq!(schema.field_with_name(name).unwrap().data_type(), data_type, "type of {name}");
        assert_eq!(cell(b, name, row), *value, "value of {name}");
        if *name != "id" {
            assert_eq!(cell(b, name, nulls), "", "NULL stays NULL in {name}");
        }
    }
}

#[tokio::test]
async fn tinyint1_can_stay_an_integer_and_a_non_boolean_value_names_its_row() {
    let Some(db) = TestDb::create(Server::Mysql, "flags").await else { return };
    db.execute(&[
        "CREATE TABLE flags (id INT PRIMARY KEY, flag TINYINT(1))",
        "INSERT INTO flags VALUES (1, 0), (7, 5)",
    ])
    .await;
    let strict = source(&db, "");
    let c = MysqlConnector::connect(&strict.source).await.unwrap();
    let extract = c.extract("flags", None).await.unwrap();
    let err = futures::TryStreamExt::try_collect::<Vec<_>>(extract.batches).await.unwrap_err();
    let Error::Value { source_name, table, column, row_key, problem } = &err else { panic!("{err}") };
    assert_eq!((source_name.as_str(), table.as_str(), column.as_str()), ("app", "flags", "flag"));
    assert_eq!(row_key, "id=7");
    assert!(problem.contains("not a boolean"), "{problem}");

    let integers = source(&db, "tinyint1_as_boolean = false");
    let c = MysqlConnector::connect(&integers.source).await.unwrap();
    let (batches, _) = read_all(&c, "flags", None).await;
    assert_eq!(batches[0].schema().field(1).data_type(), &DataType::Int8);
    assert_eq!(cell(&batches[0], "flag", 1), "5");
}

#[tokio::test]
async fn windows_counts_and_cursors_are_exact_and_cannot_inject() {
    let Some(db) = TestDb::create(Server::Mysql, "window").await else { return };
    db.execute(&[
        "CREATE TABLE ev (id INT PRIMARY KEY, updated_at DATETIME(3), note VARCHAR(10))",
        "INSERT INTO ev VALUES (1, '2024-01-01 00:00:00', 'a'), (2, '2024-01-02 00:00:00.5', 'b'), (3, '2024-01-03 00:00:00', 'c')",
    ])
    .await;
    let f = source(&db, "");
    let c = MysqlConnector::connect(&f.source).await.unwrap();
    assert_eq!(c.tables().await.unwrap(), ["ev"]);
    assert_eq!(c.max_cursor("ev", "updated_at").await.unwrap().as_deref(), Some("2024-01-03 00:00:00.000"));
    assert_eq!(c.key_bounds("ev", "id").await.unwrap(), Some((1, 3)));
    let window =
        Window { cursor: "updated_at".into(), from: Some("2024-01-02 00:00:00.5".into()), to: "2024-01-03".into() };
    assert_eq!(c.count("ev", Some(&window)).await.unwrap(), 2, "both bounds are inclusive");
    let (batches, _) = read_all(&c, "ev", Some(&window)).await;
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);

    // A watermark carrying SQL is a value, not SQL.
    let evil = Window { cursor: "note".into(), from: Some("a' OR '1'='1".into()), to: "zzz".into() };
    assert_eq!(
        c.count("ev", Some(&evil)).await.unwrap(),
        2,
        "the quote is part of the value: 'b' and 'c' are after it"
    );
    let evil_id = Window { cursor: "id".into(), from: Some("0 OR 1=1".into()), to: "9".into() };
    assert!(matches!(c.count("ev", Some(&evil_id)).await, Err(Error::Value { .. })));
    // A table name carrying SQL is not in the catalog.
    assert!(matches!(c.count("ev` WHERE 1=1 --", None).await, Err(Error::NoSuchTable { .. })));
}

#[tokio::test]
async fn wrong_password_and_unreachable_server_name_the_source() {
    let Some(db) = TestDb::create(Server::Mysql, "auth").await else { return };
    db.execute(&["CREATE USER IF NOT EXISTS 'basin_t'@'%' IDENTIFIED BY 'right'"]).await;
    let mut u = url::Url::parse(&db.url).unwrap();
    u.set_username("basin_t").unwrap();
    u.set_password(Some("wrong")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (url, what) in [(u.to_string(), "Access denied"), ("mysql://root@127.0.0.1:1/x".to_string(), "")] {
        std::fs::write(dir.path().join("basin.toml"), "[project]\nname = \"t\"\n").unwrap();
        std::fs::create_dir_all(dir.path().join("sources")).unwrap();
        std::fs::write(dir.path().join("sources/app.toml"), format!("kind = \"mysql\"\nurl = \"{url}\"\n")).unwrap();
        let (project, _) = basin_core::Project::load_valid(dir.path()).unwrap();
        let err = MysqlConnector::connect(&project.sources["app"]).await.err().expect("connecting fails");
        let chain = format!("{err}: {}", std::error::Error::source(&err).map(|e| e.to_string()).unwrap_or_default());
        assert!(chain.starts_with("cannot connect to source `app`"), "{chain}");
        assert!(chain.contains(what), "{chain}");
        assert!(!chain.contains("wrong"), "the password is never printed: {chain}");
    }
    db.execute(&["DROP USER 'basin_t'@'%'"]).await;
}

#[tokio::test]
async fn a_connection_killed_mid_stream_fails_the_read_naming_source_and_table() {
    let Some(db) = TestDb::create(Server::Mysql, "kill").await else { return };
    db.execute(&[
        "CREATE TABLE big (id INT PRIMARY KEY, pad VARCHAR(100))",
        "INSERT INTO big SELECT seq, REPEAT('x', 100) FROM seq_1_to_300000",
    ])
    .await;
    let f = source(&db, "");
    let c = MysqlConnector::connect(&f.source).await.unwrap();
    let err = killed_mid_stream(&c, &db, "big", "FROM `big`").await;
    assert!(err.to_string().contains("source `app`, table `big`"), "{err}");
    assert!(err.is_transient(), "a killed connection is worth a retry: {err:?}");
}
