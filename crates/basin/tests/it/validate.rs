//! `basin validate` on a project with many planted mistakes reports all of them, each at its
//! place, in one pass.

use basin_testkit::{Server, TestDb};

use crate::support::Basin;

#[test]
fn reports_every_planted_mistake_with_its_location() {
    let b = Basin::empty();
    b.write("basin.toml", "[project]\nname = \"t\"\n\n[run]\nconcurency = 4\n")
        // Header TOML syntax error.
        .write("models/silver/a_syntax.sql", "/* basin\nmaterialized = \n*/\nSELECT 1 AS x")
        // Unknown key with a suggestion, and an unknown materialisation.
        .write("models/silver/b_keys.sql", "/* basin\nmaterialized = \"tabel\"\nownr = \"me\"\n*/\nSELECT 1 AS x")
        // SQL syntax error.
        .write("models/silver/c_sql.sql", "SELECT a,\nFROM silver.b_keys z y")
        // Unknown table with a near name, and an unqualified table.
        .write("models/silver/d_refs.sql", "SELECT *\nFROM silver.b_kyes\nJOIN c_sql ON true")
        // Duplicate asset key through a header override.
        .write("models/gold/e_dup.sql", "/* basin\nschema = \"silver\"\nname = \"d_refs\"\n*/\nSELECT 1 AS x")
        // A cycle of two models.
        .write("models/gold/f_one.sql", "SELECT * FROM gold.f_two")
        .write("models/gold/f_two.sql", "SELECT * FROM gold.f_one")
        // Incremental without a key.
        .write("models/gold/g_inc.sql", "/* basin\nmaterialized = \"incremental\"\n*/\nSELECT 1 AS x");
    let before = b.files();
    let ran = b.cmd(&["validate"]);
    assert!(!ran.ok, "validate must fail");
    assert_eq!(b.files(), before, "validate writes nothing");
    let expected = [
        "basin.toml:5:1: error: unknown key `run.concurency` in basin.toml",
        "  hint: did you mean `concurrency`?",
        "models/gold/e_dup.sql: error: duplicate asset key `silver.d_refs`, also defined by models/silver/d_refs.sql",
        "models/gold/f_one.sql:1:15: error: dependency cycle: gold.f_one → gold.f_two → gold.f_one",
        "models/gold/g_inc.sql:2:1: error: an incremental model needs `unique_key` or `partition_by`",
        "models/silver/a_syntax.sql:2:16: error: TOML syntax error in the model header",
        "models/silver/b_keys.sql:2:16: error: invalid value in the model header: unknown variant `tabel`, expected one of `table`, `view`, `incremental`",
        "models/silver/b_keys.sql:3:1: error: unknown key `ownr` in the model header",
        "  hint: did you mean `owner`?",
        "models/silver/c_sql.sql:2:22: error: SQL syntax error: Expected: end of statement, found: y",
        "models/silver/d_refs.sql:2:6: error: unknown table `silver.b_kyes`",
        "  hint: did you mean `silver.b_keys`?",
        "models/silver/d_refs.sql:3:6: error: table `c_sql` is not schema-qualified",
        "  hint: did you mean `silver.c_sql`?",
    ];
    let mut lines = ran.stderr.lines();
    for want in expected {
        assert!(lines.any(|l| l.starts_with(want)), "missing, or out of order: {want}\n--- stderr\n{}", ran.stderr);
    }
    assert!(ran.stderr.contains("10 error(s), 0 warning(s)"), "{}", ran.stderr);
}

#[test]
fn a_valid_project_validates() {
    let b = Basin::init();
    let ran = b.cmd(&["validate"]).success();
    assert!(ran.stderr.contains("ok: 4 model(s), 0 warning(s)"), "{}", ran.stderr);
}

#[test]
fn missing_environment_variables_are_reported_without_the_secret() {
    let b = Basin::empty();
    b.write(
        "basin.toml",
        "[project]\nname = \"t\"\n[storage]\nroot = \"./lake\"\n[storage.options]\nsecret = \"${BASIN_TEST_UNSET_VAR}\"\ntoken = \"${BASIN_TEST_SET_VAR}\"\n",
    );
    let ran = b.command(&["validate"]).env("BASIN_TEST_SET_VAR", "hunter2").output().unwrap();
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert!(!ran.status.success());
    assert!(stderr.contains("basin.toml:6:"), "{stderr}");
    assert!(
        stderr.contains("`storage.options.secret` uses environment variable `BASIN_TEST_UNSET_VAR`, which is not set"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"));
}

#[test]
fn serving_settings_are_checked_before_anything_listens() {
    let b = Basin::empty();
    b.write(
        "basin.toml",
        "[project]\nname = \"t\"\n\n[serve]\nlisten = \"0.0.0.0:5433\"\nallow_unauthenticated = true\n\
         unauthenticated_role = \"guest\"\n\n[users.ana]\nrole = \"analyts\"\npassword = \"hunter2\"\n\n\
         [roles.analyst]\nselect = [\"gold\", \"silver.a.b\"]\nmask = { \"pii\" = \"scramble\" }\n\
         statement_timeout = \"soon\"\n",
    );
    let ran = b.cmd(&["validate"]);
    assert!(!ran.ok, "validate must fail");
    for problem in [
        "`serve.allow_unauthenticated` is only allowed when both endpoints listen on a loopback address",
        "`serve.unauthenticated_role` names role `guest`, which no `[roles.guest]` defines",
        "`users.ana.role` names role `analyts`, which no `[roles.analyts]` defines",
        "`users.ana.password` is not a SCRAM-SHA-256 verifier; Basin never stores passwords",
        "role `analyst` grants `silver.a.b`, which is not a grant",
        "role `analyst` masks `pii` with `scramble`, which is not a masking function",
        "invalid `roles.analyst.statement_timeout`",
    ] {
        assert!(ran.stderr.contains(problem), "missing: {problem}\n{}", ran.stderr);
    }
    let serve = b.cmd(&["serve"]);
    assert!(!serve.ok && serve.stderr.contains("problem(s)"), "serve refuses the project: {}", serve.stderr);
    // An invalid project has its own exit code, for `validate` and every command it stops.
    for args in [&["validate"][..], &["serve"], &["run"]] {
        let code = b.command(args).output().unwrap().status.code();
        assert_eq!(code, Some(2), "{args:?}");
    }
}

#[test]
fn cluster_by_is_refused_on_a_view() {
    let b = Basin::empty();
    b.write("models/silver/v.sql", "/* basin\nmaterialized = \"view\"\ncluster_by = [\"id\"]\n*/\nSELECT 1 AS id");
    let ran = b.cmd(&["validate"]);
    assert!(!ran.ok);
    assert!(
        ran.stderr.contains("models/silver/v.sql:3:1: error: `cluster_by` has no meaning for a view"),
        "{}",
        ran.stderr
    );
}

/// Two upstream models whose columns validation knows from their SQL alone (nothing built).
fn with_orders_and_customers() -> Basin {
    let b = Basin::empty();
    b.write(
        "models/silver/orders.sql",
        "SELECT 1 AS order_id, 10 AS customer_id, 99.5 AS order_total, DATE '2024-01-01' AS order_date, \
         'open' AS status",
    )
    .write("models/silver/customers.sql", "SELECT 10 AS customer_id, 'Ana' AS name, 'ana@example.com' AS email");
    b
}

/// `basin validate` plans every model against the columns of what it reads, and reports each
/// unknown column, ambiguous reference and type error at its place, all in one pass.
#[test]
fn reports_every_planted_column_mistake_at_its_place() {
    let b = with_orders_and_customers();
    b.write("models/gold/m01_unqualified.sql", "SELECT order_id,\n       ordr_total\nFROM silver.orders")
        .write(
            "models/gold/m02_qualified.sql",
            "/* basin\nowner = \"ana\"\n*/\nSELECT f.order_totl\nFROM silver.orders f",
        )
        .write(
            "models/gold/m03_ambiguous.sql",
            "SELECT customer_id\nFROM silver.orders o\nJOIN silver.customers c ON o.customer_id = c.customer_id",
        )
        .write("models/gold/m04_types.sql", "SELECT order_id,\n  order_date + status AS bumped\nFROM silver.orders")
        .write("models/gold/m05_where.sql", "SELECT order_id\nFROM silver.orders\nWHERE order_dat > DATE '2024-01-01'")
        .write(
            "models/gold/m06_join.sql",
            "SELECT o.order_id\nFROM silver.orders o\nJOIN silver.customers c ON o.customer_id = c.custmer_id",
        )
        // Two mistakes in one SELECT list: both reported.
        .write("models/gold/m07_two.sql", "SELECT nme,\n       emial\nFROM silver.customers")
        .write("models/gold/m08_group.sql", "SELECT customer_id, status\nFROM silver.orders\nGROUP BY customer_id")
        .write("models/gold/m09_function.sql", "SELECT sume(order_total)\nFROM silver.orders")
        // Downstream of a broken model: not reported again.
        .write("models/gold/n_after_broken.sql", "SELECT * FROM gold.m01_unqualified")
        // Correct: a CTE, an aggregate, a join with USING, a model over a model.
        .write(
            "models/gold/ok_totals.sql",
            "WITH t AS (SELECT customer_id, SUM(order_total) AS total FROM silver.orders GROUP BY customer_id)\n\
             SELECT c.name, t.total FROM t JOIN silver.customers c USING (customer_id)",
        )
        .write("models/gold/ok_top.sql", "SELECT name FROM gold.ok_totals WHERE total > 10")
        // An scd2 model's table has its validity columns too.
        .write(
            "models/silver/ok_history.sql",
            "/* basin\nmaterialized = \"scd2\"\nunique_key = \"customer_id\"\n*/\nSELECT * FROM silver.customers",
        )
        .write("models/gold/ok_current.sql", "SELECT name, valid_from FROM silver.ok_history WHERE is_current");
    let before = b.files();
    let ran = b.cmd(&["validate"]);
    assert!(!ran.ok, "validate must fail");
    assert_eq!(b.files(), before, "validate writes nothing");
    let expected = [
        "models/gold/m01_unqualified.sql:2:8: error: unknown column `ordr_total`",
        "  hint: did you mean `order_total`?",
        "models/gold/m02_qualified.sql:4:8: error: unknown column `f.order_totl`",
        "  hint: did you mean `f.order_total`?",
        "models/gold/m03_ambiguous.sql:1:8: error: ambiguous column `customer_id`",
        "  hint: it is in more than one table read here; qualify it: `o.customer_id` or `c.customer_id`",
        "models/gold/m04_types.sql:2:3: error: expressions have incompatible types",
        "  hint: `order_date` has type Date32 (2:3); `status` has type Utf8 (2:16)",
        "models/gold/m05_where.sql:3:7: error: unknown column `order_dat`",
        "  hint: did you mean `order_date`?",
        "models/gold/m06_join.sql:3:44: error: unknown column `c.custmer_id`",
        "  hint: did you mean `c.customer_id`?",
        "models/gold/m07_two.sql:1:8: error: unknown column `nme`",
        "  hint: did you mean `name`?",
        "models/gold/m07_two.sql:2:8: error: unknown column `emial`",
        "  hint: did you mean `email`?",
        "models/gold/m08_group.sql:1:21: error: 'silver.orders.status' must appear in GROUP BY clause",
        "models/gold/m09_function.sql:1:8: error: Invalid function 'sume'",
        "  hint: did you mean `sum`?",
    ];
    let mut lines = ran.stderr.lines();
    for want in expected {
        assert!(lines.any(|l| l.starts_with(want)), "missing, or out of order: {want}\n--- stderr\n{}", ran.stderr);
    }
    assert!(ran.stderr.contains("10 error(s), 0 warning(s)"), "{}", ran.stderr);
    for clean in ["n_after_broken", "ok_", "silver/orders", "silver/customers"] {
        assert!(!ran.stderr.contains(&format!("/{clean}")), "no error in {clean}: {}", ran.stderr);
    }

    // Fixed, the project validates; a model that still fails at run time (here: validation
    // skipped by running straight away) says where.
    b.write("models/gold/m02_qualified.sql", "SELECT f.order_total\nFROM silver.orders f");
    let ran = b.cmd(&["run", "+gold.m01_unqualified"]);
    assert!(!ran.ok);
    let said = format!("{}{}", ran.stdout, ran.stderr);
    assert!(said.contains("models/gold/m01_unqualified.sql:2:8"), "{said}");
}

/// Columns of tables that are not landed yet are not guessed: validation says which models it
/// could not check and how to check them.
#[test]
fn models_over_tables_not_landed_are_named_not_guessed() {
    let b = Basin::empty();
    let db = b.path().join("shop.db");
    b.write(
        "sources/shop.toml",
        &format!("kind = \"sqlite\"\nurl = \"sqlite://{}\"\n\n[[tables]]\nname = \"payments\"\n", db.display()),
    )
    .write("models/silver/payments.sql", "SELECT amout FROM bronze.shop__payments");
    let ran = b.cmd(&["validate"]).success();
    assert!(
        ran.stderr.contains("note: columns not checked in 1 model(s): they read bronze.shop__payments not landed yet"),
        "{}",
        ran.stderr
    );
}

/// `validate --connect` checks the models over tables not landed yet against the columns the
/// source's catalog has, as they will land (with bronze's metadata columns).
async fn connect_checks_columns_against_the_source_catalog(server: Server) {
    let Some(db) = TestDb::create(server, "validate").await else { return };
    db.execute(&[
        "CREATE TABLE customers (id INT PRIMARY KEY, email VARCHAR(40), score INT)",
        "INSERT INTO customers VALUES (1, 'a@example.com', 5)",
    ])
    .await;
    let b = Basin::empty();
    b.write(
        "sources/shop.toml",
        &format!("kind = \"{}\"\nurl = \"{}\"\n\n[[tables]]\nname = \"customers\"\n", server.kind(), db.url),
    )
    .write("models/silver/customers.sql", "SELECT id,\n  emial\nFROM bronze_current.shop__customers")
    .write("models/silver/landed.sql", "SELECT id, _ingestion_date, _run_id FROM bronze.shop__customers");
    let ran = b.cmd(&["validate"]).success();
    assert!(ran.stderr.contains("note: columns not checked in 2 model(s)"), "{}", ran.stderr);
    let ran = b.cmd(&["validate", "--connect"]);
    assert!(!ran.ok, "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("models/silver/customers.sql:2:3: error: unknown column `emial`\n  hint: did you mean `email`?"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("1 error(s)"), "the metadata columns are known: {}", ran.stderr);
    b.write(
        "models/silver/customers.sql",
        "SELECT id, email, score * 2 AS double_score FROM bronze_current.shop__customers",
    );
    let ran = b.cmd(&["validate", "--connect"]).success();
    assert!(!ran.stderr.contains("not checked"), "{}", ran.stderr);
    // What validation planned is what runs.
    b.cmd(&["run"]).success();
    assert_eq!(b.sql("SELECT id, double_score FROM silver.customers"), ["id,double_score", "1,10"]);
}

#[tokio::test]
async fn connect_checks_columns_against_mariadb() {
    connect_checks_columns_against_the_source_catalog(Server::Mysql).await;
}

#[tokio::test]
async fn connect_checks_columns_against_postgres() {
    connect_checks_columns_against_the_source_catalog(Server::Postgres).await;
}

/// An invalid source file is the one problem reported for its tables: the models that read
/// them are named under it, not each refused with `unknown table`.
#[test]
fn an_invalid_source_file_is_reported_once() {
    let b = Basin::empty();
    b.write("sources/shop.toml", "kind = \"mysql\"\nurl = \"mysql://x\"\n\n[[tables]]\nnam = \"orders\"\n")
        .write("models/silver/orders.sql", "SELECT * FROM bronze.shop__orders")
        .write("models/silver/current.sql", "SELECT * FROM bronze_current.shop__customers");
    let ran = b.cmd(&["validate"]);
    assert!(!ran.ok);
    assert!(!ran.stderr.contains("unknown table"), "{}", ran.stderr);
    assert!(ran.stderr.contains("sources/shop.toml:5:1: error:"), "{}", ran.stderr);
    assert!(
        ran.stderr.contains(
            "sources/shop.toml: warning: sources/shop.toml is invalid, so the models that read its tables cannot \
             run: silver.current, silver.orders"
        ),
        "{}",
        ran.stderr
    );
}

/// A model file deleted from the project leaves its table behind: `validate` and `plan` name
/// it, `basin drop` takes it out of the lake (refusing what the project still defines), and
/// the table, history and all, is kept aside rather than deleted.
#[test]
fn orphan_tables_are_reported_and_dropped_aside() {
    let b = Basin::empty();
    b.write("models/silver/kept.sql", "SELECT 1 AS x")
        .write("models/silver/old.sql", "SELECT 2 AS y")
        // A schema of the project's may start with `_`, like the folder dropped tables go to.
        .write("models/_staging/kept.sql", "SELECT 3 AS z");
    b.cmd(&["run"]).success();
    let refused = b.cmd(&["drop", "silver.old"]);
    assert!(!refused.ok);
    assert!(refused.stderr.contains("silver.old is defined by models/silver/old.sql"), "{}", refused.stderr);

    std::fs::remove_file(b.path().join("models/silver/old.sql")).unwrap();
    let ran = b.cmd(&["validate"]).success();
    assert!(ran.stderr.contains("lake table silver.old: warning: nothing in the project defines it"), "{}", ran.stderr);
    assert!(ran.stderr.contains("hint: `basin drop silver.old` takes it out of the lake"), "{}", ran.stderr);
    assert!(!ran.stderr.contains("silver.kept"), "{}", ran.stderr);
    let plan = b.cmd(&["plan"]).success();
    assert!(plan.stdout.contains("note: nothing in the project defines silver.old"), "{}", plan.stdout);
    assert_eq!(b.sql("SELECT y FROM silver.old"), ["y", "2"], "still queryable until dropped");

    let dropped = b.cmd(&["drop", "silver.old"]).success();
    assert!(dropped.stdout.contains("dropped silver.old: moved to "), "{}", dropped.stdout);
    let gone = b.cmd(&["sql", "SELECT y FROM silver.old"]);
    assert!(!gone.ok, "{}", gone.stdout);
    assert!(!b.cmd(&["validate"]).success().stderr.contains("silver.old"));
    assert_eq!(b.sql("SELECT x FROM silver.kept"), ["x", "1"]);
    assert_eq!(b.sql("SELECT z FROM _staging.kept"), ["z", "3"]);
    // Kept aside with its history: the first commit of its log is there.
    let kept_aside = b
        .files()
        .into_iter()
        .any(|f| f.contains("_dropped/silver/old/") && f.ends_with("_delta_log/00000000000000000000.json"));
    assert!(kept_aside, "{:?}", b.files());
    let again = b.cmd(&["drop", "silver.old"]);
    assert!(!again.ok && again.stderr.contains("no table silver.old in the lake"), "{}", again.stderr);
}
