//! The watchdog: every `[watchdog] interval` (on the daemon's clock) it classifies every asset
//! and schedule ([`crate::status`]), stores the classes and each change of class in the same
//! transaction as it claims the cycle (`basin.asset_status`, `basin.watchdog_events`), routes
//! the changes to the alert channels ([`crate::alerts`]), judges the freshness SLOs whose
//! deadlines have passed (`basin.slo_results`; see [`basin_core::slo`]) and pings the
//! heartbeat URL.
//!
//! One cycle per interval over all daemons: a cycle is claimed by moving the store's cursor
//! `watchdog:cycle` to the interval's start, so of several daemons on one store exactly one
//! classifies, alerts and pings for each interval, and the others skip it.

use std::sync::Arc;
use std::time::Duration;

use basin_core::daemon::Schedule;
use basin_meta::{AlertDelivery, MetaStore, SloResult, WatchEvent, WatchStatus};
use chrono::{DateTime, Utc};

use crate::alerts::{Alerter, Notification};
use crate::status::{self, Options};

/// The store cursor a cycle is claimed through.
pub const CURSOR: &str = "watchdog:cycle";

/// The subject a schedule is classified under.
pub fn schedule_subject(name: &str) -> String {
    format!("schedule:{name}")
}

pub struct Watchdog {
    interval: Duration,
    options: Options,
    assets: Vec<String>,
    alerter: Alerter,
    heartbeat_url: Option<String>,
    client: reqwest::Client,
    /// Each SLO asset's latest judged deadline, read from the store on the first cycle.
    judged: tokio::sync::Mutex<Option<std::collections::BTreeMap<String, DateTime<Utc>>>>,
}

/// What one cycle did.
#[derive(Debug)]
pub struct Cycle {
    pub at: DateTime<Utc>,
    pub subjects: usize,
    pub transitions: Vec<WatchEvent>,
    /// SLO days judged (or judged again: a miss whose build came late).
    pub slo: Vec<SloResult>,
    /// Notifications started: channel, what, and the delivery (the daemon does not wait).
    pub deliveries: Vec<(String, Notification, tokio::task::JoinHandle<AlertDelivery>)>,
}

impl Watchdog {
    /// Watch `assets` (every asset of the project) every `interval`, alerting through `alerter`.
    pub fn new(assets: Vec<String>, interval: Duration, options: Options, alerter: Alerter) -> Watchdog {
        Watchdog {
            interval: interval.max(Duration::from_secs(1)),
            options,
            assets,
            alerter,
            heartbeat_url: None,
            client: reqwest::Client::new(),
            judged: tokio::sync::Mutex::new(None),
        }
    }

    /// Ping `url` every cycle (a dead man's switch).
    pub fn with_heartbeat(mut self, url: Option<String>) -> Watchdog {
        self.heartbeat_url = url;
        self
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The start of the interval `now` is in.
    fn slot(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let step = i64::try_from(self.interval.as_micros()).unwrap_or(i64::MAX).max(1);
        let micros = now.timestamp_micros();
        DateTime::from_timestamp_micros(micros - micros.rem_euclid(step)).unwrap_or(now)
    }

    /// The cycle of the interval `now` is in, unless a daemon has done it: `None` then.
    pub async fn cycle(
        &self,
        store: &Arc<dyn MetaStore>,
        schedules: &[Schedule],
        now: DateTime<Utc>,
    ) -> basin_meta::Result<Option<Cycle>> {
        let slot = self.slot(now);
        let current = store.cursor(CURSOR).await?;
        if current.as_deref().and_then(|c| DateTime::parse_from_rfc3339(c).ok()).is_some_and(|c| c.to_utc() >= slot) {
            return Ok(None);
        }
        let st = status::status(store, &self.assets, schedules, now, &self.options).await?;
        let mut statuses: Vec<WatchStatus> = st
            .assets
            .iter()
            .map(|a| WatchStatus {
                subject: a.asset.clone(),
                class: a.class.as_str().to_string(),
                reason: a.reason.clone(),
                run_id: a.run_id.clone(),
                since: a.since.unwrap_or(now),
                checked_at: now,
            })
            .collect();
        for s in &st.schedules {
            let (class, reason, since) = match (s.missed, s.due) {
                (true, Some(due)) => (
                    "stale_no_run",
                    format!("the tick due {} was not queued: no daemon was running it", due.to_rfc3339()),
                    due,
                ),
                _ => ("healthy", "its ticks are queued on time".to_string(), s.last_queued.unwrap_or(now)),
            };
            statuses.push(WatchStatus {
                subject: schedule_subject(&s.name),
                class: class.to_string(),
                reason,
                run_id: s.last_run.as_ref().map(|(id, _)| id.clone()),
                since,
                checked_at: now,
            });
        }
        let value = slot.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let Some(transitions) = store.watchdog_cycle(CURSOR, current.as_deref(), &value, &statuses).await? else {
            return Ok(None);
        };
        let slo = self.judge_slos(store, now).await?;
        let deliveries = self.alerter.route(&transitions).await?;
        if let Some(url) = self.heartbeat_url.clone() {
            let (client, store) = (self.client.clone(), store.clone());
            tokio::spawn(async move {
                if let Err(error) = crate::alerts::ping(&client, &url).await {
                    let failed = AlertDelivery {
                        at: now,
                        channel: "heartbeat".into(),
                        dedup_key: String::new(),
                        state: "heartbeat".into(),
                        subject: String::new(),
                        class: String::new(),
                        attempts: 1,
                        delivered: false,
                        error: Some(error),
                    };
                    let _ = store.add_alert_delivery(&failed).await;
                }
            });
        }
        Ok(Some(Cycle { at: now, subjects: statuses.len(), transitions, slo, deliveries }))
    }

    /// Judge the SLO days whose deadlines passed since each asset's last judged one (on first
    /// sight of an SLO, its latest deadline only), and again the misses of the last days that
    /// a build has come for since (`met_late`).
    async fn judge_slos(&self, store: &Arc<dyn MetaStore>, now: DateTime<Utc>) -> basin_meta::Result<Vec<SloResult>> {
        if self.options.slos.is_empty() {
            return Ok(Vec::new());
        }
        let mut judged = self.judged.lock().await;
        if judged.is_none() {
            *judged = Some(store.slo_latest().await?);
        }
        let judged = judged.as_mut().expect("just read");
        let latest = store.latest_materializations().await?;
        let mut missed: std::collections::BTreeMap<&str, Vec<(chrono::NaiveDate, DateTime<Utc>)>> = Default::default();
        let recent = store.slo_results(now - chrono::Duration::days(3)).await?;
        for r in recent.iter().filter(|r| r.verdict == "missed") {
            // Only when a build has come since its deadline: otherwise the miss stands.
            if latest.get(&r.asset).is_some_and(|b| *b > r.deadline)
                && let Ok(day) = chrono::NaiveDate::parse_from_str(&r.day, "%Y-%m-%d")
            {
                missed.entry(r.asset.as_str()).or_default().push((day, r.deadline));
            }
        }
        let mut out = Vec::new();
        for (asset, slo) in &self.options.slos {
            let mut days = match judged.get(asset) {
                Some(after) => slo.days_due(*after, now, 31),
                None => slo.last_day(now).into_iter().collect(),
            };
            days.extend(missed.get(asset.as_str()).into_iter().flatten().map(|(d, _)| *d));
            if days.is_empty() {
                continue;
            }
            days.sort();
            days.dedup();
            let builds: Vec<DateTime<Utc>> =
                store.materializations(Some(asset), 500).await?.into_iter().map(|m| m.at).collect();
            for day in days {
                let Some((verdict, built_at)) = slo.judge(day, &builds, now) else { continue };
                let deadline = slo.deadline(day).expect("judged days have deadlines");
                if judged.get(asset).is_none_or(|t| *t < deadline) {
                    judged.insert(asset.clone(), deadline);
                }
                out.push(SloResult {
                    asset: asset.clone(),
                    day: day.to_string(),
                    deadline,
                    verdict: verdict.as_str().to_string(),
                    built_at,
                    judged_at: now,
                });
            }
        }
        store.record_slo_results(&out).await?;
        Ok(out)
    }
}
