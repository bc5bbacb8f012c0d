//! Bytes a statement's scans read, for the query log. A physical optimizer rule of every role
//! session wraps the root of each plan in an observing exec which, when its output ends, sums
//! the `bytes_scanned` metric of the scans below it into the meter of the statement being
//! planned (a task-local set around planning, so concurrent statements never share a meter).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use basin_engine::observe::{ObservedExec, Observer};
use datafusion::common::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;

/// Bytes read by one statement's scans.
#[derive(Debug, Default)]
pub struct Meter(pub AtomicI64);

tokio::task_local! {
    static METER: Arc<Meter>;
}

/// Run `work` (which plans a statement) with `meter` counting its scans.
pub async fn scope<F: Future>(meter: Arc<Meter>, work: F) -> F::Output {
    METER.scope(meter, work).await
}

/// Count `bytes` read by the statement being served (one read without a physical plan).
pub fn add(bytes: u64) {
    let _ = METER.try_with(|m| m.0.fetch_add(bytes as i64, Ordering::Relaxed));
}

#[derive(Debug)]
pub struct MeterRule;

impl PhysicalOptimizerRule for MeterRule {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(match METER.try_with(Arc::clone) {
            Ok(meter) => Arc::new(ObservedExec::new(plan, meter)),
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

/// `bytes_scanned` of every operator in `plan`.
fn bytes_scanned(plan: &dyn ExecutionPlan) -> i64 {
    let own = plan.metrics().and_then(|m| m.sum_by_name("bytes_scanned")).map_or(0, |v| v.as_usize() as i64);
    own + plan.children().iter().map(|c| bytes_scanned(c.as_ref())).sum::<i64>()
}

impl Observer for Meter {
    fn label(&self) -> String {
        "ScanMeterExec".into()
    }

    /// When a partition's output ends, every scan it read has finished: record what the
    /// plan's scans read so far (the largest total seen is the statement's).
    fn observe(
        self: Arc<Self>,
        input: &Arc<dyn ExecutionPlan>,
        _partition: usize,
        stream: SendableRecordBatchStream,
    ) -> SendableRecordBatchStream {
        let schema = input.schema();
        let input = input.clone();
        let end = futures::stream::once(async move {
            self.0.fetch_max(bytes_scanned(input.as_ref()), Ordering::Relaxed);
            None
        })
        .filter_map(futures::future::ready);
        Box::pin(RecordBatchStreamAdapter::new(schema, stream.chain(end)))
    }
}
