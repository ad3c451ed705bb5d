//! The planner's rules, as a user of `bmac plan` sees them: which action each step gets, the
//! order deletions run in, and what `--target`, `--exclude` and `destroy` select.

use std::sync::Arc;

use bmac_core::plan::{Action, Plan, PlanError, Planner};
use bmac_core::state::{AppliedStep, State, StepState};
use bmac_core::step::{Kind, Outputs, Ref, Step, StepId};
use serde_json::{json, Value};

fn id(s: &str) -> StepId {
    StepId::new(s).unwrap()
}

fn step(name: &str, kind: &Kind, config: Value) -> Step {
    Step::new(id(name), kind.clone(), &config).unwrap()
}

fn applied(step: Step) -> StepState {
    StepState {
        applied: Some(Arc::new(AppliedStep {
            outputs: Outputs::new().with("name", step.id.as_str()),
            fingerprint: step.config_fingerprint(),
            step: Arc::new(step),
        })),
        in_doubt: false,
        last_error: None,
        checkpoint: None,
    }
}

fn state(steps: impl IntoIterator<Item = Step>) -> State {
    State {
        lineage: "lineage-1".into(),
        serial: 7,
        steps: steps
            .into_iter()
            .map(|s| (s.id.clone(), applied(s)))
            .collect(),
    }
}

fn action(plan: &Plan, name: &str) -> Action {
    plan.node(&id(name))
        .unwrap_or_else(|| panic!("`{name}` not in plan"))
        .action
        .clone()
}

fn ids(plan: &Plan) -> Vec<&str> {
    plan.nodes().iter().map(|n| n.step.id.as_str()).collect()
}

fn pos(plan: &Plan, name: &str) -> usize {
    plan.nodes()
        .iter()
        .position(|n| n.step.id.as_str() == name)
        .unwrap_or_else(|| panic!("`{name}` not in plan"))
}

fn update(fields: &[&str], inputs_may_change: bool) -> Action {
    Action::Update {
        fields: fields.iter().map(|f| f.to_string()).collect(),
        inputs_may_change,
    }
}

/// cluster ← pool (input `endpoint`) and cluster ← policy (plain depends_on).
fn small_spec() -> Vec<Step> {
    let cluster = Kind::with_replace_on("cluster", ["/region"]);
    let pool = Kind::with_replace_on("node_pool", ["/machine"]);
    vec![
        step("policy", &Kind::new("policy"), json!({"rules": 3})).depends_on(id("cluster")),
        step(
            "pool",
            &pool,
            json!({"machine": "m5", "scaling": {"min": 1, "max": 3}}),
        )
        .input("endpoint", Ref::new(id("cluster"), "endpoint")),
        step(
            "cluster",
            &cluster,
            json!({"region": "eu", "version": "1.30"}),
        ),
    ]
}

#[test]
fn everything_is_created_on_an_empty_state_in_dependency_order() {
    let plan = Planner::new(small_spec(), &State::default())
        .plan()
        .unwrap();
    assert_eq!(plan.len(), 3);
    for n in plan.nodes() {
        assert_eq!(n.action, Action::Create);
        assert!(n.prior.is_none() && n.prior_fingerprint().is_none());
    }
    assert!(pos(&plan, "cluster") < pos(&plan, "pool"));
    assert!(pos(&plan, "cluster") < pos(&plan, "policy"));
    assert_eq!(
        plan.node(&id("pool")).unwrap().deps,
        [pos(&plan, "cluster") as u32]
    );
    assert_eq!(
        plan.summary().to_string(),
        "Plan: 3 to add, 0 to change, 0 to destroy."
    );
}

#[test]
fn shared_steps_are_planned_without_a_copy() {
    let steps: Vec<Arc<Step>> = small_spec().into_iter().map(Arc::new).collect();
    let plan = Planner::new(steps.iter().cloned(), &State::default())
        .plan()
        .unwrap();
    for s in &steps {
        let node = plan.node(&s.id).unwrap();
        assert!(Arc::ptr_eq(&node.step, s), "{} was copied", s.id);
    }
    // Owned steps plan the same.
    let owned = Planner::new(small_spec(), &State::default())
        .plan()
        .unwrap();
    assert_eq!(owned.nodes(), plan.nodes());
}

#[test]
fn unchanged_steps_are_noops_kept_with_their_prior() {
    let st = state(small_spec());
    let plan = Planner::new(small_spec(), &st).plan().unwrap();
    assert!(!plan.has_changes());
    assert_eq!(plan.len(), 3, "NoOps stay: they feed outputs to dependents");
    let pool = plan.node(&id("pool")).unwrap();
    let prior = pool.prior.as_ref().expect("prior from state");
    assert_eq!(
        prior.outputs().get("name").unwrap().value(),
        Some(&json!("pool"))
    );
    assert_eq!(
        pool.prior_fingerprint(),
        Some(st.applied(&id("pool")).unwrap().fingerprint)
    );
    assert_eq!(plan.state_ref().serial, 7);
}

#[test]
fn config_changes_update_or_replace_by_the_kinds_replace_on_fields() {
    let st = state(small_spec());
    let mut spec = small_spec();
    spec[1].config["scaling"]["max"] = json!(5); // pool: in place
    spec[0].config["rules"] = json!(4); // policy: in place
    let plan = Planner::new(spec, &st).plan().unwrap();
    assert_eq!(action(&plan, "pool"), update(&["/scaling/max"], false));
    assert_eq!(action(&plan, "policy"), update(&["/rules"], false));
    assert_eq!(action(&plan, "cluster"), Action::NoOp);

    let mut spec = small_spec();
    spec[1].config["machine"] = json!("m6");
    spec[1].config["scaling"]["min"] = json!(2);
    let plan = Planner::new(spec, &st).plan().unwrap();
    assert_eq!(
        action(&plan, "pool"),
        Action::Replace {
            fields: vec!["/machine".into()]
        }
    );
    let s = plan.summary();
    assert_eq!((s.create, s.update, s.destroy, s.unchanged), (1, 0, 1, 2));
}

#[test]
fn a_kind_change_replaces() {
    let st = state(small_spec());
    let mut spec = small_spec();
    spec[0].kind = Kind::new("gatekeeper_policy");
    let plan = Planner::new(spec, &st).plan().unwrap();
    assert_eq!(action(&plan, "policy"), Action::Replace { fields: vec![] });
}

#[test]
fn a_changing_input_source_marks_consumers_but_not_plain_dependents() {
    let st = state(small_spec());
    let mut spec = small_spec();
    spec[2].config["version"] = json!("1.31");
    // A second-level consumer: reads pool's outputs.
    spec.push(
        step("workload_identity", &Kind::new("wi"), json!({}))
            .input("pool", Ref::new(id("pool"), "name")),
    );
    let mut st = st;
    let wi = spec[3].clone();
    st.steps.insert(wi.id.clone(), applied(wi));
    let plan = Planner::new(spec, &st).plan().unwrap();
    assert_eq!(action(&plan, "cluster"), update(&["/version"], false));
    assert_eq!(
        action(&plan, "pool"),
        update(&[], true),
        "takes an input from cluster"
    );
    assert_eq!(
        action(&plan, "workload_identity"),
        update(&[], true),
        "transitively"
    );
    assert_eq!(
        action(&plan, "policy"),
        Action::NoOp,
        "depends_on only orders"
    );
}

#[test]
fn a_rewired_input_reference_is_an_update() {
    let st = state(small_spec());
    let mut spec = small_spec();
    spec[1] = spec[1].clone().input("ca", Ref::new(id("cluster"), "ca"));
    let plan = Planner::new(spec, &st).plan().unwrap();
    assert_eq!(action(&plan, "pool"), update(&[], true));
}

#[test]
fn steps_in_doubt_are_never_noops() {
    let mut st = state(small_spec());
    st.steps.get_mut(&id("cluster")).unwrap().in_doubt = true;
    st.steps.insert(
        id("audit_sink"),
        StepState {
            in_doubt: true,
            ..StepState::default()
        },
    );
    let mut spec = small_spec();
    spec.push(step("audit_sink", &Kind::new("bucket"), json!({})));
    let plan = Planner::new(spec, &st).plan().unwrap();
    let cluster = plan.node(&id("cluster")).unwrap();
    assert_eq!(cluster.action, update(&[], false));
    assert!(cluster.in_doubt);
    let sink = plan.node(&id("audit_sink")).unwrap();
    assert_eq!((sink.action.clone(), sink.in_doubt), (Action::Create, true));
    // The doubtful cluster may produce new outputs: its input consumers re-check.
    assert_eq!(action(&plan, "pool"), update(&[], true));
    assert!(!plan.node(&id("pool")).unwrap().in_doubt);
}

#[test]
fn steps_gone_from_the_spec_are_deleted_dependents_first() {
    // State: cluster ← pool ← app (input); the spec keeps only the cluster.
    let k = Kind::new("k");
    let old = vec![
        step("cluster", &k, json!({})),
        step("pool", &k, json!({})).depends_on(id("cluster")),
        step("app", &k, json!({})).input("pool", Ref::new(id("pool"), "name")),
    ];
    let st = state(old);
    let plan = Planner::new(vec![step("cluster", &k, json!({}))], &st)
        .plan()
        .unwrap();
    assert_eq!(action(&plan, "pool"), Action::Delete);
    assert_eq!(action(&plan, "app"), Action::Delete);
    assert!(pos(&plan, "app") < pos(&plan, "pool"), "{:?}", ids(&plan));
    let pool = plan.node(&id("pool")).unwrap();
    assert_eq!(pool.deps, [pos(&plan, "app") as u32]);
    assert_eq!(pool.step.deps, [id("cluster")], "the step as last applied");
    assert!(pool.prior.is_some());
    assert_eq!(plan.summary().destroy, 2);
}

#[test]
fn a_deleted_step_waits_for_the_update_of_a_step_that_stops_using_it() {
    let k = Kind::new("k");
    let st = state(vec![
        step("old_role", &k, json!({})),
        step("sa", &k, json!({"v": 1})).input("role", Ref::new(id("old_role"), "arn")),
    ]);
    let plan = Planner::new(vec![step("sa", &k, json!({"v": 2}))], &st)
        .plan()
        .unwrap();
    assert_eq!(action(&plan, "sa"), update(&["/v"], true));
    assert_eq!(action(&plan, "old_role"), Action::Delete);
    assert_eq!(
        plan.node(&id("old_role")).unwrap().deps,
        [pos(&plan, "sa") as u32]
    );
}

#[test]
fn target_pulls_in_dependencies_and_leaves_deletions_out() {
    let mut st = state(small_spec());
    let gone = step("gone", &Kind::new("k"), json!({}));
    st.steps.insert(gone.id.clone(), applied(gone));
    let mut spec = small_spec();
    spec[0].config["rules"] = json!(9);
    spec[1].config["scaling"]["max"] = json!(9);
    let plan = Planner::new(spec.clone(), &st)
        .target(id("pool"))
        .plan()
        .unwrap();
    assert_eq!(ids(&plan), ["cluster", "pool"]);
    assert_eq!(action(&plan, "pool"), update(&["/scaling/max"], false));

    let plan = Planner::new(spec.clone(), &st).plan().unwrap();
    assert_eq!(
        action(&plan, "gone"),
        Action::Delete,
        "untargeted plans delete"
    );
    let plan = Planner::new(spec, &st).target(id("gone")).plan().unwrap();
    assert_eq!(ids(&plan), ["gone"]);
}

#[test]
fn exclude_drops_the_step_and_its_dependents() {
    let plan = Planner::new(small_spec(), &State::default())
        .exclude(id("cluster"))
        .plan()
        .unwrap();
    assert!(plan.is_empty(), "{:?}", ids(&plan));
    let plan = Planner::new(small_spec(), &State::default())
        .exclude(id("pool"))
        .plan()
        .unwrap();
    assert_eq!(ids(&plan), ["cluster", "policy"]);
}

#[test]
fn destroy_deletes_everything_in_reverse_dependency_order() {
    let st = state(small_spec());
    let plan = Planner::new(small_spec(), &st).destroy().plan().unwrap();
    assert_eq!(plan.len(), 3);
    assert!(plan.nodes().iter().all(|n| n.action == Action::Delete));
    assert!(pos(&plan, "pool") < pos(&plan, "cluster"));
    assert!(pos(&plan, "policy") < pos(&plan, "cluster"));
    assert_eq!(plan.summary().destroy, 3);
}

#[test]
fn destroy_with_a_target_takes_its_dependents_along() {
    let k = Kind::new("k");
    let st = state(vec![
        step("cluster", &k, json!({})),
        step("pool", &k, json!({})).depends_on(id("cluster")),
        step("app", &k, json!({})).depends_on(id("pool")),
        step("bucket", &k, json!({})),
    ]);
    let plan = Planner::new(Vec::<Step>::new(), &st)
        .destroy()
        .target(id("pool"))
        .plan()
        .unwrap();
    assert_eq!(ids(&plan), ["app", "pool"]);
    // Excluding the app keeps the pool it needs too.
    let plan = Planner::new(Vec::<Step>::new(), &st)
        .destroy()
        .exclude(id("app"))
        .plan()
        .unwrap();
    assert_eq!(ids(&plan), ["bucket"]);
}

#[test]
fn unknown_targets_are_rejected_with_a_suggestion() {
    let err = Planner::new(small_spec(), &State::default())
        .target(id("clustr"))
        .plan()
        .unwrap_err();
    let PlanError::UnknownTarget(e) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(e.suggestion.as_ref(), Some(&id("cluster")));
    assert_eq!(
        err.to_string(),
        "cannot target `clustr`: no such step in the spec or the state"
    );
    let err = Planner::new(small_spec(), &State::default())
        .destroy()
        .exclude(id("cluster"))
        .plan()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot exclude `cluster`: no such step in the state"
    );
}

#[test]
fn duplicate_ids_are_rejected() {
    let k = Kind::new("k");
    let err = Planner::new(
        vec![step("a", &k, json!({})), step("a", &k, json!({"x": 1}))],
        &State::default(),
    )
    .plan()
    .unwrap_err();
    assert!(matches!(&err, PlanError::DuplicateStep(e) if e.id.as_str() == "a"));
}

#[test]
fn every_unknown_dependency_is_reported() {
    let k = Kind::new("k");
    let err = Planner::new(
        vec![
            step("namespace.payments", &k, json!({})),
            step("app", &k, json!({})).depends_on(id("nmespace.payments")),
            step("sa", &k, json!({})).input("role", Ref::new(id("iam.role"), "arn")),
        ],
        &State::default(),
    )
    .plan()
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "step `app` depends on `nmespace.payments`, which is not defined"
    );
    let PlanError::UnknownDep(e) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(e.suggestion.as_ref(), Some(&id("namespace.payments")));
    assert_eq!(e.others.len(), 1);
    assert_eq!(
        e.others[0].to_string(),
        "step `sa` takes input `role` from `iam.role`, which is not defined"
    );
    assert_eq!(e.others[0].suggestion, None);
}

#[test]
fn dependencies_defined_further_down_resolve_and_only_the_missing_are_reported() {
    let k = Kind::new("k");
    let spec = || {
        vec![
            step("app", &k, json!({}))
                .depends_on(id("db"))
                .input("cache", Ref::new(id("cache"), "url")),
            step("db", &k, json!({})),
            step("cache", &k, json!({})),
        ]
    };
    // Both dependencies of `app` are defined after it: planned after them, edges intact.
    let plan = Planner::new(spec(), &State::default()).plan().unwrap();
    assert_eq!(ids(&plan), ["db", "cache", "app"]);
    let app = plan.node(&id("app")).unwrap();
    assert_eq!(app.deps, [0, 1]);

    // Among forward references, only the step that is never defined is reported.
    let mut broken = spec();
    broken[0] = broken[0].clone().depends_on(id("dbb"));
    broken.push(step("worker", &k, json!({})).depends_on(id("queue")));
    let err = Planner::new(broken, &State::default()).plan().unwrap_err();
    let PlanError::UnknownDep(e) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        e.to_string(),
        "step `app` depends on `dbb`, which is not defined"
    );
    assert_eq!(e.suggestion.as_ref(), Some(&id("db")));
    let others: Vec<String> = e.others.iter().map(ToString::to_string).collect();
    assert_eq!(
        others,
        ["step `worker` depends on `queue`, which is not defined"]
    );
}

#[test]
fn a_cycle_names_an_explicit_dependency_to_cut() {
    let k = Kind::new("k");
    let spec = vec![
        step("a", &k, json!({})).input("x", Ref::new(id("b"), "out")),
        step("b", &k, json!({})).input("y", Ref::new(id("c"), "out")),
        step("c", &k, json!({})).depends_on(id("a")),
        step("d", &k, json!({})).depends_on(id("c")),
    ];
    let err = Planner::new(spec, &State::default()).plan().unwrap_err();
    let PlanError::Cycle(e) = &err else {
        panic!("{err:?}")
    };
    let (cycle, cut, help) = (&e.cycle, &e.cut, &e.help);
    assert_eq!(cycle, &[id("a"), id("b"), id("c")]);
    assert_eq!(cut, &(id("c"), id("a")));
    assert!(
        help.contains("remove `a` from the `depends_on` of `c`"),
        "{help}"
    );
    assert!(help.contains("carries data"), "{help}");
    assert_eq!(err.to_string(), "dependency cycle: a → b → c → a");
}

#[test]
fn a_self_dependency_is_a_cycle() {
    let k = Kind::new("k");
    let err = Planner::new(
        vec![step("a", &k, json!({})).depends_on(id("a"))],
        &State::default(),
    )
    .plan()
    .unwrap_err();
    assert_eq!(err.to_string(), "dependency cycle: a → a");
}

#[test]
fn a_state_recording_a_cycle_is_reported_not_looped_on() {
    // Only a hand-edited or damaged state can record this; the planner must say so.
    let k = Kind::new("k");
    let st = state(vec![
        step("a", &k, json!({})).depends_on(id("b")),
        step("b", &k, json!({})).depends_on(id("a")),
    ]);
    let err = Planner::new(Vec::<Step>::new(), &st).plan().unwrap_err();
    let PlanError::Cycle(e) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(e.cycle.len(), 2);
    assert!(e.help.contains("state"), "{}", e.help);
    // Excluding one of them leaves nothing cyclic to plan.
    let plan = Planner::new(Vec::<Step>::new(), &st)
        .exclude(id("a"))
        .plan()
        .unwrap();
    assert!(plan.is_empty(), "{:?}", ids(&plan));
}

#[test]
fn a_step_never_applied_and_gone_from_the_spec_is_not_deleted() {
    // An intent was journaled but nothing was ever applied: state has nothing to destroy with.
    let mut st = State::default();
    st.steps.insert(
        id("half_made"),
        StepState {
            in_doubt: true,
            ..StepState::default()
        },
    );
    let plan = Planner::new(Vec::<Step>::new(), &st).plan().unwrap();
    assert!(plan.is_empty());
}

#[test]
fn a_targeted_destroy_keeps_the_steps_its_deletions_read_as_no_ops() {
    let k = Kind::new("k");
    let cluster = step("cluster", &k, json!({"name": "c"}));
    let cni = step("cni", &k, json!({"plugin": "cilium"}))
        .input("endpoint", Ref::new(id("cluster"), "name"));
    let pool = step("node_pool.a", &k, json!({"size": 1}))
        .depends_on(id("cni"))
        .input("endpoint", Ref::new(id("cluster"), "name"));
    let state = state([cluster.clone(), cni.clone(), pool.clone()]);
    let plan = Planner::new(vec![cluster, cni, pool], &state)
        .destroy()
        .target(id("cni"))
        .plan()
        .unwrap();
    assert_eq!(action(&plan, "cni"), Action::Delete);
    assert_eq!(action(&plan, "node_pool.a"), Action::Delete);
    assert_eq!(
        action(&plan, "cluster"),
        Action::NoOp,
        "read, not destroyed"
    );
    assert_eq!(plan.summary().destroy, 2);
}
