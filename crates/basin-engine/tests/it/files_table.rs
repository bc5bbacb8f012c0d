//! Serving sessions read a table version that is only its Parquet files as those files, and
//! get the same rows as the Delta scan.

use basin_engine::files_table::FilesTable;

use crate::support::{TestProject, rows};

#[tokio::test]
async fn serving_sessions_read_plain_tables_as_their_files_with_the_delta_scans_results() {
    let p = TestProject::new();
    let header = "/* basin\nmaterialized = \"incremental\"\nunique_key = [\"id\"]\n*/\n";
    // Two versions: the second adds a column and new keys, so the first version's file (which
    // lacks the column) stays part of the table.
    p.model(
        "silver.inc",
        &format!(
            "{header}SELECT id, val, CAST(ts AS TIMESTAMP) AS ts, CAST(amount AS DECIMAL(12, 2)) AS amount \
             FROM (VALUES (1, 'a', '2024-01-01 10:00:00', 1.25), (2, NULL, '2024-01-02 11:30:00', 2.5)) AS v(id, val, ts, amount)"
        ),
    );
    p.run(&["silver.inc"], false).await.unwrap();
    p.model(
        "silver.inc",
        &format!(
            "{header}SELECT id, val, CAST(ts AS TIMESTAMP) AS ts, CAST(amount AS DECIMAL(12, 2)) AS amount, extra \
             FROM (VALUES (3, 'c', '2024-01-03 00:00:00', 3.75, 30), (4, 'd', '2024-01-04 00:00:00', -1.5, 40)) AS v(id, val, ts, amount, extra)"
        ),
    );
    p.run(&["silver.inc"], false).await.unwrap();
    // Partition values live in the Delta log, not in the files: read through the Delta scan.
    p.model(
        "silver.events",
        "/* basin\npartition_by = [\"day\"]\n*/\n\
         SELECT id, CAST(day AS DATE) AS day FROM (VALUES (1, '2024-01-01'), (2, '2024-01-02')) AS v(id, day)",
    );
    p.model("silver.empty", "SELECT 1 AS id WHERE false");
    p.run(&["silver.events", "silver.empty"], false).await.unwrap();

    let lake = p.lake();
    let delta = lake.session(&[], None).await.unwrap().ctx;
    let served = lake.serving_session(&[]).await.unwrap().ctx;
    let provider = |ctx: &basin_engine::datafusion::prelude::SessionContext, name: &str| {
        let ctx = ctx.clone();
        let name = name.to_string();
        async move { ctx.table_provider(name.as_str()).await.unwrap() }
    };
    assert!(provider(&served, "silver.inc").await.is::<FilesTable>());
    let files = lake.table(&basin_core::AssetKey::parse("silver.inc").unwrap()).await.unwrap().unwrap();
    assert_eq!(files.get_file_uris().unwrap().count(), 2, "a file of each version");
    assert!(provider(&served, "silver.empty").await.is::<FilesTable>());
    assert!(!provider(&served, "silver.events").await.is::<FilesTable>(), "a partitioned table");
    assert!(!provider(&delta, "silver.inc").await.is::<FilesTable>(), "only serving sessions read files");

    for sql in [
        "SELECT id, val, CAST(ts AS VARCHAR), amount, extra FROM silver.inc ORDER BY id",
        "SELECT COUNT(*), SUM(amount), MAX(ts) FROM silver.inc",
        "SELECT id FROM silver.inc WHERE extra IS NULL",
        "SELECT val FROM silver.inc WHERE id = 3",
        "SELECT id FROM silver.inc WHERE ts > TIMESTAMP '2024-01-02 12:00:00' ORDER BY id",
        "SELECT id, extra FROM silver.inc ORDER BY id LIMIT 1",
        "SELECT COUNT(*) FROM silver.empty",
        "SELECT id, CAST(day AS VARCHAR) FROM silver.events ORDER BY id",
    ] {
        assert_eq!(rows(&served, sql).await, rows(&delta, sql).await, "{sql}");
    }
    assert_eq!(
        rows(&served, "SELECT id, val, extra FROM silver.inc ORDER BY id").await,
        vec!["1|a|NULL", "2|NULL|NULL", "3|c|30", "4|d|40"]
    );
}

#[tokio::test]
async fn serving_sessions_read_files_from_an_object_store_lake() {
    let p = TestProject::new();
    p.model("silver.t", "SELECT * FROM (VALUES (1, 'a'), (2, 'b'), (3, 'c')) AS v(id, name)");
    let project = p.load();
    let lake = basin_engine::Lake::in_memory();
    crate::support::run_on(&project, &lake, &["silver.t"], false).await.unwrap();
    let served = lake.serving_session(&[]).await.unwrap().ctx;
    assert!(served.table_provider("silver.t").await.unwrap().is::<FilesTable>());
    assert_eq!(rows(&served, "SELECT name FROM silver.t WHERE id >= 2 ORDER BY id").await, vec!["b", "c"]);
    assert_eq!(rows(&served, "SELECT COUNT(*) FROM silver.t").await, vec!["3"]);
}

#[tokio::test]
async fn a_lookup_reads_only_the_pages_that_may_hold_the_value() {
    use basin_engine::datafusion::arrow::array::{AsArray, RecordBatch};
    use basin_engine::datafusion::arrow::datatypes::Int64Type;
    use basin_engine::datafusion::scalar::ScalarValue;

    let p = TestProject::new();
    let rows_in_table = 200_000;
    p.model(
        "silver.t",
        &format!(
            "/* basin\ncluster_by = [\"id\"]\n*/\n\
             SELECT value AS id, CAST(value * 3 AS VARCHAR) AS label, value % 7 AS bucket \
             FROM generate_series(1, {rows_in_table})"
        ),
    );
    p.run(&["silver.t"], false).await.unwrap();
    let lake = p.lake();
    let served = lake.serving_session(&[]).await.unwrap().ctx;
    let provider = served.table_provider("silver.t").await.unwrap();
    let table = (provider.as_ref() as &dyn std::any::Any).downcast_ref::<FilesTable>().expect("read as its files");
    let runtime = served.runtime_env();
    let schema = provider.schema();
    let column = |name: &str| schema.index_of(name).unwrap();
    let projection = [column("label"), column("id")];
    let matching = |batches: &[RecordBatch], id: i64| -> Vec<String> {
        let mut found = Vec::new();
        for b in batches {
            assert_eq!(b.schema().field(0).name(), "label", "columns in the order asked");
            let ids = b.column(1).as_primitive::<Int64Type>();
            for row in (0..b.num_rows()).filter(|r| ids.value(*r) == id) {
                found.push(
                    basin_engine::datafusion::arrow::util::display::array_value_to_string(b.column(0), row).unwrap(),
                );
            }
        }
        found
    };

    let read = table.lookup(&runtime, "id", &ScalarValue::Int64(Some(123_456)), &projection).await.unwrap().unwrap();
    let read_rows: usize = read.batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(matching(&read.batches, 123_456), ["370368"]);
    assert!(read_rows < rows_in_table / 4, "read {read_rows} of {rows_in_table} rows");
    assert!(read.bytes_read > 0);
    // A value of another integer type is the same key.
    let read = table.lookup(&runtime, "id", &ScalarValue::Int32(Some(7)), &projection).await.unwrap().unwrap();
    assert_eq!(matching(&read.batches, 7), ["21"]);
    // A key past the greatest reads nothing.
    let read = table.lookup(&runtime, "id", &ScalarValue::Int64(Some(900_000)), &projection).await.unwrap().unwrap();
    assert!(read.batches.is_empty() && read.bytes_read == 0, "{read:?}");
    // A value that is no key of the column's type cannot prune: no lookup.
    let fraction = ScalarValue::Float64(Some(7.5));
    assert!(table.lookup(&runtime, "id", &fraction, &projection).await.unwrap().is_none());
    // A string column: its pages' bounds admit the value in a few pages (labels follow the key).
    let read =
        table.lookup(&runtime, "label", &ScalarValue::Utf8(Some("300".into())), &projection).await.unwrap().unwrap();
    assert_eq!(matching(&read.batches, 100), ["300"]);
    // A column whose every page may hold the value (`id % 7`): no lookup, a scan reads those.
    assert!(table.lookup(&runtime, "bucket", &ScalarValue::Int64(Some(3)), &projection).await.unwrap().is_none());
}
