//! Asset keys: `<schema>.<name>`, lower-case unless quoted, the name of a Delta table at
//! `<root>/<schema>/<name>` and of a table in SQL.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AssetKey {
    pub schema: String,
    pub name: String,
}

impl AssetKey {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        AssetKey { schema: schema.into(), name: name.into() }
    }

    /// Parse `schema.name`; `None` unless there are exactly two non-empty parts.
    pub fn parse(text: &str) -> Option<Self> {
        let (schema, name) = text.split_once('.')?;
        if schema.is_empty() || name.is_empty() || name.contains('.') {
            return None;
        }
        Some(AssetKey::new(schema, name))
    }

    /// The path of the asset's table below the storage root.
    pub fn table_path(&self) -> String {
        format!("{}/{}", self.schema, self.name)
    }
}

impl fmt::Display for AssetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// Whether `part` is a plain identifier usable as a schema or table name without quoting.
pub fn is_plain_identifier(part: &str) -> bool {
    let mut chars = part.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Schemas Basin reserves for itself.
pub const RESERVED_SCHEMAS: &[&str] = &["basin", "bronze_current", "information_schema", "pg_catalog"];
