//! A simulated night, in milliseconds: a 02:00 wave of dimensions and a 03:00 wave of core
//! tables on an injected clock, through the real SQLite metadata store, with an in-process
//! worker that records what it ran. Order, no duplicate runs, retries with backoff, and a
//! restarted daemon that neither repeats nor loses a tick.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use basin_core::clock::{Clock, ManualClock};
use basin_core::daemon::{RetryPolicies, RetrySection, Schedule, ScheduleConfig};
use basin_core::failure::FailureCategory;
use basin_meta::{Finish, MetaStore, QueueLimits, RunFilter, RunStatus, SqlStore};
use basin_orchestrator::{Daemon, Launcher, RunInProcess, Settings};
use chrono::{DateTime, Utc};

/// A worker that takes its run, notes (selection, attempt, time) and ends it; the selections
/// in `flaky` fail transiently on their first attempt.
struct Worker {
    store: Arc<dyn MetaStore>,
    clock: ManualClock,
    done: Mutex<Vec<(String, i64, DateTime<Utc>)>>,
    flaky: BTreeSet<String>,
}

#[async_trait]
impl RunInProcess for Worker {
    async fn execute(&self, run_id: String) {
        let run = self.store.start_run(&run_id, "test-worker").await.unwrap();
        let selection = run.selection.join(" ");
        self.done.lock().unwrap().push((selection.clone(), run.attempt, self.clock.now()));
        let finish = if self.flaky.contains(&selection) && run.attempt == 1 {
            Finish::Failure { category: FailureCategory::Transient, message: "connection reset".into() }
        } else {
            Finish::Success
        };
        self.store.finish_run(&run_id, &finish).await.unwrap();
    }
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

/// A SQLite metadata store in a temporary directory, on a manual clock starting at `start`.
async fn store_at(start: &str) -> (tempfile::TempDir, ManualClock, Arc<dyn MetaStore>) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(at(start));
    let store = SqlStore::open("sqlite://meta.db", dir.path(), Arc::new(clock.clone())).await.unwrap();
    (dir, clock, Arc::new(store))
}

fn schedule(name: &str, cron: &str, selection: &str) -> Schedule {
    Schedule::parse(&ScheduleConfig {
        name: name.into(),
        cron: cron.into(),
        timezone: Some("Europe/Berlin".into()),
        selection: selection.into(),
        priority: 0,
        tags: BTreeMap::from([("wave".to_string(), name.to_string())]),
    })
    .unwrap()
}

fn settings() -> Settings {
    Settings {
        limits: QueueLimits::default(),
        retry: RetryPolicies::uniform(RetrySection::default().policy().unwrap()),
        dead_after: Duration::from_secs(15),
        monitor_interval: Duration::from_secs(5),
        run_timeout: None,
    }
}

fn daemon(store: &Arc<dyn MetaStore>, clock: &ManualClock, worker: &Arc<Worker>) -> Daemon {
    Daemon::new(
        store.clone(),
        Arc::new(clock.clone()),
        settings(),
        vec![schedule("dims", "0 2 * * *", "tag:dims"), schedule("core", "0 3 * * *", "tag:core")],
        Launcher::InProcess(worker.clone()),
    )
}

/// A daemon without schedules whose in-process runs record what they build.
fn building(store: &Arc<dyn MetaStore>, clock: &ManualClock, worker: &Arc<Builds>) -> Daemon {
    Daemon::new(store.clone(), Arc::new(clock.clone()), settings(), Vec::new(), Launcher::InProcess(worker.clone()))
}

/// Move the clock in `step`s up to `until`, ticking after each step and letting the
/// in-process workers finish.
async fn run_until(d: &mut Daemon, clock: &ManualClock, until: DateTime<Utc>, step: chrono::Duration) {
    while clock.now() < until {
        clock.advance(step);
        d.tick().await.unwrap();
        // Workers must end before the clock moves on: this test's worker does not heartbeat.
        for _ in 0..2000 {
            if d.running() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
            d.tick().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_night_runs_each_wave_once_in_order_and_retries_a_transient_failure() {
    // 00:30 in Berlin (winter: UTC+1).
    let (_dir, clock, store) = store_at("2026-01-14T23:30:00Z").await;
    let worker = Arc::new(Worker {
        store: store.clone(),
        clock: clock.clone(),
        done: Mutex::new(Vec::new()),
        flaky: BTreeSet::from(["tag:core".to_string()]),
    });
    let started = std::time::Instant::now();
    let mut d = daemon(&store, &clock, &worker);
    run_until(&mut d, &clock, at("2026-01-15T04:00:00Z"), chrono::Duration::seconds(30)).await;

    let done = worker.done.lock().unwrap().clone();
    let what: Vec<(&str, i64)> = done.iter().map(|(s, a, _)| (s.as_str(), *a)).collect();
    assert_eq!(what, [("tag:dims", 1), ("tag:core", 1), ("tag:core", 2)], "{done:?}");
    // 02:00 and 03:00 Berlin are 01:00 and 02:00 UTC; the retry waits its 30 s backoff.
    assert_eq!(done[0].2, at("2026-01-15T01:00:00Z"));
    assert_eq!(done[1].2, at("2026-01-15T02:00:00Z"));
    let retry_after = done[2].2 - done[1].2;
    assert!(
        retry_after >= chrono::Duration::seconds(30) && retry_after <= chrono::Duration::seconds(90),
        "{retry_after}"
    );

    let runs = store.runs(&RunFilter { limit: Some(100), ..Default::default() }).await.unwrap();
    assert_eq!(runs.len(), 3, "no duplicate runs: {runs:?}");
    let statuses: BTreeMap<(String, i64), RunStatus> =
        runs.iter().map(|r| ((r.selection.join(" "), r.attempt), r.status)).collect();
    assert_eq!(statuses[&("tag:dims".to_string(), 1)], RunStatus::Success);
    assert_eq!(statuses[&("tag:core".to_string(), 1)], RunStatus::Failure);
    assert_eq!(statuses[&("tag:core".to_string(), 2)], RunStatus::Success);
    assert!(runs.iter().all(|r| r.tags.get("schedule").is_some_and(|s| r.tags.get("wave") == Some(s))));

    // A restarted daemon repeats nothing...
    drop(d);
    let mut d = daemon(&store, &clock, &worker);
    run_until(&mut d, &clock, at("2026-01-15T12:00:00Z"), chrono::Duration::minutes(10)).await;
    assert_eq!(worker.done.lock().unwrap().len(), 3);
    // ...and one that was down over the next night's ticks catches up on both: queued in tick
    // order, then launched together (they are independent runs).
    clock.set(at("2026-01-16T05:00:00Z"));
    run_until(&mut d, &clock, at("2026-01-16T05:10:00Z"), chrono::Duration::minutes(1)).await;
    let done = worker.done.lock().unwrap().clone();
    let mut tail: Vec<(&str, i64)> = done[3..].iter().map(|(s, a, _)| (s.as_str(), *a)).collect();
    tail.sort();
    assert_eq!(tail, [("tag:core", 1), ("tag:core", 2), ("tag:dims", 1)], "{done:?}");
    let runs = store.runs(&RunFilter { limit: Some(100), ..Default::default() }).await.unwrap();
    let firsts: Vec<&str> = runs.iter().rev().filter(|r| r.attempt == 1).map(|r| r.tags["schedule"].as_str()).collect();
    assert_eq!(firsts, ["dims", "core", "dims", "core"], "queued in tick order");
    eprintln!("two simulated nights in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_dies_is_failed_at_once_and_retried() {
    struct Dies {
        store: Arc<dyn MetaStore>,
    }
    #[async_trait]
    impl RunInProcess for Dies {
        async fn execute(&self, run_id: String) {
            // Takes the run and vanishes without ending it, as a killed process would.
            let run = self.store.start_run(&run_id, "w").await.unwrap();
            if run.attempt > 1 {
                self.store.finish_run(&run_id, &Finish::Success).await.unwrap();
            }
        }
    }
    let (_dir, clock, store) = store_at("2026-01-15T00:00:00Z").await;
    let mut d = Daemon::new(
        store.clone(),
        Arc::new(clock.clone()),
        settings(),
        Vec::new(),
        Launcher::InProcess(Arc::new(Dies { store: store.clone() })),
    );
    let queued = store.create_run(basin_meta::NewRun::new(vec!["silver.x".into()], "in_process")).await.unwrap();
    d.tick().await.unwrap();
    for _ in 0..100 {
        if store.run(&queued.id).await.unwrap().unwrap().status.is_terminal() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        d.tick().await.unwrap();
    }
    let failed = store.run(&queued.id).await.unwrap().unwrap();
    assert_eq!((failed.status, failed.failure_category), (RunStatus::Failure, Some(FailureCategory::WorkerDied)));
    assert!(failed.failure_message.unwrap().contains("exited"), "found by its exit, not by a heartbeat timeout");
    assert_eq!(clock.now(), at("2026-01-15T00:00:00Z"), "no time had to pass");
    // The retry is queued by the next tick, claimable once its 30 s backoff is over.
    d.tick().await.unwrap();
    clock.advance(chrono::Duration::seconds(31));
    for _ in 0..200 {
        d.tick().await.unwrap();
        let runs = store.runs(&RunFilter::default()).await.unwrap();
        if runs.iter().any(|r| r.attempt == 2 && r.status == RunStatus::Success) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the retry did not succeed: {:?}", store.runs(&RunFilter::default()).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_past_their_timeout_are_stopped_and_canceled_runs_are_killed() {
    /// Takes its run and works on it forever (heartbeats are not this test's subject).
    struct Forever {
        store: Arc<dyn MetaStore>,
    }
    #[async_trait]
    impl RunInProcess for Forever {
        async fn execute(&self, run_id: String) {
            self.store.start_run(&run_id, "w").await.unwrap();
            std::future::pending::<()>().await;
        }
    }
    let (_dir, clock, store) = store_at("2026-01-15T00:00:00Z").await;
    let settings = Settings {
        dead_after: Duration::from_secs(3600),
        monitor_interval: Duration::from_secs(1),
        run_timeout: Some(Duration::from_secs(60)),
        ..settings()
    };
    let mut d = Daemon::new(
        store.clone(),
        Arc::new(clock.clone()),
        settings,
        Vec::new(),
        Launcher::InProcess(Arc::new(Forever { store: store.clone() })),
    );
    let slow = store.create_run(basin_meta::NewRun::new(vec!["a".into()], "in_process")).await.unwrap();
    let doomed = store.create_run(basin_meta::NewRun::new(vec!["b".into()], "in_process")).await.unwrap();
    d.tick().await.unwrap();
    for _ in 0..400 {
        let runs = store.runs(&RunFilter { status: Some(RunStatus::Started), ..Default::default() }).await.unwrap();
        if runs.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(d.running(), 2);
    store.request_cancel(&doomed.id).await.unwrap();
    clock.advance(chrono::Duration::seconds(2));
    d.tick().await.unwrap();
    let canceled = store.run(&doomed.id).await.unwrap().unwrap();
    assert_eq!(canceled.status, RunStatus::Canceled);
    assert_eq!(d.running(), 1, "the canceled run's worker was stopped");

    clock.advance(chrono::Duration::seconds(30));
    d.tick().await.unwrap();
    assert_eq!(store.run(&slow.id).await.unwrap().unwrap().status, RunStatus::Started, "30 s is within the timeout");
    clock.advance(chrono::Duration::seconds(31));
    let tick = d.tick().await.unwrap();
    let timed_out = store.run(&slow.id).await.unwrap().unwrap();
    assert_eq!((timed_out.status, timed_out.failure_category), (RunStatus::Failure, Some(FailureCategory::Timeout)));
    assert_eq!(d.running(), 0);
    assert!(tick.notices.iter().any(|n| n.contains("timeout")), "{:?}", tick.notices);
    // A timeout is not retried by the default policy.
    clock.advance(chrono::Duration::seconds(120));
    d.tick().await.unwrap();
    assert_eq!(store.runs(&RunFilter::default()).await.unwrap().len(), 2);
}

/// A worker that "materialises" its selection: records a materialisation per asset.
struct Builds {
    store: Arc<dyn MetaStore>,
    built: Mutex<Vec<String>>,
}

#[async_trait]
impl RunInProcess for Builds {
    async fn execute(&self, run_id: String) {
        let run = self.store.start_run(&run_id, "w").await.unwrap();
        for asset in &run.selection {
            self.store.record_materialization(&materialization(&run_id, asset)).await.unwrap();
            self.built.lock().unwrap().push(asset.clone());
        }
        self.store.finish_run(&run_id, &Finish::Success).await.unwrap();
    }
}

fn materialization(run_id: &str, asset: &str) -> basin_meta::Materialization {
    basin_meta::Materialization {
        run_id: run_id.into(),
        asset: asset.into(),
        partition: None,
        delta_version: Some(1),
        rows: 1,
        bytes: None,
        duration_ms: 1,
        sql_hash: None,
        schema_hash: None,
        at: Utc::now(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eager_assets_follow_their_upstream_once_per_change() {
    let (_dir, clock, store) = store_at("2026-01-15T02:00:00Z").await;
    let worker = Arc::new(Builds { store: store.clone(), built: Mutex::new(Vec::new()) });
    let eager = vec![
        basin_orchestrator::Eager { asset: "silver.b".into(), upstream: vec!["bronze.a".into()] },
        basin_orchestrator::Eager { asset: "gold.c".into(), upstream: vec!["silver.b".into(), "bronze.z".into()] },
    ];
    let mut d = building(&store, &clock, &worker).with_automation(eager);
    let step = chrono::Duration::seconds(1);
    // Nothing upstream has been materialised: nothing to do.
    run_until(&mut d, &clock, at("2026-01-15T02:00:05Z"), step).await;
    assert!(worker.built.lock().unwrap().is_empty());

    // bronze.a lands three times before the daemon looks: one run of silver.b, then gold.c.
    let ingest = store
        .create_run(basin_meta::NewRun {
            started_by: Some("cli".into()),
            ..basin_meta::NewRun::new(vec!["source:v3".into()], "in_process")
        })
        .await
        .unwrap();
    for _ in 0..3 {
        clock.advance(chrono::Duration::milliseconds(10));
        store.record_materialization(&materialization(&ingest.id, "bronze.a")).await.unwrap();
    }
    run_until(&mut d, &clock, at("2026-01-15T02:00:15Z"), step).await;
    assert_eq!(*worker.built.lock().unwrap(), ["silver.b", "gold.c"]);
    // No change upstream: no more runs.
    run_until(&mut d, &clock, at("2026-01-15T02:00:30Z"), step).await;
    assert_eq!(worker.built.lock().unwrap().len(), 2);
    // gold.c's other upstream changes: only gold.c runs again.
    clock.advance(step);
    store.record_materialization(&materialization(&ingest.id, "bronze.z")).await.unwrap();
    run_until(&mut d, &clock, at("2026-01-15T02:00:40Z"), step).await;
    assert_eq!(*worker.built.lock().unwrap(), ["silver.b", "gold.c", "gold.c"]);
    let automated = store
        .runs(&RunFilter { tag: Some(("automation".into(), "gold.c".into())), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(automated.len(), 2);
    // A restarted daemon does not repeat what was handled.
    drop(d);
    let mut d = building(&store, &clock, &worker).with_automation(vec![basin_orchestrator::Eager {
        asset: "silver.b".into(),
        upstream: vec!["bronze.a".into()],
    }]);
    run_until(&mut d, &clock, at("2026-01-15T02:00:50Z"), step).await;
    assert_eq!(worker.built.lock().unwrap().len(), 3);
}

fn check(asset: &str, passed: bool) -> basin_meta::CheckResult {
    basin_meta::CheckResult {
        run_id: None,
        asset: asset.into(),
        check_name: "not_null(id)".into(),
        check_type: "not_null".into(),
        severity: "error".into(),
        passed,
        observed: if passed { "0 rows".into() } else { "3 rows".into() },
        threshold: "0 rows".into(),
        samples: Vec::new(),
        delta_version: Some(1),
        duration_ms: 1,
        at: Utc::now(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eager_assets_wait_while_an_upstream_error_check_fails() {
    let (_dir, clock, store) = store_at("2026-01-15T02:00:00Z").await;
    let worker = Arc::new(Builds { store: store.clone(), built: Mutex::new(Vec::new()) });
    let eager = vec![basin_orchestrator::Eager { asset: "silver.b".into(), upstream: vec!["bronze.a".into()] }];
    let mut d = building(&store, &clock, &worker).with_automation(eager);
    let step = chrono::Duration::seconds(1);
    let ingest = store
        .create_run(basin_meta::NewRun {
            started_by: Some("cli".into()),
            ..basin_meta::NewRun::new(vec!["source:v3".into()], "in_process")
        })
        .await
        .unwrap();
    // bronze.a lands with a failing error check: silver.b is not built on it.
    store.record_materialization(&materialization(&ingest.id, "bronze.a")).await.unwrap();
    store.add_check_results(&[check("bronze.a", false)]).await.unwrap();
    run_until(&mut d, &clock, at("2026-01-15T02:00:10Z"), step).await;
    assert!(worker.built.lock().unwrap().is_empty(), "bad data must not spread");
    // A failing warn check does not hold it; a new version passing its checks releases it.
    clock.advance(step);
    store.record_materialization(&materialization(&ingest.id, "bronze.a")).await.unwrap();
    store.add_check_results(&[check("bronze.a", true)]).await.unwrap();
    store
        .add_check_results(&[basin_meta::CheckResult {
            severity: "warn".into(),
            check_name: "row_count".into(),
            ..check("bronze.a", false)
        }])
        .await
        .unwrap();
    run_until(&mut d, &clock, at("2026-01-15T02:00:20Z"), step).await;
    assert_eq!(*worker.built.lock().unwrap(), ["silver.b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_cron_assets_run_once_per_tick_after_their_upstream_caught_up() {
    let (_dir, clock, store) = store_at("2026-01-15T05:00:00Z").await;
    let worker = Arc::new(Builds { store: store.clone(), built: Mutex::new(Vec::new()) });
    let on_cron = basin_orchestrator::OnCron {
        asset: "gold.daily".into(),
        upstream: vec!["silver.b".into()],
        schedule: Schedule::parse(&ScheduleConfig {
            name: "gold.daily".into(),
            cron: "0 6 * * *".into(),
            timezone: None,
            selection: "gold.daily".into(),
            priority: 0,
            tags: BTreeMap::new(),
        })
        .unwrap(),
    };
    let mut d = building(&store, &clock, &worker).with_cron_automation(vec![on_cron]);
    let other = store
        .create_run(basin_meta::NewRun {
            started_by: Some("cli".into()),
            ..basin_meta::NewRun::new(vec!["x".into()], "in_process")
        })
        .await
        .unwrap();
    let minute = chrono::Duration::minutes(1);
    // Upstream updated before the 06:00 tick: not enough.
    store.record_materialization(&materialization(&other.id, "silver.b")).await.unwrap();
    run_until(&mut d, &clock, at("2026-01-15T06:30:00Z"), minute).await;
    assert!(worker.built.lock().unwrap().is_empty(), "silver.b has not been updated since 06:00");
    // Updated after the tick: one run, and no more that day.
    store.record_materialization(&materialization(&other.id, "silver.b")).await.unwrap();
    run_until(&mut d, &clock, at("2026-01-15T09:00:00Z"), minute).await;
    assert_eq!(*worker.built.lock().unwrap(), ["gold.daily"]);
    store.record_materialization(&materialization(&other.id, "silver.b")).await.unwrap();
    run_until(&mut d, &clock, at("2026-01-16T05:59:00Z"), chrono::Duration::minutes(10)).await;
    assert_eq!(worker.built.lock().unwrap().len(), 1, "once per tick, however often upstream changes");
    // The next day's tick, upstream updated after it: the second run.
    run_until(&mut d, &clock, at("2026-01-16T06:05:00Z"), minute).await;
    store.record_materialization(&materialization(&other.id, "silver.b")).await.unwrap();
    run_until(&mut d, &clock, at("2026-01-16T06:10:00Z"), minute).await;
    assert_eq!(worker.built.lock().unwrap().len(), 2);
    let runs = store
        .runs(&RunFilter { tag: Some(("automation".into(), "gold.daily".into())), ..Default::default() })
        .await
        .unwrap();
    let ticks: Vec<&str> = runs.iter().map(|r| r.tags["tick"].as_str()).collect();
    assert_eq!(ticks, ["2026-01-16T06:00:00+00:00", "2026-01-15T06:00:00+00:00"]);
}

/// Retry policies by asset and by tag: a failure is retried as the failed asset's policy
/// says, else as the run's tag's, else as the default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_policies_follow_the_failed_asset_then_the_tag() {
    /// Fails every attempt of every run: `bad_query` on `silver.flaky_sql`, `source_unavailable`
    /// otherwise.
    struct Fails {
        store: Arc<dyn MetaStore>,
    }
    #[async_trait]
    impl RunInProcess for Fails {
        async fn execute(&self, run_id: String) {
            let run = self.store.start_run(&run_id, "w").await.unwrap();
            let asset = run.selection[0].clone();
            let category = if asset == "silver.flaky_sql" {
                FailureCategory::BadQuery
            } else {
                FailureCategory::SourceUnavailable
            };
            let event = basin_meta::NewEvent::new("asset_failed", basin_meta::Level::Error, Some(&asset), "no");
            self.store.add_events(&run_id, &[event]).await.unwrap();
            self.store.finish_run(&run_id, &Finish::Failure { category, message: "no".into() }).await.unwrap();
        }
    }
    let (_dir, clock, store) = store_at("2026-01-15T00:00:00Z").await;
    let daemon_retry = RetrySection { max_attempts: 2, backoff: "1s".into(), ..Default::default() };
    let section = basin_core::daemon::DaemonSection {
        retry: daemon_retry,
        tag_retry: BTreeMap::from([(
            "source=v3".to_string(),
            basin_core::daemon::RetryOverride { max_attempts: Some(4), ..Default::default() },
        )]),
        ..Default::default()
    };
    // A SQL error is not retried by default; this asset says its own are (a flaky UDF, say).
    let flaky_sql = basin_core::daemon::RetryOverride {
        max_attempts: Some(3),
        on: Some(vec!["bad_query".into()]),
        ..Default::default()
    };
    let policies = section.retry_policies([("silver.flaky_sql".to_string(), &flaky_sql)]).unwrap();
    let mut d = Daemon::new(
        store.clone(),
        Arc::new(clock.clone()),
        Settings { retry: policies, ..settings() },
        Vec::new(),
        Launcher::InProcess(Arc::new(Fails { store: store.clone() })),
    );
    let mut tagged = basin_meta::NewRun::new(vec!["bronze.v3__invoice".into()], "in_process");
    tagged.tags.insert("source".into(), "v3".into());
    store.create_run(tagged).await.unwrap();
    store.create_run(basin_meta::NewRun::new(vec!["bronze.files__drop".into()], "in_process")).await.unwrap();
    store.create_run(basin_meta::NewRun::new(vec!["silver.flaky_sql".into()], "in_process")).await.unwrap();
    // Each attempt ends before the clock moves on: this worker does not heartbeat, so a slow
    // attempt would otherwise be failed as dead (worker_died), which no policy here retries.
    run_until(&mut d, &clock, at("2026-01-15T00:05:00Z"), chrono::Duration::seconds(5)).await;
    let runs = store.runs(&RunFilter { limit: Some(100), ..Default::default() }).await.unwrap();
    let attempts = |asset: &str| {
        runs.iter().filter(|r| r.selection[0] == asset).inspect(|r| assert!(r.status.is_terminal())).count()
    };
    assert_eq!(attempts("bronze.v3__invoice"), 4, "the tag's policy: 4 attempts");
    assert_eq!(attempts("bronze.files__drop"), 2, "the default: 2 attempts");
    assert_eq!(attempts("silver.flaky_sql"), 3, "the asset's policy retries its SQL error");
}
