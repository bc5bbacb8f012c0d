//! Materialisations against real Delta tables.

use basin_core::AssetKey;
use basin_core::failure::FailureCategory;
use basin_engine::history::{history, restore};
use basin_engine::{Action, AsOf, Error};

use crate::support::{TestProject, parquet_files, query, rows, run_on};

fn key(s: &str) -> AssetKey {
    AssetKey::parse(s).unwrap()
}

#[tokio::test]
async fn table_replaces_atomically_and_keeps_history() {
    let p = TestProject::new();
    p.model("silver.t", "SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS v(id, name)");
    let built = p.run(&["silver.t"], false).await.unwrap();
    assert_eq!(built[0].action, Action::Created);
    assert_eq!((built[0].version, built[0].rows), (Some(0), 2));

    p.model("silver.t", "SELECT * FROM (VALUES (3, 'c')) AS v(id, name)");
    let built = p.run(&["silver.t"], false).await.unwrap();
    assert_eq!(built[0].action, Action::Replaced);
    assert_eq!((built[0].version, built[0].rows), (Some(1), 1));

    assert_eq!(p.query("SELECT id, name FROM silver.t").await, vec!["3|c"]);
    // The previous version is still readable by time travel.
    let lake = p.lake();
    let old = lake.session(&[], Some(&AsOf::Version(0))).await.unwrap();
    assert_eq!(rows(&old.ctx, "SELECT id, name FROM silver.t ORDER BY id").await, vec!["1|a", "2|b"]);
}

#[tokio::test]
async fn every_commit_carries_run_id_sql_hash_and_rows() {
    let p = TestProject::new();
    p.model("silver.t", "SELECT * FROM (VALUES (1), (2), (3)) AS v(id)");
    p.run(&["silver.t"], false).await.unwrap();
    let project = p.load();
    let commits = history(&p.lake(), &key("silver.t"), None).await.unwrap();
    assert_eq!(commits.len(), 1);
    // The run id is the run engine's, recorded in the metadata store.
    let run_id = commits[0].run_id.clone().expect("a run id on the commit");
    let store = basin_orchestrator::record::open_store(&project).await.unwrap();
    let run = store.run(&run_id).await.unwrap().expect("the commit's run is recorded");
    assert_eq!(run.status, basin_meta::RunStatus::Success);
    assert_eq!(commits[0].sql_hash.as_deref(), Some(project.models[&key("silver.t")].sql_hash().as_str()));
    assert_eq!(commits[0].rows, Some(3));
}

#[tokio::test]
async fn incremental_merge_updates_inserts_and_leaves_the_rest() {
    let p = TestProject::new();
    let header = "/* basin\nmaterialized = \"incremental\"\nunique_key = [\"id\"]\n*/\n";
    p.model("silver.inc", &format!("{header}SELECT * FROM (VALUES (1, 'a'), (2, 'b'), (3, 'c')) AS v(id, val)"));
    p.run(&["silver.inc"], false).await.unwrap();

    // Key 2 changes, key 4 is new, keys 1 and 3 are not in the new data.
    p.model("silver.inc", &format!("{header}SELECT * FROM (VALUES (2, 'B'), (4, 'd')) AS v(id, val)"));
    let built = p.run(&["silver.inc"], false).await.unwrap();
    assert_eq!(built[0].action, Action::Merged { inserted: 1, updated: 1, deleted: 0 });
    assert_eq!(p.query("SELECT id, val FROM silver.inc ORDER BY id").await, vec!["1|a", "2|B", "3|c", "4|d"]);

    // --full-refresh rebuilds from the query alone.
    let built = p.run(&["silver.inc"], true).await.unwrap();
    assert_eq!(built[0].action, Action::Replaced);
    assert_eq!(p.query("SELECT id, val FROM silver.inc ORDER BY id").await, vec!["2|B", "4|d"]);
}

#[tokio::test]
async fn incremental_merge_on_a_composite_key() {
    let p = TestProject::new();
    let header = "/* basin\nmaterialized = \"incremental\"\nunique_key = [\"a\", \"b\"]\n*/\n";
    p.model("silver.inc", &format!("{header}SELECT * FROM (VALUES (1, 1, 'x'), (1, 2, 'y')) AS v(a, b, val)"));
    p.run(&["silver.inc"], false).await.unwrap();
    p.model("silver.inc", &format!("{header}SELECT * FROM (VALUES (1, 2, 'Y'), (2, 1, 'z')) AS v(a, b, val)"));
    p.run(&["silver.inc"], false).await.unwrap();
    assert_eq!(p.query("SELECT a, b, val FROM silver.inc ORDER BY a, b").await, vec!["1|1|x", "1|2|Y", "2|1|z"]);
}

#[tokio::test]
async fn incremental_partition_replace_touches_only_new_partitions() {
    let p = TestProject::new();
    let header = "/* basin\nmaterialized = \"incremental\"\npartition_by = [\"day\"]\n*/\n";
    p.model(
        "silver.events",
        &format!(
            "{header}SELECT id, CAST(day AS DATE) AS day FROM (VALUES (1, '2024-01-01'), (2, '2024-01-01'), (3, '2024-01-02'), (4, '2024-01-03')) AS v(id, day)"
        ),
    );
    p.run(&["silver.events"], false).await.unwrap();

    // New data for 01-02 only (two rows replacing one), plus a brand-new day.
    p.model(
        "silver.events",
        &format!("{header}SELECT id, CAST(day AS DATE) AS day FROM (VALUES (30, '2024-01-02'), (31, '2024-01-02'), (5, '2024-01-04')) AS v(id, day)"),
    );
    let built = p.run(&["silver.events"], false).await.unwrap();
    assert_eq!(built[0].action, Action::ReplacedPartitions { partitions: 2 });
    assert_eq!(
        p.query("SELECT id, CAST(day AS VARCHAR) FROM silver.events ORDER BY id").await,
        vec!["1|2024-01-01", "2|2024-01-01", "4|2024-01-03", "5|2024-01-04", "30|2024-01-02", "31|2024-01-02"]
    );
    // The untouched partitions' files were not rewritten: their rows still come from version 0.
    let files_v0: Vec<String> = {
        let t = p.lake().table_as_of(&key("silver.events"), Some(&AsOf::Version(0))).await.unwrap().unwrap();
        t.get_file_uris().unwrap().filter(|f| f.contains("2024-01-01") || f.contains("2024-01-03")).collect()
    };
    let files_v1: Vec<String> = {
        let t = p.lake().table(&key("silver.events")).await.unwrap().unwrap();
        t.get_file_uris().unwrap().filter(|f| f.contains("2024-01-01") || f.contains("2024-01-03")).collect()
    };
    assert_eq!(files_v0.len(), 2);
    assert_eq!(files_v0, files_v1);
}

#[tokio::test]
async fn incremental_adds_new_columns_with_nulls_for_old_rows() {
    let p = TestProject::new();
    let header = "/* basin\nmaterialized = \"incremental\"\nunique_key = [\"id\"]\n*/\n";
    p.model("silver.inc", &format!("{header}SELECT * FROM (VALUES (1, 'a')) AS v(id, val)"));
    p.run(&["silver.inc"], false).await.unwrap();
    p.model("silver.inc", &format!("{header}SELECT * FROM (VALUES (2, 'b', 20)) AS v(id, val, extra)"));
    p.run(&["silver.inc"], false).await.unwrap();
    assert_eq!(p.query("SELECT id, val, extra FROM silver.inc ORDER BY id").await, vec!["1|a|NULL", "2|b|20"]);
}

#[tokio::test]
async fn incremental_type_change_fails_naming_the_column_and_changes_nothing() {
    let p = TestProject::new();
    let header = "/* basin\nmaterialized = \"incremental\"\nunique_key = [\"id\"]\n*/\n";
    p.model("silver.inc", &format!("{header}SELECT * FROM (VALUES (1, 10)) AS v(id, amount)"));
    p.run(&["silver.inc"], false).await.unwrap();
    p.model("silver.inc", &format!("{header}SELECT * FROM (VALUES (2, 'ten')) AS v(id, amount)"));
    let err = p.run(&["silver.inc"], false).await.unwrap_err();
    assert_eq!(err.category, FailureCategory::BadQuery, "{err}");
    assert!(err.message.contains("`amount`") && err.message.contains("--full-refresh"), "{err}");
    assert_eq!(p.query("SELECT id, amount FROM silver.inc").await, vec!["1|10"]);
    assert_eq!(p.lake().table(&key("silver.inc")).await.unwrap().unwrap().version(), Some(0));
    // A narrower type is cast into the existing column instead.
    p.model(
        "silver.inc",
        &format!("{header}SELECT id, CAST(amount AS SMALLINT) AS amount FROM (VALUES (3, 30)) AS v(id, amount)"),
    );
    p.run(&["silver.inc"], false).await.unwrap();
    assert_eq!(p.query("SELECT id, amount FROM silver.inc ORDER BY id").await, vec!["1|10", "3|30"]);
}

#[tokio::test]
async fn unique_key_must_be_a_result_column() {
    let p = TestProject::new();
    p.model("silver.inc", "/* basin\nmaterialized = \"incremental\"\nunique_key = [\"nope\"]\n*/\nSELECT 1 AS id");
    let err = p.run(&["silver.inc"], false).await.unwrap_err();
    assert_eq!(err.category, FailureCategory::BadQuery, "{err}");
    assert!(err.message.contains("`nope`"), "{err}");
    assert!(p.lake().table(&key("silver.inc")).await.unwrap().is_none(), "nothing may be written");
}

#[tokio::test]
async fn views_write_nothing_and_read_current_data() {
    let p = TestProject::new();
    p.model("silver.t", "SELECT * FROM (VALUES (1), (2)) AS v(id)");
    p.model("gold.v", "/* basin\nmaterialized = \"view\"\n*/\nSELECT SUM(id) AS total FROM silver.t");
    let built = p.run(&["silver.t", "gold.v"], false).await.unwrap();
    assert_eq!(built[1].action, Action::View);
    let lake = p.lake();
    assert!(lake.table(&key("gold.v")).await.unwrap().is_none(), "a view writes no table");
    let views = vec![(key("gold.v"), "SELECT SUM(id) AS total FROM silver.t".to_string())];
    let session = lake.session(&views, None).await.unwrap();
    assert_eq!(rows(&session.ctx, "SELECT total FROM gold.v").await, vec!["3"]);
}

#[tokio::test]
async fn a_failing_query_leaves_the_table_as_it_was() {
    let p = TestProject::new();
    p.model("silver.t", "SELECT * FROM (VALUES (1), (2)) AS v(id)");
    p.run(&["silver.t"], false).await.unwrap();
    // Fails at execution time, after the write has started.
    p.model("silver.t", "SELECT CAST(x AS INT) AS id FROM (VALUES ('1'), ('not a number')) AS v(x)");
    assert!(p.run(&["silver.t"], false).await.is_err());
    assert_eq!(p.query("SELECT id FROM silver.t ORDER BY id").await, vec!["1", "2"]);
    assert_eq!(p.lake().table(&key("silver.t")).await.unwrap().unwrap().version(), Some(0));
}

#[tokio::test]
async fn restore_rolls_back_as_a_new_commit() {
    let p = TestProject::new();
    p.model("silver.t", "SELECT * FROM (VALUES (1)) AS v(id)");
    p.run(&["silver.t"], false).await.unwrap();
    p.model("silver.t", "SELECT * FROM (VALUES (2)) AS v(id)");
    p.run(&["silver.t"], false).await.unwrap();
    let lake = p.lake();
    let version = restore(&lake, &key("silver.t"), &AsOf::Version(0), "restore-run").await.unwrap();
    assert_eq!(version, 2);
    assert_eq!(query(&lake, "SELECT id FROM silver.t").await, vec!["1"]);
    let commits = history(&lake, &key("silver.t"), None).await.unwrap();
    assert_eq!(commits.iter().map(|c| c.version).collect::<Vec<_>>(), vec![2, 1, 0]);
    assert_eq!(commits[0].operation, "RESTORE");
    assert_eq!(commits[0].run_id.as_deref(), Some("restore-run"));
    let missing = restore(&lake, &key("silver.nope"), &AsOf::Version(0), "r").await.unwrap_err();
    assert!(matches!(missing, Error::TableNotFound { .. }));
}

#[tokio::test]
async fn lakes_on_an_object_store_root() {
    let p = TestProject::new();
    p.model("silver.t", "SELECT * FROM (VALUES (1), (2)) AS v(id)");
    p.model("gold.g", "SELECT COUNT(*) AS n FROM silver.t");
    let project = p.load();
    let lake = basin_engine::Lake::in_memory();
    assert!(lake.list_tables().await.unwrap().is_empty());
    run_on(&project, &lake, &["silver.t", "gold.g"], false).await.unwrap();
    assert_eq!(lake.list_tables().await.unwrap(), vec![key("gold.g"), key("silver.t")]);
    assert_eq!(query(&lake, "SELECT n FROM gold.g").await, vec!["2"]);
    assert!(!p.path().join("lake").exists(), "nothing may be written to the local disk");
}

#[tokio::test]
async fn list_tables_ignores_folders_that_are_not_delta_tables() {
    let p = TestProject::new();
    p.model("silver.t", "SELECT 1 AS id");
    p.run(&["silver.t"], false).await.unwrap();
    std::fs::create_dir_all(p.path().join("lake/silver/not_a_table")).unwrap();
    std::fs::write(p.path().join("lake/stray.txt"), "x").unwrap();
    assert_eq!(p.lake().list_tables().await.unwrap(), vec![key("silver.t")]);
}

#[tokio::test]
async fn an_unreachable_object_store_is_a_clear_error_without_secrets() {
    use std::collections::BTreeMap;

    use basin_core::config::{Secret, StorageRoot};
    let root = StorageRoot::Url(url::Url::parse("s3://analytics-bucket/lake").unwrap());
    let options: BTreeMap<String, Secret> = [
        ("AWS_ENDPOINT", "http://127.0.0.1:9"),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "very-secret-value"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Secret::new(v)))
    .collect();
    let lake = basin_engine::Lake::open(&root, &options).unwrap();
    let started = std::time::Instant::now();
    let err = lake.list_tables().await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(text.contains("s3://analytics-bucket/lake"), "{text}");
    assert!(!text.contains("very-secret-value"), "{text}");
    eprintln!("failed after {:?}", started.elapsed());
}

#[tokio::test]
async fn table_models_take_new_columns_and_restore_by_timestamp() {
    let p = TestProject::new();
    p.model("silver.t", "SELECT * FROM (VALUES (1, 'a')) AS v(id, name)");
    p.run(&["silver.t"], false).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    p.model("silver.t", "SELECT * FROM (VALUES (1, 'a', 10)) AS v(id, name, extra)");
    p.run(&["silver.t"], false).await.unwrap();
    assert_eq!(p.query("SELECT id, name, extra FROM silver.t").await, vec!["1|a|10"]);

    let lake = p.lake();
    let target: AsOf = between.to_rfc3339().parse().unwrap();
    assert_eq!(target, AsOf::Timestamp(between));
    let version = restore(&lake, &key("silver.t"), &target, "r").await.unwrap();
    assert_eq!(version, 2);
    assert_eq!(query(&lake, "SELECT * FROM silver.t").await, vec!["1|a"]);
    assert!("yesterday".parse::<AsOf>().is_err());
}

const SCD2: &str = "/* basin\nmaterialized = \"scd2\"\nunique_key = [\"id\"]\n*/\n";

#[tokio::test]
async fn scd2_versions_changes_closes_deletes_and_writes_nothing_when_unchanged() {
    let p = TestProject::new();
    let history = "SELECT id, name, is_current, valid_to IS NULL FROM silver.dim ORDER BY id, valid_from";
    p.model("silver.dim", &format!("{SCD2}SELECT * FROM (VALUES (1, 'a'), (2, 'b'), (3, 'c')) AS v(id, name)"));
    let built = p.run(&["silver.dim"], false).await.unwrap();
    assert_eq!((built[0].action.clone(), built[0].rows), (Action::Created, 3));
    assert_eq!(p.query(history).await, ["1|a|true|true", "2|b|true|true", "3|c|true|true"]);

    // Unchanged input: no commit at all.
    let built = p.run(&["silver.dim"], false).await.unwrap();
    assert_eq!((built[0].action.clone(), built[0].version), (Action::NoNewData, Some(0)));

    // Key 1 changes, key 2 stays, key 3 is gone, key 4 is new.
    p.model("silver.dim", &format!("{SCD2}SELECT * FROM (VALUES (1, 'A'), (2, 'b'), (4, 'd')) AS v(id, name)"));
    let built = p.run(&["silver.dim"], false).await.unwrap();
    assert_eq!(built[0].action, Action::Merged { inserted: 2, updated: 2, deleted: 0 });
    assert_eq!(
        p.query(history).await,
        ["1|a|false|false", "1|A|true|true", "2|b|true|true", "3|c|false|false", "4|d|true|true"]
    );
    // The closed version ends where the new one starts.
    assert_eq!(
        p.query("SELECT COUNT(*) FROM silver.dim a JOIN silver.dim b ON a.id = b.id AND a.valid_to = b.valid_from")
            .await,
        ["1"]
    );

    // A deleted key that comes back opens a new version; --full-refresh keeps the history.
    p.model(
        "silver.dim",
        &format!("{SCD2}SELECT * FROM (VALUES (1, 'A'), (2, 'b'), (3, 'c'), (4, 'd')) AS v(id, name)"),
    );
    let built = p.run(&["silver.dim"], true).await.unwrap();
    assert_eq!(built[0].action, Action::Merged { inserted: 1, updated: 0, deleted: 0 });
    assert_eq!(p.query("SELECT COUNT(*), SUM(CAST(is_current AS INT)) FROM silver.dim").await, ["6|4"]);
}

/// Versions are found in one pass over all rows in key order: a key whose neighbour has the
/// same tracked values, or shares part of a composite key, is still a key of its own.
#[tokio::test]
async fn scd2_keeps_neighbouring_keys_apart() {
    let p = TestProject::new();
    let header = "/* basin\nmaterialized = \"scd2\"\nunique_key = [\"a\", \"b\"]\ntracked = [\"v\"]\n*/\n";
    let model = |rows: &str| format!("{header}SELECT * FROM (VALUES {rows}) AS t(a, b, v)");
    p.model("silver.k", &model("(1, 'x', 'same'), (1, 'y', 'same'), (2, 'x', 'same'), (NULL, 'x', 'same')"));
    let built = p.run(&["silver.k"], false).await.unwrap();
    assert_eq!(built[0].rows, 4, "every key is a version, however alike its neighbours");
    p.model("silver.k", &model("(1, 'x', 'same'), (1, 'y', 'changed'), (2, 'x', 'same'), (NULL, 'x', 'same')"));
    let built = p.run(&["silver.k"], false).await.unwrap();
    assert_eq!(built[0].action, Action::Merged { inserted: 1, updated: 1, deleted: 0 });
    assert_eq!(
        p.query("SELECT a, b, v, is_current FROM silver.k ORDER BY a, b, valid_from").await,
        ["1|x|same|true", "1|y|same|false", "1|y|changed|true", "2|x|same|true", "NULL|x|same|true"]
    );
}

#[tokio::test]
async fn scd2_with_updated_at_makes_a_version_of_each_change_in_one_input() {
    let p = TestProject::new();
    let header =
        "/* basin\nmaterialized = \"scd2\"\nunique_key = \"id\"\ntracked = [\"email\"]\nupdated_at = \"changed\"\n*/\n";
    let row = |id: i32, email: &str, vip: bool, day: u32| {
        format!("({id}, '{email}', {vip}, TIMESTAMP '2026-01-{day:02} 10:00:00')")
    };
    let model =
        |rows: Vec<String>| format!("{header}SELECT * FROM (VALUES {}) AS v(id, email, vip, changed)", rows.join(", "));
    p.model("silver.c", &model(vec![row(1, "a@x", false, 1), row(2, "b@x", false, 1)]));
    p.run(&["silver.c"], false).await.unwrap();

    // Two changes to key 1 in one input, and a change to an untracked column of key 2.
    p.model("silver.c", &model(vec![row(1, "a2@x", false, 2), row(1, "a3@x", false, 3), row(2, "b@x", true, 3)]));
    let built = p.run(&["silver.c"], false).await.unwrap();
    assert_eq!(built[0].action, Action::Merged { inserted: 2, updated: 1, deleted: 0 });
    assert_eq!(
        p.query("SELECT id, email, CAST(valid_from AS VARCHAR) AS f, CAST(valid_to AS VARCHAR) AS t, is_current FROM silver.c ORDER BY id, valid_from").await,
        [
            "1|a@x|2026-01-01T10:00:00|2026-01-02T10:00:00|false",
            "1|a2@x|2026-01-02T10:00:00|2026-01-03T10:00:00|false",
            "1|a3@x|2026-01-03T10:00:00|NULL|true",
            "2|b@x|2026-01-01T10:00:00|NULL|true",
        ]
    );

    // A column added to the query joins the history: NULL in the versions written before it.
    let with_plan = |rows: Vec<String>| {
        format!("{header}SELECT *, 'gold' AS plan FROM (VALUES {}) AS v(id, email, vip, changed)", rows.join(", "))
    };
    p.model("silver.c", &with_plan(vec![row(1, "a3@x", false, 3), row(2, "b2@x", true, 4)]));
    let built = p.run(&["silver.c"], false).await.unwrap();
    assert_eq!(built[0].action, Action::Merged { inserted: 1, updated: 1, deleted: 0 });
    assert_eq!(
        p.query("SELECT id, email, plan, is_current FROM silver.c ORDER BY id, valid_from").await,
        ["1|a@x|NULL|false", "1|a2@x|NULL|false", "1|a3@x|NULL|true", "2|b@x|NULL|false", "2|b2@x|gold|true"]
    );
}

#[tokio::test]
async fn scd2_needs_a_key_and_refuses_its_own_column_names() {
    let p = TestProject::new();
    p.model("silver.bad", "/* basin\nmaterialized = \"scd2\"\n*/\nSELECT 1 AS id");
    let (_, diagnostics) = basin_core::Project::load(p.path()).unwrap();
    assert!(diagnostics.iter().any(|d| d.to_string().contains("an scd2 model needs `unique_key`")), "{diagnostics:?}");

    let p = TestProject::new();
    p.model("silver.bad", &format!("{SCD2}SELECT 1 AS id, TRUE AS is_current"));
    let err = p.run(&["silver.bad"], false).await.unwrap_err();
    assert_eq!(err.category, FailureCategory::BadQuery, "{err}");
    assert!(err.message.contains("scd2") && err.message.contains("`is_current`"), "{err}");
}

/// What a reader pays to reach one row: a key lookup decodes the column chunk's dictionary
/// page and the one data page the page index points to.
#[tokio::test]
async fn model_files_keep_dictionaries_small_and_clustered_pages_short() {
    use basin_engine::datafusion::parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
    use basin_engine::datafusion::parquet::file::metadata::PageIndexPolicy;

    let p = TestProject::new();
    p.model(
        "silver.c",
        "/* basin\ncluster_by = [\"id\"]\n*/\n\
         SELECT value AS id, value % 7 AS kind, value * 3 AS amount FROM generate_series(1, 200000)",
    );
    p.model(
        "silver.plain",
        "SELECT value AS id, value % 7 AS kind, value * 3 AS amount FROM generate_series(1, 200000)",
    );
    p.run(&["silver.c", "silver.plain"], false).await.unwrap();
    for (table, clustered) in [("c", true), ("plain", false)] {
        let dir = p.path().join("lake/silver").join(table);
        let file = parquet_files(&dir).into_iter().next().expect("a parquet file");
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
        let builder =
            ParquetRecordBatchReaderBuilder::try_new_with_options(std::fs::File::open(&file).unwrap(), options)
                .unwrap();
        let meta = builder.metadata();
        for rg in meta.row_groups() {
            let dictionary = |c: usize| {
                let c = rg.column(c);
                c.data_page_offset() - c.dictionary_page_offset().unwrap_or(c.data_page_offset())
            };
            // 200,000 distinct values: the dictionary stops near 64 KiB (8,192 values), or
            // 16 KiB in a clustered table, instead of a megabyte, and the rest of the column
            // is plainly encoded.
            let cap = if clustered { 20 * 1024 } else { 80 * 1024 };
            assert!(dictionary(2) <= cap, "{table}: amount's dictionary page of {} bytes", dictionary(2));
            assert!(dictionary(2) > 0, "{table}: amount starts dictionary-encoded");
            if clustered {
                // The key a lookup reads by has no dictionary page to decode first.
                assert_eq!(rg.column(0).dictionary_page_offset(), None, "{table}: the key has no dictionary");
            } else {
                assert!(dictionary(0) <= cap, "{table}: id's dictionary page of {} bytes", dictionary(0));
            }
            // Seven values: the dictionary holds them all.
            assert!(rg.column(1).dictionary_page_offset().is_some(), "{table}: kind has a dictionary");
            assert!(dictionary(1) < 1024, "{table}: kind's dictionary page of {} bytes", dictionary(1));
        }
        let pages = &meta.offset_index().expect("page index written")[0][0];
        let rows: Vec<i64> =
            pages.page_locations().windows(2).map(|w| w[1].first_row_index - w[0].first_row_index).collect();
        let longest = rows.iter().copied().max().unwrap_or(0);
        if clustered {
            assert!(longest <= 1024, "{table}: a data page of {longest} rows");
        } else {
            assert!(longest > 4096, "{table}: an unclustered table keeps the default page size ({longest} rows)");
        }
    }
}

#[tokio::test]
async fn cluster_by_writes_the_rows_sorted_in_the_file() {
    use basin_engine::datafusion::arrow::array::{AsArray, RecordBatch};
    use basin_engine::datafusion::arrow::datatypes::Int64Type;
    use basin_engine::datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let p = TestProject::new();
    // 200,000 ids in scrambled order (7919 is prime to 200,003).
    p.model(
        "silver.c",
        "/* basin\ncluster_by = [\"id\"]\n*/\n\
         SELECT (value * 7919) % 200003 AS id, value AS v FROM generate_series(1, 200000)",
    );
    p.run(&["silver.c"], false).await.unwrap();
    let dir = p.path().join("lake/silver/c");
    let files = parquet_files(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    // The file's own order, as a reader that knows nothing of Basin sees it.
    let reader =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&files[0]).unwrap()).unwrap().build().unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    let ids: Vec<i64> =
        batches.iter().flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec()).collect();
    assert_eq!(ids.len(), 200_000);
    let unsorted = ids.windows(2).position(|w| w[0] > w[1]);
    assert_eq!(unsorted, None, "rows are in id order: {:?}", &ids[..20]);

    // A cluster_by column the query does not have is named.
    p.model("silver.c", "/* basin\ncluster_by = [\"nope\"]\n*/\nSELECT 1 AS id");
    let err = p.run(&["silver.c"], false).await.unwrap_err().to_string();
    assert!(err.contains("cluster_by") && err.contains("nope"), "{err}");
}

#[tokio::test]
async fn a_table_the_lake_cannot_open_is_left_out_and_named_and_the_others_stay_usable() {
    let p = TestProject::new();
    p.model("silver.good", "SELECT 1 AS id");
    p.run(&["silver.good"], false).await.unwrap();
    // A folder that looks like a table but whose log is garbage (a crashed copy, a hand edit).
    let broken = p.path().join("lake/silver/broken/_delta_log");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("00000000000000000000.json"), "not a delta log\n").unwrap();
    let session = p.lake().session(&[], None).await.expect("one broken table does not stop the session");
    assert_eq!(rows(&session.ctx, "SELECT id FROM silver.good").await, vec!["1"]);
    let [(key, reason)] = session.unavailable_tables.as_slice() else { panic!("{:?}", session.unavailable_tables) };
    assert_eq!(key.to_string(), "silver.broken");
    assert!(reason.contains("silver/broken"), "the reason names where the table is: {reason}");
    // A run over the rest of the lake still builds.
    p.model("gold.g", "SELECT id FROM silver.good");
    p.run(&["gold.g"], false).await.unwrap();
}

#[tokio::test]
async fn a_bronze_table_whose_name_is_not_a_plain_identifier_is_queryable_quoted() {
    use basin_engine::datafusion::arrow::array::{Int64Array, RecordBatch};
    use basin_engine::datafusion::arrow::datatypes::{DataType, Field, Schema};
    let p = TestProject::new();
    p.model("silver.good", "SELECT 1 AS id");
    p.run(&["silver.good"], false).await.unwrap();
    // A Delta table under bronze whose name has capitals and a space, as a source may name one.
    let schema = std::sync::Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
    let batch = RecordBatch::try_new(schema, vec![std::sync::Arc::new(Int64Array::from(vec![7]))]).unwrap();
    let url = url::Url::from_directory_path(p.path().join("lake/bronze/app__My Table")).unwrap();
    std::fs::create_dir_all(p.path().join("lake/bronze/app__My Table")).unwrap();
    let table = deltalake::DeltaTableBuilder::from_url(url).unwrap().build().unwrap();
    table.write(vec![batch]).await.unwrap();
    let session = p.lake().session(&[], None).await.unwrap();
    assert!(session.unavailable_tables.is_empty(), "{:?}", session.unavailable_tables);
    assert_eq!(rows(&session.ctx, "SELECT id FROM bronze.\"app__My Table\"").await, vec!["7"]);
    assert_eq!(rows(&session.ctx, "SELECT id FROM silver.good").await, vec!["1"]);
}
