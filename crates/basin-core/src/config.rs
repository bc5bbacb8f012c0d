//! `basin.toml`: the project's settings. Every key has its default here and only here; the
//! scaffold of `basin init` writes each of them out, commented.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::daemon::{DaemonSection, LAUNCHERS, RetrySection, Schedule, ScheduleConfig};
use crate::diagnostic::{Diagnostic, Location};
use crate::toml_check::{self, TomlSource, fields_of};
pub use crate::values::{Secret, interpolate_env};

pub const PROJECT_FILE: &str = "basin.toml";

#[derive(Debug, Clone, Deserialize)]
pub struct ProjectConfig {
    pub project: ProjectSection,
    #[serde(default)]
    pub storage: StorageSection,
    #[serde(default)]
    pub metadata: MetadataSection,
    #[serde(default)]
    pub run: RunSection,
    #[serde(default)]
    pub daemon: DaemonSection,
    #[serde(default)]
    pub schedules: Vec<ScheduleConfig>,
    #[serde(default)]
    pub sensors: Vec<crate::daemon::SensorConfig>,
    /// Checks for every asset a `selection` picks (`[[default_checks]]`).
    #[serde(default)]
    pub default_checks: Vec<crate::check::CheckConfig>,
    /// `basin serve`: addresses, TLS, who may connect and what each role sees.
    #[serde(default)]
    pub serve: crate::serve::ServeSection,
    #[serde(default)]
    pub users: BTreeMap<String, crate::serve::UserConfig>,
    /// The daemon's watchdog: its interval, `running_long`, the heartbeat URL.
    #[serde(default)]
    pub watchdog: crate::alert::WatchdogSection,
    /// Where the watchdog's alerts go.
    #[serde(default)]
    pub alerts: Vec<crate::alert::AlertConfig>,
    #[serde(default)]
    pub roles: BTreeMap<String, crate::serve::RoleConfig>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProjectSection {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct StorageSection {
    /// A local path (relative to the project) or an `s3://`, `az://`, `abfss://`, `gs://` URL.
    pub root: Secret,
    /// Object-store options (credentials, endpoint, region), `${ENV}` interpolated.
    pub options: BTreeMap<String, Secret>,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection { root: Secret("./lake".into()), options: BTreeMap::new() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MetadataSection {
    /// Where runs and events are kept: a SQLite file by default, or a PostgreSQL URL.
    pub url: Secret,
}

impl Default for MetadataSection {
    fn default() -> Self {
        MetadataSection { url: Secret("sqlite://.basin/basin.db".into()) }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RunSection {
    /// Assets built at once by `basin run`; 0 means the number of cores.
    pub concurrency: usize,
    /// How often a running run tells the metadata store its worker is alive (`"5s"`). A run
    /// silent for [`DEAD_AFTER_BEATS`] intervals is failed as `worker_died`.
    pub heartbeat_interval: Option<String>,
    /// The guardrail on full replaces: a build that would leave a populated table with fewer
    /// than `1 - max_shrink` of its rows (or none at all) fails before it commits, unless run
    /// with `--allow-shrink`. Default 0.5; a model's own `max_shrink` overrides it.
    pub max_shrink: Option<f64>,
}

/// Share of its rows a full replace may drop when neither the model nor `[run]` says.
pub const DEFAULT_MAX_SHRINK: f64 = 0.5;

/// What is wrong with a `max_shrink` value (`setting` is its name where it was written).
pub fn max_shrink_problem(setting: &str, value: Option<f64>, at: Location) -> Option<Diagnostic> {
    let m = value.filter(|m| !(0.0..=1.0).contains(m))?;
    Some(
        Diagnostic::error(at, format!("`{setting}` is a share of rows from 0 to 1, not {m}"))
            .with_hint("e.g. 0.5: a full replace may drop up to half of a table's rows"),
    )
}

/// Missed heartbeats after which a run's worker is taken for dead.
pub const DEAD_AFTER_BEATS: u32 = 3;

impl RunSection {
    pub fn heartbeat_interval(&self) -> std::time::Duration {
        self.heartbeat_interval
            .as_deref()
            .and_then(|t| crate::values::parse_duration(t).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(std::time::Duration::from_secs(5))
    }

    /// How long a run may go without a heartbeat before it is failed as `worker_died`.
    pub fn dead_after(&self) -> std::time::Duration {
        self.heartbeat_interval() * DEAD_AFTER_BEATS
    }

    pub fn effective_concurrency(&self) -> usize {
        match self.concurrency {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }
}

/// Where the lake lives, resolved against the project directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageRoot {
    Local(PathBuf),
    /// An object-store URL (`s3://`, `az://`, `abfss://`, `gs://`, `memory://`).
    Url(url::Url),
}

impl StorageRoot {
    pub fn resolve(root: &str, project_dir: &Path) -> Result<Self, String> {
        if let Some((scheme, _)) = root.split_once("://") {
            let url = url::Url::parse(root).map_err(|e| format!("`{scheme}://…` is not a valid URL: {e}"))?;
            return match url.scheme() {
                "file" => Ok(StorageRoot::Local(url.to_file_path().map_err(|_| "invalid file:// URL".to_string())?)),
                "s3" | "s3a" | "az" | "azure" | "abfs" | "abfss" | "gs" | "memory" => Ok(StorageRoot::Url(url)),
                other => Err(format!("unsupported storage scheme `{other}`")),
            };
        }
        let path = Path::new(root);
        Ok(StorageRoot::Local(if path.is_absolute() { path.to_path_buf() } else { project_dir.join(path) }))
    }
}

impl fmt::Display for StorageRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageRoot::Local(p) => write!(f, "{}", p.display()),
            // Never print credentials a user may have put in the URL.
            StorageRoot::Url(u) => write!(f, "{}://{}{}", u.scheme(), u.host_str().unwrap_or(""), u.path()),
        }
    }
}

fn keys_at(path: &[String]) -> Option<&'static [&'static str]> {
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    Some(match path.as_slice() {
        [] => fields_of::<ProjectConfig>(),
        ["project"] => fields_of::<ProjectSection>(),
        ["storage"] => fields_of::<StorageSection>(),
        ["metadata"] => fields_of::<MetadataSection>(),
        ["run"] => fields_of::<RunSection>(),
        ["daemon"] => fields_of::<DaemonSection>(),
        ["daemon", "retry"] => fields_of::<RetrySection>(),
        ["daemon", "tag_retry", _] => fields_of::<crate::daemon::RetryOverride>(),
        ["schedules"] => fields_of::<ScheduleConfig>(),
        ["sensors"] => fields_of::<crate::daemon::SensorConfig>(),
        ["default_checks"] => fields_of::<crate::check::CheckConfig>(),
        ["serve"] => fields_of::<crate::serve::ServeSection>(),
        ["users", _] => fields_of::<crate::serve::UserConfig>(),
        ["roles", _] => fields_of::<crate::serve::RoleConfig>(),
        ["watchdog"] => fields_of::<crate::alert::WatchdogSection>(),
        ["alerts"] => fields_of::<crate::alert::AlertConfig>(),
        ["alerts", "headers"] => return None,
        _ => return None,
    })
}

/// Read `basin.toml`, interpolating `${ENV}` in the settings that hold credentials. Problems
/// go to `out`; `None` when the file cannot be used at all.
pub fn parse_project_config(text: &str, out: &mut Vec<Diagnostic>) -> Option<ProjectConfig> {
    let src = TomlSource { file: PROJECT_FILE, file_text: text, offset: 0, what: PROJECT_FILE };
    let mut config: ProjectConfig = toml_check::parse(&src, text, keys_at, out)?;
    let mut interpolate = |s: &mut Secret, key: &str| match interpolate_env(&s.0, |v| std::env::var(v).ok()) {
        Ok(v) => s.0 = v,
        Err(var) => out.push(
            Diagnostic::error(
                find(text, &format!("${{{var}")),
                format!("`{key}` uses environment variable `{var}`, which is not set"),
            )
            .with_hint(format!("export {var}=… before running Basin, or write `${{{var}:-default}}`")),
        ),
    };
    interpolate(&mut config.storage.root, "storage.root");
    interpolate(&mut config.metadata.url, "metadata.url");
    for (k, v) in config.storage.options.iter_mut() {
        interpolate(v, &format!("storage.options.{k}"));
    }
    if let Some(text_value) = &config.run.heartbeat_interval {
        match crate::values::parse_duration(text_value) {
            Ok(d) if !d.is_zero() => {}
            Ok(_) => out.push(
                Diagnostic::error(find(text, "heartbeat_interval"), "`run.heartbeat_interval` must be more than 0")
                    .with_hint("e.g. \"5s\""),
            ),
            Err(e) => out.push(
                Diagnostic::error(find(text, "heartbeat_interval"), format!("invalid `run.heartbeat_interval`: {e}"))
                    .with_hint("e.g. \"5s\""),
            ),
        }
    }
    out.extend(max_shrink_problem("run.max_shrink", config.run.max_shrink, find(text, "max_shrink")));
    check_daemon(text, &config, out);
    crate::alert::check(&config.watchdog, &config.alerts, |needle| find(text, needle), out);
    crate::serve::check(&config.serve, &config.users, &config.roles, |needle| find(text, needle), out);
    if config.project.name.trim().is_empty() {
        out.push(
            Diagnostic::error(find(text, "name"), "`project.name` is empty")
                .with_hint("name the project, e.g. `name = \"analytics\"`"),
        );
    }
    Some(config)
}

/// `[daemon]` and `[[schedules]]`: values serde cannot check.
fn check_daemon(text: &str, config: &ProjectConfig, out: &mut Vec<Diagnostic>) {
    let d = &config.daemon;
    if !LAUNCHERS.contains(&d.launcher.as_str()) {
        out.push(
            Diagnostic::error(find(text, "launcher"), format!("unknown `daemon.launcher` `{}`", d.launcher))
                .with_hint(format!("one of: {}", LAUNCHERS.join(", "))),
        );
    }
    if d.launcher == "command" && !d.command.as_deref().is_some_and(|c| c.contains("{run_id}")) {
        out.push(
            Diagnostic::error(
                find(text, "launcher"),
                "`launcher = \"command\"` needs a `command` with `{run_id}` in it",
            )
            .with_hint("e.g. command = \"docker run --rm -v {project}:/p basin worker -C /p --run-id {run_id}\""),
        );
    }
    if d.max_concurrent_runs == 0 {
        out.push(Diagnostic::error(
            find(text, "max_concurrent_runs"),
            "`daemon.max_concurrent_runs` must be at least 1",
        ));
    }
    if let Some(t) = &d.run_timeout
        && let Err(e) = crate::values::parse_duration(t)
    {
        out.push(Diagnostic::error(find(text, "run_timeout"), format!("invalid `daemon.run_timeout`: {e}")));
    }
    if let Some(t) = &d.worker_memory_limit
        && let Err(e) = crate::values::parse_size(t)
    {
        out.push(Diagnostic::error(
            find(text, "worker_memory_limit"),
            format!("invalid `daemon.worker_memory_limit`: {e}"),
        ));
    }
    if let Err(e) = d.retry.policy() {
        out.push(Diagnostic::error(find(text, "[daemon.retry]"), e).with_hint(format!(
            "failure categories: {}",
            crate::failure::FailureCategory::ALL.map(|c| c.as_str()).join(", ")
        )));
    }
    if d.retry.policy().is_ok()
        && let Err(e) = d.retry_policies([])
    {
        out.push(Diagnostic::error(find(text, "tag_retry"), e));
    }
    let mut names = std::collections::BTreeSet::new();
    for s in &config.schedules {
        let at = find(text, &format!("\"{}\"", s.name));
        if let Err(e) = Schedule::parse(s) {
            out.push(Diagnostic::error(at.clone(), e).with_hint(
                "cron is `minute hour day month weekday` (optionally seconds first); time zones as `Europe/Berlin`",
            ));
        }
        if !names.insert(s.name.as_str()) {
            out.push(Diagnostic::error(at, format!("two schedules are named `{}`", s.name)));
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for s in &config.sensors {
        let at = find(text, &format!("\"{}\"", s.name));
        if s.name.trim().is_empty() {
            out.push(Diagnostic::error(at.clone(), "a sensor needs a `name`"));
        }
        if let Err(e) = s.interval() {
            out.push(Diagnostic::error(at.clone(), e).with_hint("e.g. interval = \"30s\" or \"5m\""));
        }
        if !names.insert(s.name.as_str()) {
            out.push(Diagnostic::error(at, format!("two sensors are named `{}`", s.name)));
        }
    }
}

fn find(text: &str, needle: &str) -> Location {
    Location::at_offset(PROJECT_FILE, text, text.find(needle).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_and_defaults() {
        let env = |n: &str| (n == "KEY").then(|| "s3cr3t".to_string());
        assert_eq!(interpolate_env("a-${KEY}-b", env).unwrap(), "a-s3cr3t-b");
        assert_eq!(interpolate_env("${NOPE:-x}", env).unwrap(), "x");
        assert_eq!(interpolate_env("${NOPE}", env).unwrap_err(), "NOPE");
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s} {s:?}").contains("hunter2"));
    }

    #[test]
    fn unknown_keys_are_all_reported_with_suggestions() {
        let text = "[project]\nname = \"x\"\nnmae = 1\n[storage]\nrooot = \"./lake\"\n[run]\nconcurency = 2\n";
        let mut out = Vec::new();
        parse_project_config(text, &mut out);
        let msgs: Vec<String> = out.iter().map(|d| d.to_string()).collect();
        assert_eq!(out.len(), 3, "{msgs:#?}");
        assert!(msgs[0].starts_with("basin.toml:3:1: error: unknown key `project.nmae`"), "{msgs:#?}");
        assert!(msgs[1].contains("basin.toml:5:1") && msgs[1].contains("did you mean `root`?"), "{msgs:#?}");
        assert!(msgs[2].contains("basin.toml:7:1") && msgs[2].contains("did you mean `concurrency`?"), "{msgs:#?}");
    }

    #[test]
    fn invalid_value_has_a_location() {
        let text = "[project]\nname = \"x\"\n[run]\nconcurrency = \"lots\"\n";
        let mut out = Vec::new();
        assert!(parse_project_config(text, &mut out).is_none());
        assert_eq!(out.len(), 1);
        assert!(out[0].to_string().starts_with("basin.toml:4:15: error: invalid value"), "{}", out[0]);
    }

    #[test]
    fn storage_roots() {
        let dir = Path::new("/p");
        assert_eq!(StorageRoot::resolve("./lake", dir).unwrap(), StorageRoot::Local(PathBuf::from("/p/./lake")));
        assert!(matches!(StorageRoot::resolve("s3://bucket/lake", dir).unwrap(), StorageRoot::Url(_)));
        assert!(StorageRoot::resolve("ftp://x/y", dir).is_err());
    }
}
