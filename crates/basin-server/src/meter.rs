//! Bytes a statement's scans read, for the query log. A physical optimizer rule of every role
//! session wraps the root of each plan in [`MeterExec`], which, when its output ends, sums the
//! `bytes_scanned` metric of the scans below it into the meter of the statement being planned
//! (a task-local set around planning, so concurrent statements never share a meter).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, ReplaceChildrenOptions,
};
use futures::StreamExt;

pub type Meter = Arc<AtomicI64>;

tokio::task_local! {
    static METER: Meter;
}

/// Run `work` (which plans a statement) with `meter` counting its scans.
pub async fn scope<F: Future>(meter: Meter, work: F) -> F::Output {
    METER.scope(meter, work).await
}

#[derive(Debug)]
pub struct MeterRule;

impl PhysicalOptimizerRule for MeterRule {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(match METER.try_with(Arc::clone) {
            Ok(meter) => Arc::new(MeterExec::new(plan, meter)),
            Err(_) => plan,
        })
    }

    fn name(&self) -> &str {
        "basin_scan_meter"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[derive(Debug, Clone)]
struct MeterExec {
    input: Arc<dyn ExecutionPlan>,
    meter: Meter,
    properties: Arc<PlanProperties>,
}

impl MeterExec {
    fn new(input: Arc<dyn ExecutionPlan>, meter: Meter) -> Self {
        let properties = input.properties().clone();
        MeterExec { input, meter, properties }
    }
}

/// `bytes_scanned` of every operator in `plan`.
fn bytes_scanned(plan: &dyn ExecutionPlan) -> i64 {
    let own = plan.metrics().and_then(|m| m.sum_by_name("bytes_scanned")).map_or(0, |v| v.as_usize() as i64);
    own + plan.children().iter().map(|c| bytes_scanned(c.as_ref())).sum::<i64>()
}

impl DisplayAs for MeterExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "ScanMeterExec")
    }
}

impl ExecutionPlan for MeterExec {
    fn name(&self) -> &str {
        "ScanMeterExec"
    }

    fn schema(&self) -> SchemaRef {
        self.input.schema()
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal("ScanMeterExec takes one input".into()));
        }
        let input = children.swap_remove(0);
        Ok(Arc::new(match options.children_properties {
            ChildrenPropertiesMode::Keep => MeterExec { input, ..(*self).clone() },
            ChildrenPropertiesMode::Recompute => MeterExec::new(input, self.meter.clone()),
        }))
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(children, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute))
    }

    fn with_new_children_and_same_properties(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(children, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let schema = self.input.schema();
        let input = self.input.clone();
        let meter = self.meter.clone();
        let stream = self.input.execute(partition, context)?;
        // When this partition's output ends, every scan it read has finished: record what the
        // plan's scans read so far (the largest total seen is the statement's).
        let end = futures::stream::once(async move {
            meter.fetch_max(bytes_scanned(input.as_ref()), Ordering::Relaxed);
            None
        })
        .filter_map(|x: Option<Result<datafusion::arrow::array::RecordBatch>>| async move { x });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream.chain(end))))
    }
}
