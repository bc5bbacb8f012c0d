//! Incremental models that read only what changed, on real MariaDB and PostgreSQL sources: an
//! incremental model over a bronze increment reads the new rows only (counted), equals a full
//! rebuild of the same SQL night after night, commits nothing when nothing changed, and reads
//! everything again under `--full-refresh`.

use basin_testkit::{Server, TestDb};

use crate::support::Basin;

const ENRICHED: &str = "/* basin
materialized = \"incremental\"
unique_key = \"id\"
incremental_from = \"bronze_current.shop__orders\"
*/
SELECT o.id, o.customer_id, c.name AS customer, o.amount, o.updated_at
FROM bronze_current.shop__orders o
LEFT JOIN bronze_current.shop__customer c ON c.id = o.customer_id";

const GOLD_HEADER: &str = "/* basin\nmaterialized = \"incremental\"\nunique_key = \"id\"\n*/\n";
const GOLD: &str = "SELECT id, customer, amount * 2 AS doubled FROM silver.orders_enriched";

/// `read the 8 new rows of bronze.shop__orders …` in the line of `model`: the rows read.
fn rows_read(stdout: &str, model: &str) -> Option<u64> {
    let line = stdout.lines().find(|l| l.starts_with("ok") && l.contains(model))?;
    let at = line.find("; read the ")? + "; read the ".len();
    line[at..].split_whitespace().next()?.parse().ok()
}

async fn night_after_night(server: Server) {
    let Some(db) = TestDb::create(server, "incr").await else { return };
    let ts = if server == Server::Mysql { "DATETIME" } else { "TIMESTAMP" };
    db.execute(&[
        "CREATE TABLE customer (id INT PRIMARY KEY, name VARCHAR(40))",
        "INSERT INTO customer VALUES (1, 'Acme'), (2, 'Globex')",
        &format!("CREATE TABLE orders (id INT PRIMARY KEY, customer_id INT, amount DECIMAL(12,2), updated_at {ts})"),
    ])
    .await;
    let mut next_id = 1;
    let mut insert = |n: usize, night: u32| {
        let rows: Vec<String> = (0..n)
            .map(|i| {
                next_id += 1;
                format!("({}, {}, {}.50, '2024-03-0{night} 0{}:00:00')", next_id - 1, 1 + (next_id % 2), next_id, i % 9)
            })
            .collect();
        format!("INSERT INTO orders VALUES {}", rows.join(", "))
    };
    db.execute(&[&insert(40, 1)]).await;

    let b = Basin::empty();
    b.write(
        "sources/shop.toml",
        "kind = \"KIND\"\nurl = \"URL\"\n\n[[tables]]\nname = \"customer\"\n\n\
         [[tables]]\nname = \"orders\"\nmode = \"incremental\"\ncursor = \"updated_at\"\nprimary_key = [\"id\"]\n"
            .replace("KIND", server.kind())
            .replace("URL", &db.url)
            .as_str(),
    );
    b.write("models/silver/orders_enriched.sql", ENRICHED);
    // A model over the MERGE-updated silver table: read through its change data feed.
    b.write("models/gold/order_amounts.sql", &format!("{GOLD_HEADER}{GOLD}"));
    b.write("models/gold/order_amounts_rebuilt.sql", GOLD);
    // The same query rebuilt whole every night: what the incremental model must equal.
    b.write("models/silver/orders_rebuilt.sql", ENRICHED.split("*/").nth(1).unwrap());
    let run = |args: &[&str]| {
        let out = b.command(args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{args:?}\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        stdout
    };
    let same = || {
        let differ = b.sql(
            "SELECT COUNT(*) AS n FROM ((SELECT * FROM silver.orders_enriched EXCEPT SELECT * FROM silver.orders_rebuilt) \
             UNION ALL (SELECT * FROM silver.orders_rebuilt EXCEPT SELECT * FROM silver.orders_enriched)) d",
        );
        let rows = b.sql("SELECT COUNT(*) AS n FROM silver.orders_enriched");
        let gold = b.sql(
            "SELECT COUNT(*) AS n FROM ((SELECT * FROM gold.order_amounts EXCEPT SELECT * FROM gold.order_amounts_rebuilt) \
             UNION ALL (SELECT * FROM gold.order_amounts_rebuilt EXCEPT SELECT * FROM gold.order_amounts)) d",
        );
        assert_eq!(gold, ["n", "0"], "the model over the MERGE-updated table equals its rebuild");
        (differ, rows)
    };

    let first = run(&["run"]);
    assert!(first.contains("read bronze.shop__orders whole at version") && first.contains(": first build"), "{first}");
    assert_eq!(same(), (vec!["n".to_string(), "0".into()], vec!["n".to_string(), "40".into()]));

    let mut total = 40;
    for night in 2..=5u32 {
        // Three orders change (one moves to the other customer), five are new.
        let changed = night as usize * 3;
        db.execute(&[
            &format!(
                "UPDATE orders SET amount = amount + 1, customer_id = 3 - customer_id, updated_at = '2024-03-0{night} 10:00:00' \
                 WHERE id IN ({}, {}, {})",
                changed,
                changed + 1,
                changed + 2
            ),
            &insert(5, night),
        ])
        .await;
        total += 5;
        let out = run(&["run"]);
        assert!(out.contains("merged: 5 inserted, 3 updated"), "night {night}\n{out}");
        assert_eq!(rows_read(&out, "silver.orders_enriched"), Some(8), "night {night}: only the changes\n{out}");
        let gold =
            out.lines().find(|l| l.starts_with("ok") && l.contains("gold.order_amounts") && !l.contains("rebuilt"));
        let gold = gold.unwrap_or_default();
        assert!(
            gold.contains("merged: 5 inserted, 3 updated")
                && gold.contains("read the changed rows of silver.orders_enriched (version"),
            "night {night}: gold reads silver's change data feed\n{out}"
        );
        assert_eq!(
            same(),
            (vec!["n".to_string(), "0".into()], vec!["n".to_string(), total.to_string()]),
            "night {night}"
        );
    }

    // `basin plan` says what the next build reads: the versions it gained since the last one.
    db.execute(&[&insert(2, 6)]).await;
    run(&["ingest", "shop"]);
    let plan = run(&["plan", "silver.orders_enriched"]);
    assert!(plan.contains("read the 2 new rows of bronze.shop__orders (version"), "{plan}");
    let plan = run(&["plan", "silver.orders_enriched", "--full-refresh"]);
    assert!(plan.contains("read bronze.shop__orders whole") && plan.contains("--full-refresh"), "{plan}");
    run(&["run"]);
    total += 2;

    // A night without changes reads nothing and commits nothing.
    let log = b.path().join("lake/silver/orders_enriched/_delta_log");
    let version = || {
        std::fs::read_dir(&log)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "json"))
            .count()
    };
    let before = version();
    let quiet = run(&["run"]);
    assert!(quiet.contains("no new data"), "{quiet}");
    assert_eq!(rows_read(&quiet, "silver.orders_enriched"), Some(0), "{quiet}");
    assert_eq!(version(), before);

    // `--full-refresh` reads the input whole and rebuilds the same rows, past the guardrail.
    let full = run(&["run", "silver.orders_enriched", "--full-refresh"]);
    assert!(full.contains("read bronze.shop__orders whole") && full.contains("--full-refresh"), "{full}");
    assert_eq!(same(), (vec!["n".to_string(), "0".into()], vec!["n".to_string(), total.to_string()]));
}

#[tokio::test]
async fn an_incremental_model_reads_only_new_rows_from_mariadb() {
    night_after_night(Server::Mysql).await;
}

#[tokio::test]
async fn an_incremental_model_reads_only_new_rows_from_postgres() {
    night_after_night(Server::Postgres).await;
}

#[test]
fn incremental_from_names_a_table_the_incremental_query_reads() {
    let b = Basin::empty();
    b.write(
        "models/silver/a.sql",
        "/* basin\nmaterialized = \"incremental\"\nunique_key = \"id\"\nincremental_from = \"silver.nope\"\n*/\nSELECT id FROM silver.b",
    )
    .write("models/silver/b.sql", "SELECT 1 AS id")
    .write("models/silver/c.sql", "/* basin\nincremental_from = \"silver.b\"\n*/\nSELECT id FROM silver.b");
    let ran = b.cmd(&["validate"]);
    assert!(!ran.ok, "{}", ran.stderr);
    assert!(
        ran.stderr.contains(
            "models/silver/a.sql:4:1: error: `incremental_from` names `silver.nope`, which the query does not read\n  \
             hint: the query reads silver.b"
        ),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("models/silver/c.sql:2:1: error: `incremental_from` is a setting of incremental models"),
        "{}",
        ran.stderr
    );
}

#[test]
fn duplicate_or_null_unique_keys_are_refused_before_any_commit() {
    let b = Basin::empty();
    let model = |sql: &str| format!("/* basin\nmaterialized = \"incremental\"\nunique_key = \"id\"\n*/\n{sql}");
    // A first build with two rows of key 1 and of key 2: nothing is created.
    b.write("models/silver/m.sql", &model("SELECT value % 3 AS id, value AS v FROM generate_series(1, 5)"));
    let ran = b.cmd(&["run"]);
    assert!(!ran.ok);
    assert!(
        ran.stdout.contains("do not have one row per unique_key [id]")
            && ran.stdout.contains("id=1 (2 rows)")
            && ran.stdout.contains("id=2 (2 rows)")
            && ran.stdout.contains("nothing was committed"),
        "{}",
        ran.stdout
    );
    assert!(!b.path().join("lake/silver/m").exists(), "nothing was written");
    let runs = b.cmd(&["runs", "--limit", "1"]).success().stdout;
    assert!(runs.contains("bad_data"), "{runs}");

    // A good first build, then a NULL key in what would be merged: refused, table unchanged.
    b.write("models/silver/m.sql", &model("SELECT value AS id, value AS v FROM generate_series(1, 3)"));
    b.cmd(&["run"]).success();
    b.write(
        "models/silver/m.sql",
        &model("SELECT CASE WHEN value = 2 THEN NULL ELSE value END AS id, value * 10 AS v FROM generate_series(1, 3)"),
    );
    let ran = b.cmd(&["run"]);
    assert!(!ran.ok && ran.stdout.contains("id=NULL (1 row)"), "{}", ran.stdout);
    assert_eq!(b.sql("SELECT id, v FROM silver.m ORDER BY id"), ["id,v", "1,1", "2,2", "3,3"]);
}

/// `dedupe = "latest"` keeps the row with the greatest `updated_at` of each key, the same row
/// whatever order the rows come in (ties broken by the other columns), on the first build and
/// on a MERGE; a NULL key is still refused; the setting is checked by `validate`.
#[test]
fn dedupe_latest_keeps_one_row_per_key_deterministically() {
    let b = Basin::empty();
    let model = |sql: &str| {
        format!(
            "/* basin\nmaterialized = \"incremental\"\nunique_key = \"id\"\ndedupe = \"latest\"\n\
             updated_at = \"changed\"\n*/\n{sql}"
        )
    };
    // Key 1: three versions, the latest on day 3. Key 2: two rows of the same day, `v` breaks
    // the tie (the greater wins).
    let rows = "(1, 'a', 1), (1, 'c', 3), (1, 'b', 2), (2, 'x', 5), (2, 'y', 5), (3, 'z', NULL)";
    b.write(
        "models/silver/m.sql",
        &model(&format!("SELECT id, v, changed FROM (VALUES {rows}) AS t(id, v, changed) ORDER BY v DESC")),
    );
    b.cmd(&["run"]).success();
    assert_eq!(b.sql("SELECT id, v, changed FROM silver.m ORDER BY id"), ["id,v,changed", "1,c,3", "2,y,5", "3,z,"]);
    // The same rows in another order: the same table.
    b.write(
        "models/silver/m.sql",
        &model(&format!("SELECT id, v, changed FROM (VALUES {rows}) AS t(id, v, changed) ORDER BY v ASC")),
    );
    b.cmd(&["run", "--full-refresh"]).success();
    assert_eq!(b.sql("SELECT id, v, changed FROM silver.m ORDER BY id"), ["id,v,changed", "1,c,3", "2,y,5", "3,z,"]);
    // A MERGE of new versions: the latest of them replaces the row.
    b.write(
        "models/silver/m.sql",
        &model("SELECT id, v, changed FROM (VALUES (1, 'e', 5), (1, 'd', 4)) AS t(id, v, changed)"),
    );
    b.cmd(&["run"]).success();
    assert_eq!(b.sql("SELECT id, v FROM silver.m ORDER BY id"), ["id,v", "1,e", "2,y", "3,z"]);
    // A NULL key is not a key to dedupe: refused.
    b.write(
        "models/silver/m.sql",
        &model("SELECT id, v, changed FROM (VALUES (CAST(NULL AS BIGINT), 'n', 9)) AS t(id, v, changed)"),
    );
    let ran = b.cmd(&["run"]);
    assert!(!ran.ok && ran.stdout.contains("id=NULL (1 row)"), "{}", ran.stdout);

    // Without `updated_at`, and on a model that is not incremental: validation says so.
    b.write(
        "models/silver/m.sql",
        "/* basin\nmaterialized = \"incremental\"\nunique_key = \"id\"\ndedupe = \"latest\"\n*/\nSELECT 1 AS id",
    );
    b.write("models/silver/t.sql", "/* basin\ndedupe = \"latest\"\n*/\nSELECT 1 AS id");
    let ran = b.cmd(&["validate"]);
    assert!(!ran.ok);
    assert!(
        ran.stderr.contains("models/silver/m.sql:4:1: error: `dedupe = \"latest\"` needs `updated_at`"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("models/silver/t.sql:2:1: error: `dedupe` is a setting of incremental models"),
        "{}",
        ran.stderr
    );
}

/// A hand-written incremental filter: `$this` is the model's own table and `$is_incremental`
/// says whether this build merges into it. The filter reads only rows newer than the table's
/// high-water mark on an incremental build; on the first build and under `--full-refresh`
/// `$this` is empty and the flag false, so everything is read and the guardrail has nothing to
/// refuse. Night after night the table equals a full rebuild of the same rows.
async fn this_and_is_incremental(server: Server) {
    let Some(db) = TestDb::create(server, "this").await else { return };
    let ts = if server == Server::Mysql { "DATETIME" } else { "TIMESTAMP" };
    db.execute(&[
        &format!("CREATE TABLE orders (id INT PRIMARY KEY, amount INT, updated_at {ts})"),
        "INSERT INTO orders VALUES (1, 10, '2024-03-01 01:00:00'), (2, 20, '2024-03-01 02:00:00'), \
         (3, 30, '2024-03-01 03:00:00')",
    ])
    .await;
    let b = Basin::empty();
    b.write(
        "sources/shop.toml",
        &format!(
            "kind = \"{}\"\nurl = \"{}\"\n\n[[tables]]\nname = \"orders\"\nmode = \"incremental\"\n\
             cursor = \"updated_at\"\nprimary_key = [\"id\"]\nlag = \"0s\"\n",
            server.kind(),
            db.url
        ),
    )
    .write(
        "models/silver/orders.sql",
        "/* basin\nmaterialized = \"incremental\"\nunique_key = \"id\"\nincremental_from = []\n*/\n\
         SELECT id, amount, updated_at FROM bronze_current.shop__orders\n\
         WHERE NOT $is_incremental OR updated_at > (SELECT MAX(updated_at) FROM $this)",
    )
    .write("models/silver/orders_full.sql", "SELECT id, amount, updated_at FROM bronze_current.shop__orders");
    let same = |b: &Basin| {
        let q = |t: &str| b.sql(&format!("SELECT id, amount, updated_at FROM silver.{t} ORDER BY id"));
        assert_eq!(q("orders"), q("orders_full"));
    };
    // The first build: `$this` does not exist yet, and everything is read.
    b.cmd(&["run"]).success();
    same(&b);
    assert_eq!(b.sql("SELECT COUNT(*) FROM silver.orders"), ["count(*)", "3"]);

    // Night 2: one new row, one updated; only those two are merged.
    db.execute(&[
        "INSERT INTO orders VALUES (4, 40, '2024-03-02 01:00:00')",
        "UPDATE orders SET amount = 21, updated_at = '2024-03-02 02:00:00' WHERE id = 2",
    ])
    .await;
    let ran = b.cmd(&["run"]).success();
    assert!(ran.stdout.contains("merged: 1 inserted, 1 updated"), "{}", ran.stdout);
    same(&b);

    // Nothing new: nothing merged.
    let ran = b.cmd(&["run"]).success();
    assert!(ran.stdout.contains("merged: 0 inserted, 0 updated"), "{}", ran.stdout);

    // A full refresh reads everything again (the filter is off), and is not refused.
    let ran = b.cmd(&["run", "silver.orders", "--full-refresh"]).success();
    assert!(!ran.stdout.contains("refused"), "{}", ran.stdout);
    same(&b);
    assert_eq!(b.sql("SELECT COUNT(*) FROM silver.orders"), ["count(*)", "4"]);
    // `validate` plans the model against its table.
    b.cmd(&["validate"]).success();
}

#[tokio::test]
async fn this_and_is_incremental_on_mariadb() {
    this_and_is_incremental(Server::Mysql).await;
}

#[tokio::test]
async fn this_and_is_incremental_on_postgres() {
    this_and_is_incremental(Server::Postgres).await;
}

/// `$this` is refused on a model that is not incremental; before the first build `validate`
/// plans it against an empty table of the columns it reads, and reports mistakes at their
/// place in the file.
#[test]
fn this_is_validated() {
    let b = Basin::empty();
    b.write("models/silver/src.sql", "SELECT 1 AS id, TIMESTAMP '2024-01-01 00:00:00' AS changed")
        .write("models/silver/t.sql", "SELECT * FROM silver.src WHERE changed > (SELECT MAX(changed) FROM $this)")
        .write(
            "models/silver/i.sql",
            "/* basin\nmaterialized = \"incremental\"\nunique_key = \"id\"\n*/\nSELECT id, changed FROM silver.src\n\
             WHERE NOT $is_incremental OR chnged > (SELECT MAX(changed) FROM $this)",
        );
    let ran = b.cmd(&["validate"]);
    assert!(!ran.ok);
    assert!(
        ran.stderr
            .contains("models/silver/t.sql:1:68: error: `$this` and `$is_incremental` are for incremental models"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr
            .contains("models/silver/i.sql:6:30: error: unknown column `chnged`\n  hint: did you mean `changed`?"),
        "{}",
        ran.stderr
    );
    b.write(
        "models/silver/i.sql",
        "/* basin\nmaterialized = \"incremental\"\nunique_key = \"id\"\n*/\nSELECT id, changed FROM silver.src\n\
         WHERE NOT $is_incremental OR changed > (SELECT MAX(changed) FROM $this)",
    );
    std::fs::remove_file(b.path().join("models/silver/t.sql")).unwrap();
    b.cmd(&["validate"]).success();
    b.cmd(&["run"]).success();
    assert_eq!(b.sql("SELECT id FROM silver.i"), ["id", "1"]);
    b.cmd(&["validate"]).success();
}
