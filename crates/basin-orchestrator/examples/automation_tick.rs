//! Benchmark: one daemon tick over a 10,000-asset graph of eager assets, on a SQLite store.
//!
//!     cargo run --release -p basin-orchestrator --example automation_tick [ASSETS]
//!
//! 1,000 source tables and 9,000 eager models, each reading 1–3 earlier assets; every asset
//! materialised once, then 100 source tables land again. Prints the time of a tick with
//! nothing to do and of the tick that queues the affected models.

use std::sync::Arc;
use std::time::Instant;

use basin_core::clock::SystemClock;
use basin_core::daemon::{RetryPolicies, RetrySection};
use basin_meta::{Materialization, MetaStore, NewRun, QueueLimits, SqlStore};
use basin_orchestrator::{Daemon, Eager, Launcher, RunInProcess, Settings};

struct Nothing;

#[async_trait::async_trait]
impl RunInProcess for Nothing {
    async fn execute(&self, _run_id: String) {}
}

#[tokio::main]
async fn main() {
    let total: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let sources = total / 10;
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn MetaStore> =
        Arc::new(SqlStore::open("sqlite://meta.db", dir.path(), Arc::new(SystemClock)).await.unwrap());
    let name = |i: usize| if i < sources { format!("bronze.s{i}") } else { format!("silver.m{i}") };
    // A deterministic spread of 1–3 upstreams among earlier assets.
    let eager: Vec<Eager> = (sources..total)
        .map(|i| {
            let n = 1 + i % 3;
            let upstream = (0..n).map(|k| name(((i ^ (i >> 3)) * 2_654_435_761 + k * 97) % i)).collect();
            Eager { asset: name(i), upstream }
        })
        .collect();
    let run = store
        .create_run(NewRun { started_by: Some("bench".into()), ..NewRun::new(vec!["*".into()], "x") })
        .await
        .unwrap();
    let m = |asset: String| Materialization {
        run_id: run.id.clone(),
        asset,
        partition: None,
        delta_version: Some(0),
        rows: 1,
        bytes: None,
        duration_ms: 1,
        sql_hash: None,
        schema_hash: None,
        at: chrono::Utc::now(),
    };
    let t = Instant::now();
    for i in 0..total {
        store.record_materialization(&m(name(i))).await.unwrap();
    }
    eprintln!("recorded {total} materialisations in {:?}", t.elapsed());
    let settings = Settings {
        limits: QueueLimits { max_concurrent_runs: 1, tag_limits: Default::default() },
        retry: RetryPolicies::uniform(RetrySection::default().policy().unwrap()),
        dead_after: std::time::Duration::from_secs(3600),
        monitor_interval: std::time::Duration::from_secs(3600),
        run_timeout: None,
    };
    let mut daemon =
        Daemon::new(store.clone(), Arc::new(SystemClock), settings, Vec::new(), Launcher::InProcess(Arc::new(Nothing)))
            .with_automation(eager.clone());
    // The first tick creates nothing (every model is newer than its upstream)...
    let mut idle = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let tick = daemon.tick().await.unwrap();
        idle.push(t.elapsed());
        assert!(tick.queued.is_empty(), "{:?}", tick.notices.first());
    }
    // ...then 100 sources land again.
    for i in 0..100 {
        store.record_materialization(&m(name(i * sources / 100))).await.unwrap();
    }
    let t = Instant::now();
    let tick = daemon.tick().await.unwrap();
    let busy = t.elapsed();
    let affected =
        eager.iter().filter(|e| e.upstream.iter().any(|u| (0..100).any(|i| *u == name(i * sources / 100)))).count();
    idle.sort();
    println!(
        "automation tick over {total} assets ({} eager): idle p50 {:?} (min {:?}, max {:?}); \
         after 100 sources changed: {:?}, {} runs queued ({affected} models read a changed source)",
        eager.len(),
        idle[2],
        idle[0],
        idle[4],
        busy,
        tick.queued.len()
    );
    assert_eq!(tick.queued.len(), affected);
}
