//! The main path: init → run → sql, plan, selection, failures and restore, as a user types them.

use crate::support::Basin;

#[test]
fn init_run_sql() {
    let b = Basin::init();
    let run = b.cmd(&["run"]).success();
    assert!(run.stdout.contains("4 built, 0 failed, 0 skipped"), "{}", run.stdout);
    assert_eq!(
        b.sql("SELECT rank, name, revenue FROM gold.top_customers ORDER BY rank"),
        vec!["rank,name,revenue", "1,Alan Turing,300.0000", "2,Ada Lovelace,135.7500", "3,Grace Hopper,80.0000"]
    );
    // The query may also come on stdin, and come out as JSON.
    let mut child = b
        .command(&["sql", "--format", "json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"SELECT COUNT(*) AS n FROM silver.orders").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), r#"[{"n":4}]"#);
    // An empty result keeps its header.
    assert_eq!(b.sql("SELECT name, email FROM silver.customers WHERE false"), vec!["name,email"]);
    let table = b.cmd(&["sql", "SELECT name FROM silver.customers WHERE false"]).success().stdout;
    assert!(table.contains("| name |"), "{table}");
    // Every asset is a Delta table at <root>/<schema>/<name>; views write nothing.
    for table in ["silver/customers", "silver/orders", "gold/revenue_by_customer"] {
        assert!(b.path().join("lake").join(table).join("_delta_log").is_dir(), "{table}");
    }
    assert!(!b.path().join("lake/gold/top_customers").exists());
}

#[test]
fn plan_writes_nothing_and_explains_each_step() {
    let b = Basin::init();
    let before = b.files();
    let plan = b.cmd(&["plan", "+gold.top_customers"]).success();
    assert_eq!(b.files(), before, "plan must not write");
    let steps: Vec<&str> = plan.stdout.lines().skip(1).take(4).collect();
    assert!(
        steps[0].contains("silver.customers") && steps[0].contains("create: the table does not exist yet"),
        "{steps:?}"
    );
    assert!(
        steps[2].contains("gold.revenue_by_customer") && steps[2].contains("after silver.customers, silver.orders")
    );
    assert!(steps[3].contains("gold.top_customers") && steps[3].contains("register view"));

    b.cmd(&["run"]).success();
    let before = b.files();
    let plan = b.cmd(&["plan", "silver.orders", "silver.customers"]).success();
    assert_eq!(b.files(), before, "plan must not write");
    assert!(plan.stdout.contains("merge on [order_id]"), "{}", plan.stdout);
    assert!(plan.stdout.contains("replace in full"), "{}", plan.stdout);
}

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let b = Basin::init();
    for args in [&["plan"][..], &["sql", "SELECT * FROM generate_series(1, 100000)"]] {
        let mut child =
            b.command(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        // The reader goes away before the command writes (`basin plan | head -0`).
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{args:?}: {stderr}");
        assert!(out.status.success(), "{args:?}: {:?} {stderr}", out.status);
    }
}

#[test]
fn failures_skip_downstream_and_exit_non_zero() {
    let b = Basin::empty();
    b.write("models/silver/good.sql", "SELECT 1 AS id")
        .write("models/silver/bad.sql", "SELECT CAST('x' AS INT) AS id")
        .write("models/gold/after_bad.sql", "SELECT * FROM silver.bad")
        .write("models/gold/after_after.sql", "SELECT * FROM gold.after_bad")
        .write("models/gold/after_good.sql", "SELECT * FROM silver.good");
    let run = b.cmd(&["run", "--concurrency", "1"]);
    assert!(!run.ok);
    let line = |asset: &str| {
        run.stdout.lines().find(|l| l.contains(asset)).unwrap_or_else(|| panic!("{asset}: {}", run.stdout)).to_string()
    };
    assert!(line("silver.bad").starts_with("FAILED"), "{}", run.stdout);
    assert!(
        line("gold.after_bad").starts_with("skipped") && line("gold.after_bad").contains("upstream silver.bad failed")
    );
    assert!(line("gold.after_after").contains("upstream gold.after_bad was skipped"));
    assert!(line("gold.after_good").starts_with("ok"), "{}", run.stdout);
    assert!(run.stdout.contains("2 built, 1 failed, 2 skipped"), "{}", run.stdout);
}

#[test]
fn selection_picks_assets_and_explains_mistakes() {
    let b = Basin::init();
    // Downstream of silver.orders needs silver.customers, which is not built yet.
    let run = b.cmd(&["run", "silver.orders+"]);
    assert!(!run.ok && run.stdout.contains("table 'basin.silver.customers' not found"), "{}", run.stdout);
    b.cmd(&["run", "silver.customers"]).success();
    let run = b.cmd(&["run", "silver.orders+"]).success();
    let built: Vec<&str> =
        run.stdout.lines().filter(|l| l.starts_with("ok")).map(|l| l.split_whitespace().nth(1).unwrap()).collect();
    assert_eq!(built, vec!["silver.orders", "gold.revenue_by_customer", "gold.top_customers"]);
    let run = b.cmd(&["run", "+gold.revenue_by_customer"]).success();
    assert!(run.stdout.contains("3 built"), "{}", run.stdout);
    let run = b.cmd(&["run", "silver.ordrs"]);
    assert!(!run.ok);
    assert!(run.stderr.contains("did you mean `silver.orders`?"), "{}", run.stderr);
    let run = b.cmd(&["run", "tag:example"]).success();
    assert!(run.stdout.contains("3 built"), "{}", run.stdout);
}

#[test]
fn full_refresh_and_restore() {
    let b = Basin::init();
    b.cmd(&["run"]).success();
    b.write(
        "models/silver/customers.sql",
        "SELECT * FROM (VALUES (9, 'Nobody', 'n@example.com', DATE '2024-05-01')) AS t(customer_id, name, email, signed_up_on)",
    );
    // Three customers down to one: the guardrail would refuse it.
    b.cmd(&["run", "silver.customers", "--allow-shrink"]).success();
    assert_eq!(b.sql("SELECT COUNT(*) AS n FROM silver.customers"), vec!["n", "1"]);
    let restored = b.cmd(&["restore", "silver.customers", "--to-version", "0"]).success();
    assert!(restored.stdout.contains("restored silver.customers to version 0 as version 2"), "{}", restored.stdout);
    assert_eq!(b.sql("SELECT COUNT(*) AS n FROM silver.customers"), vec!["n", "3"]);
    // History keeps every version, and time travel reads the bad one still.
    let history = b.cmd(&["history", "silver.customers"]).success();
    assert!(history.stdout.contains("RESTORE"), "{}", history.stdout);
    assert_eq!(
        b.cmd(&["sql", "--format", "csv", "--as-of", "1", "SELECT name FROM silver.customers"]).success().stdout,
        "name\nNobody\n"
    );
    let bad = b.cmd(&["restore", "silver.customers", "--to-version", "99"]);
    assert!(!bad.ok, "{}", bad.stderr);
    // One clear error naming the range, no kernel log lines.
    assert!(bad.stderr.contains("silver.customers has versions 0–2, from 20"), "{}", bad.stderr);
    assert!(bad.stderr.contains(": version 99 is outside them"), "{}", bad.stderr);
    assert!(!bad.stderr.contains("ERROR") && !bad.stderr.contains("LogSegment"), "{}", bad.stderr);
    let bad = b.cmd(&["sql", "--as-of", "99", "SELECT name FROM silver.customers"]);
    assert!(!bad.ok && bad.stderr.contains("version 99 is outside them"), "{}", bad.stderr);
    assert!(!bad.stderr.contains("LogSegment"), "{}", bad.stderr);
    // Before the first commit: the table did not exist yet.
    let bad = b.cmd(&["sql", "--as-of", "2001-01-01", "SELECT name FROM silver.customers"]);
    assert!(!bad.ok && bad.stderr.contains("2001-01-01T00:00:00.000Z is outside them"), "{}", bad.stderr);
    // `basin history` prints times `--as-of` and `--to-timestamp` take as they are.
    let version_1 = history.stdout.lines().find(|l| l.trim_start().starts_with("1 ")).unwrap();
    let time = version_1.split_whitespace().nth(1).unwrap();
    assert_eq!(
        b.cmd(&["sql", "--format", "csv", "--as-of", time, "SELECT name FROM silver.customers"]).success().stdout,
        "name\nNobody\n"
    );
    b.cmd(&["restore", "silver.customers", "--to-timestamp", time]).success();
    assert_eq!(b.sql("SELECT COUNT(*) AS n FROM silver.customers"), vec!["n", "1"]);
}

#[test]
fn commands_refuse_an_invalid_project() {
    let b = Basin::init();
    b.write("models/silver/broken.sql", "SELECT * FROM silver.nowhere");
    for args in [vec!["run"], vec!["plan"], vec!["sql", "SELECT 1"]] {
        let ran = b.cmd(&args);
        assert!(!ran.ok, "{args:?} must refuse");
        assert!(
            ran.stderr.contains("models/silver/broken.sql:1:15: error: unknown table `silver.nowhere`"),
            "{}",
            ran.stderr
        );
    }
    assert!(!b.path().join("lake").exists(), "nothing may be written");
}

#[test]
fn bad_sql_and_missing_project_are_clear_errors() {
    let b = Basin::init();
    let ran = b.cmd(&["sql", "SELEC 1"]);
    assert!(!ran.ok && ran.stderr.contains("query failed"), "{}", ran.stderr);
    let elsewhere = tempfile::tempdir().unwrap();
    let ran =
        std::process::Command::new(crate::support::bin()).arg("run").current_dir(elsewhere.path()).output().unwrap();
    assert!(!ran.status.success());
    assert!(String::from_utf8_lossy(&ran.stderr).contains("`basin.toml` not found"));
    let ran = b.cmd(&["init", "."]);
    assert!(!ran.ok && ran.stderr.contains("already exists"), "{}", ran.stderr);
}

#[test]
fn models_read_through_unselected_views_see_this_runs_data() {
    let b = Basin::empty();
    b.write("models/silver/t.sql", "SELECT 1 AS v")
        .write("models/gold/through.sql", "/* basin\nmaterialized = \"view\"\n*/\nSELECT v FROM silver.t")
        .write("models/gold/after.sql", "SELECT v FROM gold.through");
    b.cmd(&["run"]).success();
    b.write("models/silver/t.sql", "SELECT 2 AS v");
    // The view is not selected; it must still show the table rebuilt earlier in this run.
    b.cmd(&["run", "silver.t", "gold.after", "--concurrency", "1"]).success();
    assert_eq!(b.sql("SELECT v FROM gold.after"), vec!["v", "2"]);
}
