//! A throwaway project whose models can be rewritten between runs, and a lake beside it.

use std::path::Path;

use std::sync::Arc;

use basin_core::failure::FailureCategory;
use basin_core::{AssetKey, Project};
use basin_engine::work::LakeMaterializer;
use basin_engine::{Lake, Materialized};
use basin_orchestrator::Recorder;
use basin_orchestrator::run::{AssetError, Outcome, RunOptions};

pub struct TestProject {
    pub dir: tempfile::TempDir,
}

impl TestProject {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("basin.toml"), "[project]\nname = \"t\"\n").unwrap();
        TestProject { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Write `models/<schema>/<name>.sql` for `key`.
    pub fn model(&self, key: &str, text: &str) -> &Self {
        let (schema, name) = key.split_once('.').unwrap();
        let dir = self.path().join("models").join(schema);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.sql")), text).unwrap();
        self
    }

    pub fn load(&self) -> Project {
        let (project, diagnostics) = Project::load_valid(self.path()).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(!diagnostics.has_errors());
        project
    }

    pub fn lake(&self) -> Lake {
        let project = self.load();
        Lake::open(&project.storage_root(), &project.config.storage.options).unwrap()
    }

    /// Build the given models (in dependency order) as one run of the run engine.
    pub async fn run(&self, keys: &[&str], full_refresh: bool) -> Result<Vec<Materialized>, AssetError> {
        run_on(&self.load(), &self.lake(), keys, full_refresh).await
    }

    pub async fn query(&self, sql: &str) -> Vec<String> {
        query(&self.lake(), sql).await
    }
}

pub async fn run_on(
    project: &Project,
    lake: &Lake,
    keys: &[&str],
    full_refresh: bool,
) -> Result<Vec<Materialized>, AssetError> {
    let keys: Vec<AssetKey> = keys.iter().map(|k| AssetKey::parse(k).unwrap()).collect();
    let selection = keys.iter().map(ToString::to_string).collect();
    let new = basin_meta::NewRun { full_refresh, ..basin_meta::NewRun::new(selection, "in_process") };
    let recorder = Recorder::begin(project, new).await.unwrap();
    let materializer = LakeMaterializer::new(Arc::new(project.clone()), lake.clone());
    let options = RunOptions { concurrency: 1, events: Default::default() };
    let report = basin_orchestrator::run::run(project, &materializer, recorder, &keys, options).await.unwrap();
    if let Some(e) = report.aborted() {
        return Err(e.clone());
    }
    let mut built = Vec::new();
    for (key, outcome) in report.outcomes() {
        match outcome {
            Outcome::Built(m) | Outcome::CheckFailed(m, _) => built.push(m.clone()),
            Outcome::Failed(e) => return Err(e.clone()),
            Outcome::Skipped(why) => {
                return Err(AssetError::new(format!("{key} skipped: {why}"), FailureCategory::Other));
            }
        }
    }
    Ok(built)
}

/// Rows of `sql` over the lake, each row's values joined by `|`, in query order.
pub async fn query(lake: &Lake, sql: &str) -> Vec<String> {
    let session = lake.session(&[], None).await.unwrap();
    rows(&session.ctx, sql).await
}

pub async fn rows(ctx: &basin_engine::datafusion::prelude::SessionContext, sql: &str) -> Vec<String> {
    use basin_engine::datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
    let batches = ctx.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")).collect().await.unwrap();
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for batch in batches {
        let formatters: Vec<_> =
            batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap()).collect();
        for row in 0..batch.num_rows() {
            out.push(formatters.iter().map(|f| f.value(row).to_string()).collect::<Vec<_>>().join("|"));
        }
    }
    out
}

/// The Parquet files directly under `dir` (a table's folder, or one partition's).
pub fn parquet_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|f| f.extension().is_some_and(|e| e == "parquet"))
        .collect()
}
