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

use super::dag::{Adjacency, PlanGraph};

/// Which way a walk follows edges.
#[derive(Clone, Copy)]
enum Direction {
    /// To the nodes a node waits for.
    Dependencies,
    /// To the nodes that wait for it.
    Dependents,
}

/// Which nodes stay in the plan.
pub(crate) fn select(
    g: &PlanGraph,
    adj: &Adjacency,
    targets: &[u32],
    excludes: &[u32],
) -> Vec<bool> {
    let mut keep = if targets.is_empty() {
        vec![true; g.node_count()]
    } else {
        reach(g, adj, targets, Direction::Dependencies)
    };
    if !excludes.is_empty() {
        for (k, dropped) in keep
            .iter_mut()
            .zip(reach(g, adj, excludes, Direction::Dependents))
        {
            *k &= !dropped;
        }
    }
    keep
}

/// Nodes reachable from `from` (included) following edges in `direction`.
fn reach(g: &PlanGraph, adj: &Adjacency, from: &[u32], direction: Direction) -> Vec<bool> {
    let mut seen = vec![false; g.node_count()];
    let mut stack: Vec<u32> = Vec::new();
    for &v in from {
        if !seen[v as usize] {
            seen[v as usize] = true;
            stack.push(v);
        }
    }
    let mut visit = |w: u32, stack: &mut Vec<u32>| {
        if !seen[w as usize] {
            seen[w as usize] = true;
            stack.push(w);
        }
    };
    while let Some(v) = stack.pop() {
        match direction {
            Direction::Dependencies => {
                for &e in adj.incoming(v) {
                    visit(g.edge(e).from, &mut stack);
                }
            }
            Direction::Dependents => {
                for &w in adj.dependents(v) {
                    visit(w, &mut stack);
                }
            }
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::diag::EdgeKind;

    /// 0 ← 1 ← 2 and 0 ← 3 (edges dependency → dependent: 0→1, 1→2, 0→3).
    fn graph() -> PlanGraph {
        let mut g = PlanGraph::with_capacity(4, 3);
        g.add_nodes(4);
        g.add_edge(0, 1, EdgeKind::Deps);
        g.add_edge(1, 2, EdgeKind::Deps);
        g.add_edge(0, 3, EdgeKind::Deps);
        g
    }

    #[test]
    fn target_pulls_dependencies_exclude_drops_dependents() {
        let g = graph();
        let adj = g.adjacency();
        assert_eq!(select(&g, &adj, &[2], &[]), [true, true, true, false]);
        assert_eq!(select(&g, &adj, &[], &[1]), [true, false, false, true]);
        assert_eq!(select(&g, &adj, &[2, 3], &[1]), [true, false, false, true]);
        assert_eq!(select(&g, &adj, &[], &[]), [true; 4]);
    }
}
