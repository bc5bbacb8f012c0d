//! A project with one source pointing at a throwaway database, and helpers to read it back.

use std::sync::atomic::Ordering;

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use arrow::util::display::array_value_to_string;
use basin_connectors::{Connector, Window};
use basin_core::Project;
use basin_core::source::Source;
use basin_testkit::TestDb;
use futures::TryStreamExt;

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub source: Source,
}

/// A source named `app` of the database's kind, with extra TOML lines.
pub fn source(db: &TestDb, extra: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("basin.toml"), "[project]\nname = \"t\"\n").unwrap();
    std::fs::create_dir_all(dir.path().join("sources")).unwrap();
    std::fs::write(
        dir.path().join("sources/app.toml"),
        format!("kind = \"{}\"\nurl = \"{}\"\n{extra}\n", db.server.kind(), db.url),
    )
    .unwrap();
    let (project, _) = Project::load_valid(dir.path()).unwrap();
    let source = project.sources["app"].clone();
    Fixture { _dir: dir, source }
}

/// Every batch of a table, and the zero dates counted.
pub async fn read_all(connector: &dyn Connector, table: &str, window: Option<&Window>) -> (Vec<RecordBatch>, u64) {
    let extract = connector.extract(table, window).await.unwrap_or_else(|e| panic!("{e}: {:?}", e));
    let zero = extract.zero_dates.clone();
    let batches: Vec<RecordBatch> = extract.batches.try_collect().await.unwrap_or_else(|e| panic!("{e}: {:?}", e));
    (batches, zero.load(Ordering::Relaxed))
}

/// Column `name` of row `row` as Arrow displays it ("" for NULL); UTC timestamps end in `Z`.
pub fn cell(batch: &RecordBatch, name: &str, row: usize) -> String {
    let column = batch.column_by_name(name).unwrap_or_else(|| panic!("no column {name}"));
    if column.is_null(row) {
        return String::new();
    }
    if let DataType::Timestamp(unit, Some(tz)) = column.data_type() {
        assert_eq!(tz.as_ref(), "UTC");
        let naive = arrow::compute::cast(column, &DataType::Timestamp(*unit, None)).unwrap();
        return format!("{}Z", array_value_to_string(&naive, row).unwrap());
    }
    array_value_to_string(column, row).unwrap()
}

/// Read the first batch of `table`, kill the session reading it with `needle`, and return the
/// error the rest of the read ends with (it must not end as if complete).
pub async fn killed_mid_stream(
    connector: &dyn Connector,
    db: &TestDb,
    table: &str,
    needle: &str,
) -> basin_connectors::Error {
    let mut extract = connector.extract(table, None).await.unwrap();
    let first = futures::StreamExt::next(&mut extract.batches).await.unwrap().unwrap();
    assert!(first.num_rows() > 0);
    assert_eq!(db.kill_sessions_running(needle).await, 1, "the reading session is found and killed");
    while let Some(b) = futures::StreamExt::next(&mut extract.batches).await {
        if let Err(e) = b {
            return e;
        }
    }
    panic!("the read ended as if complete after its session was killed");
}
