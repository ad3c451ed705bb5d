//! The plan graph exports (`bmac graph --format dot|mermaid|text`), snapshot-tested: they are
//! deterministic and show each step's action and dependencies.

use std::sync::Arc;

use bmac_core::plan::{GraphFormat, Plan, Planner};
use bmac_core::state::{AppliedStep, State, StepState};
use bmac_core::step::{Kind, Outputs, Ref, Step, StepId};
use serde_json::json;

fn id(s: &str) -> StepId {
    StepId::new(s).unwrap()
}

fn step(name: &str, kind: &Kind, v: i64) -> Step {
    Step::new(id(name), kind.clone(), &json!({"v": v})).unwrap()
}

/// A plan with every action: create, update, replace, delete and no-op.
fn plan() -> Plan {
    let (new, state) = spec_and_state(false);
    Planner::new(new, &state).plan().unwrap()
}

/// The spec of [`plan`] and its state, whose steps are recorded in the order they are listed
/// or (`reversed`) the other way round.
fn spec_and_state(reversed: bool) -> (Vec<Step>, State) {
    let cluster = Kind::with_replace_on("cluster", ["/v"]);
    let k = Kind::new("addon");
    let old = vec![
        step("cluster", &cluster, 1),
        step("cni", &k, 1).input("endpoint", Ref::new(id("cluster"), "endpoint")),
        step("audit_sink", &k, 1),
        step("legacy_policy", &k, 1).depends_on(id("cni")),
        step("legacy_audit", &k, 1).depends_on(id("audit_sink")),
    ];
    let old: Vec<Step> = if reversed {
        old.into_iter().rev().collect()
    } else {
        old
    };
    let mut state = State {
        lineage: "g".into(),
        serial: 4,
        ..State::default()
    };
    for s in old {
        state.steps.insert(
            s.id.clone(),
            StepState {
                applied: Some(Arc::new(AppliedStep {
                    fingerprint: s.config_fingerprint(),
                    outputs: Outputs::new(),
                    step: Arc::new(s),
                })),
                ..StepState::default()
            },
        );
    }
    let new = vec![
        step("cluster", &cluster, 2),
        step("cni", &k, 1).input("endpoint", Ref::new(id("cluster"), "endpoint")),
        step("audit_sink", &k, 1),
        step("kyverno", &k, 1)
            .depends_on(id("cni"))
            .depends_on(id("audit_sink")),
    ];
    (new, state)
}

#[test]
fn plans_do_not_depend_on_the_order_state_recorded_steps_in() {
    let [(spec, state), (spec_rev, state_rev)] = [false, true].map(spec_and_state);
    let text = |p: Plan| p.render_graph(GraphFormat::Text);
    assert_eq!(
        text(Planner::new(spec, &state).plan().unwrap()),
        text(Planner::new(spec_rev, &state_rev).plan().unwrap())
    );
    let destroy = |state: &State| {
        text(
            Planner::new(Vec::<Step>::new(), state)
                .destroy()
                .plan()
                .unwrap(),
        )
    };
    assert_eq!(destroy(&state), destroy(&state_rev));
}

#[test]
fn text_graph() {
    insta::assert_snapshot!("graph_text", plan().render_graph(GraphFormat::Text));
}

#[test]
fn dot_graph() {
    insta::assert_snapshot!("graph_dot", plan().render_graph(GraphFormat::Dot));
}

#[test]
fn mermaid_graph() {
    insta::assert_snapshot!("graph_mermaid", plan().render_graph(GraphFormat::Mermaid));
}

#[test]
fn graph_formats_parse_from_their_names() {
    for f in [GraphFormat::Dot, GraphFormat::Mermaid, GraphFormat::Text] {
        assert_eq!(f.to_string().parse::<GraphFormat>(), Ok(f));
    }
    assert!("svg".parse::<GraphFormat>().is_err());
}
