//! `basin slo`: each freshness SLO's promise and how it was kept, from the days the daemon's
//! watchdog judged (`basin.slo_results`).

use std::collections::BTreeMap;
use std::process::ExitCode;

use basin_core::Project;
use chrono::Utc;
use serde_json::json;

/// Days met, met late and missed in a window.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    met: usize,
    late: usize,
    missed: usize,
}

impl Tally {
    fn judged(self) -> usize {
        self.met + self.late + self.missed
    }

    /// Share of judged days met on time.
    fn compliance(self) -> Option<f64> {
        (self.judged() > 0).then(|| self.met as f64 / self.judged() as f64)
    }
}

pub async fn show(project: &Project, json_out: bool) -> anyhow::Result<ExitCode> {
    let slos = crate::daemon::slos(project);
    let store = crate::runs::store_for(project).await?;
    let now = Utc::now();
    let results = store.slo_results(now - chrono::Duration::days(30)).await?;
    let mut by_asset: BTreeMap<&str, Vec<&basin_meta::SloResult>> = BTreeMap::new();
    for r in &results {
        by_asset.entry(r.asset.as_str()).or_default().push(r);
    }
    let mut rows = Vec::new();
    let mut exhausted = false;
    for (asset, slo) in &slos {
        let days = by_asset.get(asset.as_str()).cloned().unwrap_or_default();
        let tally = |window: i64| {
            let since = now - chrono::Duration::days(window);
            let mut t = Tally::default();
            for r in days.iter().filter(|r| r.deadline >= since) {
                match r.verdict.as_str() {
                    "met" => t.met += 1,
                    "met_late" => t.late += 1,
                    _ => t.missed += 1,
                }
            }
            t
        };
        let (week, month) = (tally(7), tally(30));
        // The 30-day error budget: the days the target allows to miss, and the share of it
        // not spent yet (negative once overspent).
        let allowed = (1.0 - slo.target) * month.judged() as f64;
        let spent = (month.late + month.missed) as f64;
        let budget_left = if month.judged() == 0 {
            None
        } else if allowed > 0.0 {
            Some(1.0 - spent / allowed)
        } else {
            Some(if spent > 0.0 { -1.0 } else { 1.0 })
        };
        exhausted |= budget_left.is_some_and(|b| b <= 0.0);
        let last = days.last().map(|r| (r.day.clone(), r.verdict.clone()));
        rows.push((asset.clone(), slo.describe(), slo.target, week, month, budget_left, last));
    }
    if json_out {
        let doc: Vec<serde_json::Value> = rows
            .iter()
            .map(|(asset, promise, target, week, month, budget, last)| {
                let window = |t: &Tally| {
                    json!({"met": t.met, "met_late": t.late, "missed": t.missed, "compliance": t.compliance()})
                };
                json!({
                    "asset": asset, "promise": promise, "target": target,
                    "last_7_days": window(week), "last_30_days": window(month),
                    "error_budget_left": budget,
                    "last": last.as_ref().map(|(d, v)| json!({"day": d, "verdict": v})),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(doc));
    } else if rows.is_empty() {
        println!("no freshness SLOs; give a model `slo = {{ ready_by = \"07:30\", timezone = \"Europe/Berlin\" }}`");
    } else {
        let pct = |v: Option<f64>| v.map(|v| format!("{:.1}%", v * 100.0)).unwrap_or_else(|| "-".into());
        let window = |t: &Tally| {
            format!("{}/{} met ({}), {} late, {} missed", t.met, t.judged(), pct(t.compliance()), t.late, t.missed)
        };
        for (asset, promise, target, week, month, budget, last) in &rows {
            println!("{asset}: {promise}, target {}", pct(Some(*target)));
            println!("  7 days:  {}", window(week));
            println!("  30 days: {}; error budget left {}", window(month), pct(*budget));
            match last {
                Some((day, verdict)) => println!("  last judged: {day} {verdict}"),
                None => println!("  not judged yet (the daemon's watchdog judges each deadline)"),
            }
        }
    }
    Ok(if exhausted { ExitCode::from(crate::exit::FAILED) } else { ExitCode::SUCCESS })
}
