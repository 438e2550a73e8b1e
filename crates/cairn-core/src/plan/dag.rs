//! A logical plan seen as what it is in memory: a DAG. DataFrames and views
//! share sub-plans (`labels.join(labels)` holds one `labels` twice), and a
//! loop that reads its previous result twice doubles its plan as a tree
//! while its DAG grows by one step. [`PlanDag`] visits each distinct
//! sub-plan once, merges sub-plans that are equal (by a digest of their
//! content), and says how often each is read, so that sharing can be
//! decided in time linear in the DAG, never in the tree.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::catalog::cte_worktable::CteWorkTable;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchemaRef, Result};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, UserDefinedLogicalNodeCore};

use super::view::CairnView;

/// A digest of a sub-plan's content: equal for equal sub-plans over the
/// same table objects of this process.
pub(crate) type Digest = [u8; 32];

/// One distinct sub-plan.
pub(crate) struct DagNode {
    /// The node itself (its inputs are the plan's own, shared).
    pub plan: LogicalPlan,
    pub digest: Digest,
    /// Its inputs, in order, as indexes into [`PlanDag::nodes`]; an input
    /// read twice (a self-join) appears twice.
    pub inputs: Vec<usize>,
    /// The roots of the subqueries in its expressions, by the address of
    /// the subquery plan, with their indexes.
    pub subqueries: Vec<(usize, usize)>,
    /// Nodes of the tree it stands for (a sub-plan read twice counts
    /// twice), saturating.
    pub tree_size: u64,
    /// Whether its result can change from run to run (`random()`, `now()`).
    pub volatile: bool,
    /// Whether it reads columns of an enclosing query.
    pub correlated: bool,
    /// Whether it reads the work table of a recursive query.
    pub reads_work_table: bool,
    /// Whether it, or a node below it, has a subquery in its expressions
    /// (DataFusion runs uncorrelated scalar subqueries before the query).
    pub has_subqueries: bool,
    /// Whether it, or a node below it, joins, aggregates, sorts, runs a
    /// window or a recursive query: work worth not doing twice.
    pub works: bool,
}

/// The distinct sub-plans of a plan, inputs before the plans that read
/// them; the root is last.
pub(crate) struct PlanDag {
    pub nodes: Vec<DagNode>,
    /// Whether scans of views were replaced by the views' plans.
    pub inlined_views: bool,
}

impl PlanDag {
    /// The DAG of `root`.
    pub fn new(root: &LogicalPlan) -> Result<Self> {
        Builder::default().build(root)
    }

    /// The index of the root.
    pub fn root(&self) -> usize {
        self.nodes.len() - 1
    }

    /// How many times each node is read, given for each node how many
    /// times it is computed (`copies`, told how many times it is read: that
    /// many if it stays in the plan where it is, once if it is computed once
    /// and read from there, none if its result is taken from elsewhere).
    /// Each node is read once per computation of each plan that reads it;
    /// `copies` sees each node after every node that reads it.
    pub fn reads(&self, mut copies: impl FnMut(usize, u64) -> u64) -> Vec<u64> {
        let mut reads = vec![0u64; self.nodes.len()];
        reads[self.root()] = 1;
        for i in (0..self.nodes.len()).rev() {
            let copies = copies(i, reads[i]);
            let node = &self.nodes[i];
            for &input in node
                .inputs
                .iter()
                .chain(node.subqueries.iter().map(|(_, i)| i))
            {
                reads[input] = reads[input].saturating_add(copies);
            }
        }
        reads
    }
}

/// Nodes of the tree `plan` stands for (a sub-plan read twice counts
/// twice), found in time linear in its DAG.
pub fn tree_size(plan: &LogicalPlan) -> Result<u64> {
    let dag = PlanDag::new(plan)?;
    Ok(dag.nodes[dag.root()].tree_size)
}

#[derive(Default)]
struct Builder {
    nodes: Vec<DagNode>,
    /// Address of a node of the plan → its index.
    by_address: HashMap<usize, usize>,
    by_digest: HashMap<Digest, usize>,
    inlined_views: bool,
}

/// A node on the way down: its address in the plan, and the node.
struct Pending {
    address: usize,
    plan: LogicalPlan,
    /// Inputs and subquery roots, pushed and not yet indexed.
    expanded: bool,
}

impl Builder {
    fn build(mut self, root: &LogicalPlan) -> Result<PlanDag> {
        // Post-order without recursion: plans can be thousands of nodes deep.
        let inlined_root = inline_view(root)?;
        self.inlined_views |= inlined_root.is_some();
        let mut stack = vec![Pending {
            address: address(root),
            plan: inlined_root.unwrap_or_else(|| root.clone()),
            expanded: false,
        }];
        while let Some(top) = stack.last_mut() {
            if self.by_address.contains_key(&top.address) {
                stack.pop();
                continue;
            }
            if !top.expanded {
                top.expanded = true;
                let children: Vec<Pending> = children_of(&top.plan, &mut self.inlined_views)?
                    .into_iter()
                    .filter(|(a, _)| !self.by_address.contains_key(a))
                    .map(|(address, plan)| Pending {
                        address,
                        plan,
                        expanded: false,
                    })
                    .collect();
                stack.extend(children.into_iter().rev());
                continue;
            }
            let Pending { address, plan, .. } = stack.pop().expect("the top is there");
            let index = self.add(plan)?;
            self.by_address.insert(address, index);
        }
        Ok(PlanDag {
            nodes: self.nodes,
            inlined_views: self.inlined_views,
        })
    }

    /// Indexes `plan`, whose inputs and subqueries are indexed already.
    fn add(&mut self, plan: LogicalPlan) -> Result<usize> {
        let index_of = |a: usize| self.by_address[&a];
        let inputs: Vec<usize> = plan
            .inputs()
            .into_iter()
            .map(|p| index_of(address(p)))
            .collect();
        let subqueries: Vec<(usize, usize)> = subquery_roots(&plan)?
            .into_iter()
            .map(|(a, _)| (a, index_of(a)))
            .collect();
        let digest = self.digest(&plan, &inputs)?;
        if let Some(&same) = self.by_digest.get(&digest) {
            return Ok(same);
        }
        let below = inputs
            .iter()
            .chain(subqueries.iter().map(|(_, i)| i))
            .map(|&i| &self.nodes[i]);
        let (mut tree_size, mut volatile, mut correlated, mut reads_work_table, mut works) =
            (1u64, false, false, false, is_work(&plan));
        let mut has_subqueries = !subqueries.is_empty();
        for n in below {
            tree_size = tree_size.saturating_add(n.tree_size);
            volatile |= n.volatile;
            correlated |= n.correlated;
            reads_work_table |= n.reads_work_table;
            works |= n.works;
            has_subqueries |= n.has_subqueries;
        }
        plan.apply_expressions(|e| {
            volatile |= e.is_volatile();
            correlated |= e
                .exists(|e| Ok(matches!(e, Expr::OuterReferenceColumn(..))))
                .unwrap_or(true);
            Ok(TreeNodeRecursion::Continue)
        })?;
        reads_work_table |= is_work_table_scan(&plan);
        let index = self.nodes.len();
        self.nodes.push(DagNode {
            plan,
            digest,
            inputs,
            subqueries,
            tree_size,
            volatile,
            correlated,
            reads_work_table,
            has_subqueries,
            works,
        });
        self.by_digest.insert(digest, index);
        Ok(index)
    }

    /// The node's own content (inputs as their digests), and for a table
    /// scan the table object it reads: DataFusion compares scans by name.
    fn digest(&self, plan: &LogicalPlan, inputs: &[usize]) -> Result<Digest> {
        let mut digests = inputs.iter().map(|&i| &self.nodes[i]);
        let shallow = plan
            .clone()
            .map_children(|child| {
                let input = digests.next().expect("one digest per input");
                Ok(Transformed::yes(Hole::plan(input.digest, child.schema())))
            })?
            .data;
        let mut hasher = DigestHasher::default();
        shallow.hash(&mut hasher);
        if let LogicalPlan::TableScan(scan) = plan {
            hasher.write_usize(Arc::as_ptr(&scan.source) as *const () as usize);
        }
        Ok(*blake3::hash(&hasher.0).as_bytes())
    }
}

/// The address of a node: the identity of a sub-plan that the plan shares.
fn address(plan: &LogicalPlan) -> usize {
    plan as *const LogicalPlan as usize
}

/// Inputs, then subquery roots, each with its address; a scan of a
/// [`CairnView`] as the view's plan.
fn children_of(plan: &LogicalPlan, inlined: &mut bool) -> Result<Vec<(usize, LogicalPlan)>> {
    let mut children: Vec<(usize, LogicalPlan)> = Vec::new();
    for p in plan.inputs() {
        let view = inline_view(p)?;
        *inlined |= view.is_some();
        children.push((address(p), view.unwrap_or_else(|| p.clone())));
    }
    children.extend(subquery_roots(plan)?);
    Ok(children)
}

/// What a scan of a [`CairnView`] reads: the view's plan under its name.
/// `None` for anything else, and for scans the optimizer already narrowed.
pub(crate) fn inline_view(plan: &LogicalPlan) -> Result<Option<LogicalPlan>> {
    let LogicalPlan::TableScan(scan) = plan else {
        return Ok(None);
    };
    if scan.projection.is_some() || !scan.filters.is_empty() || scan.fetch.is_some() {
        return Ok(None);
    }
    let Ok(provider) = source_as_provider(&scan.source) else {
        return Ok(None);
    };
    let Some(view) = provider.downcast_ref::<CairnView>() else {
        return Ok(None);
    };
    Ok(Some(view.inlined(&scan.table_name)?))
}

/// The plans of the subqueries in `plan`'s expressions, with their addresses.
pub(crate) fn subquery_roots(plan: &LogicalPlan) -> Result<Vec<(usize, LogicalPlan)>> {
    let mut roots = Vec::new();
    plan.apply_subqueries(|wrapper| {
        if let LogicalPlan::Subquery(s) = wrapper {
            roots.push((
                Arc::as_ptr(&s.subquery) as usize,
                s.subquery.as_ref().clone(),
            ));
        }
        Ok(TreeNodeRecursion::Jump)
    })?;
    Ok(roots)
}

/// The address of a subquery's plan, as [`subquery_roots`] gives it.
pub(crate) fn subquery_address(subquery: &Arc<LogicalPlan>) -> usize {
    Arc::as_ptr(subquery) as usize
}

/// Whether the node itself does work worth not doing twice.
pub(crate) fn is_work(plan: &LogicalPlan) -> bool {
    matches!(
        plan,
        LogicalPlan::Join(_)
            | LogicalPlan::Aggregate(_)
            | LogicalPlan::Window(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Distinct(_)
            | LogicalPlan::RecursiveQuery(_)
    )
}

fn is_work_table_scan(plan: &LogicalPlan) -> bool {
    let LogicalPlan::TableScan(scan) = plan else {
        return false;
    };
    source_as_provider(&scan.source).is_ok_and(|p| p.downcast_ref::<CteWorkTable>().is_some())
}

/// Collects what `Hash` writes, to digest it in one go.
#[derive(Default)]
struct DigestHasher(Vec<u8>);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        let digest = blake3::hash(&self.0);
        u64::from_le_bytes(digest.as_bytes()[..8].try_into().expect("8 bytes"))
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
}

/// Stands in for an input when a node is digested on its own.
#[derive(Debug, Clone)]
struct Hole {
    digest: Digest,
    schema: DFSchemaRef,
}

impl Hole {
    fn plan(digest: Digest, schema: &DFSchemaRef) -> LogicalPlan {
        LogicalPlan::Extension(Extension {
            node: Arc::new(Self {
                digest,
                schema: Arc::clone(schema),
            }),
        })
    }
}

impl PartialEq for Hole {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}

impl Eq for Hole {}

impl Hash for Hole {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.digest.hash(state);
    }
}

impl PartialOrd for Hole {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.digest.cmp(&other.digest))
    }
}

impl UserDefinedLogicalNodeCore for Hole {
    fn name(&self) -> &str {
        "Hole"
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
        write!(f, "Hole")
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, _inputs: Vec<LogicalPlan>) -> Result<Self> {
        Ok(self.clone())
    }
}
