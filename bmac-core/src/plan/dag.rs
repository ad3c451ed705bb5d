//! The planner's graph: dense `u32` node indices, an edge list, and compressed adjacency.
//!
//! Nodes are numbered as the planner adds them: the spec steps first, in spec order, then
//! one node per deletion. An edge `from → to` says "finish `from` before starting `to`"; edges
//! are kept in the order they were added, with the [`EdgeKind`] the cycle diagnostics need.
//!
//! [`Adjacency`] turns the edge list into two compressed (CSR) tables, each one flat `u32`
//! array plus offsets, built by a counting sort in two linear passes: a node's dependents (for
//! Kahn's order and `--exclude`) and its incoming edges (for the sealed dependency lists, cycle
//! extraction and `--target`). Both list each node's neighbours newest edge first, the order
//! in which a petgraph `DiGraph` walks them, so orders and reported cycles are the same as
//! when the planner was built on petgraph. Two flat arrays instead of per-node lists: no
//! allocation per node, and a walk over them touches memory in order.

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
    nodes: u32,
    edges: Vec<Edge>,
}

impl PlanGraph {
    /// A graph with room for `edges` edges.
    pub fn with_edge_capacity(edges: usize) -> Self {
        PlanGraph {
            nodes: 0,
            edges: Vec::with_capacity(edges),
        }
    }

    /// Adds `count` nodes; returns the index of the first.
    pub fn add_nodes(&mut self, count: usize) -> u32 {
        let first = self.nodes;
        // Plans are far below 4 billion steps; `Plan` stores indices as u32 throughout.
        self.nodes = self.nodes.saturating_add(count as u32);
        first
    }

    /// Adds one edge; returns its index.
    pub fn add_edge(&mut self, from: u32, to: u32, kind: EdgeKind) -> u32 {
        self.edges.push(Edge { from, to, kind });
        (self.edges.len() - 1) as u32
    }

    /// Sets the source of edge `e` (added before its source was known).
    pub fn set_source(&mut self, e: u32, from: u32) {
        self.edges[e as usize].from = from;
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes as usize
    }

    /// Edge `e` (an index into the insertion order).
    pub fn edge(&self, e: u32) -> Edge {
        self.edges[e as usize]
    }

    /// Both adjacency tables.
    pub fn adjacency(&self) -> Adjacency {
        let n = self.node_count();
        let (out_start, out) = csr(n, &self.edges, |e| e.from, |_, e| e.to);
        let (in_start, incoming) = csr(n, &self.edges, |e| e.to, |i, _| i);
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
    /// The nodes that wait for `v` (one entry per edge), newest edge first.
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

/// A counting sort of the edges by `key`: offsets (`n + 1`) and, per node, `value` of its
/// edges, newest first.
fn csr(
    n: usize,
    edges: &[Edge],
    key: impl Fn(&Edge) -> u32,
    value: impl Fn(u32, &Edge) -> u32,
) -> (Vec<u32>, Vec<u32>) {
    let mut start = vec![0u32; n + 1];
    for e in edges {
        start[key(e) as usize + 1] += 1;
    }
    for v in 0..n {
        start[v + 1] += start[v];
    }
    // `start[v + 1]` is the end of v's range. Filling each range from its end, in insertion
    // order, leaves the newest edge first and moves `start[v + 1]` down to v's start.
    let mut list = vec![0u32; edges.len()];
    for (i, e) in edges.iter().enumerate() {
        let slot = &mut start[key(e) as usize + 1];
        *slot -= 1;
        list[*slot as usize] = value(i as u32, e);
    }
    start.copy_within(1.., 0);
    start[n] = edges.len() as u32;
    (start, list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_neighbours_newest_first() {
        let mut g = PlanGraph::with_edge_capacity(4);
        g.add_nodes(3);
        g.add_edge(0, 2, EdgeKind::Deps);
        g.add_edge(1, 2, EdgeKind::Input);
        g.add_edge(0, 1, EdgeKind::Deps);
        g.add_edge(0, 2, EdgeKind::Input);
        let adj = g.adjacency();
        assert_eq!(adj.dependents(0), [2, 1, 2]);
        assert_eq!(adj.dependents(1), [2]);
        assert_eq!(adj.dependents(2), [] as [u32; 0]);
        assert_eq!(adj.incoming(2), [3, 1, 0]);
        assert_eq!(adj.incoming(1), [2]);
        assert_eq!(adj.in_degree(0), 0);
        assert_eq!(adj.in_degree(2), 3);
        assert_eq!(g.edge(1).from, 1);
    }
}
