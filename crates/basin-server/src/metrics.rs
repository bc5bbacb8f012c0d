//! `GET /metrics`: Prometheus's text format, for the role of the authenticated caller.
//!
//! The endpoint's own counters (statements served, by protocol and outcome, and their
//! durations) live for the process. Everything else is read from the metadata store when a
//! scrape asks: runs by status and failure category, the run queue, each asset's last
//! materialisation and age, failing checks. Per-asset series are limited to the assets the
//! caller's role may read, as `GET /api/assets` is; their labels are the project's asset keys,
//! so no label takes unbounded values.

use std::sync::LazyLock;

use basin_core::AssetKey;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::Server;
use crate::policy::Role;

/// Statements the endpoint served, for the life of the process.
struct Endpoint {
    statements: IntCounterVec,
    seconds: HistogramVec,
}

static ENDPOINT: LazyLock<Endpoint> = LazyLock::new(|| Endpoint {
    statements: IntCounterVec::new(
        Opts::new("basin_endpoint_statements_total", "Statements the SQL endpoint answered, by protocol and outcome."),
        &["protocol", "outcome"],
    )
    .expect("valid metric"),
    seconds: HistogramVec::new(
        HistogramOpts::new(
            "basin_endpoint_statement_duration_seconds",
            "Time from a statement's arrival to its last row.",
        )
        .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0]),
        &["protocol"],
    )
    .expect("valid metric"),
});

/// Count one statement: `outcome` is `ok`, `denied` (not the role's to read), `refused` (not a
/// statement the endpoint serves) or `error`.
pub fn statement(protocol: &str, outcome: &str, seconds: f64) {
    ENDPOINT.statements.with_label_values(&[protocol, outcome]).inc();
    ENDPOINT.seconds.with_label_values(&[protocol]).observe(seconds);
}

/// The metrics `role` may see, in Prometheus's text format.
pub async fn render(server: &Server, role: &Role) -> Result<String, String> {
    let registry = Registry::new();
    let failed = |what: &str| {
        let what = what.to_string();
        move |e: basin_meta::Error| format!("cannot read {what}: {e}")
    };
    let store = &server.lakehouse.store;
    let now = chrono::Utc::now();

    let runs = IntCounterVec::new(
        Opts::new("basin_runs_total", "Runs recorded, by status and failure category (empty when none)."),
        &["status", "category"],
    )
    .expect("valid metric");
    for (status, category, n) in store.run_counts().await.map_err(failed("runs"))? {
        runs.with_label_values(&[&status.to_lowercase(), category.as_deref().unwrap_or("")]).inc_by(n.max(0) as u64);
    }

    let active = IntGaugeVec::new(Opts::new("basin_runs_active", "Runs queued or running, by status."), &["status"])
        .expect("valid metric");
    let oldest = IntGauge::new("basin_queue_oldest_wait_seconds", "How long the oldest queued run has waited.")
        .expect("valid metric");
    for status in ["queued", "starting", "started"] {
        active.with_label_values(&[status]).set(0);
    }
    for run in store.active_runs().await.map_err(failed("active runs"))? {
        active.with_label_values(&[&run.status.to_string().to_lowercase()]).inc();
        if run.status == basin_meta::RunStatus::Queued {
            oldest.set(oldest.get().max((now - run.created_at).num_seconds()));
        }
    }

    let readable = |asset: &str| AssetKey::parse(asset).is_some_and(|k| role.may_read(&k.schema, &k.name));
    let last = GaugeVec::new(
        Opts::new(
            "basin_asset_last_materialized_timestamp_seconds",
            "When each asset was last materialised (Unix time).",
        ),
        &["asset"],
    )
    .expect("valid metric");
    let age = GaugeVec::new(
        Opts::new("basin_asset_age_seconds", "Seconds since each asset was last materialised."),
        &["asset"],
    )
    .expect("valid metric");
    for (asset, at) in store.latest_materializations().await.map_err(failed("materialisations"))? {
        if readable(&asset) {
            last.with_label_values(&[&asset]).set(at.timestamp_micros() as f64 / 1e6);
            age.with_label_values(&[&asset]).set(((now - at).num_milliseconds() as f64 / 1e3).max(0.0));
        }
    }

    let failing = IntGaugeVec::new(
        Opts::new("basin_checks_failing", "Checks of severity error whose latest result failed, by asset."),
        &["asset"],
    )
    .expect("valid metric");
    for check in store.failing_checks().await.map_err(failed("check results"))? {
        if readable(&check.asset) {
            failing.with_label_values(&[&check.asset]).inc();
        }
    }

    // The watchdog's view, as it stored it in its last cycle.
    let classes = IntGaugeVec::new(
        Opts::new("basin_watchdog_subjects", "Assets and schedules by the class the watchdog last gave them."),
        &["class"],
    )
    .expect("valid metric");
    for class in basin_core::alert::CLASSES {
        classes.with_label_values(&[class]).set(0);
    }
    for s in store.watch_statuses().await.map_err(failed("the watchdog's classes"))? {
        if s.subject.starts_with("schedule:") || readable(&s.subject) {
            classes.with_label_values(&[&s.class]).inc();
        }
    }
    let cycle = GaugeVec::new(
        Opts::new("basin_watchdog_last_cycle_timestamp_seconds", "When the watchdog's last cycle ran (Unix time)."),
        &[],
    )
    .expect("valid metric");
    if let Some(t) = store
        .cursor("watchdog:cycle")
        .await
        .map_err(failed("the watchdog's cursor"))?
        .and_then(|c| chrono::DateTime::parse_from_rfc3339(&c).ok())
    {
        cycle.with_label_values::<&str>(&[]).set(t.timestamp_micros() as f64 / 1e6);
    }
    let deliveries = IntCounterVec::new(
        Opts::new(
            "basin_alert_deliveries_total",
            "Alert notifications by channel, state (firing, resolved, test, heartbeat) and whether they arrived.",
        ),
        &["channel", "state", "delivered"],
    )
    .expect("valid metric");
    for (channel, state, delivered, n) in store.alert_delivery_counts().await.map_err(failed("alert deliveries"))? {
        let delivered = if delivered { "true" } else { "false" };
        deliveries.with_label_values(&[channel.as_str(), state.as_str(), delivered]).inc_by(n.max(0) as u64);
    }
    let slo = IntGaugeVec::new(
        Opts::new(
            "basin_slo_days",
            "Days of the last 30 by each asset's freshness SLO verdict (met, met_late, missed).",
        ),
        &["asset", "verdict"],
    )
    .expect("valid metric");
    for r in store.slo_results(now - chrono::Duration::days(30)).await.map_err(failed("SLO results"))? {
        if readable(&r.asset) {
            slo.with_label_values(&[&r.asset, &r.verdict]).inc();
        }
    }

    let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
        Box::new(classes),
        Box::new(cycle),
        Box::new(deliveries),
        Box::new(slo),
        Box::new(runs),
        Box::new(active),
        Box::new(oldest),
        Box::new(last),
        Box::new(age),
        Box::new(failing),
        Box::new(ENDPOINT.statements.clone()),
        Box::new(ENDPOINT.seconds.clone()),
    ];
    for c in collectors {
        registry.register(c).map_err(|e| format!("cannot register a metric: {e}"))?;
    }
    let mut out = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut out).map_err(|e| format!("cannot encode the metrics: {e}"))?;
    String::from_utf8(out).map_err(|e| e.to_string())
}
