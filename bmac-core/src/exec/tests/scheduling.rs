//! Order, parallelism, dependencies and the flow of outputs.

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::support::*;
use crate::event::{Event, Outcome};
use crate::exec::SchedulingOrder;
use crate::plan::Action;
use crate::provider::Prior;
use crate::state::MemoryStore;
use crate::step::Outputs;

/// Six short independent steps listed first, then a chain of four; every step takes 1 s.
fn chain_behind_crowd(provider: &TestProvider) -> PlanBuilder {
    let mut plan = PlanBuilder::new();
    for i in 1..=6 {
        plan.create(&format!("short{i}"), &[]);
        provider.delay(&format!("short{i}"), 1);
    }
    plan.create("chain1", &[])
        .create("chain2", &["chain1"])
        .create("chain3", &["chain2"])
        .create("chain4", &["chain3"]);
    for i in 1..=4 {
        provider.delay(&format!("chain{i}"), 1);
    }
    plan
}

#[tokio::test(start_paused = true)]
async fn critical_path_first_beats_fifo() {
    // Cap 2, 10 s of work: the best possible is 5 s, which needs the chain started at once.
    let provider = TestProvider::new();
    let plan = chain_behind_crowd(&provider).build();
    let start = Instant::now();
    let (report, _) = run_ok(
        executor(&provider).parallelism(2),
        plan.clone(),
        &MemoryStore::new(),
    )
    .await;
    assert_eq!(secs_since(start), 5.0);
    assert_eq!(report.duration, Duration::from_secs(5));
    assert_eq!(report.counts.succeeded, 10);
    assert_eq!(provider.applied()[0], "chain1");

    // FIFO starts the crowd first and leaves the chain to run alone: 3 s + 4 s.
    let provider = TestProvider::new();
    let plan = chain_behind_crowd(&provider).build();
    let start = Instant::now();
    let exec = executor(&provider)
        .parallelism(2)
        .order(SchedulingOrder::Fifo);
    let (report, _) = run_ok(exec, plan, &MemoryStore::new()).await;
    assert_eq!(secs_since(start), 7.0);
    assert_eq!(report.counts.succeeded, 10);
    assert_eq!(&provider.applied()[..2], ["short1", "short2"]);
}

#[tokio::test(start_paused = true)]
async fn estimates_weight_the_priority_and_ties_go_to_plan_order() {
    let provider = TestProvider::new();
    let mut plan = PlanBuilder::new();
    plan.create("quick", &[])
        .create("slow", &[])
        .create("tie_a", &[])
        .create("tie_b", &[]);
    provider.edit("quick", |s| s.expected = Some(Duration::from_secs(1)));
    provider.edit("slow", |s| s.expected = Some(Duration::from_secs(600)));
    provider.edit("tie_a", |s| s.expected = Some(Duration::from_secs(5)));
    provider.edit("tie_b", |s| s.expected = Some(Duration::from_secs(5)));
    run_ok(
        executor(&provider).parallelism(1),
        plan.build(),
        &MemoryStore::new(),
    )
    .await;
    assert_eq!(provider.applied(), ["slow", "tie_a", "tie_b", "quick"]);
}

#[tokio::test(start_paused = true)]
async fn the_parallelism_cap_is_never_exceeded() {
    let provider = TestProvider::new();
    let mut plan = PlanBuilder::new();
    for i in 0..20 {
        plan.create(&format!("s{i}"), &[]);
        provider.delay(&format!("s{i}"), 1);
    }
    let start = Instant::now();
    let (report, events) = run_ok(
        executor(&provider).parallelism(3),
        plan.build(),
        &MemoryStore::new(),
    )
    .await;
    assert_eq!(provider.max_running(), 3);
    assert_eq!(secs_since(start), 7.0, "20 one-second steps, 3 at a time");
    assert_eq!(report.counts.succeeded, 20);
    assert!(matches!(
        events.first(),
        Some(Event::RunStarted {
            steps: 20,
            parallelism: 3
        })
    ));

    // Default cap: 10.
    let provider = TestProvider::new();
    let mut plan = PlanBuilder::new();
    for i in 0..25 {
        plan.create(&format!("s{i}"), &[]);
        provider.delay(&format!("s{i}"), 1);
    }
    run_ok(executor(&provider), plan.build(), &MemoryStore::new()).await;
    assert_eq!(provider.max_running(), 10);
}

#[tokio::test(start_paused = true)]
async fn dependencies_finish_first_and_outputs_flow_into_inputs() {
    let provider = TestProvider::new();
    provider.delay("cluster", 3);
    provider.edit("cluster", |s| {
        s.outputs = Some(Outputs::new().with("endpoint", "https://k8s.example:443"))
    });
    let mut plan = PlanBuilder::new();
    plan.create("cluster", &[])
        .create("pool", &[])
        .input("pool", "endpoint", "cluster", "endpoint")
        .create("cni", &["pool"]);
    let store = MemoryStore::new();
    let (report, events) = run_ok(executor(&provider), plan.build(), &store).await;
    assert_eq!(report.outcome, Outcome::Succeeded);
    assert_eq!(provider.applied(), ["cluster", "pool", "cni"]);
    let cluster = provider.last(Op::Apply, "cluster");
    let pool = provider.last(Op::Apply, "pool");
    assert!(pool.start_seq > cluster.end_seq.unwrap());
    assert_eq!(pool.inputs.str("endpoint"), Some("https://k8s.example:443"));
    assert_eq!(
        journal_of(&store, "pool"),
        ["intent:apply", "applied"],
        "intent before the call, result after"
    );
    assert_eq!(
        events_of(&events, "pool"),
        ["started", "succeeded(changed=true)"]
    );
    assert!(matches!(
        events.last(),
        Some(Event::RunFinished {
            outcome: Outcome::Succeeded,
            ..
        })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_missing_output_fails_the_step_naming_step_and_output() {
    let provider = TestProvider::new();
    let mut plan = PlanBuilder::new();
    plan.create("cluster", &[])
        .create("pool", &[])
        .input("pool", "ca", "cluster", "ca_bundle");
    let store = MemoryStore::new();
    let (report, _) = run_ok(executor(&provider), plan.build(), &store).await;
    let failure = report.failure("pool").expect("pool failed");
    assert!(
        failure.error.to_string().contains("`pool`"),
        "{}",
        failure.error
    );
    assert!(
        failure.error.to_string().contains("`ca_bundle`"),
        "{}",
        failure.error
    );
    assert!(
        failure.error.to_string().contains("`cluster`"),
        "{}",
        failure.error
    );
    assert_eq!(provider.count(Op::Apply, "pool"), 0);
    assert!(
        journal_of(&store, "pool").is_empty(),
        "no call, so no intent"
    );
}

#[tokio::test(start_paused = true)]
async fn planned_no_ops_make_no_call_and_feed_their_recorded_outputs() {
    let provider = TestProvider::new();
    let mut plan = PlanBuilder::new();
    plan.add("cluster", Action::NoOp, &[])
        .create("pool", &[])
        .input("pool", "endpoint", "cluster", "endpoint");
    plan.node("cluster").prior = Some(Prior::new(
        config("cluster"),
        Outputs::new().with("endpoint", "https://old"),
    ));
    let store = MemoryStore::new();
    let (report, events) = run_ok(executor(&provider), plan.build(), &store).await;
    assert_eq!(provider.count(Op::Apply, "cluster"), 0);
    assert_eq!(provider.count(Op::Observe, "cluster"), 0);
    assert_eq!(
        provider.last(Op::Apply, "pool").inputs.str("endpoint"),
        Some("https://old")
    );
    assert_eq!(report.counts.unchanged, 1);
    assert_eq!(report.counts.succeeded, 1);
    assert!(journal_of(&store, "cluster").is_empty());
    assert!(events_of(&events, "cluster").is_empty());
}

#[tokio::test(start_paused = true)]
async fn replace_destroys_then_creates_and_delete_destroys() {
    let provider = TestProvider::new();
    let old = Prior::new(json!({"name": "old"}), Outputs::new().with("id", "old-id"));
    let mut plan = PlanBuilder::new();
    plan.add(
        "pool",
        Action::Replace {
            fields: vec!["/machine".into()],
        },
        &[],
    )
    .add("legacy", Action::Delete, &[]);
    plan.node("pool").prior = Some(old.clone());
    plan.node("legacy").prior = Some(old.clone());
    let store = MemoryStore::new();
    let (report, _) = run_ok(executor(&provider), plan.build(), &store).await;
    assert_eq!(report.counts.succeeded, 2);
    assert_eq!(
        journal_of(&store, "pool"),
        ["intent:destroy", "destroyed", "intent:apply", "applied"]
    );
    assert_eq!(provider.last(Op::Destroy, "pool").prior, Some(old));
    assert_eq!(
        provider.last(Op::Apply, "pool").prior,
        None,
        "replaced means created anew"
    );
    assert_eq!(
        journal_of(&store, "legacy"),
        ["intent:destroy", "destroyed"]
    );
    assert!(!store.state().steps.contains_key(&id("legacy")));
    assert!(store.state().applied(&id("pool")).is_some());
}

#[tokio::test]
async fn an_empty_plan_succeeds_and_releases_the_lock() {
    let provider = TestProvider::new();
    let store = MemoryStore::new();
    let (report, events) = run_ok(executor(&provider), PlanBuilder::new().build(), &store).await;
    assert_eq!(report.outcome, Outcome::Succeeded);
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(store.current_lock().is_none());
}

#[tokio::test(start_paused = true)]
async fn events_carry_each_step_s_duration() {
    let provider = TestProvider::new();
    provider.delay("slow", 3);
    provider.delay("broken", 2);
    provider.edit("broken", |s| s.fail_permanent = true);
    let mut plan = PlanBuilder::new();
    plan.create("slow", &[])
        .create("quick", &[])
        .create("broken", &[]);
    let exec = executor(&provider).failure_policy(crate::exec::FailurePolicy::KeepGoing);
    let (_, events) = run_ok(exec, plan.build(), &MemoryStore::new()).await;
    let took = |step: &str| {
        events.iter().find_map(|e| match e {
            Event::StepSucceeded { id, duration, .. } | Event::StepFailed { id, duration, .. }
                if id.as_str() == step =>
            {
                Some(*duration)
            }
            _ => None,
        })
    };
    assert_eq!(took("slow"), Some(Duration::from_secs(3)));
    assert_eq!(took("quick"), Some(Duration::ZERO));
    assert_eq!(took("broken"), Some(Duration::from_secs(2)));
}
