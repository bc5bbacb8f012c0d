//! The PostgreSQL connector against the real server: every column type, column by column.

use arrow::datatypes::{DataType, Field, TimeUnit};
use basin_connectors::postgres::PostgresConnector;
use basin_connectors::{Connector, Error, Window};
use basin_testkit::{Server, TestDb};
use std::sync::Arc;

use crate::support::{cell, killed_mid_stream, read_all, source};

const TYPES: &[&str] = &[
    "CREATE TYPE mood AS ENUM ('sad', 'happy')",
    "CREATE TABLE types (
        id int8 PRIMARY KEY, b bool, s int2, i int4, o oid, r real, d double precision,
        n numeric(20,6), nu numeric, nbig numeric(50,2), tx text, vc varchar(10), ch char(3), nm name,
        j json, jb jsonb, by bytea, dt date, ts timestamp(6), tstz timestamptz, tm time, iv interval,
        u uuid, ai int4[], at text[], an numeric(10,2)[], e mood, ip inet
    )",
    "INSERT INTO types VALUES (9223372036854775807, true, -32768, -2147483648, 4294967295, 1.5, 0.1,
        -12345678901234.123456, 3.141592653589793238462643383279502884197, 123456789012345678901234567890123456789012345678.99,
        'ünïcödé 😀', 'abc', 'a', 'pg_name',
        '{\"a\": [1, 2]}', '{\"b\": null}', '\\x00ff', '2024-02-29', '2024-02-29 23:59:59.999999',
        '2024-06-01 14:00:00.123+02', '13:45:00.5', '1 year 2 days 03:04:05',
        'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{1,NULL,3}', '{\"x,y\",z}', '{1.50,-2.25}', 'happy', '192.168.0.1/24')",
    "INSERT INTO types (id) VALUES (1)",
];

#[tokio::test]
async fn every_type_maps_without_loss() {
    let Some(db) = TestDb::create(Server::Postgres, "types").await else { return };
    db.execute(TYPES).await;
    let f = source(&db, "");
    let c = PostgresConnector::connect(&f.source).await.unwrap();
    assert_eq!(c.primary_key("types").await.unwrap(), ["id"]);
    let (batches, _) = read_all(&c, "types", None).await;
    let b = &batches[0];
    assert_eq!(b.num_rows(), 2);
    let schema = b.schema();
    let list = |t: DataType| DataType::List(Arc::new(Field::new("item", t, true)));
    let expected: &[(&str, DataType, &str)] = &[
        ("id", DataType::Int64, "9223372036854775807"),
        ("b", DataType::Boolean, "true"),
        ("s", DataType::Int16, "-32768"),
        ("i", DataType::Int32, "-2147483648"),
        ("o", DataType::Int64, "4294967295"),
        ("r", DataType::Float32, "1.5"),
        ("d", DataType::Float64, "0.1"),
        ("n", DataType::Decimal128(20, 6), "-12345678901234.123456"),
        ("nu", DataType::Utf8, "3.141592653589793238462643383279502884197"),
        ("nbig", DataType::Utf8, "123456789012345678901234567890123456789012345678.99"),
        ("tx", DataType::Utf8, "ünïcödé 😀"),
        ("vc", DataType::Utf8, "abc"),
        ("ch", DataType::Utf8, "a  "),
        ("nm", DataType::Utf8, "pg_name"),
        ("j", DataType::Utf8, "{\"a\": [1, 2]}"),
        ("jb", DataType::Utf8, "{\"b\": null}"),
        ("by", DataType::Binary, "00ff"),
        ("dt", DataType::Date32, "2024-02-29"),
        ("ts", DataType::Timestamp(TimeUnit::Microsecond, None), "2024-02-29T23:59:59.999999"),
        ("tstz", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), "2024-06-01T12:00:00.123Z"),
        ("tm", DataType::Utf8, "13:45:00.5"),
        ("iv", DataType::Utf8, "1 year 2 days 03:04:05"),
        ("u", DataType::Utf8, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        ("ai", list(DataType::Int32), "[1, , 3]"),
        ("at", list(DataType::Utf8), "[x,y, z]"),
        ("an", list(DataType::Decimal128(10, 2)), "[1.50, -2.25]"),
        ("e", DataType::Utf8, "happy"),
        ("ip", DataType::Utf8, "192.168.0.1/24"),
    ];
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
async fn a_value_without_an_arrow_form_names_source_table_column_and_key() {
    let Some(db) = TestDb::create(Server::Postgres, "nan").await else { return };
    db.execute(&[
        "CREATE TABLE m (a int, b text, v numeric(10,2), PRIMARY KEY (a, b))",
        "INSERT INTO m VALUES (1, 'k', 1.5), (2, 'k', 'NaN')",
    ])
    .await;
    let f = source(&db, "");
    let c = PostgresConnector::connect(&f.source).await.unwrap();
    let extract = c.extract("m", None).await.unwrap();
    let err = futures::TryStreamExt::try_collect::<Vec<_>>(extract.batches).await.unwrap_err();
    let Error::Value { source_name, table, column, row_key, problem } = &err else { panic!("{err}") };
    assert_eq!((source_name.as_str(), table.as_str(), column.as_str()), ("app", "m", "v"));
    assert_eq!(row_key, "a=2, b=k");
    assert!(problem.contains("NaN"), "{problem}");
}

#[tokio::test]
async fn infinite_dates_fail_by_default_or_become_null_or_clamped_by_the_sources_policy() {
    let Some(db) = TestDb::create(Server::Postgres, "inf").await else { return };
    db.execute(&[
        "CREATE TABLE e (id int PRIMARY KEY, d date, ts timestamp, tz timestamptz)",
        "INSERT INTO e VALUES (1, '2024-01-02', '2024-01-02 03:04:05', '2024-01-02 03:04:05+00'),
            (2, 'infinity', 'infinity', '-infinity'), (3, '-infinity', '-infinity', 'infinity')",
    ])
    .await;
    let f = source(&db, "");
    let c = PostgresConnector::connect(&f.source).await.unwrap();
    let extract = c.extract("e", None).await.unwrap();
    let err = futures::TryStreamExt::try_collect::<Vec<_>>(extract.batches).await.unwrap_err();
    let Error::Value { column, row_key, problem, .. } = &err else { panic!("{err}") };
    assert_eq!((column.as_str(), row_key.as_str()), ("d", "id=2"));
    assert!(problem.contains("infinite date") && problem.contains("infinity = \"null\""), "{problem}");

    let f = source(&db, "infinity = \"null\"");
    let c = PostgresConnector::connect(&f.source).await.unwrap();
    let (batches, nulls) = read_all(&c, "e", None).await;
    let b = &batches[0];
    assert_eq!(nulls, 6, "each infinite value is NULL and counted");
    assert_eq!((cell(b, "d", 0), cell(b, "ts", 0)), ("2024-01-02".into(), "2024-01-02T03:04:05".into()));
    assert!((1..3).all(|r| ["d", "ts", "tz"].iter().all(|c| cell(b, c, r).is_empty())));

    let f = source(&db, "infinity = \"clamp\"");
    let c = PostgresConnector::connect(&f.source).await.unwrap();
    let (batches, nulls) = read_all(&c, "e", None).await;
    let b = &batches[0];
    assert_eq!(nulls, 0);
    assert_eq!(
        [cell(b, "d", 1), cell(b, "ts", 1), cell(b, "tz", 1)],
        ["9999-12-31", "9999-12-31T23:59:59.999999", "0001-01-01T00:00:00Z"]
    );
    assert_eq!(
        [cell(b, "d", 2), cell(b, "ts", 2), cell(b, "tz", 2)],
        ["0001-01-01", "0001-01-01T00:00:00", "9999-12-31T23:59:59.999999Z"]
    );

    // A value the policy does not know is a diagnostic, not a panic.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("basin.toml"), "[project]\nname = \"t\"\n").unwrap();
    std::fs::create_dir_all(dir.path().join("sources")).unwrap();
    std::fs::write(dir.path().join("sources/app.toml"), "kind = \"postgres\"\nurl = \"x\"\ninfinity = \"maybe\"\n")
        .unwrap();
    let loaded = format!("{:?}", basin_core::Project::load(dir.path()));
    assert!(loaded.contains("sources/app.toml") && loaded.contains("unknown variant `maybe`"), "{loaded}");
}

#[tokio::test]
async fn windows_counts_and_cursors_are_exact_and_cannot_inject() {
    let Some(db) = TestDb::create(Server::Postgres, "window").await else { return };
    db.execute(&[
        "CREATE TABLE ev (id int PRIMARY KEY, updated_at timestamptz, note text)",
        "INSERT INTO ev VALUES (1, '2024-01-01 00:00:00+00', 'a'), (2, '2024-01-02 00:00:00.5+00', 'b'), (3, '2024-01-03 01:00:00+01', 'c')",
    ])
    .await;
    let f = source(&db, "");
    let c = PostgresConnector::connect(&f.source).await.unwrap();
    assert_eq!(c.tables().await.unwrap(), ["ev"]);
    assert_eq!(c.max_cursor("ev", "updated_at").await.unwrap().as_deref(), Some("2024-01-03 00:00:00"));
    assert_eq!(c.key_bounds("ev", "id").await.unwrap(), Some((1, 3)));
    let window =
        Window { cursor: "updated_at".into(), from: Some("2024-01-02 00:00:00.5".into()), to: "2024-01-03".into() };
    assert_eq!(c.count("ev", Some(&window)).await.unwrap(), 2, "both bounds are inclusive, in UTC");
    let (batches, _) = read_all(&c, "ev", Some(&window)).await;
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);

    let evil = Window { cursor: "note".into(), from: Some("a' OR '1'='1".into()), to: "zzz".into() };
    assert_eq!(
        c.count("ev", Some(&evil)).await.unwrap(),
        2,
        "the quote is part of the value: 'b' and 'c' are after it"
    );
    let evil_id = Window { cursor: "id".into(), from: Some("0 OR 1=1".into()), to: "9".into() };
    assert!(matches!(c.count("ev", Some(&evil_id)).await, Err(Error::Value { .. })));
    assert!(matches!(c.count("ev\" WHERE 1=1 --", None).await, Err(Error::NoSuchTable { .. })));
}

#[tokio::test]
async fn a_backend_terminated_mid_stream_fails_the_read_naming_source_and_table() {
    let Some(db) = TestDb::create(Server::Postgres, "kill").await else { return };
    db.execute(&[
        "CREATE TABLE big (id int PRIMARY KEY, pad text)",
        "INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, 300000) g",
    ])
    .await;
    let f = source(&db, "");
    let c = PostgresConnector::connect(&f.source).await.unwrap();
    let err = killed_mid_stream(&c, &db, "big", "FROM \"big\"").await;
    assert!(err.to_string().contains("source `app`, table `big`"), "{err}");
    assert!(err.is_transient(), "a terminated backend is worth a retry: {err:?}");
}
