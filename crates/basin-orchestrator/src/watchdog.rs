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

use basin_core::failure::FailureCategory;

use crate::alerts::{Alerter, Notification};
use crate::status::{self, Options};

/// The store cursor a cycle is claimed through.
pub const CURSOR: &str = basin_meta::WATCHDOG_CURSOR;

/// The subject a schedule is classified under.
pub fn schedule_subject(name: &str) -> String {
    format!("schedule:{name}")
}

/// Bounded remediation: what the watchdog may do about failures on its own.
#[derive(Debug, Clone)]
pub struct Remedies {
    pub relaunch: bool,
    pub max_per_cycle: usize,
    pub cooldown: Duration,
    pub max_strikes: usize,
    /// The launcher the relaunched runs are queued for.
    pub launcher: String,
}

impl Default for Remedies {
    fn default() -> Self {
        Remedies {
            relaunch: true,
            max_per_cycle: 3,
            cooldown: Duration::from_secs(3600),
            max_strikes: 3,
            launcher: "subprocess".into(),
        }
    }
}

/// Failure categories that may pass on their own, so a relaunch may mend them. Never
/// `bad_query`, `auth`, `check_failed`, `guardrail`, `bad_data` or `other`: a person must act.
const RELAUNCHABLE: [FailureCategory; 5] = [
    FailureCategory::Transient,
    FailureCategory::SourceUnavailable,
    FailureCategory::WorkerDied,
    FailureCategory::Timeout,
    FailureCategory::OutOfMemory,
];

pub struct Watchdog {
    interval: Duration,
    remedies: Remedies,
    options: Options,
    assets: Vec<String>,
    alerter: Alerter,
    heartbeat_url: Option<String>,
    client: reqwest::Client,
    /// Each SLO asset's latest judged deadline, read from the store on the first cycle.
    judged: tokio::sync::Mutex<Option<std::collections::BTreeMap<String, DateTime<Utc>>>>,
    /// The last interval this daemon saw done (by itself or another): until the next one
    /// begins, a tick asks the store nothing.
    done: std::sync::Mutex<Option<DateTime<Utc>>>,
}

/// What one cycle did.
#[derive(Debug)]
pub struct Cycle {
    pub at: DateTime<Utc>,
    pub subjects: usize,
    pub transitions: Vec<WatchEvent>,
    /// SLO days judged (or judged again: a miss whose build came late).
    pub slo: Vec<SloResult>,
    /// Actions taken: relaunches and escalations, each with its reason.
    pub actions: Vec<WatchEvent>,
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
            done: std::sync::Mutex::new(None),
            remedies: Remedies::default(),
        }
    }

    /// What it may do about failures (default: relaunch, 3 per cycle, 60 min cooldown, 3
    /// strikes).
    pub fn with_remedies(mut self, remedies: Remedies) -> Watchdog {
        self.remedies = remedies;
        self
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
        let done = |at: DateTime<Utc>| *self.done.lock().expect("not poisoned") = Some(at);
        if self.done.lock().expect("not poisoned").is_some_and(|d| d >= slot) {
            return Ok(None);
        }
        let current = store.cursor(CURSOR).await?;
        if let Some(c) = current.as_deref().and_then(|c| DateTime::parse_from_rfc3339(c).ok())
            && c.to_utc() >= slot
        {
            done(c.to_utc());
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
            done(slot);
            return Ok(None);
        };
        done(slot);
        let slo = self.judge_slos(store, &st.built, now).await?;
        let mut deliveries = self.alerter.route(&transitions).await?;
        let actions = self.remedy(store, &st, now).await?;
        for a in actions.iter().filter(|a| a.action.as_deref() == Some("escalate")) {
            deliveries.extend(self.alerter.escalate(a).await);
        }
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
        Ok(Some(Cycle { at: now, subjects: statuses.len(), transitions, slo, actions, deliveries }))
    }

    /// Relaunch hard failures of a passing kind, within the bounds: at most `max_per_cycle`
    /// per cycle, nothing sharing a cooldown key (the failed run's `source` tag, else the
    /// asset) with a relaunch within `cooldown`, and after `max_strikes` relaunches since the
    /// asset last built, one escalation and nothing more until it builds again.
    async fn remedy(
        &self,
        store: &Arc<dyn MetaStore>,
        st: &status::Status,
        now: DateTime<Utc>,
    ) -> basin_meta::Result<Vec<WatchEvent>> {
        let r = &self.remedies;
        let candidates: Vec<&status::AssetStatus> = st
            .assets
            .iter()
            .filter(|a| a.class == status::Class::HardFailure && a.category.is_some_and(|c| RELAUNCHABLE.contains(&c)))
            .collect();
        if !r.relaunch || candidates.is_empty() {
            return Ok(Vec::new());
        }
        let horizon =
            chrono::Duration::from_std(r.cooldown).unwrap_or(chrono::Duration::MAX).max(chrono::Duration::days(7));
        let past = store.watch_actions(now - horizon).await?;
        let built = &st.built;
        let cooldown = chrono::Duration::from_std(r.cooldown).unwrap_or(chrono::Duration::MAX);
        let key_of = |run: Option<&basin_meta::Run>, asset: &str| match run.and_then(|r| r.tags.get("source")) {
            Some(source) => format!("source={source}"),
            None => asset.to_string(),
        };
        let mut cooling: std::collections::BTreeSet<String> = past
            .iter()
            .filter(|a| a.action.as_deref() == Some("relaunch") && now - a.at < cooldown)
            .filter_map(|a| a.reason.split_once("cooldown key ").map(|(_, k)| k.trim_end_matches(')').to_string()))
            .collect();
        let mut actions = Vec::new();
        let mut relaunched = 0;
        for a in candidates {
            let since_built = |x: &&WatchEvent| x.subject == a.asset && built.get(&a.asset).is_none_or(|b| x.at > *b);
            let strikes = past.iter().filter(since_built).filter(|x| x.action.as_deref() == Some("relaunch")).count();
            let escalated = past.iter().filter(since_built).any(|x| x.action.as_deref() == Some("escalate"));
            let category = a.category.map(|c| c.as_str()).unwrap_or_default();
            if strikes >= r.max_strikes {
                if !escalated {
                    actions.push(action(a, "escalate", now, format!(
                        "relaunched {strikes} time(s) since it last built and still failing ({category}); the watchdog stops \
                         relaunching it: a person must look (basin runs --asset {})",
                        a.asset
                    )));
                }
                continue;
            }
            if relaunched >= r.max_per_cycle {
                continue;
            }
            let failed = match &a.run_id {
                Some(id) => store.run(id).await?,
                None => None,
            };
            let key = key_of(failed.as_ref(), &a.asset);
            if cooling.contains(&key) {
                continue;
            }
            let mut run = basin_meta::NewRun::new(vec![a.asset.clone()], &r.launcher);
            if let Some(f) = &failed {
                run.tags = f
                    .tags
                    .iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "schedule" | "tick" | "automation"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                run.tags.insert(status::RELAUNCH_OF.into(), f.id.clone());
            }
            run.tags.insert("watchdog".into(), "relaunch".into());
            let queued = store.create_run(run).await?;
            relaunched += 1;
            cooling.insert(key.clone());
            let mut done = action(
                a,
                "relaunch",
                now,
                format!(
                    "its last build failed ({category}), retries spent; relaunch {} of {} queued as run {} (cooldown key {key})",
                    strikes + 1,
                    r.max_strikes,
                    queued.id
                ),
            );
            done.run_id = Some(queued.id);
            actions.push(done);
        }
        store.add_watch_actions(&actions).await?;
        Ok(actions)
    }

    /// Judge the SLO days whose deadlines passed since each asset's last judged one (on first
    /// sight of an SLO, its latest deadline only), and again the misses of the last days that
    /// a build has come for since (`met_late`).
    async fn judge_slos(
        &self,
        store: &Arc<dyn MetaStore>,
        latest: &std::collections::BTreeMap<String, DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> basin_meta::Result<Vec<SloResult>> {
        if self.options.slos.is_empty() {
            return Ok(Vec::new());
        }
        let mut judged = self.judged.lock().await;
        if judged.is_none() {
            *judged = Some(store.slo_latest().await?);
        }
        let judged = judged.as_mut().expect("just read");
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

fn action(a: &status::AssetStatus, what: &str, now: DateTime<Utc>, reason: String) -> WatchEvent {
    WatchEvent {
        id: 0,
        at: now,
        subject: a.asset.clone(),
        from_class: Some(a.class.as_str().to_string()),
        to_class: a.class.as_str().to_string(),
        reason,
        run_id: a.run_id.clone(),
        action: Some(what.to_string()),
    }
}
