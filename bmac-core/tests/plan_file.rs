//! Saved plans: they round-trip through JSON, a tampered file is refused, and a plan made
//! against an older state refuses to apply.

use std::sync::Arc;

use bmac_core::plan::{Plan, PlanError, Planner};
use bmac_core::state::{AppliedStep, State, StepState};
use bmac_core::step::{Kind, Outputs, Ref, Step, StepId};
use serde_json::{json, Value};

fn id(s: &str) -> StepId {
    StepId::new(s).unwrap()
}

fn spec() -> Vec<Step> {
    let k = Kind::new("k");
    vec![
        Step::new(id("cluster"), k.clone(), &json!({"region": "eu"})).unwrap(),
        Step::new(id("pool"), k.clone(), &json!({"max": 3}))
            .unwrap()
            .input("endpoint", Ref::new(id("cluster"), "endpoint")),
        Step::new(id("policy"), k, &json!({}))
            .unwrap()
            .depends_on(id("pool")),
    ]
}

fn state() -> State {
    let mut st = State {
        lineage: "L-1".into(),
        serial: 12,
        ..State::default()
    };
    let cluster = spec().remove(0);
    st.steps.insert(
        cluster.id.clone(),
        StepState {
            applied: Some(Arc::new(AppliedStep {
                fingerprint: cluster.config_fingerprint(),
                outputs: Outputs::new()
                    .with("endpoint", "https://k")
                    .with_sensitive("token", "hunter2")
                    // State keeps secrets as digests only.
                    .redacted(),
                step: Arc::new(cluster),
            })),
            ..StepState::default()
        },
    );
    st
}

fn saved() -> (Plan, Value) {
    let plan = Planner::new(spec(), &state()).plan().unwrap();
    let value: Value = serde_json::from_str(&plan.to_json()).unwrap();
    (plan, value)
}

fn reason(value: &Value) -> String {
    match Plan::from_json(&value.to_string()) {
        Err(PlanError::InvalidFile(e)) => e.reason,
        other => panic!("accepted a tampered plan: {other:?}"),
    }
}

#[test]
fn a_plan_round_trips_and_keeps_secrets_out() {
    let (plan, _) = saved();
    let text = plan.to_json();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("\"sensitive\""), "the digest is kept: {text}");
    let back = Plan::from_json(&text).unwrap();
    assert_eq!(back.nodes(), plan.nodes());
    assert_eq!(back.state_ref(), plan.state_ref());
    assert_eq!(back.summary(), plan.summary());
}

#[test]
fn another_format_version_is_refused() {
    let (_, mut v) = saved();
    let next = Plan::FORMAT_VERSION + 1;
    v["version"] = json!(next);
    assert!(reason(&v).contains(&format!("format version {next}")));
    // Version 1 kept a node's prior fingerprint beside its prior, not in it.
    v["version"] = json!(1);
    assert!(reason(&v).contains("format version 1"));
}

#[test]
fn garbage_is_refused() {
    for text in [
        "",
        "{",
        "[]",
        r#"{"version": 2}"#,
        r#"{"version": 2, "state": 3}"#,
    ] {
        assert!(
            matches!(Plan::from_json(text), Err(PlanError::InvalidFile(_))),
            "{text:?}"
        );
    }
}

#[test]
fn repeated_step_ids_are_refused() {
    let (_, mut v) = saved();
    v["nodes"][2]["step"]["id"] = json!("cluster");
    assert!(reason(&v).contains("more than once"));
}

#[test]
fn forward_or_out_of_range_dependencies_are_refused() {
    let (_, mut v) = saved();
    v["nodes"][0]["deps"] = json!([1]);
    assert!(reason(&v).contains("not an earlier node"));
    let (_, mut v) = saved();
    v["nodes"][2]["deps"] = json!([1, 99]);
    assert!(reason(&v).contains("not an earlier node"));
    let (_, mut v) = saved();
    v["nodes"][1]["deps"] = json!([0, 0]);
    assert!(reason(&v).contains("repeated"));
}

#[test]
fn a_dropped_dependency_edge_is_refused() {
    let (plan, mut v) = saved();
    let pool = plan
        .nodes()
        .iter()
        .position(|n| n.step.id == id("pool"))
        .unwrap();
    v["nodes"][pool]["deps"] = json!([]);
    assert!(reason(&v).contains("`pool` depends on `cluster`"));
}

#[test]
fn an_invalid_step_id_is_refused() {
    let (_, mut v) = saved();
    v["nodes"][0]["step"]["id"] = json!("a..b");
    reason(&v);
}

#[test]
fn a_plan_refuses_a_state_that_moved() {
    let (plan, _) = saved();
    let mut st = state();
    plan.check_fresh(&st).unwrap();
    st.serial = 15;
    let err = plan.check_fresh(&st).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the state changed since this plan was made (serial 12 → 15); run `bmac plan` again"
    );
    st.serial = 12;
    st.lineage = "L-2".into();
    let err = plan.check_fresh(&st).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("`L-1`") && text.contains("`L-2`"), "{text}");
    assert!(matches!(err, PlanError::Stale(_)));
}
