//! The watchdog's cycle time on a large store (what `bench/watchdog.py` drives).
//!
//!     watchdog_bench URL init                 # create the store's schema, then exit
//!     watchdog_bench URL cycle ASSETS CYCLES  # time CYCLES cycles over ASSETS assets
//!
//! The assets are `silver.a00000` … as the script names them; one in ten has a freshness SLO
//! (ready by 07:30 UTC). Each cycle runs one interval after the last on a manual clock, as a
//! daemon's would; no alert channel is configured (delivery runs beside the cycle anyway).

use std::sync::Arc;
use std::time::{Duration, Instant};

use basin_core::clock::{Clock, ManualClock, SystemClock};
use basin_core::slo::SloConfig;
use basin_meta::{MetaStore, SqlStore};
use basin_orchestrator::alerts::Alerter;
use basin_orchestrator::status::Options;
use basin_orchestrator::watchdog::Watchdog;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(url), Some(mode)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: watchdog_bench URL init | watchdog_bench URL cycle ASSETS CYCLES");
        std::process::exit(2);
    };
    let dir = std::env::current_dir().expect("a working directory");
    if mode == "init" {
        SqlStore::open(url, &dir, Arc::new(SystemClock)).await.expect("the store opens");
        return;
    }
    let assets: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let cycles: usize = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(5);
    let clock = ManualClock::new(chrono::Utc::now());
    let store: Arc<dyn MetaStore> =
        Arc::new(SqlStore::open(url, &dir, Arc::new(clock.clone())).await.expect("the store opens"));
    let names: Vec<String> = (0..assets).map(|i| format!("silver.a{i:05}")).collect();
    let mut options = Options::new(Duration::from_secs(5));
    let slo: SloConfig = toml::from_str("ready_by = \"07:30\"\n").expect("a valid SLO");
    for name in names.iter().step_by(10) {
        options.slos.insert(name.clone(), slo.parse().expect("a valid SLO"));
    }
    let alerter = Alerter::new("bench", Vec::new(), store.clone(), Arc::new(clock.clone()));
    let w = Watchdog::new(names, Duration::from_secs(60), options, alerter);
    let mut times = Vec::new();
    for i in 1..=cycles {
        clock.advance(chrono::Duration::seconds(60));
        let started = Instant::now();
        let cycle = w.cycle(&store, &[], clock.now()).await.expect("a cycle").expect("the cycle is due");
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        println!(
            "cycle {i}: {ms:.0} ms, {} subjects, {} transitions, {} SLO days judged",
            cycle.subjects,
            cycle.transitions.len(),
            cycle.slo.len()
        );
        times.push(ms);
    }
    let steady: Vec<f64> = times.iter().skip(1).copied().collect();
    let median = if steady.is_empty() {
        times[0]
    } else {
        let mut s = steady.clone();
        s.sort_by(f64::total_cmp);
        s[s.len() / 2]
    };
    println!("RESULT first_ms={:.0} steady_median_ms={median:.0}", times[0]);
}
