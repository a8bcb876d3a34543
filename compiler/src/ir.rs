//! The graph IR: nodes with ops and static types on a petgraph `StableDiGraph`.
//!
//! **Every node's output types are inferred when it is added**, so the graph is
//! always well-typed. Edges carry which output feeds which input slot; a node's
//! ordered inputs are read from its incoming edges.

use crate::error::{CompileError, ErrorKind, Result};
use gradc_runtime::op::OpError;
use gradc_runtime::{DType, Op, TensorType};
use hashbrown::HashTable;
use petgraph::stable_graph::{EdgeIndex, NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

/// The hash a node's name is kept under: fixed, so the table's order (and
/// whatever lists names from it) is the same in every run.
fn name_hash(name: &str) -> u32 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0).hash_one(name) as u32
}

/// The table's 64-bit hash of a kept 32-bit one (the table reads its high
/// bits as well as its low ones).
fn spread(h: u32) -> u64 {
    u64::from(h).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Where a node came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Written in the graph file.
    Forward,
    /// Made by differentiation.
    Backward,
    /// Made by the `train` section: optimizer state and update ops.
    Update,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Unique in the graph. The graph's name table is keyed by it: a node is
    /// renamed only by removing it and adding it again.
    pub name: String,
    pub op: Op,
    /// The declared (or default) dtype; source ops produce it, others infer theirs.
    pub dtype: DType,
    pub outputs: Vec<TensorType>,
    pub role: Role,
    /// The line of the graph file that wrote it, for errors.
    pub line: Option<usize>,
    /// How many control edges start or end here (kept by `add_control` and
    /// `remove`, checked by the verifier): passes ask it of every node.
    control_edges: u32,
    /// Creation order, unique in the graph: ties in the topological order are
    /// broken by it (petgraph reuses the indices of removed nodes).
    seq: u64,
}

impl Node {
    /// Creation order (see the field): changed only through `Graph::set_seq`,
    /// which keeps the graph's tables of it.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

/// An edge of the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    /// Output `output` of the source feeds input slot `input` of the target.
    Data { output: usize, input: usize },
    /// The source must run before the target (TensorFlow's control dependency).
    Control,
}

/// One output of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorRef {
    pub node: NodeIndex,
    pub output: usize,
}

impl TensorRef {
    pub fn of(node: NodeIndex) -> TensorRef {
        TensorRef { node, output: 0 }
    }
}

/// The collection of every variable (`tf.GraphKeys.GLOBAL_VARIABLES`).
pub const GLOBAL_VARIABLES: &str = "GLOBAL_VARIABLES";
/// The collection of trainable variables (`tf.GraphKeys.TRAINABLE_VARIABLES`).
pub const TRAINABLE_VARIABLES: &str = "TRAINABLE_VARIABLES";
/// The label under which a train step offers its learning rate.
pub const LEARNING_RATE: &str = "train/learning_rate";

/// Ops every train step runs (`tf.GraphKeys.UPDATE_OPS`), e.g. moving averages.
pub const UPDATE_OPS: &str = "UPDATE_OPS";

/// What the `train` section built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrainInfo {
    /// The `NoOp` that runs every update: the train step's target.
    pub train_op: NodeIndex,
    /// The loss as written (before weight decay), and the metrics, with their labels.
    pub loss: (String, TensorRef),
    pub metrics: Vec<(String, TensorRef)>,
    /// Gradients of the loss w.r.t. intermediate tensors, labelled `d(loss)/d(t)`.
    pub hooks: Vec<(String, TensorRef)>,
    /// The optimizer's learning rate in this step (scheduled or constant),
    /// labelled [`LEARNING_RATE`].
    pub learning_rate: Option<(String, TensorRef)>,
    /// The trained variables, in order.
    pub var_list: Vec<NodeIndex>,
}

impl TrainInfo {
    /// Every tensor the train step reports by label: the loss, the metrics,
    /// the hooks and the learning rate, in the train program's output order.
    pub fn reported(&self) -> impl Iterator<Item = &(String, TensorRef)> {
        std::iter::once(&self.loss)
            .chain(&self.metrics)
            .chain(&self.hooks)
            .chain(&self.learning_rate)
    }

    /// [`TrainInfo::reported`], to rewrite.
    pub fn reported_mut(&mut self) -> impl Iterator<Item = &mut (String, TensorRef)> {
        std::iter::once(&mut self.loss)
            .chain(&mut self.metrics)
            .chain(&mut self.hooks)
            .chain(&mut self.learning_rate)
    }
}

/// One result of a gradient request: `name` is `d(of)/d(wrt)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GradientResult {
    pub name: String,
    pub of: String,
    pub wrt: String,
    pub grad_ys: Option<String>,
    pub value: TensorRef,
}

#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub name: String,
    pub g: StableDiGraph<Node, Edge>,
    /// Node by name: node indices keyed by the hash of the node's name, which
    /// is kept once, in the node. A name that is not there (every new node's)
    /// is told by the table alone, without reading any other name.
    /// Each entry keeps its name's hash (in 32 bits), so growing the table
    /// reads no name either.
    names: HashTable<(u32, NodeIndex)>,
    next_seq: u64,
    /// Each node's `seq` by node index (`u64::MAX` for a free index): the
    /// topological order reads it without visiting every node.
    seq_of: Vec<u64>,
    /// (seq, node) as each node got its `seq`, so in creation order but for
    /// `set_seq`; an entry is current while the table above still holds its
    /// seq for its node. Compacted as it fills with stale entries.
    created: Vec<(u64, NodeIndex)>,
    /// Whether `set_seq` left an entry out of order in `created` since
    /// [`Graph::tidy`] last sorted it.
    created_unsorted: bool,
    /// Values `gradc run` prints by default, with their labels, in order.
    pub outputs: Vec<(String, TensorRef)>,
    /// Gradient results in request order.
    pub gradients: Vec<GradientResult>,
    /// Named collections of nodes, in insertion order (`tf.add_to_collection`).
    pub collections: std::collections::BTreeMap<String, Vec<NodeIndex>>,
    pub train: Option<TrainInfo>,
    /// The graph file's functions, by name (custom gradients are instantiated from them).
    pub functions: std::collections::BTreeMap<String, crate::schema::FunctionSpec>,
    /// Forward patterns fused before differentiation, and how often (`passes::prefuse`).
    pub prefused: std::collections::BTreeMap<&'static str, usize>,
    /// The processes of the data-parallel run it is built for (0 or 1: one);
    /// a BatchNorm layer with `sync: true` averages its statistics over them.
    pub ranks: usize,
    /// The graph file's text, for the lines of errors in function bodies.
    pub source: std::sync::Arc<str>,
    /// Nodes that a gradient request, an output, a fetch, a feed or the train
    /// section names, by name: `prefuse` never fuses one of them into a
    /// composite's op, so each keeps its value and its gradient.
    pub pinned: foldhash::HashSet<String>,
    /// The pinned nodes a run feeds or a request differentiates against
    /// (`wrt`, hooks): `prefuse` does not fuse a pattern rooted at one, as a
    /// fused gradient may read the root's own output where the pattern's
    /// does not (Sigmoid's y(1 - y)), so the fed value, or a gradient with
    /// respect to the root of that gradient, would differ.
    pub fixed_roots: foldhash::HashSet<String>,
    /// Whether a pipeline with passes ran on it (see `Program::optimized`).
    pub optimized: bool,
}

impl Graph {
    pub fn new(name: &str) -> Graph {
        Graph {
            name: name.to_string(),
            ..Graph::default()
        }
    }

    pub fn node(&self, n: NodeIndex) -> &Node {
        &self.g[n]
    }

    pub fn find(&self, name: &str) -> Option<NodeIndex> {
        let g = &self.g;
        let h = name_hash(name);
        self.names
            .find(spread(h), |&(k, n)| {
                k == h && g.node_weight(n).is_some_and(|node| node.name == name)
            })
            .map(|&(_, n)| n)
    }

    /// Every node's name, in the name table's order: the same for the same
    /// graph file and the same changes to it (the hash is fixed), not sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names
            .iter()
            .filter_map(|&(_, n)| self.g.node_weight(n))
            .map(|node| node.name.as_str())
    }

    /// Whether the name table holds exactly the live nodes (the verifier
    /// checks it, with every node's name found at its node).
    pub fn name_table_agrees(&self) -> bool {
        self.names.len() == self.g.node_count()
    }

    pub fn ty(&self, t: TensorRef) -> &TensorType {
        &self.g[t.node].outputs[t.output]
    }

    /// `name` or `name:k`.
    pub fn tensor_name(&self, t: TensorRef) -> String {
        let name = &self.g[t.node].name;
        if t.output == 0 {
            name.clone()
        } else {
            format!("{name}:{}", t.output)
        }
    }

    /// `base`, or `base_1`, `base_2`, ... whichever is free.
    pub fn unique_name(&self, base: impl Into<String>) -> String {
        let base = base.into();
        if self.find(&base).is_none() {
            return base;
        }
        (1..)
            .map(|i| format!("{base}_{i}"))
            .find(|n| self.find(n).is_none())
            .unwrap_or_default()
    }

    /// Room for `nodes` more nodes (and about as many edges again) without
    /// growing the node and edge arrays or the name table on the way: a large
    /// graph is not copied and rehashed each time they fill.
    pub fn reserve(&mut self, nodes: usize) {
        self.g.reserve_nodes(nodes);
        self.g.reserve_edges(nodes + nodes / 2);
        self.names.reserve(nodes, |&(h, _)| spread(h));
        self.seq_of.reserve(nodes);
        self.created.reserve(nodes);
    }

    /// Adds a node, inferring its output types. Errors name the node and op.
    pub fn add(
        &mut self,
        name: String,
        op: Op,
        dtype: DType,
        inputs: &[TensorRef],
        role: Role,
        line: Option<usize>,
    ) -> Result<NodeIndex> {
        let located = |e: CompileError| e.at_node(&name, op.name()).at_line(line);
        if self.find(&name).is_some() {
            return Err(located(CompileError::new(
                ErrorKind::DuplicateName,
                format!("a node named '{name}' already exists"),
            )));
        }
        let in_types: Vec<&TensorType> = inputs.iter().map(|&t| self.ty(t)).collect();
        let outputs = op.infer(dtype, &in_types).map_err(|msg| {
            let kind = match msg {
                OpError::DType(..) | OpError::Takes { .. } => ErrorKind::DType,
                OpError::Arity { .. } | OpError::Shape(_) => ErrorKind::Shape,
            };
            let shown: Vec<String> = inputs
                .iter()
                .zip(&in_types)
                .map(|(&t, ty)| format!("{}: {ty}", self.tensor_name(t)))
                .collect();
            let detail = if shown.is_empty() {
                String::new()
            } else {
                format!(" (inputs {})", shown.join(", "))
            };
            located(CompileError::new(kind, format!("{msg}{detail}")))
        })?;
        let seq = self.next_seq;
        self.next_seq += 1;
        let hash = name_hash(&name);
        let n = self.g.add_node(Node {
            name,
            op,
            dtype,
            outputs,
            role,
            line,
            control_edges: 0,
            seq,
        });
        self.connect(n, inputs);
        self.names
            .insert_unique(spread(hash), (hash, n), |&(h, _)| spread(h));
        self.set_seq_of(n, seq);
        Ok(n)
    }

    /// Data edges from `inputs` into the slots of `n`, in order.
    fn connect(&mut self, n: NodeIndex, inputs: &[TensorRef]) {
        for (slot, t) in inputs.iter().enumerate() {
            self.g.add_edge(
                t.node,
                n,
                Edge::Data {
                    output: t.output,
                    input: slot,
                },
            );
        }
    }

    /// The nodes whose outputs feed `n`'s input slots, in no particular
    /// order (a node feeding two slots comes twice): for a test over them
    /// that needs neither slots nor a buffer.
    pub fn data_sources(&self, n: NodeIndex) -> impl Iterator<Item = NodeIndex> + '_ {
        self.g
            .edges_directed(n, Direction::Incoming)
            .filter(|e| matches!(e.weight(), Edge::Data { .. }))
            .map(|e| e.source())
    }

    /// The node's inputs in slot order.
    pub fn inputs(&self, n: NodeIndex) -> Vec<TensorRef> {
        let mut ins = Vec::with_capacity(4);
        self.inputs_into(n, &mut ins);
        ins
    }

    /// The node's inputs in slot order, written into `ins` (cleared first):
    /// a pass that reads every node's inputs reuses one buffer.
    pub fn inputs_into(&self, n: NodeIndex, ins: &mut Vec<TensorRef>) {
        // Each data edge goes straight to its slot: no sort.
        let unset = TensorRef {
            node: NodeIndex::end(),
            output: usize::MAX,
        };
        ins.clear();
        for e in self.g.edges_directed(n, Direction::Incoming) {
            if let Edge::Data { output, input } = *e.weight() {
                if ins.len() <= input {
                    ins.resize(input + 1, unset);
                }
                ins[input] = TensorRef {
                    node: e.source(),
                    output,
                };
            }
        }
        // Only a broken graph (which the verifier reports) leaves a slot unset.
        ins.retain(|&t| t != unset);
    }

    /// The nodes that must run before `n`, in creation order.
    pub fn control_inputs(&self, n: NodeIndex) -> Vec<NodeIndex> {
        let mut c: Vec<NodeIndex> = self
            .g
            .edges_directed(n, Direction::Incoming)
            .filter(|e| *e.weight() == Edge::Control)
            .map(|e| e.source())
            .collect();
        c.sort_by_key(|&m| self.g[m].seq);
        c.dedup();
        c
    }

    /// Makes `before` run before `after`.
    pub fn add_control(&mut self, before: NodeIndex, after: NodeIndex) {
        // Only the edges between these two nodes: a NoOp over V update ops stays O(V).
        let exists = self
            .g
            .edges_connecting(before, after)
            .any(|e| *e.weight() == Edge::Control);
        if !exists {
            self.g.add_edge(before, after, Edge::Control);
            self.g[before].control_edges += 1;
            self.g[after].control_edges += 1;
        }
    }

    /// Whether `n` has control edges in or out: such a node stays as it is.
    pub fn has_control(&self, n: NodeIndex) -> bool {
        self.g[n].control_edges > 0
    }

    /// Whether every node's count of control edges matches its edges (the
    /// verifier checks it).
    pub fn control_counts_agree(&self) -> bool {
        let mut count = vec![0u32; self.node_bound()];
        for e in petgraph::visit::IntoEdgeReferences::edge_references(&self.g) {
            if *e.weight() == Edge::Control {
                count[e.source().index()] += 1;
                count[e.target().index()] += 1;
            }
        }
        self.g
            .node_indices()
            .all(|n| self.g[n].control_edges == count[n.index()])
    }

    /// Nodes that use an output of `n` as data, deduplicated, in creation order.
    pub fn data_consumers(&self, n: NodeIndex) -> Vec<NodeIndex> {
        let mut c: Vec<NodeIndex> = self
            .g
            .edges_directed(n, Direction::Outgoing)
            .filter(|e| matches!(e.weight(), Edge::Data { .. }))
            .map(|e| e.target())
            .collect();
        c.sort_by_key(|&m| self.g[m].seq);
        c.dedup();
        c
    }

    /// Nodes that use an output of `n`, deduplicated, in index order.
    pub fn consumers(&self, n: NodeIndex) -> Vec<NodeIndex> {
        let set: BTreeSet<NodeIndex> = self.g.neighbors_directed(n, Direction::Outgoing).collect();
        set.into_iter().collect()
    }

    /// Removes a node and its edges.
    pub fn remove(&mut self, n: NodeIndex) {
        if !self.g.contains_node(n) {
            return;
        }
        self.uncount_controls(n);
        if let Some(node) = self.g.remove_node(n) {
            self.forget(n, &node);
        }
    }

    /// Removes the nodes `dead` (in that order, as `remove` one by one
    /// would) and their edges. Removing an edge walks the edge lists of both
    /// its ends from their heads (petgraph's lists are singly linked), so
    /// removing many nodes that share a neighbour of many edges (a chain of
    /// `Add(a, x)`'s fused away, each node reading `x`) one by one takes time
    /// quadratic in that neighbour's edges. When the walks would cost more
    /// than the graph's size, the edges are rebuilt instead: every edge lies
    /// at the same place in its ends' lists as before, only its index changes.
    pub fn remove_all(&mut self, dead: &[NodeIndex]) {
        if self.unlinking_is_costly(dead) {
            self.remove_all_rebuilding_edges(dead);
        } else {
            for &n in dead {
                self.remove(n);
            }
        }
    }

    /// `remove_all` by rebuilding the edges: time linear in the graph's size.
    fn remove_all_rebuilding_edges(&mut self, dead: &[NodeIndex]) {
        let mut is_dead = vec![false; self.node_bound()];
        for &n in dead {
            if self.g.contains_node(n) {
                is_dead[n.index()] = true;
            }
        }
        let mut uncounted = vec![false; is_dead.len()];
        for &n in dead {
            if is_dead[n.index()] && !std::mem::replace(&mut uncounted[n.index()], true) {
                self.uncount_controls(n);
            }
        }
        let kept = self.kept_edges_in_insertion_order(&is_dead);
        self.g.clear_edges();
        for &n in dead {
            if let Some(node) = self.g.remove_node(n) {
                self.forget(n, &node);
            }
        }
        for (a, b, e) in kept {
            self.g.add_edge(a, b, e);
        }
    }

    /// Whether removing `dead` one by one would walk more edges than
    /// rebuilding the edges visits. Each edge of a dead node is counted at
    /// the length of its other end's list, which bounds the walk that
    /// unlinks it there (an over-count: an edge between two dead nodes is
    /// unlinked once).
    fn unlinking_is_costly(&self, dead: &[NodeIndex]) -> bool {
        let budget = 2 * (self.node_bound() + self.g.edge_count()) + 1024;
        // The lengths of the lists walked, each counted once, by (node, direction).
        let mut length: foldhash::HashMap<(NodeIndex, usize), usize> = Default::default();
        let mut cost = 0usize;
        for &n in dead.iter().filter(|&&n| self.g.contains_node(n)) {
            for (k, dir) in [Direction::Outgoing, Direction::Incoming]
                .into_iter()
                .enumerate()
            {
                for e in self.g.edges_directed(n, dir) {
                    // The other end, whose list of the other direction is walked.
                    let m = if k == 0 { e.target() } else { e.source() };
                    cost += *length
                        .entry((m, k))
                        .or_insert_with(|| self.g.edges_directed(m, dir.opposite()).count());
                    if cost > budget {
                        return true;
                    }
                }
            }
        }
        false
    }

    /// The edges between live nodes (`is_dead` marks the others), as (source,
    /// target, weight) in an order that, added to a graph without edges,
    /// puts each edge at the place it has now in its source's outgoing list
    /// and its target's incoming list: an edge is added after those behind
    /// it in either list (each list runs from the newest edge to the oldest).
    fn kept_edges_in_insertion_order(&self, is_dead: &[bool]) -> Vec<(NodeIndex, NodeIndex, Edge)> {
        use petgraph::visit::{EdgeIndexable, IntoEdgeReferences};
        let live = |n: NodeIndex| !is_dead.get(n.index()).copied().unwrap_or(false);
        let bound = self.g.edge_bound();
        // For each kept edge: how many kept edges lie behind it in its two
        // lists (0 to 2), and the kept edges just ahead of it.
        let mut behind = vec![0u8; bound];
        let mut ahead: Vec<[Option<EdgeIndex>; 2]> = vec![[None; 2]; bound];
        let mut ready = Vec::new();
        for n in self.g.node_indices().filter(|&n| live(n)) {
            for (k, dir) in [Direction::Outgoing, Direction::Incoming]
                .into_iter()
                .enumerate()
            {
                let mut prev: Option<EdgeIndex> = None;
                for e in self.g.edges_directed(n, dir) {
                    if !(live(e.source()) && live(e.target())) {
                        continue;
                    }
                    let id = e.id();
                    if let Some(p) = prev {
                        behind[p.index()] += 1;
                        ahead[id.index()][k] = Some(p);
                    }
                    prev = Some(id);
                }
            }
        }
        for e in (&self.g).edge_references() {
            if live(e.source()) && live(e.target()) && behind[e.id().index()] == 0 {
                ready.push(e.id());
            }
        }
        let mut order = Vec::with_capacity(self.g.edge_count());
        while let Some(id) = ready.pop() {
            if let Some((a, b)) = self.g.edge_endpoints(id) {
                order.push((a, b, self.g[id]));
            }
            for p in ahead[id.index()].into_iter().flatten() {
                behind[p.index()] -= 1;
                if behind[p.index()] == 0 {
                    ready.push(p);
                }
            }
        }
        debug_assert_eq!(
            order.len(),
            (&self.g)
                .edge_references()
                .filter(|e| live(e.source()) && live(e.target()))
                .count(),
            "the edge lists are in some order of insertion"
        );
        order
    }

    /// Takes `n`'s control edges off the counts of the nodes at their other ends.
    fn uncount_controls(&mut self, n: NodeIndex) {
        if self.g[n].control_edges > 0 {
            let others: Vec<NodeIndex> = self
                .g
                .edges(n)
                .chain(self.g.edges_directed(n, Direction::Incoming))
                .filter(|e| *e.weight() == Edge::Control)
                .map(|e| {
                    if e.source() == n {
                        e.target()
                    } else {
                        e.source()
                    }
                })
                .collect();
            for m in others {
                // Saturating: an edge added behind the graph's back is left
                // for the verifier to report, not a panic here.
                let count = &mut self.g[m].control_edges;
                *count = count.saturating_sub(1);
            }
        }
    }

    /// Drops a removed node from the name table and the creation numbers.
    fn forget(&mut self, n: NodeIndex, node: &Node) {
        let h = name_hash(&node.name);
        if let Ok(entry) = self.names.find_entry(spread(h), |&(_, m)| m == n) {
            entry.remove();
        }
        self.set_seq_of(n, u64::MAX);
        // Drop the stale entries once they outnumber the live ones.
        if self.created.len() > 2 * self.g.node_count() + 64 {
            let seq_of = &self.seq_of;
            self.created.retain(|&(s, m)| seq_of[m.index()] == s);
        }
    }

    /// Gives `n` the place `seq` in creation order (which breaks ties in the
    /// topological order), e.g. that of a node it replaces.
    pub fn set_seq(&mut self, n: NodeIndex, seq: u64) {
        if self.g[n].seq == seq {
            return;
        }
        self.g[n].seq = seq;
        self.set_seq_of(n, seq);
    }

    /// Whether the table of creation numbers that `add`, `remove` and
    /// `set_seq` keep matches the nodes (the verifier checks it).
    pub fn seq_table_agrees(&self) -> bool {
        self.seq_table_counts_live()
            && self
                .g
                .node_indices()
                .all(|n| self.seq_of.get(n.index()) == Some(&self.g[n].seq))
    }

    /// Whether the table holds a creation number for as many indices as
    /// there are nodes.
    fn seq_table_counts_live(&self) -> bool {
        self.seq_of.iter().filter(|&&s| s != u64::MAX).count() == self.g.node_count()
    }

    fn set_seq_of(&mut self, n: NodeIndex, seq: u64) {
        let i = n.index();
        if self.seq_of.len() <= i {
            self.seq_of.resize(i + 1, u64::MAX);
        }
        self.seq_of[i] = seq;
        if seq != u64::MAX {
            if self.created.last().is_some_and(|&(last, _)| last > seq) {
                self.created_unsorted = true;
            }
            self.created.push((seq, n));
        }
    }

    /// Puts the log of creation numbers back in order after `set_seq` moved
    /// nodes, dropping its stale entries: one sort here, instead of one in
    /// every later topological order. The pipeline calls it after each pass.
    pub fn tidy(&mut self) {
        if !self.created_unsorted {
            return;
        }
        let seq_of = &self.seq_of;
        self.created.retain(|&(s, m)| seq_of[m.index()] == s);
        self.created.sort_unstable();
        self.created.dedup();
        self.created_unsorted = false;
    }

    /// Makes every use of `old` use `new` instead: data edges, and the graph's
    /// named tensors (outputs, gradient results, the train section's loss,
    /// metrics and hooks). `new` must have `old`'s type. Returns whether
    /// `old` had any use.
    pub fn replace_uses(&mut self, old: TensorRef, new: TensorRef) -> bool {
        let uses: Vec<_> = self
            .g
            .edges_directed(old.node, Direction::Outgoing)
            .filter_map(|e| match *e.weight() {
                Edge::Data { output, input } if output == old.output => {
                    Some((e.id(), e.target(), input))
                }
                _ => None,
            })
            .collect();
        let mut used = !uses.is_empty();
        for (id, target, input) in uses {
            self.g.remove_edge(id);
            self.g.add_edge(
                new.node,
                target,
                Edge::Data {
                    output: new.output,
                    input,
                },
            );
        }
        let mut swap = |t: &mut TensorRef| {
            if *t == old {
                *t = new;
                used = true;
            }
        };
        self.outputs.iter_mut().for_each(|(_, t)| swap(t));
        self.gradients.iter_mut().for_each(|r| swap(&mut r.value));
        if let Some(train) = &mut self.train {
            train.reported_mut().for_each(|(_, t)| swap(t));
        }
        used
    }

    /// Whether node `n` is pinned (see [`Graph::pinned`]).
    pub fn is_pinned(&self, n: NodeIndex) -> bool {
        !self.pinned.is_empty() && self.pinned.contains(self.g[n].name.as_str())
    }

    /// Whether a pattern may not be rooted at node `n` (see [`Graph::fixed_roots`]).
    pub fn is_fixed_root(&self, n: NodeIndex) -> bool {
        !self.fixed_roots.is_empty() && self.fixed_roots.contains(self.g[n].name.as_str())
    }

    /// Gives node `n` the name `name`, which no other node has.
    pub fn rename(&mut self, n: NodeIndex, name: String) -> Result<()> {
        if self.find(&name).is_some() {
            return Err(CompileError::new(
                ErrorKind::DuplicateName,
                format!("a node named '{name}' already exists"),
            ));
        }
        let old = name_hash(&self.g[n].name);
        if let Ok(entry) = self
            .names
            .find_entry(spread(old), |&(k, m)| k == old && m == n)
        {
            entry.remove();
        }
        let hash = name_hash(&name);
        self.names
            .insert_unique(spread(hash), (hash, n), |&(h, _)| spread(h));
        self.g[n].name = name;
        Ok(())
    }

    /// Whether a tensor is named from outside the node graph (an output, a
    /// gradient result, the loss, a metric or a hook).
    pub fn is_named(&self, t: TensorRef) -> bool {
        self.outputs.iter().any(|(_, o)| *o == t)
            || self.gradients.iter().any(|r| r.value == t)
            || self
                .train
                .as_ref()
                .is_some_and(|tr| tr.reported().any(|(_, m)| *m == t))
    }

    /// Whether every data use of `t` is by a node `inside` accepts: stops at
    /// the first that is not, without collecting or sorting the uses (a
    /// tensor read by a hundred thousand nodes is asked about cheaply).
    pub fn used_only_by(&self, t: TensorRef, mut inside: impl FnMut(NodeIndex) -> bool) -> bool {
        self.g
            .edges_directed(t.node, Direction::Outgoing)
            .all(|e| match *e.weight() {
                Edge::Data { output, .. } if output == t.output => inside(e.target()),
                _ => true,
            })
    }

    /// The node that reads `t` if exactly one data use reads it: stops at
    /// the second use, without collecting the others.
    pub fn sole_user(&self, t: TensorRef) -> Option<NodeIndex> {
        let mut users = self
            .g
            .edges_directed(t.node, Direction::Outgoing)
            .filter_map(|e| match *e.weight() {
                Edge::Data { output, .. } if output == t.output => Some(e.target()),
                _ => None,
            });
        match (users.next(), users.next()) {
            (Some(n), None) => Some(n),
            _ => None,
        }
    }

    /// Data uses of one output: (consumer, input slot).
    pub fn uses(&self, t: TensorRef) -> Vec<(NodeIndex, usize)> {
        let mut u: Vec<_> = self
            .g
            .edges_directed(t.node, Direction::Outgoing)
            .filter_map(|e| match *e.weight() {
                Edge::Data { output, input } if output == t.output => Some((e.target(), input)),
                _ => None,
            })
            .collect();
        u.sort_by_key(|&(n, slot)| (self.g[n].seq, slot));
        u
    }

    /// Gives node `n` the op `op` over the same inputs, where `op` computes
    /// what the node's op does as its first outputs and more after them (its
    /// uses keep reading the same outputs): e.g. ReluGrad extended to
    /// ActivationBiasGrad, which also sums its result.
    pub fn extend_op(&mut self, n: NodeIndex, op: Op) -> Result<()> {
        let inputs = self.inputs(n);
        let types: Vec<&TensorType> = inputs.iter().map(|&t| self.ty(t)).collect();
        let node = &self.g[n];
        let outputs = op.infer(node.dtype, &types).map_err(|m| {
            CompileError::new(
                ErrorKind::Internal,
                format!("extending '{}' to {}: {m}", node.name, op.name()),
            )
        })?;
        if !outputs.starts_with(&node.outputs) {
            return Err(CompileError::new(
                ErrorKind::Internal,
                format!(
                    "extending '{}' to {} changes its outputs",
                    node.name,
                    op.name()
                ),
            ));
        }
        let node = &mut self.g[n];
        node.op = op;
        node.outputs = outputs;
        Ok(())
    }

    /// Replaces node `n`'s op and inputs in place (keeping its name, role and
    /// control inputs); the new op must give the same output types.
    pub fn rewrite(&mut self, n: NodeIndex, op: Op, inputs: &[TensorRef]) -> Result<()> {
        let types: Vec<&TensorType> = inputs.iter().map(|&t| self.ty(t)).collect();
        let node = &self.g[n];
        let outputs = op.infer(node.dtype, &types).map_err(|m| {
            CompileError::new(
                ErrorKind::Internal,
                format!("rewriting '{}' as {}: {m}", node.name, op.name()),
            )
        })?;
        if outputs != node.outputs {
            return Err(CompileError::new(
                ErrorKind::Internal,
                format!(
                    "rewriting '{}' as {} changes its types",
                    node.name,
                    op.name()
                ),
            ));
        }
        // Each old input edge that carries a new input is kept and given
        // the new slot; the others are removed. Removing and adding them all
        // would walk the edge list of every input from its head: a long walk
        // on an input read by many nodes (see `remove_all`).
        // The old edges in list order, and by (input, slot).
        let old: Vec<(TensorRef, usize, EdgeIndex)> = self
            .g
            .edges_directed(n, Direction::Incoming)
            .filter_map(|e| match *e.weight() {
                Edge::Data { output, input } => Some((
                    TensorRef {
                        node: e.source(),
                        output,
                    },
                    input,
                    e.id(),
                )),
                Edge::Control => None,
            })
            .collect();
        let mut by_input: Vec<usize> = (0..old.len()).collect();
        by_input.sort_unstable_by_key(|&i| (old[i].0, old[i].1));
        let mut kept = vec![false; old.len()];
        let mut added = Vec::new();
        for (slot, &t) in inputs.iter().enumerate() {
            // The old edge from `t` of the lowest slot not kept yet.
            let from = by_input.partition_point(|&i| old[i].0 < t);
            let reuse = by_input[from..]
                .iter()
                .copied()
                .take_while(|&i| old[i].0 == t)
                .find(|&i| !kept[i]);
            match reuse {
                Some(i) => {
                    kept[i] = true;
                    self.g[old[i].2] = Edge::Data {
                        output: t.output,
                        input: slot,
                    };
                }
                None => added.push((slot, t)),
            }
        }
        // In list order: each one near the head of `n`'s list.
        for (&(_, _, id), _) in old.iter().zip(&kept).filter(|(_, &k)| !k) {
            self.g.remove_edge(id);
        }
        for (slot, t) in added {
            self.g.add_edge(
                t.node,
                n,
                Edge::Data {
                    output: t.output,
                    input: slot,
                },
            );
        }
        self.g[n].op = op;
        Ok(())
    }

    /// `base`, or `base_1`, `base_2`, ...: the first that no node name starts with as `<scope>/`.
    pub fn free_scope(&self, base: &str) -> String {
        let taken = |scope: &str| {
            let prefix = format!("{scope}/");
            self.names().any(|n| n.starts_with(&prefix))
        };
        if !taken(base) {
            return base.to_string();
        }
        (1..)
            .map(|i| format!("{base}_{i}"))
            .find(|s| !taken(s))
            .unwrap_or_default()
    }

    /// The sequence number after every node made so far.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// One more than the largest node index in use: the length of a Vec
    /// indexed by node (a stable graph keeps indices below it).
    pub fn node_bound(&self) -> usize {
        petgraph::visit::NodeIndexable::node_bound(&self.g)
    }

    /// Topological order; ties broken by creation order, so the result is deterministic.
    pub fn topo_order(&self) -> Result<Vec<NodeIndex>> {
        // Per-node tables are indexed by node index (a stable graph's indices
        // stay below its bound).
        let seq = self.seq_by_index();
        let mut by_seq: Vec<(u64, NodeIndex)> = match &seq {
            // The current entries of the creation log: already sorted unless
            // `set_seq` moved a node, and sorting a sorted list is one sweep.
            std::borrow::Cow::Borrowed(_) => self
                .created
                .iter()
                .filter(|&&(s, n)| seq[n.index()] == s)
                .copied()
                .collect(),
            std::borrow::Cow::Owned(_) => seq
                .iter()
                .enumerate()
                .filter(|&(_, &s)| s != u64::MAX)
                .map(|(i, &s)| (s, NodeIndex::new(i)))
                .collect(),
        };
        // Usually every edge runs from an older node to a newer one (a node's
        // inputs exist when it is added); then creation order is the answer:
        // the smallest ready node always comes next in it. Checked in one
        // sweep over the edges; rewrites that point an old node at a newer
        // one fall back to the general walk below, which gives the same
        // order whenever both apply.
        let edges = || petgraph::visit::IntoEdgeReferences::edge_references(&self.g);
        if edges().all(|e| seq[e.source().index()] < seq[e.target().index()]) {
            by_seq.sort_unstable();
            // A node `set_seq` gave back an earlier seq has two current entries.
            by_seq.dedup();
            if by_seq.len() == self.g.node_count() {
                return Ok(by_seq.into_iter().map(|(_, n)| n).collect());
            }
        }
        self.kahn_order(&seq, self.g.node_count())
    }

    /// The topological order by the general walk alone, without the
    /// creation-order shortcut: the verifier checks the two agree.
    pub fn topo_order_by_walk(&self) -> Result<Vec<NodeIndex>> {
        self.kahn_order(&self.seq_by_index(), self.g.node_count())
    }

    /// Each node's creation number, indexed by node index (`u64::MAX` for
    /// free indices): the table `add`, `remove` and `set_seq` keep, or, should
    /// nodes have been added or removed around them (through `g` directly),
    /// one made from the nodes. (The verifier checks the table entry by entry.)
    fn seq_by_index(&self) -> std::borrow::Cow<'_, [u64]> {
        if self.seq_of.len() >= self.node_bound() && self.seq_table_counts_live() {
            return std::borrow::Cow::Borrowed(&self.seq_of);
        }
        let mut seq = vec![u64::MAX; self.node_bound()];
        for n in self.g.node_indices() {
            seq[n.index()] = self.g[n].seq;
        }
        std::borrow::Cow::Owned(seq)
    }

    /// Kahn's walk: of the ready nodes, the one created first comes out first.
    /// `seq` holds each node's creation number by index.
    fn kahn_order(&self, seq: &[u64], nodes: usize) -> Result<Vec<NodeIndex>> {
        let mut indegree = vec![0usize; self.node_bound()];
        for e in petgraph::visit::IntoEdgeReferences::edge_references(&self.g) {
            indegree[e.target().index()] += 1;
        }
        let key = |n: NodeIndex| Reverse((seq[n.index()], n));
        // The ready node created first comes out first: the order is deterministic.
        let mut ready: BinaryHeap<Reverse<(u64, NodeIndex)>> = self
            .g
            .node_indices()
            .filter(|n| indegree[n.index()] == 0)
            .map(key)
            .collect();
        let mut order = Vec::with_capacity(nodes);
        while let Some(Reverse((_, n))) = ready.pop() {
            order.push(n);
            for m in self.g.neighbors_directed(n, Direction::Outgoing) {
                let d = &mut indegree[m.index()];
                *d -= 1;
                if *d == 0 {
                    ready.push(key(m));
                }
            }
        }
        if order.len() != nodes {
            return Err(CompileError::new(ErrorKind::Cycle, "the graph has a cycle"));
        }
        Ok(order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foldhash::HashMap;

    fn positions(order: &[NodeIndex]) -> HashMap<NodeIndex, usize> {
        order.iter().enumerate().map(|(i, &n)| (n, i)).collect()
    }

    /// Every edge runs forward in `order`, and `order` holds every node once.
    fn assert_topological(g: &Graph, order: &[NodeIndex]) {
        let at = positions(order);
        assert_eq!(at.len(), g.g.node_count());
        for e in petgraph::visit::IntoEdgeReferences::edge_references(&g.g) {
            assert!(at[&e.source()] < at[&e.target()], "an edge runs backwards");
        }
    }

    #[test]
    fn names_seq_table_and_control_counts_follow_adds_and_removes() {
        let text = r#"Graph(name: "t", dtype: F64, nodes: [
            (name: "x", op: Placeholder(shape: [2])),
            (name: "a", op: Neg, inputs: ["x"]),
            (name: "b", op: Exp, inputs: ["x"]),
        ])"#;
        let mut g = crate::graph_from_str(text, "t.ron").expect("builds");
        let (x, a, b) = (
            g.find("x").unwrap(),
            g.find("a").unwrap(),
            g.find("b").unwrap(),
        );
        g.add_control(a, b);
        g.add_control(a, b);
        assert!(g.has_control(a) && g.has_control(b) && !g.has_control(x));
        assert_eq!(g.unique_name("a"), "a_1");
        g.remove(a);
        assert_eq!(g.find("a"), None);
        assert!(!g.has_control(b), "b's control edge went with a");
        assert!(g.seq_table_agrees() && g.control_counts_agree());
        // The freed index is reused by a newer node, under the old name.
        let again = g
            .add(
                "a".into(),
                Op::Square,
                DType::F64,
                &[TensorRef::of(x)],
                Role::Forward,
                None,
            )
            .expect("the name is free again");
        assert_eq!(g.find("a"), Some(again));
        assert_eq!(g.unique_name("a"), "a_1");
        let mut names: Vec<&str> = g.names().collect();
        names.sort_unstable();
        assert_eq!(names, ["a", "b", "x"]);
        assert!(g.seq_table_agrees());
        let order: Vec<&str> = g
            .topo_order()
            .expect("acyclic")
            .iter()
            .map(|&n| g.node(n).name.as_str())
            .collect();
        assert_eq!(order, ["x", "b", "a"], "creation order, not index order");
        assert_eq!(g.topo_order().unwrap(), g.topo_order_by_walk().unwrap());
    }

    #[test]
    fn an_edge_from_a_newer_node_takes_the_general_walk_with_the_same_answer() {
        let text = r#"Graph(name: "t", dtype: F64, nodes: [
            (name: "x", op: Placeholder(shape: [2])),
            (name: "a", op: Neg, inputs: ["x"]),
            (name: "b", op: Exp, inputs: ["a"]),
            (name: "c", op: Square, inputs: ["x"]),
        ])"#;
        let mut g = crate::graph_from_str(text, "t.ron").expect("builds");
        let order = g.topo_order().expect("acyclic");
        assert_eq!(order, g.topo_order_by_walk().expect("acyclic"));
        let names: Vec<&str> = order.iter().map(|&n| g.node(n).name.as_str()).collect();
        assert_eq!(names, ["x", "a", "b", "c"], "creation order");
        // `a` now reads `c`, made after it: creation order is no longer topological.
        let (a, c) = (g.find("a").expect("a"), g.find("c").expect("c"));
        g.rewrite(a, Op::Neg, &[TensorRef::of(c)])
            .expect("same types");
        let order = g.topo_order().expect("acyclic");
        assert_topological(&g, &order);
        assert_eq!(order, g.topo_order_by_walk().expect("acyclic"));
        let names: Vec<&str> = order.iter().map(|&n| g.node(n).name.as_str()).collect();
        assert_eq!(names, ["x", "c", "a", "b"]);
        // And a cycle is still found.
        g.rewrite(c, Op::Square, &[TensorRef::of(g.find("b").expect("b"))])
            .expect("same types");
        let e = g.topo_order().expect_err("a cycle");
        assert_eq!(e.kind, ErrorKind::Cycle);
    }

    #[test]
    fn set_seq_then_tidy_keeps_the_order_and_sorts_the_log_once() {
        let text = r#"Graph(name: "t", dtype: F64, nodes: [
            (name: "x", op: Placeholder(shape: [2])),
            (name: "a", op: Neg, inputs: ["x"]),
            (name: "b", op: Exp, inputs: ["a"]),
        ])"#;
        let mut g = crate::graph_from_str(text, "t.ron").expect("builds");
        let x = g.find("x").expect("x");
        // A node made last, given a's place in creation order.
        let c = g
            .add(
                "c".into(),
                Op::Square,
                DType::F64,
                &[TensorRef::of(x)],
                Role::Forward,
                None,
            )
            .expect("adds");
        let a_seq = g.node(g.find("a").expect("a")).seq();
        g.set_seq(c, a_seq);
        assert!(g.created_unsorted, "c's entry went in after later ones");
        let before = g.topo_order().expect("acyclic");
        g.tidy();
        assert!(!g.created_unsorted);
        assert!(
            g.created.windows(2).all(|w| w[0] <= w[1]),
            "the log is sorted"
        );
        assert!(g.seq_table_agrees());
        assert_eq!(g.topo_order().expect("acyclic"), before);
        assert_eq!(before, g.topo_order_by_walk().expect("acyclic"));
        // A second tidy has nothing to do.
        let log = g.created.clone();
        g.tidy();
        assert_eq!(g.created, log);
    }

    #[test]
    fn extend_op_keeps_the_outputs_it_had() {
        let text = r#"Graph(name: "t", dtype: F64, nodes: [
            (name: "dy", op: Placeholder(shape: [3, 2])),
            (name: "y", op: Placeholder(shape: [3, 2])),
            (name: "g", op: ReluGrad, inputs: ["dy", "y"]),
            (name: "s", op: Square, inputs: ["g"]),
        ])"#;
        let mut g = crate::graph_from_str(text, "t.ron").expect("builds");
        let n = g.find("g").expect("g");
        let abg = Op::ActivationBiasGrad {
            activation: gradc_runtime::op::Activation::Relu,
        };
        g.extend_op(n, abg).expect("ReluGrad's output comes first");
        assert_eq!(g.node(n).outputs.len(), 2);
        assert_eq!(g.node(n).name, "g");
        // An op over the same inputs whose first output differs (the
        // cross-entropy's is [3]) is refused, the node unchanged.
        let e = g
            .extend_op(n, Op::SoftmaxCrossEntropyWithLogits)
            .expect_err("a [3] first output");
        assert!(
            e.message
                .contains("extending 'g' to SoftmaxCrossEntropyWithLogits changes its outputs"),
            "{}",
            e.message
        );
        assert_eq!(g.node(n).outputs.len(), 2);
        assert!(crate::passes::verify(&g).is_ok());
    }

    /// An edge list in order: (source, target, weight) of each edge.
    type EdgeList = Vec<(usize, usize, Edge)>;

    /// Every node's index, name and control count, and its edge lists in order.
    fn structure(g: &Graph) -> Vec<(usize, String, u32, EdgeList, EdgeList)> {
        let list = |n: NodeIndex, dir: Direction| {
            g.g.edges_directed(n, dir)
                .map(|e| (e.source().index(), e.target().index(), *e.weight()))
                .collect::<Vec<_>>()
        };
        g.g.node_indices()
            .map(|n| {
                let node = g.node(n);
                (
                    n.index(),
                    node.name.clone(),
                    node.control_edges,
                    list(n, Direction::Outgoing),
                    list(n, Direction::Incoming),
                )
            })
            .collect()
    }

    #[test]
    fn removing_nodes_by_rebuilding_the_edges_leaves_what_removing_them_one_by_one_does() {
        // A chain of Adds that all read x, with control edges and repeated inputs.
        let mut text = String::from(
            "Graph(name: \"t\", dtype: F64, nodes: [\n(name: \"x\", op: Placeholder(shape: [])),\n(name: \"a0\", op: Add, inputs: [\"x\", \"x\"]),\n",
        );
        for i in 1..300 {
            let control = if i % 7 == 0 {
                format!(", control_inputs: [\"a{}\", \"x\"]", i / 2)
            } else {
                String::new()
            };
            text.push_str(&format!(
                "(name: \"a{i}\", op: Add, inputs: [\"a{}\", \"x\"]{control}),\n",
                i - 1
            ));
        }
        text.push_str("])");
        let mut g = crate::graph_from_str(&text, "t.ron").expect("builds");
        // Edges removed and added out of creation order, as passes do.
        let (a5, a9) = (g.find("a5").unwrap(), g.find("a9").unwrap());
        let x = g.find("x").unwrap();
        g.rewrite(a9, Op::Add, &[TensorRef::of(x), TensorRef::of(a5)])
            .expect("same types");
        let mut one_by_one = g.clone();
        let mut dead: Vec<NodeIndex> =
            g.g.node_indices()
                .filter(|&n| n != x && n.index() % 3 != 1)
                .collect();
        dead.reverse();
        dead.push(dead[0]);
        assert!(
            g.unlinking_is_costly(&dead),
            "the test takes the rebuilding path"
        );
        g.remove_all(&dead);
        for &n in &dead {
            one_by_one.remove(n);
        }
        assert_eq!(structure(&g), structure(&one_by_one));
        assert!(g.seq_table_agrees() && g.control_counts_agree() && g.name_table_agrees());
        // The freed indices are reused in the same order.
        for h in [&mut g, &mut one_by_one] {
            for k in 0..3 {
                h.add(
                    format!("new{k}"),
                    Op::Neg,
                    DType::F64,
                    &[TensorRef::of(x)],
                    Role::Forward,
                    None,
                )
                .expect("adds");
            }
        }
        assert_eq!(structure(&g), structure(&one_by_one));
    }

    #[test]
    fn rewrite_keeps_the_edges_of_inputs_it_keeps() {
        let text = r#"Graph(name: "t", dtype: F64, nodes: [
            (name: "x", op: Placeholder(shape: [2])),
            (name: "y", op: Placeholder(shape: [2])),
            (name: "d", op: Sub, inputs: ["x", "y"]),
        ])"#;
        let mut g = crate::graph_from_str(text, "t.ron").expect("builds");
        let (x, y, d) = (
            g.find("x").unwrap(),
            g.find("y").unwrap(),
            g.find("d").unwrap(),
        );
        let (tx, ty) = (TensorRef::of(x), TensorRef::of(y));
        for inputs in [[ty, tx], [tx, tx], [ty, ty], [tx, ty]] {
            g.rewrite(d, Op::Sub, &inputs).expect("same types");
            assert_eq!(g.inputs(d), inputs);
            assert_eq!(g.g.edges_directed(d, Direction::Incoming).count(), 2);
        }
        g.rewrite(d, Op::Neg, &[ty]).expect("same types");
        assert_eq!(g.inputs(d), [ty]);
        assert_eq!(g.uses(tx), []);
        assert_eq!(g.g.edge_count(), 1);
    }
}
