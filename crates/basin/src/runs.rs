//! `basin runs`, `basin runs show ID` and `basin cancel ID`: the metadata store, read from the
//! command line. Each first fails the runs whose worker stopped heartbeating, so what they
//! show is never a run "STARTED" by a process that no longer exists.

use std::process::ExitCode;

use anyhow::{Context, bail};
use basin_core::Project;
use basin_meta::{Cancel, MetaStore, Run, RunFilter, RunStatus};
use chrono::{DateTime, NaiveDate, Utc};

use basin_orchestrator::record::{open_store, reap};

/// The filter of `basin runs` from its flags.
pub fn filter(
    asset: Option<String>,
    status: Option<String>,
    since: Option<String>,
    tag: Option<String>,
    limit: i64,
) -> anyhow::Result<RunFilter> {
    let status = status.map(|s| s.parse::<RunStatus>()).transpose().map_err(anyhow::Error::msg)?;
    let since = since.map(|s| parse_since(&s, Utc::now())).transpose()?;
    let tag = tag.as_deref().map(parse_tag).transpose()?;
    if limit < 1 {
        bail!("`--limit` must be at least 1");
    }
    Ok(RunFilter { status, asset: asset.map(|a| a.to_lowercase()), since, tag, id_part: None, limit: Some(limit) })
}

/// A `--tag key=value` argument.
pub fn parse_tag(text: &str) -> anyhow::Result<(String, String)> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("`--tag {text}`: write key=value, e.g. --tag source=v3"),
    }
}

/// `2h` / `1d` back from `now`, a date (`2026-11-23`, midnight UTC) or an RFC 3339 time.
fn parse_since(text: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(d) = basin_core::source::parse_duration(text) {
        return Ok(now - chrono::Duration::from_std(d)?);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.to_utc());
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    bail!("`--since {text}`: write a duration back from now (30m, 2h, 1d), a date (2026-11-23) or an RFC 3339 time")
}

pub(crate) async fn store_for(project: &Project) -> anyhow::Result<std::sync::Arc<dyn MetaStore>> {
    let store = open_store(project).await?;
    for run in reap(project, store.as_ref()).await? {
        eprintln!("run {} failed: {}", run.id, run.failure_message.as_deref().unwrap_or("its worker died"));
    }
    Ok(store)
}

/// `basin status`: what needs a person, from the store; exit code 1 when something does.
pub async fn status(project: &Project, json: bool) -> anyhow::Result<ExitCode> {
    use basin_orchestrator::status::Class;
    let store = store_for(project).await?;
    let assets: Vec<String> = project.graph.keys().map(|k| k.to_string()).collect();
    let now = Utc::now();
    let schedules: Vec<basin_core::daemon::Schedule> = project
        .config
        .schedules
        .iter()
        .map(basin_core::daemon::Schedule::parse)
        .collect::<Result<_, _>>()
        .map_err(anyhow::Error::msg)?;
    let status =
        basin_orchestrator::status::status(&store, &assets, &schedules, now, &crate::daemon::status_options(project))
            .await?;
    let code = if status.needs_a_human() { ExitCode::from(crate::exit::FAILED) } else { ExitCode::SUCCESS };
    let last_cycle = store.cursor(basin_orchestrator::watchdog::CURSOR).await?;
    let firing: Vec<basin_meta::OpenAlert> = store.open_alerts().await?.into_iter().filter(|a| a.firing).collect();
    if json {
        let mut doc = status.to_json();
        doc["watchdog"] = serde_json::json!({
            "last_cycle": last_cycle,
            "firing": firing.iter().map(|a| serde_json::json!({
                "channel": a.channel, "subject": a.subject, "class": a.class,
                "fired_at": a.fired_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            })).collect::<Vec<_>>(),
        });
        println!("{doc}");
        return Ok(code);
    }
    let ago = |t: DateTime<Utc>| {
        let s = (now - t).num_seconds().max(0);
        match s {
            0..120 => format!("{s}s ago"),
            120..7200 => format!("{}m ago", s / 60),
            _ => format!("{}h ago", s / 3600),
        }
    };
    let (alive, gone): (Vec<_>, Vec<_>) = status.daemons.iter().partition(|d| d.alive);
    match alive.as_slice() {
        [] => println!("daemons: none alive (schedules, automation and retries wait for `basin daemon`)"),
        alive => {
            for d in alive {
                println!(
                    "daemon {} pid {}: up since {}, beat {}",
                    d.host,
                    d.pid,
                    time(Some(d.started_at)),
                    ago(d.heartbeat_at)
                );
            }
        }
    }
    for d in gone {
        println!("daemon {} pid {}: gone, last beat {}", d.host, d.pid, ago(d.heartbeat_at));
    }
    for s in &status.schedules {
        let last = match &s.last_run {
            Some((id, st)) => format!("; its latest run {id}: {}", st.as_str().to_lowercase()),
            None => String::new(),
        };
        match (s.missed, s.due, s.last_queued) {
            (true, Some(due), _) => println!(
                "schedule {} ({}): MISSED the tick due {} ({}): no daemon queued it{last}",
                s.name,
                s.cron,
                time(Some(due)),
                ago(due)
            ),
            (_, _, Some(q)) => println!("schedule {} ({}): last tick {} queued{last}", s.name, s.cron, time(Some(q))),
            _ => println!("schedule {} ({}): no tick due yet{last}", s.name, s.cron),
        }
    }
    match last_cycle.as_deref().and_then(|c| DateTime::parse_from_rfc3339(c).ok()) {
        Some(t) => println!("watchdog: last cycle {} ({})", time(Some(t.to_utc())), ago(t.to_utc())),
        None => println!("watchdog: no cycle yet (it runs inside `basin daemon`)"),
    }
    for a in &firing {
        println!("  alert firing on {}: {} is {} (since {})", a.channel, a.subject, a.class, ago(a.fired_at));
    }
    println!("queue: {} queued, {} running", status.queued, status.running.len());
    for r in &status.running {
        println!("  {}  {}  since {}  {}", r.id, r.status, ago(r.since), r.selection.join(" "));
    }
    let count = |c: Class| status.assets.iter().filter(|a| a.class == c).count();
    let attention: Vec<_> = status.assets.iter().filter(|a| a.class != Class::Healthy).collect();
    println!(
        "assets: {} healthy, {} need a person, {} other",
        count(Class::Healthy),
        status.assets.iter().filter(|a| a.class.needs_a_human()).count(),
        attention.iter().filter(|a| !a.class.needs_a_human()).count()
    );
    for a in attention {
        let since = a.since.map(|t| format!(" (since {})", ago(t))).unwrap_or_default();
        println!("  {:<15} {:<36} {}{since}", a.class.as_str(), a.asset, a.reason);
    }
    Ok(code)
}

/// `basin alert test CHANNEL`: one test message, awaited; exit 1 if it was not delivered.
pub async fn alert_test(project: &Project, channel: &str) -> anyhow::Result<ExitCode> {
    let Some(config) = project.config.alerts.iter().find(|a| a.name == channel) else {
        let names: Vec<&str> = project.config.alerts.iter().map(|a| a.name.as_str()).collect();
        bail!(
            "no alert channel `{channel}` in basin.toml{}",
            if names.is_empty() {
                " (it has no `[[alerts]]`)".to_string()
            } else {
                format!("; channels: {}", names.join(", "))
            }
        );
    };
    let store = store_for(project).await?;
    let alerter = crate::daemon::alerter(project, store, std::sync::Arc::new(basin_core::clock::SystemClock))?;
    eprintln!("sending a test message on `{channel}` ({}), up to {} attempt(s)…", config.kind, config.max_attempts());
    let delivery = alerter.test(channel).await.context("the delivery task failed")?;
    if delivery.delivered {
        println!("delivered to `{channel}` after {} attempt(s)", delivery.attempts);
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "NOT delivered to `{channel}` after {} attempt(s): {}",
            delivery.attempts,
            delivery.error.as_deref().unwrap_or("unknown error")
        );
        Ok(ExitCode::from(crate::exit::FAILED))
    }
}

/// `basin alert list`: the channels, and the alerts firing now.
pub async fn alert_list(project: &Project) -> anyhow::Result<ExitCode> {
    if project.config.alerts.is_empty() {
        println!("no alert channels; add `[[alerts]]` to basin.toml (see the README's \"Alerts\")");
    }
    for a in &project.config.alerts {
        println!(
            "{:<16} {:<13} classes: {}{}",
            a.name,
            a.kind,
            a.classes().join(", "),
            a.select.as_deref().map(|s| format!("; select {s}")).unwrap_or_default()
        );
    }
    let store = store_for(project).await?;
    for a in store.open_alerts().await?.into_iter().filter(|a| a.firing) {
        println!("firing on {}: {} is {} since {}", a.channel, a.subject, a.class, time(Some(a.fired_at)));
    }
    Ok(ExitCode::SUCCESS)
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_else(|| "-".into())
}

fn duration(run: &Run) -> String {
    match (run.started_at, run.finished_at) {
        (Some(s), Some(f)) => format!("{:.1}s", (f - s).as_seconds_f64()),
        (Some(s), None) if run.status == RunStatus::Started => {
            format!("{:.0}s so far", (Utc::now() - s).as_seconds_f64().max(0.0))
        }
        _ => "-".into(),
    }
}

fn one_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    if line.chars().count() <= max && !text.contains('\n') {
        return line.to_string();
    }
    let cut: String = line.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}

pub async fn list(project: &Project, filter: &RunFilter) -> anyhow::Result<ExitCode> {
    let store = store_for(project).await?;
    let runs = store.runs(filter).await?;
    if runs.is_empty() {
        eprintln!("no runs recorded{}", if filter_is_empty(filter) { "" } else { " match" });
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<36}  {:<8}  {:<19}  {:>10}  {:<24}  detail",
        "run", "status", "created (UTC)", "duration", "selection"
    );
    for run in runs {
        let mut detail = Vec::new();
        if let Some(parent) = &run.parent_run_id {
            detail.push(format!("retry of {parent} (attempt {})", run.attempt));
        }
        match (&run.failure_category, &run.failure_message) {
            (Some(c), Some(m)) => detail.push(format!("{c}: {}", one_line(m, 90))),
            (None, Some(m)) => detail.push(one_line(m, 90)),
            _ if run.cancel_requested && !run.status.is_terminal() => detail.push("cancel requested".into()),
            _ => {}
        }
        let detail = detail.join("; ");
        println!(
            "{:<36}  {:<8}  {:<19}  {:>10}  {:<24}  {detail}",
            run.id,
            run.status.as_str(),
            time(Some(run.created_at)),
            duration(&run),
            one_line(&run.selection.join(" "), 24),
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn filter_is_empty(f: &RunFilter) -> bool {
    f.status.is_none() && f.asset.is_none() && f.since.is_none() && f.tag.is_none()
}

/// The run `id` names: its full id, or a part (6 characters or more) of exactly one run's id.
async fn resolve(store: &dyn basin_meta::MetaStore, id: &str) -> anyhow::Result<basin_meta::Run> {
    if let Some(run) = store.run(id).await? {
        return Ok(run);
    }
    let filter = RunFilter { id_part: Some(id.to_string()), limit: Some(2), ..Default::default() };
    let mut found = if id.len() >= 6 { store.runs(&filter).await? } else { Vec::new() };
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!("no run `{id}` (`basin runs` lists them)"),
        _ => bail!("`{id}` is part of the ids of several runs; give more of it"),
    }
}

pub async fn show(project: &Project, id: &str) -> anyhow::Result<ExitCode> {
    let store = store_for(project).await?;
    let run = resolve(store.as_ref(), id).await?;
    println!("run        {}", run.id);
    println!("status     {}", run.status);
    if let (Some(c), Some(m)) = (&run.failure_category, &run.failure_message) {
        println!("failure    {c}: {m}");
    } else if let Some(m) = &run.failure_message {
        println!("reason     {m}");
    }
    println!("selection  {}", run.selection.join(" "));
    if let Some(p) = &run.partition {
        println!("partition  {p}");
    }
    if !run.tags.is_empty() {
        let tags: Vec<String> = run.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("tags       {}", tags.join(", "));
    }
    println!("launcher   {}{}", run.launcher, run.worker.as_deref().map(|w| format!(" on {w}")).unwrap_or_default());
    println!(
        "attempt    {}{}",
        run.attempt,
        run.parent_run_id.as_ref().map(|p| format!(" (retry of {p})")).unwrap_or_default()
    );
    println!(
        "created    {}   started {}   finished {}   ({})",
        time(Some(run.created_at)),
        time(run.started_at),
        time(run.finished_at),
        duration(&run)
    );
    let log = project.dir.join(".basin/logs").join(format!("{}.log", run.id));
    if log.exists() {
        println!("log        {}", log.display());
    }
    println!();
    println!("{:<12}  {:<5}  {:<18}  {:<32}  message", "time (UTC)", "level", "event", "asset");
    for e in store.events(&run.id).await? {
        println!(
            "{:<12}  {:<5}  {:<18}  {:<32}  {}",
            e.at.format("%H:%M:%S%.3f"),
            e.level.as_str(),
            e.kind,
            e.asset.as_deref().unwrap_or(""),
            e.message
        );
    }
    let filter = basin_meta::CheckFilter { run_id: Some(run.id.clone()), ..Default::default() };
    let checks = store.check_results(&filter).await?;
    if !checks.is_empty() {
        println!();
        println!("{:<6}  {:<5}  {:<32}  {:<40}  {:<28}  threshold", "check", "sev", "asset", "name", "observed");
        for c in &checks {
            let result = if c.passed { "pass" } else { "FAIL" };
            println!(
                "{result:<6}  {:<5}  {:<32}  {:<40}  {:<28}  {}",
                c.severity, c.asset, c.check_name, c.observed, c.threshold
            );
            for s in c.samples.iter().take(5) {
                println!("{:<6}  {:<5}  {:<32}  e.g. {s}", "", "", "");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn cancel(project: &Project, id: &str) -> anyhow::Result<ExitCode> {
    let store = store_for(project).await?;
    let id = resolve(store.as_ref(), id).await?.id;
    let id = id.as_str();
    match basin_orchestrator::record::cancel(store.as_ref(), id).await {
        Ok(Cancel::Canceled) => println!("run {id} canceled"),
        Ok(Cancel::Requested) => println!(
            "run {id}: cancellation requested; its worker stops at its next heartbeat (within {}s)",
            project.config.run.heartbeat_interval().as_secs()
        ),
        Ok(Cancel::AlreadyFinished(status)) => {
            println!("run {id} had already ended: {status}");
            return Ok(ExitCode::FAILURE);
        }
        Err(basin_meta::Error::NoSuchRun(_)) => bail!("no run `{id}` (`basin runs` lists them)"),
        Err(e) => return Err(e.into()),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_dates_and_times() {
        let now = DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z").unwrap().to_utc();
        assert_eq!(parse_since("2h", now).unwrap().to_rfc3339(), "2026-11-23T10:00:00+00:00");
        assert_eq!(parse_since("2026-11-20", now).unwrap().to_rfc3339(), "2026-11-20T00:00:00+00:00");
        assert_eq!(parse_since("2026-11-20T05:00:00+01:00", now).unwrap().to_rfc3339(), "2026-11-20T04:00:00+00:00");
        assert!(parse_since("yesterday", now).unwrap_err().to_string().contains("--since yesterday"));
    }
}
