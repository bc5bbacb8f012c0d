//! Sources: `sources/<name>.toml` says where a source's tables come from and how each is
//! extracted into bronze (`full` snapshot or `incremental` by a cursor column). Read and
//! checked here without connecting; each table becomes the asset `bronze.<source>__<table>`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::asset::{AssetKey, is_plain_identifier};
use crate::diagnostic::{Diagnostic, Location};
use crate::model::ColumnConfig;
use crate::toml_check::{self, TomlSource, fields_of};
use crate::values::Columns;
pub use crate::values::parse_duration;
use crate::values::{Secret, interpolate_env};

/// The schema every source table lands in.
pub const BRONZE: &str = "bronze";
/// The schema of each bronze table's current state (latest snapshot, or latest row per key).
pub const BRONZE_CURRENT: &str = "bronze_current";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Mysql,
    Postgres,
    Sqlite,
    Files,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Mysql => "mysql",
            SourceKind::Postgres => "postgres",
            SourceKind::Sqlite => "sqlite",
            SourceKind::Files => "files",
        }
    }

    /// The database kind a connection URL points at, from its scheme (`mariadb://` is MySQL).
    pub fn of_url(url: &str) -> Option<SourceKind> {
        let scheme = url.split_once(':').map(|(s, _)| s)?;
        [SourceKind::Mysql, SourceKind::Postgres, SourceKind::Sqlite]
            .into_iter()
            .find(|k| k.schemes().contains(&scheme))
    }

    /// URL schemes a connection URL of this kind may use.
    fn schemes(self) -> &'static [&'static str] {
        match self {
            SourceKind::Mysql => &["mysql", "mariadb"],
            SourceKind::Postgres => &["postgres", "postgresql"],
            SourceKind::Sqlite => &["sqlite"],
            SourceKind::Files => &[],
        }
    }
}

/// The format of a `files` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    Csv,
    Jsonl,
    Parquet,
}

impl FileFormat {
    /// The format a path's extension names (`.csv`, `.tsv`, `.jsonl`/`.ndjson`/`.json`, `.parquet`).
    pub fn from_path(path: &str) -> Option<FileFormat> {
        let ext = path.rsplit('.').next()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" | "tsv" | "txt" => Some(FileFormat::Csv),
            "jsonl" | "ndjson" | "json" => Some(FileFormat::Jsonl),
            "parquet" | "pq" => Some(FileFormat::Parquet),
            _ => None,
        }
    }
}

/// A column type declared for a `files` table (`[tables.columns.amount] type = "decimal(18,4)"`),
/// replacing the type inferred from the file: the values are parsed as this type, and a value
/// that is not one fails the table naming the file and line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Boolean,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    /// Precision (1–38) and scale.
    Decimal(u8, i8),
    Date,
    /// A wall-clock time without zone.
    Timestamp,
    /// An instant, stored in UTC.
    TimestampUtc,
    Text,
    Binary,
}

impl ColumnType {
    /// SQL spellings: `boolean`, `smallint`, `int`/`integer`, `bigint`, `real`/`float4`,
    /// `double`/`float8`/`double precision`, `decimal(p,s)`/`numeric(p,s)`, `date`,
    /// `timestamp`/`datetime`, `timestamptz`/`timestamp with time zone`, `text`/`varchar(n)`/
    /// `char(n)`/`string`, `binary`/`bytea`/`blob`.
    pub fn parse(text: &str) -> Result<ColumnType, String> {
        let t = text.trim().to_ascii_lowercase().split_whitespace().collect::<Vec<_>>().join(" ");
        let (base, args) = match t.split_once('(') {
            Some((base, rest)) => {
                let Some(args) = rest.strip_suffix(')') else {
                    return Err(format!("`{text}` has an unclosed `(`"));
                };
                let args: Result<Vec<u32>, _> = args.split(',').map(|a| a.trim().parse::<u32>()).collect();
                (base.trim().to_string(), Some(args.map_err(|_| format!("`{text}`: the arguments must be numbers"))?))
            }
            None => (t.clone(), None),
        };
        let plain = |ty: ColumnType| match &args {
            None => Ok(ty),
            Some(_) if matches!(ty, ColumnType::Text | ColumnType::Binary) => Ok(ty),
            Some(_) => Err(format!("`{text}` takes no arguments")),
        };
        match base.as_str() {
            "boolean" | "bool" => plain(ColumnType::Boolean),
            "smallint" | "int2" => plain(ColumnType::Int16),
            "int" | "integer" | "int4" => plain(ColumnType::Int32),
            "bigint" | "int8" => plain(ColumnType::Int64),
            "real" | "float4" => plain(ColumnType::Float32),
            "double" | "double precision" | "float8" | "float" => plain(ColumnType::Float64),
            "date" => plain(ColumnType::Date),
            "timestamp" | "datetime" | "timestamp without time zone" => plain(ColumnType::Timestamp),
            "timestamptz" | "timestamp with time zone" => plain(ColumnType::TimestampUtc),
            "text" | "string" | "varchar" | "char" | "character varying" => plain(ColumnType::Text),
            "binary" | "varbinary" | "bytea" | "blob" => plain(ColumnType::Binary),
            "decimal" | "numeric" => match args.as_deref() {
                Some([p]) if (1..=38).contains(p) => Ok(ColumnType::Decimal(*p as u8, 0)),
                Some([p, s]) if (1..=38).contains(p) && s <= p => Ok(ColumnType::Decimal(*p as u8, *s as i8)),
                Some(_) => Err(format!("`{text}`: precision is 1 to 38 and the scale at most the precision")),
                None => Err(format!("`{text}` needs a precision and scale, e.g. decimal(18,4)")),
            },
            _ => Err(format!("`{text}` is not a known column type")),
        }
    }
}

/// How a table is extracted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A complete snapshot each run, replacing today's partition.
    #[default]
    Full,
    /// Rows past the stored watermark of `cursor`, re-reading the `lag` window.
    Incremental,
}

/// How rows deleted in the source leave the lake (`deletes` of a table).
///
/// - `"key_snapshot"`: each run (or every `key_snapshot_every` runs) of an incremental table
///   reads the source's primary keys (the keys only) and lands a tombstone for every current
///   key the source no longer has;
/// - `{ soft = "deleted_at" }`: the source marks deletions in a column; a row whose latest
///   version has it set is deleted.
///
/// Either way `bronze_current` leaves deleted keys out, incremental `MERGE` models delete
/// their rows, and `scd2` models close them. Bronze keeps every row landed, and the
/// tombstones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletes {
    KeySnapshot { every: u32 },
    Soft { column: String },
}

impl<'de> Deserialize<'de> for Deletes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let expected = "`deletes = \"key_snapshot\"`, `{ key_snapshot_every = N }` or `{ soft = \"<column>\" }`";
        match toml::Value::deserialize(d)? {
            toml::Value::String(s) if s == "key_snapshot" => Ok(Deletes::KeySnapshot { every: 1 }),
            toml::Value::Table(t) if t.len() == 1 => match t.iter().next() {
                Some((k, toml::Value::Integer(n))) if k == "key_snapshot_every" && *n >= 1 => {
                    Ok(Deletes::KeySnapshot { every: u32::try_from(*n).map_err(D::Error::custom)? })
                }
                Some((k, toml::Value::String(c))) if k == "soft" && !c.is_empty() => {
                    Ok(Deletes::Soft { column: c.clone() })
                }
                _ => Err(D::Error::custom(format!("expected {expected}"))),
            },
            _ => Err(D::Error::custom(format!("expected {expected}"))),
        }
    }
}

/// Settings shared by every table of a source unless the table says otherwise.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TableDefaults {
    pub mode: Option<Mode>,
    pub cursor: Option<String>,
    /// How far before the watermark each incremental run re-reads, e.g. `"5m"`.
    pub lag: Option<String>,
    /// Rows per chunk when a large table is read in parallel key ranges.
    pub chunk_rows: Option<u64>,
    /// Land past breaking schema changes without `--accept-schema-change` (see
    /// [`TableConfig::accept_schema_change`]).
    pub accept_schema_change: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct TableConfig {
    /// The table's name in the source, as the source spells it.
    pub name: String,
    /// Its bronze name (`bronze.<source>__<as>`), for a table whose own name does not make a
    /// good one or collides with another's (`Orders` and `orders`).
    #[serde(rename = "as")]
    pub bronze_as: Option<String>,
    pub mode: Option<Mode>,
    pub cursor: Option<String>,
    /// Read from the source's catalog when omitted.
    #[serde(default)]
    pub primary_key: Columns,
    pub lag: Option<String>,
    pub chunk_rows: Option<u64>,
    /// How rows deleted in the source are noticed ([`Deletes`]); by default they are not
    /// (a `full` table's snapshot has only the rows the source has).
    pub deletes: Option<Deletes>,
    /// `files` sources: the file or glob pattern (`data/*.csv`), relative to the project.
    pub path: Option<String>,
    /// `files` sources: `csv`, `jsonl` or `parquet`; taken from the extension when omitted.
    pub format: Option<FileFormat>,
    /// CSV: the field delimiter (default `,`) and whether the first line names the columns
    /// (default true).
    pub delimiter: Option<String>,
    pub header: Option<bool>,
    pub description: Option<String>,
    #[serde(default)]
    pub columns: BTreeMap<String, ColumnConfig>,
    /// Checks of the bronze table, evaluated after each ingestion (`[[tables.checks]]`).
    #[serde(default)]
    pub checks: Vec<crate::check::CheckConfig>,
    /// Always land past a breaking schema change, as `--accept-schema-change` does for one
    /// run: a removed column stays NULL, a type that no longer fits lands alongside
    /// (`name__v2`). For tables whose source is known to change shape; recorded each time.
    pub accept_schema_change: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SourceConfig {
    pub kind: SourceKind,
    /// Connection URL (`mysql://`, `postgres://`, `sqlite://`), `${ENV}` interpolated.
    pub url: Option<Secret>,
    /// Tables to discover from the source's catalog (glob patterns on table names).
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// `files` sources on an object store: its options (credentials, `region`, `endpoint`…,
    /// as for `[storage.options]`), `${ENV}` interpolated.
    #[serde(default)]
    pub options: BTreeMap<String, Secret>,
    /// At most this many connections to the source at once.
    pub max_connections: Option<usize>,
    /// MySQL: read TINYINT(1) columns as booleans (values other than 0 and 1 fail the table).
    pub tinyint1_as_boolean: Option<bool>,
    /// PostgreSQL: what a `date`/`timestamp` value of `infinity` or `-infinity` becomes.
    pub infinity: Option<Infinity>,
    /// Further attempts at a table whose read fails on a transient error (a dropped
    /// connection, a server restarting, a deadlock); default 2.
    pub retries: Option<u32>,
    /// Wait before the first retry, doubling each time; default `"1s"`.
    pub retry_delay: Option<String>,
    pub owner: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub defaults: TableDefaults,
    #[serde(default)]
    pub tables: Vec<TableConfig>,
}

/// What a PostgreSQL `infinity`/`-infinity` date or timestamp becomes in bronze: the table
/// fails naming the column and row (`error`, the default), NULL counted like MySQL's zero
/// dates (`null`), or the latest/earliest value the column can hold (`clamp`:
/// 9999-12-31 / 0001-01-01, at 23:59:59.999999 / 00:00:00 for timestamps).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Infinity {
    #[default]
    Error,
    Null,
    Clamp,
}

/// A source as read from `sources/<name>.toml`.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub file: String,
    pub config: SourceConfig,
    /// Every table named in `[[tables]]`, with defaults applied.
    pub tables: Vec<SourceTable>,
}

/// One source table with its effective settings.
#[derive(Debug, Clone)]
pub struct SourceTable {
    pub source: String,
    pub name: String,
    pub key: AssetKey,
    pub mode: Mode,
    pub cursor: Option<String>,
    pub primary_key: Vec<String>,
    pub lag: Duration,
    pub chunk_rows: u64,
    pub deletes: Option<Deletes>,
    pub path: Option<String>,
    pub format: Option<FileFormat>,
    pub delimiter: Option<String>,
    pub header: Option<bool>,
    pub description: Option<String>,
    pub columns: BTreeMap<String, ColumnConfig>,
    pub checks: Vec<crate::check::CheckConfig>,
    /// Land past breaking schema changes on every run (`accept_schema_change = true`).
    pub accept_schema_change: bool,
}

pub const DEFAULT_LAG: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_CHUNK_ROWS: u64 = 1_000_000;
pub const DEFAULT_MAX_CONNECTIONS: usize = 4;

impl Source {
    /// The bronze asset of a source table: `bronze.<source>__<table>`, lower-cased, with every
    /// character other than a letter, a digit or `_` written `_` (`Order Items` lands as
    /// `bronze.shop__order_items`). Names that meet that way (`Orders`, `orders`) are refused
    /// until one is mapped with `as`.
    pub fn bronze_key(source: &str, table: &str) -> AssetKey {
        let name: String =
            table.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
        AssetKey::new(BRONZE, format!("{source}__{name}"))
    }

    /// Whether `[[tables]]` entry `listed` is the catalog's table `table`: the same name, or
    /// the same but for case when the catalog has no table of exactly the entry's name.
    pub fn lists<'a>(listed: &str, table: &str, catalog: impl IntoIterator<Item = &'a str>) -> bool {
        listed == table || (listed.eq_ignore_ascii_case(table) && !catalog.into_iter().any(|c| c == listed))
    }

    /// The tables of the source's catalog `catalog` that `include`/`exclude` discover and no
    /// `[[tables]]` entry lists, with their effective settings.
    pub fn discovered(&self, catalog: &[String]) -> Vec<SourceTable> {
        let names = || catalog.iter().map(String::as_str);
        catalog
            .iter()
            .filter(|t| self.discovers(t) && !self.tables.iter().any(|x| Source::lists(&x.name, t, names())))
            .map(|t| self.discovered_table(t))
            .collect()
    }

    /// Tables of `tables` that would land under one bronze name: (the name, the tables).
    pub fn collisions(tables: &[SourceTable]) -> Vec<(AssetKey, Vec<String>)> {
        let mut by_key: BTreeMap<&AssetKey, Vec<String>> = BTreeMap::new();
        for t in tables {
            by_key.entry(&t.key).or_default().push(t.name.clone());
        }
        by_key.into_iter().filter(|(_, names)| names.len() > 1).map(|(k, names)| (k.clone(), names)).collect()
    }

    pub fn max_connections(&self) -> usize {
        self.config.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS).max(1)
    }

    /// Further attempts after a transient failure, and the wait before the first.
    pub fn retries(&self) -> (u32, Duration) {
        let delay = self.config.retry_delay.as_deref().and_then(|d| parse_duration(d).ok());
        (self.config.retries.unwrap_or(2), delay.unwrap_or(Duration::from_secs(1)))
    }

    /// Whether `table` (a source table name) is discovered by `include`/`exclude`.
    pub fn discovers(&self, table: &str) -> bool {
        let t = table.to_lowercase();
        self.config.include.iter().any(|p| glob(&p.to_lowercase(), &t))
            && !self.config.exclude.iter().any(|p| glob(&p.to_lowercase(), &t))
    }

    /// Effective settings for a table discovered from the catalog (not in `[[tables]]`).
    pub fn discovered_table(&self, name: &str) -> SourceTable {
        let config = TableConfig { name: name.to_string(), ..Default::default() };
        self.effective(&config, &mut Vec::new(), "")
    }

    fn effective(&self, t: &TableConfig, out: &mut Vec<Diagnostic>, text: &str) -> SourceTable {
        let d = &self.config.defaults;
        let lag_text = t.lag.as_deref().or(d.lag.as_deref());
        let lag = match lag_text.map(parse_duration) {
            None => DEFAULT_LAG,
            Some(Ok(lag)) => lag,
            Some(Err(e)) => {
                out.push(
                    Diagnostic::error(
                        self.locate(text, lag_text.unwrap_or("lag")),
                        format!("invalid `lag` for table `{}`: {e}", t.name),
                    )
                    .with_hint("write a duration such as \"30s\", \"5m\", \"2h\" or \"1d\""),
                );
                DEFAULT_LAG
            }
        };
        SourceTable {
            source: self.name.clone(),
            name: t.name.clone(),
            key: match &t.bronze_as {
                Some(name) => AssetKey::new(BRONZE, format!("{}__{name}", self.name)),
                None => Source::bronze_key(&self.name, &t.name),
            },
            mode: t.mode.or(d.mode).unwrap_or_default(),
            cursor: t.cursor.clone().or_else(|| d.cursor.clone()),
            primary_key: t.primary_key.0.clone(),
            lag,
            chunk_rows: t.chunk_rows.or(d.chunk_rows).unwrap_or(DEFAULT_CHUNK_ROWS).max(1),
            description: t.description.clone(),
            columns: t.columns.clone(),
            checks: t.checks.clone(),
            deletes: t.deletes.clone(),
            path: t.path.clone(),
            format: t.format,
            delimiter: t.delimiter.clone(),
            header: t.header,
            accept_schema_change: t.accept_schema_change.or(d.accept_schema_change).unwrap_or(false),
        }
    }

    fn locate(&self, text: &str, needle: &str) -> Location {
        Location::at_offset(&self.file, text, text.find(needle).unwrap_or(0))
    }
}

fn keys_at(path: &[String]) -> Option<&'static [&'static str]> {
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    Some(match path.as_slice() {
        [] => fields_of::<SourceConfig>(),
        ["defaults"] => fields_of::<TableDefaults>(),
        ["tables"] => fields_of::<TableConfig>(),
        ["tables", "columns", _] => fields_of::<ColumnConfig>(),
        ["tables", "checks"] => fields_of::<crate::check::CheckConfig>(),
        _ => return None,
    })
}

/// Read `sources/<name>.toml`; problems go to `out`. `None` when it cannot be used at all.
pub(crate) fn read_source(file: &str, text: &str, out: &mut Vec<Diagnostic>) -> Option<Source> {
    let name = file.rsplit('/').next().unwrap_or(file).trim_end_matches(".toml").to_string();
    let src = TomlSource { file, file_text: text, offset: 0, what: "the source" };
    let mut config: SourceConfig = toml_check::parse(&src, text, keys_at, out)?;
    let at = |needle: &str| Location::at_offset(file, text, text.find(needle).unwrap_or(0));
    let mut ok = true;
    if !is_plain_identifier(&name) || name.contains("__") {
        out.push(
            Diagnostic::error(Location::file(file), format!("source name `{name}` is not a valid identifier"))
                .with_hint("name the file with lower-case letters, digits and single `_`, e.g. sources/v3.toml"),
        );
        ok = false;
    }

    match (&config.kind, &mut config.url) {
        (SourceKind::Files, Some(_)) => out.push(
            Diagnostic::error(at("url"), "a `files` source has no `url`").with_hint("give each table a `path` instead"),
        ),
        (SourceKind::Files, None) => {}
        (kind, None) => {
            out.push(
                Diagnostic::error(at("kind"), format!("a `{}` source needs a connection `url`", kind.as_str()))
                    .with_hint(format!("e.g. url = \"{}://user:${{PASSWORD}}@host/db\"", kind.schemes()[0])),
            );
            ok = false;
        }
        (kind, Some(url)) => match interpolate_env(url.expose(), |v| std::env::var(v).ok()) {
            Err(var) => out.push(
                Diagnostic::error(
                    at(&format!("${{{var}")),
                    format!("`url` uses environment variable `{var}`, which is not set"),
                )
                .with_hint(format!("export {var}=… before running Basin")),
            ),
            Ok(value) => {
                if SourceKind::of_url(&value) != Some(*kind) {
                    out.push(
                        Diagnostic::error(
                            at("url"),
                            format!("a `{}` source needs a {}:// URL", kind.as_str(), kind.schemes()[0]),
                        )
                        .with_hint("check `kind` and `url` agree"),
                    );
                }
                *url = Secret::new(value);
            }
        },
    }
    if !config.options.is_empty() && config.kind != SourceKind::Files {
        out.push(
            Diagnostic::error(at("options"), format!("a `{}` source takes no `options`", config.kind.as_str()))
                .with_hint("`options` are object-store settings of a `files` source; credentials go in `url`"),
        );
    }
    for (key, value) in config.options.iter_mut() {
        match interpolate_env(value.expose(), |v| std::env::var(v).ok()) {
            Ok(v) => *value = Secret::new(v),
            Err(var) => out.push(
                Diagnostic::error(
                    at(&format!("${{{var}")),
                    format!("`options.{key}` uses environment variable `{var}`, which is not set"),
                )
                .with_hint(format!("export {var}=… before running Basin")),
            ),
        }
    }
    if let Err(e) = check_duration(config.retry_delay.as_deref()) {
        out.push(Diagnostic::error(at("retry_delay"), format!("invalid `retry_delay`: {e}")).with_hint("e.g. \"1s\""));
        config.retry_delay = None;
    }
    if let Err(e) = check_duration(config.defaults.lag.as_deref()) {
        out.push(Diagnostic::error(at("lag"), format!("invalid `defaults.lag`: {e}")).with_hint("e.g. \"5m\""));
        config.defaults.lag = None;
    }

    let mut source = Source { name, file: file.to_string(), config, tables: Vec::new() };
    let mut seen: BTreeMap<AssetKey, String> = BTreeMap::new();
    for t in source.config.tables.clone() {
        let table = source.effective(&t, out, text);
        let here = || source.locate(text, &format!("\"{}\"", t.name));
        if t.name.is_empty() || !is_plain_identifier(&table.key.name) {
            out.push(
                Diagnostic::error(here(), format!("table `{}` cannot be named in bronze as `{}`", t.name, table.key))
                    .with_hint("bronze names are lower-case letters, digits and `_`: set `as = \"<name>\"`"),
            );
            continue;
        }
        if let Some(first) = seen.insert(table.key.clone(), t.name.clone()) {
            let (message, hint) = if first == t.name {
                (format!("table `{}` is listed twice", t.name), "keep one entry".to_string())
            } else {
                (
                    format!("tables `{first}` and `{}` would both land as {}", t.name, table.key),
                    format!(
                        "give one of them its own bronze name: `as = \"{}_2\"`",
                        table.key.name.strip_prefix(&format!("{}__", source.name)).unwrap_or(&table.key.name)
                    ),
                )
            };
            out.push(Diagnostic::error(here(), message).with_hint(hint));
            continue;
        }
        if source.config.kind == SourceKind::Files {
            let problem =
                match (&table.path, table.format.or_else(|| table.path.as_deref().and_then(FileFormat::from_path))) {
                    (None, _) => Some(("needs a `path`", "e.g. path = \"landing/orders/*.csv\"")),
                    (Some(_), None) => Some(("has no known format", "set format = \"csv\", \"jsonl\" or \"parquet\"")),
                    _ if table.delimiter.as_ref().is_some_and(|d| d.len() != 1) => {
                        Some(("has a `delimiter` that is not one character", "e.g. delimiter = \";\""))
                    }
                    _ => None,
                };
            if let Some((what, hint)) = problem {
                out.push(Diagnostic::error(here(), format!("files table `{}` {what}", t.name)).with_hint(hint));
                continue;
            }
        }
        let mut bad_type = false;
        for (column, c) in &table.columns {
            let Some(declared) = &c.data_type else { continue };
            let at = || source.locate(text, &format!("{declared:?}"));
            if source.config.kind != SourceKind::Files {
                out.push(
                    Diagnostic::error(at(), format!("column `{column}` of `{}` declares a `type`", t.name))
                        .with_hint("only files tables take declared types; a database's come from its catalog"),
                );
                bad_type = true;
            } else if let Err(problem) = ColumnType::parse(declared) {
                out.push(Diagnostic::error(at(), format!("column `{column}` of `{}`: {problem}", t.name)).with_hint(
                    "e.g. type = \"bigint\", \"double\", \"decimal(18,4)\", \"date\", \"timestamp\", \"text\"",
                ));
                bad_type = true;
            }
        }
        if bad_type {
            continue;
        }
        if let Some(problem) = match (&table.deletes, table.mode) {
            (Some(Deletes::KeySnapshot { .. }), _) if source.config.kind == SourceKind::Files => {
                Some("a files table has no keys to snapshot")
            }
            (Some(Deletes::KeySnapshot { .. }), Mode::Full) => {
                Some("a `full` table needs no key snapshot: each snapshot has only the rows the source has")
            }
            _ => None,
        } {
            out.push(
                Diagnostic::error(
                    source.locate(text, "deletes"),
                    format!("`deletes` of table `{}`: {problem}", t.name),
                )
                .with_hint("use `deletes = \"key_snapshot\"` on incremental database tables"),
            );
            continue;
        }
        if table.mode == Mode::Incremental && table.cursor.is_none() && source.config.kind != SourceKind::Files {
            out.push(Diagnostic::error(here(), format!("incremental table `{}` needs a `cursor`", t.name)).with_hint(
                "name a column that grows with every change, e.g. cursor = \"updated_at\" or an increasing id",
            ));
            continue;
        }
        source.tables.push(table);
    }
    // Tables discovered by `include` take the defaults: incremental ones need a default cursor.
    let discovered = source.discovered_table("");
    if !source.config.include.is_empty()
        && discovered.mode == Mode::Incremental
        && discovered.cursor.is_none()
        && source.config.kind != SourceKind::Files
    {
        out.push(
            Diagnostic::error(
                source.locate(text, "include"),
                "tables discovered by `include` are incremental (`[defaults] mode`) but have no cursor",
            )
            .with_hint(
                "set `cursor` in `[defaults]` (a column every discovered table has), or list each incremental \
                 table in [[tables]] with its own `cursor` and keep `[defaults] mode = \"full\"`",
            ),
        );
        ok = false;
    }
    if source.tables.is_empty() && source.config.include.is_empty() {
        out.push(
            Diagnostic::warning(Location::file(file), "the source names no tables")
                .with_hint("add [[tables]] entries, or include = [\"*\"] to take every table of the source"),
        );
    }
    ok.then_some(source)
}

fn check_duration(text: Option<&str>) -> Result<(), String> {
    text.map(parse_duration).transpose().map(|_| ())
}

/// `*` matches any run of characters; everything else matches itself.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pattern == text;
    }
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (Option<Source>, Vec<String>) {
        let mut out = Vec::new();
        let s = read_source("sources/v3.toml", text, &mut out);
        (s, out.iter().map(|d| d.to_string()).collect())
    }

    /// Any source table name lands under a plain bronze name; names that meet are refused until
    /// one is mapped with `as`, and a listed `Orders` is not the catalog's `orders`.
    #[test]
    fn source_tables_get_plain_collision_free_bronze_names() {
        assert_eq!(Source::bronze_key("shop", "Order Items").to_string(), "bronze.shop__order_items");
        assert_eq!(Source::bronze_key("shop", "`odd`\"name\"").to_string(), "bronze.shop___odd__name_");
        let (source, problems) = read(
            "kind = \"mysql\"\nurl = \"mysql://x/y\"\ninclude = [\"*\"]\n\
             [[tables]]\nname = \"Orders\"\nas = \"orders_upper\"\n\
             [[tables]]\nname = \"Order Items\"\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let source = source.unwrap();
        let keys: Vec<String> = source.tables.iter().map(|t| t.key.to_string()).collect();
        assert_eq!(keys, ["bronze.v3__orders_upper", "bronze.v3__order_items"]);
        let catalog: Vec<String> =
            ["Orders", "orders", "Order Items", "order_items", "Customers"].map(String::from).into();
        let found: Vec<String> = source.discovered(&catalog).iter().map(|t| t.name.clone()).collect();
        assert_eq!(
            found,
            ["orders", "order_items", "Customers"],
            "exact names first: `Orders` is listed, `orders` is not"
        );
        let all: Vec<SourceTable> = source.tables.iter().cloned().chain(source.discovered(&catalog)).collect();
        let collisions = Source::collisions(&all);
        assert_eq!(collisions.len(), 1, "{collisions:?}");
        assert_eq!(collisions[0].0.to_string(), "bronze.v3__order_items");
        assert_eq!(collisions[0].1, ["Order Items", "order_items"]);

        let (_, problems) = read(
            "kind = \"mysql\"\nurl = \"mysql://x/y\"\n[[tables]]\nname = \"A-b\"\n[[tables]]\nname = \"a_b\"\n\
             [[tables]]\nname = \"c\"\nas = \"Not Plain\"\n",
        );
        let all = problems.join("\n");
        assert!(all.contains("tables `A-b` and `a_b` would both land as bronze.v3__a_b"), "{all}");
        assert!(all.contains("as = \"a_b_2\""), "{all}");
        assert!(all.contains("table `c` cannot be named in bronze as `bronze.v3__Not Plain`"), "{all}");
    }

    #[test]
    fn column_types_parse_sql_spellings() {
        assert_eq!(ColumnType::parse("BIGINT"), Ok(ColumnType::Int64));
        assert_eq!(ColumnType::parse(" Decimal( 18 , 4 )"), Ok(ColumnType::Decimal(18, 4)));
        assert_eq!(ColumnType::parse("numeric(10)"), Ok(ColumnType::Decimal(10, 0)));
        assert_eq!(ColumnType::parse("timestamp  with time zone"), Ok(ColumnType::TimestampUtc));
        assert_eq!(ColumnType::parse("varchar(40)"), Ok(ColumnType::Text));
        assert_eq!(ColumnType::parse("double precision"), Ok(ColumnType::Float64));
        assert!(ColumnType::parse("decimal").unwrap_err().contains("needs a precision"));
        assert!(ColumnType::parse("decimal(39,2)").unwrap_err().contains("1 to 38"));
        assert!(ColumnType::parse("decimal(4,6)").is_err());
        assert!(ColumnType::parse("int(3)").unwrap_err().contains("no arguments"));
        assert!(ColumnType::parse("money").unwrap_err().contains("not a known column type"));
        assert!(ColumnType::parse("decimal(18,4").is_err());
    }

    #[test]
    fn declared_types_only_on_files_tables_and_only_known_ones() {
        let files = "kind = \"files\"\n[[tables]]\nname = \"orders\"\npath = \"in/*.csv\"\n\
                     [tables.columns.amount]\ntype = \"decimal(18,4)\"\n[tables.columns.id]\ntype = \"bigint\"\n";
        let (s, msgs) = read(files);
        assert!(msgs.is_empty(), "{msgs:#?}");
        assert_eq!(s.unwrap().tables[0].columns["amount"].data_type.as_deref(), Some("decimal(18,4)"));

        let (s, msgs) = read(&files.replace("bigint", "bigintt"));
        assert_eq!(s.unwrap().tables.len(), 0, "the table is refused");
        assert!(
            msgs[0].starts_with("sources/v3.toml:8:8: error: column `id` of `orders`: `bigintt` is not a known"),
            "{msgs:#?}"
        );

        let db = "kind = \"postgres\"\nurl = \"postgres://h/db\"\n[[tables]]\nname = \"orders\"\n\
                  [tables.columns.amount]\ntype = \"decimal(18,4)\"\n";
        let (_, msgs) = read(db);
        assert!(msgs[0].contains("column `amount` of `orders` declares a `type`"), "{msgs:#?}");

        let (_, msgs) = read("kind = \"postgres\"\nurl = \"postgres://h/db\"\noptions = { region = \"eu\" }\n");
        assert!(msgs[0].contains("a `postgres` source takes no `options`"), "{msgs:#?}");
        let (s, msgs) = read(
            "kind = \"files\"\noptions = { region = \"${BASIN_UNSET_FOR_TEST:-eu-west-1}\" }\n[[tables]]\nname = \"t\"\npath = \"s3://b/*.csv\"\n",
        );
        assert!(msgs.is_empty(), "{msgs:#?}");
        assert_eq!(s.unwrap().config.options["region"].expose(), "eu-west-1", "interpolated");
    }

    #[test]
    fn retry_settings_are_checked_and_defaulted() {
        let (s, problems) = read(
            "kind = \"sqlite\"\nurl = \"sqlite://x.db\"\nretries = 5\nretry_delay = \"soon\"\ninclude = [\"*\"]\n",
        );
        let all = problems.join("\n");
        assert!(all.contains("sources/v3.toml:4:1: error: invalid `retry_delay`"), "{all}");
        assert_eq!(s.unwrap().retries(), (5, Duration::from_secs(1)), "the bad delay falls back to 1s");
        let (s, problems) =
            read("kind = \"sqlite\"\nurl = \"sqlite://x.db\"\nretry_delay = \"3s\"\ninclude = [\"*\"]\n");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(s.unwrap().retries(), (2, Duration::from_secs(3)), "2 retries by default");
    }

    #[test]
    fn files_tables_need_a_path_with_a_known_format() {
        let (s, problems) = read(
            "kind = \"files\"\n[[tables]]\nname = \"a\"\n[[tables]]\nname = \"b\"\npath = \"x.bin\"\n\
             [[tables]]\nname = \"c\"\npath = \"x.csv\"\nmode = \"incremental\"\n\
             [[tables]]\nname = \"d\"\npath = \"in/*.tsv\"\ndelimiter = \"\\t\"\n",
        );
        let all = problems.join("\n");
        assert!(all.contains("files table `a` needs a `path`"), "{all}");
        assert!(all.contains("files table `b` has no known format"), "{all}");
        let s = s.unwrap();
        let usable: Vec<(&str, Mode)> = s.tables.iter().map(|t| (t.name.as_str(), t.mode)).collect();
        assert_eq!(usable, [("c", Mode::Incremental), ("d", Mode::Full)], "incremental files need no cursor: {all}");
        assert_eq!(s.tables[1].delimiter.as_deref(), Some("\t"));
    }

    #[test]
    fn tables_take_defaults() {
        let (s, problems) = read(
            "kind = \"sqlite\"\nurl = \"sqlite://billing.db\"\n[defaults]\nlag = \"10m\"\n\
             [[tables]]\nname = \"Invoice\"\nmode = \"incremental\"\ncursor = \"updated_at\"\nprimary_key = \"id\"\n\
             [[tables]]\nname = \"partner\"\n[tables.columns.email]\ntags = [\"pii:email\"]\n",
        );
        assert!(problems.is_empty(), "{problems:#?}");
        let s = s.unwrap();
        assert_eq!(s.tables[0].key.to_string(), "bronze.v3__invoice");
        assert_eq!((s.tables[0].mode, s.tables[0].lag), (Mode::Incremental, Duration::from_secs(600)));
        assert_eq!(s.tables[0].primary_key, vec!["id"]);
        assert_eq!((s.tables[1].mode, s.tables[1].chunk_rows), (Mode::Full, DEFAULT_CHUNK_ROWS));
        assert_eq!(s.tables[1].columns["email"].tags, vec!["pii:email"]);
    }

    #[test]
    fn every_problem_is_reported() {
        let (_, problems) = read(
            "kind = \"mysql\"\nurl = \"postgres://x/y\"\nmax_conections = 2\n\
             [[tables]]\nname = \"a\"\nmode = \"incremental\"\n\
             [[tables]]\nname = \"b\"\nlag = \"5 parsecs\"\n\
             [[tables]]\nname = \"b\"\n",
        );
        let all = problems.join("\n");
        assert!(all.contains("sources/v3.toml:3:1: error: unknown key `max_conections`"), "{all}");
        assert!(all.contains("did you mean `max_connections`?"), "{all}");
        assert!(all.contains("sources/v3.toml:2:1: error: a `mysql` source needs a mysql:// URL"), "{all}");
        assert!(all.contains("incremental table `a` needs a `cursor`"), "{all}");
        assert!(all.contains("invalid `lag` for table `b`: unknown unit `parsecs`"), "{all}");
        assert!(all.contains("table `b` is listed twice"), "{all}");
    }

    #[test]
    fn discovered_incremental_tables_need_a_default_cursor() {
        let (s, problems) = read(
            "kind = \"postgres\"\nurl = \"postgres://h/db\"\ninclude = [\"*\"]\n[defaults]\nmode = \"incremental\"\n",
        );
        let all = problems.join("\n");
        assert!(all.contains("sources/v3.toml:3:1: error: tables discovered by `include` are incremental"), "{all}");
        assert!(s.is_none(), "the source is not usable");
        let (s, problems) = read(
            "kind = \"postgres\"\nurl = \"postgres://h/db\"\ninclude = [\"*\"]\n\
             [defaults]\nmode = \"incremental\"\ncursor = \"updated_at\"\n",
        );
        assert!(problems.is_empty(), "{problems:#?}");
        assert_eq!(s.unwrap().discovered_table("orders").cursor.as_deref(), Some("updated_at"));
    }

    #[test]
    fn discovery_by_patterns() {
        let (s, _) = read("kind = \"postgres\"\nurl = \"postgres://h/db\"\ninclude = [\"*\"]\nexclude = [\"tmp_*\"]\n");
        let s = s.unwrap();
        assert!(s.discovers("Invoice") && !s.discovers("tmp_load"));
        assert_eq!(s.discovered_table("Invoice").key.to_string(), "bronze.v3__invoice");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("300ms").unwrap(), Duration::from_millis(300));
        assert!(parse_duration("m").is_err());
    }
}
