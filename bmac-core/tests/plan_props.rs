//! Property tests over random graphs: the planner reports a cycle exactly when one exists,
//! the cycle it reports is real, and an acyclic spec is planned dependencies-first.

use std::collections::{BTreeSet, HashMap};

use bmac_core::plan::{PlanError, Planner};
use bmac_core::state::State;
use bmac_core::step::{Kind, Ref, Step, StepId};
use proptest::prelude::*;
use serde_json::json;

/// `n` nodes and edges `(from, to, via_input)`: step `from` depends on step `to`.
fn graphs() -> impl Strategy<Value = (usize, Vec<(usize, usize, bool)>)> {
    (0usize..60).prop_flat_map(|n| {
        let edges = if n == 0 {
            Just(Vec::new()).boxed()
        } else {
            prop::collection::vec((0..n, 0..n, any::<bool>()), 0..(2 * n + 1)).boxed()
        };
        (Just(n), edges)
    })
}

fn steps(n: usize, edges: &[(usize, usize, bool)]) -> Vec<Step> {
    let id = |i: usize| StepId::new(format!("s{i}")).unwrap();
    let mut steps: Vec<Step> = (0..n)
        .map(|i| Step::new(id(i), Kind::new("k"), &json!({})).unwrap())
        .collect();
    for (k, &(from, to, via_input)) in edges.iter().enumerate() {
        let s = steps[from].clone();
        steps[from] = if via_input {
            s.input(format!("in{k}"), Ref::new(id(to), "out"))
        } else {
            s.depends_on(id(to))
        };
    }
    steps
}

/// Brute force: is some node reachable from itself through at least one edge?
fn has_cycle(n: usize, edges: &[(usize, usize, bool)]) -> bool {
    let mut adj = vec![Vec::new(); n];
    for &(a, b, _) in edges {
        adj[a].push(b);
    }
    (0..n).any(|start| {
        let mut seen = vec![false; n];
        let mut stack: Vec<usize> = adj[start].clone();
        while let Some(v) = stack.pop() {
            if v == start {
                return true;
            }
            if !std::mem::replace(&mut seen[v], true) {
                stack.extend(&adj[v]);
            }
        }
        false
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn cycles_are_reported_iff_they_exist((n, edges) in graphs()) {
        let edge_set: BTreeSet<(String, String)> = edges
            .iter()
            .map(|&(a, b, _)| (format!("s{a}"), format!("s{b}")))
            .collect();
        match Planner::new(steps(n, &edges), &State::default()).plan() {
            Ok(plan) => {
                prop_assert!(!has_cycle(n, &edges), "missed a cycle");
                prop_assert_eq!(plan.len(), n);
                let position: HashMap<&str, usize> = plan
                    .nodes()
                    .iter()
                    .enumerate()
                    .map(|(i, node)| (node.step.id.as_str(), i))
                    .collect();
                for (from, to) in &edge_set {
                    prop_assert!(position[to.as_str()] < position[from.as_str()]);
                }
                for (i, node) in plan.nodes().iter().enumerate() {
                    prop_assert!(node.deps.iter().all(|&d| (d as usize) < i));
                }
            }
            Err(PlanError::Cycle(e)) => {
                let (cycle, cut) = (&e.cycle, &e.cut);
                prop_assert!(has_cycle(n, &edges), "reported a cycle that is not there");
                prop_assert!(!cycle.is_empty());
                let distinct: BTreeSet<&StepId> = cycle.iter().collect();
                prop_assert_eq!(distinct.len(), cycle.len(), "a cycle visits each step once");
                for (i, from) in cycle.iter().enumerate() {
                    let to = &cycle[(i + 1) % cycle.len()];
                    prop_assert!(
                        edge_set.contains(&(from.to_string(), to.to_string())),
                        "{} → {} is not an edge", from, to
                    );
                }
                prop_assert!(edge_set.contains(&(cut.0.to_string(), cut.1.to_string())));
            }
            Err(other) => prop_assert!(false, "unexpected error: {other:?}"),
        }
    }
}

/// Edges only from a higher to a lower index: always acyclic, so the ordering is exercised
/// on large graphs too (random graphs with many edges are mostly cyclic).
fn dags() -> impl Strategy<Value = (usize, Vec<(usize, usize, bool)>)> {
    (1usize..60).prop_flat_map(|n| {
        let edges = prop::collection::vec((0..n, 0..n, any::<bool>()), 0..(3 * n)).prop_map(|es| {
            es.into_iter()
                .filter(|(a, b, _)| a != b)
                .map(|(a, b, via)| (a.max(b), a.min(b), via))
                .collect::<Vec<_>>()
        });
        (Just(n), edges)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn acyclic_specs_plan_dependencies_first((n, edges) in dags()) {
        let plan = Planner::new(steps(n, &edges), &State::default()).plan();
        prop_assert!(plan.is_ok(), "{:?}", plan.err());
        let plan = plan.unwrap();
        prop_assert_eq!(plan.len(), n);
        let position: HashMap<String, usize> = plan
            .nodes()
            .iter()
            .enumerate()
            .map(|(i, node)| (node.step.id.to_string(), i))
            .collect();
        for &(from, to, _) in &edges {
            let (f, t) = (position[&format!("s{from}")], position[&format!("s{to}")]);
            prop_assert!(t < f, "s{} planned before its dependency s{}", from, to);
            prop_assert!(plan.nodes()[f].deps.contains(&(t as u32)));
        }
    }
}
