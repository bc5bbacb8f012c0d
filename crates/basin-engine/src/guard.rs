//! The guardrail on destructive writes: a full replace that would leave a populated table
//! empty, or with less than `1 - max_shrink` of its rows, fails before it commits.
//!
//! The new row count is only known once the write has streamed every row, so the write's
//! physical plan is wrapped (by a physical optimizer rule on the write's own session) in
//! a pass-through exec, which counts the rows of all partitions and turns the end of the last one
//! into an error when too few came. The writer then aborts before its commit; the files it
//! already wrote are not in any version (`VACUUM` removes them).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use datafusion::common::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use futures::StreamExt;

/// How far a replace may shrink a table, and what the write found.
#[derive(Debug)]
pub struct ShrinkGuard {
    /// Rows of the table before the write.
    pub before: u64,
    /// The least number of rows the new version may have.
    pub min_rows: u64,
    rows: AtomicU64,
    done: AtomicUsize,
    refused: AtomicBool,
}

impl ShrinkGuard {
    /// The guard for a table of `before` rows that may lose `max_shrink` of them; `None` when
    /// nothing can be refused (an empty table).
    pub fn new(before: u64, max_shrink: f64) -> Option<Arc<ShrinkGuard>> {
        if before == 0 {
            return None;
        }
        let keep = (1.0 - max_shrink.clamp(0.0, 1.0)) * before as f64;
        // Never less than one row: replacing a populated table with nothing is always refused.
        let min_rows = (keep.ceil() as u64).max(1);
        Some(Arc::new(ShrinkGuard {
            before,
            min_rows,
            rows: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            refused: AtomicBool::new(false),
        }))
    }

    /// Whether the guard stopped the write, and the rows it had counted.
    pub fn refused(&self) -> Option<u64> {
        self.refused.load(Ordering::SeqCst).then(|| self.rows.load(Ordering::SeqCst))
    }

    /// `state` with the write's plan wrapped in this guard.
    pub fn session(self: &Arc<Self>, state: SessionState) -> SessionState {
        SessionStateBuilder::new_from_existing(state)
            .with_physical_optimizer_rule(Arc::new(GuardRule(self.clone())))
            .build()
    }
}

#[derive(Debug)]
struct GuardRule(Arc<ShrinkGuard>);

impl PhysicalOptimizerRule for GuardRule {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(crate::observe::ObservedExec::new(plan, self.0.clone())))
    }

    fn name(&self) -> &str {
        "basin_shrink_guard"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

impl crate::observe::Observer for ShrinkGuard {
    fn label(&self) -> String {
        format!("ShrinkGuardExec: min_rows={}", self.min_rows)
    }

    /// Count the rows of every partition; fail the last partition to end when the total is
    /// below the minimum.
    fn observe(
        self: Arc<Self>,
        input: &Arc<dyn ExecutionPlan>,
        _partition: usize,
        stream: SendableRecordBatchStream,
    ) -> SendableRecordBatchStream {
        let schema = input.schema();
        let partitions = input.output_partitioning().partition_count();
        let guard = self;
        let counting = stream.map({
            let guard = guard.clone();
            move |batch| {
                if let Ok(b) = &batch {
                    guard.rows.fetch_add(b.num_rows() as u64, Ordering::SeqCst);
                }
                batch
            }
        });
        let end = futures::stream::once(async move {
            let finished = guard.done.fetch_add(1, Ordering::SeqCst) + 1;
            let rows = guard.rows.load(Ordering::SeqCst);
            if finished == partitions && rows < guard.min_rows {
                guard.refused.store(true, Ordering::SeqCst);
                return Some(Err(DataFusionError::Execution(format!(
                    "refusing to replace a table of {} rows with {rows}",
                    guard.before
                ))));
            }
            None
        })
        .filter_map(futures::future::ready);
        Box::pin(RecordBatchStreamAdapter::new(schema, counting.chain(end)))
    }
}
