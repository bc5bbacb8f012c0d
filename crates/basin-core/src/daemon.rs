//! What `basin daemon` is told in `basin.toml`: `[daemon]` (queue limits, launcher, retries,
//! timeouts) and `[[schedules]]` (cron patterns in a time zone, each queuing a selection).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::failure::FailureCategory;
use crate::values::parse_duration;
pub use crate::values::parse_size;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DaemonSection {
    /// Runs in flight at once, over all tags.
    pub max_concurrent_runs: usize,
    /// `"source=v3" = 4`: at most 4 runs tagged `source=v3` in flight.
    pub tag_limits: BTreeMap<String, usize>,
    /// `subprocess` (default: a `basin worker` child process per run), `in_process`, or
    /// `command` (the `command` template, e.g. a container per run).
    pub launcher: String,
    /// For `launcher = "command"`: run through `sh -c`, with `{run_id}` and `{project}`
    /// replaced (shell-quoted).
    pub command: Option<String>,
    /// A run still going after this long is stopped and failed as `timeout` (`"6h"`).
    pub run_timeout: Option<String>,
    /// Memory a worker's queries may hold (`"4GiB"`, `"512MiB"`); sorts and aggregations
    /// spill to disk near it, and a query that cannot fails as `out_of_memory` instead of the
    /// machine's OOM killer taking the process.
    pub worker_memory_limit: Option<String>,
    /// `subprocess`: worker processes kept started ahead of their runs (each still does one
    /// run and exits); a burst of runs then starts without waiting for processes to start.
    pub standby_workers: usize,
    pub retry: RetrySection,
    /// `[daemon.tag_retry."source=v3"]`: the retry policy of runs with that tag; what it
    /// leaves out is taken from `[daemon.retry]`.
    pub tag_retry: BTreeMap<String, RetryOverride>,
}

impl Default for DaemonSection {
    fn default() -> Self {
        DaemonSection {
            max_concurrent_runs: 8,
            tag_limits: BTreeMap::new(),
            launcher: "subprocess".into(),
            command: None,
            run_timeout: None,
            worker_memory_limit: None,
            standby_workers: 2,
            retry: RetrySection::default(),
            tag_retry: BTreeMap::new(),
        }
    }
}

pub const LAUNCHERS: [&str; 3] = ["subprocess", "in_process", "command"];

impl DaemonSection {
    pub fn worker_memory_limit(&self) -> Option<usize> {
        self.worker_memory_limit.as_deref().and_then(|t| parse_size(t).ok())
    }

    /// The project's retry policies, with `assets` (an asset's key and its `[retry]`) over
    /// the daemon's.
    pub fn retry_policies<'a>(
        &self,
        assets: impl IntoIterator<Item = (String, &'a RetryOverride)>,
    ) -> Result<RetryPolicies, String> {
        let mut tags = Vec::new();
        for (tag, o) in &self.tag_retry {
            let pair = split_tag(tag)
                .ok_or_else(|| format!("`daemon.tag_retry.\"{tag}\"`: a tag is `key=value`, e.g. \"source=v3\""))?;
            let policy = self.retry.overridden(o).policy().map_err(|e| format!("`daemon.tag_retry.\"{tag}\"`: {e}"))?;
            tags.push((pair, policy));
        }
        let mut by_asset = BTreeMap::new();
        for (asset, o) in assets {
            let policy = self.retry.overridden(o).policy().map_err(|e| format!("{asset} `[retry]`: {e}"))?;
            by_asset.insert(asset, policy);
        }
        Ok(RetryPolicies { default: self.retry.policy()?, tags, assets: by_asset })
    }

    pub fn run_timeout(&self) -> Option<Duration> {
        self.run_timeout.as_deref().and_then(|t| parse_duration(t).ok()).filter(|d| !d.is_zero())
    }
}

/// When the daemon queues a failed run again: at most `max_attempts` attempts in all, waiting
/// `backoff` before the second and doubling it each time, for failures of the categories in
/// `on` only.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RetrySection {
    pub max_attempts: u32,
    pub backoff: String,
    pub on: Vec<String>,
}

impl Default for RetrySection {
    fn default() -> Self {
        RetrySection {
            max_attempts: 3,
            backoff: "30s".into(),
            on: FailureCategory::ALL
                .into_iter()
                .filter(|c| c.retryable_by_default())
                .map(|c| c.as_str().to_string())
                .collect(),
        }
    }
}

/// A checked retry policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub backoff: Duration,
    pub on: Vec<FailureCategory>,
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1`, or `None` if a run that failed this way on
    /// attempt `attempt` is not retried.
    pub fn next(&self, attempt: i64, category: FailureCategory) -> Option<Duration> {
        if attempt < 1 || attempt >= i64::from(self.max_attempts) || !self.on.contains(&category) {
            return None;
        }
        Some(self.backoff.saturating_mul(1 << (attempt - 1).min(16)))
    }
}

impl RetrySection {
    pub fn policy(&self) -> Result<RetryPolicy, String> {
        let backoff = parse_duration(&self.backoff).map_err(|e| format!("`daemon.retry.backoff`: {e}"))?;
        let on = self
            .on
            .iter()
            .map(|c| FailureCategory::from_str(c).map_err(|e| format!("`daemon.retry.on`: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RetryPolicy { max_attempts: self.max_attempts.max(1), backoff, on })
    }
}

/// A retry policy for some runs (a tag's, an asset's) over `[daemon.retry]`: a field left
/// out is taken from there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RetryOverride {
    pub max_attempts: Option<u32>,
    pub backoff: Option<String>,
    pub on: Option<Vec<String>>,
}

impl RetrySection {
    /// This section with `o`'s fields in place of its own.
    pub fn overridden(&self, o: &RetryOverride) -> RetrySection {
        RetrySection {
            max_attempts: o.max_attempts.unwrap_or(self.max_attempts),
            backoff: o.backoff.clone().unwrap_or_else(|| self.backoff.clone()),
            on: o.on.clone().unwrap_or_else(|| self.on.clone()),
        }
    }
}

/// Every retry policy of a project: per asset (a model's `[retry]`), per run tag
/// (`[daemon.tag_retry]`), and the default (`[daemon.retry]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicies {
    pub default: RetryPolicy,
    /// In the order of the config; the first tag a run carries wins.
    pub tags: Vec<((String, String), RetryPolicy)>,
    pub assets: BTreeMap<String, RetryPolicy>,
}

impl RetryPolicies {
    pub fn uniform(default: RetryPolicy) -> RetryPolicies {
        RetryPolicies { default, tags: Vec::new(), assets: BTreeMap::new() }
    }

    /// The policy for a failed run: that of the first failed asset with its own, else that of
    /// the first of the run's tags with one, else the default. (A run that failed as a whole,
    /// such as a dead worker, has no failed asset.)
    pub fn for_run<'a>(
        &self,
        tags: &BTreeMap<String, String>,
        failed_assets: impl IntoIterator<Item = &'a str>,
    ) -> &RetryPolicy {
        failed_assets
            .into_iter()
            .find_map(|a| self.assets.get(a))
            .or_else(|| self.tags.iter().find(|((k, v), _)| tags.get(k) == Some(v)).map(|(_, p)| p))
            .unwrap_or(&self.default)
    }
}

/// `key=value` of a tag limit or tag policy.
pub fn split_tag(text: &str) -> Option<(String, String)> {
    let (k, v) = text.split_once('=')?;
    let (k, v) = (k.trim(), v.trim());
    (!k.is_empty() && !v.is_empty()).then(|| (k.to_string(), v.to_string()))
}

/// A `[[schedules]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
pub struct ScheduleConfig {
    pub name: String,
    /// Five fields (minute hour day month weekday) or six with seconds first.
    pub cron: String,
    /// An IANA zone (`Europe/Berlin`); default UTC. Ticks follow its daylight-saving changes.
    #[serde(default)]
    pub timezone: Option<String>,
    /// What each tick queues, in the selection syntax (`tag:nightly`, `+gold.x`).
    pub selection: String,
    #[serde(default)]
    pub priority: i64,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A `[[sensors]]` entry: watch a source and queue its changed tables' bronze assets. A
/// files source is watched for new files; a database source for each incremental table's
/// `MAX(cursor)` and each full table's `COUNT(*)`.
#[derive(Debug, Clone, Deserialize)]
pub struct SensorConfig {
    pub name: String,
    pub source: String,
    /// Default: every table of the source.
    #[serde(default)]
    pub tables: Vec<String>,
    /// How often to look (default 30s).
    pub interval: Option<String>,
    #[serde(default)]
    pub priority: i64,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

pub const DEFAULT_SENSOR_INTERVAL: Duration = Duration::from_secs(30);

impl SensorConfig {
    pub fn interval(&self) -> Result<Duration, String> {
        match &self.interval {
            None => Ok(DEFAULT_SENSOR_INTERVAL),
            Some(t) => match parse_duration(t) {
                Ok(d) if !d.is_zero() => Ok(d),
                Ok(_) => Err(format!("sensor `{}`: `interval` must be more than 0", self.name)),
                Err(e) => Err(format!("sensor `{}`: invalid `interval`: {e}", self.name)),
            },
        }
    }
}

/// A checked schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub cron_text: String,
    cron: croner::Cron,
    pub timezone: chrono_tz::Tz,
    pub selection: String,
    pub priority: i64,
    pub tags: BTreeMap<String, String>,
}

impl Schedule {
    pub fn parse(config: &ScheduleConfig) -> Result<Schedule, String> {
        if config.name.trim().is_empty() {
            return Err("a schedule needs a `name`".into());
        }
        let cron = croner::Cron::from_str(&config.cron)
            .map_err(|e| format!("schedule `{}`: invalid cron `{}`: {e}", config.name, config.cron))?;
        let zone = config.timezone.as_deref().unwrap_or("UTC");
        let timezone = chrono_tz::Tz::from_str(zone)
            .map_err(|_| format!("schedule `{}`: unknown time zone `{zone}`", config.name))?;
        Ok(Schedule {
            name: config.name.clone(),
            cron_text: config.cron.clone(),
            cron,
            timezone,
            selection: config.selection.clone(),
            priority: config.priority,
            tags: config.tags.clone(),
        })
    }

    /// The first tick strictly after `t`, on a whole second.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Ticks fall on whole seconds; a cursor taken from the clock may carry a fraction.
        let whole = chrono::DurationRound::duration_trunc(t, chrono::TimeDelta::seconds(1)).unwrap_or(t);
        self.cron.find_next_occurrence(&whole.with_timezone(&self.timezone), false).ok().map(|d| d.with_timezone(&Utc))
    }

    /// The latest tick at or before `t`.
    pub fn last_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let whole = chrono::DurationRound::duration_trunc(t, chrono::TimeDelta::seconds(1)).unwrap_or(t);
        self.cron
            .find_previous_occurrence(&whole.with_timezone(&self.timezone), true)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The cursor in the metadata store that holds the last tick queued.
    pub fn cursor_name(&self) -> String {
        format!("schedule:{}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn ticks_follow_the_time_zone_across_daylight_saving() {
        let s = Schedule::parse(&ScheduleConfig {
            name: "nightly".into(),
            cron: "0 2 * * *".into(),
            timezone: Some("Europe/Berlin".into()),
            selection: "*".into(),
            priority: 0,
            tags: BTreeMap::new(),
        })
        .unwrap();
        // 02:00 in Berlin is 01:00 UTC in winter and 00:00 UTC in summer.
        assert_eq!(s.next_after(at("2026-01-10T12:00:00Z")), Some(at("2026-01-11T01:00:00Z")));
        assert_eq!(s.next_after(at("2026-07-10T12:00:00Z")), Some(at("2026-07-11T00:00:00Z")));
        // Strictly after: a tick is not found again from itself.
        assert_eq!(s.next_after(at("2026-01-11T01:00:00Z")), Some(at("2026-01-12T01:00:00Z")));
        // A cursor from the clock with a fraction of a second still gives whole-second ticks.
        assert_eq!(s.next_after(at("2026-01-11T00:59:59.75Z")), Some(at("2026-01-11T01:00:00Z")));
        assert_eq!(s.last_at_or_before(at("2026-01-11T01:00:00Z")), Some(at("2026-01-11T01:00:00Z")));
        assert_eq!(s.last_at_or_before(at("2026-01-11T00:59:59Z")), Some(at("2026-01-10T01:00:00Z")));
    }

    #[test]
    fn bad_patterns_and_zones_are_named() {
        let config = |cron: &str, tz: &str| ScheduleConfig {
            name: "n".into(),
            cron: cron.into(),
            timezone: Some(tz.into()),
            selection: "*".into(),
            priority: 0,
            tags: BTreeMap::new(),
        };
        assert!(Schedule::parse(&config("61 * * * *", "UTC")).unwrap_err().contains("invalid cron `61 * * * *`"));
        assert!(Schedule::parse(&config("0 2 * * *", "Mars/Olympus")).unwrap_err().contains("unknown time zone"));
    }

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("lots").is_err() && parse_size("4 parsecs").is_err() && parse_size("0").is_err());
    }

    #[test]
    fn retries_back_off_and_stop() {
        let p = RetrySection::default().policy().unwrap();
        assert_eq!(p.next(1, FailureCategory::Transient), Some(Duration::from_secs(30)));
        assert_eq!(p.next(2, FailureCategory::WorkerDied), Some(Duration::from_secs(60)));
        assert_eq!(p.next(3, FailureCategory::Transient), None, "three attempts in all");
        assert_eq!(p.next(1, FailureCategory::BadQuery), None, "a SQL error is never retried by default");
        assert_eq!(p.next(1, FailureCategory::Auth), None);
        let bad = RetrySection { on: vec!["flaky".into()], ..Default::default() };
        assert!(bad.policy().unwrap_err().contains("unknown failure category `flaky`"));
    }

    #[test]
    fn overrides_take_what_they_leave_out_from_the_daemon() {
        let d = DaemonSection {
            retry: RetrySection { max_attempts: 2, backoff: "10s".into(), ..Default::default() },
            tag_retry: BTreeMap::from([(
                "kind=backfill".to_string(),
                RetryOverride { max_attempts: Some(5), ..Default::default() },
            )]),
            ..Default::default()
        };
        let asset = RetryOverride { on: Some(vec!["bad_query".into()]), ..Default::default() };
        let p = d.retry_policies([("silver.x".to_string(), &asset)]).unwrap();
        let backfill = BTreeMap::from([("kind".to_string(), "backfill".to_string())]);
        let tagged = p.for_run(&backfill, []);
        assert_eq!((tagged.max_attempts, tagged.backoff), (5, Duration::from_secs(10)));
        let by_asset = p.for_run(&backfill, ["silver.y", "silver.x"]);
        assert_eq!((by_asset.max_attempts, by_asset.on.as_slice()), (2, &[FailureCategory::BadQuery][..]));
        assert_eq!(p.for_run(&BTreeMap::new(), ["silver.y"]), &p.default);
        let bad = DaemonSection {
            tag_retry: BTreeMap::from([("backfill".to_string(), RetryOverride::default())]),
            ..Default::default()
        };
        assert!(bad.retry_policies([]).unwrap_err().contains("a tag is `key=value`"));
        let wrong = RetryOverride { on: Some(vec!["sometimes".into()]), ..Default::default() };
        assert!(d.retry_policies([("silver.x".to_string(), &wrong)]).unwrap_err().contains("silver.x `[retry]`"));
    }
}
