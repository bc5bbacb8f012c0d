//! Ingestion from the real MariaDB and PostgreSQL servers: chunked parallel reads, a
//! connection killed mid-read and retried, a table that is gone, and incremental runs that
//! never duplicate a row.

use std::sync::Arc;
use std::time::Duration;

use basin_core::source::Source;
use basin_engine::Error;
use basin_engine::ingest::{IngestOptions, Progress, ingest_table_retrying};
use basin_testkit::{Server, TestDb};
use chrono::Utc;

use crate::support::{TestProject, query};

/// A project with source `app` on `db`, its `[[tables]]` given in TOML.
fn project(db: &TestDb, tables: &str) -> (TestProject, Source) {
    let p = TestProject::new();
    std::fs::create_dir_all(p.path().join("sources")).unwrap();
    std::fs::write(
        p.path().join("sources/app.toml"),
        format!("kind = \"{}\"\nurl = \"{}\"\n{tables}\n", db.server.kind(), db.url),
    )
    .unwrap();
    let source = p.load().sources["app"].clone();
    (p, source)
}

const FAST_RETRY: IngestOptions = IngestOptions {
    parallel: 3,
    retries: 2,
    retry_delay: Duration::from_millis(50),
    progress: None,
    allow_shrink: false,
    accept_schema_change: false,
};

async fn chunked_reads_land_every_row_once(server: Server, fill: &str) {
    let Some(db) = TestDb::create(server, "chunks").await else { return };
    db.execute(&["CREATE TABLE item (id INT PRIMARY KEY, amount DECIMAL(18,4))", fill]).await;
    let (p, source) = project(&db, "[[tables]]\nname = \"item\"\nchunk_rows = 1000\n");
    let connector = basin_connectors::connect(&source).await.unwrap();
    let lake = p.lake();
    let progress = Arc::new(Progress::default());
    let options = IngestOptions { progress: Some(progress.clone()), ..FAST_RETRY };
    let i = ingest_table_retrying(&lake, connector, &source.tables[0], "r1", Utc::now(), options).await.unwrap();
    assert_eq!(i.chunks, 10, "ids 1..=10000 in chunks of 1000 keys");
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!((load(&progress.rows), load(&progress.chunks_done), load(&progress.chunks)), (10_000, 10, 10));
    assert_eq!(i.rows, 10_000);
    assert_eq!(
        query(&lake, "SELECT COUNT(*), COUNT(DISTINCT id), SUM(amount) FROM bronze.app__item").await,
        ["10000|10000|50005000.0000"]
    );
    // The commit says what it was reconciled against.
    let log =
        std::fs::read_to_string(p.path().join("lake/bronze/app__item/_delta_log/00000000000000000000.json")).unwrap();
    assert!(log.contains(r#""basin.reconciliation":{"source_rows":10000}"#), "{log}");
}

#[tokio::test]
async fn mysql_chunked_reads_land_every_row_once() {
    chunked_reads_land_every_row_once(Server::Mysql, "INSERT INTO item SELECT seq, seq FROM seq_1_to_10000").await;
}

#[tokio::test]
async fn postgres_chunked_reads_land_every_row_once() {
    chunked_reads_land_every_row_once(
        Server::Postgres,
        "INSERT INTO item SELECT g, g FROM generate_series(1, 10000) g",
    )
    .await;
}

/// Kill the sessions reading `needle`, once, while the ingest has landed some of its rows and
/// fewer than `before` (so the read is mid-stream, not done and waiting to be closed).
fn kill_mid_read(
    db: &TestDb,
    needle: &'static str,
    progress: Arc<Progress>,
    before: u64,
) -> tokio::task::JoinHandle<u64> {
    let sessions = db.sessions();
    tokio::spawn(async move {
        for _ in 0..5000 {
            let read = progress.rows.load(std::sync::atomic::Ordering::Relaxed);
            if read > 0 && read < before {
                let n = sessions.kill_running(needle).await;
                if n > 0 {
                    return n;
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        0
    })
}

/// The table is large enough (200 MB) that its read is still running when the killer's poll
/// sees it; the killer only kills a session running the read, while fewer than half of the
/// rows have come.
async fn a_killed_read_is_retried_and_lands_once(server: Server, fill: &str, rows: u64, needle: &'static str) {
    let Some(db) = TestDb::create(server, "retry").await else { return };
    db.execute(&["CREATE TABLE big (id INT PRIMARY KEY, pad VARCHAR(200))", fill]).await;
    let (p, source) = project(&db, "[[tables]]\nname = \"big\"\n");
    let lake = p.lake();
    let table = &source.tables[0];

    // Without retries the table fails, naming source and table, and nothing lands.
    let connector = basin_connectors::connect(&source).await.unwrap();
    let progress = Arc::new(Progress::default());
    let killer = kill_mid_read(&db, needle, progress.clone(), rows / 2);
    let once = IngestOptions { retries: 0, progress: Some(progress.clone()), ..FAST_RETRY.clone() };
    let err = ingest_table_retrying(&lake, connector.clone(), table, "r1", Utc::now(), once).await.unwrap_err();
    assert_eq!(killer.await.unwrap(), 1);
    assert!(matches!(err, Error::Source { .. }), "{err:?}");
    let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(chain.contains("bronze.app__big") && chain.contains("source `app`, table `big`"), "{chain}");
    assert!(!lake.exists(&table.key).await.unwrap(), "nothing landed");

    // With retries, the second attempt lands every row exactly once.
    let killer = kill_mid_read(&db, needle, progress.clone(), rows / 2);
    let retrying = IngestOptions { progress: Some(progress), ..FAST_RETRY };
    let i = ingest_table_retrying(&lake, connector, table, "r2", Utc::now(), retrying).await.unwrap();
    assert_eq!(killer.await.unwrap(), 1);
    assert_eq!((i.attempts, i.rows), (2, rows));
    assert_eq!(
        query(&lake, "SELECT COUNT(DISTINCT id), COUNT(*) FROM bronze.app__big").await,
        [format!("{rows}|{rows}")]
    );
}

// Two workers, as the CLI has: the killer must not wait for the ingest to yield its thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_a_killed_read_is_retried_and_lands_once() {
    a_killed_read_is_retried_and_lands_once(
        Server::Mysql,
        "INSERT INTO big SELECT seq, REPEAT('x', 200) FROM seq_1_to_1000000",
        1_000_000,
        "SELECT `id`, `pad` FROM `big`",
    )
    .await;
}

// Two workers, as the CLI has: the killer must not wait for the ingest to yield its thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_killed_read_is_retried_and_lands_once() {
    a_killed_read_is_retried_and_lands_once(
        Server::Postgres,
        "INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 1000000) g",
        1_000_000,
        "COPY (SELECT \"id\", \"pad\" FROM \"big\"",
    )
    .await;
}

#[tokio::test]
async fn a_table_gone_before_its_read_fails_alone_with_its_name() {
    let Some(db) = TestDb::create(Server::Postgres, "gone").await else { return };
    db.execute(&["CREATE TABLE gone (id int PRIMARY KEY)"]).await;
    let (p, source) = project(&db, "include = [\"*\"]");
    let connector = basin_connectors::connect(&source).await.unwrap();
    let discovered = connector.tables().await.unwrap();
    assert_eq!(discovered, ["gone"]);
    db.execute(&["DROP TABLE gone"]).await;
    let table = source.discovered_table("gone");
    let err = ingest_table_retrying(&p.lake(), connector, &table, "r1", Utc::now(), FAST_RETRY).await.unwrap_err();
    assert_eq!(format!("{}", std::error::Error::source(&err).unwrap()), "source `app` has no table `gone`");
    assert!(!err.is_transient(), "a missing table is not retried");
}

async fn increments_never_duplicate(server: Server, ts: &str, later: &str, watermark: &str) {
    let Some(db) = TestDb::create(server, "incr").await else { return };
    db.execute(&[
        &format!("CREATE TABLE ev (id INT PRIMARY KEY, status VARCHAR(10), updated_at {ts})"),
        "INSERT INTO ev VALUES (1, 'new', '2024-03-01 10:00:00'), (2, 'new', '2024-03-01 10:03:00')",
    ])
    .await;
    let (p, source) = project(
        &db,
        "[[tables]]\nname = \"ev\"\nmode = \"incremental\"\ncursor = \"updated_at\"\nlag = \"5m\"\nchunk_rows = 1",
    );
    let lake = p.lake();
    let connector = basin_connectors::connect(&source).await.unwrap();
    let table = &source.tables[0];
    let first = ingest_table_retrying(&lake, connector.clone(), table, "r1", Utc::now(), FAST_RETRY).await.unwrap();
    assert_eq!(
        (first.rows, first.watermark.unwrap().value.as_str()),
        (2, watermark),
        "the source's MAX(cursor), as its own text"
    );
    // Row 1 changes; row 2 is re-read by the lag window and must not land twice.
    db.execute(&[&format!("UPDATE ev SET status = 'paid', updated_at = '{later}' WHERE id = 1")]).await;
    let second = ingest_table_retrying(&lake, connector, table, "r2", Utc::now(), FAST_RETRY).await.unwrap();
    assert_eq!(second.rows, 1, "only the changed row lands");
    // The window holds both rows (row 2 by the lag), counted while they were read.
    assert_eq!((second.reconciliation.source_rows, second.reconciliation.read_rows), (2, 2));
    assert_eq!(query(&lake, "SELECT id, status FROM bronze_current.app__ev ORDER BY id").await, ["1|paid", "2|new"]);
    assert_eq!(query(&lake, "SELECT COUNT(*) FROM bronze.app__ev").await, ["3"]);
}

#[tokio::test]
async fn mysql_increments_never_duplicate() {
    increments_never_duplicate(Server::Mysql, "DATETIME(6)", "2024-03-01 10:04:00", "2024-03-01 10:03:00.000000").await;
}

#[tokio::test]
async fn postgres_increments_never_duplicate() {
    increments_never_duplicate(Server::Postgres, "timestamptz", "2024-03-01 10:04:00+00", "2024-03-01 10:03:00").await;
}

/// A source that widens columns in place keeps loading, with the change in the commit; one
/// that narrows a column stops the table (nothing lands) until the run allows it.
async fn source_schema_changes(server: Server, widen: &str, narrow: &str) {
    let Some(db) = TestDb::create(server, "drift").await else { return };
    db.execute(&[
        "CREATE TABLE ev (id INT PRIMARY KEY, qty INT, amount DECIMAL(10,2), updated_at TIMESTAMP)",
        "INSERT INTO ev VALUES (1, 7, 12345678.90, '2024-03-01 10:00:00')",
    ])
    .await;
    let (p, source) =
        project(&db, "[[tables]]\nname = \"ev\"\nmode = \"incremental\"\ncursor = \"updated_at\"\nlag = \"0s\"");
    let lake = p.lake();
    let connector = basin_connectors::connect(&source).await.unwrap();
    let table = &source.tables[0];
    let ingest = |run: &'static str, options: IngestOptions| {
        ingest_table_retrying(&lake, connector.clone(), table, run, Utc::now(), options)
    };
    ingest("r1", FAST_RETRY).await.unwrap();
    db.execute(&[widen, "INSERT INTO ev VALUES (2, 3000000000, 98765432101234.56, '2024-03-01 11:00:00', 'wide')"])
        .await;
    assert_eq!(ingest("r2", FAST_RETRY).await.unwrap().rows, 1);
    assert_eq!(
        query(&lake, "SELECT id, qty, amount, note FROM bronze_current.app__ev ORDER BY id").await,
        ["1|7|12345678.90|NULL", "2|3000000000|98765432101234.56|wide"]
    );
    let log =
        std::fs::read_to_string(p.path().join("lake/bronze/app__ev/_delta_log/00000000000000000001.json")).unwrap();
    assert!(log.contains(r#"{"column":"qty","from":"Int32","to":"Int64"}"#), "the widening is recorded: {log}");
    assert!(log.contains(r#""added":[{"column":"note","type":"Utf8"}]"#), "{log}");

    // The server narrows a column only when every value fits.
    db.execute(&[
        "UPDATE ev SET qty = 3 WHERE id = 2",
        narrow,
        "UPDATE ev SET qty = 8, updated_at = '2024-03-01 12:00:00' WHERE id = 1",
    ])
    .await;
    let err = ingest("r3", FAST_RETRY).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains("`qty` narrowed in the source from Int64 to Int32"), "{message}");
    assert!(message.contains("app__ev"), "names the table: {message}");
    assert!(!err.is_transient(), "not retried: the source has to be looked at");
    assert_eq!(lake.table(&p_key()).await.unwrap().unwrap().version(), Some(1), "nothing lands");
    let allowed = IngestOptions { allow_shrink: true, ..FAST_RETRY };
    assert_eq!(ingest("r4", allowed).await.unwrap().rows, 1);
    assert_eq!(query(&lake, "SELECT qty FROM bronze_current.app__ev WHERE id = 1").await, ["8"]);
}

fn p_key() -> basin_core::AssetKey {
    basin_core::AssetKey::parse("bronze.app__ev").unwrap()
}

#[tokio::test]
async fn mysql_source_schema_changes() {
    source_schema_changes(
        Server::Mysql,
        "ALTER TABLE ev MODIFY qty BIGINT, MODIFY amount DECIMAL(16,2), ADD COLUMN note VARCHAR(10)",
        "ALTER TABLE ev MODIFY qty INT",
    )
    .await;
}

#[tokio::test]
async fn postgres_source_schema_changes() {
    source_schema_changes(
        Server::Postgres,
        "ALTER TABLE ev ALTER COLUMN qty TYPE bigint, ALTER COLUMN amount TYPE numeric(16,2), ADD COLUMN note varchar(10)",
        "ALTER TABLE ev ALTER COLUMN qty TYPE int",
    )
    .await;
}

#[tokio::test]
async fn an_interrupted_first_load_resumes_where_it_stopped() {
    let Some(db) = TestDb::create(Server::Mysql, "backfill").await else { return };
    db.execute(&[
        "CREATE TABLE ev (id INT PRIMARY KEY, flag TINYINT(1), updated_at DATETIME)",
        "INSERT INTO ev SELECT seq, 1, '2024-03-01 00:00:00' + INTERVAL seq SECOND FROM seq_1_to_10000",
        // A value the mapping refuses, in the third round of chunks: the load stops there.
        "UPDATE ev SET flag = 5 WHERE id = 4500",
    ])
    .await;
    let (p, source) = project(
        &db,
        "max_connections = 2\n[[tables]]\nname = \"ev\"\nmode = \"incremental\"\ncursor = \"updated_at\"\nchunk_rows = 1000",
    );
    let lake = p.lake();
    let connector = basin_connectors::connect(&source).await.unwrap();
    let table = &source.tables[0];
    let options = IngestOptions { parallel: 2, retries: 0, ..FAST_RETRY };
    let err = ingest_table_retrying(&lake, connector.clone(), table, "r1", Utc::now(), options.clone()).await;
    assert!(err.unwrap_err().to_string().contains("bronze.app__ev"));
    // Two rounds of two chunks landed, each committed with its progress; no watermark yet.
    let progress = basin_engine::bronze::last_backfill(&lake, &table.key).await.unwrap().unwrap();
    assert_eq!((progress.done_below, progress.landed, progress.to.as_str()), (4001, 4000, "2024-03-01 02:46:40"));
    assert!(basin_engine::bronze::last_watermark(&lake, &table.key).await.unwrap().is_none());
    assert_eq!(query(&lake, "SELECT COUNT(*), MAX(id) FROM bronze.app__ev").await, ["4000|4000"]);

    // Fixed at the source, the next run reads only from id 4001 on, and finishes the load.
    db.execute(&["UPDATE ev SET flag = 1 WHERE id = 4500"]).await;
    let done = ingest_table_retrying(&lake, connector, table, "r2", Utc::now(), options).await.unwrap();
    assert_eq!(done.rows, 6000, "only the rest is read");
    assert_eq!((done.reconciliation.source_rows, done.reconciliation.read_rows), (10_000, 10_000));
    assert_eq!(done.watermark.unwrap().value, "2024-03-01 02:46:40");
    assert_eq!(query(&lake, "SELECT COUNT(*), COUNT(DISTINCT id) FROM bronze.app__ev").await, ["10000|10000"]);
    assert!(basin_engine::bronze::last_backfill(&lake, &table.key).await.unwrap().is_none());
}
