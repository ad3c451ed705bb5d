//! The planner's graph: a petgraph [`DiGraph`] with dense `u32` node indices and compressed
//! adjacency for the walks.
//!
//! Nodes are numbered as the planner adds them: the spec steps first, in spec order, then
//! one node per deletion. An edge `from → to` says "finish `from` before starting `to`"; edges
//! are kept in the order they were added, weighted with the [`EdgeKind`] the cycle
//! diagnostics need.
//!
//! Walking petgraph's per-node edge lists means chasing `next` links across the whole edge
//! array, which at 100k steps is mostly cache misses. So once a graph is built, [`Adjacency`]
//! lays its edges out as two compressed (CSR) tables, each one flat `u32` array plus offsets,
//! built by a counting sort in two linear passes over petgraph's edge list: a node's
//! dependents (for Kahn's order and `--exclude`) and its incoming edges (for the sealed
//! dependency lists, cycle extraction and `--target`). Dependents come oldest edge first —
//! since edges are added dependent by dependent in spec order, that is spec order — so Kahn's
//! FIFO releases steps that become ready together in the order the spec wrote them, and a
//! plan reads more like its spec. (For many graphs written dependencies first — a chain, a
//! fan-out, stacked diamonds — the plan order then *is* the spec order, and sealing has
//! nothing to permute.) Incoming edges come newest first, the order in which petgraph itself walks them,
//! so reported cycles are those of the graph. No allocation per node, and a walk touches
//! memory in order.

use petgraph::graph::{DiGraph, NodeIndex};

use super::diag::EdgeKind;

/// One edge: `from` must finish before `to` starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Edge {
    pub from: u32,
    pub to: u32,
    pub kind: EdgeKind,
}

/// Nodes and edges of a plan graph.
#[derive(Debug, Default)]
pub(crate) struct PlanGraph {
    graph: DiGraph<(), EdgeKind, u32>,
}

impl PlanGraph {
    /// A graph with room for `nodes` nodes and `edges` edges.
    pub fn with_capacity(nodes: usize, edges: usize) -> Self {
        PlanGraph {
            graph: DiGraph::with_capacity(nodes, edges),
        }
    }

    /// Removes every edge, keeping the nodes.
    pub fn clear_edges(&mut self) {
        self.graph.clear_edges();
    }

    /// Adds `count` nodes; returns the index of the first.
    pub fn add_nodes(&mut self, count: usize) -> u32 {
        let first = self.graph.node_count() as u32;
        self.graph.reserve_nodes(count);
        for _ in 0..count {
            self.graph.add_node(());
        }
        first
    }

    /// Adds one edge between existing nodes; returns its index.
    pub fn add_edge(&mut self, from: u32, to: u32, kind: EdgeKind) -> u32 {
        self.graph
            .add_edge(
                NodeIndex::new(from as usize),
                NodeIndex::new(to as usize),
                kind,
            )
            .index() as u32
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.graph.node_count()
    }

    /// Edge `e` (an index into the insertion order).
    pub fn edge(&self, e: u32) -> Edge {
        let raw = &self.graph.raw_edges()[e as usize];
        Edge {
            from: raw.source().index() as u32,
            to: raw.target().index() as u32,
            kind: raw.weight,
        }
    }

    /// Both adjacency tables.
    pub fn adjacency(&self) -> Adjacency {
        let n = self.node_count();
        let edges = self.graph.raw_edges();
        let (out_start, out) = csr(
            n,
            edges,
            Newest::Last,
            |e| e.source().index() as u32,
            |_, e| e.target().index() as u32,
        );
        let (in_start, incoming) = csr(
            n,
            edges,
            Newest::First,
            |e| e.target().index() as u32,
            |i, _| i,
        );
        Adjacency {
            out_start,
            out,
            in_start,
            incoming,
        }
    }
}

/// A node's neighbours as ranges of two flat arrays. See the module docs.
#[derive(Debug)]
pub(crate) struct Adjacency {
    out_start: Vec<u32>,
    out: Vec<u32>,
    in_start: Vec<u32>,
    incoming: Vec<u32>,
}

impl Adjacency {
    /// The nodes that wait for `v` (one entry per edge), oldest edge first.
    pub fn dependents(&self, v: u32) -> &[u32] {
        let v = v as usize;
        &self.out[self.out_start[v] as usize..self.out_start[v + 1] as usize]
    }

    /// The edges into `v` (edge indices), newest first.
    pub fn incoming(&self, v: u32) -> &[u32] {
        let v = v as usize;
        &self.incoming[self.in_start[v] as usize..self.in_start[v + 1] as usize]
    }

    /// How many edges lead into `v`.
    pub fn in_degree(&self, v: u32) -> u32 {
        let v = v as usize;
        self.in_start[v + 1] - self.in_start[v]
    }
}

/// Where a node's newest edge goes in its list.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Newest {
    First,
    Last,
}

/// A counting sort of the edges by `key`: offsets (`n + 1`) and, per node, `value` of its
/// edges, the newest where `newest` says.
fn csr<E>(
    n: usize,
    edges: &[E],
    newest: Newest,
    key: impl Fn(&E) -> u32,
    value: impl Fn(u32, &E) -> u32,
) -> (Vec<u32>, Vec<u32>) {
    let mut start = vec![0u32; n + 1];
    for e in edges {
        start[key(e) as usize + 1] += 1;
    }
    for v in 0..n {
        start[v + 1] += start[v];
    }
    // `start[v + 1]` is the end of v's range. Filling each range from its end, in insertion
    // order, leaves the newest edge first and moves `start[v + 1]` down to v's start; in
    // reverse insertion order, it leaves the oldest first.
    let mut list = vec![0u32; edges.len()];
    let mut place = |i: usize, e: &E| {
        let slot = &mut start[key(e) as usize + 1];
        *slot -= 1;
        list[*slot as usize] = value(i as u32, e);
    };
    match newest {
        Newest::First => edges.iter().enumerate().for_each(|(i, e)| place(i, e)),
        Newest::Last => edges
            .iter()
            .enumerate()
            .rev()
            .for_each(|(i, e)| place(i, e)),
    }
    start.copy_within(1.., 0);
    start[n] = edges.len() as u32;
    (start, list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_dependents_oldest_first_and_incoming_edges_newest_first() {
        let mut g = PlanGraph::with_capacity(4, 5);
        g.add_nodes(4);
        g.add_edge(0, 2, EdgeKind::Deps);
        g.add_edge(1, 2, EdgeKind::Input);
        g.add_edge(0, 1, EdgeKind::Deps);
        g.add_edge(0, 3, EdgeKind::Deps);
        g.add_edge(0, 2, EdgeKind::Input);
        let adj = g.adjacency();
        assert_eq!(adj.dependents(0), [2, 1, 3, 2]);
        assert_eq!(adj.dependents(1), [2]);
        assert_eq!(adj.dependents(2), [] as [u32; 0]);
        assert_eq!(adj.incoming(2), [4, 1, 0]);
        assert_eq!(adj.incoming(1), [2]);
        assert_eq!(adj.in_degree(0), 0);
        assert_eq!(adj.in_degree(2), 3);
        assert_eq!(g.edge(1).from, 1);
    }
}
