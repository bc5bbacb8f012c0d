//! `basin demo` at a small scale: the generated source, bronze, silver and gold agree with each
//! other (revenue is conserved, bronze holds what the source holds), the nights change the
//! source as a live system does, and the same seed gives the same data.

use sqlx::{Connection, Row};

use crate::support::Basin;

/// The tables of the demo's source.
const TABLES: &[&str] = &[
    "partner",
    "customer",
    "service",
    "invoice",
    "invoice_status",
    "invoice_data",
    "invoice_item",
    "invoice_service",
    "charge_type",
    "usage_type",
    "usage_type_group",
    "usage_unit",
    "module_type",
    "cdr",
];

fn demo_in_temp_dir(args: &[&str]) -> Basin {
    let b = Basin { dir: tempfile::tempdir().unwrap() };
    let mut all = vec!["demo", "--dir", "."];
    all.extend_from_slice(args);
    let ran = b.cmd(&all).success();
    assert!(ran.stdout.contains("== done"), "{}", ran.stdout);
    b
}

/// A decimal's text (`12.34`, `-5.0`, `7`) in units of 10^-4, exactly.
fn units(text: &str) -> i128 {
    let text = text.trim().trim_matches('"');
    let (neg, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    assert!(frac.len() <= 4, "more than 4 decimals in {text}");
    let v = int.parse::<i128>().unwrap() * 10_000 + format!("{frac:0<4}").parse::<i128>().unwrap();
    if neg { -v } else { v }
}

fn one(b: &Basin, query: &str) -> String {
    let lines = b.sql(query);
    assert_eq!(lines.len(), 2, "{query}: {lines:?}");
    lines[1].clone()
}

#[tokio::test]
async fn three_nights_conserve_revenue_and_bronze_matches_the_source() {
    let b = demo_in_temp_dir(&["--scale", "0.02", "--days", "3"]);
    let db = b.path().join("source/v3.db");
    let mut source = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();

    // Every check of the reference project ran on every layer and passed, warnings included.
    assert_eq!(
        b.sql("SELECT asset, check_name, observed FROM basin.check_results WHERE NOT passed"),
        ["asset,check_name,observed"]
    );
    let checked = b.sql("SELECT DISTINCT split_part(asset, '.', 1) AS layer FROM basin.check_results ORDER BY layer");
    assert_eq!(checked, ["layer", "bronze", "gold", "silver"]);

    // Revenue is conserved: every invoice line in the source is in gold, to the last 0.0001.
    let amounts: Vec<String> = sqlx::query("SELECT CAST(amount AS TEXT) FROM invoice_item")
        .fetch_all(&mut source)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let source_revenue: i128 = amounts.iter().map(|a| units(a)).sum();
    assert!(amounts.len() > 10_000, "{} invoice items", amounts.len());
    let gold = units(&one(&b, "SELECT CAST(SUM(revenue) AS VARCHAR) FROM gold.revenue_by_month_partner"));
    assert_eq!(gold, source_revenue, "gold revenue against the source's invoice items");
    let arpu = units(&one(&b, "SELECT CAST(SUM(revenue) AS VARCHAR) FROM gold.arpu_by_month"));
    assert_eq!(arpu, source_revenue, "invoice totals against invoice items");

    // Bronze's current state holds exactly the source's rows, table by table.
    for table in TABLES {
        let n: i64 = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(&mut source)
            .await
            .unwrap()
            .get(0);
        let bronze = one(&b, &format!("SELECT COUNT(*) FROM bronze_current.v3__{table}"));
        assert_eq!(bronze, n.to_string(), "rows of {table}");
    }

    // The nights changed the source: erased customers are gone from the current state, new
    // invoices landed in later runs, paid invoices were updated, and a column appeared.
    let runs = one(&b, "SELECT COUNT(DISTINCT _run_id) FROM bronze.v3__invoice");
    assert_eq!(runs, "3", "each night landed new invoice rows");
    let paid_later = one(
        &b,
        "SELECT COUNT(*) FROM bronze_current.v3__invoice WHERE updated_at >= TIMESTAMP '2026-01-01 00:00:00' AND invoice_status_id IN (3, 4) AND invoice_date < DATE '2025-12-31'",
    );
    assert_ne!(paid_later, "0", "open invoices were settled on later nights");
    let segment = one(&b, "SELECT COUNT(*) FROM bronze_current.v3__customer WHERE segment IS NOT NULL");
    assert_ne!(segment, "0", "the column added on night 3 reached bronze");
    // Customer 1's e-mail changed on night 2: its history holds two versions, the new one current.
    let versions = b.sql(
        "SELECT email, is_current, valid_to IS NULL FROM silver.dim_customer WHERE customer_id = 1 ORDER BY valid_from",
    );
    assert_eq!(versions.len(), 3, "{versions:?}");
    assert!(versions[1].ends_with(",false,false"), "{versions:?}");
    assert_eq!(versions[2], "customer1.new@example.ch,true,true");
    // Erased customers: their last version is closed, none is current.
    let erased = one(
        &b,
        "SELECT COUNT(DISTINCT customer_id) FROM silver.dim_customer d WHERE NOT EXISTS (SELECT 1 FROM silver.dim_customer c WHERE c.customer_id = d.customer_id AND c.is_current)",
    );
    assert_ne!(erased, "0", "erased customers are closed in the history");
    // Zero dates arrive as NULL, never as a made-up date.
    let zero = one(&b, "SELECT COUNT(*) FROM silver.dim_customer WHERE birth_date < DATE '1900-01-01'");
    assert_eq!(zero, "0");
    let unpaid = one(&b, "SELECT COUNT(*) FROM silver.fact_invoice WHERE NOT is_paid AND paid_on IS NULL");
    assert_ne!(unpaid, "0");
    // The reference project validates column by column against its lake: no false alarm.
    let validated = b.cmd(&["validate", "--connect"]).success();
    assert!(validated.stderr.contains("ok: 15 model(s), 0 warning(s)"), "{}", validated.stderr);
    assert!(!validated.stderr.contains("not checked"), "{}", validated.stderr);
}

#[test]
fn the_same_seed_gives_the_same_data_and_another_seed_does_not() {
    let query =
        "SELECT month, partner_id, invoices, revenue FROM gold.revenue_by_month_partner ORDER BY month, partner_id";
    let a = demo_in_temp_dir(&["--scale", "0.01", "--days", "1", "--seed", "7"]).sql(query);
    let b = demo_in_temp_dir(&["--scale", "0.01", "--days", "1", "--seed", "7"]).sql(query);
    let c = demo_in_temp_dir(&["--scale", "0.01", "--days", "1", "--seed", "8"]).sql(query);
    assert!(a.len() > 12, "{a:?}");
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn init_telecom_writes_the_reference_project_and_demo_refuses_a_foreign_directory() {
    let b = Basin { dir: tempfile::tempdir().unwrap() };
    b.cmd(&["init", "--template", "telecom", "."]).success();
    let ran = b.cmd(&["validate"]).success();
    assert!(ran.stderr.contains("ok: 15 model(s)"), "{}", ran.stderr);
    // A directory that holds something else is never cleared.
    let ran = b.cmd(&["demo", "--dir", "."]);
    assert!(!ran.ok);
    assert!(ran.stderr.contains("is not an earlier `basin demo` directory"), "{}", ran.stderr);
    assert!(b.path().join("sources/v3.toml").exists());

    // Impossible sizes are refused before anything is written.
    let empty = Basin { dir: tempfile::tempdir().unwrap() };
    for (args, message) in
        [(["--scale", "0"], "--scale must be above 0"), (["--days", "0"], "--days must be at least 1")]
    {
        let mut all = vec!["demo", "--dir", "fresh"];
        all.extend_from_slice(&args);
        let ran = empty.cmd(&all);
        assert!(!ran.ok && ran.stderr.contains(message), "{}", ran.stderr);
        assert!(!empty.path().join("fresh").exists(), "nothing written for {args:?}");
    }
}

#[tokio::test]
async fn the_source_can_be_generated_into_mariadb_and_postgresql() {
    use basin_testkit::{Server, TestDb};
    for server in [Server::Mysql, Server::Postgres] {
        let Some(db) = TestDb::create(server, "demo").await else { continue };
        let b = demo_in_temp_dir(&["--scale", "0.005", "--days", "2", "--source", &db.url]);
        let sum = "SELECT CAST(SUM(amount) AS CHAR) FROM invoice_item";
        let source = match server {
            Server::Mysql => {
                let mut c = sqlx::MySqlConnection::connect(&db.url).await.unwrap();
                sqlx::query(sum).fetch_one(&mut c).await.unwrap().get::<String, _>(0)
            }
            Server::Postgres => {
                let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
                let sum = "SELECT CAST(SUM(amount) AS TEXT) FROM invoice_item";
                sqlx::query(sum).fetch_one(&mut c).await.unwrap().get::<String, _>(0)
            }
        };
        let gold = one(&b, "SELECT CAST(SUM(revenue) AS VARCHAR) FROM gold.revenue_by_month_partner");
        assert_eq!(units(&gold), units(&source), "{}: revenue", server.kind());
        let zero = one(&b, "SELECT COUNT(*) FROM silver.dim_customer WHERE birth_date IS NULL");
        assert_ne!(zero, "0", "{}: zero and missing birth dates are NULL", server.kind());
    }
}

#[test]
fn an_injected_fault_is_caught_by_a_check_and_gold_is_not_built_on_it() {
    let b = demo_in_temp_dir(&["--scale", "0.01", "--days", "2", "--inject-fault"]);
    let out = b.cmd(&["runs", "--limit", "5"]).success().stdout;
    assert!(out.lines().filter(|l| l.contains("check_failed")).count() == 1, "{out}");
    // Every check of the clean first night passed; on the second only the planted defect fails.
    let failing = b.sql(
        "SELECT asset, check_name, observed FROM basin.check_results WHERE NOT passed AND severity = 'error' \
         ORDER BY at",
    );
    assert_eq!(failing.len(), 2, "{failing:?}");
    assert!(
        failing[1].starts_with(
            "silver.fact_invoice_item,relationships(charge_type_id -> silver.dim_charge_type.charge_type_id),"
        ) && failing[1].contains("without a match in silver.dim_charge_type"),
        "{failing:?}"
    );
    let samples = b.sql("SELECT samples FROM basin.check_results WHERE NOT passed AND severity = 'error'");
    assert!(samples[1].contains("charge_type_id=9999"), "{samples:?}");
    // Gold kept the first night's version: the second night did not build on bad lines.
    let history = b.cmd(&["history", "gold.revenue_by_month_partner"]).success().stdout;
    assert_eq!(history.lines().filter(|l| l.trim_start().starts_with(char::is_numeric)).count(), 1, "{history}");
    // `basin status` names the asset whose check failed, and says a person is needed.
    let status = b.command(&["status"]).output().unwrap();
    let said = String::from_utf8_lossy(&status.stdout).to_string();
    assert_eq!(status.status.code(), Some(1), "{said}");
    let line = said.lines().find(|l| l.contains("silver.fact_invoice_item")).unwrap_or_default();
    assert!(line.trim_start().starts_with("failing_checks"), "{said}");
    assert!(line.contains("relationships(charge_type_id -> silver.dim_charge_type.charge_type_id)"), "{said}");
}
