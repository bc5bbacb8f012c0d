//! The watchdog inside a real `basin daemon` process, alerting a real local HTTP receiver: a
//! failed build fires once, its fix resolves it, the heartbeat URL is pinged, and the classes
//! and deliveries are in `basin status` and `basin.asset_status` / `basin.alert_deliveries`.
//! `basin alert test` and the errors of a channel that cannot be used.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::Basin;

const TOKEN: &str = "tok-7f3e9a2c";

/// Requests a receiver got: request line, body.
type Got = Arc<Mutex<Vec<(String, String)>>>;

/// A minimal HTTP/1.1 server on a thread: records each request, answers 200 and closes.
fn receiver() -> (String, Got) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let got: Got = Arc::default();
    let sink = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            sink.lock().unwrap().push((request_line.trim().to_string(), String::from_utf8_lossy(&body).into_owned()));
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (base, got)
}

struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn project(base: &str) -> Basin {
    let b = Basin::empty();
    b.write(
        "basin.toml",
        &format!(
            "[project]\nname = \"shop\"\n[run]\nheartbeat_interval = \"1s\"\n\
             [watchdog]\ninterval = \"1s\"\nheartbeat_url = \"{base}/beat?token=${{HOOK_TOKEN}}\"\n\
             [[alerts]]\nname = \"oncall\"\nkind = \"webhook\"\nurl = \"{base}/hook?token=${{HOOK_TOKEN}}\"\n\
             [[alerts]]\nname = \"chat\"\nkind = \"slack\"\nurl = \"{base}/slack/${{HOOK_TOKEN}}\"\nselect = \"silver.other\"\n"
        ),
    );
    b.write("models/silver/orders.sql", "SELECT CAST('x' AS INT) AS n");
    b.write("models/silver/other.sql", "SELECT 1 AS n");
    b
}

fn bodies(got: &Got, prefix: &str) -> Vec<serde_json::Value> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|(line, _)| line.starts_with(prefix))
        .map(|(_, body)| serde_json::from_str(body).unwrap())
        .collect()
}

#[test]
fn the_daemon_s_watchdog_alerts_a_failure_and_its_recovery() {
    let (base, got) = receiver();
    let b = project(&base);
    assert!(!b.cmd(&["run", "silver.orders"]).ok, "the model fails to build");
    b.cmd(&["run", "silver.other"]).success();

    let log = std::fs::File::create(b.path().join("daemon.out")).unwrap();
    let err = std::fs::File::create(b.path().join("daemon.err")).unwrap();
    let daemon = Background(
        b.command(&["daemon"])
            .env("HOOK_TOKEN", TOKEN)
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap(),
    );
    wait_for("the failure is alerted", Duration::from_secs(60), || !bodies(&got, "POST /hook").is_empty());
    let fired = bodies(&got, "POST /hook");
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!((fired[0]["state"].as_str(), fired[0]["subject"].as_str()), (Some("firing"), Some("silver.orders")));
    assert_eq!(fired[0]["class"], "hard_failure");
    assert_eq!(fired[0]["dedup_key"], "basin/shop/silver.orders");
    // The chat channel only covers silver.other, which is healthy.
    assert!(bodies(&got, "POST /slack").is_empty());
    wait_for("the heartbeat URL is pinged", Duration::from_secs(30), || {
        got.lock().unwrap().iter().filter(|(l, _)| l.starts_with(&format!("GET /beat?token={TOKEN}"))).count() >= 2
    });

    // What a person and a SQL client see meanwhile.
    let status = b.cmd(&["status", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert!(doc["needs_a_human"].as_bool().unwrap());
    let firing = doc["watchdog"]["firing"].as_array().unwrap();
    assert!(firing.iter().any(|a| a["subject"] == "silver.orders" && a["channel"] == "oncall"), "{doc}");
    assert!(doc["watchdog"]["last_cycle"].is_string());
    assert_eq!(
        b.sql("SELECT class FROM basin.asset_status WHERE subject = 'silver.orders'"),
        ["class", "hard_failure"]
    );
    assert_eq!(
        b.sql("SELECT channel, state, delivered FROM basin.alert_deliveries WHERE subject = 'silver.orders'"),
        ["channel,state,delivered", "oncall,firing,true"]
    );

    // Fixed and rebuilt: resolved, same dedup key; still one firing.
    b.write("models/silver/orders.sql", "SELECT 1 AS n");
    b.cmd(&["run", "silver.orders"]).success();
    wait_for("the recovery is alerted", Duration::from_secs(60), || bodies(&got, "POST /hook").len() >= 2);
    let sent = bodies(&got, "POST /hook");
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(
        (sent[1]["state"].as_str(), sent[1]["dedup_key"].as_str()),
        (Some("resolved"), Some("basin/shop/silver.orders"))
    );
    let transitions = b.sql("SELECT to_class FROM basin.watchdog_events WHERE subject = 'silver.orders' ORDER BY id");
    assert_eq!(transitions, ["to_class", "hard_failure", "healthy"]);
    drop(daemon);

    // No secret in what the daemon printed or in what it sent.
    let printed = std::fs::read_to_string(b.path().join("daemon.out")).unwrap()
        + &std::fs::read_to_string(b.path().join("daemon.err")).unwrap();
    assert!(printed.contains("watchdog: silver.orders"), "{printed}");
    assert!(!printed.contains(TOKEN), "{printed}");
    assert!(got.lock().unwrap().iter().all(|(_, body)| !body.contains(TOKEN)));
}

#[test]
fn alert_test_sends_one_message_and_says_whether_it_arrived() {
    let (base, got) = receiver();
    let b = project(&base);
    let ran = b.command(&["alert", "test", "oncall"]).env("HOOK_TOKEN", TOKEN).output().unwrap();
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert!(ran.status.success(), "{stdout}{}", String::from_utf8_lossy(&ran.stderr));
    assert!(stdout.contains("delivered to `oncall` after 1 attempt"), "{stdout}");
    let sent = bodies(&got, "POST /hook");
    assert_eq!((sent.len(), sent[0]["state"].as_str()), (1, Some("test")));
    assert_eq!(b.sql("SELECT channel, state FROM basin.alert_deliveries"), ["channel,state", "oncall,test"]);

    // A channel whose secret is not set, an unknown channel, a receiver that is down.
    let missing = b.cmd(&["alert", "test", "oncall"]);
    assert!(!missing.ok);
    assert!(
        missing.stderr.contains("`url` uses environment variable `HOOK_TOKEN`, which is not set"),
        "{}",
        missing.stderr
    );
    let unknown = b.command(&["alert", "test", "pager"]).env("HOOK_TOKEN", TOKEN).output().unwrap();
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(!unknown.status.success() && stderr.contains("channels: oncall, chat"), "{stderr}");
    let down = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    b.write(
        "basin.toml",
        &format!(
            "[project]\nname = \"shop\"\n[[alerts]]\nname = \"oncall\"\nkind = \"webhook\"\n\
             url = \"http://{down}/hook?token=${{HOOK_TOKEN}}\"\nmax_attempts = 2\n"
        ),
    );
    let ran = b.command(&["alert", "test", "oncall"]).env("HOOK_TOKEN", TOKEN).output().unwrap();
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert_eq!(ran.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("NOT delivered to `oncall` after 2 attempt(s): cannot connect"), "{stdout}");
    assert!(!stdout.contains(TOKEN));
}

#[test]
fn bad_alert_settings_are_validation_errors() {
    let b = Basin::empty();
    b.write(
        "basin.toml",
        "[project]\nname = \"t\"\n[watchdog]\ninterval = \"soon\"\n\
         [[alerts]]\nname = \"x\"\nkind = \"teams\"\nurl = \"http://h\"\nclasses = [\"on_fire\"]\n\
         [[alerts]]\nname = \"pd\"\nkind = \"pagerduty\"\n",
    );
    let out = b.command(&["validate"]).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{text}");
    for expected in [
        "invalid `watchdog.interval`",
        "unknown kind `teams`",
        "unknown class `on_fire`",
        "(pagerduty) needs a `routing_key`",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
}

#[test]
fn a_missed_deadline_is_judged_by_the_daemon_and_shown_by_basin_slo() {
    // A deadline a minute ago (UTC), and a build after it: that day is met late.
    let deadline = chrono::Utc::now() - chrono::Duration::minutes(1);
    let b = Basin::empty();
    b.write(
        "basin.toml",
        "[project]\nname = \"shop\"\n[run]\nheartbeat_interval = \"1s\"\n[watchdog]\ninterval = \"1s\"\n",
    );
    b.write(
        "models/gold/report.sql",
        &format!(
            "/* basin\nslo = {{ ready_by = \"{}\", timezone = \"UTC\", target = 0.9 }}\n*/\nSELECT 1 AS n",
            deadline.format("%H:%M")
        ),
    );
    let before = b.cmd(&["slo"]).success().stdout;
    assert!(before.contains("gold.report: ready by") && before.contains("not judged yet"), "{before}");
    b.cmd(&["run", "gold.report"]).success();
    let _daemon = Background(b.command(&["daemon"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    let mut last = String::new();
    wait_for("the daemon judges the deadline", Duration::from_secs(60), || {
        last = b.cmd(&["slo", "--format", "json"]).stdout;
        serde_json::from_str::<serde_json::Value>(&last).is_ok_and(|d| d[0]["last"]["verdict"].is_string())
    });
    let doc: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(doc[0]["asset"], "gold.report");
    assert_eq!(doc[0]["last"]["verdict"], "met_late");
    assert_eq!(doc[0]["last_30_days"]["met_late"], 1);
    assert_eq!(doc[0]["last_30_days"]["compliance"], 0.0);
    // One late day of one judged spends a 10% budget many times over: exit code 1.
    let ran = b.command(&["slo"]).output().unwrap();
    assert_eq!(ran.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&ran.stdout).contains("0/1 met (0.0%), 1 late, 0 missed"));
    assert_eq!(b.sql("SELECT asset, verdict FROM basin.slo_results"), ["asset,verdict", "gold.report,met_late"]);
    // It was built today after the deadline: not late now.
    let status = b.cmd(&["status", "--format", "json"]).stdout;
    let doc: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(doc["assets"].as_array().unwrap().iter().all(|a| a["class"] != "late"), "{doc}");
}
