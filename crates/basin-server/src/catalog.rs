//! A role's view of the lake: the lake's catalog with grants enforced and tagged columns
//! masked. Masking is part of the plan: a masked table is replaced, wherever a query names
//! it, by a projection of its scan that applies the masking function, so no query shape
//! (alias, expression, join, CTE, subquery, prepared statement, export, EXPLAIN, error
//! message) reaches the raw value. Views are planned again over the masked tables, so what
//! a view derives from a masked column is masked too.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};

use async_trait::async_trait;
use basin_core::AssetKey;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::common::{DFSchema, DataFusionError, Result as DfResult};
use datafusion::datasource::{ViewTable, provider_as_source};
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, TableType};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

use crate::policy::{Role, mask_sql};

/// Schemas every role sees whatever its grants: the catalogs clients read at connect.
const OPEN_SCHEMAS: &[&str] = &["pg_catalog", "information_schema"];

/// Column tags by asset and lower-case column name.
pub type Tags = BTreeMap<AssetKey, BTreeMap<String, Vec<String>>>;

/// Refusal to read a table outside the role's grants (SQLSTATE 42501).
#[derive(Debug)]
pub struct PermissionDenied(pub String);

impl std::fmt::Display for PermissionDenied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "permission denied for table {}", self.0)
    }
}

impl std::error::Error for PermissionDenied {}

/// What the schemas of one role's catalog share.
#[derive(Debug)]
struct Shared {
    base: Arc<dyn CatalogProvider>,
    role: Arc<Role>,
    tags: Arc<Tags>,
    /// Enforce grants (the catalog queries see) or not (the catalog views are planned in:
    /// a view reads what its definition reads, like a PostgreSQL view, but masked).
    grants: bool,
    /// The session views are planned in, set once the session exists.
    definer: OnceLock<Weak<SessionContext>>,
}

/// The catalog `basin` as `role` sees it.
#[derive(Debug)]
pub struct RoleCatalog {
    shared: Arc<Shared>,
    /// Schemas registered on this catalog itself (`pg_catalog`).
    own: MemoryCatalog,
}

#[derive(Debug, Default)]
struct MemoryCatalog(std::sync::RwLock<BTreeMap<String, Arc<dyn SchemaProvider>>>);

impl RoleCatalog {
    pub fn new(base: Arc<dyn CatalogProvider>, role: Arc<Role>, tags: Arc<Tags>, grants: bool) -> RoleCatalog {
        RoleCatalog {
            shared: Arc::new(Shared { base, role, tags, grants, definer: OnceLock::new() }),
            own: MemoryCatalog::default(),
        }
    }

    /// The session in which this catalog plans views (one whose catalog does not enforce
    /// grants but masks as this one does).
    pub fn set_definer(&self, ctx: &Arc<SessionContext>) {
        let _ = self.shared.definer.set(Arc::downgrade(ctx));
    }
}

impl CatalogProvider for RoleCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .shared
            .base
            .schema_names()
            .into_iter()
            .filter(|s| !self.shared.grants || self.shared.role.sees_schema(s))
            .collect();
        names.extend(self.own.0.read().expect("lock").keys().cloned());
        names.sort();
        names.dedup();
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if let Some(s) = self.own.0.read().expect("lock").get(name) {
            return Some(s.clone());
        }
        if OPEN_SCHEMAS.contains(&name) {
            return self.shared.base.schema(name);
        }
        let inner = self.shared.base.schema(name)?;
        Some(Arc::new(RoleSchema { shared: self.shared.clone(), schema: name.to_string(), inner }))
    }

    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> DfResult<Option<Arc<dyn SchemaProvider>>> {
        Ok(self.own.0.write().expect("lock").insert(name.to_string(), schema))
    }
}

#[derive(Debug)]
struct RoleSchema {
    shared: Arc<Shared>,
    schema: String,
    inner: Arc<dyn SchemaProvider>,
}

#[async_trait]
impl SchemaProvider for RoleSchema {
    fn table_names(&self) -> Vec<String> {
        self.inner
            .table_names()
            .into_iter()
            .filter(|t| !self.shared.grants || self.shared.role.may_read(&self.schema, t))
            .collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some(raw) = self.inner.table(name).await? else { return Ok(None) };
        if self.shared.grants && !self.shared.role.may_read(&self.schema, name) {
            return Err(DataFusionError::External(Box::new(PermissionDenied(format!("{}.{name}", self.schema)))));
        }
        let key = AssetKey::new(&self.schema, name);
        // A view is planned again over this role's (masked) tables.
        let view = (raw.as_ref() as &dyn std::any::Any).downcast_ref::<ViewTable>();
        let provider = match view.and_then(|v| v.definition().cloned()) {
            Some(sql) if self.shared.role.masks_anything() => {
                let definer = self.shared.definer.get().and_then(Weak::upgrade).ok_or_else(|| {
                    DataFusionError::Internal("the role's session is gone while a query plans".into())
                })?;
                let plan = definer.sql(&sql).await?.into_unoptimized_plan();
                Arc::new(ViewTable::new(plan, Some(sql))) as Arc<dyn TableProvider>
            }
            _ => raw,
        };
        match self.shared.tags.get(&key) {
            Some(tags) if self.shared.role.masks_anything() => {
                masked(&key, provider, tags, &self.shared.role, &definer_state(&self.shared))
            }
            _ => Ok(Some(provider)),
        }
    }

    async fn table_type(&self, name: &str) -> DfResult<Option<TableType>> {
        self.inner.table_type(name).await
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

fn definer_state(shared: &Shared) -> Option<datafusion::execution::SessionState> {
    shared.definer.get().and_then(Weak::upgrade).map(|c| c.state())
}

/// `provider` with each column the role masks replaced by its masking function.
fn masked(
    key: &AssetKey,
    provider: Arc<dyn TableProvider>,
    tags: &BTreeMap<String, Vec<String>>,
    role: &Role,
    state: &Option<datafusion::execution::SessionState>,
) -> DfResult<Option<Arc<dyn TableProvider>>> {
    let schema = provider.schema();
    let functions: Vec<Option<&str>> = schema
        .fields()
        .iter()
        .map(|f| tags.get(&f.name().to_ascii_lowercase()).and_then(|t| role.mask_for(t)))
        .collect();
    if functions.iter().all(Option::is_none) {
        return Ok(Some(provider));
    }
    let scan = LogicalPlanBuilder::scan(key.to_string(), provider_as_source(provider), None)?;
    let df_schema: DFSchema = scan.schema().as_ref().clone();
    let mut exprs = Vec::with_capacity(functions.len());
    for ((qualifier, field), function) in df_schema.iter().zip(&functions) {
        let column = Expr::Column(datafusion::common::Column::new(qualifier.cloned(), field.name()));
        let Some(function) = function else {
            exprs.push(column);
            continue;
        };
        let quoted = format!("\"{}\"", field.name().replace('"', "\"\""));
        let expr = match (mask_sql(function, &quoted, field.data_type()), state) {
            (Some(sql), Some(state)) => {
                let expr = state.create_logical_expr(&sql, &df_schema)?;
                // Text stays the column's own text type; a hash or tail of a number is text.
                if is_text(field.data_type()) {
                    datafusion::logical_expr::cast(expr, field.data_type().clone())
                } else {
                    expr
                }
            }
            _ => Expr::Literal(ScalarValue::try_from(field.data_type())?, None),
        };
        exprs.push(expr.alias(field.name()));
    }
    let plan = scan.project(exprs)?.build()?;
    Ok(Some(Arc::new(ViewTable::new(plan, None))))
}

fn is_text(t: &datafusion::arrow::datatypes::DataType) -> bool {
    use datafusion::arrow::datatypes::DataType::*;
    matches!(t, Utf8 | LargeUtf8 | Utf8View)
}
