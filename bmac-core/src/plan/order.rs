//! Topological order and cycle extraction over a [`PlanGraph`], both iterative and linear
//! in nodes + edges.
//!
//! Edges point from a dependency to its dependent ("finish this before that"). The order is
//! Kahn's algorithm with a FIFO queue seeded in node-index order, so it is deterministic and
//! never recurses: a 100k-step chain costs a 100k-long queue walk, not a 100k-deep stack. The
//! queue is the output vector itself (nodes are appended when they become ready and read back
//! in order), so the pass allocates only the result and one in-degree per node.
//!
//! When Kahn's pass cannot place every node, each node left over still has an unplaced
//! dependency. Walking from the first such node to an unplaced dependency, again and again,
//! must revisit a node within (left over) steps; the walk between the two visits is a cycle.
//! That is one linear pass too, and it returns a real cycle (not just "some node in a cycle"),
//! which the diagnostics list in full.

use super::dag::{Adjacency, PlanGraph};

/// The outcome of ordering a graph.
pub(crate) enum Order {
    /// Every considered node, dependencies first.
    Sorted(Vec<u32>),
    /// A cycle as edge indices in walking order: for each edge, its *target* depends on its
    /// *source*, and the source of one edge is the target of the next (wrapping around).
    /// Rotated so that the edge whose target has the smallest index comes first.
    Cycle(Vec<u32>),
}

/// Orders the nodes for which `keep` is true (every node when `keep` is `None`), using only
/// edges between kept nodes. The kept set must be closed under dependencies for the order to
/// be complete (the selection guarantees it; the full graph trivially is).
pub(crate) fn toposort(g: &PlanGraph, adj: &Adjacency, keep: Option<&[bool]>) -> Order {
    let n = g.node_count() as u32;
    let kept = |v: u32| keep.is_none_or(|k| k[v as usize]);
    let mut indegree: Vec<u32> = match keep {
        None => (0..n).map(|v| adj.in_degree(v)).collect(),
        Some(_) => (0..n)
            .map(|v| {
                if kept(v) {
                    adj.incoming(v)
                        .iter()
                        .filter(|&&e| kept(g.edge(e).from))
                        .count() as u32
                } else {
                    0
                }
            })
            .collect(),
    };
    let kept_count = keep.map_or(n as usize, |k| k.iter().filter(|k| **k).count());
    let mut sorted: Vec<u32> = Vec::with_capacity(kept_count);
    sorted.extend((0..n).filter(|&v| kept(v) && indegree[v as usize] == 0));
    let mut head = 0;
    while let Some(&v) = sorted.get(head) {
        head += 1;
        for &w in adj.dependents(v) {
            if !kept(w) {
                continue;
            }
            let d = &mut indegree[w as usize];
            *d -= 1;
            if *d == 0 {
                sorted.push(w);
            }
        }
    }
    if sorted.len() == kept_count {
        return Order::Sorted(sorted);
    }
    // Left over: kept nodes Kahn never reached. Each has a left-over dependency.
    let left = |v: u32| kept(v) && indegree[v as usize] > 0;
    Order::Cycle(find_cycle(g, adj, left))
}

/// Walks from the first left-over node to a left-over dependency until a node repeats.
fn find_cycle(g: &PlanGraph, adj: &Adjacency, left: impl Fn(u32) -> bool) -> Vec<u32> {
    const NOT_ON_PATH: usize = usize::MAX;
    let n = g.node_count() as u32;
    let mut position = vec![NOT_ON_PATH; n as usize];
    // path_edges[k] leads from path node k to path node k + 1 (node k depends on k + 1).
    let mut path_edges: Vec<u32> = Vec::new();
    let Some(mut v) = (0..n).find(|&v| left(v)) else {
        return Vec::new();
    };
    loop {
        position[v as usize] = path_edges.len();
        let Some(edge) = adj
            .incoming(v)
            .iter()
            .copied()
            .find(|&e| left(g.edge(e).from))
        else {
            // Unreachable for a left-over node; return what we have rather than panic.
            return path_edges;
        };
        path_edges.push(edge);
        let dep = g.edge(edge).from;
        if position[dep as usize] != NOT_ON_PATH {
            let mut cycle = path_edges.split_off(position[dep as usize]);
            // Rotate: start at the edge whose dependent has the smallest index.
            let start = cycle
                .iter()
                .enumerate()
                .min_by_key(|(_, &e)| g.edge(e).to)
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
    use crate::plan::diag::EdgeKind;

    fn graph(n: usize, edges: &[(u32, u32)]) -> PlanGraph {
        let mut g = PlanGraph::with_capacity(n, edges.len());
        g.add_nodes(n);
        for &(a, b) in edges {
            g.add_edge(a, b, EdgeKind::Deps);
        }
        g
    }

    fn sort(g: &PlanGraph, keep: Option<&[bool]>) -> Order {
        toposort(g, &g.adjacency(), keep)
    }

    #[test]
    fn orders_dependencies_first() {
        let g = graph(4, &[(3, 1), (1, 0), (2, 0), (3, 2)]);
        let Order::Sorted(order) = sort(&g, None) else {
            panic!("no cycle here")
        };
        let pos = |i: u32| order.iter().position(|&v| v == i).unwrap();
        assert!(pos(3) < pos(1) && pos(1) < pos(0) && pos(2) < pos(0) && pos(3) < pos(2));
    }

    #[test]
    fn ready_steps_go_first_come_first_served() {
        // 0 and 2 are ready at once; 1 waits for 0, so it comes after 2.
        let g = graph(3, &[(0, 1)]);
        let Order::Sorted(order) = sort(&g, None) else {
            panic!("no cycle here")
        };
        assert_eq!(order, [0, 2, 1]);
    }

    #[test]
    fn finds_a_cycle_behind_a_tail() {
        // 0 depends on 1, 1 on 2, 2 on 3, 3 on 1: node 0 is only downstream of the cycle.
        let g = graph(4, &[(1, 0), (2, 1), (3, 2), (1, 3)]);
        let Order::Cycle(edges) = sort(&g, None) else {
            panic!("cycle missed")
        };
        let dependents: Vec<u32> = edges.iter().map(|&e| g.edge(e).to).collect();
        assert_eq!(dependents, [1, 2, 3]);
    }

    #[test]
    fn ignores_dropped_nodes() {
        let g = graph(3, &[(0, 1), (1, 0), (2, 1)]);
        let Order::Sorted(order) = sort(&g, Some(&[false, false, true])) else {
            panic!("the cycle is not kept")
        };
        assert_eq!(order, [2]);
    }
}
