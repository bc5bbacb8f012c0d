//! Freshness SLOs: a model's `slo = { ready_by = "07:30", timezone = "Europe/Berlin" }` and/or
//! `max_age = "26h"`, judged by the daemon's watchdog at each deadline (not only when a build
//! happens) from the materialisations the store holds.
//!
//! - `ready_by`: each day, by that local time, the asset has a materialisation made that
//!   day (local time), or within `max_age` before the deadline when `max_age` is also given.
//!   A day is `met`, `met_late` (the build came after the deadline, before the next one) or
//!   `missed`.
//! - `max_age` alone: the data is never older than that. A day (local midnight to midnight)
//!   is `met` if its age stayed within `max_age` all day, else `missed`.
//!
//! Judging is a pure function of the builds, so judging a day twice (two daemons, a
//! restarted one) gives the same answer.

use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use serde::Deserialize;

use crate::values::parse_duration;

/// `slo = { … }` in a model's header.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloConfig {
    /// `"07:30"`: the local time the data must be ready by, every day.
    pub ready_by: Option<String>,
    /// IANA zone of `ready_by` and of the days (default UTC).
    pub timezone: Option<String>,
    /// `"26h"`: the oldest the data may be.
    pub max_age: Option<String>,
    /// Share of days to meet (default 0.99): what the error budget is measured against.
    pub target: Option<f64>,
}

pub const DEFAULT_TARGET: f64 = 0.99;

/// A checked SLO.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    pub ready_by: Option<NaiveTime>,
    pub timezone: chrono_tz::Tz,
    pub max_age: Option<Duration>,
    pub target: f64,
}

/// A day's judgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Met,
    MetLate,
    Missed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::MetLate => "met_late",
            Verdict::Missed => "missed",
        }
    }
}

impl SloConfig {
    pub fn parse(&self) -> Result<Slo, String> {
        let ready_by = match &self.ready_by {
            Some(t) => Some(
                NaiveTime::parse_from_str(t, "%H:%M")
                    .map_err(|_| format!("`slo.ready_by` is a local time as HH:MM (e.g. \"07:30\"), not `{t}`"))?,
            ),
            None => None,
        };
        let timezone = match &self.timezone {
            Some(z) => chrono_tz::Tz::from_str(z).map_err(|_| {
                format!("`slo.timezone`: unknown time zone `{z}` (an IANA name, e.g. \"Europe/Berlin\")")
            })?,
            None => chrono_tz::UTC,
        };
        let max_age = match &self.max_age {
            Some(a) => {
                let d = parse_duration(a).map_err(|e| format!("`slo.max_age`: {e}"))?;
                if d.is_zero() {
                    return Err("`slo.max_age` must be more than 0".into());
                }
                Some(Duration::from_std(d).map_err(|e| format!("`slo.max_age`: {e}"))?)
            }
            None => None,
        };
        if ready_by.is_none() && max_age.is_none() {
            return Err("`slo` needs `ready_by` (e.g. \"07:30\"), `max_age` (e.g. \"26h\"), or both".into());
        }
        let target = self.target.unwrap_or(DEFAULT_TARGET);
        if !(target > 0.0 && target <= 1.0) {
            return Err(format!("`slo.target` is a share of days from 0 to 1 (e.g. 0.99), not {target}"));
        }
        Ok(Slo { ready_by, timezone, max_age, target })
    }
}

impl Slo {
    /// `ready by 07:30 Europe/Berlin`, `at most 26h old`.
    pub fn describe(&self) -> String {
        match (self.ready_by, self.max_age) {
            (Some(t), Some(age)) => format!(
                "ready by {} {} (built within {} before)",
                t.format("%H:%M"),
                self.timezone,
                crate::values::format_duration(age.to_std().unwrap_or_default())
            ),
            (Some(t), None) => format!("ready by {} {}", t.format("%H:%M"), self.timezone),
            (None, Some(age)) => {
                format!("at most {} old", crate::values::format_duration(age.to_std().unwrap_or_default()))
            }
            (None, None) => String::new(),
        }
    }

    /// The instant of `time` on local day `day`; a time skipped by a daylight-saving change
    /// is taken an hour later.
    fn local(&self, day: NaiveDate, time: NaiveTime) -> Option<DateTime<Utc>> {
        let naive = day.and_time(time);
        self.timezone
            .from_local_datetime(&naive)
            .earliest()
            .or_else(|| self.timezone.from_local_datetime(&(naive + Duration::hours(1))).earliest())
            .map(|t| t.with_timezone(&Utc))
    }

    fn local_day(&self, t: DateTime<Utc>) -> NaiveDate {
        t.with_timezone(&self.timezone).date_naive()
    }

    /// The deadline of local day `day`: `ready_by` that day, or the day's end for `max_age`.
    pub fn deadline(&self, day: NaiveDate) -> Option<DateTime<Utc>> {
        match self.ready_by {
            Some(t) => self.local(day, t),
            None => self.local(day.succ_opt()?, NaiveTime::MIN),
        }
    }

    /// The day whose deadline is the latest at or before `now`.
    pub fn last_day(&self, now: DateTime<Utc>) -> Option<NaiveDate> {
        let today = self.local_day(now);
        [Some(today), today.pred_opt(), today.pred_opt().and_then(|d| d.pred_opt())]
            .into_iter()
            .flatten()
            .find(|d| self.deadline(*d).is_some_and(|dl| dl <= now))
    }

    /// Days whose deadlines fall in `(after, now]`, oldest first (at most `limit`, the newest).
    pub fn days_due(&self, after: DateTime<Utc>, now: DateTime<Utc>, limit: usize) -> Vec<NaiveDate> {
        let Some(last) = self.last_day(now) else { return Vec::new() };
        let mut days = Vec::new();
        let mut d = last;
        while days.len() < limit && self.deadline(d).is_some_and(|dl| dl > after) {
            days.push(d);
            match d.pred_opt() {
                Some(p) => d = p,
                None => break,
            }
        }
        days.reverse();
        days
    }

    /// Judge local day `day` at `now` from `builds` (materialisation times, any order).
    /// `None` while its deadline has not passed.
    pub fn judge(
        &self,
        day: NaiveDate,
        builds: &[DateTime<Utc>],
        now: DateTime<Utc>,
    ) -> Option<(Verdict, Option<DateTime<Utc>>)> {
        let deadline = self.deadline(day)?;
        if deadline > now {
            return None;
        }
        match self.ready_by {
            Some(_) => {
                let start = match self.max_age {
                    Some(age) => deadline - age,
                    None => self.local(day, NaiveTime::MIN)?,
                };
                if let Some(b) = builds.iter().filter(|b| **b >= start && **b <= deadline).max() {
                    return Some((Verdict::Met, Some(*b)));
                }
                let next = day.succ_opt().and_then(|d| self.deadline(d)).unwrap_or(DateTime::<Utc>::MAX_UTC);
                match builds.iter().filter(|b| **b > deadline && **b <= next && **b <= now).min() {
                    Some(b) => Some((Verdict::MetLate, Some(*b))),
                    None => Some((Verdict::Missed, None)),
                }
            }
            None => {
                let age = self.max_age?;
                let start = self.local(day, NaiveTime::MIN)?;
                let mut sorted: Vec<DateTime<Utc>> = builds.iter().copied().filter(|b| *b <= deadline).collect();
                sorted.sort();
                // The last build at or before the day starts, and those during it.
                let first = sorted.iter().rposition(|b| *b <= start).unwrap_or(0);
                let relevant = &sorted[first..];
                if relevant.is_empty() || relevant[0] > start {
                    // Nothing built before the day began: no data, or too old, at its start.
                    let until = relevant.first().copied();
                    return Some((Verdict::Missed, until));
                }
                for (i, b) in relevant.iter().enumerate() {
                    let next = relevant.get(i + 1).copied().unwrap_or(deadline);
                    if *b + age < next && next > start {
                        return Some((Verdict::Missed, relevant.last().copied()));
                    }
                }
                Some((Verdict::Met, relevant.last().copied()))
            }
        }
    }

    /// Whether the asset is late at `now`: the latest deadline passed without a build in its
    /// window and none since, or (`max_age` alone) the data is older than `max_age`.
    pub fn late(&self, last_build: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<String> {
        match (self.ready_by, self.max_age) {
            (Some(_), _) => {
                let day = self.last_day(now)?;
                let deadline = self.deadline(day)?;
                let start = match self.max_age {
                    Some(age) => deadline - age,
                    None => self.local(day, NaiveTime::MIN)?,
                };
                if last_build.is_some_and(|b| b >= start) {
                    return None;
                }
                Some(format!(
                    "missed its SLO ({}): not built for {day} by {}",
                    self.describe(),
                    deadline.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ))
            }
            (None, Some(age)) => {
                let built = last_build?;
                (now - built > age).then(|| {
                    format!(
                        "missed its SLO ({}): last built {} ({} ago)",
                        self.describe(),
                        built.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        crate::values::format_duration((now - built).to_std().unwrap_or_default())
                    )
                })
            }
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn slo(text: &str) -> Slo {
        toml::from_str::<SloConfig>(text).unwrap().parse().unwrap()
    }

    #[test]
    fn ready_by_is_judged_per_local_day_met_late_or_missed() {
        // Berlin in winter is UTC+1: 07:30 local is 06:30 UTC.
        let s = slo("ready_by = \"07:30\"\ntimezone = \"Europe/Berlin\"\n");
        let day = NaiveDate::from_ymd_opt(2026, 12, 7).unwrap();
        assert_eq!(s.deadline(day), Some(at("2026-12-07T06:30:00Z")));
        assert_eq!(s.judge(day, &[], at("2026-12-07T06:29:00Z")), None, "not judged before its deadline");
        let built = at("2026-12-07T01:10:00Z");
        assert_eq!(s.judge(day, &[built], at("2026-12-07T06:31:00Z")), Some((Verdict::Met, Some(built))));
        // Yesterday's build does not count for today.
        let yesterday = at("2026-12-06T01:10:00Z");
        assert_eq!(s.judge(day, &[yesterday], at("2026-12-07T06:31:00Z")), Some((Verdict::Missed, None)));
        let late = at("2026-12-07T08:00:00Z");
        assert_eq!(s.judge(day, &[yesterday, late], at("2026-12-07T09:00:00Z")), Some((Verdict::MetLate, Some(late))));
        assert!(s.late(Some(yesterday), at("2026-12-07T06:31:00Z")).unwrap().contains("not built for 2026-12-07"));
        assert_eq!(s.late(Some(late), at("2026-12-07T09:00:00Z")), None);
        assert_eq!(
            s.late(Some(yesterday), at("2026-12-07T06:00:00Z")),
            None,
            "before the deadline, yesterday's counts"
        );
        let days = s.days_due(at("2026-12-05T00:00:00Z"), at("2026-12-07T07:00:00Z"), 10);
        assert_eq!(days.iter().map(|d| d.to_string()).collect::<Vec<_>>(), ["2026-12-05", "2026-12-06", "2026-12-07"]);
    }

    #[test]
    fn max_age_alone_misses_a_day_the_data_grew_too_old() {
        let s = slo("max_age = \"2h\"\n");
        let day = NaiveDate::from_ymd_opt(2026, 12, 7).unwrap();
        let hourly: Vec<DateTime<Utc>> = (0..=24).map(|h| at("2026-12-06T23:30:00Z") + Duration::hours(h)).collect();
        assert_eq!(s.judge(day, &hourly, at("2026-12-08T00:00:01Z")).unwrap().0, Verdict::Met);
        let gap: Vec<DateTime<Utc>> = hourly
            .iter()
            .copied()
            .filter(|t| *t < at("2026-12-07T10:00:00Z") || *t > at("2026-12-07T13:00:00Z"))
            .collect();
        assert_eq!(s.judge(day, &gap, at("2026-12-08T00:00:01Z")).unwrap().0, Verdict::Missed);
        assert!(s.late(Some(at("2026-12-07T09:30:00Z")), at("2026-12-07T12:00:00Z")).is_some());
        assert!(s.late(Some(at("2026-12-07T11:30:00Z")), at("2026-12-07T12:00:00Z")).is_none());
    }

    #[test]
    fn bad_slos_say_what_is_wrong() {
        let err = |t: &str| toml::from_str::<SloConfig>(t).unwrap().parse().unwrap_err();
        assert!(err("ready_by = \"7.30\"").contains("HH:MM"));
        assert!(err("ready_by = \"07:30\"\ntimezone = \"Mars/Base\"").contains("unknown time zone"));
        assert!(err("target = 0.99").contains("needs `ready_by`"));
        assert!(err("max_age = \"1h\"\ntarget = 99").contains("share of days"));
    }
}
