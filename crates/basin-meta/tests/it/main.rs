//! The metadata store's contract, run against both backends: a SQLite file and a throwaway
//! database on the real PostgreSQL server (skipped with a message when it is missing, a
//! failure under `CI=true`).

use std::collections::BTreeMap;
use std::sync::Arc;

use basin_core::clock::{Clock, ManualClock};
use basin_meta::{
    Beat, Cancel, DaemonBeat, Error, FailureCategory, Finish, Footprint, Level, Materialization, MetaStore, NewEvent,
    NewRun, QueueLimits, Run, RunFilter, RunStatus, SqlStore,
};
use basin_testkit::{Server, TestDb};
use chrono::{DateTime, Duration, Utc};

/// One metadata database; [`Db::open`] gives as many stores (as if processes) as a test wants.
struct Db {
    url: String,
    dir: tempfile::TempDir,
    _server: Option<TestDb>,
}

impl Db {
    async fn sqlite() -> Option<Db> {
        let dir = tempfile::tempdir().unwrap();
        Some(Db { url: "sqlite://.basin/basin.db".into(), dir, _server: None })
    }

    async fn postgres() -> Option<Db> {
        let server = TestDb::create(Server::Postgres, "meta").await?;
        Some(Db { url: server.url.clone(), dir: tempfile::tempdir().unwrap(), _server: Some(server) })
    }

    async fn open(&self, clock: &ManualClock) -> SqlStore {
        SqlStore::open(&self.url, self.dir.path(), Arc::new(clock.clone())).await.unwrap()
    }
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T02:00:00Z").unwrap().to_utc()
}

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn queued(selection: &str, priority: i64, tag_pairs: &[(&str, &str)]) -> NewRun {
    NewRun { priority, tags: tags(tag_pairs), ..NewRun::new(vec![selection.to_string()], "subprocess") }
}

/// No footprint: runs never exclude each other.
fn anything(_: &Run) -> Footprint {
    Footprint::default()
}

/// Each run writes the assets it names, in its partition.
fn named(run: &Run) -> Footprint {
    Footprint { assets: run.selection.iter().cloned().collect(), partition: run.partition.clone() }
}

/// Each contract test once per backend.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        $(mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Db::sqlite().await.unwrap()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = super::Db::postgres().await {
                    super::$name(db).await
                }
            }
        })*
    };
}

on_both!(
    a_run_lives_from_queued_to_success_with_its_events,
    runs_are_listed_newest_first_by_status_asset_tag_and_time,
    cancel_stops_queued_runs_at_once_and_asks_workers_to_stop,
    a_run_without_heartbeat_is_failed_as_worker_died_and_its_late_worker_cannot_revive_it,
    the_queue_takes_priority_then_fifo_within_global_and_tag_limits,
    two_claimers_never_take_the_same_run,
    a_run_waits_while_another_writes_one_of_its_assets,
    cursors_move_only_from_the_value_the_mover_saw,
    materialisations_and_daemon_heartbeats_are_kept,
    the_schema_is_migrated_once_and_a_newer_one_is_refused,
    concurrent_writers_never_see_database_is_locked,
    schedule_ticks_and_retries_are_queued_once,
    a_backfill_s_runs_are_recorded_together_and_claimed_in_order,
    check_results_are_kept_and_the_latest_failures_found,
    the_query_log_keeps_each_statement,
    a_watchdog_cycle_is_taken_once_and_stores_only_transitions,
);

async fn a_watchdog_cycle_is_taken_once_and_stores_only_transitions(db: Db) {
    use basin_meta::{AlertDelivery, OpenAlert, WatchStatus};
    let clock = ManualClock::new(t0());
    let (a, b) = (db.open(&clock).await, db.open(&clock).await);
    let status = |subject: &str, class: &str, reason: &str| WatchStatus {
        subject: subject.into(),
        class: class.into(),
        reason: reason.into(),
        run_id: None,
        since: clock.now(),
        checked_at: clock.now(),
    };
    let first = [status("silver.x", "healthy", "built"), status("schedule:nightly", "healthy", "on time")];
    // Two daemons race for the first cycle: one takes it, the other writes nothing.
    let other = [status("silver.x", "zombie", "from b")];
    let (ta, tb) = tokio::join!(
        a.watchdog_cycle("watchdog:cycle", None, "1", &first),
        b.watchdog_cycle("watchdog:cycle", None, "1", &other)
    );
    let (ta, tb) = (ta.unwrap(), tb.unwrap());
    assert!(ta.is_some() != tb.is_some(), "exactly one daemon takes a cycle: {ta:?} {tb:?}");
    let events = ta.or(tb).unwrap();
    assert_eq!(events.len(), events.iter().filter(|e| e.from_class.is_none()).count());
    let classes: Vec<(String, String)> =
        a.watch_statuses().await.unwrap().into_iter().map(|s| (s.subject, s.class)).collect();
    assert!(classes.len() == 2 || classes == [("silver.x".to_string(), "zombie".to_string())], "{classes:?}");

    // The next cycle from the value both saw: only the changed subject is a transition; a
    // subject gone from the list is forgotten; a cycle from a stale value is refused.
    clock.advance(Duration::minutes(1));
    let second = [status("silver.x", "hard_failure", "its last build failed (bad_query)")];
    let events = a.watchdog_cycle("watchdog:cycle", Some("1"), "2", &second).await.unwrap().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].subject, "silver.x");
    assert_eq!(events[0].to_class, "hard_failure");
    assert!(events[0].from_class.is_some());
    assert!(b.watchdog_cycle("watchdog:cycle", Some("1"), "2", &second).await.unwrap().is_none());
    let stored = b.watch_statuses().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0].class.as_str(), stored[0].checked_at), ("hard_failure", clock.now()));
    let entered = stored[0].since;

    // Same class, new reason: the reason is kept up to date, with no transition and the time
    // it entered the class unchanged.
    clock.advance(Duration::minutes(1));
    let third = [status("silver.x", "hard_failure", "failed again")];
    assert!(a.watchdog_cycle("watchdog:cycle", Some("2"), "3", &third).await.unwrap().unwrap().is_empty());
    let stored = a.watch_statuses().await.unwrap();
    assert_eq!((stored[0].reason.as_str(), stored[0].since), ("failed again", entered));
    let history = a.watch_events(10).await.unwrap();
    assert_eq!(history[0].to_class, "hard_failure");
    assert!(history.windows(2).all(|w| w[0].id > w[1].id), "newest first");

    // Alerts open on a channel and their deliveries.
    let alert = OpenAlert {
        channel: "oncall".into(),
        subject: "silver.x".into(),
        class: "hard_failure".into(),
        firing: true,
        fired_at: clock.now(),
        updated_at: clock.now(),
    };
    a.set_alert(&alert).await.unwrap();
    a.set_alert(&OpenAlert { firing: false, ..alert.clone() }).await.unwrap();
    assert_eq!(b.open_alerts().await.unwrap(), [OpenAlert { firing: false, ..alert }]);
    let delivery = AlertDelivery {
        at: clock.now(),
        channel: "oncall".into(),
        dedup_key: "basin/p/silver.x".into(),
        state: "firing".into(),
        subject: "silver.x".into(),
        class: "hard_failure".into(),
        attempts: 3,
        delivered: false,
        error: Some("HTTP 503".into()),
    };
    a.add_alert_delivery(&delivery).await.unwrap();
    assert_eq!(b.alert_deliveries(5).await.unwrap(), [delivery]);
    assert_eq!(b.alert_delivery_counts().await.unwrap(), [("oncall".to_string(), "firing".to_string(), false, 1)]);
}

async fn the_query_log_keeps_each_statement(db: Db) {
    let clock = ManualClock::new(t0());
    let store = db.open(&clock).await;
    let entry = |query: &str, at, error: Option<(&str, &str)>| basin_meta::QueryLogEntry {
        at,
        user: "ana".into(),
        role: "analyst".into(),
        protocol: "postgres".into(),
        query: query.into(),
        duration_ms: 3,
        rows: if error.is_some() { 0 } else { 42 },
        bytes_scanned: if error.is_some() { None } else { Some(1024) },
        sqlstate: error.map(|e| e.0.to_string()),
        error: error.map(|e| e.1.to_string()),
    };
    let first = entry("SELECT 1", t0(), None);
    let second =
        entry("SELECT * FROM nope", t0() + Duration::seconds(2), Some(("42P01", "relation nope does not exist")));
    store.add_query_log(&[first.clone(), second.clone()]).await.unwrap();
    store.add_query_log(&[]).await.unwrap();
    assert_eq!(store.query_log(10).await.unwrap(), [second.clone(), first], "newest first, every field kept");
    assert_eq!(store.query_log(1).await.unwrap(), [second]);

    // A busy endpoint's hand-over of hundreds of entries lands whole and in order.
    let many: Vec<_> =
        (0..150).map(|i| entry(&format!("SELECT {i}"), t0() + Duration::seconds(10 + i), None)).collect();
    store.add_query_log(&many).await.unwrap();
    let logged = store.query_log(200).await.unwrap();
    assert_eq!(logged.len(), 152);
    assert_eq!(logged[..150], many.iter().rev().cloned().collect::<Vec<_>>()[..], "newest first, every field kept");
}

async fn check_results_are_kept_and_the_latest_failures_found(db: Db) {
    let clock = ManualClock::new(t0());
    let store = db.open(&clock).await;
    let result = |asset: &str, name: &str, severity: &str, passed: bool, run: &str| basin_meta::CheckResult {
        run_id: Some(run.to_string()),
        asset: asset.into(),
        check_name: name.into(),
        check_type: "not_null".into(),
        severity: severity.into(),
        passed,
        observed: if passed { "0 rows".into() } else { "12 rows".into() },
        threshold: "0 rows".into(),
        samples: if passed { vec![] } else { vec!["id=1".into(), "id=O'Brien".into()] },
        delta_version: Some(3),
        duration_ms: 4,
        at: t0(),
    };
    store
        .add_check_results(&[
            result("silver.a", "not_null(x)", "error", false, "r1"),
            result("silver.a", "unique(id)", "error", true, "r1"),
            result("silver.b", "not_null(y)", "warn", false, "r1"),
            result("silver.c", "not_null(z)", "error", false, "r1"),
        ])
        .await
        .unwrap();
    clock.advance(Duration::seconds(1));
    // silver.c was fixed by a later run; silver.a was not.
    store.add_check_results(&[result("silver.c", "not_null(z)", "error", true, "r2")]).await.unwrap();
    let failing: Vec<(String, String)> =
        store.failing_checks().await.unwrap().into_iter().map(|c| (c.asset, c.check_name)).collect();
    assert_eq!(failing, [("silver.a".to_string(), "not_null(x)".to_string())], "warn and fixed checks do not count");
    let of_a = store
        .check_results(&basin_meta::CheckFilter { asset: Some("silver.a".into()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(of_a.len(), 2);
    let failed = of_a.iter().find(|c| !c.passed).unwrap();
    assert_eq!(failed.samples, ["id=1", "id=O'Brien"]);
    assert_eq!((failed.delta_version, failed.at), (Some(3), t0()));
    let of_r2 = store
        .check_results(&basin_meta::CheckFilter { run_id: Some("r2".into()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(of_r2.len(), 1);
    assert_eq!(of_r2[0].at, t0() + Duration::seconds(1), "stamped by the store's clock");
}

async fn a_backfill_s_runs_are_recorded_together_and_claimed_in_order(db: Db) {
    let clock = ManualClock::new(t0());
    let store = db.open(&clock).await;
    let days = ["2026-01-01..2026-01-07", "2026-01-08..2026-01-14", "2026-01-15"];
    let new = days
        .iter()
        .map(|d| NewRun { partition: Some(d.to_string()), ..queued("gold.daily", 0, &[("backfill", "bf-1")]) })
        .collect();
    let created = store.create_runs(new).await.unwrap();
    assert_eq!(created.iter().map(|r| r.partition.as_deref().unwrap()).collect::<Vec<_>>(), days);
    let filter = RunFilter { tag: Some(("backfill".into(), "bf-1".into())), ..Default::default() };
    assert_eq!(store.runs(&filter).await.unwrap().len(), 3);
    let claimed = store.claim_queued(&QueueLimits::default(), "d", 10, &anything).await.unwrap();
    assert_eq!(claimed.iter().map(|r| r.partition.as_deref().unwrap()).collect::<Vec<_>>(), days, "FIFO");
    assert!(store.create_runs(Vec::new()).await.unwrap().is_empty());
}

async fn a_run_lives_from_queued_to_success_with_its_events(db: Db) {
    let clock = ManualClock::new(t0());
    let store = db.open(&clock).await;
    let run = store
        .create_run(NewRun { full_refresh: true, partition: Some("2026-01-01".into()), ..queued("+silver.x", 0, &[]) })
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Queued);
    assert_eq!(
        (run.selection.clone(), run.partition.clone(), run.full_refresh),
        (vec!["+silver.x".into()], Some("2026-01-01".into()), true)
    );
    assert_eq!(run.created_at, t0());
    assert_eq!(store.run(&run.id).await.unwrap().unwrap(), run);

    clock.advance(Duration::seconds(1));
    let started = store.start_run(&run.id, "host:42").await.unwrap();
    assert_eq!(started.status, RunStatus::Started);
    assert_eq!(started.worker.as_deref(), Some("host:42"));
    assert_eq!(started.started_at, Some(t0() + Duration::seconds(1)));
    assert_eq!(store.heartbeat(&run.id).await.unwrap(), Beat::Continue);
    store
        .add_events(
            &run.id,
            &[
                NewEvent::new("asset_started", Level::Info, Some("silver.x"), "building"),
                NewEvent::log(Level::Warn, "slow source"),
                NewEvent::new("asset_materialized", Level::Info, Some("silver.x"), "3 rows"),
            ],
        )
        .await
        .unwrap();
    clock.advance(Duration::seconds(4));
    assert!(store.finish_run(&run.id, &Finish::Success).await.unwrap());
    // A run ends once: a second report (a retrying worker, a monitor) changes nothing.
    assert!(
        !store
            .finish_run(&run.id, &Finish::Failure { category: FailureCategory::Other, message: "x".into() })
            .await
            .unwrap()
    );
    let done = store.run(&run.id).await.unwrap().unwrap();
    assert_eq!(done.status, RunStatus::Success);
    assert_eq!(done.duration(), Some(Duration::seconds(4)));
    assert_eq!(done.failure_category, None);

    let events = store.events(&run.id).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["run_queued", "run_started", "asset_started", "log", "asset_materialized", "run_success"]);
    assert!(events.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(events[3].level, Level::Warn);
    assert_eq!(events[2].asset.as_deref(), Some("silver.x"));

    match store.start_run(&run.id, "other:1").await {
        Err(Error::NotStartable { status: RunStatus::Success, .. }) => {}
        other => panic!("a finished run must not start again: {other:?}"),
    }
    assert!(matches!(store.start_run("no-such-run", "w").await, Err(Error::NoSuchRun(_))));

    // A run started by its own process (`basin run`) is recorded as started at once.
    let own = store.create_run(NewRun { started_by: Some("host:7".into()), ..queued("*", 0, &[]) }).await.unwrap();
    assert_eq!((own.status, own.worker.as_deref()), (RunStatus::Started, Some("host:7")));
    assert!(own.heartbeat_at.is_some());

    // What `basin status` and `/metrics` read: each asset's latest build event, runs counted.
    store
        .add_events(
            &own.id,
            &[
                NewEvent::new("asset_started", Level::Info, Some("silver.x"), "building"),
                NewEvent::new("asset_failed", Level::Error, Some("silver.x"), "bad_query: no column y"),
                NewEvent::new("asset_started", Level::Info, Some("silver.z"), "building"),
            ],
        )
        .await
        .unwrap();
    store
        .finish_run(&own.id, &Finish::Failure { category: FailureCategory::BadQuery, message: "no column y".into() })
        .await
        .unwrap();
    let latest: Vec<(String, String, String)> = store
        .latest_asset_events()
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.asset.unwrap_or_default(), e.kind, e.run_id))
        .collect();
    assert_eq!(
        latest,
        [
            ("silver.x".to_string(), "asset_failed".to_string(), own.id.clone()),
            ("silver.z".to_string(), "asset_started".to_string(), own.id.clone())
        ]
    );
    let mut counts = store.run_counts().await.unwrap();
    counts.sort();
    assert_eq!(counts, [("FAILURE".to_string(), Some("bad_query".to_string()), 1), ("SUCCESS".to_string(), None, 1)]);
}

async fn runs_are_listed_newest_first_by_status_asset_tag_and_time(db: Db) {
    let clock = ManualClock::new(t0());
    let store = db.open(&clock).await;
    let a = store.create_run(queued("source:v3", 0, &[("source", "v3")])).await.unwrap();
    clock.advance(Duration::hours(1));
    let b = store.create_run(queued("silver.x", 0, &[("source", "v30"), ("kind", "backfill")])).await.unwrap();
    store.add_events(&b.id, &[NewEvent::new("asset_started", Level::Info, Some("silver.x"), "")]).await.unwrap();
    clock.advance(Duration::hours(1));
    let c = store.create_run(queued("gold.y", 0, &[])).await.unwrap();
    store.start_run(&c.id, "w:1").await.unwrap();

    let ids = |runs: Vec<basin_meta::Run>| runs.into_iter().map(|r| r.id).collect::<Vec<String>>();
    assert_eq!(ids(store.runs(&RunFilter::default()).await.unwrap()), [c.id.clone(), b.id.clone(), a.id.clone()]);
    let started = RunFilter { status: Some(RunStatus::Started), ..Default::default() };
    assert_eq!(ids(store.runs(&started).await.unwrap()), vec![c.id.clone()]);
    let by_asset = RunFilter { asset: Some("silver.x".into()), ..Default::default() };
    assert_eq!(ids(store.runs(&by_asset).await.unwrap()), vec![b.id.clone()]);
    // `source=v3` must not match `source=v30`.
    let by_tag = RunFilter { tag: Some(("source".into(), "v3".into())), ..Default::default() };
    assert_eq!(ids(store.runs(&by_tag).await.unwrap()), vec![a.id.clone()]);
    let since = RunFilter { since: Some(t0() + Duration::minutes(30)), ..Default::default() };
    assert_eq!(ids(store.runs(&since).await.unwrap()), [c.id.clone(), b.id.clone()]);
    let limited = RunFilter { limit: Some(1), ..Default::default() };
    assert_eq!(ids(store.runs(&limited).await.unwrap()), vec![c.id.clone()]);
    let nothing = RunFilter { status: Some(RunStatus::Failure), asset: Some("silver.x".into()), ..Default::default() };
    assert!(store.runs(&nothing).await.unwrap().is_empty());
}

async fn cancel_stops_queued_runs_at_once_and_asks_workers_to_stop(db: Db) {
    let clock = ManualClock::new(t0());
    let store = db.open(&clock).await;
    let waiting = store.create_run(queued("a", 0, &[])).await.unwrap();
    assert_eq!(store.request_cancel(&waiting.id).await.unwrap(), Cancel::Canceled);
    assert_eq!(store.run(&waiting.id).await.unwrap().unwrap().status, RunStatus::Canceled);
    assert!(matches!(
        store.start_run(&waiting.id, "w").await,
        Err(Error::NotStartable { status: RunStatus::Canceled, .. })
    ));
    assert!(store.claim_queued(&QueueLimits::default(), "d", 10, &anything).await.unwrap().is_empty());

    let running = store.create_run(queued("b", 0, &[])).await.unwrap();
    store.start_run(&running.id, "w:1").await.unwrap();
    assert_eq!(store.request_cancel(&running.id).await.unwrap(), Cancel::Requested);
    assert_eq!(store.heartbeat(&running.id).await.unwrap(), Beat::Cancel);
    assert!(store.finish_run(&running.id, &Finish::Canceled { message: "canceled by user".into() }).await.unwrap());
    assert_eq!(store.request_cancel(&running.id).await.unwrap(), Cancel::AlreadyFinished(RunStatus::Canceled));
    assert_eq!(store.heartbeat(&running.id).await.unwrap(), Beat::Gone(RunStatus::Canceled));
    let kinds: Vec<String> = store.events(&running.id).await.unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, ["run_queued", "run_started", "cancel_requested", "run_canceled"]);
    assert!(matches!(store.request_cancel("nope").await, Err(Error::NoSuchRun(_))));
}

async fn a_run_without_heartbeat_is_failed_as_worker_died_and_its_late_worker_cannot_revive_it(db: Db) {
    let clock = ManualClock::new(t0());
    let store = db.open(&clock).await;
    let alive = store.create_run(queued("a", 0, &[])).await.unwrap();
    let dead = store.create_run(queued("b", 0, &[])).await.unwrap();
    store.start_run(&alive.id, "host:1").await.unwrap();
    store.start_run(&dead.id, "host:2").await.unwrap();
    clock.advance(Duration::seconds(20));
    store.heartbeat(&alive.id).await.unwrap();
    assert!(store.reap_dead(clock.now() - Duration::seconds(30)).await.unwrap().is_empty());

    clock.advance(Duration::seconds(20));
    let reaped = store.reap_dead(clock.now() - Duration::seconds(30)).await.unwrap();
    assert_eq!(reaped.len(), 1, "only the run whose heartbeat is 40 s old");
    let r = &reaped[0];
    assert_eq!(
        (r.id.as_str(), r.status, r.failure_category),
        (dead.id.as_str(), RunStatus::Failure, Some(FailureCategory::WorkerDied))
    );
    assert!(r.failure_message.as_deref().unwrap().contains("host:2"), "{:?}", r.failure_message);
    assert_eq!(r.finished_at, Some(clock.now()));
    // The worker was only slow, not dead: it learns the run is gone, and cannot overwrite it.
    assert_eq!(store.heartbeat(&dead.id).await.unwrap(), Beat::Gone(RunStatus::Failure));
    assert!(!store.finish_run(&dead.id, &Finish::Success).await.unwrap());
    assert_eq!(store.run(&dead.id).await.unwrap().unwrap().status, RunStatus::Failure);
    assert_eq!(store.run(&alive.id).await.unwrap().unwrap().status, RunStatus::Started);
    // Reaping again finds nothing new.
    assert!(store.reap_dead(clock.now() - Duration::seconds(30)).await.unwrap().is_empty());
    // A claimed run whose daemon died before launching it is found the same way.
    let claimed = store.create_run(queued("c", 0, &[])).await.unwrap();
    assert_eq!(store.claim_queued(&QueueLimits::default(), "daemon-1", 1, &anything).await.unwrap()[0].id, claimed.id);
    clock.advance(Duration::minutes(5));
    store.heartbeat(&alive.id).await.unwrap();
    let reaped = store.reap_dead(clock.now() - Duration::seconds(30)).await.unwrap();
    assert_eq!(reaped.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [claimed.id.as_str()]);
}

async fn the_queue_takes_priority_then_fifo_within_global_and_tag_limits(db: Db) {
    let clock = ManualClock::new(t0());
    let store = db.open(&clock).await;
    let mut ids = BTreeMap::new();
    for (name, priority, t) in [
        ("a", 0, vec![("source", "v3")]),
        ("b", 0, vec![("source", "v3")]),
        ("c", 5, vec![]),
        ("d", 0, vec![("kind", "backfill")]),
        ("e", 0, vec![]),
        ("f", 0, vec![]),
    ] {
        let r = store.create_run(queued(name, priority, &t)).await.unwrap();
        ids.insert(r.id.clone(), name);
        clock.advance(Duration::milliseconds(1));
    }
    let limits = QueueLimits {
        max_concurrent_runs: 4,
        tag_limits: BTreeMap::from([("source=v3".to_string(), 1), ("kind=backfill".to_string(), 1)]),
    };
    let names = |runs: Vec<basin_meta::Run>| runs.iter().map(|r| ids[&r.id]).collect::<Vec<_>>();
    // Priority first; b waits for a (one run against source v3); then FIFO up to four in flight.
    let first = store.claim_queued(&limits, "daemon", 10, &anything).await.unwrap();
    assert!(first.iter().all(|r| r.status == RunStatus::Starting && r.worker.as_deref() == Some("daemon")));
    assert_eq!(names(first.clone()), ["c", "a", "d", "e"]);
    assert!(store.claim_queued(&limits, "daemon", 10, &anything).await.unwrap().is_empty(), "four in flight");

    let a = first.iter().find(|r| ids[&r.id] == "a").unwrap();
    store.start_run(&a.id, "w").await.unwrap();
    store.finish_run(&a.id, &Finish::Success).await.unwrap();
    assert_eq!(names(store.claim_queued(&limits, "daemon", 10, &anything).await.unwrap()), ["b"]);
    let e = first.iter().find(|r| ids[&r.id] == "e").unwrap();
    store
        .finish_run(&e.id, &Finish::Failure { category: FailureCategory::Transient, message: "x".into() })
        .await
        .unwrap();
    // `max` bounds one claim too.
    assert_eq!(names(store.claim_queued(&limits, "daemon", 0, &anything).await.unwrap()), Vec::<&str>::new());
    assert_eq!(names(store.claim_queued(&limits, "daemon", 1, &anything).await.unwrap()), ["f"]);
    assert_eq!(
        store.runs(&RunFilter { status: Some(RunStatus::Queued), ..Default::default() }).await.unwrap().len(),
        0
    );
}

async fn a_run_waits_while_another_writes_one_of_its_assets(db: Db) {
    let clock = ManualClock::new(t0());
    let store = db.open(&clock).await;
    let mut ids = BTreeMap::new();
    for (name, selection, partition) in [
        ("a", vec!["silver.a", "silver.b"], None),
        ("b", vec!["silver.b"], None),
        ("c", vec!["silver.c"], None),
        ("d1", vec!["gold.daily"], Some("2026-01-01")),
        ("d2", vec!["gold.daily"], Some("2026-01-02")),
        ("d1 again", vec!["gold.daily"], Some("2026-01-01")),
    ] {
        let new = NewRun {
            partition: partition.map(str::to_string),
            ..NewRun::new(selection.iter().map(|s| s.to_string()).collect(), "subprocess")
        };
        let r = store.create_run(new).await.unwrap();
        ids.insert(r.id.clone(), name);
        clock.advance(Duration::milliseconds(1));
    }
    let names = |runs: &[Run]| runs.iter().map(|r| ids[&r.id]).collect::<Vec<_>>();
    let limits = QueueLimits { max_concurrent_runs: 100, ..QueueLimits::default() };
    // b writes silver.b, which a is writing; "d1 again" the partition d1 is writing. Others
    // (another asset, another partition) go ahead.
    let first = store.claim_queued(&limits, "daemon", 10, &named).await.unwrap();
    assert_eq!(names(&first), ["a", "c", "d1", "d2"]);
    assert!(store.claim_queued(&limits, "daemon", 10, &named).await.unwrap().is_empty());
    for done in ["a", "d1"] {
        let run = first.iter().find(|r| ids[&r.id] == done).unwrap();
        store.finish_run(&run.id, &Finish::Success).await.unwrap();
    }
    assert_eq!(names(&store.claim_queued(&limits, "daemon", 10, &named).await.unwrap()), ["b", "d1 again"]);
    // Without footprints, nothing is held back.
    let more = store.create_run(NewRun::new(vec!["silver.b".into()], "subprocess")).await.unwrap();
    assert!(store.claim_queued(&limits, "daemon", 10, &named).await.unwrap().is_empty());
    assert_eq!(store.claim_queued(&limits, "daemon", 10, &anything).await.unwrap()[0].id, more.id);
}

async fn two_claimers_never_take_the_same_run(db: Db) {
    let clock = ManualClock::new(t0());
    let (one, two) = (Arc::new(db.open(&clock).await), Arc::new(db.open(&clock).await));
    for i in 0..40 {
        one.create_run(queued(&format!("m{i}"), 0, &[("source", if i % 2 == 0 { "v3" } else { "crm" })]))
            .await
            .unwrap();
    }
    let limits =
        QueueLimits { max_concurrent_runs: 1000, tag_limits: BTreeMap::from([("source=v3".to_string(), 1000)]) };
    let claim_all = |store: Arc<SqlStore>, name: &'static str, limits: QueueLimits| async move {
        let mut got = Vec::new();
        loop {
            let claimed = store.claim_queued(&limits, name, 3, &anything).await.unwrap();
            if claimed.is_empty() {
                break got;
            }
            got.extend(claimed.into_iter().map(|r| (r.id, r.worker.unwrap())));
            tokio::task::yield_now().await;
        }
    };
    let (a, b) = tokio::join!(
        tokio::spawn(claim_all(one.clone(), "daemon-a", limits.clone())),
        tokio::spawn(claim_all(two.clone(), "daemon-b", limits.clone()))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut all: Vec<&String> = a.iter().chain(&b).map(|(id, _)| id).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 40, "every run claimed exactly once ({} + {})", a.len(), b.len());
    assert_eq!(a.len() + b.len(), 40);
    for (id, worker) in a.iter().chain(&b) {
        assert_eq!(one.run(id).await.unwrap().unwrap().worker.as_ref(), Some(worker));
    }
}

async fn cursors_move_only_from_the_value_the_mover_saw(db: Db) {
    let clock = ManualClock::new(t0());
    let store = db.open(&clock).await;
    assert_eq!(store.cursor("schedule:nightly").await.unwrap(), None);
    assert!(store.advance_cursor("schedule:nightly", None, "2026-01-01T02:00").await.unwrap());
    assert!(!store.advance_cursor("schedule:nightly", None, "2026-01-01T02:00").await.unwrap(), "set already");
    assert!(!store.advance_cursor("schedule:nightly", Some("2025-12-31T02:00"), "2026-01-02T02:00").await.unwrap());
    assert!(store.advance_cursor("schedule:nightly", Some("2026-01-01T02:00"), "2026-01-02T02:00").await.unwrap());
    assert_eq!(store.cursor("schedule:nightly").await.unwrap().as_deref(), Some("2026-01-02T02:00"));
}

async fn materialisations_and_daemon_heartbeats_are_kept(db: Db) {
    let clock = ManualClock::new(t0());
    let store = db.open(&clock).await;
    let run = store.create_run(queued("x", 0, &[])).await.unwrap();
    let m = |asset: &str, version: i64| Materialization {
        run_id: run.id.clone(),
        asset: asset.to_string(),
        partition: None,
        delta_version: Some(version),
        rows: 10 * version,
        bytes: Some(1000),
        duration_ms: 1500,
        sql_hash: Some("abc".into()),
        schema_hash: None,
        at: clock.now(),
    };
    store.record_materialization(&m("silver.x", 0)).await.unwrap();
    clock.advance(Duration::seconds(5));
    store.record_materialization(&m("gold.y", 0)).await.unwrap();
    store.record_materialization(&m("silver.x", 1)).await.unwrap();
    let of_x = store.materializations(Some("silver.x"), 10).await.unwrap();
    assert_eq!(of_x.iter().map(|m| m.delta_version).collect::<Vec<_>>(), [Some(1), Some(0)]);
    assert_eq!((of_x[0].rows, of_x[0].at, of_x[1].at), (10, t0() + Duration::seconds(5), t0()));
    assert_eq!(store.materializations(None, 2).await.unwrap().len(), 2);

    let beat = DaemonBeat { id: "d1".into(), host: "h".into(), pid: 9, started_at: t0(), heartbeat_at: t0() };
    store.daemon_heartbeat(&beat).await.unwrap();
    store.daemon_heartbeat(&DaemonBeat { heartbeat_at: t0() + Duration::seconds(10), ..beat.clone() }).await.unwrap();
    let daemons = store.daemons().await.unwrap();
    assert_eq!(daemons.len(), 1);
    assert_eq!((daemons[0].started_at, daemons[0].heartbeat_at), (t0(), t0() + Duration::seconds(10)));
}

async fn the_schema_is_migrated_once_and_a_newer_one_is_refused(db: Db) {
    let clock = ManualClock::new(t0());
    let store = db.open(&clock).await;
    let run = store.create_run(queued("x", 0, &[])).await.unwrap();
    // Opening again (another process, a later Basin) keeps what is there.
    let again = db.open(&clock).await;
    assert_eq!(again.schema_version().await.unwrap(), basin_meta::migrations::latest());
    assert_eq!(again.run(&run.id).await.unwrap().unwrap().id, run.id);
    // Simulate a store written by a newer Basin.
    sqlx_exec(&db, "INSERT INTO meta_migrations (version, name, applied_at) VALUES (999, 'future', 0)").await;
    let err = SqlStore::open(&db.url, db.dir.path(), Arc::new(clock.clone())).await.unwrap_err();
    assert!(matches!(err, Error::NewerSchema { found: 999, .. }), "{err}");
    assert!(err.to_string().contains("upgrade Basin"), "{err}");
}

async fn sqlx_exec(db: &Db, statement: &'static str) {
    use sqlx::Connection;
    if db.url.starts_with("sqlite") {
        let path = db.dir.path().join(".basin/basin.db");
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
        sqlx::query(statement).execute(&mut c).await.unwrap();
    } else {
        let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query(statement).execute(&mut c).await.unwrap();
    }
}

/// 16 runs, each from its own store (as separate processes would), write 1,000 events each,
/// one call per event, at once. No write may fail; every event is kept, in order per run.
/// On PostgreSQL 8: each store's pool grows to up to 8 connections under this load (a
/// connection goes back to its pool after the next call has asked for one), and 16 of them
/// would take more than the server's default 100 connections from the tests running beside.
async fn concurrent_writers_never_see_database_is_locked(db: Db) {
    let clock = ManualClock::new(t0());
    let mut tasks = tokio::task::JoinSet::new();
    let started = std::time::Instant::now();
    let writers = if db.url.starts_with("postgres") { 8 } else { 16 };
    for i in 0..writers {
        let store = db.open(&clock).await;
        tasks.spawn(async move {
            let run = store.create_run(NewRun { started_by: Some(format!("w:{i}")), ..queued("x", 0, &[]) }).await?;
            for n in 0..1000 {
                store.add_events(&run.id, &[NewEvent::log(Level::Info, format!("event {n}"))]).await?;
                if n % 100 == 0 {
                    store.heartbeat(&run.id).await?;
                }
            }
            store.finish_run(&run.id, &Finish::Success).await?;
            Ok::<_, Error>((store, run.id))
        });
    }
    let mut errors = Vec::new();
    let mut done = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(d) => done.push(d),
            Err(e) => errors.push(e.to_string()),
        }
    }
    eprintln!("{writers} writers x 1000 events on {}: {:?}", &db.url[..db.url.find(':').unwrap()], started.elapsed());
    assert!(errors.is_empty(), "{} writes failed, first: {}", errors.len(), errors[0]);
    for (store, id) in &done {
        let events = store.events(id).await.unwrap();
        let logs: Vec<&str> = events.iter().filter(|e| e.kind == "log").map(|e| e.message.as_str()).collect();
        assert_eq!(logs.len(), 1000);
        assert_eq!((logs[0], logs[999]), ("event 0", "event 999"));
        assert_eq!(store.run(id).await.unwrap().unwrap().status, RunStatus::Success);
    }
}

#[tokio::test]
async fn unknown_and_unreachable_stores_say_where() {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(t0()));
    let err = SqlStore::open("mysql://root@127.0.0.1/x", dir.path(), clock.clone()).await.unwrap_err();
    assert!(err.to_string().contains("unsupported metadata store URL"), "{err}");
    let err = SqlStore::open("postgres://basin:s3cret@127.0.0.1:1/meta", dir.path(), clock).await.unwrap_err();
    assert!(err.is_unreachable(), "{err:?}");
    let text = basin_core::error::chain(&err);
    assert!(text.contains("cannot open the metadata store at postgres://basin:***@127.0.0.1:1/meta: "), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
}

async fn schedule_ticks_and_retries_are_queued_once(db: Db) {
    let clock = ManualClock::new(t0());
    let store = db.open(&clock).await;
    assert!(store.advance_cursor("schedule:n", None, "t0").await.unwrap());
    let tick = store
        .enqueue_tick("schedule:n", Some("t0"), "t1", queued("tag:nightly", 0, &[("schedule", "n")]))
        .await
        .unwrap()
        .expect("the first daemon takes the tick");
    assert_eq!((tick.status, tick.queued, tick.retried), (RunStatus::Queued, true, false));
    // A second daemon that saw the same cursor value gets nothing, and queues nothing.
    assert!(store.enqueue_tick("schedule:n", Some("t0"), "t1", queued("tag:nightly", 0, &[])).await.unwrap().is_none());
    assert_eq!(store.cursor("schedule:n").await.unwrap().as_deref(), Some("t1"));
    assert_eq!(store.runs(&RunFilter::default()).await.unwrap().len(), 1);
    // A cursor not set yet is created with its first run, once.
    let first = store.enqueue_tick("automation:x", None, "v1", queued("x", 0, &[])).await.unwrap();
    assert!(first.is_some());
    assert!(store.enqueue_tick("automation:x", None, "v1", queued("x", 0, &[])).await.unwrap().is_none());
    assert_eq!(store.cursor("automation:x").await.unwrap().as_deref(), Some("v1"));
    store.request_cancel(&first.unwrap().id).await.unwrap();

    // The run fails transiently; a retry is queued once, and not claimed before its backoff.
    let claimed = store.claim_queued(&QueueLimits::default(), "d", 1, &anything).await.unwrap();
    assert_eq!(claimed[0].id, tick.id);
    store.start_run(&tick.id, "w").await.unwrap();
    store
        .finish_run(&tick.id, &Finish::Failure { category: FailureCategory::Transient, message: "reset".into() })
        .await
        .unwrap();
    assert_eq!(store.unretried_failures().await.unwrap().iter().map(|r| &r.id).collect::<Vec<_>>(), [&tick.id]);
    let retry = store.retry_run(&tick.id, t0() + Duration::seconds(30)).await.unwrap().expect("queued once");
    assert_eq!(
        (retry.attempt, retry.parent_run_id.as_deref(), retry.status),
        (2, Some(tick.id.as_str()), RunStatus::Queued)
    );
    assert_eq!((retry.selection.clone(), retry.tags.clone()), (tick.selection.clone(), tick.tags.clone()));
    assert_eq!(retry.not_before, Some(t0() + Duration::seconds(30)));
    assert!(store.retry_run(&tick.id, t0()).await.unwrap().is_none(), "never twice");
    assert!(store.unretried_failures().await.unwrap().is_empty());
    assert!(
        store.claim_queued(&QueueLimits::default(), "d", 5, &anything).await.unwrap().is_empty(),
        "backoff not over"
    );
    clock.advance(Duration::seconds(31));
    assert_eq!(store.claim_queued(&QueueLimits::default(), "d", 5, &anything).await.unwrap()[0].id, retry.id);
    let kinds: Vec<String> = store.events(&tick.id).await.unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds.last().map(String::as_str), Some("run_retried"));

    // A run its own process started (`basin run`) is never retried by a daemon.
    let own = store.create_run(NewRun { started_by: Some("cli:1".into()), ..queued("x", 0, &[]) }).await.unwrap();
    assert!(!own.queued);
    store
        .finish_run(&own.id, &Finish::Failure { category: FailureCategory::Transient, message: "x".into() })
        .await
        .unwrap();
    assert!(store.unretried_failures().await.unwrap().is_empty());
    assert!(store.retry_run(&own.id, t0()).await.unwrap().is_none());
    // A failure that is not retried is settled and not considered again.
    let other = store.create_run(queued("y", 0, &[])).await.unwrap();
    store
        .finish_run(&other.id, &Finish::Failure { category: FailureCategory::BadQuery, message: "x".into() })
        .await
        .unwrap();
    assert_eq!(store.unretried_failures().await.unwrap().len(), 1);
    store.settle_failure(&other.id).await.unwrap();
    assert!(store.unretried_failures().await.unwrap().is_empty());
}

/// Processes opening one new SQLite store at once (a daemon starting while a run is queued)
/// all get it: the WAL switch and the first migration may meet, and must wait, not fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_openers_of_a_new_sqlite_store_all_succeed() {
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let path = dir.path().to_path_buf();
            tasks.spawn(async move {
                let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(t0()));
                let store = SqlStore::open("sqlite://.basin/basin.db", &path, clock).await?;
                store.create_run(queued("x", 0, &[])).await.map(|_| ())
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
    }
}
