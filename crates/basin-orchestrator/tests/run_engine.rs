//! The run engine in-process, over a real project and the real SQLite metadata store, with a
//! materializer that does no table work: order, a failing `error` check that stops what is
//! downstream, a panicking asset that fails alone, events in order, and cancel.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use basin_core::check::{CheckKind, Severity};
use basin_core::failure::FailureCategory;
use basin_core::outcome::{Action, CheckOutcome, Checked, Materialized};
use basin_core::{AssetKey, Project};
use basin_meta::{CheckFilter, NewRun, RunStatus};
use basin_orchestrator::Recorder;
use basin_orchestrator::run::{AssetError, Events, Job, Materializer, Outcome, RunEvent, RunOptions, RunSpec, RunWork};

/// `a → b → c`, `p → q`, `d` alone, and `slow → after_slow`.
fn project() -> (tempfile::TempDir, Project) {
    let dir = tempfile::tempdir().unwrap();
    let write = |path: &str, text: &str| {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("basin.toml", "[project]\nname = \"t\"\n\n[run]\nheartbeat_interval = \"1s\"\n");
    write("models/silver/a.sql", "SELECT 1 AS x");
    write("models/silver/b.sql", "SELECT x FROM silver.a");
    write("models/gold/c.sql", "SELECT x FROM silver.b");
    write("models/silver/p.sql", "SELECT 2 AS y");
    write("models/gold/q.sql", "SELECT y FROM silver.p");
    write("models/silver/d.sql", "SELECT 3 AS z");
    write("models/silver/slow.sql", "SELECT 4 AS w");
    write("models/gold/after_slow.sql", "SELECT w FROM silver.slow");
    let (project, diagnostics) = Project::load_valid(dir.path()).unwrap();
    assert!(!diagnostics.has_errors(), "{diagnostics:?}");
    (dir, project)
}

fn key(k: &str) -> AssetKey {
    AssetKey::parse(k).unwrap()
}

/// Builds every asset at once, but: `silver.b`'s `error` check fails, `silver.p` panics, and
/// `silver.slow` never ends.
struct Fake;

#[async_trait]
impl Materializer for Fake {
    async fn begin(&self, _: &RunSpec) -> Result<Arc<dyn RunWork>, AssetError> {
        Ok(Arc::new(FakeRun))
    }
}

struct FakeRun;

#[async_trait]
impl RunWork for FakeRun {
    async fn materialize(&self, job: Job) -> Result<(Materialized, Checked), AssetError> {
        let name = job.key.to_string();
        match name.as_str() {
            "silver.p" => panic!("boom in {name}"),
            "silver.slow" => std::future::pending::<()>().await,
            _ => {}
        }
        let built = Materialized {
            key: job.key.clone(),
            action: Action::Replaced,
            version: Some(0),
            rows: 7,
            duration: Duration::from_millis(1),
            read: Vec::new(),
        };
        let failing = name == "silver.b";
        let checked = Checked {
            outcomes: vec![CheckOutcome {
                name: "not_null(x)".into(),
                kind: CheckKind::NotNull,
                severity: Severity::Error,
                passed: !failing,
                observed: if failing { "2 rows".into() } else { "0 rows".into() },
                threshold: "0 rows".into(),
                samples: vec![],
                duration: Duration::ZERO,
            }],
        };
        Ok((built, checked))
    }

    async fn built(&self, _: &AssetKey) {}

    async fn check(&self, job: basin_core::work::CheckJob) -> Result<(Option<u64>, Checked), AssetError> {
        Err(AssetError::new(format!("{} is only built here", job.key), basin_core::failure::FailureCategory::Other))
    }
}

fn recording() -> (Events, Arc<Mutex<Vec<RunEvent>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    (Events::to(Arc::new(move |e: &RunEvent| sink.lock().unwrap().push(e.clone()))), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_check_stops_downstream_and_a_panicking_asset_fails_alone() {
    let (_dir, project) = project();
    let keys: Vec<AssetKey> = ["silver.a", "silver.b", "gold.c", "silver.p", "gold.q", "silver.d"].map(key).into();
    let recorder = Recorder::begin(&project, NewRun::new(vec!["*".into()], "in_process")).await.unwrap();
    let store = recorder.store().clone();
    let (events, seen) = recording();
    let report = basin_orchestrator::run::run(&project, &Fake, recorder, &keys, RunOptions { concurrency: 2, events })
        .await
        .unwrap();

    let outcome = |k: &str| report.outcomes().find(|(key, _)| key.to_string() == k).map(|(_, o)| o.clone()).unwrap();
    assert!(matches!(outcome("silver.a"), Outcome::Built(_)));
    assert!(matches!(outcome("silver.d"), Outcome::Built(_)), "an independent asset still builds");
    assert!(matches!(outcome("silver.b"), Outcome::CheckFailed(_, why) if why.contains("not_null(x): 2 rows")));
    assert!(
        matches!(outcome("gold.c"), Outcome::Skipped(why) if why.contains("upstream check failed: silver.b")),
        "{:?}",
        outcome("gold.c")
    );
    match outcome("silver.p") {
        Outcome::Failed(e) => {
            assert_eq!(e.category, FailureCategory::Other);
            assert!(e.message.contains("boom in silver.p"), "{}", e.message);
        }
        other => panic!("the panicking asset must fail, not {other:?}"),
    }
    assert!(matches!(outcome("gold.q"), Outcome::Skipped(why) if why.contains("upstream silver.p failed")));

    // The run ends as failed, as its first failure, in the store; its check results are kept.
    let run = store.run(report.run_id()).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Failure);
    let filter = CheckFilter { run_id: Some(report.run_id().to_string()), ..CheckFilter::default() };
    let checks = store.check_results(&filter).await.unwrap();
    assert!(checks.iter().any(|c| c.asset == "silver.b" && !c.passed), "{checks:?}");
    let recorded = store.events(report.run_id()).await.unwrap();
    assert!(recorded.iter().any(|e| e.kind == "asset_skipped" && e.asset.as_deref() == Some("gold.c")));

    // Events: started first, finished last, every asset accounted for once.
    let seen = seen.lock().unwrap();
    assert!(matches!(seen.first(), Some(RunEvent::RunStarted { assets: 6, .. })), "{:?}", seen.first());
    assert!(matches!(seen.last(), Some(RunEvent::RunFinished { .. })));
    for k in &keys {
        let ends = seen
            .iter()
            .filter(|e| match e {
                RunEvent::AssetBuilt { built } => &built.key == k,
                RunEvent::AssetFailed { key, .. } | RunEvent::AssetSkipped { key, .. } => key == k,
                _ => false,
            })
            .count();
        assert_eq!(ends, 1, "{k} ends once in {seen:?}");
    }
    let built_a = seen.iter().position(|e| matches!(e, RunEvent::AssetBuilt { built } if built.key == key("silver.a")));
    let started_b = seen.iter().position(|e| matches!(e, RunEvent::AssetStarted { key: k } if *k == key("silver.b")));
    assert!(built_a < started_b, "b waits for a: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canceled_run_stops_and_skips_what_it_had_not_done() {
    let (_dir, project) = project();
    let keys: Vec<AssetKey> = ["silver.slow", "gold.after_slow"].map(key).into();
    let recorder = Recorder::begin(&project, NewRun::new(vec!["*".into()], "in_process")).await.unwrap();
    let store = recorder.store().clone();
    let id = recorder.id().to_string();
    let (events, seen) = recording();
    // `slow` never ends, and `after_slow` waits for it until the run is canceled.
    let running = tokio::spawn({
        let project = project.clone();
        async move {
            basin_orchestrator::run::run(&project, &Fake, recorder, &keys, RunOptions { concurrency: 1, events }).await
        }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !seen
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, RunEvent::AssetStarted { key: k } if *k == key("silver.slow")))
    {
        assert!(tokio::time::Instant::now() < deadline, "the run never started an asset");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    store.request_cancel(&id).await.unwrap();
    let report = tokio::time::timeout(Duration::from_secs(30), running).await.expect("cancel stops the run").unwrap();
    let report = report.unwrap();
    assert!(report.canceled());
    assert_eq!(report.outcomes().count(), 2);
    assert!(report.outcomes().all(|(_, o)| matches!(o, Outcome::Skipped(why) if why == "run canceled")));
    assert_eq!(store.run(&id).await.unwrap().unwrap().status, RunStatus::Canceled);
    assert!(seen.lock().unwrap().iter().any(|e| matches!(e, RunEvent::RunCanceled)));
}

/// The daemon's footprints: what a queued run's selection resolves to on the project, so two
/// runs that write one asset (in one partition) never run at once.
#[test]
fn footprints_follow_the_selection_on_the_graph() {
    let (_dir, project) = project();
    let footprint = basin_orchestrator::footprints(project.graph.clone());
    let run = |selection: &str, partition: Option<&str>| {
        let mut new = basin_meta::NewRun::new(vec![selection.to_string()], "subprocess");
        new.partition = partition.map(str::to_string);
        // A run as the queue holds it.
        basin_meta::Run {
            id: selection.to_string(),
            status: basin_meta::RunStatus::Queued,
            selection: new.selection,
            partition: new.partition,
            tags: Default::default(),
            launcher: new.launcher,
            priority: 0,
            attempt: 1,
            parent_run_id: None,
            full_refresh: false,
            created_at: chrono::Utc::now(),
            started_at: None,
            finished_at: None,
            heartbeat_at: None,
            worker: None,
            cancel_requested: false,
            failure_category: None,
            failure_message: None,
            queued: true,
            retried: false,
            not_before: None,
        }
    };
    let everything = footprint(&run("*", None));
    let chain = footprint(&run("+gold.c", None));
    assert_eq!(chain.assets, ["gold.c", "silver.a", "silver.b"].map(String::from).into());
    assert!(everything.overlaps(&chain));
    assert!(!footprint(&run("silver.p+", None)).overlaps(&chain), "disjoint branches run together");
    assert!(
        !footprint(&run("silver.a", Some("2026-01-01"))).overlaps(&footprint(&run("silver.a", Some("2026-01-02"))))
    );
    assert!(footprint(&run("silver.a", Some("2026-01-01"))).overlaps(&chain), "all partitions meet one");
    assert!(footprint(&run("silver.nope", None)).assets.is_empty(), "fails at start, writes nothing");
}
