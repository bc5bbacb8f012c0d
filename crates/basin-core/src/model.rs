//! SQL models: `models/<schema>/<name>.sql`, one `SELECT`, with an optional leading
//! `/* basin … */` comment whose body is TOML configuration.

use std::collections::BTreeMap;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use sqlparser::dialect::GenericDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::asset::AssetKey;
use crate::diagnostic::Diagnostic;
use crate::sql_refs::TableRef;
use crate::toml_check::{self, TomlSource, fields_of};
pub use crate::values::Columns;

/// How a model's result becomes a table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Materialization {
    /// Full refresh: the whole result replaces the table in one atomic commit.
    #[default]
    Table,
    /// No data written: the query is evaluated whenever the view is read.
    View,
    /// MERGE on `unique_key`, or replace the partitions present in the new data.
    Incremental,
    /// Type-2 history on the business key `unique_key`: a change to a `tracked` column closes
    /// the current version (`valid_to`, `is_current = false`) and opens a new one; a key gone
    /// from the input is closed; an unchanged row writes nothing.
    Scd2,
}

impl Materialization {
    pub fn as_str(self) -> &'static str {
        match self {
            Materialization::Table => "table",
            Materialization::View => "view",
            Materialization::Incremental => "incremental",
            Materialization::Scd2 => "scd2",
        }
    }
}

/// The TOML of a model's `/* basin … */` header.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ModelConfig {
    #[serde(default)]
    pub materialized: Materialization,
    /// Key columns for `incremental` MERGE; the business key of an `scd2` model.
    #[serde(default)]
    pub unique_key: Columns,
    /// `scd2`: the columns whose change opens a new version (default: every column but the
    /// key and `updated_at`).
    #[serde(default)]
    pub tracked: Columns,
    /// `scd2`: the column that says when a row changed, used as `valid_from`/`valid_to`, so
    /// several changes to one key in one run each become a version. Without it, versions
    /// start at the run's time. `incremental` with `dedupe = "latest"`: the column that orders
    /// a key's rows.
    pub updated_at: Option<String>,
    /// `incremental`: what a build does with several rows of one `unique_key`. Unset, it is
    /// refused, naming the keys; `"latest"` keeps the row with the greatest `updated_at` (ties
    /// broken by the other columns, so the same rows always give the same row).
    pub dedupe: Option<Dedupe>,
    /// Partition columns of the Delta table; with `incremental` and no key, the partitions
    /// present in the new data are replaced.
    #[serde(default)]
    pub partition_by: Columns,
    /// Columns the table's rows are sorted by when it is written whole (`table`, and the
    /// first build or `--full-refresh` of the others), so the Parquet page statistics of those
    /// columns are narrow and a lookup or a range on them reads a page, not the table. For
    /// tables served to point lookups: `cluster_by = ["invoice_item_id"]`.
    #[serde(default)]
    pub cluster_by: Columns,
    /// `daily`: the model is built a day, or a range of days, at a time (`basin run
    /// --partition`, `basin backfill`; yesterday when none is given). Its SQL reads the range
    /// from `$partition_start` and `$partition_end` (the day after the last), and each build
    /// replaces exactly its days of the `partition_by` column, a DATE.
    pub partitions: Option<Partitioning>,
    /// Overrides the schema taken from the model's folder.
    pub schema: Option<String>,
    /// Overrides the name taken from the file name.
    pub name: Option<String>,
    pub owner: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub columns: BTreeMap<String, ColumnConfig>,
    /// `eager`: `basin daemon` materialises the model whenever an upstream asset has a newer
    /// materialisation than the last it reacted to (many upstream updates, one run).
    /// `on_cron`: once per tick of `cron`, as soon as every upstream asset has been
    /// materialised since that tick.
    pub automation: Option<Automation>,
    /// `on_cron`: the pattern (`"0 6 * * *"`) and its IANA time zone (default UTC).
    pub cron: Option<String>,
    pub timezone: Option<String>,
    /// The daemon's retry policy when this asset fails (`[retry] max_attempts = 5`); what it
    /// leaves out is taken from `[daemon.retry]`.
    pub retry: Option<crate::daemon::RetryOverride>,
    /// Checks evaluated after each build (`[[checks]]`).
    #[serde(default)]
    pub checks: Vec<crate::check::CheckConfig>,
    /// Instead of failing the model, its row-level checks (`not_null`, `accepted_values`,
    /// `expression`, `relationships`) add `dq_passed` and `dq_failure_reason` to every row.
    #[serde(default)]
    pub dq_flags: bool,
    /// Share of its rows a full replace of this table may drop (see `[run] max_shrink`).
    pub max_shrink: Option<f64>,
    /// `incremental`: the tables (as the query names them) read as only what they gained
    /// since the versions the model's last build read; the others are read whole. Default:
    /// the one table the query reads, if it reads one; none if it reads several (name the
    /// driving table, e.g. the facts' line items). `[]` reads every table whole.
    pub incremental_from: Option<Columns>,
    /// A freshness promise the daemon's watchdog judges at each deadline:
    /// `slo = { ready_by = "07:30", timezone = "Europe/Berlin" }` and/or `max_age = "26h"`.
    pub slo: Option<crate::slo::SloConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Partitioning {
    Daily,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dedupe {
    Latest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Automation {
    Eager,
    OnCron,
}

impl ModelConfig {
    /// The `cron` pattern (with `timezone`) as a schedule queuing `selection`; `None` without
    /// a pattern, `Err` naming what is wrong with it.
    pub fn cron_schedule(&self, selection: &str) -> Option<Result<crate::daemon::Schedule, String>> {
        let config = crate::daemon::ScheduleConfig {
            name: selection.to_string(),
            cron: self.cron.clone()?,
            timezone: self.timezone.clone(),
            selection: selection.to_string(),
            priority: 0,
            tags: BTreeMap::new(),
        };
        Some(crate::daemon::Schedule::parse(&config))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ColumnConfig {
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Files tables only: the column's type, instead of the one inferred from the file
    /// (`type = "decimal(18,4)"`); see [`crate::source::ColumnType`].
    #[serde(rename = "type")]
    pub data_type: Option<String>,
}

/// The keys of a model's `[columns.NAME]`: a model's column types come from its query.
const MODEL_COLUMN_KEYS: &[&str] = &["description", "tags"];

fn keys_at(path: &[String]) -> Option<&'static [&'static str]> {
    match path {
        [] => Some(fields_of::<ModelConfig>()),
        [c, _] if c == "columns" => Some(MODEL_COLUMN_KEYS),
        [r] if r == "retry" => Some(fields_of::<crate::daemon::RetryOverride>()),
        [c] if c == "checks" => Some(fields_of::<crate::check::CheckConfig>()),
        [s] if s == "slo" => Some(fields_of::<crate::slo::SloConfig>()),
        _ => None,
    }
}

/// An incremental model's own table, as its SQL names it: the table as it is on an
/// incremental build; on a first build or `--full-refresh`, an empty table (so a filter over it
/// passes every row).
pub const THIS: &str = "$this";
/// `TRUE` on an incremental build (the table exists, no `--full-refresh`), `FALSE` otherwise.
pub const IS_INCREMENTAL: &str = "$is_incremental";

/// Whether `sql` uses [`THIS`] or [`IS_INCREMENTAL`].
pub fn uses_variables(sql: &str) -> bool {
    variable_tokens(sql).is_ok_and(|tokens| {
        tokens.iter().any(|t| matches!(t, Token::Placeholder(p) if p == THIS || p == IS_INCREMENTAL))
    })
}

/// `sql` with [`THIS`] replaced by `this` and [`IS_INCREMENTAL`] by `TRUE` or `FALSE` (padded to
/// its length, so that positions after it stay where they were).
pub fn bind_variables(sql: &str, this: &str, incremental: bool) -> Result<String, String> {
    let mut out = String::with_capacity(sql.len() + this.len());
    for t in variable_tokens(sql)? {
        match t {
            Token::Placeholder(p) if p == THIS => out.push_str(this),
            Token::Placeholder(p) if p == IS_INCREMENTAL => {
                out.push_str(&format!("{:<1$}", if incremental { "TRUE" } else { "FALSE" }, IS_INCREMENTAL.len()))
            }
            other => out.push_str(&other.to_string()),
        }
    }
    Ok(out)
}

fn variable_tokens(sql: &str) -> Result<Vec<Token>, String> {
    Tokenizer::new(&GenericDialect {}, sql).tokenize().map_err(|e| e.to_string())
}

/// A model as read from its file.
#[derive(Debug, Clone)]
pub struct Model {
    pub key: AssetKey,
    /// Path relative to the project, with `/` separators.
    pub file: String,
    /// The whole file; positions in diagnostics are relative to it.
    pub text: String,
    pub config: ModelConfig,
    /// Tables the query reads, in order of appearance.
    pub refs: Vec<TableRef>,
    /// With `dq_flags = true`: the row-level checks that become the `dq_passed` and
    /// `dq_failure_reason` columns instead of failing the build (set when the project loads).
    pub flags: Vec<crate::check::CheckSpec>,
}

impl Model {
    /// The SQL query: the whole file, whose header is a comment to SQL, so positions in
    /// DataFusion's and sqlparser's messages are positions in the file.
    pub fn sql(&self) -> &str {
        &self.text
    }

    /// The references an `incremental` build reads as changes only (see
    /// [`ModelConfig::incremental_from`]): none for other materialisations, for a
    /// daily-partitioned model and for one whose `incremental_from` names a table it does not
    /// read (validation reports it).
    pub fn incremental_inputs(&self) -> Vec<Vec<String>> {
        if self.config.materialized != Materialization::Incremental || self.config.partitions.is_some() {
            return Vec::new();
        }
        let mut read: Vec<Vec<String>> = Vec::new();
        // Its own table (`$this`, its high-water mark) is read whole.
        let own = [self.key.schema.clone(), self.key.name.clone()];
        for r in self.refs.iter().filter(|r| r.parts.len() == 2 && r.parts != own) {
            if !read.contains(&r.parts) {
                read.push(r.parts.clone());
            }
        }
        match &self.config.incremental_from {
            None if read.len() == 1 => read,
            None => Vec::new(),
            Some(named) => {
                let named: Vec<Vec<String>> = named.0.iter().map(|n| reference_parts(n)).collect();
                read.into_iter().filter(|r| named.contains(r)).collect()
            }
        }
    }

    /// SHA-256 of the file, recorded with every commit so a table says which SQL built it.
    pub fn sql_hash(&self) -> String {
        let digest = Sha256::digest(self.text.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// `bronze_current.x` (or `"Quoted".x`) as the parts a [`TableRef`] holds: unquoted
/// identifiers folded to lower case, quoted ones kept.
pub fn reference_parts(name: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = name.trim();
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            parts.push(quoted[..end].to_string());
            rest = quoted.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find('.').unwrap_or(rest.len());
            parts.push(rest[..end].trim().to_lowercase());
            rest = &rest[end..];
        }
        rest = rest.trim_start().strip_prefix('.').unwrap_or(rest).trim_start();
    }
    parts
}

/// The header comment of a model file: the TOML body and its byte offset in the file.
pub(crate) fn header(text: &str) -> Option<(usize, &str)> {
    let start = text.len() - text.trim_start().len();
    let rest = text[start..].strip_prefix("/*")?;
    let body_start = rest.len() - rest.trim_start().len();
    let rest = rest[body_start..].strip_prefix("basin")?;
    if rest.chars().next().is_some_and(|c| !c.is_whitespace()) {
        return None;
    }
    let toml_offset = start + 2 + body_start + "basin".len();
    let end = text[toml_offset..].find("*/")?;
    Some((toml_offset, &text[toml_offset..toml_offset + end]))
}

/// Parse a model header; problems go to `out`.
pub(crate) fn parse_header(file: &str, text: &str, out: &mut Vec<Diagnostic>) -> Option<ModelConfig> {
    let Some((offset, toml)) = header(text) else {
        if text.trim_start().starts_with("/*") && text.trim_start()[2..].trim_start().starts_with("basin") {
            out.push(
                Diagnostic::error(
                    crate::diagnostic::Location::at_offset(file, text, text.find("/*").unwrap_or(0)),
                    "the `/* basin` header is never closed",
                )
                .with_hint("end the header with `*/`"),
            );
            return None;
        }
        return Some(ModelConfig::default());
    };
    let src = TomlSource { file, file_text: text, offset, what: "the model header" };
    toml_check::parse(&src, toml, keys_at, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_found_only_at_the_start() {
        let text = "  /* basin\nmaterialized = \"view\"\n*/\nSELECT 1";
        let (offset, toml) = header(text).unwrap();
        assert_eq!(toml.trim(), "materialized = \"view\"");
        assert_eq!(&text[offset..offset + 1], "\n");
        assert!(header("/* basinx */ SELECT 1").is_none());
        assert!(header("SELECT 1 /* basin\n*/").is_none());
    }

    #[test]
    fn header_errors_point_into_the_file() {
        let text = "/* basin\nmaterialized = \"tabel\"\nuniqe_key = [\"id\"]\n*/\nSELECT 1";
        let mut out = Vec::new();
        assert!(parse_header("models/s/m.sql", text, &mut out).is_none());
        let msgs: Vec<String> = out.iter().map(|d| d.to_string()).collect();
        assert_eq!(msgs.len(), 2, "{msgs:#?}");
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("models/s/m.sql:3:1: error: unknown key `uniqe_key`")
                    && m.contains("`unique_key`")),
            "{msgs:#?}"
        );
        assert!(
            msgs.iter().any(|m| m.starts_with("models/s/m.sql:2:16: error: invalid value") && m.contains("tabel")),
            "{msgs:#?}"
        );
    }

    #[test]
    fn a_model_column_cannot_declare_a_type() {
        let mut out = Vec::new();
        parse_header("m.sql", "/* basin\n[columns.amount]\ntype = \"decimal(18,4)\"\n*/\nSELECT 1", &mut out);
        let msgs: Vec<String> = out.iter().map(|d| d.to_string()).collect();
        assert!(msgs.iter().any(|m| m.contains("unknown key `columns.amount.type`")), "{msgs:#?}");
    }

    #[test]
    fn incremental_inputs_default_to_the_one_table_read() {
        let model = |header: &str, sql: &str| {
            let text = format!("/* basin\nmaterialized = \"incremental\"\nunique_key = \"id\"\n{header}*/\n{sql}");
            let mut out = Vec::new();
            let config = parse_header("m.sql", &text, &mut out).unwrap();
            assert!(out.is_empty(), "{out:?}");
            let refs = crate::sql_refs::table_refs(&text).unwrap();
            Model { key: AssetKey::new("silver", "m"), file: "m.sql".into(), text, config, refs, flags: Vec::new() }
        };
        let parts = |s: &str| s.split('.').map(str::to_string).collect::<Vec<_>>();
        let one = "SELECT * FROM bronze_current.o JOIN bronze_current.o p ON true";
        let two = "SELECT * FROM bronze_current.o o JOIN \"Silver\".c c ON true";
        assert_eq!(model("", one).incremental_inputs(), vec![parts("bronze_current.o")]);
        assert!(model("", two).incremental_inputs().is_empty(), "several tables: none unless named");
        assert_eq!(
            model("incremental_from = '\"Silver\".C'\n", two).incremental_inputs(),
            vec![vec!["Silver".to_string(), "c".to_string()]]
        );
        assert!(model("incremental_from = []\n", one).incremental_inputs().is_empty());
        let mut table = model("", one);
        table.config.materialized = Materialization::Table;
        assert!(table.incremental_inputs().is_empty());
    }

    #[test]
    fn unique_key_accepts_one_or_many() {
        let mut out = Vec::new();
        let c = parse_header("m.sql", "/* basin\nunique_key = \"id\"\n*/", &mut out).unwrap();
        assert_eq!(c.unique_key.0, vec!["id"]);
        let c = parse_header("m.sql", "/* basin\nunique_key = [\"a\", \"b\"]\n*/", &mut out).unwrap();
        assert_eq!(c.unique_key.0, vec!["a", "b"]);
        assert!(out.is_empty());
    }
}
