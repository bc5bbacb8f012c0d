//! Materialisations: how a model's query becomes a Delta table.
//! - `table`: the whole result replaces the table in one commit (old versions stay readable);
//! - `view`: nothing is written; the query is registered and evaluated when read;
//! - `incremental`: MERGE on `unique_key`, or replace exactly the partitions present in the
//!   new data. A column added to the query is added to the table; a type the table cannot take
//!   in place fails with a hint to `--full-refresh`.
//!
//! Every commit carries `basin.run_id`, `basin.model`, `basin.sql_hash` in its commit info;
//! the rows it wrote are in the same commit's `operationMetrics`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use basin_core::AssetKey;
use basin_core::model::{Materialization, Model};
use datafusion::arrow::array::Array;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Expr, col, lit};
use datafusion::prelude::{DataFrame, SessionContext};
use deltalake::DeltaTable;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;
use serde_json::json;

use crate::error::{Error, Result};
use crate::lake::Lake;
use crate::schema::fits;

/// What a materialisation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A new table was created.
    Created,
    /// The whole table was replaced.
    Replaced,
    /// Rows were merged on the unique key.
    Merged { inserted: u64, updated: u64 },
    /// These partitions were replaced.
    ReplacedPartitions { partitions: usize },
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
}

/// One run's materialisations: the run id stamped on every commit, and whether incremental
/// models are rebuilt from scratch.
#[derive(Debug, Clone)]
pub struct ModelRun {
    pub run_id: String,
    pub full_refresh: bool,
}

impl ModelRun {
    /// Build `model` with `ctx` (a session over the lake holding its upstream tables), then
    /// register the result in `ctx` so downstream models of the same run read it.
    pub async fn materialize(&self, lake: &Lake, ctx: &SessionContext, model: &Model) -> Result<Materialized> {
        let start = Instant::now();
        let key = &model.key;
        let df =
            ctx.sql(model.sql()).await.map_err(Error::query(format!("model {key} ({}) does not plan", model.file)))?;
        check_columns(key, &df, "unique_key", &model.config.unique_key.0)?;
        check_columns(key, &df, "partition_by", &model.config.partition_by.0)?;

        if model.config.materialized == Materialization::View {
            crate::lake::register_view(ctx, key, df, model.sql())?;
            return Ok(Materialized {
                key: key.clone(),
                action: Action::View,
                version: None,
                rows: 0,
                duration: start.elapsed(),
            });
        }
        let existing = lake.table(key).await?;
        let (table, action) = match existing {
            Some(table) if model.config.materialized == Materialization::Incremental && !self.full_refresh => {
                let df = conform(key, df, &table)?;
                if model.config.unique_key.0.is_empty() {
                    self.replace_partitions(ctx, model, df, table).await?
                } else {
                    self.merge(ctx, model, df, table).await?
                }
            }
            // `table`, a first incremental build, or `--full-refresh`: replace it all.
            existing => self.replace(lake, ctx, model, df, existing).await?,
        };
        let version = table.version();
        let rows = match &action {
            Action::NoNewData => 0,
            _ => last_commit_rows(&table).await,
        };
        lake.register_table(ctx, key, &table).await?;
        Ok(Materialized { key: key.clone(), action, version, rows, duration: start.elapsed() })
    }

    fn commit_properties(&self, model: &Model, operation: &str) -> CommitProperties {
        CommitProperties::default().with_metadata([
            ("basin.run_id".to_string(), json!(self.run_id)),
            ("basin.model".to_string(), json!(model.key.to_string())),
            ("basin.sql_hash".to_string(), json!(model.sql_hash())),
            ("basin.materialization".to_string(), json!(model.config.materialized.as_str())),
            ("basin.operation".to_string(), json!(operation)),
        ])
    }

    /// Replace the whole table (or create it) in one commit.
    async fn replace(
        &self,
        lake: &Lake,
        ctx: &SessionContext,
        model: &Model,
        df: DataFrame,
        existing: Option<DeltaTable>,
    ) -> Result<(DeltaTable, Action)> {
        let key = &model.key;
        let created = existing.is_none();
        let table = match existing {
            Some(t) => t,
            None => lake.table_or_new(key).await?,
        };
        let mut write = table
            .write(Vec::new())
            .with_input_plan(df.into_unoptimized_plan())
            .with_session_state(Arc::new(ctx.state()))
            .with_save_mode(SaveMode::Overwrite)
            .with_schema_mode(deltalake::operations::write::SchemaMode::Overwrite)
            .with_commit_properties(self.commit_properties(model, "replace"));
        if !model.config.partition_by.0.is_empty() {
            write = write.with_partition_columns(model.config.partition_by.0.clone());
        }
        if created {
            write = write.with_table_name(key.name.clone());
            if let Some(d) = &model.config.description {
                write = write.with_description(d.clone());
            }
        }
        let table = write.await.map_err(Error::delta(key, "write"))?;
        Ok((table, if created { Action::Created } else { Action::Replaced }))
    }

    /// MERGE on the unique key: matched rows updated, new rows inserted, others untouched.
    async fn merge(
        &self,
        ctx: &SessionContext,
        model: &Model,
        df: DataFrame,
        table: DeltaTable,
    ) -> Result<(DeltaTable, Action)> {
        let key = &model.key;
        let columns: Vec<String> = df.schema().fields().iter().map(|f| f.name().clone()).collect();
        let predicate = model
            .config
            .unique_key
            .0
            .iter()
            .map(|k| format!("target.{q} = source.{q}", q = quote(k)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let (table, metrics) = table
            .merge(df, predicate)
            .with_source_alias("source")
            .with_target_alias("target")
            .with_merge_schema(true)
            .with_session_state(Arc::new(ctx.state()))
            .with_commit_properties(self.commit_properties(model, "merge"))
            .when_matched_update(|mut u| {
                for c in &columns {
                    u = u.update(c.as_str(), format!("source.{}", quote(c)));
                }
                u
            })
            .map_err(Error::delta(key, "merge"))?
            .when_not_matched_insert(|mut i| {
                for c in &columns {
                    i = i.set(c.as_str(), format!("source.{}", quote(c)));
                }
                i
            })
            .map_err(Error::delta(key, "merge"))?
            .await
            .map_err(Error::delta(key, "merge"))?;
        let action = Action::Merged {
            inserted: metrics.num_target_rows_inserted as u64,
            updated: metrics.num_target_rows_updated as u64,
        };
        Ok((table, action))
    }

    /// Replace exactly the partitions present in the new data, in one commit.
    async fn replace_partitions(
        &self,
        ctx: &SessionContext,
        model: &Model,
        df: DataFrame,
        table: DeltaTable,
    ) -> Result<(DeltaTable, Action)> {
        let key = &model.key;
        let partition_cols = &model.config.partition_by.0;
        let existing_partitions =
            table.snapshot().map_err(Error::delta(key, "load"))?.metadata().partition_columns().to_vec();
        if &existing_partitions != partition_cols {
            return Err(Error::IncompatibleSchema {
                table: key.clone(),
                column: partition_cols.join(", "),
                existing: format!("partitioned by [{}]", existing_partitions.join(", ")),
                new: format!("partitioned by [{}]", partition_cols.join(", ")),
            });
        }
        let partitions = df
            .clone()
            .select(partition_cols.iter().map(|c| col(quote(c))).collect::<Vec<_>>())
            .and_then(|d| d.distinct())
            .map_err(Error::query(format!("cannot find the partitions of {key}")))?
            .collect()
            .await
            .map_err(Error::query(format!("model {key} ({}) failed", model.file)))?;
        let mut predicate: Option<Expr> = None;
        let mut count = 0;
        for batch in &partitions {
            for row in 0..batch.num_rows() {
                count += 1;
                let mut conj: Option<Expr> = None;
                for (i, name) in partition_cols.iter().enumerate() {
                    let array = batch.column(i);
                    let term = if array.is_null(row) {
                        col(quote(name)).is_null()
                    } else {
                        let value = ScalarValue::try_from_array(array, row)
                            .map_err(Error::query(format!("cannot read a partition value of {key}")))?;
                        col(quote(name)).eq(lit(value))
                    };
                    conj = Some(match conj {
                        Some(c) => c.and(term),
                        None => term,
                    });
                }
                let conj = conj.expect("at least one partition column");
                predicate = Some(match predicate {
                    Some(p) => p.or(conj),
                    None => conj,
                });
            }
        }
        let Some(predicate) = predicate else {
            return Ok((table, Action::NoNewData));
        };
        let table = table
            .write(Vec::new())
            .with_input_plan(df.into_unoptimized_plan())
            .with_session_state(Arc::new(ctx.state()))
            .with_save_mode(SaveMode::Overwrite)
            .with_replace_where(predicate)
            .with_schema_mode(deltalake::operations::write::SchemaMode::Merge)
            .with_commit_properties(self.commit_properties(model, "replace_partitions"))
            .await
            .map_err(Error::delta(key, "write"))?;
        Ok((table, Action::ReplacedPartitions { partitions: count }))
    }
}

/// Quote a column name for DataFusion SQL expressions.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn check_columns(key: &AssetKey, df: &DataFrame, setting: &'static str, columns: &[String]) -> Result<()> {
    for c in columns {
        if df.schema().fields().iter().all(|f| f.name() != c) {
            return Err(Error::MissingColumn { table: key.clone(), setting, column: c.clone() });
        }
    }
    Ok(())
}

/// Cast the new data's columns to the types the table already has, refusing changes the table
/// cannot take in place. New columns pass through and are added by schema evolution.
fn conform(key: &AssetKey, df: DataFrame, table: &DeltaTable) -> Result<DataFrame> {
    let snapshot = table.snapshot().map_err(Error::delta(key, "load"))?;
    let existing = snapshot.snapshot().arrow_schema();
    let types: HashMap<&str, &datafusion::arrow::datatypes::DataType> =
        existing.fields().iter().map(|f| (f.name().as_str(), f.data_type())).collect();
    let mut exprs = Vec::new();
    for field in df.schema().fields() {
        let name = field.name();
        let c = col(quote(name));
        match types.get(name.as_str()) {
            Some(&t) if t == field.data_type() => exprs.push(c),
            Some(&t) if fits(field.data_type(), t) => {
                exprs.push(datafusion::logical_expr::cast(c, t.clone()).alias(name))
            }
            Some(&t) => {
                return Err(Error::IncompatibleSchema {
                    table: key.clone(),
                    column: name.clone(),
                    existing: t.to_string(),
                    new: field.data_type().to_string(),
                });
            }
            None => exprs.push(c),
        }
    }
    df.select(exprs).map_err(Error::query(format!("cannot conform the new rows of {key} to its table")))
}

/// Re-plan a view model in `ctx`, so that it reads the tables `ctx` holds now.
pub async fn refresh_view(ctx: &SessionContext, model: &Model) -> Result<()> {
    let df = ctx
        .sql(model.sql())
        .await
        .map_err(Error::query(format!("view {} ({}) does not plan", model.key, model.file)))?;
    crate::lake::register_view(ctx, &model.key, df, model.sql())
}

/// Output rows of the table's latest commit, from its `operationMetrics`.
pub(crate) async fn last_commit_rows(table: &DeltaTable) -> u64 {
    use futures::StreamExt;
    let mut history = table.history(Some(1));
    let Some(Ok(info)) = history.next().await else { return 0 };
    crate::history::commit_rows(&info).unwrap_or(0)
}
