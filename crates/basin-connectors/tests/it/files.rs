//! The files connector on real CSV, JSON lines and Parquet files.

use basin_connectors::files::FilesConnector;
use basin_connectors::{Connector, Error};
use basin_core::Project;

use crate::support::{cell, read_all};

fn project(dir: &std::path::Path, tables: &str) -> basin_core::source::Source {
    std::fs::write(dir.join("basin.toml"), "[project]\nname = \"t\"\n").unwrap();
    std::fs::create_dir_all(dir.join("sources")).unwrap();
    std::fs::write(dir.join("sources/landing.toml"), format!("kind = \"files\"\n{tables}")).unwrap();
    let (project, _) = Project::load_valid(dir).unwrap();
    project.sources["landing"].clone()
}

#[tokio::test]
async fn csv_files_matching_a_glob_are_one_table_with_inferred_types() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("in/orders_2.csv"), "id;amount;note\n3;7.25;\"semi;colon\"\n").unwrap();
    std::fs::write(dir.path().join("in/orders_1.csv"), "id;amount;note\n1;1.5;a\n2;2.5;\n").unwrap();
    std::fs::write(dir.path().join("in/ignored.txt"), "nope").unwrap();
    let source = project(dir.path(), "[[tables]]\nname = \"orders\"\npath = \"in/orders_*.csv\"\ndelimiter = \";\"\n");
    let c = FilesConnector::connect(&source).unwrap();
    assert_eq!(c.count("orders", None).await.unwrap(), 3);
    let (batches, _) = read_all(&c, "orders", None).await;
    let b = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    let schema = b.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["id", "amount", "note", "_file"]);
    assert_eq!(schema.field(0).data_type(), &arrow::datatypes::DataType::Int64);
    assert_eq!(schema.field(1).data_type(), &arrow::datatypes::DataType::Float64);
    let rows: Vec<String> = (0..3)
        .map(|r| {
            let file = cell(&b, "_file", r);
            format!(
                "{}|{}|{}|{}",
                cell(&b, "id", r),
                cell(&b, "amount", r),
                cell(&b, "note", r),
                &file[file.len() - 12..]
            )
        })
        .collect();
    assert_eq!(rows, ["1|1.5|a|orders_1.csv", "2|2.5||orders_1.csv", "3|7.25|semi;colon|orders_2.csv"]);
}

#[tokio::test]
async fn json_lines_and_parquet_read_back() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ev.jsonl"), "{\"id\": 1, \"tags\": \"a\"}\n{\"id\": 2, \"tags\": null}\n").unwrap();
    // A Parquet file written by the parquet crate itself.
    let batch = arrow::array::RecordBatch::try_from_iter([(
        "v",
        std::sync::Arc::new(arrow::array::Int32Array::from(vec![10, 20, 30])) as arrow::array::ArrayRef,
    )])
    .unwrap();
    let file = std::fs::File::create(dir.path().join("p.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let source = project(
        dir.path(),
        "[[tables]]\nname = \"ev\"\npath = \"ev.jsonl\"\n\n[[tables]]\nname = \"p\"\npath = \"p.parquet\"\n",
    );
    let c = FilesConnector::connect(&source).unwrap();
    let (ev, _) = read_all(&c, "ev", None).await;
    assert_eq!(
        (cell(&ev[0], "id", 1), cell(&ev[0], "tags", 0), cell(&ev[0], "tags", 1)),
        ("2".into(), "a".into(), "".into())
    );
    assert_eq!(c.count("p", None).await.unwrap(), 3, "from the Parquet footer");
    let (p, _) = read_all(&c, "p", None).await;
    assert_eq!(cell(&p[0], "v", 2), "30");
}

#[tokio::test]
async fn a_malformed_line_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.csv"), "id,amount\n1,2.5\n2,3.5,extra\n").unwrap();
    let source = project(dir.path(), "[[tables]]\nname = \"bad\"\npath = \"bad.csv\"\n");
    let c = FilesConnector::connect(&source).unwrap();
    // The line is found while inferring the schema or while reading, whichever meets it first.
    let err = match c.extract("bad", None).await {
        Err(e) => e,
        Ok(extract) => futures::TryStreamExt::try_collect::<Vec<_>>(extract.batches).await.unwrap_err(),
    };
    let Error::File { source_name, table, file, problem } = &err else { panic!("{err}") };
    assert_eq!((source_name.as_str(), table.as_str()), ("landing", "bad"));
    assert!(file.ends_with("bad.csv"), "{file}");
    assert!(problem.contains("at line 3"), "{problem}");
    // No file matching the pattern is a missing table, not an empty one.
    let none = project(dir.path(), "[[tables]]\nname = \"none\"\npath = \"nothing/*.csv\"\n");
    let c = FilesConnector::connect(&none).unwrap();
    assert!(matches!(c.count("none", None).await, Err(Error::NoSuchTable { .. })));
}

#[tokio::test]
async fn declared_column_types_replace_the_inferred_ones() {
    let dir = tempfile::tempdir().unwrap();
    // Inference would make `sku` an integer (losing the leading zeros) and `amount` a float.
    std::fs::write(
        dir.path().join("items.csv"),
        "sku,amount,sold_on,sold_at\n007,0.1000,2024-02-29,2024-02-29T23:59:59\n123,12345678901234.5678,2024-03-01,2024-03-01 00:00:00\n",
    )
    .unwrap();
    let source = project(
        dir.path(),
        "[[tables]]\nname = \"items\"\npath = \"items.csv\"\n\
         [tables.columns.sku]\ntype = \"text\"\n[tables.columns.amount]\ntype = \"decimal(18,4)\"\n\
         [tables.columns.sold_at]\ntype = \"timestamptz\"\n",
    );
    let c = FilesConnector::connect(&source).unwrap();
    let (batches, _) = read_all(&c, "items", None).await;
    let b = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    use arrow::datatypes::{DataType, TimeUnit};
    let types: Vec<DataType> = b.schema().fields().iter().map(|f| f.data_type().clone()).collect();
    assert_eq!(
        types,
        [
            DataType::Utf8,
            DataType::Decimal128(18, 4),
            DataType::Date32,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            DataType::Utf8
        ]
    );
    assert_eq!(cell(&b, "sku", 0), "007");
    assert_eq!(cell(&b, "amount", 1), "12345678901234.5678", "exact, no float rounding");
    assert_eq!(cell(&b, "sold_at", 0), "2024-02-29T23:59:59Z");

    // A value that is not of the declared type fails the table, naming file and line.
    std::fs::write(
        dir.path().join("items.csv"),
        "sku,amount,sold_on,sold_at\n1,2.5,2024-01-01,2024-01-01\n2,n/a,2024-01-02,2024-01-02\n",
    )
    .unwrap();
    let err = futures::TryStreamExt::try_collect::<Vec<_>>(c.extract("items", None).await.unwrap().batches)
        .await
        .unwrap_err();
    let Error::File { file, problem, .. } = &err else { panic!("{err}") };
    assert!(file.ends_with("items.csv"), "{file}");
    assert!(problem.contains("n/a") && problem.contains("line 3"), "{problem}");

    // A declared column the file does not have is named, with the columns it does have.
    let source = project(
        dir.path(),
        "[[tables]]\nname = \"items\"\npath = \"items.csv\"\n[tables.columns.price]\ntype = \"double\"\n",
    );
    let c = FilesConnector::connect(&source).unwrap();
    let err = c.count("items", None).await.unwrap_err().to_string();
    assert!(err.contains("column `price` has a declared type but the file has no such column"), "{err}");
    assert!(err.contains("sku, amount, sold_on, sold_at"), "{err}");
}

#[tokio::test]
async fn file_urls_are_read_through_the_object_store() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("in/old")).unwrap();
    std::fs::write(dir.path().join("in/b.csv"), "id\n2\n").unwrap();
    std::fs::write(dir.path().join("in/a.csv"), "id\n1\n").unwrap();
    std::fs::write(dir.path().join("in/old/c.csv"), "id\n3\n").unwrap();
    let url = format!("file://{}/in/*.csv", dir.path().display());
    let source = project(dir.path(), &format!("[[tables]]\nname = \"t\"\npath = \"{url}\"\n"));
    let c = FilesConnector::connect(&source).unwrap();
    // `*` does not reach into `old/`; names are relative to the pattern's folder.
    assert_eq!(c.list_files("t").await.unwrap().unwrap(), ["a.csv", "b.csv"]);
    assert_eq!(c.count("t", None).await.unwrap(), 2);
    let (batches, _) = read_all(&c, "t", None).await;
    let b = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    assert_eq!(
        (cell(&b, "id", 0), cell(&b, "_file", 0), cell(&b, "_file", 1)),
        ("1".into(), "a.csv".into(), "b.csv".into())
    );
    let (extract, rows) = c.extract_files("t", &["b.csv".to_string()]).await.unwrap();
    assert_eq!(rows, 1);
    let only: Vec<_> = futures::TryStreamExt::try_collect(extract.batches).await.unwrap();
    assert_eq!(cell(&only[0], "id", 0), "2");
}

/// An object is downloaded once per run: the copy made to count its rows is the one read (so
/// the rows counted are the rows landed, even if the object is replaced meanwhile), and it is
/// not kept after the read. A Parquet object is counted and described from its footer alone.
#[tokio::test]
async fn objects_are_downloaded_once_and_parquet_is_counted_from_its_footer() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("in/a.csv"), "id\n1\n2\n").unwrap();
    let batch = arrow::array::RecordBatch::try_from_iter([(
        "v",
        std::sync::Arc::new(arrow::array::Int64Array::from(vec![10, 20, 30])) as arrow::array::ArrayRef,
    )])
    .unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(dir.path().join("in/p.parquet")).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    std::fs::write(dir.path().join("in/broken.parquet"), "PAR").unwrap();
    let root = dir.path().display();
    let source = project(
        dir.path(),
        &format!(
            "[[tables]]\nname = \"t\"\npath = \"file://{root}/in/*.csv\"\n\n\
             [[tables]]\nname = \"p\"\npath = \"file://{root}/in/p.parquet\"\n\n\
             [[tables]]\nname = \"broken\"\npath = \"file://{root}/in/broken.parquet\"\n"
        ),
    );
    let c = FilesConnector::connect(&source).unwrap();
    assert_eq!(c.count("t", None).await.unwrap(), 2);
    // Replaced after counting: the run reads what it counted.
    std::fs::write(dir.path().join("in/a.csv"), "id\n9\n").unwrap();
    let (batches, _) = read_all(&c, "t", None).await;
    let ids: Vec<String> = batches.iter().flat_map(|b| (0..b.num_rows()).map(|r| cell(b, "id", r))).collect();
    assert_eq!(ids, ["1", "2"], "the counted copy is the one read");
    // That copy was removed once read: the next read downloads the object as it is now.
    let (batches, _) = read_all(&c, "t", None).await;
    assert_eq!(cell(&batches[0], "id", 0), "9");
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name().to_string_lossy().starts_with("basin-") && e.path().extension().is_some_and(|x| x == "csv")
        })
        .filter(|e| std::fs::read_to_string(e.path()).is_ok_and(|s| s == "id\n1\n2\n"))
        .collect();
    assert!(left.is_empty(), "a read copy is not left behind: {left:?}");

    assert_eq!(c.count("p", None).await.unwrap(), 3, "from the footer");
    let (p, _) = read_all(&c, "p", None).await;
    assert_eq!(
        (p[0].schema().field(0).data_type().clone(), cell(&p[0], "v", 2)),
        (arrow::datatypes::DataType::Int64, "30".into())
    );
    let err = c.count("broken", None).await.unwrap_err().to_string();
    assert!(err.contains("broken.parquet") && err.contains("not a Parquet file"), "{err}");
}
