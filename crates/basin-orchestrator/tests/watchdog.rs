//! The watchdog on an injected clock against the real metadata stores (SQLite, and PostgreSQL
//! when it is there), alerting real HTTP receivers: classes reached by real scenarios, one
//! alert per incident (fired, not repeated, resolved with the same dedup key), no secret in a
//! payload, a receiver that hangs never holding up the daemon, and two daemons on one store
//! never taking the same cycle.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use basin_core::alert::AlertConfig;
use basin_core::clock::{Clock, ManualClock};
use basin_core::daemon::{RetryPolicies, RetrySection, Schedule, ScheduleConfig};
use basin_core::failure::FailureCategory;
use basin_meta::{AlertDelivery, Finish, Level, Materialization, MetaStore, NewEvent, NewRun, SqlStore};
use basin_orchestrator::alerts::{Alerter, Channel};
use basin_orchestrator::status::Options;
use basin_orchestrator::watchdog::Watchdog;
use basin_testkit::{Server, TestDb};
use chrono::{DateTime, Utc};

const TOKEN: &str = "s3cret-url-token";
const HEADER_SECRET: &str = "hdr-s3cret";
const ROUTING_KEY: &str = "pd-routing-key";

/// One metadata database for a test, and as many stores on it as the test wants.
struct Db {
    url: String,
    dir: tempfile::TempDir,
    _server: Option<TestDb>,
}

impl Db {
    async fn sqlite() -> Option<Db> {
        Some(Db { url: "sqlite://meta.db".into(), dir: tempfile::tempdir().unwrap(), _server: None })
    }

    async fn postgres() -> Option<Db> {
        let server = TestDb::create(Server::Postgres, "watchdog").await?;
        Some(Db { url: server.url.clone(), dir: tempfile::tempdir().unwrap(), _server: Some(server) })
    }

    async fn open(&self, clock: &ManualClock) -> Arc<dyn MetaStore> {
        Arc::new(SqlStore::open(&self.url, self.dir.path(), Arc::new(clock.clone())).await.unwrap())
    }
}

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
    a_failure_fires_once_on_every_channel_and_resolves_when_the_asset_recovers,
    running_long_zombie_and_backfilling_are_reached_by_real_runs,
    a_schedule_whose_daemon_was_down_is_stale_until_a_daemon_queues_its_tick,
    two_daemons_on_one_store_never_take_the_same_cycle,
    a_receiver_that_hangs_or_is_down_never_holds_up_the_daemon,
    a_freshness_slo_is_judged_at_its_deadline_alerted_and_met_late,
    relaunches_are_bounded_per_cycle_cooled_down_and_escalated_after_the_strikes,
);

/// What a receiver got: path, `authorization` header, body.
type Received = Arc<Mutex<Vec<(String, Option<String>, String)>>>;

/// A local HTTP server that records every request; `/hang` never answers, `/fail` answers 503.
async fn receiver() -> (String, Received) {
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, Uri};
    let got: Received = Arc::default();
    async fn record(State(got): State<Received>, uri: Uri, headers: HeaderMap, body: String) -> StatusCode {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
        got.lock().unwrap().push((uri.path().to_string(), auth, body));
        match uri.path() {
            "/hang" => std::future::pending().await,
            "/fail" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::OK,
        }
    }
    let app = axum::Router::new().fallback(record).with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, got)
}

fn channel(text: &str) -> AlertConfig {
    toml::from_str(text).unwrap()
}

/// Every kind, with its secrets in the environment the way basin.toml reads them.
fn channels(base: &str) -> Vec<Channel> {
    let env = |v: &str| {
        Some(match v {
            "HOOK_URL" => format!("{base}/hook?token={TOKEN}"),
            "HOOK_AUTH" => format!("Bearer {HEADER_SECRET}"),
            "SLACK_URL" => format!("{base}/slack/{TOKEN}"),
            "PD_KEY" => ROUTING_KEY.to_string(),
            _ => return None,
        })
    };
    let configs = [
        "name = \"hook\"\nkind = \"webhook\"\nurl = \"${HOOK_URL}\"\n[headers]\nAuthorization = \"${HOOK_AUTH}\"\n"
            .to_string(),
        "name = \"slack\"\nkind = \"slack\"\nurl = \"${SLACK_URL}\"\n".to_string(),
        format!("name = \"am\"\nkind = \"alertmanager\"\nurl = \"{base}/api/v2/alerts\"\n"),
        format!("name = \"pd\"\nkind = \"pagerduty\"\nurl = \"{base}/v2/enqueue\"\nrouting_key = \"${{PD_KEY}}\"\n"),
    ];
    configs.iter().map(|c| Channel::new(&channel(c), None, env).unwrap()).collect()
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn options() -> Options {
    Options::new(Duration::from_secs(5))
}

fn watchdog(store: &Arc<dyn MetaStore>, clock: &ManualClock, assets: &[&str], channels: Vec<Channel>) -> Watchdog {
    let alerter = Alerter::new("shop", channels, store.clone(), Arc::new(clock.clone()));
    Watchdog::new(assets.iter().map(|a| a.to_string()).collect(), Duration::from_secs(60), options(), alerter)
}

/// A run by its own process that builds `asset` (or fails it with `failure`).
async fn build(store: &Arc<dyn MetaStore>, asset: &str, duration_ms: i64, failure: Option<&str>) -> String {
    let run = store
        .create_run(NewRun { started_by: Some("test:1".into()), ..NewRun::new(vec![asset.into()], "in_process") })
        .await
        .unwrap();
    store.add_events(&run.id, &[NewEvent::new("asset_started", Level::Info, Some(asset), "building")]).await.unwrap();
    match failure {
        None => {
            store
                .add_events(&run.id, &[NewEvent::new("asset_materialized", Level::Info, Some(asset), "10 rows")])
                .await
                .unwrap();
            store
                .record_materialization(&Materialization {
                    run_id: run.id.clone(),
                    asset: asset.into(),
                    partition: None,
                    delta_version: Some(1),
                    rows: 10,
                    bytes: None,
                    duration_ms,
                    sql_hash: None,
                    schema_hash: None,
                    at: Utc::now(),
                })
                .await
                .unwrap();
            store.finish_run(&run.id, &Finish::Success).await.unwrap();
        }
        Some(message) => {
            let text = format!("bad_query: {message}");
            store.add_events(&run.id, &[NewEvent::new("asset_failed", Level::Error, Some(asset), text)]).await.unwrap();
            let finish = Finish::Failure { category: FailureCategory::BadQuery, message: message.into() };
            store.finish_run(&run.id, &finish).await.unwrap();
        }
    }
    run.id
}

async fn delivered(cycle: basin_orchestrator::watchdog::Cycle) -> Vec<AlertDelivery> {
    let mut out = Vec::new();
    for (_, _, handle) in cycle.deliveries {
        out.push(tokio::time::timeout(Duration::from_secs(60), handle).await.unwrap().unwrap());
    }
    out
}

async fn a_failure_fires_once_on_every_channel_and_resolves_when_the_asset_recovers(db: Db) {
    let (base, got) = receiver().await;
    let clock = ManualClock::new(at("2026-12-06T06:00:10Z"));
    let store = db.open(&clock).await;
    let w = watchdog(&store, &clock, &["silver.a", "silver.b"], channels(&base));
    build(&store, "silver.a", 1000, None).await;
    build(&store, "silver.b", 1000, None).await;

    // First cycle: both healthy, stored, nothing to alert.
    let cycle = w.cycle(&store, &[], clock.now()).await.unwrap().expect("the first cycle is due");
    assert_eq!(cycle.subjects, 2);
    assert_eq!(cycle.transitions.len(), 2);
    assert!(cycle.deliveries.is_empty());
    // Within the same interval the cycle is done.
    assert!(w.cycle(&store, &[], clock.now()).await.unwrap().is_none());

    // silver.b fails with a category nothing retries: hard_failure, on every channel.
    let failed_run = build(&store, "silver.b", 1000, Some("No field named y")).await;
    clock.advance(chrono::Duration::minutes(1));
    let cycle = w.cycle(&store, &[], clock.now()).await.unwrap().unwrap();
    assert_eq!(cycle.transitions.len(), 1);
    let t = &cycle.transitions[0];
    assert_eq!(
        (t.subject.as_str(), t.from_class.as_deref(), t.to_class.as_str()),
        ("silver.b", Some("healthy"), "hard_failure")
    );
    assert_eq!(t.run_id.as_deref(), Some(failed_run.as_str()));
    let deliveries = delivered(cycle).await;
    assert_eq!(deliveries.len(), 4);
    assert!(deliveries.iter().all(|d| d.delivered && d.attempts == 1 && d.state == "firing"), "{deliveries:?}");

    let requests = got.lock().unwrap().clone();
    assert_eq!(requests.len(), 4, "{requests:#?}");
    for (path, _, body) in &requests {
        assert!(!body.contains(TOKEN) && !body.contains(HEADER_SECRET), "a secret in the payload to {path}: {body}");
    }
    let body = |prefix: &str| -> serde_json::Value {
        let (_, _, b) = requests.iter().find(|(p, _, _)| p.starts_with(prefix)).unwrap();
        serde_json::from_str(b).unwrap()
    };
    let hook = body("/hook");
    assert_eq!((hook["state"].as_str(), hook["class"].as_str()), (Some("firing"), Some("hard_failure")));
    assert_eq!(hook["dedup_key"], "basin/shop/silver.b");
    assert!(hook["reason"].as_str().unwrap().contains("No field named y"), "{hook}");
    let auth = requests.iter().find(|(p, _, _)| p == "/hook").unwrap().1.clone();
    assert_eq!(auth.as_deref(), Some(format!("Bearer {HEADER_SECRET}").as_str()), "headers are sent, not logged");
    assert!(body("/slack")["text"].as_str().unwrap().starts_with("[FIRING critical] silver.b is hard_failure"));
    let am = body("/api/v2/alerts");
    assert_eq!(am[0]["labels"]["subject"], "silver.b");
    assert!(am[0]["endsAt"].is_null());
    let pd = body("/v2/enqueue");
    assert_eq!((pd["event_action"].as_str(), pd["routing_key"].as_str()), (Some("trigger"), Some(ROUTING_KEY)));
    assert_eq!(pd["dedup_key"], hook["dedup_key"]);

    // It fails again the next night: the same incident, no new notification.
    build(&store, "silver.b", 1000, Some("No field named y")).await;
    clock.advance(chrono::Duration::minutes(1));
    let cycle = w.cycle(&store, &[], clock.now()).await.unwrap().unwrap();
    assert!(cycle.transitions.is_empty() && cycle.deliveries.is_empty(), "{:?}", cycle.transitions);
    assert_eq!(got.lock().unwrap().len(), 4);

    // Mended and rebuilt: resolved on every channel under the same dedup key.
    build(&store, "silver.b", 1000, None).await;
    clock.advance(chrono::Duration::minutes(1));
    let cycle = w.cycle(&store, &[], clock.now()).await.unwrap().unwrap();
    assert_eq!(cycle.transitions[0].to_class, "healthy");
    let deliveries = delivered(cycle).await;
    assert!(deliveries.len() == 4 && deliveries.iter().all(|d| d.delivered && d.state == "resolved"));
    let requests = got.lock().unwrap().clone();
    let resolved: Vec<serde_json::Value> =
        requests[4..].iter().map(|(_, _, b)| serde_json::from_str(b).unwrap()).collect();
    assert!(resolved.iter().any(|b| b["event_action"] == "resolve" && b["dedup_key"] == "basin/shop/silver.b"));
    assert!(resolved.iter().any(|b| b["state"] == "resolved" && b["dedup_key"] == "basin/shop/silver.b"));
    assert!(resolved.iter().any(|b| b[0]["endsAt"].is_string()));
    assert!(resolved.iter().any(|b| b["text"].as_str().is_some_and(|t| t.starts_with("[RESOLVED]"))));

    // The history and the record, as `basin.watchdog_events` and `basin.alert_deliveries`.
    let history = store.watch_events(10).await.unwrap();
    let b: Vec<&str> = history.iter().filter(|e| e.subject == "silver.b").map(|e| e.to_class.as_str()).collect();
    assert_eq!(b, ["healthy", "hard_failure", "healthy"]);
    assert_eq!(store.alert_deliveries(100).await.unwrap().len(), 8);
    assert!(store.open_alerts().await.unwrap().iter().all(|a| !a.firing));
}

async fn running_long_zombie_and_backfilling_are_reached_by_real_runs(db: Db) {
    let clock = ManualClock::new(at("2026-12-06T01:00:00Z"));
    let store = db.open(&clock).await;
    let (hook_base, got) = receiver().await;
    let hook = Channel::new(
        &channel(&format!("name = \"hook\"\nkind = \"webhook\"\nurl = \"{hook_base}/hook\"\n")),
        None,
        |_: &str| None,
    )
    .unwrap();
    let w = watchdog(&store, &clock, &["silver.a", "silver.c"], vec![hook]);
    // silver.a usually takes a minute.
    for _ in 0..5 {
        build(&store, "silver.a", 60_000, None).await;
    }
    let class = |store: Arc<dyn MetaStore>, subject: &'static str| async move {
        store.watch_statuses().await.unwrap().into_iter().find(|s| s.subject == subject).map(|s| (s.class, s.reason))
    };

    // A build in progress, its worker beating: running_ok, then running_long past 2x p95.
    let run = store
        .create_run(NewRun { started_by: Some("test:2".into()), ..NewRun::new(vec!["silver.a".into()], "in_process") })
        .await
        .unwrap();
    store.add_events(&run.id, &[NewEvent::new("asset_started", Level::Info, Some("silver.a"), "")]).await.unwrap();
    clock.advance(chrono::Duration::seconds(61));
    store.heartbeat(&run.id).await.unwrap();
    w.cycle(&store, &[], clock.now()).await.unwrap().unwrap();
    assert_eq!(class(store.clone(), "silver.a").await.unwrap().0, "running_ok");
    clock.advance(chrono::Duration::seconds(60));
    store.heartbeat(&run.id).await.unwrap();
    let cycle = w.cycle(&store, &[], clock.now()).await.unwrap().unwrap();
    let (c, reason) = class(store.clone(), "silver.a").await.unwrap();
    assert_eq!(c, "running_long", "{reason}");
    assert!(reason.contains("usual build takes 60s"), "{reason}");
    let deliveries = delivered(cycle).await;
    assert_eq!(deliveries.iter().map(|d| d.class.as_str()).collect::<Vec<_>>(), ["running_long"]);

    // Its worker goes silent past three heartbeats: zombie (a daemon's monitor reaps it).
    clock.advance(chrono::Duration::seconds(60));
    let cycle = w.cycle(&store, &[], clock.now()).await.unwrap().unwrap();
    assert_eq!(class(store.clone(), "silver.a").await.unwrap().0, "zombie");
    let deliveries = delivered(cycle).await;
    assert_eq!(
        deliveries.iter().map(|d| (d.state.as_str(), d.class.as_str())).collect::<Vec<_>>(),
        [("firing", "zombie")]
    );
    assert_eq!(got.lock().unwrap().len(), 2);

    // A backfill building silver.c.
    let mut new = NewRun { started_by: Some("test:3".into()), ..NewRun::new(vec!["silver.c".into()], "in_process") };
    new.tags = BTreeMap::from([("backfill".to_string(), "bf-1".to_string())]);
    let bf = store.create_run(new).await.unwrap();
    store.add_events(&bf.id, &[NewEvent::new("asset_started", Level::Info, Some("silver.c"), "")]).await.unwrap();
    clock.advance(chrono::Duration::seconds(60));
    store.heartbeat(&bf.id).await.unwrap();
    w.cycle(&store, &[], clock.now()).await.unwrap().unwrap();
    assert_eq!(class(store.clone(), "silver.c").await.unwrap().0, "backfilling");
}

fn nightly() -> Schedule {
    Schedule::parse(&ScheduleConfig {
        name: "nightly".into(),
        cron: "0 2 * * *".into(),
        timezone: None,
        selection: "silver.a".into(),
        priority: 0,
        tags: BTreeMap::new(),
    })
    .unwrap()
}

async fn a_schedule_whose_daemon_was_down_is_stale_until_a_daemon_queues_its_tick(db: Db) {
    use basin_orchestrator::{Daemon, Launcher, Settings};
    let clock = ManualClock::new(at("2026-12-06T01:00:00Z"));
    let store = db.open(&clock).await;
    let (base, got) = receiver().await;
    let settings = Settings {
        limits: Default::default(),
        retry: RetryPolicies::uniform(RetrySection::default().policy().unwrap()),
        dead_after: Duration::from_secs(15),
        monitor_interval: Duration::from_secs(5),
        run_timeout: None,
    };
    // A command launcher that does nothing: this test is about ticks being queued.
    let launcher = Launcher::Command {
        template: "true {run_id}".into(),
        project: std::env::temp_dir(),
        logs: db.dir.path().join("logs"),
    };
    let hook = || {
        Channel::new(
            &channel(&format!("name = \"hook\"\nkind = \"webhook\"\nurl = \"{base}/hook\"\n")),
            None,
            |_: &str| None,
        )
        .unwrap()
    };
    let mut d =
        Daemon::new(store.clone(), Arc::new(clock.clone()), settings.clone(), vec![nightly()], launcher.clone())
            .with_watchdog(watchdog(&store, &clock, &[], vec![hook()]));
    // The daemon sees the schedule at 01:00, then is down across the 02:00 tick.
    d.tick().await.unwrap();
    drop(d);
    clock.advance(chrono::Duration::minutes(70));
    // What any watchdog (or `basin status`) sees at 02:10: the tick was not queued.
    let w = watchdog(&store, &clock, &[], vec![hook()]);
    let cycle = w.cycle(&store, &[nightly()], clock.now()).await.unwrap().unwrap();
    let t = cycle.transitions.iter().find(|t| t.subject == "schedule:nightly").unwrap();
    assert_eq!(t.to_class, "stale_no_run", "{t:?}");
    assert!(t.reason.contains("02:00"), "{}", t.reason);
    assert_eq!(delivered(cycle).await.len(), 1);

    // The daemon comes back: it queues the missed tick once, and the next cycle resolves.
    let mut d = Daemon::new(store.clone(), Arc::new(clock.clone()), settings, vec![nightly()], launcher)
        .with_watchdog(watchdog(&store, &clock, &[], vec![hook()]));
    clock.advance(chrono::Duration::minutes(1));
    let tick = d.tick().await.unwrap();
    assert_eq!(tick.queued.len(), 1, "{:?}", tick.notices);
    let cycle = tick.watchdog.expect("the daemon's watchdog ran its cycle");
    assert_eq!(cycle.transitions.iter().map(|t| t.to_class.as_str()).collect::<Vec<_>>(), ["healthy"]);
    let deliveries = delivered(cycle).await;
    assert_eq!(deliveries.iter().map(|d| d.state.as_str()).collect::<Vec<_>>(), ["resolved"]);
    let bodies: Vec<serde_json::Value> =
        got.lock().unwrap().iter().map(|(_, _, b)| serde_json::from_str(b).unwrap()).collect();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0]["dedup_key"], bodies[1]["dedup_key"]);
    assert_eq!(bodies[0]["subject"], "schedule:nightly");
}

async fn two_daemons_on_one_store_never_take_the_same_cycle(db: Db) {
    let clock = ManualClock::new(at("2026-12-06T06:00:00Z"));
    let (a, b) = (db.open(&clock).await, db.open(&clock).await);
    let (base, got) = receiver().await;
    let hook = || {
        let text = format!("name = \"hook\"\nkind = \"webhook\"\nurl = \"{base}/hook\"\n");
        vec![Channel::new(&channel(&text), None, |_: &str| None).unwrap()]
    };
    let (wa, wb) = (watchdog(&a, &clock, &["silver.a"], hook()), watchdog(&b, &clock, &["silver.a"], hook()));
    build(&a, "silver.a", 10, Some("boom")).await;
    let mut taken = 0;
    for _ in 0..5 {
        let (ca, cb) = tokio::join!(wa.cycle(&a, &[], clock.now()), wb.cycle(&b, &[], clock.now()));
        let cycles: Vec<_> = [ca.unwrap(), cb.unwrap()].into_iter().flatten().collect();
        assert_eq!(cycles.len(), 1, "exactly one daemon takes each cycle");
        for c in cycles {
            taken += 1;
            delivered(c).await;
        }
        clock.advance(chrono::Duration::minutes(1));
    }
    assert_eq!(taken, 5);
    // One incident, one notification, whoever took the cycle.
    assert_eq!(got.lock().unwrap().len(), 1);
    assert_eq!(a.watch_events(10).await.unwrap().len(), 1);
}

async fn a_receiver_that_hangs_or_is_down_never_holds_up_the_daemon(db: Db) {
    let clock = ManualClock::new(at("2026-12-06T06:00:00Z"));
    let store = db.open(&clock).await;
    let (base, got) = receiver().await;
    // A port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let configs = [
        format!(
            "name = \"hangs\"\nkind = \"webhook\"\nurl = \"{base}/hang?token={TOKEN}\"\ntimeout = \"1s\"\nmax_attempts = 2\n"
        ),
        format!(
            "name = \"down\"\nkind = \"webhook\"\nurl = \"http://{closed}/hook?token={TOKEN}\"\nmax_attempts = 2\n"
        ),
        format!("name = \"fails\"\nkind = \"slack\"\nurl = \"{base}/fail\"\nmax_attempts = 3\n"),
    ];
    let chans = configs.iter().map(|c| Channel::new(&channel(c), None, |_: &str| None).unwrap()).collect();
    let w = watchdog(&store, &clock, &["silver.a"], chans);
    build(&store, "silver.a", 10, Some("boom")).await;
    // The cycle returns while the deliveries are still being tried (were it waiting on them,
    // the hanging receiver would hold it until the timeout below).
    let cycle = tokio::time::timeout(Duration::from_secs(30), w.cycle(&store, &[], clock.now()))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(cycle.deliveries.iter().all(|(_, _, h)| !h.is_finished()));
    let deliveries = delivered(cycle).await;
    let by: BTreeMap<&str, &AlertDelivery> = deliveries.iter().map(|d| (d.channel.as_str(), d)).collect();
    assert!(deliveries.iter().all(|d| !d.delivered), "{deliveries:?}");
    assert_eq!((by["hangs"].attempts, by["down"].attempts, by["fails"].attempts), (2, 2, 3));
    let errors: Vec<&str> = deliveries.iter().map(|d| d.error.as_deref().unwrap()).collect();
    assert!(by["hangs"].error.as_deref().unwrap().contains("timed out"), "{errors:?}");
    assert!(by["down"].error.as_deref().unwrap().contains("cannot connect"), "{errors:?}");
    assert!(by["fails"].error.as_deref().unwrap().contains("503"), "{errors:?}");
    assert!(errors.iter().all(|e| !e.contains(TOKEN)), "an error kept the URL's token: {errors:?}");
    // Recorded for `basin.alert_deliveries`; the hanging receiver saw both attempts.
    assert_eq!(store.alert_deliveries(10).await.unwrap().iter().filter(|d| !d.delivered).count(), 3);
    assert_eq!(got.lock().unwrap().iter().filter(|(p, _, _)| p == "/hang").count(), 2);
}

async fn a_freshness_slo_is_judged_at_its_deadline_alerted_and_met_late(db: Db) {
    use basin_core::slo::SloConfig;
    // 06:00 in Berlin (UTC+1 in December); the report is promised by 07:30 local.
    let clock = ManualClock::new(at("2026-12-06T01:00:00Z"));
    let store = db.open(&clock).await;
    let (base, got) = receiver().await;
    let pager = Channel::new(
        &channel(&format!("name = \"pager\"\nkind = \"pagerduty\"\nurl = \"{base}/v2/enqueue\"\nrouting_key = \"k\"\nmin_severity = \"critical\"\n")),
        None,
        |_: &str| None,
    )
    .unwrap();
    let slo: SloConfig = toml::from_str("ready_by = \"07:30\"\ntimezone = \"Europe/Berlin\"\n").unwrap();
    let mut options = options();
    options.slos.insert("gold.report".into(), slo.parse().unwrap());
    let alerter = Alerter::new("shop", vec![pager], store.clone(), Arc::new(clock.clone()));
    let w = Watchdog::new(vec!["gold.report".into()], Duration::from_secs(60), options, alerter);
    // Built on the 6th at 02:00 local: the 6th is met; at 06:00 on the 7th nothing is late yet.
    build(&store, "gold.report", 1000, None).await;
    clock.set(at("2026-12-07T05:00:00Z"));
    let cycle = w.cycle(&store, &[], clock.now()).await.unwrap().unwrap();
    assert_eq!(cycle.transitions[0].to_class, "healthy");
    let verdicts = |store: Arc<dyn MetaStore>| async move {
        let results = store.slo_results(at("2026-12-01T00:00:00Z")).await.unwrap();
        results.into_iter().map(|r| (r.day, r.verdict)).collect::<Vec<_>>()
    };
    assert_eq!(verdicts(store.clone()).await, [("2026-12-06".to_string(), "met".to_string())]);

    // 07:31 local, no build since yesterday: the 7th is missed, the asset is late, the pager
    // fires, though no build ran to notice.
    clock.set(at("2026-12-07T06:31:00Z"));
    let cycle = w.cycle(&store, &[], clock.now()).await.unwrap().unwrap();
    let t = &cycle.transitions[0];
    assert_eq!((t.to_class.as_str(), t.from_class.as_deref()), ("late", Some("healthy")));
    assert!(t.reason.contains("missed its SLO (ready by 07:30 Europe/Berlin)"), "{}", t.reason);
    assert_eq!(cycle.slo.iter().map(|r| r.verdict.as_str()).collect::<Vec<_>>(), ["missed"]);
    let deliveries = delivered(cycle).await;
    assert_eq!(
        deliveries.iter().map(|d| (d.state.as_str(), d.class.as_str())).collect::<Vec<_>>(),
        [("firing", "late")]
    );

    // Built at 08:00 local: met late, healthy, the page resolved.
    clock.set(at("2026-12-07T07:00:00Z"));
    build(&store, "gold.report", 1000, None).await;
    clock.advance(chrono::Duration::minutes(1));
    let cycle = w.cycle(&store, &[], clock.now()).await.unwrap().unwrap();
    assert_eq!(cycle.transitions[0].to_class, "healthy");
    assert_eq!(cycle.slo.iter().map(|r| r.verdict.as_str()).collect::<Vec<_>>(), ["met_late"]);
    delivered(cycle).await;
    assert_eq!(
        verdicts(store.clone()).await,
        [("2026-12-06".to_string(), "met".to_string()), ("2026-12-07".to_string(), "met_late".to_string())]
    );
    let pages: Vec<serde_json::Value> =
        got.lock().unwrap().iter().map(|(_, _, b)| serde_json::from_str(b).unwrap()).collect();
    assert_eq!(pages.iter().map(|p| p["event_action"].as_str().unwrap()).collect::<Vec<_>>(), ["trigger", "resolve"]);
}

/// A local SMTP server (Python's aiosmtpd, printing each message it receives), or `None`
/// with a message when it is not installed (a failure under `CI=true`).
fn smtp_server() -> Option<(std::net::SocketAddr, std::process::Child, Arc<Mutex<String>>)> {
    use std::io::Read;
    let have =
        std::process::Command::new("python3").args(["-c", "import aiosmtpd"]).status().is_ok_and(|s| s.success());
    if !have {
        assert!(std::env::var("CI").is_err(), "aiosmtpd is needed under CI (.ci/requirements.txt)");
        eprintln!("skipped: Python's aiosmtpd is not installed");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = std::process::Command::new("python3")
        .args(["-u", "-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let printed = Arc::new(Mutex::new(String::new()));
    let (sink, mut out) = (printed.clone(), child.stdout.take().unwrap());
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(std::time::Instant::now() < deadline, "the SMTP server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((addr, child, printed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_channel_mails_the_failure_and_its_recovery() {
    let Some((addr, mut server, printed)) = smtp_server() else { return };
    let clock = ManualClock::new(at("2026-12-06T06:00:00Z"));
    let db = Db::sqlite().await.unwrap();
    let store = db.open(&clock).await;
    let mail = Channel::new(
        &channel(&format!(
            "name = \"mail\"\nkind = \"email\"\nurl = \"smtp://{addr}\"\nfrom = \"basin@example.com\"\n\
             to = [\"oncall@example.com\", \"lead@example.com\"]\n"
        )),
        None,
        |_: &str| None,
    )
    .unwrap();
    let w = watchdog(&store, &clock, &["silver.a"], vec![mail]);
    build(&store, "silver.a", 10, Some("No field named y")).await;
    let deliveries = delivered(w.cycle(&store, &[], clock.now()).await.unwrap().unwrap()).await;
    assert!(deliveries.len() == 1 && deliveries[0].delivered, "{deliveries:?}");
    build(&store, "silver.a", 10, None).await;
    clock.advance(chrono::Duration::minutes(1));
    let deliveries = delivered(w.cycle(&store, &[], clock.now()).await.unwrap().unwrap()).await;
    assert!(deliveries.len() == 1 && deliveries[0].delivered && deliveries[0].state == "resolved");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = printed.lock().unwrap().clone();
        if text.contains("Subject: [Basin RESOLVED]") || std::time::Instant::now() > deadline {
            let _ = server.kill();
            let _ = server.wait();
            assert!(text.contains("Subject: [Basin FIRING critical] silver.a is hard_failure"), "{text}");
            assert!(text.contains("Subject: [Basin RESOLVED] silver.a recovered"), "{text}");
            assert!(text.contains("oncall@example.com") && text.contains("lead@example.com"), "{text}");
            assert!(text.contains("dedup key: basin/shop/silver.a"), "{text}");
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A run of `asset` (by its own process, or the queued run `queued`) failing with `category`.
async fn fail(
    store: &Arc<dyn MetaStore>,
    asset: &str,
    category: FailureCategory,
    tags: &[(&str, &str)],
    queued: Option<&str>,
) {
    let id = match queued {
        Some(id) => store.start_run(id, "test:9").await.unwrap().id,
        None => {
            let mut new = NewRun { started_by: Some("test:9".into()), ..NewRun::new(vec![asset.into()], "in_process") };
            new.tags = tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            store.create_run(new).await.unwrap().id
        }
    };
    let text = format!("{category}: connection reset");
    store
        .add_events(
            &id,
            &[
                NewEvent::new("asset_started", Level::Info, Some(asset), ""),
                NewEvent::new("asset_failed", Level::Error, Some(asset), text),
            ],
        )
        .await
        .unwrap();
    store.finish_run(&id, &Finish::Failure { category, message: "connection reset".into() }).await.unwrap();
}

async fn relaunches_are_bounded_per_cycle_cooled_down_and_escalated_after_the_strikes(db: Db) {
    use basin_orchestrator::watchdog::Remedies;
    let clock = ManualClock::new(at("2026-12-06T03:00:00Z"));
    let store = db.open(&clock).await;
    let (base, got) = receiver().await;
    let hook = Channel::new(
        &channel(&format!("name = \"hook\"\nkind = \"webhook\"\nurl = \"{base}/hook\"\n")),
        None,
        |_: &str| None,
    )
    .unwrap();
    let assets = ["silver.a0", "silver.a1", "silver.a2", "silver.a3", "silver.s1", "silver.s2", "silver.bad"];
    let alerter = Alerter::new("shop", vec![hook], store.clone(), Arc::new(clock.clone()));
    let remedies = Remedies { max_strikes: 2, launcher: "in_process".into(), ..Remedies::default() };
    let w = Watchdog::new(assets.iter().map(|a| a.to_string()).collect(), Duration::from_secs(60), options(), alerter)
        .with_remedies(remedies);
    for a in ["silver.a0", "silver.a1", "silver.a2", "silver.a3"] {
        fail(&store, a, FailureCategory::Transient, &[], None).await;
    }
    // Two tables of one source database share its cooldown.
    fail(&store, "silver.s1", FailureCategory::SourceUnavailable, &[("source", "v3")], None).await;
    fail(&store, "silver.s2", FailureCategory::SourceUnavailable, &[("source", "v3")], None).await;
    fail(&store, "silver.bad", FailureCategory::BadQuery, &[], None).await;

    let relaunched = |cycle: &basin_orchestrator::watchdog::Cycle| -> Vec<String> {
        cycle.actions.iter().filter(|a| a.action.as_deref() == Some("relaunch")).map(|a| a.subject.clone()).collect()
    };
    // At most three per cycle.
    let c1 = w.cycle(&store, &[], clock.now()).await.unwrap().unwrap();
    assert_eq!(relaunched(&c1), ["silver.a0", "silver.a1", "silver.a2"]);
    let queued = store.active_runs().await.unwrap();
    assert_eq!(queued.len(), 3);
    assert!(
        queued
            .iter()
            .all(|r| r.tags.get("watchdog").map(String::as_str) == Some("relaunch")
                && r.tags.contains_key("relaunch_of"))
    );
    assert!(c1.actions.iter().all(|a| a.reason.contains("relaunch 1 of 2")), "{:?}", c1.actions);
    // The next cycle: the relaunched are `retrying`; s2 waits for s1's source to cool down.
    clock.advance(chrono::Duration::minutes(1));
    let c2 = w.cycle(&store, &[], clock.now()).await.unwrap().unwrap();
    assert_eq!(relaunched(&c2), ["silver.a3", "silver.s1"]);
    let classes: BTreeMap<String, String> =
        store.watch_statuses().await.unwrap().into_iter().map(|s| (s.subject, s.class)).collect();
    assert_eq!(classes["silver.a0"], "retrying");
    assert_eq!(classes["silver.bad"], "hard_failure");
    clock.advance(chrono::Duration::minutes(1));
    assert!(relaunched(&w.cycle(&store, &[], clock.now()).await.unwrap().unwrap()).is_empty());

    // a0's relaunches fail again: a second relaunch after the cooldown, then an escalation,
    // then nothing until it builds.
    let relaunch_of_a0 = |store: Arc<dyn MetaStore>| async move {
        store.active_runs().await.unwrap().into_iter().find(|r| r.selection == ["silver.a0"]).map(|r| r.id)
    };
    fail(&store, "silver.a0", FailureCategory::Transient, &[], relaunch_of_a0(store.clone()).await.as_deref()).await;
    clock.advance(chrono::Duration::minutes(30));
    let c = w.cycle(&store, &[], clock.now()).await.unwrap().unwrap();
    assert!(!relaunched(&c).contains(&"silver.a0".to_string()), "within its cooldown");
    clock.advance(chrono::Duration::minutes(31));
    let c = w.cycle(&store, &[], clock.now()).await.unwrap().unwrap();
    assert!(relaunched(&c).contains(&"silver.a0".to_string()));
    fail(&store, "silver.a0", FailureCategory::Transient, &[], relaunch_of_a0(store.clone()).await.as_deref()).await;
    clock.advance(chrono::Duration::minutes(61));
    let c = w.cycle(&store, &[], clock.now()).await.unwrap().unwrap();
    assert!(!relaunched(&c).contains(&"silver.a0".to_string()));
    let escalation = c.actions.iter().find(|a| a.action.as_deref() == Some("escalate")).expect("escalated");
    assert_eq!(escalation.subject, "silver.a0");
    assert!(escalation.reason.contains("relaunched 2 time(s)"), "{}", escalation.reason);
    let deliveries = delivered(c).await;
    assert!(deliveries.iter().any(|d| d.subject == "silver.a0" && d.state == "firing"));
    let bodies: Vec<serde_json::Value> =
        got.lock().unwrap().iter().map(|(_, _, b)| serde_json::from_str(b).unwrap()).collect();
    assert!(
        bodies.iter().any(|b| b["subject"] == "silver.a0" && b["reason"].as_str().unwrap().starts_with("ESCALATED:"))
    );
    clock.advance(chrono::Duration::minutes(61));
    let c = w.cycle(&store, &[], clock.now()).await.unwrap().unwrap();
    assert!(c.actions.iter().all(|a| a.subject != "silver.a0"), "one escalation, then nothing: {:?}", c.actions);
    // Never a relaunch of a bad query; every action is in the history with its reason.
    let actions = store.watch_actions(at("2026-12-06T00:00:00Z")).await.unwrap();
    assert!(actions.iter().all(|a| a.subject != "silver.bad"));
    assert!(actions.iter().all(|a| !a.reason.is_empty()));
}
