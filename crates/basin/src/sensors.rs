//! The daemon's `[[sensors]]` over sources: what each watched table looks like now, by the
//! cheapest question that shows a change. A files table: its list of files (new files are what
//! an ingest takes). A database table: `MAX(cursor)` when it is incremental, `COUNT(*)` when it
//! is a full snapshot (those are the small dimensions).

use std::collections::BTreeMap;
use std::time::Duration;

use basin_core::Project;
use basin_core::daemon::SensorConfig;
use basin_core::source::{Mode, Source, SourceKind, SourceTable};
use basin_orchestrator::{Observation, Observe, Sensor};
use sha2::{Digest, Sha256};

/// The project's sensors, ready for the daemon.
pub fn sensors(project: &Project) -> anyhow::Result<Vec<Sensor>> {
    project
        .config
        .sensors
        .iter()
        .map(|config| {
            let source = project
                .sources
                .get(&config.source)
                .ok_or_else(|| anyhow::anyhow!("sensor `{}`: no source `{}`", config.name, config.source))?;
            Ok(Sensor {
                name: config.name.clone(),
                interval: config.interval().map_err(anyhow::Error::msg)?,
                priority: config.priority,
                tags: config.tags.clone(),
                observe: std::sync::Arc::new(SourceSensor { source: source.clone(), config: config.clone() }),
            })
        })
        .collect()
}

struct SourceSensor {
    source: Source,
    config: SensorConfig,
}

/// A source's answer may take long; a sensor that gets none in this time says so and tries
/// again at its next interval.
const OBSERVE_TIMEOUT: Duration = Duration::from_secs(60);

#[async_trait::async_trait]
impl Observe for SourceSensor {
    async fn observe(&self) -> Observation {
        match tokio::time::timeout(OBSERVE_TIMEOUT, self.look()).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => Observation { problems: vec![basin_core::error::chain(e.as_ref())], ..Default::default() },
            Err(_) => Observation {
                problems: vec![format!(
                    "source {} did not answer within {}s",
                    self.source.name,
                    OBSERVE_TIMEOUT.as_secs()
                )],
                ..Default::default()
            },
        }
    }
}

impl SourceSensor {
    async fn look(&self) -> anyhow::Result<Observation> {
        let connector = basin_connectors::connect(&self.source).await?;
        let mut tables: Vec<SourceTable> = Vec::new();
        if self.config.tables.is_empty() {
            tables.extend(self.source.tables.iter().cloned());
            if !self.source.config.include.is_empty() {
                for t in connector.tables().await? {
                    if self.source.discovers(&t) && !tables.iter().any(|x| x.name.eq_ignore_ascii_case(&t)) {
                        tables.push(self.source.discovered_table(&t));
                    }
                }
            }
        } else {
            for name in &self.config.tables {
                let known = self.source.tables.iter().find(|x| x.name.eq_ignore_ascii_case(name));
                tables.push(known.cloned().unwrap_or_else(|| self.source.discovered_table(name)));
            }
        }
        let mut out = Observation::default();
        for t in &tables {
            let value = if self.source.config.kind == SourceKind::Files {
                match connector.list_files(&t.name).await {
                    Ok(files) => Ok(fingerprint(&files.unwrap_or_default())),
                    // No file matches the pattern yet: nothing to ingest, and not a problem.
                    Err(basin_connectors::Error::NoSuchTable { .. }) => continue,
                    Err(e) => Err(e),
                }
            } else if let (Mode::Incremental, Some(cursor)) = (t.mode, &t.cursor) {
                connector
                    .max_cursor(&t.name, cursor)
                    .await
                    .map(|m| format!("max {}", m.as_deref().unwrap_or("(empty)")))
            } else {
                connector.count(&t.name, None).await.map(|n| format!("count {n}"))
            };
            match value {
                Ok(v) => {
                    out.values.insert(t.key.to_string(), v);
                }
                Err(e) => out.problems.push(format!("cannot look at {}: {e}", t.key)),
            }
        }
        Ok(out)
    }
}

/// A files table's state: how many files and a digest of their names.
fn fingerprint(files: &[String]) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.as_bytes());
        h.update([0]);
    }
    let digest: String = h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{} files {digest}", files.len())
}

/// Sensors by name, for `basin daemon`'s banner.
pub fn describe(project: &Project) -> BTreeMap<String, String> {
    project
        .config
        .sensors
        .iter()
        .map(|s| {
            let tables = if s.tables.is_empty() { "every table".to_string() } else { s.tables.join(", ") };
            (
                s.name.clone(),
                format!("source {} ({tables}), every {}", s.source, s.interval.as_deref().unwrap_or("30s")),
            )
        })
        .collect()
}
