//! A way forward from a breaking schema change in the source, on real MariaDB and PostgreSQL:
//! a removed column or a type that no longer fits stops the table with an error that names
//! `--accept-schema-change`; with it the table lands (the removed column NULL from then on, the
//! new type in a column alongside), later runs need no flag, the commit records what was
//! accepted and `basin history` shows it, and the model over the table keeps building.

use basin_testkit::{Server, TestDb};

use crate::support::Basin;

async fn breaking_changes_have_a_way_forward(server: Server, drop_phone: &str, score_as_text: &str) {
    let Some(db) = TestDb::create(server, "drift").await else { return };
    let ts = if server == Server::Mysql { "DATETIME" } else { "TIMESTAMP" };
    db.execute(&[
        &format!(
            "CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(40), phone VARCHAR(20), score INT, \
             updated_at {ts})"
        ),
        "INSERT INTO customers VALUES (1, 'ann', '555-1', 10, '2024-03-01 01:00:00'), \
         (2, 'bob', '555-2', 20, '2024-03-01 01:00:00')",
    ])
    .await;
    let b = Basin::empty();
    b.write(
        "sources/shop.toml",
        "kind = \"KIND\"\nurl = \"URL\"\n\n[[tables]]\nname = \"customers\"\nmode = \"incremental\"\n\
         cursor = \"updated_at\"\nlag = \"0s\"\n"
            .replace("KIND", server.kind())
            .replace("URL", &db.url)
            .as_str(),
    );
    b.write("models/silver/customers.sql", "SELECT id, name, phone FROM bronze_current.shop__customers");
    b.cmd(&["run"]).success();
    let version =
        || b.sql("SELECT MAX(delta_version) FROM basin.materializations WHERE asset = 'bronze.shop__customers'");

    // The source drops a column: the table stops, nothing lands, and the error names the way out.
    db.execute(&[drop_phone, "INSERT INTO customers VALUES (3, 'cy', 30, '2024-03-02 01:00:00')"]).await;
    let before = version();
    let refused = b.cmd(&["ingest", "shop"]);
    assert!(!refused.ok, "{}", refused.stdout);
    let said = format!("{}{}", refused.stdout, refused.stderr);
    assert!(said.contains("column `phone` was removed from the source"), "{said}");
    assert!(said.contains("--accept-schema-change shop.customers"), "the error names the way out: {said}");
    assert_eq!(version(), before, "nothing landed");
    assert_eq!(b.sql("SELECT COUNT(*) FROM bronze.shop__customers"), ["count(*)", "2"]);

    // Accepted: `phone` stays, NULL in the rows landed from now on.
    b.cmd(&["ingest", "shop", "--accept-schema-change", "shop.customers"]).success();
    assert_eq!(
        b.sql("SELECT id, phone FROM bronze_current.shop__customers ORDER BY id"),
        ["id,phone", "1,555-1", "2,555-2", "3,"]
    );
    let history = b.cmd(&["history", "bronze.shop__customers"]).success().stdout;
    assert!(history.contains("schema: column phone removed (accepted: NULL from here on)"), "{history}");
    // The model over it keeps building, and later runs need no flag.
    db.execute(&["INSERT INTO customers VALUES (4, 'di', 40, '2024-03-03 01:00:00')"]).await;
    b.cmd(&["run"]).success();
    assert_eq!(
        b.sql("SELECT id, phone FROM silver.customers ORDER BY id"),
        ["id,phone", "1,555-1", "2,555-2", "3,", "4,"]
    );

    // A type that no longer fits (a number column now holds text): refused the same way, in a
    // run too; accepted, the new values land in `score__v2` and `score` keeps the old ones.
    db.execute(&[
        score_as_text,
        "UPDATE customers SET score = 'high', updated_at = '2024-03-04 01:00:00' WHERE id = 2",
    ])
    .await;
    let refused = b.cmd(&["run"]);
    assert!(!refused.ok);
    let said = format!("{}{}", refused.stdout, refused.stderr);
    assert!(said.contains("column `score` changed type from Int64 to Utf8"), "{said}");
    assert!(said.contains("new column `score__v2`"), "{said}");
    b.cmd(&["run", "--accept-schema-change", "bronze.shop__customers"]).success();
    assert_eq!(
        b.sql("SELECT id, score, score__v2 FROM bronze_current.shop__customers ORDER BY id"),
        ["id,score,score__v2", "1,10,", "2,,high", "3,30,", "4,40,"]
    );
    let history = b.cmd(&["history", "bronze.shop__customers"]).success().stdout;
    assert!(
        history.contains("column score changed type from Int64 to Utf8 (accepted: new values in score__v2)"),
        "{history}"
    );
    db.execute(&["UPDATE customers SET score = 'low', updated_at = '2024-03-05 01:00:00' WHERE id = 1"]).await;
    b.cmd(&["run"]).success();
    assert_eq!(
        b.sql("SELECT score, score__v2 FROM bronze_current.shop__customers WHERE id = 1"),
        ["score,score__v2", ",low"]
    );

    // A name that is no source table is refused before anything runs.
    let bad = b.cmd(&["ingest", "shop", "--accept-schema-change", "nosuch.customers"]);
    assert!(
        !bad.ok && bad.stderr.contains("--accept-schema-change nosuch.customers: name a source table"),
        "{}",
        bad.stderr
    );
}

#[tokio::test]
async fn mysql_breaking_changes_have_a_way_forward() {
    breaking_changes_have_a_way_forward(
        Server::Mysql,
        "ALTER TABLE customers DROP COLUMN phone",
        "ALTER TABLE customers MODIFY score VARCHAR(10)",
    )
    .await;
}

#[tokio::test]
async fn postgres_breaking_changes_have_a_way_forward() {
    breaking_changes_have_a_way_forward(
        Server::Postgres,
        "ALTER TABLE customers DROP COLUMN phone",
        "ALTER TABLE customers ALTER COLUMN score TYPE varchar(10)",
    )
    .await;
}

/// `accept_schema_change = true` on a table: every run lands past a breaking change, without
/// the flag, and records what it accepted.
#[tokio::test]
async fn a_table_set_to_accept_schema_changes_lands_past_them() {
    let Some(db) = TestDb::create(Server::Mysql, "accept").await else { return };
    db.execute(&[
        "CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(40), phone VARCHAR(20))",
        "INSERT INTO customers VALUES (1, 'ann', '555-1')",
    ])
    .await;
    let b = Basin::empty();
    b.write(
        "sources/shop.toml",
        &format!(
            "kind = \"mysql\"\nurl = \"{}\"\n\n[[tables]]\nname = \"customers\"\naccept_schema_change = true\n",
            db.url
        ),
    );
    b.cmd(&["ingest", "shop"]).success();
    db.execute(&["ALTER TABLE customers DROP COLUMN phone", "INSERT INTO customers VALUES (2, 'bob')"]).await;
    b.cmd(&["ingest", "shop"]).success();
    assert_eq!(b.sql("SELECT id, phone FROM bronze_current.shop__customers ORDER BY id"), ["id,phone", "1,", "2,"]);
    let history = b.cmd(&["history", "bronze.shop__customers"]).success().stdout;
    assert!(history.contains("schema: column phone removed (accepted: NULL from here on)"), "{history}");
}
