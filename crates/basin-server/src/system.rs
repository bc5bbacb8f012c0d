//! The metadata store's tables as schema `basin`: `runs`, `materializations`,
//! `check_results`, `query_log`, and the watchdog's `asset_status`, `watchdog_events`,
//! `alert_deliveries` and `slo_results`, read from the store when a query names them (so they are
//! as fresh as the store), for `basin sql` and the endpoint alike.

use std::sync::Arc;

use async_trait::async_trait;
use basin_meta::MetaStore;
use chrono::{DateTime, Utc};
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, ListBuilder, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::datasource::{MemTable, TableType};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

pub const SCHEMA: &str = "basin";
pub const TABLES: &[&str] = &[
    "alert_deliveries",
    "asset_status",
    "check_results",
    "materializations",
    "query_log",
    "runs",
    "slo_results",
    "watchdog_events",
];

/// Rows kept per table: the newest.
const LIMIT: i64 = 100_000;

/// Schema `basin` over a metadata store.
#[derive(Debug)]
pub struct SystemSchema {
    store: Arc<dyn MetaStore>,
}

impl SystemSchema {
    pub fn new(store: Arc<dyn MetaStore>) -> SystemSchema {
        SystemSchema { store }
    }
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|t| t.to_string()).collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some(name) = TABLES.iter().find(|t| **t == name) else { return Ok(None) };
        let schema = schema_of(name)?;
        Ok(Some(Arc::new(StoreTable { name, store: self.store.clone(), schema })))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name)
    }
}

/// One of the store's tables: its rows are read when a query scans it, so a plan kept and
/// executed again (a prepared statement) reads the store as it is then.
#[derive(Debug)]
struct StoreTable {
    name: &'static str,
    store: Arc<dyn MetaStore>,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for StoreTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batch = read(self.name, self.store.as_ref()).await?;
        MemTable::try_new(self.schema.clone(), vec![vec![batch]])?.scan(state, projection, filters, limit).await
    }
}

/// The columns of table `name` (one of [`TABLES`]).
fn schema_of(name: &str) -> DfResult<SchemaRef> {
    let empty = match name {
        "check_results" => check_results(&[]),
        "materializations" => materializations(&[]),
        "query_log" => query_log(&[]),
        "asset_status" => asset_status(&[]),
        "watchdog_events" => watchdog_events(&[]),
        "alert_deliveries" => alert_deliveries(&[]),
        "slo_results" => slo_results(&[]),
        _ => runs(&[]),
    };
    Ok(empty?.schema())
}

/// Table `name` (one of [`TABLES`]) as the store holds it now, as one batch.
async fn read(name: &str, store: &dyn MetaStore) -> DfResult<RecordBatch> {
    let failed = |e: basin_meta::Error| DataFusionError::External(Box::new(e));
    match name {
        "check_results" => check_results(&store.check_results(&Default::default()).await.map_err(failed)?),
        "materializations" => materializations(&store.materializations(None, LIMIT).await.map_err(failed)?),
        "query_log" => query_log(&store.query_log(LIMIT).await.map_err(failed)?),
        "asset_status" => asset_status(&store.watch_statuses().await.map_err(failed)?),
        "watchdog_events" => watchdog_events(&store.watch_events(LIMIT).await.map_err(failed)?),
        "alert_deliveries" => alert_deliveries(&store.alert_deliveries(LIMIT).await.map_err(failed)?),
        "slo_results" => slo_results(&store.slo_results(DateTime::<Utc>::MIN_UTC).await.map_err(failed)?),
        _ => {
            let filter = basin_meta::RunFilter { limit: Some(LIMIT), ..Default::default() };
            runs(&store.runs(&filter).await.map_err(failed)?)
        }
    }
}

/// Columns of one table, built row by row.
struct Columns<'a, T> {
    rows: &'a [T],
    fields: Vec<Field>,
    arrays: Vec<ArrayRef>,
}

impl<'a, T> Columns<'a, T> {
    fn new(rows: &'a [T]) -> Self {
        Columns { rows, fields: Vec::new(), arrays: Vec::new() }
    }

    fn text(mut self, name: &str, f: impl Fn(&T) -> Option<String>) -> Self {
        let a: StringArray = self.rows.iter().map(f).collect();
        self.fields.push(Field::new(name, DataType::Utf8, true));
        self.arrays.push(Arc::new(a));
        self
    }

    fn int(mut self, name: &str, f: impl Fn(&T) -> Option<i64>) -> Self {
        let a: Int64Array = self.rows.iter().map(f).collect();
        self.fields.push(Field::new(name, DataType::Int64, true));
        self.arrays.push(Arc::new(a));
        self
    }

    fn flag(mut self, name: &str, f: impl Fn(&T) -> bool) -> Self {
        let a: BooleanArray = self.rows.iter().map(|r| Some(f(r))).collect();
        self.fields.push(Field::new(name, DataType::Boolean, false));
        self.arrays.push(Arc::new(a));
        self
    }

    fn time(mut self, name: &str, f: impl Fn(&T) -> Option<DateTime<Utc>>) -> Self {
        let a = self
            .rows
            .iter()
            .map(|r| f(r).map(|t| t.timestamp_micros()))
            .collect::<TimestampMicrosecondArray>()
            .with_timezone("UTC");
        self.fields.push(Field::new(name, DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true));
        self.arrays.push(Arc::new(a));
        self
    }

    fn list(mut self, name: &str, f: impl Fn(&T) -> &[String]) -> Self {
        let mut b = ListBuilder::new(StringBuilder::new());
        for r in self.rows {
            for s in f(r) {
                b.values().append_value(s);
            }
            b.append(true);
        }
        let a = b.finish();
        self.fields.push(Field::new(name, a.data_type().clone(), false));
        self.arrays.push(Arc::new(a));
        self
    }

    fn batch(self) -> DfResult<RecordBatch> {
        let schema: SchemaRef = Arc::new(Schema::new(self.fields));
        Ok(RecordBatch::try_new(schema, self.arrays)?)
    }
}

fn check_results(rows: &[basin_meta::CheckResult]) -> DfResult<RecordBatch> {
    Columns::new(rows)
        .text("asset", |r| Some(r.asset.clone()))
        .text("check_name", |r| Some(r.check_name.clone()))
        .text("check_type", |r| Some(r.check_type.clone()))
        .text("severity", |r| Some(r.severity.clone()))
        .flag("passed", |r| r.passed)
        .text("observed", |r| Some(r.observed.clone()))
        .text("threshold", |r| Some(r.threshold.clone()))
        .list("samples", |r| &r.samples)
        .int("delta_version", |r| r.delta_version)
        .text("run_id", |r| r.run_id.clone())
        .int("duration_ms", |r| Some(r.duration_ms))
        .time("at", |r| Some(r.at))
        .batch()
}

fn materializations(rows: &[basin_meta::Materialization]) -> DfResult<RecordBatch> {
    Columns::new(rows)
        .text("asset", |r| Some(r.asset.clone()))
        .text("partition_key", |r| r.partition.clone())
        .int("delta_version", |r| r.delta_version)
        .int("row_count", |r| Some(r.rows))
        .int("bytes", |r| r.bytes)
        .int("duration_ms", |r| Some(r.duration_ms))
        .text("sql_hash", |r| r.sql_hash.clone())
        .text("schema_hash", |r| r.schema_hash.clone())
        .text("run_id", |r| Some(r.run_id.clone()))
        .time("at", |r| Some(r.at))
        .batch()
}

fn query_log(rows: &[basin_meta::QueryLogEntry]) -> DfResult<RecordBatch> {
    Columns::new(rows)
        .time("at", |r| Some(r.at))
        .text("user_name", |r| Some(r.user.clone()))
        .text("role", |r| Some(r.role.clone()))
        .text("protocol", |r| Some(r.protocol.clone()))
        .text("query", |r| Some(r.query.clone()))
        .int("duration_ms", |r| Some(r.duration_ms))
        .int("rows_returned", |r| Some(r.rows))
        .int("bytes_scanned", |r| r.bytes_scanned)
        .text("sqlstate", |r| r.sqlstate.clone())
        .text("error", |r| r.error.clone())
        .batch()
}

fn runs(rows: &[basin_meta::Run]) -> DfResult<RecordBatch> {
    Columns::new(rows)
        .text("run_id", |r| Some(r.id.clone()))
        .text("status", |r| Some(r.status.as_str().to_string()))
        .text("selection", |r| Some(r.selection.join(" ")))
        .text("partition_key", |r| r.partition.clone())
        .text("tags", |r| Some(serde_json::to_string(&r.tags).expect("strings serialise")))
        .text("launcher", |r| Some(r.launcher.clone()))
        .int("attempt", |r| Some(r.attempt))
        .text("parent_run_id", |r| r.parent_run_id.clone())
        .time("created_at", |r| Some(r.created_at))
        .time("started_at", |r| r.started_at)
        .time("finished_at", |r| r.finished_at)
        .text("worker", |r| r.worker.clone())
        .text("failure_category", |r| r.failure_category.map(|c| c.as_str().to_string()))
        .text("failure_message", |r| r.failure_message.clone())
        .batch()
}

fn asset_status(rows: &[basin_meta::WatchStatus]) -> DfResult<RecordBatch> {
    Columns::new(rows)
        .text("subject", |r| Some(r.subject.clone()))
        .text("class", |r| Some(r.class.clone()))
        .text("reason", |r| Some(r.reason.clone()))
        .text("run_id", |r| r.run_id.clone())
        .time("since", |r| Some(r.since))
        .time("checked_at", |r| Some(r.checked_at))
        .batch()
}

fn watchdog_events(rows: &[basin_meta::WatchEvent]) -> DfResult<RecordBatch> {
    Columns::new(rows)
        .int("id", |r| Some(r.id))
        .time("at", |r| Some(r.at))
        .text("subject", |r| Some(r.subject.clone()))
        .text("from_class", |r| r.from_class.clone())
        .text("to_class", |r| Some(r.to_class.clone()))
        .text("reason", |r| Some(r.reason.clone()))
        .text("run_id", |r| r.run_id.clone())
        .text("action", |r| r.action.clone())
        .batch()
}

fn alert_deliveries(rows: &[basin_meta::AlertDelivery]) -> DfResult<RecordBatch> {
    Columns::new(rows)
        .time("at", |r| Some(r.at))
        .text("channel", |r| Some(r.channel.clone()))
        .text("dedup_key", |r| Some(r.dedup_key.clone()))
        .text("state", |r| Some(r.state.clone()))
        .text("subject", |r| Some(r.subject.clone()))
        .text("class", |r| Some(r.class.clone()))
        .int("attempts", |r| Some(r.attempts))
        .flag("delivered", |r| r.delivered)
        .text("error", |r| r.error.clone())
        .batch()
}

fn slo_results(rows: &[basin_meta::SloResult]) -> DfResult<RecordBatch> {
    Columns::new(rows)
        .text("asset", |r| Some(r.asset.clone()))
        .text("day", |r| Some(r.day.clone()))
        .time("deadline", |r| Some(r.deadline))
        .text("verdict", |r| Some(r.verdict.clone()))
        .time("built_at", |r| r.built_at)
        .time("judged_at", |r| Some(r.judged_at))
        .batch()
}
