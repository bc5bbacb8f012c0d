//! Sensors: a run is queued when something outside Basin changed — new files for a file
//! source, a source table's `MAX(cursor)` moving. The binary implements [`Observe`] with the
//! connectors; the daemon asks every `interval`, in a task of its own (a slow source never
//! holds up a tick), and queues one run of the assets whose value changed since the sensor's
//! cursor, in the same transaction that moves the cursor.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use basin_meta::NewRun;
use chrono::{DateTime, Utc};

use crate::{Daemon, Result, Tick};

/// What a sensor sees now: a value per asset it feeds (`bronze.v3__invoice` →
/// `"max 2026-11-23 02:00:00"`), and what it could not look at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    pub values: BTreeMap<String, String>,
    pub problems: Vec<String>,
}

#[async_trait]
pub trait Observe: Send + Sync {
    async fn observe(&self) -> Observation;
}

#[derive(Clone)]
pub struct Sensor {
    pub name: String,
    pub interval: Duration,
    pub priority: i64,
    pub tags: BTreeMap<String, String>,
    pub observe: Arc<dyn Observe>,
}

impl Sensor {
    /// The cursor in the metadata store holding the values last acted on (JSON).
    pub fn cursor_name(&self) -> String {
        format!("sensor:{}", self.name)
    }
}

#[derive(Default)]
pub(crate) struct SensorState {
    last: Option<DateTime<Utc>>,
    pending: Option<tokio::task::JoinHandle<Observation>>,
}

impl Daemon {
    /// Queue runs for the sensors whose observation finished, and start the observations due.
    pub(crate) async fn sensors(&mut self, now: DateTime<Utc>, tick: &mut Tick) -> Result<()> {
        let mut seen = Vec::new();
        for s in &self.sensors {
            let state = self.sensor_state.entry(s.name.clone()).or_default();
            if state.pending.as_ref().is_some_and(|h| h.is_finished()) {
                let handle = state.pending.take().expect("checked");
                match handle.await {
                    Ok(observation) => seen.push((s.clone(), observation)),
                    Err(e) => tick.notices.push(format!("sensor {}: its observation failed: {e}", s.name)),
                }
            }
            let interval = chrono::Duration::from_std(s.interval).unwrap_or(chrono::Duration::MAX);
            if state.pending.is_none() && state.last.is_none_or(|t| now - t >= interval) {
                state.last = Some(now);
                let observe = s.observe.clone();
                state.pending = Some(tokio::spawn(async move { observe.observe().await }));
            }
        }
        for (sensor, observation) in seen {
            for p in &observation.problems {
                tick.notices.push(format!("sensor {}: {p}", sensor.name));
            }
            self.sensed(&sensor, observation.values, tick).await?;
        }
        Ok(())
    }

    async fn sensed(&self, s: &Sensor, values: BTreeMap<String, String>, tick: &mut Tick) -> Result<()> {
        let cursor = s.cursor_name();
        let stored = self.store.cursor(&cursor).await?;
        let mut known: BTreeMap<String, String> =
            stored.as_deref().and_then(|v| serde_json::from_str(v).ok()).unwrap_or_default();
        let changed: Vec<String> =
            values.iter().filter(|(k, v)| known.get(*k) != Some(*v)).map(|(k, _)| k.clone()).collect();
        if changed.is_empty() {
            return Ok(());
        }
        // While the sensor's last run is queued or running, what changed since waits for it:
        // the cursor stays, so the next observation after it queues the rest.
        if self.store.active_runs().await?.iter().any(|r| r.tags.get("sensor") == Some(&s.name)) {
            return Ok(());
        }
        known.extend(values);
        let value = serde_json::to_string(&known).expect("a map of strings serialises");
        let mut tags = s.tags.clone();
        tags.insert("sensor".into(), s.name.clone());
        let run = NewRun { priority: s.priority, tags, ..NewRun::new(changed.clone(), self.launcher.name()) };
        if let Some(queued) = self.store.enqueue_tick(&cursor, stored.as_deref(), &value, run).await? {
            tick.notices.push(format!("sensor {}: {} changed; queued run {}", s.name, changed.join(", "), queued.id));
            tick.queued.push(queued);
        }
        Ok(())
    }
}
