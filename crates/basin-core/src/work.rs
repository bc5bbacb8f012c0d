//! What a run asks of whoever does the work on tables: the run engine
//! (`basin-orchestrator`) drives a [`Materializer`], the engine implements it. Here, in the
//! leaf crate, so that neither of the two depends on the other.

use std::sync::Arc;

use async_trait::async_trait;

use crate::AssetKey;
use crate::failure::FailureCategory;
use crate::outcome::{Checked, Materialized};
use crate::partition::DayRange;

/// What one run asks of the materializer.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub run_id: String,
    /// The selection, in build order.
    pub assets: Vec<AssetKey>,
    pub full_refresh: bool,
    /// The days daily-partitioned models build (`None`: yesterday).
    pub partition: Option<DayRange>,
    pub allow_shrink: bool,
    /// Source tables whose breaking schema change the run lands anyway
    /// (`--accept-schema-change`).
    pub accept_schema_change: Vec<AssetKey>,
}

/// Why an asset (or a whole run, before any asset) failed: what to tell the user, and the
/// category its retry policy decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetError {
    pub message: String,
    pub category: FailureCategory,
}

impl AssetError {
    pub fn new(message: impl Into<String>, category: FailureCategory) -> AssetError {
        AssetError { message: message.into(), category }
    }
}

impl std::fmt::Display for AssetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AssetError {}

/// How far an ingestion has read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub rows: u64,
    pub chunks_done: u64,
    pub chunks: u64,
}

/// One asset to materialise.
pub struct Job {
    pub key: AssetKey,
    /// Rows of its earlier materialisations, newest first, when one of its checks judges them.
    pub earlier_rows: Vec<i64>,
    /// Where its progress goes while it reads (the run turns it into a progress event).
    pub progress: Arc<dyn Fn(Progress) + Send + Sync>,
}

/// One asset whose checks are evaluated on its data as it is, without building it.
pub struct CheckJob {
    pub key: AssetKey,
    /// Its recorded materialisations (rows, when), newest first, when one of its checks judges
    /// them: the newest is the one checked, the others its history.
    pub materializations: Vec<(i64, chrono::DateTime<chrono::Utc>)>,
}

/// Does the work on tables for the run engine: the engine's, wired by the binary.
#[async_trait]
pub trait Materializer: Send + Sync {
    /// Get ready for one run (for the engine: a session over the lake in which the run's
    /// builds are registered as they commit).
    async fn begin(&self, run: &RunSpec) -> Result<Arc<dyn RunWork>, AssetError>;
}

/// One run's work on tables.
#[async_trait]
pub trait RunWork: Send + Sync {
    /// Ingest or build `job.key`, then evaluate its checks on what it committed.
    async fn materialize(&self, job: Job) -> Result<(Materialized, Checked), AssetError>;

    /// `key` was built: what the run reads through it from now on sees the new version.
    async fn built(&self, key: &AssetKey);

    /// Evaluate `job.key`'s checks on its current data (`basin check`): the table version
    /// they read (`None` for a view or a table not built yet) and their outcomes.
    async fn check(&self, job: CheckJob) -> Result<(Option<u64>, Checked), AssetError>;
}
