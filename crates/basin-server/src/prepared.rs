//! Executing prepared queries without optimising them again at each execution. A driver that
//! prepares a statement (JDBC past `prepareThreshold`, psycopg's `prepare=True`, node-postgres
//! named statements) binds new values into it many times; the logical optimiser's work on it
//! does not depend on those values. So a connection optimises each prepared query once, with
//! its placeholders in, and each execution only binds the values into that plan and plans it
//! physically (where the Parquet scans prune by the values bound). A bound plan that looks up
//! rows of one table by a column's value is not planned physically at all: it reads the pages
//! that may hold the value and evaluates the plan's filters and projections over them
//! ([`crate::lookup`]).
//!
//! A prepared statement reads the lake as it is when it executes, as every other query does:
//! one planned before a table it reads was materialised again is planned again, from its
//! text, the first time it executes after that (and fails as PostgreSQL's would, SQLSTATE
//! 0A000, if that changes the columns it returns).
//!
//! A plan whose optimisation could depend on when it runs (`now()`, `current_date`, any
//! function that is not immutable: the optimiser folds those into constants) or that does not
//! optimise with placeholders in is optimised at each execution, after binding, as before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchemaRef, ParamValues};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::physical_plan::execute_stream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion_postgres::arrow_pg::datatypes::df::deserialize_parameters_with_server_types;
use datafusion_postgres::arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use datafusion_postgres::pgwire;
use futures::{StreamExt, stream};
use pgwire::api::portal::Portal;
use pgwire::api::results::{QueryResponse, Response};
use pgwire::api::stmt::StoredStatement;
use pgwire::api::{ClientInfo, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::types::format::FormatOptions;

use crate::session::RoleSession;

/// A prepared statement as datafusion-postgres plans it: its text, and its parsed statement
/// and logical plan (none for an empty statement).
pub type Statement = (String, Option<(datafusion::sql::sqlparser::ast::Statement, LogicalPlan)>);

/// Prepared statements a connection keeps at most the optimised plans of; the oldest are
/// forgotten first (and optimised again when executed again).
const PLANS_KEPT: usize = 256;

/// The optimised plans of one connection's prepared queries, by statement.
#[derive(Default)]
pub struct Plans(Mutex<HashMap<usize, Arc<Prepared>>>);

/// What executing one prepared query needs besides its values.
pub struct Prepared {
    /// The statement this was made of: an entry whose statement is gone is not used (its
    /// address may be another statement's by then).
    statement: Weak<StoredStatement<Statement>>,
    used: std::sync::atomic::AtomicU64,
    /// The snapshot of the lake the plan reads ([`RoleSession::generation`]).
    generation: u64,
    /// The plan as planned from the statement's text.
    plan: LogicalPlan,
    /// The plan optimised with its placeholders in; `None` when it is optimised per execution.
    optimized: Option<LogicalPlan>,
    /// The parameters' types as planned and as announced to the client, in order.
    inferred: Vec<Option<DataType>>,
    wire: Vec<Type>,
}

impl Plans {
    /// The plan of `statement` kept for `session`'s snapshot of the lake, if any.
    fn get(&self, statement: &Arc<StoredStatement<Statement>>, session: &RoleSession) -> Option<Arc<Prepared>> {
        let plans = self.0.lock().expect("lock");
        let p = plans.get(&(Arc::as_ptr(statement) as usize))?;
        let current =
            p.generation == session.generation && p.statement.upgrade().is_some_and(|s| Arc::ptr_eq(&s, statement));
        current.then(|| {
            p.used.store(tick(), std::sync::atomic::Ordering::Relaxed);
            p.clone()
        })
    }

    /// Keep `plan`, the plan of `statement` in `session`'s snapshot, optimised when it can be.
    fn insert(
        &self,
        statement: &Arc<StoredStatement<Statement>>,
        plan: LogicalPlan,
        wire: Vec<Type>,
        session: &RoleSession,
    ) -> PgWireResult<Arc<Prepared>> {
        let prepared = Arc::new(Prepared {
            statement: Arc::downgrade(statement),
            used: tick().into(),
            generation: session.generation,
            optimized: optimize_once(session, &plan),
            inferred: inferred_parameter_types(&plan).map_err(api)?,
            plan,
            wire,
        });
        let mut plans = self.0.lock().expect("lock");
        plans.retain(|_, p| p.statement.strong_count() > 0);
        if plans.len() >= PLANS_KEPT
            && let Some(oldest) =
                plans.iter().min_by_key(|(_, p)| p.used.load(std::sync::atomic::Ordering::Relaxed)).map(|(k, _)| *k)
        {
            plans.remove(&oldest);
        }
        plans.insert(Arc::as_ptr(statement) as usize, prepared.clone());
        Ok(prepared)
    }
}

/// A clock for forgetting the least recently used plans first.
fn tick() -> u64 {
    static CLOCK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    CLOCK.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// `plan` optimised with its placeholders in, when that plan serves every execution.
fn optimize_once(session: &RoleSession, plan: &LogicalPlan) -> Option<LogicalPlan> {
    if !only_immutable_functions(plan) {
        return None;
    }
    match session.ctx.state().optimize(plan) {
        Ok(optimized) => Some(optimized),
        Err(e) => {
            tracing::debug!(error = %e, "prepared statement optimised per execution");
            None
        }
    }
}

/// Whether every function `plan` calls (in subqueries too) gives the same result for the same
/// arguments whenever it runs.
fn only_immutable_functions(plan: &LogicalPlan) -> bool {
    let mut immutable = true;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                let volatile = match e {
                    Expr::ScalarFunction(f) => f.func.signature().volatility != Volatility::Immutable,
                    Expr::AggregateFunction(f) => f.func.signature().volatility != Volatility::Immutable,
                    _ => false,
                };
                immutable &= !volatile;
                Ok(if immutable { TreeNodeRecursion::Continue } else { TreeNodeRecursion::Stop })
            })
        })?;
        Ok(if immutable { TreeNodeRecursion::Continue } else { TreeNodeRecursion::Stop })
    });
    immutable
}

/// The parameters' types as DataFusion inferred them, in order (`$1`, `$2`, …); a parameter
/// used only under a cast has the cast's type. As datafusion-postgres infers them.
fn inferred_parameter_types(plan: &LogicalPlan) -> datafusion::error::Result<Vec<Option<DataType>>> {
    let mut types = plan.get_parameter_types()?;
    if types.values().any(Option::is_none) {
        plan.apply(|node| {
            node.apply_expressions(|e| {
                e.apply(|e| {
                    if let Expr::Cast(cast) = e
                        && let Expr::Placeholder(p) = cast.expr.as_ref()
                        && let Some(slot @ None) = types.get_mut(&p.id)
                    {
                        *slot = Some(cast.field.data_type().clone());
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
            })
        })?;
    }
    let mut ordered: Vec<_> = types.into_iter().collect();
    ordered.sort_by_key(|(id, _)| id.trim_start_matches('$').parse::<u32>().unwrap_or(u32::MAX));
    Ok(ordered.into_iter().map(|(_, t)| t).collect())
}

/// Whether two plans return columns of the same names and types, in the same order.
fn same_columns(a: &DFSchemaRef, b: &DFSchemaRef) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields().iter().zip(b.fields()).all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type())
}

fn api(e: datafusion::error::DataFusionError) -> PgWireError {
    PgWireError::ApiError(Box::new(e))
}

/// Execute the prepared query of `portal` (a `SELECT`, planned as `plan`) in `session`, a
/// session of the lake's current snapshot. `wire` gives the parameter types announced to the
/// client when the statement was described; `replan` plans the statement's text in `session`.
pub async fn execute<C: ClientInfo>(
    session: &RoleSession,
    client: &C,
    portal: &Portal<Statement>,
    plan: &LogicalPlan,
    wire: impl FnOnce() -> PgWireResult<Vec<Type>>,
    replan: impl AsyncFnOnce() -> PgWireResult<LogicalPlan>,
) -> PgWireResult<Response> {
    let plans = client.session_extensions().get_or_insert_with(Plans::default);
    let prepared = match plans.get(&portal.statement, session) {
        Some(prepared) => prepared,
        None => {
            let plan = if session.reads_current_tables(plan).await {
                plan.clone()
            } else {
                let replanned = replan().await?;
                if !same_columns(replanned.schema(), plan.schema()) {
                    return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                        "ERROR".into(),
                        "0A000".into(),
                        "cached plan must not change result type: a table the prepared statement reads \
                         changed its columns; prepare it again"
                            .into(),
                    ))));
                }
                replanned
            };
            plans.insert(&portal.statement, plan, wire()?, session)?
        }
    };
    let inferred: Vec<Option<&DataType>> = prepared.inferred.iter().map(Option::as_ref).collect();
    let wire: Vec<Option<&Type>> = prepared.wire.iter().map(Some).collect();
    let values: ParamValues = deserialize_parameters_with_server_types(portal, &inferred, &wire)?;
    let state = session.ctx.state();
    let bound = match &prepared.optimized {
        Some(optimized) => optimized.clone().replace_params_with_values(&values).map_err(api)?,
        None => {
            state.optimize(&prepared.plan.clone().replace_params_with_values(&values).map_err(api)?).map_err(api)?
        }
    };
    let batches: SendableRecordBatchStream = match crate::lookup::rows(&bound, &state).await.map_err(api)? {
        // A lookup by key, read without planning a scan.
        Some((batches, bytes)) => {
            crate::meter::add(bytes);
            let schema = Arc::new(bound.schema().as_arrow().clone());
            Box::pin(RecordBatchStreamAdapter::new(schema, stream::iter(batches.into_iter().map(Ok))))
        }
        None => {
            // The query planner builds and optimises the physical plan of a logical plan
            // already optimised (`SessionState::create_physical_plan` would optimise it again).
            let physical = state.query_planner().create_physical_plan(&bound, &state).await.map_err(api)?;
            execute_stream(physical, state.task_ctx()).map_err(api)?
        }
    };
    let format = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
    let fields =
        Arc::new(arrow_schema_to_pg_fields(bound.schema().as_arrow(), &portal.result_column_format, Some(format))?);
    let encode = fields.clone();
    let rows = batches
        .map(move |batch| {
            let rows: Box<dyn Iterator<Item = PgWireResult<_>> + Send + Sync> = match batch {
                Ok(batch) => encode_recordbatch(encode.clone(), batch),
                Err(e) => Box::new(std::iter::once(Err(api(e)))),
            };
            stream::iter(rows)
        })
        .flatten();
    Ok(Response::Query(QueryResponse::new(fields, rows)))
}
