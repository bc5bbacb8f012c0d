//! Every run is recorded in the metadata store: `basin runs`, `basin runs show`, `basin cancel`,
//! and no run left STARTED by a process that died.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::Basin;

/// A model that keeps one core busy for a long while (minutes in a debug build), so a test can
/// act on it while it runs.
const SLOW: &str = "SELECT COUNT(*) AS n, SUM(a.value * b.value) AS s \
                    FROM generate_series(1, 200000) a CROSS JOIN generate_series(1, 20000) b";

/// The `run` column of `basin runs` output lines after the header.
fn run_ids(out: &str) -> Vec<String> {
    out.lines().skip(1).filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect()
}

/// Lines of `basin runs` (after the header) whose run id is `id`.
fn line_of(b: &Basin, id: &str) -> String {
    let out = b.cmd(&["runs", "--limit", "50"]).success().stdout;
    out.lines().find(|l| l.starts_with(id)).unwrap_or_else(|| panic!("run {id} not listed:\n{out}")).to_string()
}

/// A background `basin run`, killed if a test fails before it ends (it would run for minutes).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `basin run` in the background and wait until it is recorded as STARTED.
fn start_slow_run(b: &Basin) -> (Running, String) {
    let child =
        Running(b.command(&["run", "silver.slow"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    let start = Instant::now();
    loop {
        let out = b.cmd(&["runs", "--status", "started"]).success().stdout;
        if let Some(id) = run_ids(&out).into_iter().next() {
            return (child, id);
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the run was never recorded as started");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn slow_project() -> Basin {
    let b = Basin::empty();
    b.write("basin.toml", "[project]\nname = \"t\"\n[run]\nheartbeat_interval = \"1s\"\n");
    b.write("models/silver/slow.sql", SLOW);
    b
}

#[test]
fn every_run_is_recorded_with_its_events_and_materialisations() {
    let b = Basin::init();
    b.cmd(&["run"]).success();
    let out = b.cmd(&["runs"]).success().stdout;
    let ids = run_ids(&out);
    assert_eq!(ids.len(), 1, "{out}");
    let ok = &ids[0];
    assert!(line_of(&b, ok).contains("SUCCESS"), "{out}");

    let shown = b.cmd(&["runs", "show", ok]).success().stdout;
    assert!(shown.contains("status     SUCCESS"), "{shown}");
    assert!(shown.contains("launcher   in_process on "), "{shown}");
    for asset in ["silver.customers", "silver.orders", "gold.top_customers"] {
        let built = shown.lines().any(|l| l.contains("asset_materialized") && l.contains(asset));
        assert!(built, "no materialisation event for {asset}:\n{shown}");
    }
    let events = shown.split("\n\n").nth(1).expect("an events section");
    assert!(events.lines().last().unwrap().contains("run_success"), "{shown}");

    // The same run id is on the Delta commits it made, and its materialisations are kept.
    let history = b.cmd(&["history", "silver.customers", "--limit", "1"]).success().stdout;
    assert!(history.contains(ok.as_str()), "{history}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let versions: Vec<(String, Option<i64>)> = rt.block_on(async {
        use sqlx::Connection;
        let url = format!("sqlite://{}", b.path().join(".basin/basin.db").display());
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query_as("SELECT asset, delta_version FROM materializations WHERE run_id = $1 ORDER BY asset")
            .bind(ok)
            .fetch_all(&mut c)
            .await
            .unwrap()
    });
    assert!(versions.contains(&("silver.customers".to_string(), Some(0))), "{versions:?}");

    // A failing model: the run fails with the category a retry policy needs, and filters find it.
    b.write("models/silver/broken.sql", "SELECT no_such_column FROM silver.customers");
    let failed = b.cmd(&["run", "silver.broken"]);
    assert!(!failed.ok);
    let out = b.cmd(&["runs", "--status", "failure"]).success().stdout;
    let bad = run_ids(&out);
    assert_eq!(bad.len(), 1, "{out}");
    assert!(out.contains("bad_query: silver.broken: "), "{out}");
    let by_asset = b.cmd(&["runs", "--asset", "silver.broken"]).success().stdout;
    assert_eq!(run_ids(&by_asset), bad, "{by_asset}");
    let recent = b.cmd(&["runs", "--since", "1h", "--limit", "1"]).success().stdout;
    assert_eq!(run_ids(&recent), bad, "newest first: {recent}");
    let shown = b.cmd(&["runs", "show", &bad[0]]).success().stdout;
    assert!(shown.contains("asset_failed") && shown.contains("no_such_column"), "{shown}");
    // A few characters of an id are enough when they name one run.
    let tail = &bad[0][bad[0].len() - 8..];
    let by_part = b.cmd(&["runs", "show", tail]).success().stdout;
    assert!(by_part.contains(&format!("run        {}", bad[0])), "{by_part}");
    // Ids begin with their time: two runs seconds apart share their first characters.
    let e = b.cmd(&["runs", "show", &bad[0][..6]]);
    assert!(!e.ok && e.stderr.contains("part of the ids of several runs"), "{}", e.stderr);
    let e = b.cmd(&["runs", "show", "-"]);
    assert!(!e.ok && e.stderr.contains("no run `-`"), "too short to search for: {}", e.stderr);

    // Mistakes on the command line are explained.
    let e = b.cmd(&["runs", "--status", "done"]);
    assert!(!e.ok && e.stderr.contains("unknown run status `done`"), "{}", e.stderr);
    let e = b.cmd(&["runs", "show", "0000"]);
    assert!(!e.ok && e.stderr.contains("no run `0000`"), "{}", e.stderr);
    let e = b.cmd(&["cancel", ok]);
    assert!(!e.ok && e.stdout.contains("had already ended: SUCCESS"), "{}", e.stdout);
}

#[test]
fn a_killed_run_is_failed_as_worker_died_not_left_started() {
    let b = slow_project();
    let (mut child, id) = start_slow_run(&b);
    child.0.kill().unwrap(); // SIGKILL: no chance to record anything
    child.0.wait().unwrap();
    let killed = Instant::now();
    // Three missed 1 s heartbeats make the worker dead; `basin runs` reaps it.
    loop {
        let line = line_of(&b, &id);
        if line.contains("FAILURE") {
            assert!(line.contains("worker_died"), "{line}");
            break;
        }
        assert!(line.contains("STARTED"), "{line}");
        assert!(killed.elapsed() < Duration::from_secs(8), "still not failed after 8 s: {line}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let waited = killed.elapsed();
    eprintln!("killed run failed as worker_died after {waited:?}");
    let shown = b.cmd(&["runs", "show", &id]).success().stdout;
    assert!(shown.contains("failure    worker_died: its worker"), "{shown}");
}

#[test]
fn cancel_stops_a_running_run_and_records_it_canceled() {
    let b = slow_project();
    let (mut child, id) = start_slow_run(&b);
    let asked = Instant::now();
    let out = b.cmd(&["cancel", &id]).success().stdout;
    assert!(out.contains("cancellation requested"), "{out}");
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        if asked.elapsed() > Duration::from_secs(20) {
            panic!("the run did not stop within 20 s of `basin cancel`");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("canceled run stopped {:?} after `basin cancel`", asked.elapsed());
    assert!(!status.success(), "a canceled run exits with a failure code");
    assert!(line_of(&b, &id).contains("CANCELED"));
    let shown = b.cmd(&["runs", "show", &id]).success().stdout;
    assert!(shown.contains("cancel_requested") && shown.contains("run_canceled"), "{shown}");
    // Nothing was committed by the canceled build.
    let history = b.cmd(&["history", "silver.slow"]);
    assert!(!history.ok || !history.stdout.contains(id.as_str()), "{}", history.stdout);
}

#[test]
fn an_invalid_heartbeat_interval_is_a_validation_error() {
    let b = Basin::empty();
    b.write("basin.toml", "[project]\nname = \"t\"\n[run]\nheartbeat_interval = \"soon\"\n");
    let out = b.cmd(&["validate"]);
    assert!(!out.ok);
    assert!(out.stderr.contains("basin.toml:4:1: error: invalid `run.heartbeat_interval`"), "{}", out.stderr);
}

#[test]
fn runs_can_be_recorded_in_postgresql() {
    use basin_testkit::{Server, TestDb};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let Some(db) = rt.block_on(TestDb::create(Server::Postgres, "runs")) else { return };
    let b = Basin::init();
    let toml = std::fs::read_to_string(b.path().join("basin.toml")).unwrap();
    let toml = toml.replace("url = \"sqlite://.basin/basin.db\"", &format!("url = \"{}\"", db.url));
    assert!(toml.contains(&db.url));
    b.write("basin.toml", &toml);
    b.cmd(&["run"]).success();
    let out = b.cmd(&["runs"]).success().stdout;
    let ids = run_ids(&out);
    assert_eq!(ids.len(), 1, "{out}");
    assert!(!b.path().join(".basin/basin.db").exists(), "nothing recorded in SQLite");
    let count: i64 = rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar("SELECT COUNT(*) FROM run_events WHERE run_id = $1 AND kind = 'asset_materialized'")
            .bind(&ids[0])
            .fetch_one(&mut c)
            .await
            .unwrap()
    });
    assert!(count >= 3, "{count} materialisation events");
}

#[test]
fn concurrent_runs_of_one_table_lose_a_commit_race_as_a_transient_failure() {
    let b = Basin::empty();
    b.write("models/silver/t.sql", "SELECT value AS x FROM generate_series(1, 1000)");
    let children: Vec<Running> = (0..4)
        .map(|_| Running(b.command(&["run"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()))
        .collect();
    for mut c in children {
        c.0.wait().unwrap();
    }
    let out = b.cmd(&["runs"]).success().stdout;
    let lines: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(lines.len(), 4, "{out}");
    // Delta lets one writer win each version; a loser is worth retrying, never a SQL error.
    for l in &lines {
        assert!(l.contains("SUCCESS") || (l.contains("FAILURE  ") && l.contains("transient: silver.t")), "{l}");
    }
    assert!(lines.iter().any(|l| l.contains("SUCCESS")), "{out}");
    assert_eq!(b.sql("SELECT COUNT(*) AS n FROM silver.t"), ["n", "1000"]);
}

/// `basin status`: the morning screen. No daemon alive is said; a model whose last build failed
/// is a `hard_failure` with its category and run, one whose `error` check fails on its data is
/// `failing_checks`, one never built yet says so; exit code 1 while something needs a person,
/// 0 once it is mended. `--format json` says the same.
#[test]
fn status_names_what_needs_a_person() {
    let b = Basin::empty();
    b.write("models/silver/good.sql", "SELECT 1 AS id")
        .write("models/silver/broken.sql", "SELECT nope FROM silver.good")
        .write(
            "models/silver/checked.sql",
            "/* basin\n[[checks]]\ntype = \"not_null\"\ncolumns = [\"id\"]\n*/\nSELECT CAST(NULL AS INT) AS id",
        )
        .write("models/gold/after.sql", "SELECT * FROM silver.broken");
    let fresh = b.command(&["status"]).output().unwrap();
    assert_eq!(fresh.status.code(), Some(0), "nothing failed yet");
    let said = String::from_utf8_lossy(&fresh.stdout).to_string();
    assert!(said.contains("daemons: none alive"), "{said}");
    assert!(said.contains("never_built"), "{said}");

    assert!(!b.cmd(&["run"]).ok);
    let ran = b.command(&["status"]).output().unwrap();
    let said = String::from_utf8_lossy(&ran.stdout).to_string();
    assert_eq!(ran.status.code(), Some(1), "{said}");
    let line = |asset: &str| said.lines().find(|l| l.contains(asset)).unwrap_or_default().to_string();
    assert!(line("silver.broken").trim_start().starts_with("hard_failure"), "{said}");
    assert!(line("silver.broken").contains("its last build failed (bad_query) in run "), "{said}");
    assert!(line("silver.checked").trim_start().starts_with("failing_checks"), "{said}");
    assert!(line("silver.checked").contains("not_null(id)"), "{said}");
    assert!(said.contains("assets: 1 healthy, 2 need a person"), "{said}");

    let json = b.command(&["status", "--format", "json"]).output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["needs_a_human"], true);
    let class = |asset: &str| {
        doc["assets"].as_array().unwrap().iter().find(|a| a["asset"] == asset).map(|a| a["class"].clone())
    };
    assert_eq!(class("silver.good"), Some("healthy".into()));
    assert_eq!(class("silver.broken"), Some("hard_failure".into()));
    // Downstream of the failure: not built by that run.
    assert_eq!(class("gold.after"), Some("stale_no_run".into()));

    // Mended: the next run builds everything, and nothing needs a person.
    b.write("models/silver/broken.sql", "SELECT id AS nope FROM silver.good").write(
        "models/silver/checked.sql",
        "/* basin\n[[checks]]\ntype = \"not_null\"\ncolumns = [\"id\"]\n*/\nSELECT 1 AS id",
    );
    b.cmd(&["run"]).success();
    let ran = b.command(&["status"]).output().unwrap();
    let said = String::from_utf8_lossy(&ran.stdout).to_string();
    assert_eq!(ran.status.code(), Some(0), "{said}");
    assert!(said.contains("assets: 4 healthy, 0 need a person, 0 other"), "{said}");
}

/// A schedule whose due tick no daemon queued is a miss `basin status` reports (exit code 1);
/// once a daemon has seen the schedule it is not.
#[test]
fn status_says_when_a_schedule_missed_its_tick() {
    let b = Basin::empty();
    b.write(
        "basin.toml",
        "[project]\nname = \"t\"\n\n[[schedules]]\nname = \"yearly\"\ncron = \"0 0 1 1 *\"\nselection = \"*\"\n",
    )
    .write("models/silver/good.sql", "SELECT 1 AS id");
    let ran = b.command(&["status"]).output().unwrap();
    let said = String::from_utf8_lossy(&ran.stdout).to_string();
    assert_eq!(ran.status.code(), Some(1), "{said}");
    assert!(said.contains("schedule yearly (0 0 1 1 *): MISSED the tick due"), "{said}");
    assert!(said.contains("no daemon queued it"), "{said}");

    // A daemon takes the schedule from now on: no tick is missed any more.
    let mut daemon = b.command(&["daemon"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let missed = loop {
        let out = b.command(&["status", "--format", "json"]).output().unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let missed = doc["schedules"][0]["missed"].as_bool();
        if missed == Some(false) || Instant::now() > deadline {
            break missed;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_eq!(missed, Some(false), "once a daemon has seen the schedule");
}
