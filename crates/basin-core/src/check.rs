//! Data checks: assertions about an asset's data, evaluated after each materialisation (and by
//! `basin check`). Declared as `[[checks]]` in a model's header, as `[[tables.checks]]` in a
//! source file, and as project-wide `[[default_checks]]` in `basin.toml` with a `selection`
//! saying which assets get them.
//!
//! ```toml
//! [[checks]]
//! type = "not_null"
//! columns = ["invoice_id", "customer_id"]
//! severity = "error"        # default; "warn" records and alerts without blocking
//! ```
//!
//! An `error` check that fails stops every downstream asset of the run; a `warn` one does not.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::NaiveTime;
use serde::Deserialize;

use crate::asset::AssetKey;
use crate::values::Columns;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    #[default]
    Error,
    Warn,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warn => "warn",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    NotNull,
    Unique,
    AcceptedValues,
    Relationships,
    RowCount,
    Expression,
    Freshness,
    VolumeChange,
    NullRate,
    Schema,
    Reconcile,
}

impl CheckKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::NotNull => "not_null",
            CheckKind::Unique => "unique",
            CheckKind::AcceptedValues => "accepted_values",
            CheckKind::Relationships => "relationships",
            CheckKind::RowCount => "row_count",
            CheckKind::Expression => "expression",
            CheckKind::Freshness => "freshness",
            CheckKind::VolumeChange => "volume_change",
            CheckKind::NullRate => "null_rate",
            CheckKind::Schema => "schema",
            CheckKind::Reconcile => "reconcile",
        }
    }

    /// Checks that judge single rows, which `dq_flags` can turn into row flags.
    pub fn is_row_level(self) -> bool {
        matches!(
            self,
            CheckKind::NotNull | CheckKind::AcceptedValues | CheckKind::Expression | CheckKind::Relationships
        )
    }
}

/// A literal in `accepted_values`: written as TOML strings, integers, floats or booleans.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Literal {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl Literal {
    /// As SQL text.
    pub fn sql(&self) -> String {
        match self {
            Literal::Bool(b) => b.to_string().to_uppercase(),
            Literal::Int(i) => i.to_string(),
            Literal::Float(f) => f.to_string(),
            Literal::Text(s) => format!("'{}'", s.replace('\'', "''")),
        }
    }
}

/// A `[[checks]]` entry as written: one flat table whose `type` says which keys mean something.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct CheckConfig {
    #[serde(rename = "type")]
    pub kind: Option<CheckKind>,
    pub severity: Option<Severity>,
    /// Overrides the name results are stored under (default: type and columns).
    pub name: Option<String>,
    /// `not_null`, `unique` (together), `null_rate`.
    #[serde(default)]
    pub columns: Columns,
    /// `accepted_values`, `relationships`; `freshness`: a timestamp column (default: the time
    /// of the latest materialisation).
    pub column: Option<String>,
    /// `accepted_values`.
    #[serde(default)]
    pub values: Vec<Literal>,
    /// `relationships`: the asset every key must exist in, and its column (default: `column`).
    pub to: Option<String>,
    pub field: Option<String>,
    /// `row_count`: bounds on rows; `null_rate`: `max` fraction of NULLs.
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// `expression`: a SQL predicate every row must satisfy.
    pub expression: Option<String>,
    /// `freshness`: `"26h"`, or `ready_by = "07:30"` in `timezone` (default UTC).
    pub max_age: Option<String>,
    pub ready_by: Option<String>,
    pub timezone: Option<String>,
    /// `volume_change`: the largest relative change in rows written against the average of the
    /// last `window` materialisations (default 7).
    pub max_change: Option<f64>,
    pub window: Option<usize>,
    /// `reconcile`: the share of the source's count the rows read may differ by (default 0.01).
    pub tolerance: Option<f64>,
    /// `schema`: expected columns and types (`"BIGINT NOT NULL"`, `"DECIMAL(18,4)"`, `"VARCHAR"`),
    /// and whether columns not listed are allowed (default true).
    #[serde(default)]
    pub contract: BTreeMap<String, String>,
    pub allow_extra: Option<bool>,
    /// `[[default_checks]]` in `basin.toml` only: the assets that get the check, in the
    /// selection syntax (`schema:bronze`, `tag:nightly`).
    pub selection: Option<String>,
}

/// A column and its expected type in a `schema` contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub column: String,
    /// Lower case, without `NOT NULL` (`decimal(18,4)`, `bigint`).
    pub sql_type: String,
    pub not_null: bool,
}

/// A checked check.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    NotNull { columns: Vec<String> },
    Unique { columns: Vec<String> },
    AcceptedValues { column: String, values: Vec<Literal> },
    Relationships { column: String, to: AssetKey, field: String },
    RowCount { min: Option<u64>, max: Option<u64> },
    Expression { sql: String },
    Freshness { column: Option<String>, max_age: Option<Duration>, ready_by: Option<(NaiveTime, chrono_tz::Tz)> },
    VolumeChange { max_change: f64, window: usize },
    NullRate { columns: Vec<String>, max: f64 },
    Schema { expected: Vec<Expected>, allow_extra: bool },
    Reconcile { tolerance: f64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckSpec {
    pub check: Check,
    pub kind: CheckKind,
    pub severity: Severity,
    /// What results are stored under: `not_null(customer_id)`.
    pub name: String,
}

impl CheckSpec {
    /// Whether it judges the asset's earlier materialisations (`volume_change`, `freshness` of
    /// the last build), which the run engine then reads from the metadata store.
    pub fn reads_history(&self) -> bool {
        matches!(self.check, Check::VolumeChange { .. } | Check::Freshness { column: None, .. })
    }
}

impl fmt::Display for CheckSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl CheckConfig {
    /// The check this config describes, or what is wrong with it.
    pub fn check(&self) -> Result<CheckSpec, String> {
        let kind = self.kind.ok_or("a check needs a `type`")?;
        let need = |v: &Option<String>, key: &str| {
            v.clone().filter(|s| !s.trim().is_empty()).ok_or_else(|| format!("`{}` needs `{key}`", kind.as_str()))
        };
        let columns = || {
            if self.columns.0.is_empty() {
                Err(format!("`{}` needs `columns`", kind.as_str()))
            } else {
                Ok(self.columns.0.clone())
            }
        };
        let fraction = |v: Option<f64>, key: &str, default: f64| match v.unwrap_or(default) {
            f if (0.0..=1.0).contains(&f) => Ok(f),
            f => Err(format!("`{key}` is a fraction between 0 and 1, not {f}")),
        };
        let check = match kind {
            CheckKind::NotNull => Check::NotNull { columns: columns()? },
            CheckKind::Unique => Check::Unique { columns: columns()? },
            CheckKind::AcceptedValues => {
                if self.values.is_empty() {
                    return Err("`accepted_values` needs `values`".into());
                }
                Check::AcceptedValues { column: need(&self.column, "column")?, values: self.values.clone() }
            }
            CheckKind::Relationships => {
                let column = need(&self.column, "column")?;
                let to = need(&self.to, "to")?;
                let to = AssetKey::parse(&to.to_lowercase())
                    .ok_or_else(|| format!("`to = \"{to}\"` is not an asset key (schema.name)"))?;
                Check::Relationships { field: self.field.clone().unwrap_or_else(|| column.clone()), column, to }
            }
            CheckKind::RowCount => {
                let bound = |v: Option<f64>, key: &str| match v {
                    Some(f) if f < 0.0 || f.fract() != 0.0 => Err(format!("`{key}` is a whole number of rows")),
                    Some(f) => Ok(Some(f as u64)),
                    None => Ok(None),
                };
                let (min, max) = (bound(self.min, "min")?, bound(self.max, "max")?);
                if min.is_none() && max.is_none() {
                    return Err("`row_count` needs `min`, `max` or both".into());
                }
                Check::RowCount { min, max }
            }
            CheckKind::Expression => Check::Expression { sql: need(&self.expression, "expression")? },
            CheckKind::Freshness => {
                let max_age = match &self.max_age {
                    Some(t) => Some(crate::values::parse_duration(t).map_err(|e| format!("`max_age`: {e}"))?),
                    None => None,
                };
                let ready_by = match &self.ready_by {
                    Some(t) => {
                        let time = NaiveTime::parse_from_str(t, "%H:%M")
                            .map_err(|_| format!("`ready_by = \"{t}\"` is not a time of day (HH:MM)"))?;
                        let zone = self.timezone.as_deref().unwrap_or("UTC");
                        let tz: chrono_tz::Tz = zone.parse().map_err(|_| format!("unknown time zone `{zone}`"))?;
                        Some((time, tz))
                    }
                    None => None,
                };
                if max_age.is_none() && ready_by.is_none() {
                    return Err("`freshness` needs `max_age` or `ready_by`".into());
                }
                Check::Freshness { column: self.column.clone(), max_age, ready_by }
            }
            CheckKind::VolumeChange => Check::VolumeChange {
                max_change: match self.max_change {
                    Some(f) if f >= 0.0 => f,
                    Some(f) => return Err(format!("`max_change` must not be negative, not {f}")),
                    None => return Err("`volume_change` needs `max_change` (e.g. 0.5 for ±50%)".into()),
                },
                window: self.window.unwrap_or(7).max(1),
            },
            CheckKind::NullRate => Check::NullRate {
                columns: columns()?,
                max: fraction(self.max, "max", f64::NAN).and_then(|f| {
                    if f.is_nan() { Err("`null_rate` needs `max` (a fraction)".to_string()) } else { Ok(f) }
                })?,
            },
            CheckKind::Schema => {
                if self.contract.is_empty() {
                    return Err("`schema` needs a `contract` table of column = \"TYPE [NOT NULL]\"".into());
                }
                let expected = self
                    .contract
                    .iter()
                    .map(|(column, t)| {
                        let t = t.trim().to_lowercase();
                        let (sql_type, not_null) = match t.strip_suffix("not null") {
                            Some(rest) => (rest.trim().to_string(), true),
                            None => (t, false),
                        };
                        Expected { column: column.clone(), sql_type, not_null }
                    })
                    .collect();
                Check::Schema { expected, allow_extra: self.allow_extra.unwrap_or(true) }
            }
            CheckKind::Reconcile => Check::Reconcile { tolerance: fraction(self.tolerance, "tolerance", 0.01)? },
        };
        let name = self.name.clone().unwrap_or_else(|| default_name(kind, &check));
        Ok(CheckSpec { check, kind, severity: self.severity.unwrap_or_default(), name })
    }
}

fn default_name(kind: CheckKind, check: &Check) -> String {
    let what = match check {
        Check::NotNull { columns } | Check::Unique { columns } | Check::NullRate { columns, .. } => columns.join(", "),
        Check::AcceptedValues { column, .. } => column.clone(),
        Check::Relationships { column, to, field } => format!("{column} -> {to}.{field}"),
        Check::Expression { sql } => sql.clone(),
        Check::Freshness { column: Some(c), .. } => c.clone(),
        _ => String::new(),
    };
    if what.is_empty() { kind.as_str().to_string() } else { format!("{}({what})", kind.as_str()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<CheckSpec, String> {
        toml::from_str::<CheckConfig>(toml_text).map_err(|e| e.to_string())?.check()
    }

    #[test]
    fn checks_are_named_by_type_and_columns_and_need_their_keys() {
        let c = parse("type = \"not_null\"\ncolumns = [\"a\", \"b\"]").unwrap();
        assert_eq!((c.name.as_str(), c.severity), ("not_null(a, b)", Severity::Error));
        let c = parse(
            "type = \"relationships\"\ncolumn = \"customer_id\"\nto = \"silver.dim_customer\"\nseverity = \"warn\"",
        )
        .unwrap();
        assert_eq!(c.name, "relationships(customer_id -> silver.dim_customer.customer_id)");
        assert_eq!(c.severity, Severity::Warn);
        assert!(parse("type = \"unique\"").unwrap_err().contains("`unique` needs `columns`"));
        assert!(parse("type = \"row_count\"").unwrap_err().contains("needs `min`, `max` or both"));
        assert!(parse("type = \"null_rate\"\ncolumns = [\"x\"]\nmax = 2.0").unwrap_err().contains("a fraction"));
        assert!(parse("type = \"freshness\"\nready_by = \"7h30\"").unwrap_err().contains("not a time of day"));
        let s = parse(
            "type = \"schema\"\nallow_extra = false\n[contract]\nid = \"BIGINT NOT NULL\"\namount = \"decimal(18,4)\"",
        )
        .unwrap();
        assert_eq!(
            s.check,
            Check::Schema {
                expected: vec![
                    Expected { column: "amount".into(), sql_type: "decimal(18,4)".into(), not_null: false },
                    Expected { column: "id".into(), sql_type: "bigint".into(), not_null: true },
                ],
                allow_extra: false
            }
        );
        let v =
            parse("type = \"accepted_values\"\ncolumn = \"status\"\nvalues = [\"paid\", \"it's\", 3, true]").unwrap();
        let Check::AcceptedValues { values, .. } = v.check else { panic!() };
        assert_eq!(values.iter().map(Literal::sql).collect::<Vec<_>>(), ["'paid'", "'it''s'", "3", "TRUE"]);
    }
}
