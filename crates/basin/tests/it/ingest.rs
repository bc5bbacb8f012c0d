//! Ingestion end to end: a real SQLite source, `basin run` and `basin ingest`, bronze read back
//! with `basin sql`.

use sqlx::Connection;

use crate::support::Basin;

async fn exec(db: &std::path::Path, statements: &[&str]) {
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", db.display())).await.unwrap();
    for sql in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
}

fn project() -> (Basin, std::path::PathBuf) {
    let b = Basin::empty();
    let db = b.path().join("billing.db");
    b.write(
        "sources/v3.toml",
        &format!(
            "kind = \"sqlite\"\nurl = \"sqlite://{}\"\n\n[[tables]]\nname = \"customer\"\n\n\
             [[tables]]\nname = \"invoice\"\nmode = \"incremental\"\ncursor = \"updated_at\"\nprimary_key = [\"id\"]\nlag = \"1h\"\n",
            db.display()
        ),
    );
    b.write(
        "models/silver/invoice_totals.sql",
        "SELECT c.name, SUM(i.total) AS total\nFROM bronze.v3__invoice i JOIN bronze.v3__customer c ON c.id = i.customer_id\nGROUP BY c.name",
    );
    (b, db)
}

#[tokio::test]
async fn run_ingests_then_builds_and_increments_never_duplicate() {
    let (b, db) = project();
    exec(
        &db,
        &[
            "CREATE TABLE customer (id INTEGER PRIMARY KEY, name TEXT, created DATE)",
            "INSERT INTO customer VALUES (1, 'Acme', '2024-01-01'), (2, 'Globex', '0000-00-00')",
            "CREATE TABLE invoice (id INTEGER PRIMARY KEY, customer_id INTEGER, total DECIMAL(18,4), updated_at DATETIME)",
            "INSERT INTO invoice VALUES (10, 1, 100.5, '2024-03-01 10:00:00'), (11, 2, 20, '2024-03-01 11:00:00')",
        ],
    )
    .await;

    let plan = b.cmd(&["plan", "+silver.invoice_totals"]).success();
    assert!(plan.stdout.contains("ingest a full snapshot of v3.customer"), "{}", plan.stdout);
    assert!(
        plan.stdout.contains("ingest from v3.invoice where updated_at is past the watermark (minus 3600s lag)"),
        "{}",
        plan.stdout
    );

    let run = b.cmd(&["run", "+silver.invoice_totals"]).success();
    assert!(run.stdout.contains("3 built, 0 failed"), "{}", run.stdout);
    assert!(run.stdout.contains("1 zero date(s) as NULL"), "{}", run.stdout);
    assert_eq!(
        b.sql("SELECT name, total FROM silver.invoice_totals ORDER BY name"),
        vec!["name,total", "Acme,100.5000", "Globex,20.0000"]
    );
    assert_eq!(
        b.sql("SELECT id, _source, _run_id IS NOT NULL AS has_run, CAST(created AS VARCHAR) AS created FROM bronze.v3__customer ORDER BY id"),
        vec!["id,_source,has_run,created", "1,v3,true,2024-01-01", "2,v3,true,"]
    );

    // A change to invoice 10 and a new invoice 12; invoice 11 is re-read in the lag window.
    exec(
        &db,
        &[
            "UPDATE invoice SET total = 150, updated_at = '2024-03-01 11:30:00' WHERE id = 10",
            "INSERT INTO invoice VALUES (12, 1, 7, '2024-03-01 11:45:00')",
        ],
    )
    .await;
    let ingest = b.cmd(&["ingest", "v3.invoice"]).success();
    assert!(ingest.stdout.contains("2 rows landed"), "{}", ingest.stdout);
    assert!(ingest.stdout.contains("watermark updated_at=2024-03-01 11:45:00"), "{}", ingest.stdout);
    assert_eq!(
        b.sql("SELECT id, CAST(updated_at AS VARCHAR) AS u, COUNT(*) AS n FROM bronze.v3__invoice GROUP BY id, updated_at ORDER BY id, u"),
        vec!["id,u,n", "10,2024-03-01T10:00:00,1", "10,2024-03-01T11:30:00,1", "11,2024-03-01T11:00:00,1", "12,2024-03-01T11:45:00,1"]
    );

    // The current state: the latest version of each key, without the metadata columns; a
    // model reading it depends on the bronze table.
    b.write("models/silver/current_invoices.sql", "SELECT id, total FROM bronze_current.v3__invoice");
    let run = b.cmd(&["run", "silver.current_invoices"]).success();
    assert!(run.stdout.contains("1 built"), "{}", run.stdout);
    assert_eq!(
        b.sql("SELECT * FROM silver.current_invoices ORDER BY id"),
        vec!["id,total", "10,150.0000", "11,20.0000", "12,7.0000"]
    );
    let plan = b.cmd(&["plan", "+silver.current_invoices"]).success();
    assert!(plan.stdout.contains("bronze.v3__invoice"), "{}", plan.stdout);

    // A second full snapshot the same day replaces today's, never doubles it.
    exec(&db, &["INSERT INTO customer VALUES (3, 'Initech', '2024-02-02')"]).await;
    b.cmd(&["ingest", "v3"]).success();
    assert_eq!(
        b.sql("SELECT COUNT(*) AS n, COUNT(DISTINCT _run_id) AS runs FROM bronze.v3__customer"),
        vec!["n,runs", "3,1"]
    );
    assert_eq!(
        b.sql("SELECT * FROM bronze_current.v3__customer ORDER BY id"),
        vec!["id,name,created", "1,Acme,2024-01-01", "2,Globex,", "3,Initech,2024-02-02"]
    );

    // An increment with nothing new commits only its watermark: no materialisation is
    // recorded for it (it would set eager models downstream off for nothing). The `ingest v3`
    // above was such an increment for the invoices.
    let materialisations = || async {
        use sqlx::Connection;
        let url = format!("sqlite://{}", b.path().join(".basin/basin.db").display());
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM materializations WHERE asset = 'bronze.v3__invoice'")
            .fetch_one(&mut c)
            .await
            .unwrap();
        n
    };
    let before = materialisations().await;
    assert_eq!(before, 2, "the first run and the increment with rows");
    let again = b.cmd(&["ingest", "v3.invoice"]).success();
    assert!(again.stdout.contains("0 rows landed"), "{}", again.stdout);
    assert_eq!(materialisations().await, before);
}

#[tokio::test]
async fn a_broken_source_fails_alone_and_lands_nothing() {
    let (b, db) = project();
    exec(
        &db,
        &["CREATE TABLE customer (id INTEGER PRIMARY KEY, name TEXT)", "INSERT INTO customer VALUES (1, 'Acme')"],
    )
    .await;
    b.write(
        "sources/gone.toml",
        "kind = \"sqlite\"\nurl = \"sqlite:///nonexistent/dir/x.db\"\n[[tables]]\nname = \"t\"\n",
    );
    // invoice does not exist in the source: that table fails, customer lands.
    let ran = b.cmd(&["ingest", "v3", "gone"]);
    assert!(!ran.ok);
    let line = |k: &str| ran.stdout.lines().find(|l| l.contains(k)).unwrap_or_default().to_string();
    assert!(line("bronze.v3__customer").starts_with("ok"), "{}", ran.stdout);
    assert!(line("bronze.v3__invoice").contains("source `v3` has no table `invoice`"), "{}", ran.stdout);
    assert!(line("bronze.gone__t").contains("cannot connect to source `gone`"), "{}", ran.stdout);
    assert!(ran.stdout.contains("1 ingested, 2 failed"), "{}", ran.stdout);
    assert!(!b.path().join("lake/bronze/v3__invoice").exists() && !b.path().join("lake/bronze/gone__t").exists());
    let unknown = b.command(&["ingest", "nope"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("no source `nope` (sources: gone, v3)"), "{stderr}");
    assert_eq!(unknown.status.code(), Some(2), "a command line naming no source is invalid: {stderr}");
    let unreachable = b.command(&["ingest", "gone"]).output().unwrap();
    assert_eq!(unreachable.status.code(), Some(3), "an unreachable source has its own exit code");
    let landed = b.command(&["ingest", "v3.customer"]).output().unwrap();
    assert_eq!(landed.status.code(), Some(0));
}

#[tokio::test]
async fn json_output_is_the_run_events_and_json_logs_carry_run_and_asset() {
    let (b, db) = project();
    exec(
        &db,
        &["CREATE TABLE customer (id INTEGER PRIMARY KEY, name TEXT)", "INSERT INTO customer VALUES (1, 'Acme')"],
    )
    .await;
    let ran = b
        .command(&["--log-format", "json", "ingest", "v3.customer", "--format", "json"])
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert!(ran.status.success());
    let stdout = String::from_utf8_lossy(&ran.stdout);
    let events: Vec<serde_json::Value> =
        stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let kind = |e: &serde_json::Value| e["event"].as_str().unwrap_or_default().to_string();
    assert_eq!(kind(&events[0]), "run_started", "{stdout}");
    assert_eq!(kind(events.last().unwrap()), "run_finished", "{stdout}");
    assert_eq!(events.last().unwrap()["status"], "success", "{stdout}");
    let landed = events.iter().find(|e| kind(e) == "asset_landed").expect("a landed event");
    assert_eq!((landed["asset"].as_str(), landed["rows"].as_u64()), (Some("bronze.v3__customer"), Some(1)));
    let run_id = events[0]["run_id"].as_str().unwrap().to_string();

    // Logs: every line one JSON object; those inside the asset's work name the run and asset.
    let stderr = String::from_utf8_lossy(&ran.stderr);
    let logs: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {l}")))
        .collect();
    assert!(
        logs.iter().any(|l| l["span"]["run_id"] == run_id.as_str() && l["span"]["asset"] == "bronze.v3__customer"),
        "{stderr}"
    );
}

#[tokio::test]
async fn validate_connect_checks_tables_and_columns() {
    let (b, db) = project();
    exec(
        &db,
        &[
            "CREATE TABLE customer (id INTEGER PRIMARY KEY, name TEXT)",
            "CREATE TABLE invoice (id INTEGER PRIMARY KEY, customer_id INTEGER, total DECIMAL(18,4), changed DATETIME)",
        ],
    )
    .await;
    // Without --connect nothing is checked against the source.
    b.cmd(&["validate"]).success();
    let ran = b.cmd(&["validate", "--connect"]);
    assert!(!ran.ok);
    assert!(
        ran.stderr.contains("sources/v3.toml: error: `cursor` column `updated_at` is not in v3.invoice"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("its columns are: id, customer_id, total, changed"), "{}", ran.stderr);
    b.write(
        "sources/v3.toml",
        &std::fs::read_to_string(b.path().join("sources/v3.toml")).unwrap().replace("updated_at", "changed"),
    );
    b.cmd(&["validate", "--connect"]).success();
}

/// A source table whose name is not a plain identifier lands under a plain bronze name every
/// command can query; two that would meet there are refused, by `validate --connect` and by
/// the ingest (which lands nothing), until one is mapped with `as`.
#[tokio::test]
async fn odd_table_names_land_under_plain_names_and_collisions_are_refused() {
    let b = Basin::empty();
    let db = b.path().join("shop.db");
    exec(
        &db,
        &[
            "CREATE TABLE \"Order Items\" (id INTEGER PRIMARY KEY, qty INTEGER)",
            "INSERT INTO \"Order Items\" VALUES (1, 2), (2, 3)",
            "CREATE TABLE order_items (id INTEGER PRIMARY KEY, qty INTEGER)",
            "INSERT INTO order_items VALUES (7, 1)",
            "CREATE TABLE \"Customer-Notes\" (id INTEGER PRIMARY KEY, note TEXT)",
            "INSERT INTO \"Customer-Notes\" VALUES (1, 'hi')",
        ],
    )
    .await;
    let source = format!("kind = \"sqlite\"\nurl = \"sqlite://{}\"\ninclude = [\"*\"]\n", db.display());
    b.write("sources/shop.toml", &source);
    let ran = b.cmd(&["validate", "--connect"]);
    assert!(!ran.ok);
    assert!(
        ran.stderr.contains("tables `Order Items`, `order_items` would all land as bronze.shop__order_items"),
        "{}",
        ran.stderr
    );
    let ran = b.cmd(&["ingest", "shop"]);
    assert!(!ran.ok);
    assert!(ran.stderr.contains("nothing was ingested"), "{}", ran.stderr);
    assert!(ran.stderr.contains("as = \"order_items_2\""), "{}", ran.stderr);
    assert!(b.files().iter().all(|f| !f.contains("shop__")), "nothing landed: {:?}", b.files());

    b.write(
        "sources/shop.toml",
        &format!("{source}\n[[tables]]\nname = \"Order Items\"\nas = \"order_items_spaced\"\n"),
    );
    b.cmd(&["validate", "--connect"]).success();
    b.cmd(&["ingest", "shop"]).success();
    assert_eq!(b.sql("SELECT SUM(qty) AS q FROM bronze.shop__order_items_spaced"), ["q", "5"]);
    assert_eq!(b.sql("SELECT SUM(qty) AS q FROM bronze.shop__order_items"), ["q", "1"]);
    assert_eq!(b.sql("SELECT note FROM bronze.shop__customer_notes"), ["note", "hi"]);
}

#[tokio::test]
async fn mysql_source_lands_in_bronze_and_a_missing_table_fails_alone() {
    use basin_testkit::{Server, TestDb};
    let Some(db) = TestDb::create(Server::Mysql, "cli").await else { return };
    db.execute(&[
        "SET SESSION sql_mode = ''",
        "CREATE TABLE customer (id INT UNSIGNED PRIMARY KEY, email VARCHAR(100), active TINYINT(1), created DATE)",
        "INSERT INTO customer VALUES (1, 'a@x.io', 1, '2024-01-01'), (2, 'b@x.io', 0, '0000-00-00')",
    ])
    .await;
    let b = Basin::empty();
    // The password comes from the environment; the URL in the file holds no secret.
    b.write(
        "sources/crm.toml",
        "kind = \"mysql\"\nurl = \"${CRM_URL}\"\nretries = 0\n\n[[tables]]\nname = \"customer\"\n\n[[tables]]\nname = \"missing\"\n",
    );
    let ran = b.command(&["ingest", "crm"]).env("CRM_URL", &db.url).output().unwrap();
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert_eq!(ran.status.code(), Some(1), "a failed table fails the command\n{stdout}");
    assert!(stdout.contains("1 zero date(s) as NULL"), "{stdout}");
    assert!(
        stdout.contains("FAILED   bronze.crm__missing") && stdout.contains("source `crm` has no table `missing`"),
        "{stdout}"
    );
    assert!(stdout.contains("1 ingested, 1 failed"), "{stdout}");
    let rows = b
        .command(&[
            "sql",
            "--format",
            "csv",
            "SELECT id, email, active, CAST(created AS VARCHAR) AS created FROM bronze.crm__customer ORDER BY id",
        ])
        .env("CRM_URL", &db.url)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&rows.stdout).lines().collect::<Vec<_>>(),
        ["id,email,active,created", "1,a@x.io,true,2024-01-01", "2,b@x.io,false,"]
    );
}

#[test]
fn csv_files_land_in_bronze_with_their_file_names() {
    let b = Basin::empty();
    b.write("landing/orders_2024-03-01.csv", "id,amount\n1,10.5\n2,20\n");
    b.write("landing/orders_2024-03-02.csv", "id,amount\n3,30.25\n");
    b.write(
        "sources/drop.toml",
        "kind = \"files\"\n\n[[tables]]\nname = \"orders\"\npath = \"landing/orders_*.csv\"\n",
    );
    let ran = b.cmd(&["ingest", "drop"]).success();
    assert!(ran.stdout.contains("source 3 / read 3"), "{}", ran.stdout);
    assert_eq!(
        b.sql("SELECT id, amount, _file LIKE '%orders_2024-03-0_.csv' AS named, _source FROM bronze.drop__orders ORDER BY id"),
        ["id,amount,named,_source", "1,10.5,true,drop", "2,20.0,true,drop", "3,30.25,true,drop"]
    );
}

#[test]
fn a_bad_value_in_a_file_fails_as_bad_data_naming_file_line_and_column() {
    let b = Basin::empty();
    b.write("landing/orders_1.csv", "id,amount\n1,10.5\n");
    b.write(
        "sources/drop.toml",
        "kind = \"files\"\n\n[[tables]]\nname = \"orders\"\npath = \"landing/orders_*.csv\"\nmode = \"incremental\"\n\
         [tables.columns.amount]\ntype = \"decimal(18,4)\"\n",
    );
    b.cmd(&["ingest", "drop"]).success();
    b.write("landing/orders_2.csv", "id,amount\n2,abc\n");
    let ran = b.cmd(&["ingest", "drop"]);
    assert!(!ran.ok);
    assert!(
        ran.stdout.contains("orders_2.csv: `abc` in column `amount` is not a Decimal128(18, 4), at line 2"),
        "{}",
        ran.stdout
    );
    let runs = b.cmd(&["runs", "--limit", "1"]).success().stdout;
    assert!(runs.contains("bad_data: bronze.drop__orders"), "{runs}");
    // Nothing of the bad file landed.
    assert_eq!(b.sql("SELECT COUNT(*) AS n FROM bronze.drop__orders"), ["n", "1"]);
}

#[test]
fn incremental_files_land_each_new_file_once() {
    let b = Basin::empty();
    b.write("landing/cdr_001.jsonl", "{\"call\": 1, \"secs\": 30}\n{\"call\": 2, \"secs\": 45}\n");
    b.write(
        "sources/drop.toml",
        "kind = \"files\"\n\n[[tables]]\nname = \"cdr\"\npath = \"landing/cdr_*.jsonl\"\nmode = \"incremental\"\n",
    );
    let plan = b.cmd(&["plan", "source:drop"]).success();
    assert!(plan.stdout.contains("ingest the files of drop.cdr that no earlier run landed"), "{}", plan.stdout);
    let first = b.cmd(&["ingest", "drop"]).success();
    assert!(first.stdout.contains("new files (1): 2 rows landed"), "{}", first.stdout);
    let again = b.cmd(&["ingest", "drop"]).success();
    assert!(again.stdout.contains("0 rows landed"), "a file is not landed twice: {}", again.stdout);
    b.write("landing/cdr_002.jsonl", "{\"call\": 3, \"secs\": 5}\n");
    let third = b.cmd(&["ingest", "drop"]).success();
    assert!(third.stdout.contains("1 rows landed; source 1 / read 1"), "{}", third.stdout);
    assert_eq!(
        b.sql("SELECT call, secs, _file FROM bronze_current.drop__cdr ORDER BY call"),
        ["call,secs,_file", "1,30,cdr_001.jsonl", "2,45,cdr_001.jsonl", "3,5,cdr_002.jsonl"]
    );
}
