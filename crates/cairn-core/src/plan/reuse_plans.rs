//! Optimized plans reused by the next query of the same shape
//! (`cairn.reuse_plans`).
//!
//! A loop plans the same step again and again, each time over the
//! checkpoints the step before wrote. DataFusion's analyzer and its ~30
//! logical rules take over a millisecond a step for an answer that only
//! differs in which checkpoints the scans read. [`ReuseOptimizedPlans`]
//! keeps the optimized plan of such a query and hands it to the next query
//! of the same shape with its scans pointed at that query's checkpoints;
//! only physical planning runs again (so the scans' files, statistics and
//! dynamic filters are always the new ones).
//!
//! A query qualifies when every table it reads is a checkpoint, it is built
//! of plain relational nodes (no subquery, placeholder, variable or
//! extension), and every function it calls is immutable (`now()` and
//! `random()` are folded or run per query). Its key is the plan's text with
//! the checkpoints' generated names replaced by slots, the type of every
//! literal, the identity of every function, and all the session's settings.
//! A kept plan reads placeholders of the checkpoints' schemas, never the
//! checkpoints themselves, so keeping it keeps no superseded checkpoint.

use std::any::Any;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, DFSchemaRef, Result, TableReference};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{
    Distinct, EmptyRelation, Explain, Expr, Extension, LogicalPlan, Signature, TableScan,
    TableScanBuilder, TableSource, UserDefinedLogicalNodeCore, Volatility,
    WindowFunctionDefinition,
};
use datafusion::optimizer::{Analyzer, AnalyzerRule, Optimizer, OptimizerContext, OptimizerRule};

use crate::config::CairnOptions;
use crate::exec::{CheckpointTable, LocalCheckpointTable};

/// Plans of more nodes than this (a part read twice counts twice) are not
/// looked at: walking them as a tree is the cost, not the optimizer.
const MAX_NODES: usize = 10_000;

/// Kept plans: the most recently used ones past this number are dropped.
const CAPACITY: usize = 64;

/// Cairn's analyzer rule, right after [`ReuseSubplans`](super::ReuseSubplans):
/// a qualifying query becomes an [`OptimizedPlan`] leaf holding its
/// optimized plan (kept from an earlier query, or made here by the rest of
/// the analyzer and the optimizer), which DataFusion's rules pass over and
/// the query planner unwraps.
#[derive(Debug)]
pub struct ReuseOptimizedPlans {
    analyzer: Analyzer,
    optimizer: Optimizer,
    plans: Arc<OptimizedPlans>,
}

impl ReuseOptimizedPlans {
    /// The rule, planning a query it has not kept with `analyzer_rules`
    /// (the session's, after this one) and `optimizer_rules` (the
    /// session's), keeping plans in `plans`.
    pub fn new(
        analyzer_rules: Vec<Arc<dyn AnalyzerRule + Send + Sync>>,
        optimizer_rules: Vec<Arc<dyn OptimizerRule + Send + Sync>>,
        plans: Arc<OptimizedPlans>,
    ) -> Self {
        Self {
            analyzer: Analyzer::with_rules(analyzer_rules),
            optimizer: Optimizer::with_rules(optimizer_rules),
            plans,
        }
    }

    /// The rest of the analyzer and the optimizer, as the session runs them.
    fn optimize(&self, plan: LogicalPlan, config: &ConfigOptions) -> Result<LogicalPlan> {
        let analyzed = self.analyzer.execute_and_check(plan, config, |_, _| {})?;
        let context = OptimizerContext::new_with_config_options(Arc::new(config.clone()));
        self.optimizer.optimize(analyzed, &context, |_, _| {})
    }
}

impl AnalyzerRule for ReuseOptimizedPlans {
    fn name(&self) -> &str {
        "cairn_reuse_optimized_plans"
    }

    fn analyze(&self, plan: LogicalPlan, config: &ConfigOptions) -> Result<LogicalPlan> {
        if !CairnOptions::in_options(config).is_some_and(|o| o.reuse.plans) {
            return Ok(plan);
        }
        let Some(shape) = Shape::of(&plan, config)? else {
            return Ok(plan);
        };
        if let Some(reused) = self.plans.reuse(&shape, plan.schema())? {
            return Ok(OptimizedPlan::leaf(reused));
        }
        // Errors are DataFusion's to report, as it always does: the query
        // goes on its usual way.
        let Ok(optimized) = self.optimize(plan.clone(), config) else {
            return Ok(plan);
        };
        self.plans.keep(shape, &optimized, plan.schema())?;
        Ok(OptimizedPlan::leaf(optimized))
    }
}

/// The optimized plans one session keeps, by the shape of the query.
#[derive(Debug, Default)]
pub struct OptimizedPlans {
    kept: Mutex<HashMap<String, Kept>>,
    clock: AtomicU64,
    reused: AtomicU64,
}

impl OptimizedPlans {
    /// How many queries so far ran a kept plan.
    pub fn reused(&self) -> u64 {
        self.reused.load(Ordering::Relaxed)
    }

    /// The kept plan of `shape`, its scans pointed at `shape`'s
    /// checkpoints, if one is kept and still answers to `schema`.
    fn reuse(&self, shape: &Shape, schema: &DFSchemaRef) -> Result<Option<LogicalPlan>> {
        let (plan, slots) = {
            let mut kept = self.kept.lock().expect("kept plans");
            let Some(entry) = kept.get_mut(&shape.key) else {
                return Ok(None);
            };
            entry.last_used = self.clock.fetch_add(1, Ordering::Relaxed);
            (entry.plan.clone(), entry.slots.clone())
        };
        let Some(bound) = bind(plan, &slots, &shape.slots)? else {
            return Ok(None);
        };
        if bound
            .schema()
            .has_equivalent_names_and_types(schema)
            .is_err()
        {
            return Ok(None);
        }
        self.reused.fetch_add(1, Ordering::Relaxed);
        Ok(Some(bound))
    }

    /// Keeps `optimized`, the plan of `shape` (whose schema was `schema`),
    /// with placeholders for its checkpoints.
    fn keep(&self, shape: Shape, optimized: &LogicalPlan, schema: &DFSchemaRef) -> Result<()> {
        if optimized
            .schema()
            .has_equivalent_names_and_types(schema)
            .is_err()
        {
            return Ok(());
        }
        let Some(plan) = unbind(optimized, &shape.slots)? else {
            return Ok(());
        };
        let slots = shape
            .slots
            .iter()
            .map(|s| KeptSlot {
                name: s.name.clone(),
                schema: s.source.schema(),
            })
            .collect();
        let mut kept = self.kept.lock().expect("kept plans");
        if kept.len() >= CAPACITY
            && let Some(oldest) = kept
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
        {
            kept.remove(&oldest);
        }
        kept.insert(
            shape.key,
            Kept {
                plan,
                slots,
                _functions: shape.functions,
                last_used: self.clock.fetch_add(1, Ordering::Relaxed),
            },
        );
        Ok(())
    }
}

/// One kept plan.
#[derive(Debug)]
struct Kept {
    /// Optimized, reading placeholders.
    plan: LogicalPlan,
    slots: Vec<KeptSlot>,
    /// The functions the key names by address, kept alive so that no other
    /// function takes their address.
    _functions: Vec<Arc<dyn Any + Send + Sync>>,
    last_used: u64,
}

/// A checkpoint scan of a kept plan: its name then, and its schema.
#[derive(Debug, Clone)]
struct KeptSlot {
    name: TableReference,
    schema: SchemaRef,
}

/// A checkpoint a query reads, by the name its scans give it.
struct Slot {
    name: TableReference,
    source: Arc<dyn TableSource>,
}

/// What identifies a qualifying query's optimized plan.
struct Shape {
    slots: Vec<Slot>,
    key: String,
    functions: Vec<Arc<dyn Any + Send + Sync>>,
}

impl Shape {
    /// The shape of `plan`, if it qualifies.
    fn of(plan: &LogicalPlan, config: &ConfigOptions) -> Result<Option<Shape>> {
        let mut slots: Vec<Slot> = Vec::new();
        let mut extra = String::new();
        let mut functions: Vec<Arc<dyn Any + Send + Sync>> = Vec::new();
        let mut nodes = 0;
        let mut qualifies = true;
        plan.apply(|node| {
            nodes += 1;
            qualifies &= nodes <= MAX_NODES && plain_node(node);
            if let (true, LogicalPlan::TableScan(scan)) = (qualifies, node) {
                qualifies &= add_slot(&mut slots, scan);
            }
            if qualifies {
                node.apply_expressions(|e| {
                    e.apply(|e| {
                        qualifies &= note_expr(e, &mut extra, &mut functions);
                        Ok(continue_while(qualifies))
                    })
                })?;
            }
            Ok(continue_while(qualifies))
        })?;
        if !qualifies || slots.is_empty() {
            return Ok(None);
        }
        let mut key = plan.display_indent_schema().to_string();
        for (i, slot) in slots.iter().enumerate() {
            if is_generated(&slot.name) {
                key = key.replace(slot.name.table(), &format!("${i}"));
            }
        }
        key.push_str("\n-- literals and functions\n");
        key.push_str(&extra);
        key.push_str("\n-- settings\n");
        for entry in config.entries() {
            let _ = writeln!(key, "{}={:?}", entry.key, entry.value);
        }
        Ok(Some(Shape {
            slots,
            key,
            functions,
        }))
    }
}

fn continue_while(go_on: bool) -> TreeNodeRecursion {
    if go_on {
        TreeNodeRecursion::Continue
    } else {
        TreeNodeRecursion::Stop
    }
}

/// The relational nodes whose text says all the optimizer reads of them,
/// and whose schema [`bind`] can derive again.
fn plain_node(node: &LogicalPlan) -> bool {
    matches!(
        node,
        LogicalPlan::Projection(_)
            | LogicalPlan::Filter(_)
            | LogicalPlan::Aggregate(_)
            | LogicalPlan::Join(_)
            | LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::Distinct(Distinct::All(_))
            | LogicalPlan::Window(_)
            | LogicalPlan::TableScan(_)
            | LogicalPlan::EmptyRelation(_)
    )
}

/// Notes the checkpoint `scan` reads; false if it reads anything else, or
/// its name stands for two different checkpoints.
fn add_slot(slots: &mut Vec<Slot>, scan: &TableScan) -> bool {
    let Some(id) = checkpoint_id(&scan.source) else {
        return false;
    };
    match slots.iter().find(|s| s.name == scan.table_name) {
        Some(slot) => checkpoint_id(&slot.source) == Some(id),
        None => {
            slots.push(Slot {
                name: scan.table_name.clone(),
                source: Arc::clone(&scan.source),
            });
            true
        }
    }
}

/// The kind and id of the checkpoint `source` is, if it is one.
fn checkpoint_id(source: &Arc<dyn TableSource>) -> Option<(bool, String)> {
    let provider = source_as_provider(source).ok()?;
    if let Some(t) = provider.downcast_ref::<CheckpointTable>() {
        return Some((true, t.id().to_string()));
    }
    let t = provider.downcast_ref::<LocalCheckpointTable>()?;
    Some((false, t.id().to_string()))
}

/// A name Cairn generated for a checkpoint's scan (`checkpoint_<id>`, see
/// [`scan_plan`](super::scan_plan)), which differs from one checkpoint to
/// the next; names users gave stay in the key.
fn is_generated(name: &TableReference) -> bool {
    matches!(name, TableReference::Bare { table } if table
        .strip_prefix("checkpoint_")
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit())))
}

/// Notes what the plan's text does not say of `e` (a literal's type, a
/// function's identity); false if `e` disqualifies the query.
fn note_expr(
    e: &Expr,
    extra: &mut String,
    functions: &mut Vec<Arc<dyn Any + Send + Sync>>,
) -> bool {
    match e {
        Expr::ScalarVariable(..)
        | Expr::Exists(_)
        | Expr::InSubquery(_)
        | Expr::SetComparison(_)
        | Expr::ScalarSubquery(_)
        | Expr::Placeholder(_)
        | Expr::OuterReferenceColumn(..)
        | Expr::Lambda(_)
        | Expr::LambdaVariable(_) => false,
        Expr::Literal(value, metadata) => {
            let _ = writeln!(extra, "{:?} {:?}", value.data_type(), metadata);
            true
        }
        Expr::ScalarFunction(f) => note_function(&f.func, f.func.signature(), extra, functions),
        Expr::AggregateFunction(f) => note_function(&f.func, f.func.signature(), extra, functions),
        Expr::WindowFunction(w) => match &w.fun {
            WindowFunctionDefinition::AggregateUDF(f) => {
                note_function(f, f.signature(), extra, functions)
            }
            WindowFunctionDefinition::WindowUDF(f) => {
                note_function(f, f.signature(), extra, functions)
            }
        },
        _ => true,
    }
}

/// Notes the function `f` by its address (kept alive in `functions`);
/// false unless it is immutable.
fn note_function<F: Any + Send + Sync>(
    f: &Arc<F>,
    signature: &Signature,
    extra: &mut String,
    functions: &mut Vec<Arc<dyn Any + Send + Sync>>,
) -> bool {
    let _ = writeln!(extra, "{:p}", Arc::as_ptr(f));
    functions.push(Arc::clone(f) as _);
    signature.volatility == Volatility::Immutable
}

/// `optimized` reading placeholders of its checkpoints' schemas; `None` if
/// it holds a node [`bind`] could not point at other checkpoints.
fn unbind(optimized: &LogicalPlan, slots: &[Slot]) -> Result<Option<LogicalPlan>> {
    let mut bindable = true;
    optimized.apply(|node| {
        bindable &= plain_node(node)
            && !matches!(node, LogicalPlan::TableScan(scan)
                if !slots.iter().any(|s| s.name == scan.table_name));
        Ok(continue_while(bindable))
    })?;
    if !bindable {
        return Ok(None);
    }
    let plan = optimized.clone().transform_up(|node| {
        Ok(match node {
            LogicalPlan::TableScan(scan) => {
                let source: Arc<dyn TableSource> = Arc::new(Placeholder {
                    schema: scan.source.schema(),
                });
                Transformed::yes(LogicalPlan::TableScan(TableScan { source, ..scan }))
            }
            other => Transformed::no(other),
        })
    })?;
    Ok(Some(plan.data))
}

/// The kept `plan` reading the checkpoints `now` names where it read those
/// `then` named; `None` if one has another schema.
fn bind(plan: LogicalPlan, then: &[KeptSlot], now: &[Slot]) -> Result<Option<LogicalPlan>> {
    if then.len() != now.len()
        || then
            .iter()
            .zip(now)
            .any(|(t, n)| *t.schema != *n.source.schema())
    {
        return Ok(None);
    }
    let renames: Vec<(&TableReference, &TableReference)> = then
        .iter()
        .zip(now)
        .filter(|(t, n)| t.name != n.name)
        .map(|(t, n)| (&t.name, &n.name))
        .collect();
    let rename = |e: Expr| rename_qualifiers(e, &renames);
    let bound = plan.transform_up(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let i = then
                .iter()
                .position(|t| t.name == scan.table_name)
                .expect("every scan of a kept plan has its slot");
            let source = Arc::clone(&now[i].source);
            let scan = if renames.is_empty() {
                TableScan { source, ..scan }
            } else {
                TableScanBuilder::new(now[i].name.clone(), source)
                    .with_projection(scan.projection)
                    .with_filters(
                        scan.filters
                            .into_iter()
                            .map(|e| rename(e).map(|t| t.data))
                            .collect::<Result<_>>()?,
                    )
                    .with_fetch(scan.fetch)
                    .with_statistics_requests(scan.statistics_requests)
                    .build()?
            };
            return Ok(Transformed::yes(LogicalPlan::TableScan(scan)));
        }
        if renames.is_empty() {
            return Ok(Transformed::no(node));
        }
        let node = match node {
            LogicalPlan::EmptyRelation(empty) => LogicalPlan::EmptyRelation(EmptyRelation {
                produce_one_row: empty.produce_one_row,
                schema: rename_schema(&empty.schema, &renames)?,
            }),
            other => other.map_expressions(rename)?.data.recompute_schema()?,
        };
        Ok(Transformed::yes(node))
    })?;
    Ok(Some(bound.data))
}

/// The new name of the qualifier `q`, if `renames` renames it.
fn renamed(
    renames: &[(&TableReference, &TableReference)],
    q: &TableReference,
) -> Option<TableReference> {
    renames
        .iter()
        .find(|(from, _)| *from == q)
        .map(|(_, to)| (*to).clone())
}

/// `e` with the qualifiers of its columns and aliases renamed.
fn rename_qualifiers(
    e: Expr,
    renames: &[(&TableReference, &TableReference)],
) -> Result<Transformed<Expr>> {
    let renamed = |q: &TableReference| renamed(renames, q);
    e.transform(|e| {
        Ok(match e {
            Expr::Column(mut c) => match c.relation.as_ref().and_then(renamed) {
                Some(to) => {
                    c.relation = Some(to);
                    Transformed::yes(Expr::Column(c))
                }
                None => Transformed::no(Expr::Column(c)),
            },
            Expr::Alias(mut a) => match a.relation.as_ref().and_then(renamed) {
                Some(to) => {
                    a.relation = Some(to);
                    Transformed::yes(Expr::Alias(a))
                }
                None => Transformed::no(Expr::Alias(a)),
            },
            other => Transformed::no(other),
        })
    })
}

fn rename_schema(
    schema: &DFSchemaRef,
    renames: &[(&TableReference, &TableReference)],
) -> Result<DFSchemaRef> {
    let fields = schema
        .iter()
        .map(|(q, f)| {
            let q = q.map(|q| renamed(renames, q).unwrap_or_else(|| q.clone()));
            (q, Arc::clone(f))
        })
        .collect();
    let renamed = DFSchema::new_with_metadata(fields, schema.metadata().clone())?
        .with_functional_dependencies(schema.functional_dependencies().clone())?;
    Ok(Arc::new(renamed))
}

/// Stands for a checkpoint in a kept plan: its schema, nothing it holds.
#[derive(Debug)]
struct Placeholder {
    schema: SchemaRef,
}

impl TableSource for Placeholder {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

/// A query's optimized plan, as a leaf DataFusion's rules pass over; the
/// query planner plans what it holds ([`take_optimized`]). `EXPLAIN` shows
/// the plan it holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub struct OptimizedPlan {
    plan: LogicalPlan,
}

impl OptimizedPlan {
    fn leaf(plan: LogicalPlan) -> LogicalPlan {
        LogicalPlan::Extension(Extension {
            node: Arc::new(OptimizedPlan { plan }),
        })
    }
}

impl UserDefinedLogicalNodeCore for OptimizedPlan {
    fn name(&self) -> &str {
        "OptimizedPlan"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![]
    }

    fn schema(&self) -> &DFSchemaRef {
        self.plan.schema()
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        // Always the root of the plan EXPLAIN shows: the held plan's lines
        // are indented as they would be there.
        write!(f, "{}", self.plan.display_indent())
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, _inputs: Vec<LogicalPlan>) -> Result<Self> {
        Ok(self.clone())
    }
}

/// `plan` with the optimized plan an [`OptimizedPlan`] at its root (or
/// under `EXPLAIN`) holds in its place: what a query planner plans.
pub fn take_optimized(plan: &LogicalPlan) -> Cow<'_, LogicalPlan> {
    let held = |p: &LogicalPlan| match p {
        LogicalPlan::Extension(e) => e
            .node
            .as_any()
            .downcast_ref::<OptimizedPlan>()
            .map(|o| o.plan.clone()),
        _ => None,
    };
    if let Some(inner) = held(plan) {
        return Cow::Owned(inner);
    }
    if let LogicalPlan::Explain(explain) = plan
        && let Some(inner) = held(&explain.plan)
    {
        return Cow::Owned(LogicalPlan::Explain(Explain {
            plan: Arc::new(inner),
            ..explain.clone()
        }));
    }
    Cow::Borrowed(plan)
}
