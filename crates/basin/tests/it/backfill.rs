//! Daily partitions and `basin backfill`: a range cut into runs of a few days each, every day
//! replaced exactly (a day rebuilt without rows is emptied, other days untouched), progress in
//! the metadata store, and a backfill that failed or was SIGKILLed resumed without redoing
//! what succeeded.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::support::Basin;

const DAILY: &str = "/* basin
materialized = \"incremental\"
partitions = \"daily\"
partition_by = [\"day\"]
*/
SELECT day, SUM(amount) AS total, COUNT(*) AS n
FROM silver.events
WHERE day >= $partition_start AND day < $partition_end
GROUP BY day";

fn events(rows: &[(&str, i64)]) -> String {
    let values: Vec<String> = rows.iter().map(|(d, a)| format!("('{d}', {a})")).collect();
    format!("SELECT CAST(day AS DATE) AS day, amount FROM (VALUES {}) AS t(day, amount)", values.join(", "))
}

fn project() -> Basin {
    let b = Basin::empty();
    b.write("basin.toml", "[project]\nname = \"t\"\n[run]\nheartbeat_interval = \"1s\"\n");
    b.write(
        "models/silver/events.sql",
        &events(&[("2024-01-01", 10), ("2024-01-01", 5), ("2024-01-02", 7), ("2024-01-03", 1), ("2024-01-05", 2)]),
    );
    b.write("models/gold/daily.sql", DAILY);
    b.cmd(&["run", "silver.events"]).success();
    b
}

fn gold(b: &Basin) -> Vec<String> {
    b.sql("SELECT CAST(day AS VARCHAR) AS day, total, n FROM gold.daily ORDER BY day")
}

/// The backfill id in a `backfill bf-…: …` line.
fn backfill_id(out: &str) -> String {
    out.split_whitespace().nth(1).unwrap().trim_end_matches(':').to_string()
}

#[test]
fn a_backfill_builds_each_range_of_days_in_one_run() {
    let b = project();
    let out =
        b.cmd(&["backfill", "gold.daily", "--from", "2024-01-01", "--to", "2024-01-05", "--per-run", "2"]).success();
    assert!(out.stdout.contains("2024-01-01..2024-01-05 (5 days) in 3 run(s)"), "{}", out.stdout);
    assert!(out.stdout.contains("3/3 range(s) done"), "{}", out.stdout);
    assert_eq!(gold(&b), ["day,total,n", "2024-01-01,15,2", "2024-01-02,7,1", "2024-01-03,1,1", "2024-01-05,2,1"]);
    let id = backfill_id(&out.stdout);
    let status = b.cmd(&["backfill", "--status", &id]).success().stdout;
    for range in ["2024-01-01..2024-01-02", "2024-01-03..2024-01-04", "2024-01-05 "] {
        assert!(status.lines().any(|l| l.starts_with(range) && l.contains("SUCCESS")), "{range}: {status}");
    }
    let runs = b.cmd(&["runs", "--tag", "kind=backfill"]).success().stdout;
    assert_eq!(runs.lines().skip(1).count(), 3, "{runs}");
    // Each run's record names its days.
    let first = status.lines().find(|l| l.starts_with("2024-01-01..")).unwrap().split_whitespace().nth(3).unwrap();
    let show = b.cmd(&["runs", "show", first]).success().stdout;
    assert!(show.contains("replaced days 2024-01-01..2024-01-02"), "{show}");

    // Rebuilding one day replaces exactly that day: day 2 lost its rows upstream and is
    // emptied; day 1 changed upstream but is not rebuilt, so it keeps what it had.
    b.write("models/silver/events.sql", &events(&[("2024-01-01", 100), ("2024-01-03", 1), ("2024-01-05", 2)]));
    b.cmd(&["run", "silver.events"]).success();
    let one = b.cmd(&["run", "gold.daily", "--partition", "2024-01-02"]).success();
    assert!(one.stdout.contains("replaced days 2024-01-02"), "{}", one.stdout);
    assert_eq!(gold(&b), ["day,total,n", "2024-01-01,15,2", "2024-01-03,1,1", "2024-01-05,2,1"]);
    b.cmd(&["run", "gold.daily", "--partition", "2024-01-01..2024-01-02"]).success();
    assert_eq!(gold(&b), ["day,total,n", "2024-01-01,100,1", "2024-01-03,1,1", "2024-01-05,2,1"]);
}

#[test]
fn partitions_are_refused_where_they_mean_nothing() {
    let b = project();
    let out = b.cmd(&["backfill", "silver.events", "gold.daily", "--from", "2024-01-01", "--to", "2024-01-02"]);
    assert!(!out.ok && out.stderr.contains("not daily-partitioned: silver.events"), "{}", out.stderr);
    let out = b.cmd(&["run", "gold.daily", "--partition", "2024-13-01"]);
    assert!(!out.ok && out.stderr.contains("`2024-13-01` is not a day"), "{}", out.stderr);
    let out = b.cmd(&["backfill", "gold.daily", "--from", "2024-01-05", "--to", "2024-01-01"]);
    assert!(!out.ok && out.stderr.contains("before it starts"), "{}", out.stderr);
    let out = b.cmd(&["backfill", "--status", "bf-nothing"]);
    assert!(!out.ok && out.stderr.contains("no backfill `bf-nothing`"), "{}", out.stderr);
    // Nothing was queued by the refusals.
    let runs = b.cmd(&["runs", "--tag", "kind=backfill"]).success().stdout;
    assert_eq!(runs.lines().filter(|l| l.contains("QUEUED")).count(), 0, "{runs}");

    b.write("models/silver/bad.sql", "SELECT * FROM silver.events WHERE day >= $partition_start");
    let out = b.cmd(&["validate"]);
    assert!(
        !out.ok && out.stderr.contains("`$partition_start` is set only in a model with `partitions = \"daily\"`"),
        "{}",
        out.stderr
    );
    b.write(
        "models/silver/bad.sql",
        "/* basin\npartitions = \"daily\"\npartition_by = [\"day\"]\n*/\nSELECT * FROM silver.events",
    );
    let out = b.cmd(&["validate"]);
    assert!(
        !out.ok && out.stderr.contains("is `materialized = \"incremental\"` without `unique_key`"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_failed_range_is_resumed_alone() {
    let b = project();
    // Day 3 fails (a division by zero); the other days succeed.
    b.write(
        "models/gold/daily.sql",
        &DAILY.replace(
            "SUM(amount) AS total",
            "SUM(amount) / CASE WHEN day = DATE '2024-01-03' THEN 0 ELSE 1 END AS total",
        ),
    );
    let out = b.cmd(&["backfill", "gold.daily", "--from", "2024-01-01", "--to", "2024-01-05", "--per-run", "1"]);
    assert!(!out.ok, "{}", out.stdout);
    assert!(
        out.stdout.contains("4/5 range(s) done") && out.stdout.contains("not done: 2024-01-03 (FAILURE)"),
        "{}",
        out.stdout
    );
    let id = backfill_id(&out.stdout);
    assert_eq!(gold(&b), ["day,total,n", "2024-01-01,15,2", "2024-01-02,7,1", "2024-01-05,2,1"]);

    b.write("models/gold/daily.sql", DAILY);
    let resumed = b.cmd(&["backfill", "--resume", &id]).success();
    assert!(resumed.stdout.contains("2024-01-03 was FAILURE; attempt 2 queued"), "{}", resumed.stdout);
    assert!(
        resumed.stdout.contains("1 range(s) requeued") && resumed.stdout.contains("5/5 range(s) done"),
        "{}",
        resumed.stdout
    );
    assert_eq!(gold(&b), ["day,total,n", "2024-01-01,15,2", "2024-01-02,7,1", "2024-01-03,1,1", "2024-01-05,2,1"]);
    let runs = b.cmd(&["runs", "--tag", &format!("backfill={id}")]).success().stdout;
    assert_eq!(runs.lines().skip(1).count(), 6, "five ranges, one of them twice: {runs}");
}

#[test]
fn a_killed_backfill_resumes_where_it_stopped() {
    let b = project();
    let days: Vec<(String, i64)> = (1..=20).map(|d| (format!("2024-01-{d:02}"), d)).collect();
    let rows: Vec<(&str, i64)> = days.iter().map(|(d, a)| (d.as_str(), *a)).collect();
    b.write("models/silver/events.sql", &events(&rows));
    b.cmd(&["run", "silver.events"]).success();
    let mut child = b
        .command(&["backfill", "gold.daily", "--from", "2024-01-01", "--to", "2024-01-20", "--per-run", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut id = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        id.get_or_insert_with(|| backfill_id(&line));
        if line.contains("[4/20]") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let id = id.unwrap();
    let before = b.cmd(&["backfill", "--status", &id]).stdout;
    assert!(!before.contains("20/20"), "{before}");

    // The run the kill interrupted is taken for dead once its heartbeat is stale (3 s here);
    // the resume waits for that, requeues it, and does the rest.
    let resumed = b.cmd(&["backfill", "--resume", &id]).success();
    assert!(resumed.stdout.contains("20/20 range(s) done"), "{}", resumed.stdout);
    let expected: Vec<String> =
        std::iter::once("day,total,n".to_string()).chain((1..=20).map(|d| format!("2024-01-{d:02},{d},1"))).collect();
    assert_eq!(gold(&b), expected);
    // No range succeeded twice.
    let runs = b.cmd(&["runs", "--tag", &format!("backfill={id}"), "--status", "success", "--limit", "100"]).success();
    assert_eq!(runs.stdout.lines().skip(1).count(), 20, "{}", runs.stdout);
}
