//! `basin init`: the files of a new project, with every setting of `basin.toml` written out and
//! commented, and a small example that `basin run` builds straight away.

use std::path::Path;

use crate::error::{Error, Result};

const BASIN_TOML: &str = r#"# Basin project settings. Every key is shown with its default.

[project]
# The project's name, used in run records and lineage.
name = "{name}"

[storage]
# Where every table lives: a local path (relative to this file) or an object-store URL:
# "s3://bucket/lake", "az://container/lake", "abfss://container@account.dfs.core.windows.net/lake",
# "gs://bucket/lake". Each asset is a Delta table at <root>/<schema>/<name>.
root = "./lake"

# Object-store options (credentials, region, endpoint). Values may read the environment with
# ${VAR} or ${VAR:-default}; they are never printed.
[storage.options]
# AWS_REGION = "${AWS_REGION:-eu-west-1}"
# AWS_ACCESS_KEY_ID = "${AWS_ACCESS_KEY_ID}"
# AWS_SECRET_ACCESS_KEY = "${AWS_SECRET_ACCESS_KEY}"

[metadata]
# Where runs, events and materialisations are recorded: a SQLite file (the default) or a
# PostgreSQL URL such as "postgres://basin:${BASIN_DB_PASSWORD}@db:5432/basin".
url = "sqlite://.basin/basin.db"

[run]
# How many assets `basin run` builds at once; 0 means one per CPU core.
concurrency = 0
# How often a running run tells the metadata store that its process is alive. A run silent
# for three intervals (killed, out of memory, its machine lost) is marked failed as
# `worker_died` by the next `basin runs` or daemon monitor pass, never left running.
heartbeat_interval = "5s"
# The guardrail on full replaces: a build that would drop more than this share of a table's
# rows, or empty it, fails before it commits (`basin run --allow-shrink` lets it through).
# A model's own `max_shrink` overrides it.
max_shrink = 0.5

[daemon]
# `basin daemon` launches queued and scheduled runs, at most this many at once.
max_concurrent_runs = 8
# subprocess: each run in its own `basin worker` process (own memory, own failure domain);
# in_process: inside the daemon; command: the template below, e.g. a container per run.
launcher = "subprocess"
# subprocess: workers kept started ahead of their runs (each does one run, then exits).
standby_workers = 2
# command = "docker run --rm -v {project}:/project basin worker -C /project --run-id {run_id}"
# command = "kubectl run basin-{run_id} --rm -i --restart=Never --image=registry/basin -- basin worker -C /project --run-id {run_id}"
# A run still going after this long is stopped and failed as `timeout`.
# run_timeout = "6h"
# Memory a worker's queries may hold: sorts and aggregations spill to disk near it, and a
# query that cannot fit fails as `out_of_memory` rather than meeting the OOM killer.
# worker_memory_limit = "4GiB"

# At most N runs with a tag at once, e.g. four against one source database.
[daemon.tag_limits]
# "source=v3" = 4

# A failed queued run is queued again for these failure categories, up to max_attempts in
# all, waiting backoff before the second attempt and twice as long each time after.
[daemon.retry]
max_attempts = 3
backoff = "30s"
on = ["transient", "source_unavailable", "out_of_memory", "worker_died"]

# Runs with a tag retry by their own policy; what it leaves out comes from [daemon.retry].
# (A model's own `[retry]` table in its header wins over both when that model failed.)
# [daemon.tag_retry."source=v3"]
# max_attempts = 5
# backoff = "1m"

# Each tick of a schedule queues its selection once, even with several daemons; ticks missed
# while no daemon ran are queued when one starts again.
# [[schedules]]
# name = "nightly"
# cron = "0 2 * * *"            # minute hour day month weekday (a seconds field may lead)
# timezone = "Europe/Berlin"    # IANA zone; default UTC
# selection = "*"
# priority = 0

# A sensor queues an ingest of the tables of a source that changed: new files in a files
# source; a higher MAX(cursor) (incremental tables) or another COUNT(*) (full tables) in a
# database. Eager models downstream follow.
# [[sensors]]
# name = "billing"
# source = "v3"
# tables = ["invoice"]          # default: every table of the source
# interval = "30s"

# The daemon's watchdog: every interval one daemon classifies every asset and schedule
# (healthy, running_ok, running_long, zombie, hard_failure, retrying, stale_no_run,
# backfilling, failing_checks, never_built), stores the classes (basin.asset_status) and each
# change (basin.watchdog_events), and alerts the channels below.
[watchdog]
interval = "1m"
# A build going longer than p95 of its recent builds times this is running_long.
running_long_factor = 2.0
duration_window = 20
# Pinged (GET) every cycle, so that a monitor outside notices when no daemon is watching.
# heartbeat_url = "${HEARTBEAT_URL}"
# Relaunch builds that failed for a passing reason (transient, source_unavailable,
# worker_died, timeout, out_of_memory) once retries are spent; never bad_query or auth.
relaunch = true
max_relaunches_per_cycle = 3
relaunch_cooldown = "60m"       # per source tag, else per asset
max_strikes = 3                 # relaunches since the last build, then escalate and stop

# Alert channels: webhook (Basin's JSON), slack, alertmanager, pagerduty, email. An alert fires when
# a subject enters a class the channel routes, is not repeated while it stays there, and is
# resolved (same dedup key) when it recovers. Secrets as ${ENV}, read when the daemon starts.
# [[alerts]]
# name = "oncall"
# kind = "slack"
# url = "${SLACK_WEBHOOK_URL}"
# classes = ["hard_failure", "zombie", "failing_checks", "stale_no_run", "running_long"]
# min_severity = "warning"     # info, warning or critical
# select = "tag:nightly"       # only these assets (schedules go to channels without one)
# max_attempts = 5             # per notification, waits doubling from 1s
# timeout = "10s"              # per attempt
# [[alerts]]
# name = "pager"
# kind = "pagerduty"
# routing_key = "${PAGERDUTY_ROUTING_KEY}"
# min_severity = "critical"
# [[alerts]]
# name = "mail"
# kind = "email"
# url = "smtps://alerts:${SMTP_PASSWORD}@smtp.example.com:465"
# from = "basin@example.com"
# to = ["data-team@example.com"]

# Checks for every asset a selection picks, besides those models and source tables declare.
# Every bronze table is also reconciled against its source (row counts within 1%).
# [[default_checks]]
# selection = "schema:gold"
# type = "row_count"
# min = 1

# `basin serve`: every asset over the PostgreSQL wire protocol and HTTP.
[serve]
listen = "127.0.0.1:5433"
http_listen = "127.0.0.1:8080"
# tls_cert = "certs/server.pem"    # with tls_key: TLS on the wire endpoint
# tls_key = "certs/server.key"
# allow_unauthenticated = true     # loopback only: clients without a password get this role
# unauthenticated_role = "analyst"
# allowed_hosts = ["basin.internal"]   # HTTP: host names besides IP addresses and localhost
# allowed_origins = ["https://bi.example.com"]   # web pages (other than the API's own) that may call the API

# Users: `password` is a SCRAM-SHA-256 verifier (`basin serve --hash-password` prints one),
# or `password_env` names the variable that holds the password.
# [users.ana]
# role = "analyst"
# password = "SCRAM-SHA-256$4096:…"

# Roles: what they may read ("*", a schema, or schema.table) and how tagged columns look to
# them (mask_email, redact, last4, hash, null; a tag also covers `pii:…` below it).
# [roles.analyst]
# select = ["gold", "silver"]
# mask = { "pii" = "redact", "pii:email" = "mask_email" }
# statement_timeout = "30s"
# memory_limit = "2GiB"
# max_rows = 1000000               # HTTP answers are cut after this many rows
"#;

/// The example models: file path and content.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "models/silver/customers.sql",
        r#"/* basin
# A `table` model is rebuilt in full on every run, as one atomic Delta commit.
materialized = "table"
owner = "data-team"
description = "Customers, one row each. Inline sample data until a source is connected."
tags = ["example"]
[columns.email]
tags = ["pii:email"]
*/
SELECT * FROM (VALUES
    (1, 'Ada Lovelace',   'ada@example.com',   DATE '2024-01-15'),
    (2, 'Grace Hopper',   'grace@example.com', DATE '2024-02-03'),
    (3, 'Alan Turing',    'alan@example.com',  DATE '2024-03-21')
) AS t(customer_id, name, email, signed_up_on)
"#,
    ),
    (
        "models/silver/orders.sql",
        r#"/* basin
# An `incremental` model MERGEs each run's rows into the table on `unique_key`:
# matching keys are updated, new keys inserted, other rows left alone.
materialized = "incremental"
unique_key = ["order_id"]
owner = "data-team"
description = "Orders, one row per order id."
tags = ["example"]

# Checks run after every build. An `error` check (the default) that fails stops every model
# downstream; `severity = "warn"` only reports. Results: `basin runs show RUN`, or
# `basin sql "SELECT * FROM basin.check_results"`; `basin check` runs them on current data.
[[checks]]
type = "unique"
columns = ["order_id"]

[[checks]]
type = "not_null"
columns = ["customer_id", "amount"]

[[checks]]
type = "relationships"
column = "customer_id"
to = "silver.customers"
*/
SELECT
    order_id,
    customer_id,
    CAST(amount AS DECIMAL(18, 4)) AS amount,
    CAST(ordered_on AS DATE)       AS ordered_on
FROM (VALUES
    (100, 1, 120.50, '2024-04-01'),
    (101, 2,  80.00, '2024-04-02'),
    (102, 1,  15.25, '2024-04-02'),
    (103, 3, 300.00, '2024-04-03')
) AS t(order_id, customer_id, amount, ordered_on)
"#,
    ),
    (
        "models/gold/revenue_by_customer.sql",
        r#"/* basin
# Dependencies come from the SQL itself: this model reads silver.orders and silver.customers,
# so `basin run` builds those first.
owner = "finance"
description = "Revenue and order count per customer."
tags = ["example"]
*/
SELECT
    c.customer_id,
    c.name,
    COUNT(o.order_id) AS orders,
    SUM(o.amount)     AS revenue
FROM silver.customers AS c
LEFT JOIN silver.orders AS o ON o.customer_id = c.customer_id
GROUP BY c.customer_id, c.name
"#,
    ),
    (
        "models/gold/top_customers.sql",
        r#"/* basin
# A `view` stores no data: it is evaluated whenever it is queried.
materialized = "view"
owner = "finance"
description = "Customers ranked by revenue (1 = highest)."
*/
-- A view's ORDER BY is not kept by the queries that read it (as in any SQL database),
-- so the ranking is a column: query it with ORDER BY rank.
SELECT
    RANK() OVER (ORDER BY revenue DESC NULLS LAST) AS rank,
    name,
    revenue
FROM gold.revenue_by_customer
"#,
    ),
];

/// Write a new project into `dir` (created if missing). Refuses to touch an existing project.
pub fn init(dir: &Path, name: &str) -> Result<Vec<String>> {
    if dir.join(crate::config::PROJECT_FILE).exists() {
        return Err(Error::AlreadyExists { path: dir.join(crate::config::PROJECT_FILE).display().to_string() });
    }
    let mut written = Vec::new();
    let mut write = |rel: &str, content: &str| -> Result<()> {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        std::fs::write(&path, content).map_err(|e| Error::io(&path, e))?;
        written.push(rel.to_string());
        Ok(())
    };
    write(crate::config::PROJECT_FILE, &BASIN_TOML.replace("{name}", name))?;
    write(".gitignore", "# Data and run records are not source code.\n/lake/\n/.basin/\n")?;
    write("sources/README.md", "Source definitions (`<name>.toml`) live here.\n")?;
    for (rel, content) in EXAMPLES {
        write(rel, content)?;
    }
    Ok(written)
}

/// A project name derived from a directory name.
pub fn name_for(dir: &Path) -> String {
    let raw = std::path::absolute(dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let name: String =
        raw.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    if name.is_empty() { "analytics".into() } else { name }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Project;

    #[test]
    fn init_writes_a_valid_project() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), "demo").unwrap();
        let (project, diagnostics) = Project::load(dir.path()).unwrap();
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        assert_eq!(project.models.len(), 4);
        let order: Vec<String> = project.ordered(project.graph.keys()).iter().map(|m| m.key.to_string()).collect();
        assert_eq!(order, vec!["silver.customers", "silver.orders", "gold.revenue_by_customer", "gold.top_customers"]);
        assert!(init(dir.path(), "demo").is_err(), "a second init must not overwrite");
    }
}
