//! Rows deleted in the source leave the lake's current state, on real MariaDB and PostgreSQL:
//! a key snapshot (`deletes = "key_snapshot"`) lands tombstones for keys the source no longer
//! has, a soft-delete column (`deletes = { soft = "deleted_at" }`) marks them; either way
//! `bronze_current` leaves them out, an incremental MERGE model deletes their rows (reading
//! only the changes) and an scd2 model closes them, while bronze keeps every row it landed.

use basin_testkit::{Server, TestDb};

use crate::support::Basin;

const CUSTOMERS: &str = "/* basin
materialized = \"incremental\"
unique_key = \"id\"
*/
SELECT id, name, UPPER(name) AS shout FROM bronze_current.shop__customers";

const HISTORY: &str = "/* basin
materialized = \"scd2\"
unique_key = \"id\"
*/
SELECT id, name FROM bronze_current.shop__customers";

const ORDERS: &str = "/* basin
materialized = \"incremental\"
unique_key = \"id\"
*/
SELECT id, customer_id, amount FROM bronze_current.shop__orders";

async fn deletes_reach_every_layer(server: Server) {
    let Some(db) = TestDb::create(server, "deletes").await else { return };
    let ts = if server == Server::Mysql { "DATETIME" } else { "TIMESTAMP" };
    let customers: Vec<String> = (1..=10).map(|i| format!("({i}, 'c{i}', '2024-03-01 01:00:00')")).collect();
    let orders: Vec<String> =
        (1..=10).map(|i| format!("({i}, {}, {i}.25, '2024-03-01 01:00:00', NULL)", i % 3 + 1)).collect();
    db.execute(&[
        &format!("CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(40), updated_at {ts})"),
        &format!("INSERT INTO customers VALUES {}", customers.join(", ")),
        &format!(
            "CREATE TABLE orders (id INT PRIMARY KEY, customer_id INT, amount DECIMAL(12,2), updated_at {ts}, \
             deleted_at {ts} NULL)"
        ),
        &format!("INSERT INTO orders VALUES {}", orders.join(", ")),
    ])
    .await;
    let b = Basin::empty();
    b.write(
        "sources/shop.toml",
        "kind = \"KIND\"\nurl = \"URL\"\n\n\
         [[tables]]\nname = \"customers\"\nmode = \"incremental\"\ncursor = \"updated_at\"\ndeletes = \"key_snapshot\"\n\
         [[tables.checks]]\ntype = \"reconcile\"\n\n\
         [[tables]]\nname = \"orders\"\nmode = \"incremental\"\ncursor = \"updated_at\"\n\
         deletes = { soft = \"deleted_at\" }\n"
            .replace("KIND", server.kind())
            .replace("URL", &db.url)
            .as_str(),
    );
    b.write("models/silver/customers.sql", CUSTOMERS);
    b.write("models/silver/customers_rebuilt.sql", CUSTOMERS.split("*/").nth(1).unwrap());
    b.write("models/silver/customer_history.sql", HISTORY);
    b.write("models/silver/orders.sql", ORDERS);
    // Over the MERGE-updated silver table: its deletes arrive through the change data feed.
    b.write(
        "models/gold/customers.sql",
        "/* basin\nmaterialized = \"incremental\"\nunique_key = \"id\"\n*/\nSELECT id, shout FROM silver.customers",
    );
    let gold_line = |out: &str| -> String {
        out.lines().find(|l| l.starts_with("ok") && l.contains("gold.customers")).unwrap_or_default().to_string()
    };
    let run = |args: &[&str]| {
        let out = b.command(args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{args:?}\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        stdout
    };
    let ids = |table: &str| -> Vec<String> {
        b.sql(&format!("SELECT id FROM {table} ORDER BY id")).into_iter().skip(1).collect::<Vec<_>>()
    };
    let all: Vec<String> = (1..=10).map(|i| i.to_string()).collect();
    let without =
        |gone: &[u32]| -> Vec<String> { (1..=10u32).filter(|i| !gone.contains(i)).map(|i| i.to_string()).collect() };

    let first = run(&["run"]);
    // The first key snapshot finds every key still there.
    assert!(first.contains("key snapshot: 10 source keys, 0 deleted, 10 current"), "{first}");
    assert_eq!(ids("silver.customers"), all);

    // Night 2: two customers are erased, one renamed; one order is soft-deleted.
    db.execute(&[
        "DELETE FROM customers WHERE id IN (3, 7)",
        "UPDATE customers SET name = 'renamed', updated_at = '2024-03-02 01:00:00' WHERE id = 4",
        "UPDATE orders SET deleted_at = '2024-03-02 02:00:00', updated_at = '2024-03-02 02:00:00' WHERE id = 5",
    ])
    .await;
    let out = run(&["run"]);
    assert!(out.contains("key snapshot: 8 source keys, 2 deleted, 8 current"), "{out}");
    // Reconciliation compares keys where deletes are tracked: rows would not add up.
    let observed = b.sql(
        "SELECT passed, observed FROM basin.check_results WHERE check_name = 'reconcile' ORDER BY at DESC LIMIT 1",
    );
    assert_eq!(observed[1], "true,\"source 8 keys, current state 8 keys\"", "{observed:?}");
    assert_eq!(ids("bronze_current.shop__customers"), without(&[3, 7]));
    // The model deleted the erased customers' rows in its MERGE. The first tombstones added
    // bronze's `_tombstone` column, so this once the model read the table whole.
    assert!(out.contains("merged: 0 inserted, 8 updated, 2 deleted"), "{out}");
    assert!(out.contains("read bronze.shop__customers whole") && out.contains("changed its schema"), "{out}");
    assert_eq!(ids("silver.customers"), without(&[3, 7]));
    assert_eq!(ids("gold.customers"), without(&[3, 7]));
    assert_eq!(
        b.sql(
            "SELECT COUNT(*) AS n FROM ((SELECT * FROM silver.customers EXCEPT SELECT * FROM silver.customers_rebuilt) \
               UNION ALL (SELECT * FROM silver.customers_rebuilt EXCEPT SELECT * FROM silver.customers)) d"
        ),
        vec!["n".to_string(), "0".into()]
    );
    // No column of the merge's own leaks into the model's table.
    assert_eq!(b.sql("SELECT * FROM silver.customers LIMIT 1")[0], "id,name,shout");
    // scd2 closes the deleted keys' current versions and keeps their history.
    assert_eq!(
        b.sql("SELECT id FROM silver.customer_history WHERE NOT is_current ORDER BY id"),
        vec!["id".to_string(), "3".into(), "4".into(), "7".into()]
    );
    assert_eq!(ids("silver.customer_history WHERE is_current"), without(&[3, 7]));
    // The soft-deleted order is gone above bronze.
    assert_eq!(ids("bronze_current.shop__orders"), without(&[5]));
    assert_eq!(ids("silver.orders"), without(&[5]));
    // Bronze keeps every row it landed, and the tombstones.
    assert_eq!(
        b.sql("SELECT COUNT(*) AS n FROM bronze.shop__customers WHERE id IN (3, 7)"),
        vec!["n".to_string(), "4".into()]
    );

    // Night 3: one more erasure, read as changes: the tombstone is the only new row.
    db.execute(&["DELETE FROM customers WHERE id = 9"]).await;
    let out = run(&["run"]);
    assert!(out.contains("key snapshot: 7 source keys, 1 deleted, 7 current"), "{out}");
    assert!(out.contains("merged: 0 inserted, 0 updated, 1 deleted"), "{out}");
    assert!(out.contains("read the 1 new rows of bronze.shop__customers"), "{out}");
    assert_eq!(ids("silver.customers"), without(&[3, 7, 9]));
    let gold = gold_line(&out);
    assert!(gold.contains("merged: 0 inserted, 0 updated, 1 deleted"), "{out}");
    assert!(gold.contains("read the changed rows of silver.customers"), "{out}");
    assert_eq!(ids("gold.customers"), without(&[3, 7, 9]));
    // Night 4: nothing deleted; then an erased customer comes back with a newer cursor.
    let out = run(&["run"]);
    assert!(out.contains("key snapshot: 7 source keys, 0 deleted, 7 current"), "{out}");
    db.execute(&["INSERT INTO customers VALUES (3, 'back', '2024-03-04 01:00:00')"]).await;
    let out = run(&["run"]);
    assert!(out.contains("key snapshot: 8 source keys, 0 deleted, 8 current"), "{out}");
    assert_eq!(ids("bronze_current.shop__customers"), without(&[7, 9]));
    assert_eq!(ids("silver.customers"), without(&[7, 9]));
    assert_eq!(ids("gold.customers"), without(&[7, 9]), "a key deleted and back again");

    // A full refresh builds from the current state: the same rows.
    run(&["run", "silver.customers", "--full-refresh"]);
    assert_eq!(ids("silver.customers"), without(&[7, 9]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_reach_bronze_current_merge_and_scd2_models_on_mariadb() {
    deletes_reach_every_layer(Server::Mysql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_reach_bronze_current_merge_and_scd2_models_on_postgres() {
    deletes_reach_every_layer(Server::Postgres).await;
}

#[test]
fn deletes_settings_are_validated() {
    let b = Basin::empty();
    let source = |table: &str| format!("kind = \"mysql\"\nurl = \"mysql://root@127.0.0.1/x\"\n\n[[tables]]\n{table}\n");
    for (table, error) in [
        ("name = \"customers\"\ndeletes = \"key_snapshot\"", "a `full` table needs no key snapshot"),
        (
            "name = \"orders\"\nmode = \"incremental\"\ncursor = \"updated_at\"\ndeletes = \"everything\"",
            "sources/shop.toml:8:11: error: invalid value in the source: expected `deletes = \"key_snapshot\"`, \
             `{ key_snapshot_every = N }` or `{ soft = \"<column>\" }`",
        ),
        ("name = \"orders\"\nmode = \"incremental\"\ncursor = \"u\"\ndeletes = { key_snapshot_every = 0 }", "expected"),
    ] {
        b.write("sources/shop.toml", &source(table));
        let out = b.cmd(&["validate"]);
        assert!(!out.ok, "{}", out.stdout);
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(all.contains(error), "{table}\n{all}");
    }
}
