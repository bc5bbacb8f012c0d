//! `basin daemon` with real `basin worker` child processes: queued runs launched and logged,
//! schedules, workers SIGKILLed mid-run (failed at once, retried, completed), cancellation.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::Basin;

const SLOW: &str = "SELECT COUNT(*) AS n, SUM(a.value * b.value) AS s \
                    FROM generate_series(1, 200000) a CROSS JOIN generate_series(1, 20000) b";
const FAST: &str = "SELECT 1 AS n";

/// A background process, killed when the test ends however it ends.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn project(extra_toml: &str) -> Basin {
    let b = Basin::empty();
    b.write(
        "basin.toml",
        &format!(
            "[project]\nname = \"t\"\n[run]\nheartbeat_interval = \"1s\"\n[daemon]\nmax_concurrent_runs = 4\n\
             [daemon.retry]\nmax_attempts = 2\nbackoff = \"1s\"\n{extra_toml}"
        ),
    );
    b.write("models/silver/slow.sql", FAST);
    b.write("models/silver/fast.sql", FAST);
    b
}

fn start_daemon(b: &Basin) -> Background {
    let log = std::fs::File::create(b.path().join("daemon.out")).unwrap();
    Background(b.command(&["daemon"]).stdout(Stdio::from(log)).stderr(Stdio::null()).spawn().unwrap())
}

fn queue(b: &Basin, selection: &str) -> String {
    b.cmd(&["run", "--queue", selection]).success().stdout.trim().to_string()
}

/// `field` of `basin runs show ID` (the text after the label).
fn field(b: &Basin, id: &str, label: &str) -> Option<String> {
    let out = b.cmd(&["runs", "show", id]).success().stdout;
    out.lines().find_map(|l| l.strip_prefix(label)).map(|v| v.trim().to_string())
}

fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

/// The run that retries run `id`, if one was queued.
fn retry_of(b: &Basin, id: &str) -> Option<String> {
    let out = b.cmd(&["runs", "--limit", "10"]).success().stdout;
    let line = out.lines().skip(1).find(|l| l.contains(&format!("retry of {id}")))?;
    line.split_whitespace().next().map(str::to_string)
}

#[test]
fn the_daemon_launches_queued_runs_in_workers_and_logs_them() {
    let b = project("");
    let _daemon = start_daemon(&b);
    let id = queue(&b, "silver.fast");
    let took = wait_for("queued run succeeds", Duration::from_secs(60), || {
        field(&b, &id, "status").as_deref() == Some("SUCCESS")
    });
    eprintln!("queued → SUCCESS in {took:?}");
    let launcher = field(&b, &id, "launcher").unwrap();
    assert!(launcher.starts_with("subprocess on "), "{launcher}");
    let log = field(&b, &id, "log").expect("the worker's output is kept");
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains("silver.fast"), "{log}");
    assert_eq!(b.sql("SELECT n FROM silver.fast"), ["n", "1"]);
    let daemon_out = std::fs::read_to_string(b.path().join("daemon.out")).unwrap();
    assert!(daemon_out.contains(&format!("run {id} launched")), "{daemon_out}");
}

#[test]
fn schedules_queue_each_tick_once() {
    let b = project("[[schedules]]\nname = \"every2s\"\ncron = \"*/2 * * * * *\"\nselection = \"silver.fast\"\n");
    let daemon = start_daemon(&b);
    std::thread::sleep(Duration::from_secs(7));
    drop(daemon);
    let out = b.cmd(&["runs", "--tag", "schedule=every2s", "--limit", "100"]).success().stdout;
    let ids: Vec<&str> =
        out.lines().skip(1).filter(|l| !l.contains("retry of")).filter_map(|l| l.split_whitespace().next()).collect();
    assert!((2..=4).contains(&ids.len()), "one run per 2 s tick over ~7 s: {out}");
    // Each tick was queued once: the daemon's log names each tick once.
    let daemon_out = std::fs::read_to_string(b.path().join("daemon.out")).unwrap();
    let mut ticks: Vec<&str> =
        daemon_out.lines().filter_map(|l| l.split("tick ").nth(1)).filter_map(|t| t.split(' ').next()).collect();
    let n = ticks.len();
    ticks.dedup();
    assert_eq!(ticks.len(), n, "{daemon_out}");
    assert_eq!(n, ids.len(), "{daemon_out}");
}

/// The reliability check: 20 workers SIGKILLed mid-run. Each killed run must reach a
/// terminal state within two monitor intervals (2 s here), and its retry must complete.
#[test]
fn twenty_workers_killed_mid_run_are_failed_at_once_and_their_retries_complete() {
    let b = project("");
    let _daemon = start_daemon(&b);
    let mut detections = Vec::new();
    for _ in 0..20 {
        b.write("models/silver/slow.sql", SLOW);
        let id = queue(&b, "silver.slow");
        wait_for("worker starts", Duration::from_secs(30), || field(&b, &id, "status").as_deref() == Some("STARTED"));
        let worker = field(&b, &id, "launcher").unwrap();
        let pid = worker.rsplit(':').next().unwrap().to_string();
        // The retry must find the quick model; the killed attempt already read the slow one.
        b.write("models/silver/slow.sql", FAST);
        assert!(std::process::Command::new("kill").args(["-9", &pid]).status().unwrap().success());
        let killed = Instant::now();
        wait_for("killed run fails", Duration::from_secs(2), || field(&b, &id, "status").as_deref() == Some("FAILURE"));
        detections.push(killed.elapsed());
        let failure = field(&b, &id, "failure").unwrap();
        assert!(failure.starts_with("worker_died: its worker exited"), "{failure}");
        let retry = {
            let mut found = None;
            wait_for("retry queued", Duration::from_secs(10), || {
                found = retry_of(&b, &id);
                found.is_some()
            });
            found.unwrap()
        };
        wait_for("retry succeeds", Duration::from_secs(60), || {
            field(&b, &retry, "status").as_deref() == Some("SUCCESS")
        });
    }
    detections.sort();
    eprintln!(
        "20 SIGKILLed workers: failed after p50 {:?}, max {:?}; 20 retries succeeded",
        detections[10], detections[19]
    );
    let out = b.cmd(&["runs", "--status", "started"]).success().stdout;
    assert!(out.trim().is_empty(), "no run left STARTED: {out}");
}

#[test]
fn cancel_kills_a_daemon_run_and_records_it_canceled() {
    let b = project("");
    b.write("models/silver/slow.sql", SLOW);
    let _daemon = start_daemon(&b);
    let id = queue(&b, "silver.slow");
    wait_for("worker starts", Duration::from_secs(30), || field(&b, &id, "status").as_deref() == Some("STARTED"));
    let pid = field(&b, &id, "launcher").unwrap().rsplit(':').next().unwrap().to_string();
    b.cmd(&["cancel", &id]).success();
    let took =
        wait_for("run canceled", Duration::from_secs(10), || field(&b, &id, "status").as_deref() == Some("CANCELED"));
    eprintln!("daemon run canceled in {took:?}");
    wait_for("worker process gone", Duration::from_secs(10), || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
    });
    assert!(retry_of(&b, &id).is_none(), "a canceled run is not retried");
}

/// Several daemons, one PostgreSQL store: a schedule tick is queued once and a queued run is
/// launched once, whichever daemon gets there first.
#[test]
fn two_daemons_on_one_postgresql_store_share_the_work_without_doubles() {
    use basin_testkit::{Server, TestDb};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let Some(db) = rt.block_on(TestDb::create(Server::Postgres, "daemons")) else { return };
    let b = project(&format!(
        "[[schedules]]\nname = \"every1s\"\ncron = \"* * * * * *\"\nselection = \"silver.fast\"\n\
         [metadata]\nurl = \"{}\"\n",
        db.url
    ));
    let queued: Vec<String> = (0..12).map(|_| queue(&b, "silver.fast")).collect();
    let one = start_daemon(&b);
    let two = Background(b.command(&["daemon"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    std::thread::sleep(Duration::from_secs(6));
    drop((one, two));
    for id in &queued {
        wait_for("queued run ends", Duration::from_secs(30), || {
            field(&b, id, "status").is_some_and(|s| s == "SUCCESS" || s == "FAILURE")
        });
    }
    let (claims, ticks, daemons): (i64, Vec<(String, i64)>, i64) = rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
        let claims = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT run_id FROM run_events WHERE kind = 'run_starting' \
             GROUP BY run_id HAVING COUNT(*) > 1) t",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        let ticks = sqlx::query_as(
            // First attempts only: a scheduled run that lost the race for the model's next
            // version is retried as a new run of the same tick.
            "SELECT status, COUNT(*) FROM runs WHERE tags LIKE '%every1s%' AND attempt = 1 GROUP BY status ORDER BY status",
        )
        .fetch_all(&mut c)
        .await
        .unwrap();
        let daemons = sqlx::query_scalar("SELECT COUNT(DISTINCT message) FROM run_events WHERE kind = 'run_starting'")
            .fetch_one(&mut c)
            .await
            .unwrap();
        (claims, ticks, daemons)
    });
    assert_eq!(claims, 0, "no run was claimed twice");
    let scheduled: i64 = ticks.iter().map(|(_, n)| n).sum();
    assert!((3..=9).contains(&scheduled), "one run per 1 s tick over ~6 s, not one per daemon: {ticks:?}");
    // Runs of one model at once race for its next Delta version; a loser fails as transient
    // (and would be retried), never with anything else.
    for id in &queued {
        let status = field(&b, id, "status").unwrap();
        let failure = field(&b, id, "failure").unwrap_or_default();
        assert!(status == "SUCCESS" || failure.starts_with("transient: "), "run {id}: {status} {failure}");
    }
    assert!((1..=2).contains(&daemons));
    eprintln!("two daemons: {scheduled} scheduled runs ({ticks:?}) and 12 queued runs, claimed by {daemons} daemon(s)");
}

/// A daemon SIGKILLed mid-night and started again: the ticks it missed are queued, none twice,
/// and no run it had launched is launched again.
#[test]
fn a_daemon_killed_and_restarted_loses_no_tick_and_launches_nothing_twice() {
    let b = project("[[schedules]]\nname = \"every2s\"\ncron = \"*/2 * * * * *\"\nselection = \"silver.fast\"\n");
    let first = start_daemon(&b);
    std::thread::sleep(Duration::from_secs(5));
    drop(first); // SIGKILL
    std::thread::sleep(Duration::from_secs(5));
    let second = start_daemon(&b);
    std::thread::sleep(Duration::from_secs(4));
    drop(second);
    let out = b.cmd(&["runs", "--tag", "schedule=every2s", "--limit", "100"]).success().stdout;
    // First attempts only: catching up queues ticks together, and runs of one model at once
    // may lose a commit race and be retried (with the same tags).
    let ids: Vec<&str> =
        out.lines().skip(1).filter(|l| !l.contains("retry of")).filter_map(|l| l.split_whitespace().next()).collect();
    let mut ticks: Vec<chrono::DateTime<chrono::Utc>> = ids
        .iter()
        .map(|id| {
            let tags = field(&b, id, "tags").unwrap();
            let tick = tags.split(", ").find_map(|t| t.strip_prefix("tick=")).unwrap().to_string();
            chrono::DateTime::parse_from_rfc3339(&tick).unwrap().to_utc()
        })
        .collect();
    ticks.sort();
    let n = ticks.len();
    ticks.dedup();
    assert_eq!(ticks.len(), n, "no tick queued twice: {ticks:?}");
    assert!(n >= 4, "ticks before, during and after the downtime: {ticks:?}");
    for w in ticks.windows(2) {
        assert_eq!(w[1] - w[0], chrono::Duration::seconds(2), "no tick lost: {ticks:?}");
    }
    for id in &ids {
        let shown = b.cmd(&["runs", "show", id]).success().stdout;
        assert!(shown.matches("run_starting").count() <= 1, "launched once: {shown}");
    }
    eprintln!("daemon killed for 5 s: {n} consecutive 2 s ticks, each queued once");
}

#[test]
fn an_eager_model_is_built_when_its_upstream_changes() {
    let b = project("");
    b.write("models/silver/orders.sql", "SELECT value AS id FROM generate_series(1, 10)");
    b.write(
        "models/gold/order_count.sql",
        "/* basin\nautomation = \"eager\"\n*/\nSELECT COUNT(*) AS n FROM silver.orders",
    );
    let _daemon = start_daemon(&b);
    b.cmd(&["run", "silver.orders"]).success();
    let automated = || {
        let out = b.cmd(&["runs", "--tag", "automation=gold.order_count"]).success().stdout;
        out.lines().skip(1).map(str::to_string).collect::<Vec<_>>()
    };
    let took = wait_for("eager run succeeds", Duration::from_secs(60), || {
        automated().first().is_some_and(|l| l.contains("SUCCESS"))
    });
    eprintln!("upstream committed → eager downstream built in {took:?}");
    assert_eq!(b.sql("SELECT n FROM gold.order_count"), ["n", "10"]);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(automated().len(), 1, "one run per upstream change");
    // The upstream changes again: one more run.
    b.write("models/silver/orders.sql", "SELECT value AS id FROM generate_series(1, 25)");
    b.cmd(&["run", "silver.orders"]).success();
    wait_for("second eager run", Duration::from_secs(60), || {
        let runs = automated();
        runs.len() == 2 && runs[0].contains("SUCCESS")
    });
    assert_eq!(b.sql("SELECT n FROM gold.order_count"), ["n", "25"]);

    // A misspelt automation, or on_cron without a valid pattern, is a validation error at its line.
    b.write("models/gold/bad.sql", "/* basin\nautomation = \"eagre\"\n*/\nSELECT 1 AS x");
    let v = b.cmd(&["validate"]);
    assert!(!v.ok && v.stderr.contains("models/gold/bad.sql:2:"), "{}", v.stderr);
    b.write("models/gold/bad.sql", "/* basin\nautomation = \"on_cron\"\n*/\nSELECT 1 AS x");
    let v = b.cmd(&["validate"]);
    assert!(v.stderr.contains("bad.sql:2:1: error: `automation = \"on_cron\"` needs a `cron` pattern"), "{}", v.stderr);
    b.write("models/gold/bad.sql", "/* basin\nautomation = \"on_cron\"\ncron = \"0 25 * * *\"\n*/\nSELECT 1 AS x");
    let v = b.cmd(&["validate"]);
    assert!(v.stderr.contains("bad.sql:3:1: error: invalid cron `0 25 * * *`"), "{}", v.stderr);
    b.write("models/gold/bad.sql", "/* basin\nautomation = \"on_cron\"\ncron = \"0 6 * * *\"\n*/\nSELECT 1 AS x");
    b.cmd(&["validate"]).success();
}

#[test]
fn the_command_launcher_runs_the_template_per_run() {
    let b = project("");
    b.write(
        "basin.toml",
        &format!(
            "[project]\nname = \"t\"\n[daemon]\nlauncher = \"command\"\n\
             command = \"sleep 600 & echo $! > {{project}}/bg-{{run_id}}.pid; \
             '{}' worker -C {{project}} --run-id {{run_id}} && echo done {{run_id}}\"\n",
            crate::support::bin().display()
        ),
    );
    b.cmd(&["validate"]).success();
    let _daemon = start_daemon(&b);
    let id = queue(&b, "silver.fast");
    wait_for("run through the command succeeds", Duration::from_secs(60), || {
        field(&b, &id, "status").as_deref() == Some("SUCCESS")
    });
    let log = std::fs::read_to_string(field(&b, &id, "log").unwrap()).unwrap();
    assert!(log.contains(&format!("done {id}")), "the template ran with the run id: {log}");
    let background = |id: &str| std::fs::read_to_string(b.path().join(format!("bg-{id}.pid"))).unwrap();
    let alive = |pid: &str| {
        std::path::Path::new(&format!("/proc/{}", pid.trim())).exists()
            && !std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).is_ok_and(|s| s.contains(") Z "))
    };
    // A run that ends leaves what its template started alone.
    let first = background(&id);
    assert!(alive(&first));
    std::process::Command::new("kill").arg(first.trim()).status().unwrap();

    // Canceling kills everything the template started (its process group), not just its shell.
    b.write("models/silver/slow.sql", SLOW);
    let id = queue(&b, "silver.slow");
    wait_for("worker starts", Duration::from_secs(30), || field(&b, &id, "status").as_deref() == Some("STARTED"));
    let pid = field(&b, &id, "launcher").unwrap().rsplit(':').next().unwrap().to_string();
    b.cmd(&["cancel", &id]).success();
    wait_for("run canceled", Duration::from_secs(10), || field(&b, &id, "status").as_deref() == Some("CANCELED"));
    wait_for("the worker under the shell is gone", Duration::from_secs(10), || !alive(&pid));
    let sleeper = background(&id);
    wait_for("the template's background process is gone", Duration::from_secs(10), || !alive(&sleeper));
}

#[test]
fn a_worker_over_its_memory_limit_fails_as_out_of_memory() {
    let b = project("");
    let toml = std::fs::read_to_string(b.path().join("basin.toml")).unwrap();
    b.write("basin.toml", &toml.replace("[daemon]\n", "[daemon]\nworker_memory_limit = \"1MiB\"\n"));
    b.write(
        "models/silver/groups.sql",
        "SELECT value AS k, COUNT(*) AS n FROM generate_series(1, 3000000) GROUP BY value",
    );
    let _daemon = start_daemon(&b);
    let id = queue(&b, "silver.groups");
    wait_for("the run fails", Duration::from_secs(120), || field(&b, &id, "status").as_deref() == Some("FAILURE"));
    let failure = field(&b, &id, "failure").unwrap();
    assert!(failure.starts_with("out_of_memory: silver.groups: "), "{failure}");
    assert!(failure.to_lowercase().contains("resources exhausted"), "{failure}");
}

/// Sensors: new files in a files source's folder, and a database table's `MAX(cursor)`
/// moving, each queue one ingest of what changed; an unchanged source queues nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensors_queue_ingests_of_new_files_and_moved_cursors() {
    use sqlx::Connection;
    let b = project(
        "[[sensors]]\nname = \"landing\"\nsource = \"drop\"\ninterval = \"1s\"\n\n\
         [[sensors]]\nname = \"billing\"\nsource = \"v3\"\ntables = [\"invoice\"]\ninterval = \"1s\"\n",
    );
    b.write(
        "sources/drop.toml",
        "kind = \"files\"\n\n[[tables]]\nname = \"cdr\"\npath = \"landing/cdr_*.jsonl\"\nmode = \"incremental\"\n",
    );
    let db = b.path().join("billing.db");
    b.write(
        "sources/v3.toml",
        &format!(
            "kind = \"sqlite\"\nurl = \"sqlite://{}\"\n\n[[tables]]\nname = \"invoice\"\nmode = \"incremental\"\n\
             cursor = \"id\"\nprimary_key = [\"id\"]\nlag = \"0s\"\n",
            db.display()
        ),
    );
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("CREATE TABLE invoice (id INTEGER PRIMARY KEY, total REAL); INSERT INTO invoice VALUES (1, 10.0)")
        .execute(&mut conn)
        .await
        .unwrap();
    b.cmd(&["validate"]).success();

    let sensor_runs = |name: &str| -> Vec<String> {
        let out = b.cmd(&["runs", "--tag", &format!("sensor={name}"), "--limit", "100"]).success().stdout;
        out.lines().skip(1).map(str::to_string).collect()
    };
    let all_succeeded = |name: &str, n: usize| {
        let runs = sensor_runs(name);
        runs.len() == n && runs.iter().all(|l| l.contains("SUCCESS"))
    };
    let _daemon = start_daemon(&b);
    // First sight of the table: its rows are new to bronze.
    wait_for("the table's first ingest", Duration::from_secs(60), || all_succeeded("billing", 1));
    assert_eq!(b.sql("SELECT COUNT(*) AS n FROM bronze.v3__invoice"), ["n", "1"]);
    // No files yet: nothing to ingest.
    assert!(sensor_runs("landing").is_empty(), "{:?}", sensor_runs("landing"));

    b.write("landing/cdr_001.jsonl", "{\"call\": 1, \"secs\": 30}\n{\"call\": 2, \"secs\": 45}\n");
    wait_for("the new file's ingest", Duration::from_secs(60), || all_succeeded("landing", 1));
    assert_eq!(b.sql("SELECT COUNT(*) AS n FROM bronze.drop__cdr"), ["n", "2"]);

    sqlx::raw_sql("INSERT INTO invoice VALUES (2, 20.0), (3, 30.0)").execute(&mut conn).await.unwrap();
    b.write("landing/cdr_002.jsonl", "{\"call\": 3, \"secs\": 5}\n");
    wait_for("both changes ingested", Duration::from_secs(60), || {
        all_succeeded("billing", 2) && all_succeeded("landing", 2)
    });
    assert_eq!(b.sql("SELECT COUNT(*) AS n FROM bronze.v3__invoice"), ["n", "3"]);
    assert_eq!(b.sql("SELECT COUNT(*) AS n FROM bronze.drop__cdr"), ["n", "3"]);
    // Unchanged sources queue nothing more.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!((sensor_runs("billing").len(), sensor_runs("landing").len()), (2, 2));
    let show = b.cmd(&["runs", "show", sensor_runs("billing")[0].split_whitespace().next().unwrap()]).success();
    assert!(show.stdout.contains("bronze.v3__invoice"), "{}", show.stdout);
    conn.close().await.unwrap();
}

#[test]
fn sensors_on_unknown_sources_or_tables_are_refused() {
    let b = project(
        "[[sensors]]\nname = \"s\"\nsource = \"nowhere\"\n\n[[sensors]]\nname = \"t\"\nsource = \"drop\"\ntables = [\"nope\"]\ninterval = \"0s\"\n",
    );
    b.write("sources/drop.toml", "kind = \"files\"\n\n[[tables]]\nname = \"cdr\"\npath = \"landing/*.jsonl\"\n");
    let out = b.cmd(&["validate"]);
    assert!(!out.ok);
    for needle in [
        "sensor `s`: no source `nowhere`",
        "sensor `t`: source `drop` has no table `nope`",
        "`interval` must be more than 0",
    ] {
        assert!(out.stderr.contains(needle) || out.stdout.contains(needle), "{needle}: {}{}", out.stdout, out.stderr);
    }
}

/// Standby workers: started ahead of their runs, handed one run each, logging to the run's
/// log, and reading the models as they are when the run starts, not when they started.
#[test]
fn standby_workers_take_runs_with_the_current_models() {
    let b = project("");
    let daemon = start_daemon(&b);
    let standby_logs = || {
        std::fs::read_dir(b.path().join(".basin/logs"))
            .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("standby-")).count())
            .unwrap_or(0)
    };
    wait_for("two standby workers", Duration::from_secs(30), || standby_logs() == 2);
    // Changed after the standby workers started: the run must see this version.
    b.write("models/silver/fast.sql", "SELECT 2 AS n");
    let id = queue(&b, "silver.fast");
    wait_for("the run succeeds", Duration::from_secs(60), || field(&b, &id, "status").as_deref() == Some("SUCCESS"));
    assert_eq!(b.sql("SELECT n FROM silver.fast"), ["n", "2"]);
    let daemon_out = std::fs::read_to_string(b.path().join("daemon.out")).unwrap();
    assert!(daemon_out.contains(&format!("run {id} launched (standby pid")), "{daemon_out}");
    let log = std::fs::read_to_string(b.path().join(format!(".basin/logs/{id}.log"))).unwrap();
    assert!(log.contains("silver.fast"), "the standby's output is the run's log: {log}");
    // The pool is refilled, and a stopped daemon takes its idle standbys with it.
    wait_for("the pool refilled", Duration::from_secs(30), || standby_logs() == 2);
    let pid = daemon.0.id();
    std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    wait_for("idle standbys gone", Duration::from_secs(30), || standby_logs() == 0);
}
