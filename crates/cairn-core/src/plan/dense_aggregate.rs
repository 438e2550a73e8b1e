//! Aggregations grouped by one integer column run with group ids from an
//! array indexed by value (see [`DenseAggregateExec`]).

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::TreeNode;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;

use crate::config::CairnOptions;
use crate::exec::DenseAggregateExec;

/// Runs each `AggregateExec` that [`DenseAggregateExec`] can
/// run as one (`cairn.dense_group_by`, default on). Answers and plans as
/// shown do not change. Runs last: rules that rebuild an `AggregateExec`
/// would drop the wrapper.
#[derive(Debug, Default)]
pub struct DenseGroupBy;

impl PhysicalOptimizerRule for DenseGroupBy {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let on = CairnOptions::in_options(config).is_some_and(|options| options.dense_group_by);
        if !on {
            return Ok(plan);
        }
        plan.transform_up(|node| Ok(DenseAggregateExec::wrap(node)))
            .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "cairn_dense_group_by"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
