//! Selecting part of the plan graph: `--target` and `--exclude`.
//!
//! - `target` keeps the targets and everything they transitively depend on (a step cannot
//!   run before its dependencies, and NoOp dependencies still feed it their outputs);
//! - `exclude` drops the excluded steps and everything that transitively depends on them
//!   (a dependent cannot run without them).
//!
//! Both work on the *plan* graph, whose deletion edges are already reversed; so targeting a
//! deletion pulls in the deletions of everything that depended on it (as
//! `terraform destroy -target` does), and excluding a deletion keeps the steps it depends on.
//! The kept set is closed under dependencies, which the topological pass relies on.
//!
//! Both are breadth-first walks with a visited mask: linear in nodes + edges.

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction::{self, Incoming, Outgoing};

/// Which nodes stay in the plan.
pub(crate) fn select<N, E>(
    g: &DiGraph<N, E>,
    targets: &[NodeIndex],
    excludes: &[NodeIndex],
) -> Vec<bool> {
    let mut keep = if targets.is_empty() {
        vec![true; g.node_count()]
    } else {
        reach(g, targets, Incoming)
    };
    if !excludes.is_empty() {
        for (k, dropped) in keep.iter_mut().zip(reach(g, excludes, Outgoing)) {
            *k &= !dropped;
        }
    }
    keep
}

/// Nodes reachable from `from` (included) following edges in `direction`.
fn reach<N, E>(g: &DiGraph<N, E>, from: &[NodeIndex], direction: Direction) -> Vec<bool> {
    let mut seen = vec![false; g.node_count()];
    let mut stack: Vec<NodeIndex> = Vec::new();
    for &v in from {
        if !seen[v.index()] {
            seen[v.index()] = true;
            stack.push(v);
        }
    }
    while let Some(v) = stack.pop() {
        for w in g.neighbors_directed(v, direction) {
            if !seen[w.index()] {
                seen[w.index()] = true;
                stack.push(w);
            }
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 0 ← 1 ← 2 and 0 ← 3 (edges dependency → dependent: 0→1, 1→2, 0→3).
    fn graph() -> DiGraph<(), ()> {
        let mut g = DiGraph::new();
        let n: Vec<_> = (0..4).map(|_| g.add_node(())).collect();
        g.add_edge(n[0], n[1], ());
        g.add_edge(n[1], n[2], ());
        g.add_edge(n[0], n[3], ());
        g
    }

    #[test]
    fn target_pulls_dependencies_exclude_drops_dependents() {
        let g = graph();
        let n = NodeIndex::new;
        assert_eq!(select(&g, &[n(2)], &[]), [true, true, true, false]);
        assert_eq!(select(&g, &[], &[n(1)]), [true, false, false, true]);
        assert_eq!(
            select(&g, &[n(2), n(3)], &[n(1)]),
            [true, false, false, true]
        );
        assert_eq!(select(&g, &[], &[]), [true; 4]);
    }
}
