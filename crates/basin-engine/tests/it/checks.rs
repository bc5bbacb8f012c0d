//! Every check type, passing and failing, against real Delta tables.

use basin_core::AssetKey;
use basin_core::check::CheckKind;
use basin_engine::checks::{CheckContext, CheckOutcome, evaluate};

use crate::support::TestProject;

const ORDERS: &str = "SELECT * FROM (VALUES
    (1, 10, 'paid',   100.0, DATE '2026-11-20'),
    (2, 10, 'open',    50.0, DATE '2026-11-21'),
    (3, 11, 'paid',    NULL, DATE '2026-11-22'),
    (3, 99, 'lost',   -5.0,  DATE '2026-11-22'),
    (5, NULL, 'open',  20.0, DATE '2026-11-23')
) AS t(order_id, customer_id, status, amount, day)";

const CUSTOMERS: &str = "SELECT * FROM (VALUES (10, 'Ada'), (11, 'Grace')) AS t(customer_id, name)";

/// `orders` with `checks` (TOML of `[[checks]]` entries) built beside `customers`; what each
/// check found, by name.
async fn outcomes(checks: &str, context: CheckContext) -> Vec<CheckOutcome> {
    let p = TestProject::new();
    p.model("silver.customers", CUSTOMERS);
    p.model("silver.orders", &format!("/* basin\nunique_key = [\"order_id\"]\n{checks}*/\n{ORDERS}"));
    let project = p.load();
    let lake = p.lake();
    crate::support::run_on(&project, &lake, &["silver.customers", "silver.orders"], false).await.unwrap();
    let session = lake.session(&[], None).await.unwrap();
    let key = AssetKey::parse("silver.orders").unwrap();
    evaluate(&session.ctx, &key, &project.checks[&key], &context).await
}

fn find<'a>(all: &'a [CheckOutcome], name: &str) -> &'a CheckOutcome {
    all.iter().find(|o| o.name == name).unwrap_or_else(|| panic!("no {name} in {all:#?}"))
}

#[tokio::test]
async fn column_checks_pass_and_fail_with_samples() {
    let checks = r#"
[[checks]]
type = "not_null"
columns = ["order_id"]
[[checks]]
type = "not_null"
columns = ["customer_id", "amount"]
[[checks]]
type = "unique"
columns = ["order_id"]
[[checks]]
type = "unique"
columns = ["order_id", "customer_id"]
[[checks]]
type = "accepted_values"
column = "status"
values = ["paid", "open"]
[[checks]]
type = "accepted_values"
column = "status"
values = ["paid", "open", "lost"]
name = "status_all"
[[checks]]
type = "relationships"
column = "customer_id"
to = "silver.customers"
[[checks]]
type = "expression"
expression = "amount >= 0"
[[checks]]
type = "row_count"
min = 1
max = 4
[[checks]]
type = "row_count"
min = 5
name = "at_least_five"
[[checks]]
type = "null_rate"
columns = ["customer_id", "amount"]
max = 0.1
[[checks]]
type = "null_rate"
columns = ["amount"]
max = 0.25
name = "amount_nulls"
"#;
    let all = outcomes(checks, CheckContext { key_columns: vec!["order_id".into()], ..Default::default() }).await;
    let pass = |name: &str| assert!(find(&all, name).passed, "{:#?}", find(&all, name));
    let fail = |name: &str, observed: &str| {
        let o = find(&all, name);
        assert!(!o.passed && o.observed == observed, "{name}: {o:#?}");
        o.clone()
    };
    pass("not_null(order_id)");
    let nn = fail("not_null(customer_id, amount)", "2 rows");
    assert_eq!(nn.samples, ["order_id=3", "order_id=5"]);
    let dup = fail("unique(order_id)", "1 duplicated key(s) in 2 rows");
    assert_eq!(dup.samples, ["order_id=3, n=2"]);
    pass("unique(order_id, customer_id)");
    let bad = fail("accepted_values(status)", "1 row");
    assert_eq!(bad.samples, ["order_id=3"]);
    pass("status_all");
    let orphan =
        fail("relationships(customer_id -> silver.customers.customer_id)", "1 row without a match in silver.customers");
    assert_eq!(orphan.samples, ["customer_id=99"], "NULL keys are not_null's business");
    // NULL amount does not satisfy `amount >= 0` either.
    fail("expression(amount >= 0)", "2 rows");
    fail("row_count", "5 rows");
    pass("at_least_five");
    let rate = fail("null_rate(customer_id, amount)", "customer_id 0.2000, amount 0.2000");
    assert_eq!(rate.threshold, "<= 0.1", "{rate:?}");
    pass("amount_nulls");
    assert!(all.iter().all(|o| o.kind != CheckKind::Reconcile), "models have nothing to reconcile");
}

#[tokio::test]
async fn contracts_freshness_volume_and_broken_checks() {
    let checks = r#"
[[checks]]
type = "schema"
[checks.contract]
order_id = "BIGINT NOT NULL"
status = "VARCHAR"
amount = "DOUBLE"
[[checks]]
type = "schema"
name = "strict"
allow_extra = false
[checks.contract]
order_id = "INT"
customer_id = "BIGINT NOT NULL"
missing = "DATE"
[[checks]]
type = "freshness"
column = "day"
max_age = "48h"
[[checks]]
type = "freshness"
column = "day"
max_age = "12h"
name = "fresh_12h"
[[checks]]
type = "volume_change"
max_change = 0.5
[[checks]]
type = "expression"
expression = "no_such_column > 0"
severity = "warn"
"#;
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z").unwrap().to_utc();
    let context = CheckContext { now, rows_written: Some(5), earlier_rows: vec![100, 120, 80], ..Default::default() };
    let all = outcomes(checks, context).await;
    assert!(find(&all, "schema").passed, "{all:#?}");
    let strict = find(&all, "strict");
    assert!(!strict.passed);
    for problem in
        ["order_id is Int64, not int", "customer_id has 1 row NULL", "missing missing", "status not in the contract"]
    {
        assert!(strict.observed.contains(problem), "{problem}: {}", strict.observed);
    }
    // The newest day is 2026-11-23 00:00, 36 hours before `now`.
    assert!(find(&all, "freshness(day)").passed, "{all:#?}");
    assert!(!find(&all, "fresh_12h").passed);
    let volume = find(&all, "volume_change");
    assert!(!volume.passed && volume.observed.starts_with("5 rows against an average of 100"), "{volume:?}");
    let broken = find(&all, "expression(no_such_column > 0)");
    assert!(!broken.passed && broken.observed.starts_with("cannot evaluate:"), "{broken:?}");
    // One broken expression does not spoil the checks that shared its scan.
    assert!(find(&all, "schema").passed);
}

#[tokio::test]
async fn reconcile_and_ready_by() {
    let checks = "[[checks]]\ntype = \"reconcile\"\ntolerance = 0.1\n\
                  [[checks]]\ntype = \"freshness\"\nready_by = \"07:30\"\ntimezone = \"Europe/Berlin\"\n";
    let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap().to_utc();
    let built = at("2026-11-23T22:00:00Z"); // 23:00 in Berlin, the evening before
    let context = |now: &str, read: u64| CheckContext {
        now: at(now),
        last_materialized: Some(built),
        reconciliation: Some((100, read)),
        ..Default::default()
    };
    // 07:00 Berlin: not due yet. 08:00 Berlin: yesterday's build is not today's.
    let early = outcomes(checks, context("2026-11-24T06:00:00Z", 95)).await;
    assert!(find(&early, "freshness").passed && find(&early, "reconcile").passed, "{early:#?}");
    let late = outcomes(checks, context("2026-11-24T07:00:00Z", 85)).await;
    assert!(!find(&late, "freshness").passed, "{late:#?}");
    let r = find(&late, "reconcile");
    assert!(!r.passed && r.observed == "source 100, read 85", "{r:?}");
}
