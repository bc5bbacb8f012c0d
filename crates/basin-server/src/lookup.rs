//! Point lookups without a physical plan. A query that reads one model table through
//! projections and filters only, one of its filters being `column = value`, is answered by
//! reading the pages of the table whose page index admits the value
//! ([`FilesTable::lookup`]) and evaluating the query's own filters and projections (masking
//! functions included) over those rows, with DataFusion's expressions. Planning and starting a
//! scan costs a lookup by a table's clustering key more than the page it reads; this is how
//! the endpoint serves `SELECT … FROM t WHERE key = $1`.
//!
//! Any other plan shape (joins, aggregates, sorts, limits, subqueries, several tables, a table
//! read through the Delta scan), and a value whose pages would hold more rows than a lookup
//! reads ([`basin_engine::files_table::LOOKUP_ROWS`]), is planned as every query is.

use std::sync::Arc;

use basin_engine::files_table::FilesTable;
use datafusion::arrow::array::{AsArray, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::{DFSchema, Result};
use datafusion::datasource::source_as_provider;
use datafusion::execution::SessionState;
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator, TableScan};
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};
use datafusion::scalar::ScalarValue;

/// One step applied to the rows read, bottom up.
enum Step {
    Filter(Arc<dyn PhysicalExpr>),
    Project(Vec<Arc<dyn PhysicalExpr>>, SchemaRef),
}

/// The rows `plan` (an optimised plan with its parameters bound) returns, when it is a lookup
/// answered without a physical plan; `None` when it is planned as other queries are. The
/// second value is the bytes read.
pub async fn rows(plan: &LogicalPlan, state: &SessionState) -> Result<Option<(Vec<RecordBatch>, u64)>> {
    // The nodes from the root down to the one table scan.
    let mut nodes = Vec::new();
    let mut node = plan;
    let scan = loop {
        match node {
            LogicalPlan::Projection(p) => {
                nodes.push(node);
                node = p.input.as_ref();
            }
            LogicalPlan::Filter(f) => {
                nodes.push(node);
                node = f.input.as_ref();
            }
            LogicalPlan::SubqueryAlias(a) => node = a.input.as_ref(),
            LogicalPlan::TableScan(scan) => break scan,
            _ => return Ok(None),
        }
    };
    let Some(Looked { table: provider, column, value }) = looked_up(scan) else { return Ok(None) };
    let Some(table) = (provider.as_ref() as &dyn std::any::Any).downcast_ref::<FilesTable>() else {
        return Ok(None);
    };
    let projection: Vec<usize> = match &scan.projection {
        Some(p) => p.clone(),
        None => (0..scan.source.schema().fields().len()).collect(),
    };
    // Steps over the scan's rows: its own filters (pushed into it as inexact, so they are
    // also above it, but a pushed filter is applied here whatever the scan said of it), then
    // the nodes above it, from the bottom.
    let props = state.execution_props();
    let mut steps = Vec::new();
    if let Some(filters) = conjunction(scan.filters.iter().cloned()) {
        let Some(filters) = physical(&filters, &scan.projected_schema, props) else { return Ok(None) };
        steps.push(Step::Filter(filters));
    }
    for node in nodes.iter().rev() {
        match node {
            LogicalPlan::Filter(f) => {
                let Some(predicate) = physical(&f.predicate, f.input.schema(), props) else { return Ok(None) };
                steps.push(Step::Filter(predicate));
            }
            LogicalPlan::Projection(p) => {
                let Some(exprs) = p.expr.iter().map(|e| physical(e, p.input.schema(), props)).collect() else {
                    return Ok(None);
                };
                steps.push(Step::Project(exprs, Arc::new(p.schema.as_arrow().clone())));
            }
            _ => unreachable!("only projections and filters are kept"),
        }
    }
    let Some(read) = table.lookup(state.runtime_env(), &column, &value, &projection).await? else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(read.batches.len());
    for mut batch in read.batches {
        for step in &steps {
            batch = match step {
                Step::Filter(predicate) => {
                    let keep = predicate.evaluate(&batch)?.into_array(batch.num_rows())?;
                    filter_record_batch(&batch, keep.as_boolean())?
                }
                Step::Project(exprs, schema) => {
                    let columns = exprs
                        .iter()
                        .map(|e| e.evaluate(&batch)?.into_array(batch.num_rows()))
                        .collect::<Result<_>>()?;
                    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
                    RecordBatch::try_new_with_options(schema.clone(), columns, &options)?
                }
            };
        }
        if batch.num_rows() > 0 {
            out.push(batch);
        }
    }
    Ok(Some((out, read.bytes_read)))
}

/// What a lookup reads: a table and a column's value.
struct Looked {
    table: Arc<dyn TableProvider>,
    column: String,
    value: ScalarValue,
}

/// The table `scan` reads, when it reads it whole (no row limit), and the column and value
/// of one of its filters `column = value`.
fn looked_up(scan: &TableScan) -> Option<Looked> {
    if scan.fetch.is_some() {
        return None;
    }
    let (column, value) = scan.filters.iter().flat_map(|f| split_conjunction(f)).find_map(|e| match e {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) => match (left.as_ref(), right.as_ref()) {
            (Expr::Column(c), Expr::Literal(v, _)) | (Expr::Literal(v, _), Expr::Column(c)) if !v.is_null() => {
                Some((c.name.clone(), v.clone()))
            }
            _ => None,
        },
        _ => None,
    })?;
    Some(Looked { table: source_as_provider(&scan.source).ok()?, column, value })
}

/// `expr` over rows of `schema` as a physical expression; `None` when it has none (a
/// subquery, say): such a plan is planned as other queries are.
fn physical(expr: &Expr, schema: &DFSchema, props: &ExecutionProps) -> Option<Arc<dyn PhysicalExpr>> {
    create_physical_expr(expr, schema, props, &PhysicalPlanningContext::default()).ok()
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::prelude::SessionContext;

    use super::*;

    /// A lake holding `silver.t` (200,000 rows clustered by `id`) served as its files.
    async fn served() -> (tempfile::TempDir, SessionContext) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("basin.toml"), "[project]\nname = \"t\"\n").unwrap();
        std::fs::create_dir_all(dir.path().join("models/silver")).unwrap();
        std::fs::write(
            dir.path().join("models/silver/t.sql"),
            "/* basin\ncluster_by = [\"id\"]\n*/\n\
             SELECT value AS id, CAST(value * 3 AS VARCHAR) AS label, value % 7 AS bucket \
             FROM generate_series(1, 200000)",
        )
        .unwrap();
        let (project, _) = basin_core::Project::load_valid(dir.path()).unwrap();
        let lake = basin_engine::Lake::open(&project.storage_root(), &project.config.storage.options).unwrap();
        let session = lake.session(&[], None).await.unwrap();
        let run = basin_engine::ModelRun::new("test-run");
        for model in project.ordered([basin_core::AssetKey::new("silver", "t")].iter()) {
            run.materialize(&lake, &session.ctx, model).await.unwrap();
        }
        let ctx = lake.serving_session(&[]).await.unwrap().ctx;
        (dir, ctx)
    }

    async fn looked_up(ctx: &SessionContext, plan: &LogicalPlan) -> Option<String> {
        let (batches, _) = rows(plan, &ctx.state()).await.unwrap()?;
        Some(pretty_format_batches(&batches).unwrap().to_string())
    }

    #[tokio::test]
    async fn lookups_by_a_column_value_return_what_the_planned_query_returns() {
        let (_dir, ctx) = served().await;
        for sql in [
            "SELECT label FROM silver.t WHERE id = 123456",
            "SELECT label FROM silver.t WHERE 77 = id",
            "SELECT * FROM silver.t WHERE id = 77",
            "SELECT id + 1 AS next, upper(label) AS l, bucket FROM silver.t WHERE id = 77 AND bucket = 0",
            "SELECT label FROM silver.t WHERE id = 78 AND bucket = 0",
            "SELECT s.label FROM (SELECT id, label FROM silver.t) s WHERE s.id = 5",
            "SELECT label FROM silver.t WHERE id = 900000",
            "SELECT label FROM silver.t WHERE id = 5 AND label LIKE '1%'",
            "SELECT label, id FROM silver.t WHERE label = '300'",
        ] {
            let df = ctx.sql(sql).await.unwrap();
            let plan = df.clone().into_optimized_plan().unwrap();
            let expected = pretty_format_batches(&df.collect().await.unwrap()).unwrap().to_string();
            let got = looked_up(&ctx, &plan).await.unwrap_or_else(|| panic!("not a lookup: {sql}"));
            assert_eq!(got, expected, "{sql}");
        }
        // A prepared statement's plan, its parameter bound after optimising.
        let plan = ctx.sql("SELECT label FROM silver.t WHERE id = $1").await.unwrap().into_optimized_plan().unwrap();
        let params = datafusion::common::ParamValues::List(vec![ScalarValue::Int64(Some(42)).into()]);
        let bound = plan.replace_params_with_values(&params).unwrap();
        assert!(looked_up(&ctx, &bound).await.unwrap().contains("| 126   |"));
        // Anything else is planned as any query.
        for sql in [
            "SELECT COUNT(*) FROM silver.t WHERE id = 1",
            "SELECT label FROM silver.t WHERE id > 5 LIMIT 1",
            "SELECT label FROM silver.t WHERE id = 5 ORDER BY label",
            "SELECT a.label FROM silver.t a JOIN silver.t b ON a.id = b.id WHERE a.id = 3",
            "SELECT label FROM silver.t WHERE id + 0 = 5",
            "SELECT label FROM silver.t WHERE id = (SELECT MAX(bucket) FROM silver.t)",
            // By a column every page of which may hold the value.
            "SELECT label, id FROM silver.t WHERE bucket = 3",
        ] {
            let plan = ctx.sql(sql).await.unwrap().into_optimized_plan().unwrap();
            assert!(looked_up(&ctx, &plan).await.is_none(), "{sql} is no lookup");
        }
    }
}
