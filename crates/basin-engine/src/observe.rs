//! A pass-through execution plan node that hands each partition's output stream to an
//! [`Observer`]: how the guardrail counts the rows a write would commit, and how the SQL
//! endpoint measures what a statement's scans read, without changing the plan's result.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, ReplaceChildrenOptions,
};

/// What an [`ObservedExec`] does with the output of its input.
pub trait Observer: fmt::Debug + Send + Sync + 'static {
    /// How the node shows in `EXPLAIN`.
    fn label(&self) -> String;
    /// The stream of `partition` to pass on, given the input's.
    fn observe(
        self: Arc<Self>,
        input: &Arc<dyn ExecutionPlan>,
        partition: usize,
        stream: SendableRecordBatchStream,
    ) -> SendableRecordBatchStream;
}

/// Passes its input through, its streams seen by an [`Observer`].
#[derive(Debug)]
pub struct ObservedExec<O> {
    input: Arc<dyn ExecutionPlan>,
    observer: Arc<O>,
    properties: Arc<PlanProperties>,
}

impl<O> Clone for ObservedExec<O> {
    fn clone(&self) -> Self {
        ObservedExec { input: self.input.clone(), observer: self.observer.clone(), properties: self.properties.clone() }
    }
}

impl<O: Observer> ObservedExec<O> {
    pub fn new(input: Arc<dyn ExecutionPlan>, observer: Arc<O>) -> Self {
        let properties = input.properties().clone();
        ObservedExec { input, observer, properties }
    }
}

impl<O: Observer> DisplayAs for ObservedExec<O> {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.observer.label())
    }
}

impl<O: Observer> ExecutionPlan for ObservedExec<O> {
    fn name(&self) -> &str {
        "ObservedExec"
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
            return Err(DataFusionError::Internal(format!("{} takes one input", self.observer.label())));
        }
        let input = children.swap_remove(0);
        Ok(Arc::new(match options.children_properties {
            ChildrenPropertiesMode::Keep => ObservedExec { input, ..(*self).clone() },
            ChildrenPropertiesMode::Recompute => ObservedExec::new(input, self.observer.clone()),
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
        let stream = self.input.execute(partition, context)?;
        Ok(self.observer.clone().observe(&self.input, partition, stream))
    }
}
