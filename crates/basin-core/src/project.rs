//! A Basin project on disk: `basin.toml` and `models/<schema>/**/<name>.sql`, loaded and
//! validated in one pass that collects every problem, so a user fixes ten mistakes at once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::asset::{AssetKey, RESERVED_SCHEMAS, is_plain_identifier};
use crate::check::{Check, CheckConfig, CheckKind, CheckSpec};
use crate::config::{PROJECT_FILE, ProjectConfig, StorageRoot, parse_project_config};
use crate::diagnostic::{Diagnostic, Diagnostics, Location, did_you_mean};
use crate::error::{Error, Result};
use crate::graph::{AssetGraph, AssetNode};
use crate::model::{Materialization, Model, parse_header};
use crate::source::{BRONZE, BRONZE_CURRENT, Source, SourceTable, read_source};
use crate::sql_refs::table_refs;
use crate::values::Secret;

pub const MODELS_DIR: &str = "models";
pub const SOURCES_DIR: &str = "sources";

#[derive(Debug, Clone)]
pub struct Project {
    pub dir: PathBuf,
    pub config: ProjectConfig,
    /// Every model, by asset key.
    pub models: BTreeMap<AssetKey, Model>,
    /// Every source, by name.
    pub sources: BTreeMap<String, Source>,
    /// Every bronze table: those listed in sources, and those models read that a source's
    /// `include` patterns discover.
    pub bronze: BTreeMap<AssetKey, SourceTable>,
    pub graph: AssetGraph,
    /// Every asset's checks: its own, its source table's, and the project's defaults that
    /// select it; every bronze table reconciles against its source (1% unless it says).
    pub checks: BTreeMap<AssetKey, Vec<CheckSpec>>,
}

impl Project {
    /// The project directory holding `start` (itself or its nearest parent with `basin.toml`).
    pub fn find(start: &Path) -> Result<PathBuf> {
        let start = std::path::absolute(start).map_err(|e| Error::io(start, e))?;
        start
            .ancestors()
            .find(|d| d.join(PROJECT_FILE).is_file())
            .map(Path::to_path_buf)
            .ok_or(Error::ProjectNotFound { dir: start })
    }

    /// Load a project and validate it. Problems with the project's content come back as
    /// diagnostics next to whatever could be loaded; `Err` only when files cannot be read.
    pub fn load(dir: &Path) -> Result<(Project, Diagnostics)> {
        let mut problems = Vec::new();
        let config_path = dir.join(PROJECT_FILE);
        let text = std::fs::read_to_string(&config_path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::ProjectNotFound { dir: dir.to_path_buf() },
            _ => Error::io(&config_path, e),
        })?;
        let config = parse_project_config(&text, &mut problems).unwrap_or_else(ProjectConfig::placeholder);
        if let Err(e) = StorageRoot::resolve(config.storage.root.expose(), dir) {
            let at = Location::at_offset(PROJECT_FILE, &text, text.find("root").unwrap_or(0));
            problems.push(
                Diagnostic::error(at, format!("invalid `storage.root`: {e}"))
                    .with_hint("use a local path, or an s3://, az://, abfss://, gs:// URL"),
            );
        }

        let mut sources = BTreeMap::new();
        // Source files that do not load, by source name: their tables are unknown, and the
        // file's own errors are the ones to fix.
        let mut invalid_sources: BTreeMap<String, String> = BTreeMap::new();
        for path in files_with_extension(&dir.join(SOURCES_DIR), "toml")? {
            let rel = relative(dir, &path);
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            let read = read_source(&rel, &text, &mut problems);
            if read.is_none()
                && let Some(stem) = path.file_stem()
            {
                invalid_sources.insert(stem.to_string_lossy().to_lowercase(), rel.clone());
            }
            if let Some(mut source) = read {
                // File paths are relative to the project, wherever Basin runs from; so is the
                // file of a SQLite URL (`sqlite://source/app.db`).
                if let Some(url) = &source.config.url
                    && let Some(file) = url.expose().strip_prefix("sqlite://")
                    && !file.is_empty()
                    && !file.starts_with(':')
                    && !Path::new(file.split('?').next().unwrap_or(file)).is_absolute()
                {
                    source.config.url = Some(Secret::new(format!("sqlite://{}", dir.join(file).display())));
                }
                for t in &mut source.tables {
                    if let Some(p) = &t.path
                        && !p.contains("://")
                        && !Path::new(p).is_absolute()
                    {
                        t.path = Some(dir.join(p).to_string_lossy().into_owned());
                    }
                }
                sources.insert(source.name.clone(), source);
            }
        }

        let files = files_with_extension(&dir.join(MODELS_DIR), "sql")?;
        let mut models: BTreeMap<AssetKey, Model> = BTreeMap::new();
        for path in files {
            let rel = relative(dir, &path);
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            let Some(model) = read_model(&rel, text, &mut problems) else { continue };
            // Of two models with one key, the one that took it by a header override is at fault.
            let overrides = |m: &Model| m.config.schema.is_some() || m.config.name.is_some();
            let (kept, dropped) = match models.remove(&model.key) {
                None => (model, None),
                Some(first) if overrides(&first) && !overrides(&model) => (model, Some(first)),
                Some(first) => (first, Some(model)),
            };
            if let Some(dropped) = dropped {
                problems.push(
                    Diagnostic::error(
                        Location::file(&dropped.file),
                        format!("duplicate asset key `{}`, also defined by {}", dropped.key, kept.file),
                    )
                    .with_hint("rename one of the files, or change its `schema`/`name` in the header"),
                );
            }
            models.insert(kept.key.clone(), kept);
        }

        let bronze = bronze_tables(&sources, &models);
        check_references(&models, &bronze, &invalid_sources, &mut problems);
        let graph = build_graph(&models, &bronze, &sources);
        for schedule in &config.schedules {
            if let Err(e) = crate::selection::select(&graph, &schedule.selection) {
                let at = Location::at_offset(PROJECT_FILE, &text, text.find(&schedule.selection).unwrap_or(0));
                problems.push(
                    Diagnostic::error(at, format!("schedule `{}`: {e}", schedule.name))
                        .with_hint("a schedule's `selection` is written as for `basin run`"),
                );
            }
        }
        for sensor in &config.sensors {
            let at = |needle: &str| Location::at_offset(PROJECT_FILE, &text, text.find(needle).unwrap_or(0));
            let Some(source) = sources.get(&sensor.source) else {
                let names: Vec<&str> = sources.keys().map(String::as_str).collect();
                problems.push(
                    Diagnostic::error(
                        at(&format!("\"{}\"", sensor.source)),
                        format!("sensor `{}`: no source `{}`", sensor.name, sensor.source),
                    )
                    .with_hint(format!("sources: {}", if names.is_empty() { "none".into() } else { names.join(", ") })),
                );
                continue;
            };
            for t in &sensor.tables {
                let known = source.tables.iter().any(|x| x.name.eq_ignore_ascii_case(t)) || source.discovers(t);
                if !known {
                    problems.push(
                        Diagnostic::error(
                            at(&format!("\"{t}\"")),
                            format!("sensor `{}`: source `{}` has no table `{t}`", sensor.name, sensor.source),
                        )
                        .with_hint(format!("list it in {} `[[tables]]`", source.file)),
                    );
                }
            }
        }
        for cycle in graph.cycles() {
            let path: Vec<String> = cycle.iter().map(|k| k.to_string()).collect();
            // Point at the reference that closes the loop: where the first model reads the next.
            let first = &models[&cycle[0]];
            let at = first
                .refs
                .iter()
                .find(|r| referenced(r).as_ref() == Some(&cycle[1]))
                .map_or(Location::file(&first.file), |r| Location::at(&first.file, r.line, r.col));
            problems.push(
                Diagnostic::error(at, format!("dependency cycle: {}", path.join(" → ")))
                    .with_hint("a model cannot read, directly or through others, a table built from itself"),
            );
        }

        let mut checks = collect_checks(&text, &config, &models, &sources, &bronze, &graph, &mut problems);
        // `dq_flags`: row-level checks flag rows instead of failing the model.
        for m in models.values_mut().filter(|m| m.config.dq_flags) {
            if let Some(specs) = checks.get_mut(&m.key) {
                let (flags, rest): (Vec<CheckSpec>, Vec<CheckSpec>) =
                    specs.drain(..).partition(|s| s.kind.is_row_level());
                *specs = rest;
                m.flags = flags;
            }
        }

        let mut diagnostics = Diagnostics::default();
        diagnostics.extend(problems);
        diagnostics.sort();
        Ok((Project { dir: dir.to_path_buf(), config, models, sources, bronze, graph, checks }, diagnostics))
    }

    /// Load a project and refuse it if it has any error: every command but `validate` runs
    /// only on a valid project.
    pub fn load_valid(dir: &Path) -> Result<(Project, Diagnostics)> {
        let (project, diagnostics) = Project::load(dir)?;
        if diagnostics.has_errors() {
            return Err(Error::InvalidProject(diagnostics));
        }
        Ok((project, diagnostics))
    }

    pub fn storage_root(&self) -> StorageRoot {
        StorageRoot::resolve(self.config.storage.root.expose(), &self.dir).expect("validated when loaded")
    }
}

impl ProjectConfig {
    /// Stands in for a `basin.toml` that could not be read, so models are still validated.
    fn placeholder() -> Self {
        ProjectConfig {
            project: crate::config::ProjectSection { name: String::new() },
            storage: Default::default(),
            metadata: Default::default(),
            run: Default::default(),
            daemon: Default::default(),
            schedules: Vec::new(),
            sensors: Vec::new(),
            default_checks: Vec::new(),
            serve: Default::default(),
            users: Default::default(),
            roles: Default::default(),
            watchdog: Default::default(),
            alerts: Vec::new(),
        }
    }
}

/// Files under `dir` (recursively) ending in `.{ext}`, sorted; none if `dir` is missing.
fn files_with_extension(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) -> Result<()> {
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            if path.is_dir() {
                walk(&path, ext, out)?;
            } else if path.extension().is_some_and(|e| e == ext) {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    if dir.is_dir() {
        walk(dir, ext, &mut out)?;
    }
    out.sort();
    Ok(out)
}

fn relative(dir: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(dir).unwrap_or(path);
    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// What `$this` stands for while a model's references are read: as long as `$this`.
const THIS_STAND_IN: &str = "_this";

/// Read one model file; `None` when it cannot become an asset at all.
fn read_model(file: &str, text: String, out: &mut Vec<Diagnostic>) -> Option<Model> {
    let parts: Vec<&str> = file.split('/').collect();
    let header = parse_header(file, &text, out);
    // A needle may start with a newline, to find a key at the start of a line (`\ncron`, not
    // the `cron` in `on_cron`); the location is then the key's.
    let locate = |needle: &str| {
        let skip = needle.len() - needle.trim_start_matches('\n').len();
        let at = crate::model::header(&text).and_then(|(o, h)| h.find(needle).map(|i| o + i + skip)).unwrap_or(0);
        Location::at_offset(file, &text, at)
    };

    // `$this` read as a table of the same length, so that positions after it stay; it is the
    // model's own table, set once the key is known.
    let unbound = crate::model::bind_variables(&text, THIS_STAND_IN, true).unwrap_or_else(|_| text.clone());
    let refs = match table_refs(&unbound) {
        Ok(refs) => refs,
        Err(p) => {
            out.push(
                Diagnostic::error(Location::at(file, p.line, p.col), p.message)
                    .with_hint("a model is one SELECT query in DataFusion's SQL dialect (PostgreSQL-like)"),
            );
            Vec::new()
        }
    };
    // A model whose header is broken keeps its place (and the key from its path), so that
    // references to it are not reported as unknown too.
    let config = header.unwrap_or_default();

    if parts.len() < 3 {
        out.push(
            Diagnostic::error(Location::file(file), "a model must live in a schema folder")
                .with_hint(format!("move it to models/<schema>/{}", parts[parts.len() - 1])),
        );
        return None;
    }
    let stem = parts[parts.len() - 1].trim_end_matches(".sql");
    let schema = config.schema.clone().unwrap_or_else(|| parts[1].to_string());
    let name = config.name.clone().unwrap_or_else(|| stem.to_string());
    let mut ok = true;
    for (what, value, override_key) in [("schema", &schema, "schema"), ("name", &name, "name")] {
        if !is_plain_identifier(value) {
            let at = if (what == "schema" && config.schema.is_some()) || (what == "name" && config.name.is_some()) {
                locate(override_key)
            } else {
                Location::file(file)
            };
            out.push(
                Diagnostic::error(at, format!("asset {what} `{value}` is not a valid identifier"))
                    .with_hint("use lower-case letters, digits and `_`, starting with a letter or `_`"),
            );
            ok = false;
        }
    }
    if schema == BRONZE {
        out.push(
            Diagnostic::error(Location::file(file), "schema `bronze` is written by ingestion only").with_hint(
                "declare source tables in sources/<name>.toml; models go in silver, gold or your own schemas",
            ),
        );
        ok = false;
    }
    if RESERVED_SCHEMAS.contains(&schema.as_str()) {
        out.push(
            Diagnostic::error(Location::file(file), format!("schema `{schema}` is reserved by Basin"))
                .with_hint("choose another schema folder, e.g. `silver` or `gold`"),
        );
        ok = false;
    }

    let refs: Vec<crate::sql_refs::TableRef> = refs
        .into_iter()
        .map(|r| match &r.parts[..] {
            [one] if one == THIS_STAND_IN => {
                crate::sql_refs::TableRef { parts: vec![schema.clone(), name.clone()], ..r }
            }
            _ => r,
        })
        .collect();
    if crate::model::uses_variables(&text) && config.materialized != Materialization::Incremental {
        let at = text.find(crate::model::THIS).or_else(|| text.find(crate::model::IS_INCREMENTAL)).unwrap_or(0);
        out.push(
            Diagnostic::error(
                Location::at_offset(file, &text, at),
                "`$this` and `$is_incremental` are for incremental models",
            )
            .with_hint("set `materialized = \"incremental\"` with a `unique_key`, or read the table by its name"),
        );
    }
    if config.dedupe.is_some() {
        let problem = if config.materialized != Materialization::Incremental {
            Some((
                "dedupe",
                "`dedupe` is a setting of incremental models",
                "remove it, or set `materialized = \"incremental\"`",
            ))
        } else if config.unique_key.0.is_empty() {
            Some((
                "dedupe",
                "`dedupe` needs `unique_key`, the key whose rows it dedupes",
                "add `unique_key = [\"id\"]`",
            ))
        } else if config.updated_at.is_none() {
            Some((
                "dedupe",
                "`dedupe = \"latest\"` needs `updated_at`, the column that says which of a key's rows is the latest",
                "add `updated_at = \"updated_at\"` (any column the query returns)",
            ))
        } else {
            None
        };
        if let Some((key, message, hint)) = problem {
            out.push(Diagnostic::error(locate(key), message).with_hint(hint));
        }
    }
    match config.materialized {
        Materialization::Incremental if config.unique_key.0.is_empty() && config.partition_by.0.is_empty() => {
            out.push(
                Diagnostic::error(locate("materialized"), "an incremental model needs `unique_key` or `partition_by`")
                    .with_hint("add `unique_key = [\"id\"]` to MERGE on a key, or `partition_by = [\"day\"]` to replace partitions"),
            );
        }
        Materialization::Scd2 if config.unique_key.0.is_empty() => {
            out.push(
                Diagnostic::error(locate("materialized"), "an scd2 model needs `unique_key`, its business key")
                    .with_hint("add `unique_key = [\"customer_id\"]`; `tracked` and `updated_at` are optional"),
            );
        }
        Materialization::Scd2 if !config.partition_by.0.is_empty() => {
            out.push(
                Diagnostic::error(locate("partition_by"), "`partition_by` is not supported by an scd2 model")
                    .with_hint("history tables are rewritten whole; remove `partition_by`"),
            );
        }
        _ if config.materialized != Materialization::Scd2
            && (!config.tracked.0.is_empty() || (config.updated_at.is_some() && config.dedupe.is_none())) =>
        {
            let key = if config.tracked.0.is_empty() { "updated_at" } else { "tracked" };
            out.push(
                Diagnostic::error(locate(key), format!("`{key}` is a setting of scd2 models"))
                    .with_hint("set `materialized = \"scd2\"`, or remove it"),
            );
        }
        Materialization::View
            if !config.unique_key.0.is_empty()
                || !config.partition_by.0.is_empty()
                || !config.cluster_by.0.is_empty() =>
        {
            let key = if !config.unique_key.0.is_empty() {
                "unique_key"
            } else if !config.partition_by.0.is_empty() {
                "partition_by"
            } else {
                "cluster_by"
            };
            out.push(
                Diagnostic::error(locate(key), format!("`{key}` has no meaning for a view"))
                    .with_hint("remove it, or materialize the model as `table` or `incremental`"),
            );
        }
        Materialization::Table if !config.unique_key.0.is_empty() => {
            out.push(
                Diagnostic::warning(locate("unique_key"), "`unique_key` is ignored by a `table` model")
                    .with_hint("set `materialized = \"incremental\"` to MERGE on it"),
            );
        }
        _ => {}
    }
    if let Some(named) = &config.incremental_from {
        if config.materialized != Materialization::Incremental {
            out.push(
                Diagnostic::error(locate("incremental_from"), "`incremental_from` is a setting of incremental models")
                    .with_hint("set `materialized = \"incremental\"`, or remove it"),
            );
        } else if config.partitions.is_some() {
            out.push(
                Diagnostic::error(
                    locate("incremental_from"),
                    "a daily-partitioned model reads its days, not changes: `incremental_from` has no meaning here",
                )
                .with_hint("remove it"),
            );
        }
        let read: Vec<String> = refs.iter().filter(|r| r.parts.len() == 2).map(|r| r.display()).collect();
        for n in &named.0 {
            let parts = crate::model::reference_parts(n);
            if !refs.iter().any(|r| r.parts == parts) {
                out.push(
                    Diagnostic::error(
                        locate("incremental_from"),
                        format!("`incremental_from` names `{n}`, which the query does not read"),
                    )
                    .with_hint(format!(
                        "the query reads {}",
                        if read.is_empty() { "no table".to_string() } else { read.join(", ") }
                    )),
                );
            }
        }
    }
    if let Some(slo) = &config.slo
        && let Err(e) = slo.parse()
    {
        out.push(Diagnostic::error(locate("slo"), e));
    }
    match (config.automation, config.cron_schedule(&format!("{schema}.{name}"))) {
        (Some(crate::model::Automation::OnCron), None) => out.push(
            Diagnostic::error(locate("automation"), "`automation = \"on_cron\"` needs a `cron` pattern")
                .with_hint("e.g. cron = \"0 6 * * *\" and, optionally, timezone = \"Europe/Berlin\""),
        ),
        (Some(crate::model::Automation::OnCron), Some(Err(e))) => {
            let e = e.split_once(": ").map_or(e.as_str(), |(_, rest)| rest).to_string();
            out.push(Diagnostic::error(locate("\ncron"), e));
        }
        (Some(crate::model::Automation::OnCron), Some(Ok(_))) => {}
        (_, Some(_)) => out.push(
            Diagnostic::error(locate("\ncron"), "`cron` is a setting of `automation = \"on_cron\"`")
                .with_hint("set `automation = \"on_cron\"`, or remove it"),
        ),
        _ => {}
    }
    let placeholders = crate::partition::placeholders(&text);
    match (config.partitions, placeholders.first()) {
        (None, Some(p)) => out.push(
            Diagnostic::error(
                Location::at_offset(file, &text, text.find(p.as_str()).unwrap_or(0)),
                format!("`{p}` is set only in a model with `partitions = \"daily\"`"),
            )
            .with_hint("add `partitions = \"daily\"` and `partition_by = [\"<a DATE column>\"]`"),
        ),
        (Some(_), _) if config.materialized != Materialization::Incremental || !config.unique_key.0.is_empty() => out
            .push(
                Diagnostic::error(
                    locate("partitions"),
                    "a daily-partitioned model is `materialized = \"incremental\"` without `unique_key`",
                )
                .with_hint("each build replaces its days; set `materialized = \"incremental\"`"),
            ),
        (Some(_), _) if config.partition_by.0.len() != 1 => out.push(
            Diagnostic::error(locate("partitions"), "a daily-partitioned model needs one `partition_by` column")
                .with_hint("e.g. partition_by = [\"invoice_date\"], a DATE column of the query"),
        ),
        (Some(_), None) => out.push(
            Diagnostic::warning(
                locate("partitions"),
                "the query does not read `$partition_start`/`$partition_end`: every build reads all its input",
            )
            .with_hint("filter the input, e.g. WHERE day >= $partition_start AND day < $partition_end"),
        ),
        _ => {}
    }
    if let Some(retry) = &config.retry
        && let Err(e) = crate::daemon::RetrySection::default().overridden(retry).policy()
    {
        out.push(Diagnostic::error(locate("\n[retry]"), e.replace("daemon.retry.", "retry.")).with_hint(format!(
            "failure categories: {}",
            crate::failure::FailureCategory::ALL.map(|c| c.as_str()).join(", ")
        )));
    }
    out.extend(crate::config::max_shrink_problem("max_shrink", config.max_shrink, locate("max_shrink")));
    ok.then(|| Model {
        key: AssetKey::new(schema, name),
        file: file.to_string(),
        text,
        config,
        refs,
        flags: Vec::new(),
    })
}

/// The asset a schema-qualified reference reads: `bronze_current.x` is a view of `bronze.x`.
fn referenced(r: &crate::sql_refs::TableRef) -> Option<AssetKey> {
    asset_of(&r.parts)
}

/// The asset the reference `parts` (`[schema, name]`, as [`crate::sql_refs::TableRef::parts`])
/// reads: `bronze_current.x` is a view of `bronze.x`; `None` unless schema-qualified.
pub fn asset_of(parts: &[String]) -> Option<AssetKey> {
    match parts {
        [schema, name] if schema == BRONZE_CURRENT => Some(AssetKey::new(BRONZE, name)),
        [schema, name] => Some(AssetKey::new(schema, name)),
        _ => None,
    }
}

/// Bronze tables: every table sources list, plus those models read that a source discovers.
fn bronze_tables(
    sources: &BTreeMap<String, Source>,
    models: &BTreeMap<AssetKey, Model>,
) -> BTreeMap<AssetKey, SourceTable> {
    let mut bronze: BTreeMap<AssetKey, SourceTable> =
        sources.values().flat_map(|s| s.tables.iter().map(|t| (t.key.clone(), t.clone()))).collect();
    for r in models.values().flat_map(|m| &m.refs) {
        let Some(AssetKey { schema, name }) = referenced(r) else { continue };
        if schema != BRONZE || bronze.contains_key(&AssetKey::new(BRONZE, &name)) {
            continue;
        }
        let Some((source, table)) = name.split_once("__") else { continue };
        if let Some(source) = sources.get(source).filter(|s| s.discovers(table)) {
            let t = source.discovered_table(table);
            bronze.insert(t.key.clone(), t);
        }
    }
    bronze
}

fn check_references(
    models: &BTreeMap<AssetKey, Model>,
    bronze: &BTreeMap<AssetKey, SourceTable>,
    invalid_sources: &BTreeMap<String, String>,
    out: &mut Vec<Diagnostic>,
) {
    // Tables of a source file that does not load: one note for the file, not an `unknown
    // table` for every model that reads them.
    let mut blocked: BTreeMap<&str, BTreeSet<&AssetKey>> = BTreeMap::new();
    let known = |k: &AssetKey| models.contains_key(k) || bronze.contains_key(k);
    let names: Vec<String> = models.keys().chain(bronze.keys()).map(|k| k.to_string()).collect();
    let by_name: BTreeMap<&str, Vec<&AssetKey>> =
        models.keys().chain(bronze.keys()).fold(BTreeMap::new(), |mut m, k| {
            m.entry(k.name.as_str()).or_default().push(k);
            m
        });
    for model in models.values() {
        let mut reported = BTreeSet::new();
        for r in &model.refs {
            let at = Location::at(&model.file, r.line, r.col);
            let shown = r.display();
            if r.parts.len() == 1 {
                let mut d = Diagnostic::error(at, format!("table `{shown}` is not schema-qualified"));
                d = match by_name.get(r.parts[0].as_str()) {
                    Some(keys) => d.with_hint(format!("did you mean `{}`?", keys[0])),
                    None => d.with_hint("write `<schema>.<table>`, e.g. `silver.customers`"),
                };
                out.push(d);
                continue;
            }
            let key = referenced(r).expect("a two-part name");
            if known(&key) || !reported.insert(key.clone()) {
                continue;
            }
            let source = key.name.split_once("__").map(|(s, _)| s).unwrap_or(&key.name);
            if key.schema == BRONZE
                && let Some(file) = invalid_sources.get(source)
            {
                blocked.entry(file.as_str()).or_default().insert(&model.key);
                continue;
            }
            let mut d = Diagnostic::error(at, format!("unknown table `{shown}`"));
            d = match did_you_mean(&shown, names.iter().map(String::as_str)) {
                Some(near) => d.with_hint(format!("did you mean `{near}`?")),
                None if key.schema == BRONZE => {
                    d.with_hint("declare it in sources/<source>.toml as a [[tables]] entry, or match it with `include`")
                }
                None => d.with_hint("no model or source defines it; create models/<schema>/<name>.sql"),
            };
            out.push(d);
        }
    }
    for (file, readers) in blocked {
        let names: Vec<String> = readers.iter().map(|k| k.to_string()).collect();
        out.push(Diagnostic::warning(
            Location::file(file),
            format!("{file} is invalid, so the models that read its tables cannot run: {}", names.join(", ")),
        ));
    }
}

/// Every asset's checks, with a diagnostic for each that cannot be used.
fn collect_checks(
    text: &str,
    config: &ProjectConfig,
    models: &BTreeMap<AssetKey, Model>,
    sources: &BTreeMap<String, Source>,
    bronze: &BTreeMap<AssetKey, SourceTable>,
    graph: &AssetGraph,
    problems: &mut Vec<Diagnostic>,
) -> BTreeMap<AssetKey, Vec<CheckSpec>> {
    let mut out: BTreeMap<AssetKey, Vec<CheckSpec>> = BTreeMap::new();
    let exists = |k: &AssetKey| models.contains_key(k) || bronze.contains_key(k);
    let take = |key: &AssetKey,
                c: &CheckConfig,
                at: Location,
                default: bool,
                out: &mut BTreeMap<AssetKey, Vec<CheckSpec>>,
                problems: &mut Vec<Diagnostic>| {
        if c.selection.is_some() && !default {
            problems.push(
                Diagnostic::error(at.clone(), "`selection` is a key of `[[default_checks]]` in basin.toml")
                    .with_hint("a check in a model or source table applies to that asset; remove `selection`"),
            );
        }
        match c.check() {
            Ok(spec) => {
                if let Check::Relationships { to, .. } = &spec.check
                    && !exists(to)
                {
                    problems.push(Diagnostic::error(at, format!("check {spec}: no asset `{to}`")));
                    return;
                }
                out.entry(key.clone()).or_default().push(spec);
            }
            Err(e) => problems.push(Diagnostic::error(at, format!("check of {key}: {e}")).with_hint(
                "types: not_null, unique, accepted_values, relationships, row_count, expression, freshness, \
                 volume_change, null_rate, schema, reconcile",
            )),
        }
    };
    for m in models.values() {
        let at = crate::model::header(&m.text)
            .and_then(|(o, h)| h.find("checks").map(|i| o + i))
            .map_or(Location::file(&m.file), |o| Location::at_offset(&m.file, &m.text, o));
        for c in &m.config.checks {
            take(&m.key, c, at.clone(), false, &mut out, problems);
        }
    }
    for t in bronze.values() {
        let file = sources.get(&t.source).map_or(String::new(), |s| s.file.clone());
        for c in &t.checks {
            take(&t.key, c, Location::file(&file), false, &mut out, problems);
        }
    }
    for c in &config.default_checks {
        let at = Location::at_offset(PROJECT_FILE, text, text.find("[[default_checks]]").unwrap_or(0));
        let Some(selection) = &c.selection else {
            problems.push(
                Diagnostic::error(at, "a `[[default_checks]]` entry needs a `selection`")
                    .with_hint("e.g. selection = \"schema:bronze\""),
            );
            continue;
        };
        match crate::selection::select(graph, selection) {
            Ok(keys) => {
                for k in keys {
                    take(k, c, at.clone(), true, &mut out, problems);
                }
            }
            Err(e) => problems.push(Diagnostic::error(at, format!("`[[default_checks]]` selection: {e}"))),
        }
    }
    for key in bronze.keys() {
        let checks = out.entry(key.clone()).or_default();
        if !checks.iter().any(|c| c.kind == CheckKind::Reconcile) {
            checks.push(
                CheckConfig { kind: Some(CheckKind::Reconcile), ..Default::default() }
                    .check()
                    .expect("a valid default"),
            );
        }
    }
    // One name per asset: results are stored and compared under it.
    for (key, checks) in &out {
        let mut names = std::collections::BTreeSet::new();
        for c in checks {
            if !names.insert(c.name.as_str()) {
                problems.push(
                    Diagnostic::error(Location::file(PROJECT_FILE), format!("{key} has two checks named `{}`", c.name))
                        .with_hint("give one of them a `name`"),
                );
            }
        }
    }
    out
}

fn build_graph(
    models: &BTreeMap<AssetKey, Model>,
    bronze: &BTreeMap<AssetKey, SourceTable>,
    sources: &BTreeMap<String, Source>,
) -> AssetGraph {
    let bronze_nodes = bronze.values().map(|t| AssetNode {
        key: t.key.clone(),
        tags: sources.get(&t.source).map(|s| s.config.tags.clone()).unwrap_or_default(),
        source: Some(t.source.clone()),
    });
    let model_nodes =
        models.values().map(|m| AssetNode { key: m.key.clone(), tags: m.config.tags.clone(), source: None });
    let nodes = bronze_nodes.chain(model_nodes);
    let edges = models.values().flat_map(|m| {
        // A `relationships` check reads the asset it points at: that is built first.
        let checked = m.config.checks.iter().filter_map(|c| match c.check() {
            Ok(CheckSpec { check: Check::Relationships { to, .. }, .. }) if to != m.key => Some(to),
            _ => None,
        });
        m.refs
            .iter()
            .filter_map(referenced)
            // An incremental model may read its own current table (e.g. its high-water mark).
            .filter(|up| !(up == &m.key && m.config.materialized == Materialization::Incremental))
            .chain(checked)
            .map(|up| (up, m.key.clone()))
            .collect::<Vec<_>>()
    });
    AssetGraph::new(nodes, edges)
}

impl Project {
    /// Of the lake's `tables`, those nothing in the project defines any more: a model whose
    /// file was deleted or renamed, a source table no longer listed. They stay queryable until
    /// `basin drop` moves them out.
    pub fn orphans<'a>(&self, tables: &'a [AssetKey]) -> Vec<&'a AssetKey> {
        tables.iter().filter(|k| !self.defines(k)).collect()
    }

    /// Whether a model or a source table of the project is `key` (a table `include` would
    /// discover counts, whether or not a model reads it yet).
    pub fn defines(&self, key: &AssetKey) -> bool {
        if self.models.contains_key(key) || self.bronze.contains_key(key) {
            return true;
        }
        key.schema == BRONZE
            && key.name.split_once("__").is_some_and(|(source, table)| {
                self.sources.get(source).is_some_and(|s| s.discovers(table) || s.tables.iter().any(|t| t.key == *key))
            })
    }

    /// The models of `keys` in dependency order (bronze tables left out).
    pub fn ordered<'a>(&'a self, keys: impl IntoIterator<Item = &'a AssetKey>) -> Vec<&'a Model> {
        self.graph.order(keys).into_iter().filter_map(|k| self.models.get(k)).collect()
    }
}
