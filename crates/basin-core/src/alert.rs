//! `[watchdog]` and `[[alerts]]` in `basin.toml`: how often the daemon's watchdog classifies
//! every asset and schedule, the dead man's switch it pings, and the channels its alerts go to.
//!
//! Channel secrets (webhook URLs with tokens, routing keys, header values) are written as
//! `${ENV}` and read when the daemon starts (or `basin alert test` runs), so that a laptop
//! without them can still run and validate the project.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::diagnostic::{Diagnostic, Location};
use crate::values::{Secret, interpolate_env, parse_duration};

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WatchdogSection {
    /// How often the daemon classifies every asset and schedule (`"1m"`).
    pub interval: String,
    /// A build still going after its asset's usual duration (p95 of its recent builds) times
    /// this is `running_long`.
    pub running_long_factor: f64,
    /// Recent builds of an asset its usual duration is taken over.
    pub duration_window: usize,
    /// Pinged (HTTP GET) every cycle, so that an outside monitor notices a dead daemon.
    pub heartbeat_url: Option<Secret>,
    /// Relaunch assets whose last build failed for a passing reason (transient,
    /// source_unavailable, worker_died, timeout, out_of_memory) once their retries are spent.
    pub relaunch: bool,
    /// Relaunches per cycle, over all assets.
    pub max_relaunches_per_cycle: usize,
    /// After a relaunch, nothing else with the same `source` tag (or the same asset) is
    /// relaunched for this long (`"60m"`).
    pub relaunch_cooldown: String,
    /// Relaunches of one asset since it last built, after which the watchdog stops and
    /// escalates (an alert saying so).
    pub max_strikes: usize,
}

impl Default for WatchdogSection {
    fn default() -> Self {
        WatchdogSection {
            interval: "1m".into(),
            running_long_factor: 2.0,
            duration_window: 20,
            heartbeat_url: None,
            relaunch: true,
            max_relaunches_per_cycle: 3,
            relaunch_cooldown: "60m".into(),
            max_strikes: 3,
        }
    }
}

impl WatchdogSection {
    pub fn interval(&self) -> Duration {
        parse_duration(&self.interval).ok().filter(|d| !d.is_zero()).unwrap_or(Duration::from_secs(60))
    }

    pub fn relaunch_cooldown(&self) -> Duration {
        parse_duration(&self.relaunch_cooldown).unwrap_or(Duration::from_secs(3600))
    }
}

/// Classes the watchdog assigns; the ones a channel alerts on by default are [`ALERTING`].
pub const CLASSES: [&str; 11] = [
    "healthy",
    "running_ok",
    "running_long",
    "zombie",
    "hard_failure",
    "retrying",
    "stale_no_run",
    "backfilling",
    "failing_checks",
    "never_built",
    "late",
];

/// Classes that mean something is wrong, and fire alerts unless a channel names its own.
pub const ALERTING: [&str; 6] = ["hard_failure", "zombie", "failing_checks", "stale_no_run", "running_long", "late"];

/// Classes that mean all is well again: an alert open for the subject is resolved. (A subject
/// moving between two classes that are neither, e.g. `hard_failure` → `retrying`, keeps its
/// alert open without a new notification.)
pub const RECOVERED: [&str; 3] = ["healthy", "running_ok", "backfilling"];

/// How bad a class is.
pub fn severity(class: &str) -> &'static str {
    match class {
        "hard_failure" | "zombie" | "late" => "critical",
        "failing_checks" | "stale_no_run" | "running_long" => "warning",
        _ => "info",
    }
}

const SEVERITIES: [&str; 3] = ["info", "warning", "critical"];

fn severity_rank(s: &str) -> usize {
    SEVERITIES.iter().position(|x| *x == s).unwrap_or(0)
}

/// The channel kinds and the payload each sends.
pub const KINDS: [&str; 5] = ["webhook", "slack", "alertmanager", "pagerduty", "email"];

/// An `[[alerts]]` channel as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    pub name: String,
    /// `webhook` (Basin's JSON), `slack` (an incoming webhook), `alertmanager` (its
    /// `/api/v2/alerts`), `pagerduty` (Events API v2), or `email` (over SMTP).
    pub kind: String,
    /// Where to POST; `${ENV}` for a URL holding a token. PagerDuty defaults to its events
    /// endpoint. For `email`, the SMTP server: `smtps://user:${SMTP_PASSWORD}@host:465`,
    /// `smtp://host:587?tls=required`, or `smtp://host:25` (no TLS, a local relay).
    #[serde(default)]
    pub url: Option<Secret>,
    /// `email`: the sender address.
    #[serde(default)]
    pub from: Option<String>,
    /// `email`: the recipients.
    #[serde(default)]
    pub to: Vec<String>,
    /// PagerDuty's integration (routing) key, `${ENV}`.
    #[serde(default)]
    pub routing_key: Option<Secret>,
    /// Extra request headers (`Authorization = "Bearer ${TOKEN}"`).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Classes that fire; default [`ALERTING`].
    #[serde(default)]
    pub classes: Option<Vec<String>>,
    /// Only classes at least this severe: `info`, `warning` (default) or `critical`.
    #[serde(default)]
    pub min_severity: Option<String>,
    /// Only these assets, in the selection syntax (`tag:nightly`, `+gold.revenue`);
    /// schedules' alerts go to channels without one.
    #[serde(default)]
    pub select: Option<String>,
    /// Send a resolve when the subject recovers (default true).
    #[serde(default)]
    pub send_resolved: Option<bool>,
    /// Attempts per notification before it is recorded as undelivered (default 5; the waits
    /// between them double from 1 s).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Per attempt (default `"10s"`).
    #[serde(default)]
    pub timeout: Option<String>,
}

impl AlertConfig {
    pub fn classes(&self) -> Vec<String> {
        let min = severity_rank(self.min_severity.as_deref().unwrap_or("warning"));
        let classes = match &self.classes {
            Some(c) => c.clone(),
            None => ALERTING.iter().map(|c| c.to_string()).collect(),
        };
        classes.into_iter().filter(|c| severity_rank(severity(c)) >= min).collect()
    }

    pub fn send_resolved(&self) -> bool {
        self.send_resolved.unwrap_or(true)
    }

    pub fn max_attempts(&self) -> u32 {
        self.max_attempts.unwrap_or(5).max(1)
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
            .as_deref()
            .and_then(|t| parse_duration(t).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(10))
    }

    /// The channel's secrets with `${ENV}` replaced: its URL, routing key and headers.
    /// `Err` names the setting and the variable that is not set.
    pub fn resolve(&self, lookup: impl Fn(&str) -> Option<String>) -> Result<ResolvedChannel, String> {
        let value = |s: &Secret, key: &str| {
            interpolate_env(s.expose(), &lookup).map(Secret::new).map_err(|var| {
                format!("alert channel `{}`: `{key}` uses environment variable `{var}`, which is not set", self.name)
            })
        };
        let url = match (&self.url, self.kind.as_str()) {
            (Some(u), _) => value(u, "url")?,
            (None, "pagerduty") => Secret::new("https://events.pagerduty.com/v2/enqueue"),
            (None, _) => return Err(format!("alert channel `{}` needs a `url`", self.name)),
        };
        let routing_key = self.routing_key.as_ref().map(|k| value(k, "routing_key")).transpose()?;
        let mut headers = BTreeMap::new();
        for (k, v) in &self.headers {
            headers.insert(k.clone(), value(v, &format!("headers.{k}"))?);
        }
        Ok(ResolvedChannel { url, routing_key, headers })
    }
}

/// A channel's secrets, read from the environment.
#[derive(Debug, Clone)]
pub struct ResolvedChannel {
    pub url: Secret,
    pub routing_key: Option<Secret>,
    pub headers: BTreeMap<String, Secret>,
}

/// What serde cannot check in `[watchdog]` and `[[alerts]]`.
pub fn check(
    watchdog: &WatchdogSection,
    alerts: &[AlertConfig],
    find: impl Fn(&str) -> Location,
    out: &mut Vec<Diagnostic>,
) {
    match parse_duration(&watchdog.interval) {
        Ok(d) if !d.is_zero() => {}
        Ok(_) => out.push(Diagnostic::error(find("interval"), "`watchdog.interval` must be more than 0")),
        Err(e) => out.push(
            Diagnostic::error(find("interval"), format!("invalid `watchdog.interval`: {e}")).with_hint("e.g. \"1m\""),
        ),
    }
    if let Err(e) = parse_duration(&watchdog.relaunch_cooldown) {
        out.push(Diagnostic::error(find("relaunch_cooldown"), format!("invalid `watchdog.relaunch_cooldown`: {e}")));
    }
    if !(watchdog.running_long_factor.is_finite() && watchdog.running_long_factor >= 1.0) {
        out.push(Diagnostic::error(
            find("running_long_factor"),
            format!("`watchdog.running_long_factor` must be at least 1, not {}", watchdog.running_long_factor),
        ));
    }
    let mut names = std::collections::BTreeSet::new();
    for a in alerts {
        let at = find(&format!("\"{}\"", a.name));
        if a.name.trim().is_empty() {
            out.push(Diagnostic::error(at.clone(), "an `[[alerts]]` channel needs a `name`"));
        }
        if !names.insert(a.name.as_str()) {
            out.push(Diagnostic::error(at.clone(), format!("two alert channels are named `{}`", a.name)));
        }
        if !KINDS.contains(&a.kind.as_str()) {
            out.push(
                Diagnostic::error(at.clone(), format!("alert channel `{}`: unknown kind `{}`", a.name, a.kind))
                    .with_hint(format!("one of: {}", KINDS.join(", "))),
            );
        }
        if a.url.is_none() && a.kind != "pagerduty" {
            out.push(
                Diagnostic::error(at.clone(), format!("alert channel `{}` needs a `url`", a.name))
                    .with_hint("e.g. url = \"${SLACK_WEBHOOK_URL}\""),
            );
        }
        if a.kind == "email" && (a.from.is_none() || a.to.is_empty()) {
            out.push(
                Diagnostic::error(at.clone(), format!("alert channel `{}` (email) needs `from` and `to`", a.name))
                    .with_hint("e.g. from = \"basin@example.com\" and to = [\"oncall@example.com\"]"),
            );
        }
        if a.kind == "pagerduty" && a.routing_key.is_none() {
            out.push(
                Diagnostic::error(at.clone(), format!("alert channel `{}` (pagerduty) needs a `routing_key`", a.name))
                    .with_hint("e.g. routing_key = \"${PAGERDUTY_ROUTING_KEY}\""),
            );
        }
        for c in a.classes.iter().flatten() {
            if !CLASSES.contains(&c.as_str()) {
                out.push(
                    Diagnostic::error(at.clone(), format!("alert channel `{}`: unknown class `{c}`", a.name))
                        .with_hint(format!("classes: {}", CLASSES.join(", "))),
                );
            }
        }
        if let Some(s) = &a.min_severity
            && !SEVERITIES.contains(&s.as_str())
        {
            out.push(
                Diagnostic::error(at.clone(), format!("alert channel `{}`: unknown severity `{s}`", a.name))
                    .with_hint("info, warning or critical"),
            );
        }
        if let Some(t) = &a.timeout
            && let Err(e) = parse_duration(t)
        {
            out.push(Diagnostic::error(at.clone(), format!("alert channel `{}`: invalid `timeout`: {e}", a.name)));
        }
        // A plain token in the file is a secret in version control.
        let literal = |s: &Secret| !s.expose().contains("${");
        if a.kind == "email"
            && a.url.as_ref().is_some_and(|u| {
                literal(u)
                    && u.expose().split_once("://").is_some_and(|(_, r)| {
                        r.split('/').next().is_some_and(|auth| auth.contains(':') && auth.contains('@'))
                    })
            })
        {
            out.push(
                Diagnostic::warning(
                    at.clone(),
                    format!("alert channel `{}` has an SMTP password written in basin.toml", a.name),
                )
                .with_hint("write it as `${SMTP_PASSWORD}` inside the URL and set the variable where the daemon runs"),
            );
        }
        if a.routing_key.as_ref().is_some_and(literal) || a.headers.values().any(literal) {
            out.push(
                Diagnostic::warning(at, format!("alert channel `{}` has a secret written in basin.toml", a.name))
                    .with_hint("write it as `${ENV_VAR}` and set the variable where the daemon runs"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(toml_text: &str) -> AlertConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn a_channel_fires_on_the_alerting_classes_at_its_severity() {
        let c = channel("name = \"x\"\nkind = \"slack\"\nurl = \"u\"\n");
        assert_eq!(c.classes(), ALERTING.map(String::from));
        let c = channel("name = \"x\"\nkind = \"slack\"\nurl = \"u\"\nmin_severity = \"critical\"\n");
        assert_eq!(c.classes(), ["hard_failure", "zombie", "late"]);
    }

    #[test]
    fn secrets_come_from_the_environment_and_say_which_is_missing() {
        let c = channel(
            "name = \"pd\"\nkind = \"pagerduty\"\nrouting_key = \"${PD_KEY}\"\n[headers]\nX-Token = \"${TOK}\"\n",
        );
        let env = |v: &str| (v == "PD_KEY").then(|| "k-123".to_string());
        let err = c.resolve(env).unwrap_err();
        assert!(err.contains("`headers.X-Token`") && err.contains("`TOK`"), "{err}");
        let r = c.resolve(|v: &str| Some(format!("{v}-value"))).unwrap();
        assert_eq!(r.url.expose(), "https://events.pagerduty.com/v2/enqueue");
        assert_eq!(r.routing_key.unwrap().expose(), "PD_KEY-value");
    }
}
