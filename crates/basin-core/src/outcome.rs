//! What building one asset produced, as the run engine, the metadata store and the CLI see
//! it: the commit a materialisation or an ingestion made, and what its checks found. Plain
//! data, so that the orchestrator can reason about results without linking the engine.

use std::time::Duration;

use crate::AssetKey;
use crate::check::{CheckKind, Severity};

/// What a materialisation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A new table was created.
    Created,
    /// The whole table was replaced.
    Replaced,
    /// Rows were merged on the unique key (`deleted`: rows of keys deleted in a source).
    Merged { inserted: u64, updated: u64, deleted: u64 },
    /// These partitions were replaced.
    ReplacedPartitions { partitions: usize },
    /// A daily-partitioned model's days were replaced.
    ReplacedDays { range: String },
    /// The new data was empty; nothing was committed.
    NoNewData,
    /// A view was registered; no data written.
    View,
    /// A source table was ingested into bronze.
    Ingested { detail: String },
}

#[derive(Debug, Clone)]
pub struct Materialized {
    pub key: AssetKey,
    pub action: Action,
    /// The table version committed, if any.
    pub version: Option<u64>,
    /// Rows written by the commit (output rows of the write or merge).
    pub rows: u64,
    pub duration: Duration,
    /// How an incremental build read the tables it reads as changes (empty otherwise).
    pub read: Vec<InputRead>,
}

/// How an incremental build read one of the tables it reads as changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRead {
    /// The table (`bronze.orders`, `silver.fact_invoice`).
    pub table: AssetKey,
    /// The version read.
    pub version: u64,
    /// Read as what it gained after this version (the one the last build read); `None`:
    /// read whole, for `whole_because`.
    pub after: Option<u64>,
    /// Rows of the changes read (`None` when read whole).
    pub rows: Option<u64>,
    /// Why it was read whole: a first build, `--full-refresh`, a rewrite since the last build.
    pub whole_because: Option<String>,
    /// Read through its change data feed (a table updated in place, by MERGE): the latest
    /// version of each key changed since `after`, not only appended rows.
    pub change_feed: bool,
}

impl InputRead {
    /// `read the 1204 new rows of bronze.orders (versions 8–9)` or `read bronze.orders whole
    /// at version 9: first build`.
    pub fn describe(&self) -> String {
        match (self.after, self.rows) {
            (Some(after), Some(rows)) if after >= self.version => {
                format!("read the {rows} new rows of {} (unchanged since version {after})", self.table)
            }
            (Some(after), rows) => {
                let versions = if after + 1 == self.version {
                    format!("version {}", self.version)
                } else {
                    format!("versions {}–{}", after + 1, self.version)
                };
                if self.change_feed {
                    return format!("read the changed rows of {} ({versions}, its change data feed)", self.table);
                }
                let rows = rows.map(|n| format!("{n} ")).unwrap_or_default();
                format!("read the {rows}new rows of {} ({versions})", self.table)
            }
            _ => format!(
                "read {} whole at version {}{}",
                self.table,
                self.version,
                self.whole_because.as_ref().map(|b| format!(": {b}")).unwrap_or_default()
            ),
        }
    }
}

impl Materialized {
    /// `merged: 3 inserted, 1 updated, 4 rows, version 7`: what the run's output and events say.
    pub fn describe(&self) -> String {
        let what = match &self.action {
            Action::Created => "created".to_string(),
            Action::Replaced => "replaced".to_string(),
            Action::Merged { inserted, updated, deleted: 0 } => {
                format!("merged: {inserted} inserted, {updated} updated")
            }
            Action::Merged { inserted, updated, deleted } => {
                format!("merged: {inserted} inserted, {updated} updated, {deleted} deleted")
            }
            Action::ReplacedPartitions { partitions } => format!("replaced {partitions} partition(s)"),
            Action::ReplacedDays { range } => format!("replaced days {range}"),
            Action::NoNewData => "no new data".to_string(),
            Action::View => return "view registered".to_string(),
            Action::Ingested { detail } => return detail.clone(),
        };
        let version = self.version.map(|v| format!(", version {v}")).unwrap_or_default();
        let read: String = self.read.iter().map(|r| format!("; {}", r.describe())).collect();
        format!("{what}, {} rows{version}{read}", self.rows)
    }

    /// The days a daily-partitioned build replaced, as the metadata store keeps them.
    pub fn partition(&self) -> Option<&str> {
        match &self.action {
            Action::ReplacedDays { range } => Some(range),
            _ => None,
        }
    }
}

/// One check's result.
#[derive(Debug, Clone)]
pub struct CheckOutcome {
    pub name: String,
    pub kind: CheckKind,
    pub severity: Severity,
    pub passed: bool,
    /// What was found (`12 rows`), what was allowed (`0 rows`).
    pub observed: String,
    pub threshold: String,
    pub samples: Vec<String>,
    pub duration: Duration,
}

impl CheckOutcome {
    /// `not_null(customer_id): 12 rows`, for skip reasons and logs.
    pub fn summary(&self) -> String {
        format!("{}: {} (allowed {})", self.name, self.observed, self.threshold)
    }

    /// Whether it failed at `error` severity: what stops downstream assets.
    pub fn blocks(&self) -> bool {
        !self.passed && self.severity == Severity::Error
    }
}

/// The checks of one materialisation.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    pub outcomes: Vec<CheckOutcome>,
}

impl Checked {
    /// The failed `error` checks: what stops downstream assets.
    pub fn blocking(&self) -> impl Iterator<Item = &CheckOutcome> {
        self.outcomes.iter().filter(|o| o.blocks())
    }

    /// `not_null(customer_id): 12 rows` for each blocking failure.
    pub fn blocking_reason(&self) -> Option<String> {
        let failed: Vec<String> = self.blocking().map(|o| format!("{}: {}", o.name, o.observed)).collect();
        (!failed.is_empty()).then(|| failed.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(name: &str, passed: bool, severity: Severity) -> CheckOutcome {
        CheckOutcome {
            name: name.into(),
            kind: CheckKind::NotNull,
            severity,
            passed,
            observed: "12 rows".into(),
            threshold: "0 rows".into(),
            samples: vec![],
            duration: Duration::ZERO,
        }
    }

    #[test]
    fn only_failed_error_checks_block() {
        let checked = Checked {
            outcomes: vec![
                outcome("a", true, Severity::Error),
                outcome("b", false, Severity::Warn),
                outcome("c", false, Severity::Error),
            ],
        };
        assert_eq!(checked.blocking_reason().as_deref(), Some("c: 12 rows"));
        assert_eq!(Checked::default().blocking_reason(), None);
    }

    #[test]
    fn a_build_describes_its_commit() {
        let key = AssetKey::new("silver", "t");
        let m = |action| Materialized {
            key: key.clone(),
            action,
            version: Some(3),
            rows: 5,
            duration: Duration::ZERO,
            read: Vec::new(),
        };
        assert_eq!(
            m(Action::Merged { inserted: 4, updated: 1, deleted: 0 }).describe(),
            "merged: 4 inserted, 1 updated, 5 rows, version 3"
        );
        assert_eq!(m(Action::View).describe(), "view registered");
        assert_eq!(m(Action::ReplacedDays { range: "2026-01-01".into() }).partition(), Some("2026-01-01"));
    }
}
