//! What `basin plan '*'` does before it touches the lake, timed: load and validate every file
//! of a project, resolve the selection, order the graph and format the plan. Used by
//! `bench/plan.sh`; prints seconds per phase.
//!
//! usage: cargo run --release -p basin-core --example plan -- PROJECT_DIR [SELECTION]

use std::fmt::Write;
use std::time::Instant;

use basin_core::{Project, selection};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: plan PROJECT_DIR [SELECTION]");
    let selection = args.next().unwrap_or_else(|| "*".into());
    let start = Instant::now();
    let (project, diagnostics) = Project::load(std::path::Path::new(&dir)).expect("readable project");
    let loaded = start.elapsed();
    assert!(!diagnostics.has_errors(), "{} problems", diagnostics.errors().count());
    let keys = selection::select(&project.graph, &selection).expect("valid selection");
    let ordered = project.graph.order(keys.iter().copied());
    let mut out = String::new();
    for (i, key) in ordered.iter().enumerate() {
        let ups: Vec<String> = project.graph.upstream(key).iter().map(|k| k.to_string()).collect();
        writeln!(out, "{:>5}  {key:<40} after {}", i + 1, ups.join(", ")).unwrap();
    }
    let total = start.elapsed();
    println!(
        "models={} lines={} validate_s={:.3} plan_s={:.3}",
        project.models.len(),
        ordered.len(),
        loaded.as_secs_f64(),
        total.as_secs_f64()
    );
}
