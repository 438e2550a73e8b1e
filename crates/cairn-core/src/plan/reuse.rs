//! Checkpoints Cairn places itself, so that users who forget them do not
//! pay for it.
//!
//! **A sub-plan one query reads more than once is computed once**
//! (`cairn.reuse_subplans`): a CTE or view used twice, a self-join of a
//! sub-query, a loop step that reads the previous result twice. Such a
//! sub-plan becomes a local checkpoint computed before the query (under a
//! [`SharedPlans`] node at its top) and each read a [`SharedScan`] of it.
//! Never for volatile plans, plans that read an enclosing query's columns
//! or a recursive query's work table, plans with subqueries (DataFusion
//! runs uncorrelated scalar subqueries before everything else, so they
//! could not read a shared result), plans under a `LIMIT` (which may need
//! only part of them), or plans that do no work worth sparing (no join,
//! aggregate, window, sort or distinct: reading their input again costs
//! what reading a copy costs).
//!
//! **Lineage that grows across actions is cut** (`cairn.auto_checkpoint`):
//! when the plan an action runs extends the plan an earlier action ran (a
//! loop), or stands for more nodes than `cairn.auto_checkpoint_nodes`, its
//! result is kept as a checkpoint (local or reliable) that later actions
//! read instead of computing it again, as long as what it read has not
//! changed.
//!
//! Both run as the first analyzer rule, on the plan as it is in memory (a
//! DAG, see [`PlanDag`]), before DataFusion's own rules walk it as a tree,
//! which for a loop of K steps that reads its input twice has 2^K nodes.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use datafusion::catalog::memory::MemTable;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchemaRef, Result};
use datafusion::datasource::listing::ListingTable;
use datafusion::datasource::source_as_provider;
use datafusion::datasource::view::ViewTable;
use datafusion::functions_table::generate_series::GenerateSeriesTable;
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, Projection, TableSource, UserDefinedLogicalNodeCore,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{AnalyzerRule, OptimizerConfig, OptimizerRule};

use super::dag::{Digest, PlanDag, is_work, subquery_address};
use super::node::{Auto, AutoReason, CheckpointNode};
use super::scan::scan_plan;
use super::series::SeriesTable;
use super::view::CairnView;
use crate::config::{AutoCheckpoint, CairnOptions};
use crate::exec::{CheckpointKind, CheckpointRun, CheckpointTable, LocalCheckpointTable};

/// A reliable automatic checkpoint needs its plan as a tree (its id is a
/// digest of the plan's text): past this many nodes it is not placed.
const MAX_RELIABLE_TREE: u64 = 20_000;

/// The candidates of this many recent actions are remembered: a plan that
/// extends one of them is taken for a loop.
const RECENT_ACTIONS: usize = 4;

/// Cairn's analyzer rule: shared sub-plans computed once, long lineage cut.
#[derive(Debug, Default)]
pub struct ReuseSubplans {
    auto: Arc<AutoCheckpoints>,
}

impl ReuseSubplans {
    /// The rule, remembering its cuts in `auto` (one per session).
    pub fn new(auto: Arc<AutoCheckpoints>) -> Self {
        Self { auto }
    }
}

impl AnalyzerRule for ReuseSubplans {
    fn name(&self) -> &str {
        "cairn_reuse_subplans"
    }

    fn analyze(&self, plan: LogicalPlan, config: &ConfigOptions) -> Result<LogicalPlan> {
        let Some(options) = CairnOptions::in_options(config) else {
            return Ok(plan);
        };
        let reuse = options.reuse;
        if !reuse.subplans && reuse.auto == AutoCheckpoint::Off {
            return Ok(plan);
        }
        let target_partitions = config.execution.target_partitions;
        let rewrite = |input: &LogicalPlan| {
            Rewriter {
                auto: &self.auto,
                options: &reuse,
                target_partitions,
            }
            .rewrite(input)
        };
        // The statement around the query stays on top.
        Ok(match plan {
            LogicalPlan::Analyze(_) | LogicalPlan::Dml(_) | LogicalPlan::Copy(_) => {
                plan.map_children(|input| rewrite(&input).map(Transformed::yes))?
                    .data
            }
            LogicalPlan::Explain(_)
            | LogicalPlan::Ddl(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::DescribeTable(_) => plan,
            other => rewrite(&other)?,
        })
    }
}

struct Rewriter<'a> {
    auto: &'a AutoCheckpoints,
    options: &'a crate::config::ReuseOptions,
    target_partitions: usize,
}

/// What becomes of one node of the DAG.
#[derive(Clone)]
enum Fate {
    /// Not reached: below a cut an earlier action wrote.
    Unread,
    /// Kept as it is (its inputs rewritten).
    Kept,
    /// Computed once for the query, read `reads` times.
    Shared { reads: u64 },
    /// Written by an earlier action: read from there.
    Cut(crate::exec::Materialized),
}

impl Rewriter<'_> {
    fn rewrite(&self, plan: &LogicalPlan) -> Result<LogicalPlan> {
        if is_rewritten(plan) {
            return Ok(plan.clone());
        }
        let dag = PlanDag::new(plan)?;
        let root = dag.root();
        let action = self.auto.next_action();
        let under_fetch = under_fetch(&dag);

        // Cuts earlier actions wrote, outermost first.
        let mut fates = vec![Fate::Unread; dag.nodes.len()];
        let mut reached = vec![false; dag.nodes.len()];
        reached[root] = true;
        if self.options.auto != AutoCheckpoint::Off {
            for i in (0..dag.nodes.len()).rev() {
                if !reached[i] {
                    continue;
                }
                let node = &dag.nodes[i];
                match self.auto.lookup(&node.digest, action) {
                    Some(m) if i != root => fates[i] = Fate::Cut(m),
                    _ => {
                        for &c in node
                            .inputs
                            .iter()
                            .chain(node.subqueries.iter().map(|(_, c)| c))
                        {
                            reached[c] = true;
                        }
                    }
                }
            }
        } else {
            reached.iter_mut().for_each(|r| *r = true);
        }

        // Sub-plans the query reads more than once.
        let reads = dag.reads(|i, reads| {
            if matches!(fates[i], Fate::Cut(_)) || !reached[i] {
                return 0;
            }
            let node = &dag.nodes[i];
            let shared = self.options.subplans
                && i != root
                && reads >= 2
                && node.works
                && !node.volatile
                && !node.correlated
                && !node.reads_work_table
                && !node.has_subqueries
                && !under_fetch[i]
                && can_share(&node.plan);
            fates[i] = if shared {
                Fate::Shared { reads }
            } else {
                Fate::Kept
            };
            if shared { 1 } else { reads }
        });
        debug_assert!(reads[root] == 1);

        // The lineage cut of this action, if the plan grew long.
        let cut = if self.options.auto == AutoCheckpoint::Off {
            None
        } else {
            self.lineage_cut(&dag, &fates, &under_fetch)
        };

        let nothing_to_do = cut.is_none()
            && !dag.inlined_views
            && fates.iter().all(|f| matches!(f, Fate::Unread | Fate::Kept));
        if nothing_to_do {
            return Ok(plan.clone());
        }
        let mut built = Built::new(&dag, &fates, self.target_partitions)?;
        if let Some(candidate) = cut {
            built.place_cut(&dag, candidate, self.options.auto, self.auto, action)?;
        }
        built.finish(root)
    }

    /// The node this action's result comes from, if its lineage is to be
    /// cut there: the plan under the aggregate or limit the action put on
    /// top, when it extends an earlier action's or has grown past the bound.
    fn lineage_cut(&self, dag: &PlanDag, fates: &[Fate], under_fetch: &[bool]) -> Option<usize> {
        let candidate = result_below_finish(dag);
        let node = &dag.nodes[candidate];
        let below = reachable_below(dag, candidate, fates);
        // Work of its own, not only reads of earlier cuts.
        let works = below
            .iter()
            .any(|&i| is_work(&dag.nodes[i].plan) && !matches!(fates[i], Fate::Cut(_)));
        let eligible = works
            && !node.volatile
            && !node.correlated
            && !node.reads_work_table
            && !under_fetch[candidate]
            && matches!(fates[candidate], Fate::Kept)
            && can_share(&node.plan);
        let extends_earlier = self.auto.extends_recent(
            below
                .iter()
                .filter(|&&i| i != candidate)
                .map(|&i| &dag.nodes[i].digest),
        );
        let reads_a_cut = below.iter().any(|&i| matches!(fates[i], Fate::Cut(_)));
        let long = node.tree_size > self.options.auto_nodes;
        // Only a result that is work to compute again is one to extend: a
        // query of a checkpoint (a loop's `count()` after each step) would
        // otherwise make the next step that reads it a "loop" and cut it
        // in memory before its own checkpoint writes it.
        if works {
            self.auto.remember(node.digest);
        }
        (eligible && (extends_earlier || reads_a_cut || long)).then_some(candidate)
    }
}

/// The node under what an action puts on top of the result it wants
/// (`count(*)`, `LIMIT`, `ORDER BY`, and the projections and aliases
/// around them): a checkpoint there keeps the result, and a checkpoint
/// above a sort would not keep its order.
fn result_below_finish(dag: &PlanDag) -> usize {
    let mut node = dag.root();
    let mut candidate = node;
    loop {
        let finishes = match &dag.nodes[node].plan {
            LogicalPlan::Aggregate(a) => a.group_expr.is_empty(),
            LogicalPlan::Limit(_) | LogicalPlan::Sort(_) => true,
            LogicalPlan::Projection(_) | LogicalPlan::SubqueryAlias(_) => false,
            _ => return candidate,
        };
        let [input] = dag.nodes[node].inputs[..] else {
            return candidate;
        };
        if finishes {
            candidate = input;
        }
        node = input;
    }
}

/// The nodes reached from `top` (itself included) without passing a cut.
fn reachable_below(dag: &PlanDag, top: usize, fates: &[Fate]) -> Vec<usize> {
    let mut seen = HashSet::new();
    let mut stack = vec![top];
    while let Some(i) = stack.pop() {
        if !seen.insert(i) || matches!(fates[i], Fate::Cut(_)) {
            continue;
        }
        let node = &dag.nodes[i];
        stack.extend(
            node.inputs
                .iter()
                .chain(node.subqueries.iter().map(|(_, c)| c)),
        );
    }
    seen.into_iter().collect()
}

/// Whether each node is read under a `LIMIT` (or a sort that keeps the
/// first rows) with nothing between that reads all of its input first.
fn under_fetch(dag: &PlanDag) -> Vec<bool> {
    let mut under = vec![false; dag.nodes.len()];
    for i in (0..dag.nodes.len()).rev() {
        let node = &dag.nodes[i];
        let passed = match &node.plan {
            LogicalPlan::Limit(_) => true,
            LogicalPlan::Sort(s) => s.fetch.is_some(),
            LogicalPlan::Aggregate(_)
            | LogicalPlan::Window(_)
            | LogicalPlan::Distinct(_)
            | LogicalPlan::RecursiveQuery(_) => false,
            _ => under[i],
        };
        for &c in &node.inputs {
            under[c] |= passed;
        }
    }
    under
}

/// Nodes that can be computed on their own and read back as a table.
fn can_share(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Extension(e) => !e.node.as_any().is::<CheckpointNode>(),
        LogicalPlan::Subquery(_)
        | LogicalPlan::Statement(_)
        | LogicalPlan::Dml(_)
        | LogicalPlan::Ddl(_)
        | LogicalPlan::Copy(_)
        | LogicalPlan::Explain(_)
        | LogicalPlan::Analyze(_)
        | LogicalPlan::DescribeTable(_)
        | LogicalPlan::EmptyRelation(_)
        | LogicalPlan::Values(_) => false,
        _ => true,
    }
}

/// Whether `plan` went through this rule already.
fn is_rewritten(plan: &LogicalPlan) -> bool {
    matches!(plan, LogicalPlan::Extension(e) if e.node.as_any().is::<SharedPlans>())
}

/// The rewritten plan, built inputs first.
struct Built<'d> {
    fates: &'d [Fate],
    /// What a reader of each node reads: the node rewritten, or a scan of
    /// its shared or cut result.
    read: Vec<Option<Arc<LogicalPlan>>>,
    /// Each node rewritten without shared reads (a reliable cut's original).
    plain: Vec<Option<Arc<LogicalPlan>>>,
    /// The shared sub-plans' checkpoints, inner ones first.
    shared: Vec<LogicalPlan>,
}

impl<'d> Built<'d> {
    fn new(dag: &PlanDag, fates: &'d [Fate], target_partitions: usize) -> Result<Self> {
        let mut built = Self {
            fates,
            read: vec![None; dag.nodes.len()],
            plain: vec![None; dag.nodes.len()],
            shared: Vec::new(),
        };
        for (i, node) in dag.nodes.iter().enumerate() {
            match &fates[i] {
                Fate::Unread => {}
                Fate::Cut(m) => {
                    let scan = Arc::new(scan_plan(m, Some(node.plan.schema()))?);
                    built.plain[i] = Some(Arc::clone(&scan));
                    built.read[i] = Some(scan);
                }
                Fate::Kept => built.read[i] = Some(Arc::new(built.with_inputs(dag, i)?)),
                Fate::Shared { reads } => {
                    let body = built.with_inputs(dag, i)?;
                    let tag = short_tag(&node.digest);
                    let checkpoint = CheckpointNode::placed(
                        body.clone(),
                        body,
                        CheckpointKind::Local,
                        Auto {
                            reason: AutoReason::Shared { reads: *reads },
                            tag: tag.clone(),
                        },
                    )?;
                    let scan = SharedScan {
                        run: Arc::clone(checkpoint.run()),
                        schema: Arc::clone(node.plan.schema()),
                        tag,
                        target_partitions,
                    };
                    built.shared.push(checkpoint.into_plan());
                    built.read[i] = Some(Arc::new(scan.into_plan()));
                }
            }
        }
        Ok(built)
    }

    /// Node `i` with its inputs and subqueries replaced by their reads.
    fn with_inputs(&self, dag: &PlanDag, i: usize) -> Result<LogicalPlan> {
        self.rebuilt(dag, i, &self.read)
    }

    /// Node `i` over `reads` of its inputs and subqueries.
    fn rebuilt(
        &self,
        dag: &PlanDag,
        i: usize,
        reads: &[Option<Arc<LogicalPlan>>],
    ) -> Result<LogicalPlan> {
        let node = &dag.nodes[i];
        let read = |c: usize| -> Result<Arc<LogicalPlan>> {
            reads[c].clone().ok_or_else(|| {
                datafusion::error::DataFusionError::Internal(format!(
                    "sub-plan {c} read before it was rebuilt"
                ))
            })
        };
        let mut inputs = node.inputs.iter();
        let mut failed = None;
        let plan = node
            .plan
            .clone()
            .map_children(|child| {
                let Some(&c) = inputs.next() else {
                    return Ok(Transformed::no(child));
                };
                match read(c) {
                    Ok(p) => Ok(Transformed::yes(p.as_ref().clone())),
                    Err(e) => {
                        failed = Some(e);
                        Ok(Transformed::no(child))
                    }
                }
            })?
            .data;
        if let Some(e) = failed {
            return Err(e);
        }
        if node.subqueries.is_empty() {
            return Ok(plan);
        }
        let by_address: HashMap<usize, usize> = node.subqueries.iter().copied().collect();
        Ok(plan
            .map_subqueries(|wrapper| {
                let LogicalPlan::Subquery(mut s) = wrapper else {
                    return Ok(Transformed::no(wrapper));
                };
                let Some(&c) = by_address.get(&subquery_address(&s.subquery)) else {
                    return Ok(Transformed::no(LogicalPlan::Subquery(s)));
                };
                s.subquery = read(c)?;
                Ok(Transformed::yes(LogicalPlan::Subquery(s)))
            })?
            .data)
    }

    /// Places the action's lineage cut on `candidate` (read once, by the
    /// nodes that finish the result) and remembers it.
    fn place_cut(
        &mut self,
        dag: &PlanDag,
        candidate: usize,
        kind: AutoCheckpoint,
        auto: &AutoCheckpoints,
        action: u64,
    ) -> Result<()> {
        let node = &dag.nodes[candidate];
        let Some(marks) = source_marks(dag, candidate, self.fates, auto) else {
            return Ok(());
        };
        let input = self.with_inputs(dag, candidate)?;
        // A reliable cut's id is a digest of its plan as a tree.
        let (kind, original) = match kind {
            AutoCheckpoint::Reliable
                if tree_size_with_cuts(dag, self.fates, candidate) <= MAX_RELIABLE_TREE =>
            {
                (CheckpointKind::Reliable, self.plain_of(dag, candidate)?)
            }
            _ => (CheckpointKind::Local, input.clone()),
        };
        let checkpoint = CheckpointNode::placed(
            input,
            original,
            kind,
            Auto {
                reason: AutoReason::LineageCut,
                tag: short_tag(&node.digest),
            },
        )?;
        auto.record_cut(node.digest, Arc::clone(checkpoint.run()), marks, action);
        self.read[candidate] = Some(Arc::new(checkpoint.into_plan()));
        // The nodes above read the cut now (only finishing nodes are above
        // it, so none of them is shared).
        for i in candidate + 1..dag.nodes.len() {
            if let Fate::Kept = self.fates[i] {
                self.read[i] = Some(Arc::new(self.with_inputs(dag, i)?));
            }
        }
        Ok(())
    }

    /// The candidate and what it reads, without shared reads: a tree.
    fn plain_of(&mut self, dag: &PlanDag, top: usize) -> Result<LogicalPlan> {
        for i in 0..=top {
            if self.plain[i].is_some() || matches!(self.fates[i], Fate::Unread) {
                continue;
            }
            let plain = self.rebuilt(dag, i, &self.plain)?;
            self.plain[i] = Some(Arc::new(plain));
        }
        Ok(self.plain[top].clone().expect("built").as_ref().clone())
    }

    fn finish(self, root: usize) -> Result<LogicalPlan> {
        let body = self.read[root]
            .clone()
            .expect("the root is built")
            .as_ref()
            .clone();
        if self.shared.is_empty() {
            return Ok(body);
        }
        Ok(SharedPlans::new(self.shared, body).into_plan())
    }
}

/// Nodes of the tree `top` stands for, a cut counting as one.
fn tree_size_with_cuts(dag: &PlanDag, fates: &[Fate], top: usize) -> u64 {
    let mut sizes = vec![0u64; top + 1];
    for i in 0..=top {
        let node = &dag.nodes[i];
        sizes[i] = match fates[i] {
            Fate::Cut(_) => 1,
            _ => node
                .inputs
                .iter()
                .chain(node.subqueries.iter().map(|(_, c)| c))
                .fold(1u64, |n, &c| n.saturating_add(sizes[c])),
        };
    }
    sizes[top]
}

fn short_tag(digest: &Digest) -> String {
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// The query with the shared sub-plans it reads, computed first (inner
/// ones first): its inputs are those sub-plans' checkpoints, then the query.
#[derive(Debug, Clone)]
pub struct SharedPlans {
    shared: Vec<LogicalPlan>,
    body: LogicalPlan,
}

impl SharedPlans {
    fn new(shared: Vec<LogicalPlan>, body: LogicalPlan) -> Self {
        Self { shared, body }
    }

    /// The node as a plan.
    pub fn into_plan(self) -> LogicalPlan {
        LogicalPlan::Extension(Extension {
            node: Arc::new(self),
        })
    }
}

impl PartialEq for SharedPlans {
    fn eq(&self, other: &Self) -> bool {
        self.shared == other.shared && self.body == other.body
    }
}

impl Eq for SharedPlans {}

impl Hash for SharedPlans {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.shared.hash(state);
        self.body.hash(state);
    }
}

// Plans have no order; DataFusion only needs the trait.
impl PartialOrd for SharedPlans {
    fn partial_cmp(&self, _other: &Self) -> Option<std::cmp::Ordering> {
        None
    }
}

impl UserDefinedLogicalNodeCore for SharedPlans {
    fn name(&self) -> &str {
        "SharedPlans"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        self.shared
            .iter()
            .chain(std::iter::once(&self.body))
            .collect()
    }

    fn schema(&self) -> &DFSchemaRef {
        self.body.schema()
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "SharedPlans: {} sub-plan(s) computed once, before the query",
            self.shared.len()
        )
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        let Some(body) = inputs.pop() else {
            return datafusion::common::internal_err!("SharedPlans needs the query as an input");
        };
        Ok(Self {
            shared: inputs,
            body,
        })
    }
}

/// A read of a sub-plan the query computes once (see [`SharedPlans`]).
#[derive(Debug, Clone)]
pub struct SharedScan {
    run: Arc<CheckpointRun>,
    schema: DFSchemaRef,
    tag: String,
    target_partitions: usize,
}

impl SharedScan {
    /// The node as a plan.
    pub fn into_plan(self) -> LogicalPlan {
        LogicalPlan::Extension(Extension {
            node: Arc::new(self),
        })
    }

    /// The run of the checkpoint it reads.
    pub fn run(&self) -> &Arc<CheckpointRun> {
        &self.run
    }

    /// The tag EXPLAIN shows on the sub-plan and its reads.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Partitions to read it in.
    pub fn target_partitions(&self) -> usize {
        self.target_partitions
    }
}

impl PartialEq for SharedScan {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.run, &other.run) && self.schema == other.schema
    }
}

impl Eq for SharedScan {}

impl Hash for SharedScan {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.run) as usize).hash(state);
        self.tag.hash(state);
    }
}

impl PartialOrd for SharedScan {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.tag.partial_cmp(&other.tag)
    }
}

impl UserDefinedLogicalNodeCore for SharedScan {
    fn name(&self) -> &str {
        "SharedScan"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SharedScan: #{}", self.tag)
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, _inputs: Vec<LogicalPlan>) -> Result<Self> {
        Ok(self.clone())
    }
}

/// The lineage cuts of one session, remembered between its actions.
#[derive(Debug, Default)]
pub struct AutoCheckpoints {
    state: Mutex<AutoState>,
    placed: AtomicU64,
}

#[derive(Debug, Default)]
struct AutoState {
    action: u64,
    /// The candidates of the last actions.
    recent: VecDeque<Digest>,
    cuts: HashMap<Digest, Cut>,
}

#[derive(Debug)]
struct Cut {
    run: Arc<CheckpointRun>,
    marks: Vec<SourceMark>,
    last_used: u64,
}

impl AutoCheckpoints {
    /// Lineage cuts placed so far in this session.
    pub fn placed(&self) -> u64 {
        self.placed.load(Ordering::Relaxed)
    }

    /// The reliable cuts this session placed or reused that are written.
    pub fn reliable(&self) -> Vec<Arc<CheckpointTable>> {
        let state = self.state.lock().expect("auto checkpoints poisoned");
        state
            .cuts
            .values()
            .filter_map(|c| match c.run.materialized() {
                Some(crate::exec::Materialized::Reliable(t)) => Some(t),
                _ => None,
            })
            .collect()
    }

    fn next_action(&self) -> u64 {
        let mut state = self.state.lock().expect("auto checkpoints poisoned");
        state.action += 1;
        let action = state.action;
        // Cuts no action read lately are let go (their memory with them).
        state.cuts.retain(|_, c| c.last_used + 1 >= action);
        action
    }

    /// The written cut of this digest, if what it read is unchanged.
    fn lookup(&self, digest: &Digest, action: u64) -> Option<crate::exec::Materialized> {
        let mut state = self.state.lock().expect("auto checkpoints poisoned");
        let cut = state.cuts.get_mut(digest)?;
        let materialized = cut.run.materialized()?;
        if !cut.marks.iter().all(SourceMark::unchanged) {
            state.cuts.remove(digest);
            return None;
        }
        cut.last_used = action;
        Some(materialized)
    }

    fn extends_recent<'a>(&self, mut below: impl Iterator<Item = &'a Digest>) -> bool {
        let state = self.state.lock().expect("auto checkpoints poisoned");
        let recent: HashSet<&Digest> = state.recent.iter().collect();
        below.any(|d| recent.contains(d))
    }

    fn remember(&self, candidate: Digest) {
        let mut state = self.state.lock().expect("auto checkpoints poisoned");
        state.recent.retain(|d| *d != candidate);
        state.recent.push_back(candidate);
        while state.recent.len() > RECENT_ACTIONS {
            state.recent.pop_front();
        }
    }

    fn record_cut(
        &self,
        digest: Digest,
        run: Arc<CheckpointRun>,
        marks: Vec<SourceMark>,
        action: u64,
    ) {
        let mut state = self.state.lock().expect("auto checkpoints poisoned");
        state.cuts.insert(
            digest,
            Cut {
                run,
                marks,
                last_used: action,
            },
        );
        self.placed.fetch_add(1, Ordering::Relaxed);
    }

    /// The marks of the cut of `digest`, for a cut built over it.
    fn marks_of(&self, digest: &Digest) -> Option<Vec<SourceMark>> {
        let state = self.state.lock().expect("auto checkpoints poisoned");
        state.cuts.get(digest).map(|c| c.marks.clone())
    }
}

/// What a cut read, as it was: checked before the cut is read again, so a
/// changed source is read anew instead of from the cut.
#[derive(Clone)]
struct SourceMark {
    /// Held, so that its address is not reused while the cut is kept.
    _source: Arc<dyn TableSource>,
    identity: SourceIdentity,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SourceIdentity {
    /// Never changes (a checkpoint, a series).
    Fixed,
    /// A table in memory: its batches as they are.
    Memory(Vec<(usize, usize)>),
    /// Files on the local disk: each one's size and time of change.
    Files(Vec<(PathBuf, u64, Option<SystemTime>)>),
}

impl fmt::Debug for SourceMark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.identity.fmt(f)
    }
}

impl SourceMark {
    fn of(source: &Arc<dyn TableSource>) -> Option<Self> {
        Some(Self {
            _source: Arc::clone(source),
            identity: identity_of(source)?,
        })
    }

    fn unchanged(&self) -> bool {
        identity_of(&self._source).as_ref() == Some(&self.identity)
    }
}

/// The identity of a source as it is now; `None` when it cannot be told
/// without waiting (a remote store) or at all (a table Cairn does not know).
fn identity_of(source: &Arc<dyn TableSource>) -> Option<SourceIdentity> {
    let provider = source_as_provider(source).ok()?;
    if provider.downcast_ref::<CheckpointTable>().is_some()
        || provider.downcast_ref::<LocalCheckpointTable>().is_some()
        || provider.downcast_ref::<GenerateSeriesTable>().is_some()
        || provider.downcast_ref::<SeriesTable>().is_some()
        || provider.downcast_ref::<ViewTable>().is_some()
        || provider.downcast_ref::<CairnView>().is_some()
    {
        return Some(SourceIdentity::Fixed);
    }
    if let Some(t) = provider.downcast_ref::<MemTable>() {
        let mut batches = Vec::new();
        for partition in &t.batches {
            let partition = partition.try_read().ok()?;
            for b in partition.iter() {
                // Batches never change: a new one is a new array.
                let first = b
                    .columns()
                    .first()
                    .map_or(0, |c| Arc::as_ptr(c) as *const () as usize);
                batches.push((first, b.num_rows()));
            }
        }
        return Some(SourceIdentity::Memory(batches));
    }
    if let Some(t) = provider.downcast_ref::<ListingTable>() {
        let extension = &t.options().file_extension;
        let mut files = Vec::new();
        for url in t.table_paths() {
            if url.scheme() != "file" {
                return None;
            }
            let path = url.get_url().to_file_path().ok()?;
            list_local(&path, extension, &mut files);
        }
        files.sort();
        return Some(SourceIdentity::Files(files));
    }
    None
}

/// Files under `path` (itself if a file) ending in `extension`.
fn list_local(path: &Path, extension: &str, out: &mut Vec<(PathBuf, u64, Option<SystemTime>)>) {
    let Ok(meta) = std::fs::metadata(path) else {
        out.push((path.to_path_buf(), u64::MAX, None));
        return;
    };
    if meta.is_file() {
        out.push((path.to_path_buf(), meta.len(), meta.modified().ok()));
        return;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return;
    };
    for entry in entries.flatten() {
        let p = entry.path();
        if p.is_dir() || p.to_string_lossy().ends_with(extension) {
            list_local(&p, extension, out);
        }
    }
}

/// The marks of what `top` reads (through the cuts below it too); `None`
/// when one of its sources cannot be checked.
fn source_marks(
    dag: &PlanDag,
    top: usize,
    fates: &[Fate],
    auto: &AutoCheckpoints,
) -> Option<Vec<SourceMark>> {
    let mut marks = Vec::new();
    for i in reachable_below(dag, top, fates) {
        let node = &dag.nodes[i];
        if let Fate::Cut(_) = fates[i] {
            marks.extend(auto.marks_of(&node.digest)?);
        } else if let LogicalPlan::TableScan(scan) = &node.plan {
            marks.push(SourceMark::of(&scan.source)?);
        }
    }
    Some(marks)
}

/// An optimizer rule: a shared sub-plan keeps only the columns its reads
/// use. DataFusion prunes the columns of each read (a projection above
/// it), but cannot see through a read into the sub-plan, which would then
/// read every column of its tables (TPC-H Q11: `ps_comment`, `s_comment`,
/// ...). Once the reads are pruned, this narrows the sub-plan to what they
/// use together; DataFusion's next pass prunes inside it.
#[derive(Debug, Default)]
pub struct NarrowSharedReads;

impl OptimizerRule for NarrowSharedReads {
    fn name(&self) -> &str {
        "cairn_narrow_shared_reads"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        None
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        // The statement around the query stays on top.
        match plan {
            LogicalPlan::Analyze(_) | LogicalPlan::Dml(_) | LogicalPlan::Copy(_) => {
                plan.map_children(narrow)
            }
            other => narrow(other),
        }
    }
}

/// Narrows the shared sub-plans of `plan`, if it is a [`SharedPlans`].
fn narrow(plan: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    let LogicalPlan::Extension(e) = &plan else {
        return Ok(Transformed::no(plan));
    };
    let Some(shared) = e.node.as_any().downcast_ref::<SharedPlans>() else {
        return Ok(Transformed::no(plan));
    };
    let wanted = columns_read(shared)?;
    // The sub-plans whose reads all use fewer columns than it has.
    let mut narrowed: HashMap<String, LogicalPlan> = HashMap::new();
    let mut producers = Vec::with_capacity(shared.shared.len());
    for producer in &shared.shared {
        let Some(node) = checkpoint_of(producer) else {
            producers.push(producer.clone());
            continue;
        };
        let tag = node.auto().map(|a| a.tag.clone()).unwrap_or_default();
        let width = node.schema().fields().len();
        match wanted.get(&tag) {
            Some(Some(columns)) if !columns.is_empty() && columns.len() < width => {
                let input = node.input();
                let exprs = columns
                    .iter()
                    .map(|&i| Expr::Column(Column::from(input.schema().qualified_field(i))))
                    .collect::<Vec<_>>();
                let projection =
                    LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(input.clone()))?);
                narrowed.insert(tag, projection.clone());
                producers.push(
                    node.with_exprs_and_inputs(vec![], vec![projection])?
                        .into_plan(),
                );
            }
            _ => producers.push(producer.clone()),
        }
    }
    if narrowed.is_empty() {
        return Ok(Transformed::no(plan));
    }
    let reread = |p: LogicalPlan| -> Result<LogicalPlan> {
        Ok(p.transform_up_with_subqueries(|node| {
            let LogicalPlan::Extension(e) = &node else {
                return Ok(Transformed::no(node));
            };
            let Some(scan) = e.node.as_any().downcast_ref::<SharedScan>() else {
                return Ok(Transformed::no(node));
            };
            let Some(producer) = narrowed.get(&scan.tag) else {
                return Ok(Transformed::no(node));
            };
            let read = SharedScan {
                schema: Arc::clone(producer.schema()),
                ..scan.clone()
            };
            Ok(Transformed::yes(read.into_plan()))
        })?
        .data)
    };
    let producers = producers
        .into_iter()
        .map(reread)
        .collect::<Result<Vec<_>>>()?;
    let body = reread(shared.body.clone())?;
    Ok(Transformed::yes(
        SharedPlans::new(producers, body).into_plan(),
    ))
}

/// For each shared sub-plan (by tag), the columns its reads use, when every
/// read is a projection of plain columns; `None` when one read uses all.
fn columns_read(shared: &SharedPlans) -> Result<HashMap<String, Option<BTreeSet<usize>>>> {
    let mut wanted: HashMap<String, Option<BTreeSet<usize>>> = HashMap::new();
    let mut note = |scan: &SharedScan, columns: Option<BTreeSet<usize>>| {
        let entry = wanted
            .entry(scan.tag.clone())
            .or_insert_with(|| Some(BTreeSet::new()));
        match (entry.as_mut(), columns) {
            (Some(all), Some(columns)) => all.extend(columns),
            _ => *entry = None,
        }
    };
    let as_scan = |p: &LogicalPlan| match p {
        LogicalPlan::Extension(e) => e.node.as_any().downcast_ref::<SharedScan>().cloned(),
        _ => None,
    };
    for root in shared.inputs() {
        // A read at the top of a plan or of a subquery is read whole.
        let mut roots = vec![root.clone()];
        root.apply_with_subqueries(|node| {
            node.apply_subqueries(|s| {
                if let LogicalPlan::Subquery(s) = s {
                    roots.push(s.subquery.as_ref().clone());
                }
                Ok(TreeNodeRecursion::Continue)
            })?;
            for input in node.inputs() {
                let Some(scan) = as_scan(input) else {
                    continue;
                };
                let columns = match node {
                    LogicalPlan::Projection(p) => p
                        .expr
                        .iter()
                        .map(|e| match e {
                            Expr::Column(c) => scan.schema.index_of_column(c).ok(),
                            _ => None,
                        })
                        .collect::<Option<BTreeSet<usize>>>(),
                    _ => None,
                };
                note(&scan, columns);
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        for r in roots {
            if let Some(scan) = as_scan(&r) {
                note(&scan, None);
            }
        }
    }
    Ok(wanted)
}

fn checkpoint_of(plan: &LogicalPlan) -> Option<&CheckpointNode> {
    match plan {
        LogicalPlan::Extension(e) => e.node.as_any().downcast_ref::<CheckpointNode>(),
        _ => None,
    }
}
