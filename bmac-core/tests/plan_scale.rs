//! Planning is linear and never recursive: a 100 000-step chain plans on the default test
//! thread (2 MiB stack), with and without a state that already holds every step.

use std::sync::Arc;

use std::time::{Duration, Instant};

use bmac_core::plan::{Action, GraphFormat, Planner};
use bmac_core::state::{AppliedStep, State, StepState};
use bmac_core::step::{Kind, Outputs, Ref, Step, StepId};
use serde_json::json;

const N: usize = 100_000;

fn chain(kind: &Kind) -> Vec<Step> {
    let ids: Vec<StepId> = (0..N)
        .map(|i| StepId::new(format!("s{i}")).unwrap())
        .collect();
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            let s = Step::new(id.clone(), kind.clone(), &json!({"n": i})).unwrap();
            match i {
                0 => s,
                // Alternate explicit deps and input references.
                _ if i % 2 == 0 => s.depends_on(ids[i - 1].clone()),
                _ => s.input("up", Ref::new(ids[i - 1].clone(), "out")),
            }
        })
        .collect()
}

/// Generous: catches quadratic blow-up (which would take minutes), not a slow machine.
const BUDGET: Duration = Duration::from_secs(60);

#[test]
fn a_100k_step_chain_plans_without_overflow() {
    let kind = Kind::new("k");
    let started = Instant::now();
    let plan = Planner::new(chain(&kind), &State::default())
        .target(StepId::new(format!("s{}", N - 1)).unwrap())
        .plan()
        .unwrap();
    assert!(started.elapsed() < BUDGET, "took {:?}", started.elapsed());
    assert_eq!(plan.len(), N);
    for (i, node) in plan.nodes().iter().enumerate() {
        assert_eq!(node.step.id.as_str(), format!("s{i}"));
        assert_eq!(node.action, Action::Create);
        let expected: &[u32] = if i == 0 { &[] } else { &[i as u32 - 1] };
        assert_eq!(node.deps, expected);
    }
    // The text graph of a long chain stays linear in size (indentation is capped).
    let text = plan.render_graph(GraphFormat::Text);
    assert!(text.len() < 200 * N, "{} bytes", text.len());
}

#[test]
fn a_100k_step_chain_against_a_full_state() {
    let kind = Kind::new("k");
    let mut state = State {
        lineage: "big".into(),
        serial: N as u64,
        ..State::default()
    };
    for step in chain(&kind) {
        state.steps.insert(
            step.id.clone(),
            StepState {
                applied: Some(Arc::new(AppliedStep {
                    fingerprint: step.config_fingerprint(),
                    outputs: Outputs::new().with("out", 1),
                    step: Arc::new(step),
                })),
                ..StepState::default()
            },
        );
    }
    let mut spec = chain(&kind);
    spec[0].config["n"] = json!(-1);
    let started = Instant::now();
    let plan = Planner::new(spec, &state).plan().unwrap();
    assert!(started.elapsed() < BUDGET, "took {:?}", started.elapsed());
    assert_eq!(plan.len(), N);
    let s = plan.summary();
    // s0 changes; s1 reads it (update); s2 only depends on s1: unchanged, and so on.
    assert_eq!((s.update, s.unchanged), (2, N - 2));

    // Destroying it all reverses the chain, still without recursion.
    let plan = Planner::new(Vec::<Step>::new(), &state)
        .destroy()
        .plan()
        .unwrap();
    assert_eq!(plan.len(), N);
    assert_eq!(plan.nodes()[0].step.id.as_str(), format!("s{}", N - 1));
    assert_eq!(plan.nodes()[N - 1].step.id.as_str(), "s0");
}

#[test]
fn a_100k_step_cycle_is_reported_without_overflow() {
    let kind = Kind::new("k");
    let mut spec = chain(&kind);
    spec[0] = spec[0]
        .clone()
        .depends_on(StepId::new(format!("s{}", N - 1)).unwrap());
    let err = Planner::new(spec, &State::default()).plan().unwrap_err();
    let bmac_core::PlanError::Cycle(e) = err else {
        panic!("no cycle reported")
    };
    let cycle = &e.cycle;
    assert_eq!(cycle.len(), N);
    assert_eq!(cycle[0].as_str(), "s0");
    assert_eq!(cycle[1].as_str(), format!("s{}", N - 1));
}
