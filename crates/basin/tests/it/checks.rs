//! Checks in runs: an `error` check stops everything downstream and says why, `warn` does not,
//! results are stored and queryable, `basin check` judges current data, the guardrail refuses
//! destructive replaces, and `dq_flags` flags rows instead of failing.

use crate::support::Basin;

/// silver.orders (one NULL customer) → gold.by_customer → gold.top: a three-level chain under
/// an `error` check; silver.events → gold.event_days under a failing `warn` check.
fn chain() -> Basin {
    let b = Basin::empty();
    b.write(
        "models/silver/orders.sql",
        "/* basin\n[[checks]]\ntype = \"not_null\"\ncolumns = [\"customer_id\"]\n\n\
         [[checks]]\ntype = \"unique\"\ncolumns = [\"order_id\"]\n*/\n\
         SELECT * FROM (VALUES (1, 10, 5.0), (2, NULL, 7.5), (3, 11, 1.0)) AS t(order_id, customer_id, amount)",
    );
    b.write(
        "models/gold/by_customer.sql",
        "SELECT customer_id, SUM(amount) AS total FROM silver.orders GROUP BY customer_id",
    );
    b.write("models/gold/top.sql", "SELECT MAX(total) AS best FROM gold.by_customer");
    b.write(
        "models/silver/events.sql",
        "/* basin\n[[checks]]\ntype = \"row_count\"\nmin = 100\nseverity = \"warn\"\n*/\n\
         SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS t(id, kind)",
    );
    b.write("models/gold/event_kinds.sql", "SELECT kind, COUNT(*) AS n FROM silver.events GROUP BY kind");
    b
}

#[test]
fn an_error_check_stops_the_chain_below_it_and_a_warn_check_does_not() {
    let b = chain();
    let ran = b.cmd(&["run", "--concurrency", "1"]);
    assert!(!ran.ok, "a failed error check fails the run\n{}\n{}", ran.stdout, ran.stderr);
    let out = format!("{}\n{}", ran.stdout, ran.stderr);
    assert!(
        out.contains("skip   gold.by_customer: upstream check failed: silver.orders not_null(customer_id): 1 row"),
        "{out}"
    );
    assert!(out.contains("skip   gold.top: upstream gold.by_customer was skipped"), "{out}");
    // The warn check is reported, and its downstream built.
    assert!(out.contains("warn   silver.events row_count: 2 rows (allowed >= 100 rows)"), "{out}");
    assert!(b.sql("SELECT n FROM gold.event_kinds ORDER BY kind") == ["n", "1", "1"], "warn does not block");
    // The checked table itself was committed; what reads it was not built.
    assert_eq!(b.sql("SELECT COUNT(*) AS n FROM silver.orders"), ["n", "3"]);
    let missing = b.cmd(&["sql", "SELECT * FROM gold.by_customer"]);
    assert!(!missing.ok, "gold.by_customer must not exist");

    // The run failed as check_failed, and shows its check results with the failing key.
    let runs = b.cmd(&["runs", "--limit", "1"]).success().stdout;
    let id = runs.lines().nth(1).and_then(|l| l.split_whitespace().next()).expect("a run").to_string();
    let show = b.cmd(&["runs", "show", &id]).success().stdout;
    assert!(show.contains("check_failed: silver.orders: check failed: not_null(customer_id): 1 row"), "{show}");
    assert!(show.lines().any(|l| l.starts_with("FAIL") && l.contains("not_null(customer_id)")), "{show}");
    assert!(show.contains("e.g. customer_id=NULL"), "samples name the failing rows: {show}");
    assert!(show.lines().any(|l| l.starts_with("pass") && l.contains("unique(order_id)")), "{show}");

    // Queryable in SQL, with the Delta version checked and the run.
    let rows = b.sql(
        "SELECT asset, check_name, severity, passed, observed, delta_version, run_id IS NOT NULL AS in_run \
         FROM basin.check_results ORDER BY asset, check_name",
    );
    assert_eq!(
        rows,
        [
            "asset,check_name,severity,passed,observed,delta_version,in_run",
            "silver.events,row_count,warn,false,2 rows,0,true",
            "silver.orders,not_null(customer_id),error,false,1 row,0,true",
            "silver.orders,unique(order_id),error,true,0 duplicated key(s) in 0 rows,0,true",
        ]
    );

    // Fixed data: the chain builds, and the check passes on the new version.
    b.write(
        "models/silver/orders.sql",
        "/* basin\n[[checks]]\ntype = \"not_null\"\ncolumns = [\"customer_id\"]\n*/\n\
         SELECT * FROM (VALUES (1, 10, 5.0), (2, 12, 7.5), (3, 11, 1.0)) AS t(order_id, customer_id, amount)",
    );
    b.cmd(&["run"]).success();
    assert_eq!(b.sql("SELECT best FROM gold.top"), ["best", "7.5"]);
    assert_eq!(
        b.sql(
            "SELECT passed, delta_version FROM basin.check_results \
             WHERE check_name = 'not_null(customer_id)' ORDER BY at DESC LIMIT 1"
        ),
        ["passed,delta_version", "true,1"]
    );
}

#[test]
fn basin_check_judges_current_data_without_building() {
    let b = chain();
    let _ = b.cmd(&["run", "silver.orders"]);
    let before = b.cmd(&["history", "silver.orders"]).success().stdout;
    let ran = b.cmd(&["check", "silver.orders", "silver.events"]);
    assert!(!ran.ok, "an error check fails `basin check`: {}", ran.stdout);
    assert!(ran.stdout.lines().any(|l| l.starts_with("FAIL") && l.contains("not_null(customer_id)")), "{}", ran.stdout);
    assert!(ran.stdout.lines().any(|l| l.starts_with("warn") && l.contains("row_count")), "{}", ran.stdout);
    assert!(ran.stdout.contains("3 check(s): 1 passed, 1 failed, 1 warned"), "{}", ran.stdout);
    assert_eq!(b.cmd(&["history", "silver.orders"]).success().stdout, before, "nothing was built");
    // Stored without a run.
    assert_eq!(
        b.sql("SELECT COUNT(*) AS n FROM basin.check_results WHERE run_id IS NULL AND asset = 'silver.events'"),
        ["n", "1"]
    );
    // Only warnings: success.
    b.cmd(&["check", "silver.events"]).success();
}

#[test]
fn the_guardrail_refuses_to_empty_or_halve_a_table_unless_allowed() {
    let b = Basin::empty();
    b.write("models/silver/t.sql", "SELECT value AS v FROM generate_series(1, 10)");
    b.cmd(&["run"]).success();

    // The source went empty: refused before the commit, the table keeps its rows.
    b.write("models/silver/t.sql", "SELECT value AS v FROM generate_series(1, 10) WHERE value > 100");
    let ran = b.cmd(&["run"]);
    assert!(!ran.ok);
    let out = format!("{}{}", ran.stdout, ran.stderr);
    assert!(out.contains("refusing to replace silver.t: it holds 10 rows and the new build has 0"), "{out}");
    assert!(out.contains("--allow-shrink"), "{out}");
    // Its own failure category: a person decides, a retry would be refused the same way.
    let runs = b.cmd(&["runs", "--limit", "1"]).success().stdout;
    assert!(runs.contains("FAILURE") && runs.contains("guardrail"), "{runs}");
    assert_eq!(b.sql("SELECT COUNT(*) AS n FROM silver.t"), ["n", "10"]);
    let history = b.cmd(&["history", "silver.t"]).success().stdout;
    assert_eq!(history.lines().filter(|l| l.trim_start().starts_with(char::is_numeric)).count(), 1, "{history}");

    // Losing 6 of 10 rows is more than the default 50%.
    b.write("models/silver/t.sql", "SELECT value AS v FROM generate_series(1, 4)");
    let ran = b.cmd(&["run"]);
    assert!(!ran.ok && format!("{}{}", ran.stdout, ran.stderr).contains("the new build has 4 (at least 5 must stay"));
    // A model may allow more.
    b.write("models/silver/t.sql", "/* basin\nmax_shrink = 0.7\n*/\nSELECT value AS v FROM generate_series(1, 4)");
    b.cmd(&["run"]).success();
    assert_eq!(b.sql("SELECT COUNT(*) AS n FROM silver.t"), ["n", "4"]);

    // --allow-shrink lets an empty replace through, and says so on the run.
    b.write("models/silver/t.sql", "SELECT value AS v FROM generate_series(1, 10) WHERE value > 100");
    b.cmd(&["run", "--allow-shrink"]).success();
    assert_eq!(b.sql("SELECT COUNT(*) AS n FROM silver.t"), ["n", "0"]);
    let runs = b.cmd(&["runs", "--limit", "1"]).success().stdout;
    let id = runs.lines().nth(1).and_then(|l| l.split_whitespace().next()).unwrap().to_string();
    assert!(b.cmd(&["runs", "show", &id]).success().stdout.contains("allow_shrink=true"));
    // An empty table may grow back.
    b.write("models/silver/t.sql", "SELECT value AS v FROM generate_series(1, 3)");
    b.cmd(&["run"]).success();
}

#[test]
fn dq_flags_mark_failing_rows_instead_of_failing_the_model() {
    let b = Basin::empty();
    b.write("models/silver/customers.sql", "SELECT * FROM (VALUES (10), (11)) AS t(customer_id)");
    b.write(
        "models/silver/orders.sql",
        "/* basin\ndq_flags = true\n\
         [[checks]]\ntype = \"not_null\"\ncolumns = [\"customer_id\"]\n\
         [[checks]]\ntype = \"accepted_values\"\ncolumn = \"status\"\nvalues = [\"paid\", \"open\"]\n\
         [[checks]]\ntype = \"relationships\"\ncolumn = \"customer_id\"\nto = \"silver.customers\"\n\
         [[checks]]\ntype = \"expression\"\nexpression = \"amount >= 0\"\n\
         [[checks]]\ntype = \"row_count\"\nmin = 1\n*/\n\
         SELECT * FROM (VALUES (1, 10, 'paid', 5.0), (2, NULL, 'open', 1.0), (3, 99, 'lost', -2.0), (4, 11, 'open', 3.0)) \
         AS t(order_id, customer_id, status, amount)",
    );
    b.write("models/gold/clean.sql", "SELECT SUM(amount) AS total FROM silver.orders WHERE dq_passed");
    b.cmd(&["run"]).success();
    assert_eq!(
        b.sql("SELECT order_id, dq_passed, dq_failure_reason FROM silver.orders ORDER BY order_id"),
        [
            "order_id,dq_passed,dq_failure_reason",
            "1,true,",
            "2,false,not_null(customer_id)",
            "3,false,accepted_values(status); relationships(customer_id -> silver.customers.customer_id); expression(amount >= 0)",
            "4,true,",
        ]
    );
    assert_eq!(b.sql("SELECT total FROM gold.clean"), ["total", "8.0"]);
    // The table-level check still ran as a check.
    assert_eq!(b.sql("SELECT check_name, passed FROM basin.check_results"), ["check_name,passed", "row_count,true"]);
}

#[tokio::test]
async fn source_table_checks_and_reconcile_run_with_each_ingest() {
    use sqlx::Connection;
    let b = Basin::empty();
    let db = b.path().join("crm.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", db.display())).await.unwrap();
    for sql in [
        "CREATE TABLE customer (id INTEGER PRIMARY KEY, email TEXT)",
        "INSERT INTO customer VALUES (1, 'a@x.io'), (2, NULL), (3, 'c@x.io')",
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
    b.write(
        "sources/crm.toml",
        &format!(
            "kind = \"sqlite\"\nurl = \"sqlite://{}\"\n[[tables]]\nname = \"customer\"\nprimary_key = [\"id\"]\n\
             [[tables.checks]]\ntype = \"not_null\"\ncolumns = [\"email\"]\n",
            db.display()
        ),
    );
    b.write("models/silver/customers.sql", "SELECT id, email FROM bronze_current.crm__customer");
    let ran = b.cmd(&["ingest", "crm"]);
    assert!(!ran.ok, "{}", ran.stdout);
    assert!(ran.stdout.contains("CHECK    bronze.crm__customer"), "{}", ran.stdout);
    assert!(ran.stdout.contains("not_null(email): 1 row"), "{}", ran.stdout);
    assert!(ran.stdout.contains("e.g. id=2"), "samples are keyed by the primary key: {}", ran.stdout);
    // What landed stays landed (bronze keeps what the source said); reconcile passed.
    assert_eq!(b.sql("SELECT COUNT(*) AS n FROM bronze.crm__customer"), ["n", "3"]);
    assert_eq!(
        b.sql("SELECT check_name, passed, observed FROM basin.check_results ORDER BY check_name"),
        ["check_name,passed,observed", "not_null(email),false,1 row", "reconcile,true,\"source 3, read 3\""]
    );
    // The source empties: refused before anything is read, the last snapshot stays current.
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    sqlx::raw_sql("DELETE FROM customer").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let ran = b.cmd(&["ingest", "crm"]);
    assert!(!ran.ok);
    assert!(
        ran.stdout.contains("the source returned no rows for bronze.crm__customer, whose last snapshot had 3"),
        "{}",
        ran.stdout
    );
    assert_eq!(b.sql("SELECT COUNT(*) AS n FROM bronze_current.crm__customer"), ["n", "3"]);
    b.cmd(&["ingest", "crm", "--allow-shrink"]).success();
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    sqlx::raw_sql("INSERT INTO customer VALUES (1, 'a@x.io'), (2, NULL)").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();

    // In a run, the silver model downstream is skipped.
    let ran = b.cmd(&["run", "+silver.customers"]);
    assert!(!ran.ok);
    assert!(
        ran.stderr
            .contains("skip   silver.customers: upstream check failed: bronze.crm__customer not_null(email): 1 row"),
        "{}",
        ran.stderr
    );
}

#[test]
fn max_shrink_outside_zero_to_one_is_refused_where_it_is_written() {
    let b = Basin::empty();
    b.write("basin.toml", "[project]\nname = \"t\"\n[run]\nmax_shrink = 1.5\n");
    b.write("models/silver/t.sql", "/* basin\nmax_shrink = -0.1\n*/\nSELECT 1 AS v");
    let ran = b.cmd(&["validate"]);
    assert!(!ran.ok);
    assert!(
        ran.stderr.contains("basin.toml:4:1: error: `run.max_shrink` is a share of rows from 0 to 1, not 1.5"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("models/silver/t.sql:2:1: error: `max_shrink` is a share of rows from 0 to 1, not -0.1"),
        "{}",
        ran.stderr
    );
}
