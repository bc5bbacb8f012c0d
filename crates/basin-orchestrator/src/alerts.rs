//! Alerts: the watchdog's transitions routed to the `[[alerts]]` channels and delivered over
//! HTTP in the payload each kind expects (Basin's JSON webhook, a Slack incoming webhook,
//! Alertmanager's `/api/v2/alerts`, PagerDuty Events v2), or as email over SMTP (lettre).
//!
//! An alert is kept per channel and subject (`alerts` in the store): it fires when the
//! subject enters a class the channel routes, is not sent again while it stays in that class
//! (a failure repeated every night is one alert, not one a night), fires again (same dedup
//! key) if it moves to another routed class, and is resolved when the subject recovers
//! (`healthy`, `running_ok`, `backfilling`). The dedup key, `basin/<project>/<subject>`, is
//! the same for every notification about one subject.
//!
//! Deliveries run on their own tasks with a timeout per attempt and retries with doubling
//! waits: a receiver that is down or slow never holds up the daemon. Each notification's
//! outcome is recorded (`basin.alert_deliveries`). Errors are recorded without the URL,
//! which may hold a token.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use basin_core::alert::{AlertConfig, RECOVERED, ResolvedChannel, severity};
use basin_core::clock::Clock;
use basin_meta::{AlertDelivery, MetaStore, OpenAlert, WatchEvent};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// The first wait between attempts; it doubles after each.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Webhook,
    Slack,
    Alertmanager,
    PagerDuty,
    Email,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "webhook" => Kind::Webhook,
            "slack" => Kind::Slack,
            "alertmanager" => Kind::Alertmanager,
            "pagerduty" => Kind::PagerDuty,
            "email" => Kind::Email,
            _ => return None,
        })
    }
}

/// A channel ready to send: its settings and its secrets read from the environment.
#[derive(Debug, Clone)]
pub struct Channel {
    pub name: String,
    pub kind: Kind,
    secrets: ResolvedChannel,
    classes: BTreeSet<String>,
    /// `None`: every asset, and schedules too.
    assets: Option<BTreeSet<String>>,
    send_resolved: bool,
    max_attempts: u32,
    timeout: Duration,
    from: Option<String>,
    to: Vec<String>,
}

impl Channel {
    /// `assets`: what the channel's `select` resolves to (the caller knows the asset graph).
    pub fn new(
        config: &AlertConfig,
        assets: Option<BTreeSet<String>>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Channel, String> {
        let kind = Kind::parse(&config.kind)
            .ok_or_else(|| format!("alert channel `{}`: unknown kind `{}`", config.name, config.kind))?;
        Ok(Channel {
            name: config.name.clone(),
            kind,
            secrets: config.resolve(env)?,
            classes: config.classes().into_iter().collect(),
            assets,
            send_resolved: config.send_resolved(),
            max_attempts: config.max_attempts(),
            timeout: config.timeout(),
            from: config.from.clone(),
            to: config.to.clone(),
        })
    }

    fn routes(&self, subject: &str, class: &str) -> bool {
        self.classes.contains(class) && self.covers(subject)
    }

    fn covers(&self, subject: &str) -> bool {
        match &self.assets {
            None => true,
            Some(a) => a.contains(subject),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Firing,
    Resolved,
    Test,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Firing => "firing",
            State::Resolved => "resolved",
            State::Test => "test",
        }
    }
}

/// One message about one subject.
#[derive(Debug, Clone)]
pub struct Notification {
    pub state: State,
    pub project: String,
    pub subject: String,
    pub class: String,
    pub previous_class: Option<String>,
    pub reason: String,
    pub run_id: Option<String>,
    /// When it fired (for a resolve: when the alert it resolves fired).
    pub since: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

impl Notification {
    pub fn dedup_key(&self) -> String {
        format!("basin/{}/{}", self.project, self.subject)
    }

    /// The subject line of an email.
    pub fn title(&self) -> String {
        let tag = match self.state {
            State::Firing => format!("FIRING {}", severity(&self.class)),
            State::Resolved => "RESOLVED".to_string(),
            State::Test => "TEST".to_string(),
        };
        format!("[Basin {tag}] {}", self.summary().lines().next().unwrap_or_default())
    }

    /// The plain-text body of an email.
    pub fn text(&self) -> String {
        let time = |t: &DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut lines = vec![
            self.summary(),
            String::new(),
            format!("project:   {}", self.project),
            format!("subject:   {}", self.subject),
            format!("class:     {} ({})", self.class, severity(&self.class)),
        ];
        if let Some(p) = &self.previous_class {
            lines.push(format!("was:       {p}"));
        }
        if let Some(r) = &self.run_id {
            lines.push(format!("run:       {r} (basin runs show {r})"));
        }
        lines.push(format!("since:     {}", time(&self.since)));
        lines.push(format!("dedup key: {}", self.dedup_key()));
        lines.join("\n") + "\n"
    }

    fn summary(&self) -> String {
        match self.state {
            State::Firing => format!("{} is {}: {}", self.subject, self.class, self.reason),
            State::Resolved => format!("{} recovered ({}): {}", self.subject, self.class, self.reason),
            State::Test => format!("test alert from Basin project {}: {}", self.project, self.reason),
        }
    }

    /// The request body for a channel of `kind` (`routing_key` for PagerDuty, whose protocol
    /// carries it in the body).
    pub fn payload(&self, kind: Kind, routing_key: Option<&str>) -> Value {
        let time = |t: &DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let severity = severity(&self.class);
        match kind {
            Kind::Webhook => json!({
                "version": 1,
                "source": "basin",
                "project": self.project,
                "state": self.state.as_str(),
                "dedup_key": self.dedup_key(),
                "subject": self.subject,
                "class": self.class,
                "previous_class": self.previous_class,
                "severity": severity,
                "reason": self.reason,
                "run_id": self.run_id,
                "since": time(&self.since),
                "at": time(&self.at),
                "summary": self.summary(),
            }),
            Kind::Slack => {
                let tag = match self.state {
                    State::Firing => format!("[FIRING {severity}]"),
                    State::Resolved => "[RESOLVED]".to_string(),
                    State::Test => "[TEST]".to_string(),
                };
                let run = self.run_id.as_deref().map(|r| format!(" (run {r})")).unwrap_or_default();
                json!({ "text": format!("{tag} {}{run} · project {} · {}", self.summary(), self.project, self.dedup_key()) })
            }
            Kind::Alertmanager => {
                let ends = match self.state {
                    State::Firing => None,
                    State::Resolved | State::Test => Some(time(&self.at)),
                };
                let mut alert = json!({
                    "labels": {
                        "alertname": "BasinAsset",
                        "project": self.project,
                        "subject": self.subject,
                        "dedup_key": self.dedup_key(),
                    },
                    "annotations": {
                        "summary": self.summary(),
                        "class": self.class,
                        "severity": severity,
                        "reason": self.reason,
                        "run_id": self.run_id.clone().unwrap_or_default(),
                    },
                    "startsAt": time(&self.since),
                });
                if let Some(ends) = ends {
                    alert["endsAt"] = json!(ends);
                }
                json!([alert])
            }
            Kind::Email => json!({ "subject": self.title(), "text": self.text() }),
            Kind::PagerDuty => {
                let action = match self.state {
                    State::Firing | State::Test => "trigger",
                    State::Resolved => "resolve",
                };
                json!({
                    "routing_key": routing_key.unwrap_or_default(),
                    "event_action": action,
                    "dedup_key": self.dedup_key(),
                    "payload": {
                        "summary": self.summary(),
                        "source": format!("basin/{}", self.project),
                        "severity": if self.state == State::Test { "info" } else { severity },
                        "timestamp": time(&self.at),
                        "component": self.subject,
                        "group": self.project,
                        "class": self.class,
                        "custom_details": { "reason": self.reason, "run_id": self.run_id, "previous_class": self.previous_class },
                    },
                })
            }
        }
    }
}

/// Routes transitions to channels and delivers them.
#[derive(Clone)]
pub struct Alerter {
    project: String,
    channels: Vec<Arc<Channel>>,
    store: Arc<dyn MetaStore>,
    clock: Arc<dyn Clock>,
    client: reqwest::Client,
}

impl Alerter {
    pub fn new(project: &str, channels: Vec<Channel>, store: Arc<dyn MetaStore>, clock: Arc<dyn Clock>) -> Alerter {
        Alerter {
            project: project.to_string(),
            channels: channels.into_iter().map(Arc::new).collect(),
            store,
            clock,
            client: reqwest::Client::builder()
                .user_agent(concat!("basin/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default(),
        }
    }

    pub fn channels(&self) -> impl Iterator<Item = &Channel> {
        self.channels.iter().map(|c| c.as_ref())
    }

    /// Route one cycle's transitions: record which alerts fire and which resolve, and start
    /// their deliveries. Returns what was started: (channel, notification), and the handles
    /// to await them (the daemon does not).
    pub async fn route(
        &self,
        events: &[WatchEvent],
    ) -> basin_meta::Result<Vec<(String, Notification, tokio::task::JoinHandle<AlertDelivery>)>> {
        if self.channels.is_empty() || events.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.clock.now();
        let open: BTreeMap<(String, String), OpenAlert> =
            self.store.open_alerts().await?.into_iter().map(|a| ((a.channel.clone(), a.subject.clone()), a)).collect();
        let mut started = Vec::new();
        for e in events {
            for ch in &self.channels {
                let current = open.get(&(ch.name.clone(), e.subject.clone())).filter(|a| a.firing);
                let base = Notification {
                    state: State::Firing,
                    project: self.project.clone(),
                    subject: e.subject.clone(),
                    class: e.to_class.clone(),
                    previous_class: e.from_class.clone(),
                    reason: e.reason.clone(),
                    run_id: e.run_id.clone(),
                    since: e.at,
                    at: now,
                };
                if ch.routes(&e.subject, &e.to_class) {
                    if current.is_some_and(|a| a.class == e.to_class) {
                        continue;
                    }
                    let alert = OpenAlert {
                        channel: ch.name.clone(),
                        subject: e.subject.clone(),
                        class: e.to_class.clone(),
                        firing: true,
                        fired_at: e.at,
                        updated_at: now,
                    };
                    self.store.set_alert(&alert).await?;
                    started.push((ch.name.clone(), base.clone(), self.deliver(ch.clone(), base)));
                } else if let Some(a) = current
                    && RECOVERED.contains(&e.to_class.as_str())
                {
                    self.store.set_alert(&OpenAlert { firing: false, updated_at: now, ..a.clone() }).await?;
                    if ch.send_resolved {
                        let n = Notification { state: State::Resolved, since: a.fired_at, ..base };
                        started.push((ch.name.clone(), n.clone(), self.deliver(ch.clone(), n)));
                    }
                }
            }
        }
        Ok(started)
    }

    /// An escalation (the watchdog stopped relaunching): a firing notification, sent again
    /// though the alert already fires, on every channel routing the subject's class.
    pub async fn escalate(
        &self,
        a: &WatchEvent,
    ) -> Vec<(String, Notification, tokio::task::JoinHandle<AlertDelivery>)> {
        let now = self.clock.now();
        let mut started = Vec::new();
        for ch in self.channels.iter().filter(|c| c.routes(&a.subject, &a.to_class)) {
            let n = Notification {
                state: State::Firing,
                project: self.project.clone(),
                subject: a.subject.clone(),
                class: a.to_class.clone(),
                previous_class: a.from_class.clone(),
                reason: format!("ESCALATED: {}", a.reason),
                run_id: a.run_id.clone(),
                since: a.at,
                at: now,
            };
            started.push((ch.name.clone(), n.clone(), self.deliver(ch.clone(), n)));
        }
        started
    }

    /// Send `n` on `channel` in the background (retrying), recording the outcome.
    pub fn deliver(&self, channel: Arc<Channel>, n: Notification) -> tokio::task::JoinHandle<AlertDelivery> {
        let (client, store, clock) = (self.client.clone(), self.store.clone(), self.clock.clone());
        tokio::spawn(async move {
            let body = n.payload(channel.kind, channel.secrets.routing_key.as_ref().map(|k| k.expose()));
            let (attempts, error) = send(&client, &channel, &body).await;
            let delivery = AlertDelivery {
                at: clock.now(),
                channel: channel.name.clone(),
                dedup_key: n.dedup_key(),
                state: n.state.as_str().to_string(),
                subject: n.subject.clone(),
                class: n.class.clone(),
                attempts: i64::from(attempts),
                delivered: error.is_none(),
                error,
            };
            if let Err(e) = store.add_alert_delivery(&delivery).await {
                tracing::warn!(channel = %channel.name, error = %e, "cannot record an alert delivery");
            }
            delivery
        })
    }

    /// A test message on the channel named `name`, awaited.
    pub async fn test(&self, name: &str) -> Option<AlertDelivery> {
        let ch = self.channels.iter().find(|c| c.name == name)?.clone();
        let now = self.clock.now();
        let n = Notification {
            state: State::Test,
            project: self.project.clone(),
            subject: "basin.alert_test".into(),
            class: "healthy".into(),
            previous_class: None,
            reason: format!("`basin alert test {name}`: if you read this, channel `{name}` reaches you"),
            run_id: None,
            since: now,
            at: now,
        };
        self.deliver(ch, n).await.ok()
    }
}

/// Send `body` (POST it, or mail it), up to the channel's attempts; (attempts made, the last
/// error).
async fn send(client: &reqwest::Client, channel: &Channel, body: &Value) -> (u32, Option<String>) {
    if channel.kind == Kind::Email {
        return mail(channel, body).await;
    }
    retrying(channel.max_attempts, || async {
        let mut request = client
            .post(channel.secrets.url.expose())
            .timeout(channel.timeout)
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in &channel.secrets.headers {
            request = request.header(k.as_str(), v.expose());
        }
        match request.send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("the receiver answered HTTP {}", r.status())),
            // Without the URL: it may hold a token.
            Err(e) => Err(describe(e)),
        }
    })
    .await
}

/// Up to `attempts` tries of `attempt`, waiting [`FIRST_BACKOFF`] after the first failure and
/// twice as long after each next; (tries made, the last error).
async fn retrying<F, Fut>(attempts: u32, mut attempt: F) -> (u32, Option<String>)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut wait = FIRST_BACKOFF;
    let mut last = None;
    for n in 1..=attempts {
        match attempt().await {
            Ok(()) => return (n, None),
            Err(e) => last = Some(e),
        }
        if n < attempts {
            tokio::time::sleep(wait).await;
            wait = wait.saturating_mul(2);
        }
    }
    (attempts, last)
}

/// Mail `body` (`subject`, `text`) to the channel's recipients over SMTP, retrying.
async fn mail(channel: &Channel, body: &Value) -> (u32, Option<String>) {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let build = || -> Result<Message, String> {
        let from = channel.from.as_deref().unwrap_or_default();
        let mut message = Message::builder()
            .from(from.parse().map_err(|e| format!("`from` `{from}` is not an address: {e}"))?)
            .subject(body["subject"].as_str().unwrap_or_default());
        for to in &channel.to {
            message = message.to(to.parse().map_err(|e| format!("`to` `{to}` is not an address: {e}"))?);
        }
        message
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .body(body["text"].as_str().unwrap_or_default().to_string())
            .map_err(|e| format!("the message cannot be built: {e}"))
    };
    let message = match build() {
        Ok(m) => m,
        Err(e) => return (0, Some(e)),
    };
    // The URL holds the password: its errors are told without it.
    let transport = match AsyncSmtpTransport::<Tokio1Executor>::from_url(channel.secrets.url.expose()) {
        Ok(t) => t.timeout(Some(channel.timeout)).build(),
        Err(e) => return (0, Some(format!("the SMTP URL is not usable: {}", strip_url(&e.to_string(), channel)))),
    };
    retrying(channel.max_attempts, || async {
        match tokio::time::timeout(channel.timeout * 2, transport.send(message.clone())).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                let kind = if e.is_permanent() { "the server refused the message" } else { "cannot send" };
                Err(format!("{kind}: {}", strip_url(&e.to_string(), channel)))
            }
            Err(_) => Err("timed out".to_string()),
        }
    })
    .await
}

/// `text` with the channel's URL (and its password) cut out, should an error quote it.
fn strip_url(text: &str, channel: &Channel) -> String {
    let url = channel.secrets.url.expose();
    let mut out = text.replace(url, "<url>");
    if let Some((_, rest)) = url.split_once("://")
        && let Some((auth, _)) = rest.split_once('@')
        && let Some((_, password)) = auth.split_once(':')
        && !password.is_empty()
    {
        out = out.replace(password, "***");
    }
    out
}

/// A request error without its URL, with its causes.
fn describe(e: reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut text = format!("{what}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// Ping the heartbeat URL (a dead man's switch): `Err` without the URL.
pub async fn ping(client: &reqwest::Client, url: &str) -> Result<(), String> {
    match client.get(url).timeout(Duration::from_secs(10)).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("the heartbeat URL answered HTTP {}", r.status())),
        Err(e) => Err(describe(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(state: State) -> Notification {
        let at = DateTime::parse_from_rfc3339("2026-12-06T06:00:00Z").unwrap().to_utc();
        Notification {
            state,
            project: "shop".into(),
            subject: "silver.orders".into(),
            class: "hard_failure".into(),
            previous_class: Some("healthy".into()),
            reason: "its last build failed (bad_query)".into(),
            run_id: Some("r1".into()),
            since: at,
            at,
        }
    }

    #[test]
    fn each_kind_gets_its_own_shape_with_one_dedup_key() {
        let fire = n(State::Firing);
        let pd = fire.payload(Kind::PagerDuty, Some("rk"));
        assert_eq!(
            (pd["event_action"].as_str(), pd["dedup_key"].as_str()),
            (Some("trigger"), Some("basin/shop/silver.orders"))
        );
        assert_eq!(pd["payload"]["severity"], "critical");
        let resolve = n(State::Resolved);
        assert_eq!(resolve.payload(Kind::PagerDuty, Some("rk"))["event_action"], "resolve");
        let am = resolve.payload(Kind::Alertmanager, None);
        assert_eq!(am[0]["labels"]["subject"], "silver.orders");
        assert!(am[0]["endsAt"].is_string() && fire.payload(Kind::Alertmanager, None)[0]["endsAt"].is_null());
        let slack = fire.payload(Kind::Slack, None);
        assert!(slack["text"].as_str().unwrap().starts_with("[FIRING critical] silver.orders is hard_failure"));
        assert_eq!(fire.payload(Kind::Webhook, None)["dedup_key"], resolve.payload(Kind::Webhook, None)["dedup_key"]);
    }
}
