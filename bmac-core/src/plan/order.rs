//! Topological order and cycle extraction over a petgraph `DiGraph`, both iterative and
//! linear in nodes + edges.
//!
//! Edges point from a dependency to its dependent ("finish this before that"). The order is
//! Kahn's algorithm with a FIFO queue seeded in node-index order, so it is deterministic and
//! never recurses: a 100k-step chain costs a 100k-long queue walk, not a 100k-deep stack.
//!
//! When Kahn's pass cannot place every node, each node left over still has an unplaced
//! dependency. Walking from the first such node to an unplaced dependency, again and again,
//! must revisit a node within (left over) steps; the walk between the two visits is a cycle.
//! That is one linear pass too, and it returns a real cycle (not just "some node in a cycle"),
//! which the diagnostics list in full.

use std::collections::VecDeque;

use petgraph::graph::{DiGraph, EdgeIndex, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction::{Incoming, Outgoing};

/// The outcome of ordering a graph.
pub(crate) enum Order {
    /// Every considered node, dependencies first.
    Sorted(Vec<NodeIndex>),
    /// A cycle as edges in walking order: for each edge, its *target* depends on its
    /// *source*, and the source of one edge is the target of the next (wrapping around).
    /// Rotated so that the edge whose target has the smallest index comes first.
    Cycle(Vec<EdgeIndex>),
}

/// Orders the nodes for which `keep` is true, using only edges between kept nodes. The kept
/// set must be closed under dependencies for the order to be complete (the selection
/// guarantees it; the full graph trivially is).
pub(crate) fn toposort<N, E>(g: &DiGraph<N, E>, keep: impl Fn(NodeIndex) -> bool) -> Order {
    let n = g.node_count();
    let kept: Vec<bool> = g.node_indices().map(&keep).collect();
    let mut indegree = vec![0u32; n];
    for e in g.edge_references() {
        if kept[e.source().index()] && kept[e.target().index()] {
            indegree[e.target().index()] += 1;
        }
    }
    let mut queue: VecDeque<NodeIndex> = g
        .node_indices()
        .filter(|v| kept[v.index()] && indegree[v.index()] == 0)
        .collect();
    let mut sorted = Vec::with_capacity(n);
    while let Some(v) = queue.pop_front() {
        sorted.push(v);
        for w in g.neighbors_directed(v, Outgoing) {
            if !kept[w.index()] {
                continue;
            }
            indegree[w.index()] -= 1;
            if indegree[w.index()] == 0 {
                queue.push_back(w);
            }
        }
    }
    let kept_count = kept.iter().filter(|k| **k).count();
    if sorted.len() == kept_count {
        return Order::Sorted(sorted);
    }
    // Left over: kept nodes Kahn never reached. Each has a left-over dependency.
    let left = |v: NodeIndex| kept[v.index()] && indegree[v.index()] > 0;
    Order::Cycle(find_cycle(g, left))
}

/// Walks from the first left-over node to a left-over dependency until a node repeats.
fn find_cycle<N, E>(g: &DiGraph<N, E>, left: impl Fn(NodeIndex) -> bool) -> Vec<EdgeIndex> {
    const NOT_ON_PATH: usize = usize::MAX;
    let mut position = vec![NOT_ON_PATH; g.node_count()];
    // path_edges[k] leads from path node k to path node k + 1 (node k depends on k + 1).
    let mut path_edges: Vec<EdgeIndex> = Vec::new();
    let Some(mut v) = g.node_indices().find(|v| left(*v)) else {
        return Vec::new();
    };
    loop {
        position[v.index()] = path_edges.len();
        let Some(edge) = g
            .edges_directed(v, Incoming)
            .find(|e| left(e.source()))
            .map(|e| e.id())
        else {
            // Unreachable for a left-over node; return what we have rather than panic.
            return path_edges;
        };
        path_edges.push(edge);
        let (dep, _) = g.edge_endpoints(edge).unwrap_or((v, v));
        if position[dep.index()] != NOT_ON_PATH {
            let mut cycle = path_edges.split_off(position[dep.index()]);
            // Rotate: start at the edge whose dependent has the smallest index.
            let start = cycle
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| g.edge_endpoints(**e).map(|(_, t)| t.index()))
                .map(|(i, _)| i)
                .unwrap_or(0);
            cycle.rotate_left(start);
            return cycle;
        }
        v = dep;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(n: usize, edges: &[(usize, usize)]) -> DiGraph<(), ()> {
        let mut g = DiGraph::new();
        for _ in 0..n {
            g.add_node(());
        }
        for &(a, b) in edges {
            g.add_edge(NodeIndex::new(a), NodeIndex::new(b), ());
        }
        g
    }

    #[test]
    fn orders_dependencies_first() {
        let g = graph(4, &[(3, 1), (1, 0), (2, 0), (3, 2)]);
        let Order::Sorted(order) = toposort(&g, |_| true) else {
            panic!("no cycle here")
        };
        let pos = |i: usize| order.iter().position(|v| v.index() == i).unwrap();
        assert!(pos(3) < pos(1) && pos(1) < pos(0) && pos(2) < pos(0) && pos(3) < pos(2));
    }

    #[test]
    fn finds_a_cycle_behind_a_tail() {
        // 0 depends on 1, 1 on 2, 2 on 3, 3 on 1: node 0 is only downstream of the cycle.
        let g = graph(4, &[(1, 0), (2, 1), (3, 2), (1, 3)]);
        let Order::Cycle(edges) = toposort(&g, |_| true) else {
            panic!("cycle missed")
        };
        let dependents: Vec<usize> = edges
            .iter()
            .map(|e| g.edge_endpoints(*e).unwrap().1.index())
            .collect();
        assert_eq!(dependents, [1, 2, 3]);
    }

    #[test]
    fn ignores_dropped_nodes() {
        let g = graph(3, &[(0, 1), (1, 0), (2, 1)]);
        let Order::Sorted(order) = toposort(&g, |v| v.index() == 2) else {
            panic!("the cycle is not kept")
        };
        assert_eq!(order, [NodeIndex::new(2)]);
    }
}
