//! What a role may read (grants) and how it sees tagged columns (masking).

use std::collections::BTreeMap;
use std::time::Duration;

use basin_core::serve::RoleConfig;
use basin_core::{AssetKey, Project};
use datafusion::arrow::datatypes::DataType;

use crate::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Grant {
    All,
    Schema(String),
    Table(String, String),
}

/// One role's grants, masks and limits.
#[derive(Debug, Clone)]
pub struct Role {
    pub name: String,
    grants: Vec<Grant>,
    /// Tag (or tag prefix) → masking function.
    masks: BTreeMap<String, String>,
    pub statement_timeout: Option<Duration>,
    pub memory_limit: Option<usize>,
    /// Most rows one HTTP answer carries.
    pub max_rows: Option<u64>,
}

impl Role {
    pub fn from_config(name: &str, c: &RoleConfig) -> Result<Role, Error> {
        let grants = c
            .select
            .iter()
            .map(|g| match g.split_once('.') {
                _ if g == "*" => Grant::All,
                None => Grant::Schema(g.to_ascii_lowercase()),
                Some((s, "*")) => Grant::Schema(s.to_ascii_lowercase()),
                Some((s, t)) => Grant::Table(s.to_ascii_lowercase(), t.to_ascii_lowercase()),
            })
            .collect();
        let statement_timeout = c
            .statement_timeout
            .as_deref()
            .map(basin_core::source::parse_duration)
            .transpose()
            .map_err(|e| Error::Config(format!("roles.{name}.statement_timeout: {e}")))?;
        let memory_limit = c
            .memory_limit
            .as_deref()
            .map(basin_core::daemon::parse_size)
            .transpose()
            .map_err(|e| Error::Config(format!("roles.{name}.memory_limit: {e}")))?;
        Ok(Role {
            name: name.to_string(),
            grants,
            masks: c.mask.clone(),
            statement_timeout,
            memory_limit,
            max_rows: c.max_rows,
        })
    }

    /// A role that reads everything unmasked (the local, password-less default).
    pub fn superuser(name: &str) -> Role {
        Role {
            name: name.to_string(),
            grants: vec![Grant::All],
            masks: BTreeMap::new(),
            statement_timeout: None,
            memory_limit: None,
            max_rows: None,
        }
    }

    pub fn may_read(&self, schema: &str, table: &str) -> bool {
        let (schema, table) = (schema.to_ascii_lowercase(), table.to_ascii_lowercase());
        self.grants.iter().any(|g| match g {
            Grant::All => true,
            Grant::Schema(s) => *s == schema,
            Grant::Table(s, t) => *s == schema && *t == table,
        })
    }

    /// Whether the role may read anything in `schema` (so that it is listed).
    pub fn sees_schema(&self, schema: &str) -> bool {
        let schema = schema.to_ascii_lowercase();
        self.grants.iter().any(|g| match g {
            Grant::All => true,
            Grant::Schema(s) | Grant::Table(s, _) => *s == schema,
        })
    }

    /// The masking function for a column with `tags`: the longest tag or tag prefix the role
    /// masks (`pii` covers `pii:email`).
    pub fn mask_for(&self, tags: &[String]) -> Option<&str> {
        let mut best: Option<(&str, usize)> = None;
        for tag in tags {
            for (pattern, function) in &self.masks {
                let matches = tag == pattern || tag.strip_prefix(pattern.as_str()).is_some_and(|r| r.starts_with(':'));
                if matches && best.is_none_or(|(_, len)| pattern.len() > len) {
                    best = Some((function, pattern.len()));
                }
            }
        }
        best.map(|(f, _)| f)
    }

    pub fn masks_anything(&self) -> bool {
        !self.masks.is_empty()
    }
}

/// Column tags of every asset: bronze tables (and their current state) from their sources,
/// models from their headers. Column names are kept lower-case.
pub fn column_tags(project: &Project) -> BTreeMap<AssetKey, BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<AssetKey, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (key, table) in &project.bronze {
        let tags: BTreeMap<String, Vec<String>> = table
            .columns
            .iter()
            .filter(|(_, c)| !c.tags.is_empty())
            .map(|(name, c)| (name.to_ascii_lowercase(), c.tags.clone()))
            .collect();
        if !tags.is_empty() {
            out.insert(AssetKey::new(basin_engine::bronze::CURRENT_SCHEMA, &key.name), tags.clone());
            out.insert(key.clone(), tags);
        }
    }
    for (key, model) in &project.models {
        let tags: BTreeMap<String, Vec<String>> = model
            .config
            .columns
            .iter()
            .filter(|(_, c)| !c.tags.is_empty())
            .map(|(name, c)| (name.to_ascii_lowercase(), c.tags.clone()))
            .collect();
        if !tags.is_empty() {
            out.insert(key.clone(), tags);
        }
    }
    out
}

/// The SQL of masking function `function` over column expression `col` of type `ty`; `None`
/// means "NULL of the column's type".
pub fn mask_sql(function: &str, col: &str, ty: &DataType) -> Option<String> {
    let text = matches!(ty, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    let as_text = if text { col.to_string() } else { format!("CAST({col} AS VARCHAR)") };
    match function {
        "mask_email" if text => Some(format!(
            "CASE WHEN {col} IS NULL THEN NULL WHEN strpos({col}, '@') > 0 \
             THEN concat('****', substr({col}, strpos({col}, '@'))) ELSE '****' END"
        )),
        "redact" if text => Some(format!("CASE WHEN {col} IS NULL THEN NULL ELSE '****' END")),
        "last4" => Some(format!("CASE WHEN {col} IS NULL THEN NULL ELSE concat('****', right({as_text}, 4)) END")),
        "hash" => Some(format!("encode(sha256({as_text}), 'hex')")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(select: &[&str], mask: &[(&str, &str)]) -> Role {
        let c = RoleConfig {
            select: select.iter().map(|s| s.to_string()).collect(),
            mask: mask.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            ..Default::default()
        };
        Role::from_config("r", &c).unwrap()
    }

    #[test]
    fn grants_cover_schemas_and_tables() {
        let r = role(&["gold", "silver.dim_customer", "bronze.*"], &[]);
        assert!(r.may_read("gold", "revenue") && r.may_read("GOLD", "x"));
        assert!(r.may_read("silver", "dim_customer") && !r.may_read("silver", "fact_invoice"));
        assert!(r.may_read("bronze", "v3__customer"));
        assert!(!r.may_read("basin", "query_log"));
        assert!(r.sees_schema("silver") && !r.sees_schema("basin"));
        assert!(role(&["*"], &[]).may_read("basin", "query_log"));
    }

    #[test]
    fn the_longest_matching_tag_picks_the_mask() {
        let r = role(&["*"], &[("pii", "redact"), ("pii:email", "mask_email")]);
        assert_eq!(r.mask_for(&["pii:email".into()]), Some("mask_email"));
        assert_eq!(r.mask_for(&["pii:phone".into()]), Some("redact"));
        assert_eq!(r.mask_for(&["piix".into()]), None, "a prefix only matches up to a colon");
        assert_eq!(r.mask_for(&["finance".into()]), None);
    }
}
