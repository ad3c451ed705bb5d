//! Resuming: unchanged fingerprints make no call; in-doubt steps are observed first.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::support::*;
use crate::event::Outcome;
use crate::provider::Observed;
use crate::state::{MemoryStore, Operation, Record, RecordKind, StateStore};
use crate::step::Outputs;

/// `cluster` → `pool` (input `endpoint` from `cluster.id`).
fn two_steps(plan: &mut PlanBuilder, action: fn() -> crate::plan::Action) {
    plan.add("cluster", action(), &[])
        .add("pool", action(), &[])
        .input("pool", "endpoint", "cluster", "id");
}

fn create() -> crate::plan::Action {
    crate::plan::Action::Create
}

#[tokio::test]
async fn a_rerun_makes_no_call_for_unchanged_fingerprints() {
    let provider = TestProvider::new();
    let store = MemoryStore::new();
    let mut first = PlanBuilder::new();
    two_steps(&mut first, create);
    run_ok(executor(&provider), first.build(), &store).await;
    assert_eq!(provider.applied(), ["cluster", "pool"]);
    let journaled = store.records().len();

    let state = store.state();
    let mut again = PlanBuilder::against(&state);
    two_steps(&mut again, update);
    again.recorded("cluster", &state).recorded("pool", &state);
    let (report, events) = run_ok(executor(&provider), again.build(), &store).await;
    assert_eq!(provider.applied().len(), 2, "no new apply call");
    assert_eq!(report.counts.unchanged, 2);
    assert_eq!(report.outcome, Outcome::Succeeded);
    assert_eq!(store.records().len(), journaled, "nothing to journal");
    assert_eq!(
        events_of(&events, "pool"),
        ["started", "succeeded(changed=false)"]
    );
}

#[tokio::test]
async fn a_changed_upstream_output_reapplies_its_dependent() {
    let provider = TestProvider::new();
    let store = MemoryStore::new();
    let mut first = PlanBuilder::new();
    two_steps(&mut first, create);
    run_ok(executor(&provider), first.build(), &store).await;

    let state = store.state();
    let mut again = PlanBuilder::against(&state);
    two_steps(&mut again, update);
    again.recorded("cluster", &state).recorded("pool", &state);
    Arc::make_mut(&mut again.node("cluster").step).config =
        json!({"name": "cluster", "version": "1.30"}).into();
    provider.edit("cluster", |s| {
        s.outputs = Some(Outputs::new().with("id", "cluster-v2"))
    });
    let (report, _) = run_ok(executor(&provider), again.build(), &store).await;
    assert_eq!(report.counts.succeeded, 2);
    let pool = provider.last(Op::Apply, "pool");
    assert_eq!(pool.inputs.str("endpoint"), Some("cluster-v2"));
    assert!(
        pool.prior.is_some(),
        "an update passes what was applied before"
    );
}

/// A store whose journal ends with an intent for `cluster` and no result: a crash mid-call.
async fn crashed_store() -> MemoryStore {
    let store = MemoryStore::new();
    store
        .append(&[Record {
            id: id("cluster"),
            kind: RecordKind::Intent {
                op: Operation::Apply,
                fingerprint: None,
            },
        }])
        .await
        .unwrap();
    store
}

fn in_doubt_plan(store: &MemoryStore) -> crate::plan::Plan {
    let state = store.state();
    assert!(state.steps[&id("cluster")].in_doubt);
    let mut plan = PlanBuilder::against(&state);
    two_steps(&mut plan, create);
    plan.node("cluster").in_doubt = true;
    plan.build()
}

#[tokio::test]
async fn an_in_doubt_step_found_as_desired_is_adopted_without_apply() {
    let provider = TestProvider::new();
    provider.edit("cluster", |s| {
        s.observe = Some(Observed::Present {
            // Fields the spec does not set (here `status`) do not matter.
            config: json!({"name": "cluster", "status": "RUNNING"}),
            outputs: Outputs::new().with("id", "found-cluster"),
        })
    });
    let store = crashed_store().await;
    let (report, events) = run_ok(executor(&provider), in_doubt_plan(&store), &store).await;
    assert_eq!(provider.count(Op::Observe, "cluster"), 1);
    assert_eq!(
        provider.count(Op::Apply, "cluster"),
        0,
        "never created twice"
    );
    assert_eq!(report.counts.adopted, 1);
    assert_eq!(journal_of(&store, "cluster"), ["intent:apply", "applied"]);
    assert!(!store.state().steps[&id("cluster")].in_doubt);
    assert_eq!(
        provider.last(Op::Apply, "pool").inputs.str("endpoint"),
        Some("found-cluster")
    );
    assert_eq!(
        events_of(&events, "cluster"),
        ["started", "succeeded(changed=false)"]
    );
}

#[tokio::test]
async fn an_in_doubt_step_is_compared_only_on_what_its_provider_can_see() {
    // The provider cannot see `name` (it leaves it out): by the rule drift uses as well, what
    // it does see matches, so the step is adopted rather than applied again.
    let provider = TestProvider::new();
    provider.edit("cluster", |s| {
        s.observe = Some(Observed::Present {
            config: json!({"status": "RUNNING"}),
            outputs: Outputs::new().with("id", "found-cluster"),
        })
    });
    let store = crashed_store().await;
    let (report, _) = run_ok(executor(&provider), in_doubt_plan(&store), &store).await;
    assert_eq!(provider.count(Op::Apply, "cluster"), 0);
    assert_eq!(report.counts.adopted, 1);
}

#[tokio::test]
async fn an_in_doubt_step_that_does_not_exist_is_applied() {
    let provider = TestProvider::new(); // observe reports Absent
    let store = crashed_store().await;
    let (report, _) = run_ok(executor(&provider), in_doubt_plan(&store), &store).await;
    assert_eq!(provider.count(Op::Observe, "cluster"), 1);
    assert_eq!(provider.last(Op::Apply, "cluster").prior, None);
    assert_eq!(report.counts.succeeded, 2);
    assert_eq!(
        journal_of(&store, "cluster"),
        ["intent:apply", "intent:apply", "applied"]
    );
}

#[tokio::test]
async fn an_in_doubt_step_that_differs_is_applied_over_what_exists() {
    let provider = TestProvider::new();
    let observed = json!({"name": "half-made"});
    provider.edit("cluster", |s| {
        s.observe = Some(Observed::Present {
            config: observed.clone(),
            outputs: Outputs::new(),
        })
    });
    let store = crashed_store().await;
    run_ok(executor(&provider), in_doubt_plan(&store), &store).await;
    let apply = provider.last(Op::Apply, "cluster");
    assert_eq!(apply.prior.map(|p| p.config().clone()), Some(observed));
}

#[tokio::test(start_paused = true)]
async fn a_step_abandoned_by_cancellation_is_observed_not_recreated_next_run() {
    let provider = TestProvider::new();
    provider.delay("cluster", 100);
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        cancel.cancel();
    });
    let store = MemoryStore::new();
    let mut first = PlanBuilder::new();
    two_steps(&mut first, create);
    let exec = executor(&provider)
        .cancel_token(token)
        .grace_period(Duration::from_secs(1));
    let (report, _) = run_ok(exec, first.build(), &store).await;
    assert_eq!(report.outcome, Outcome::Cancelled);
    assert_eq!(provider.count(Op::Apply, "cluster"), 1);

    // The cloud finished creating it after all.
    provider.edit("cluster", |s| {
        s.delay = Duration::ZERO;
        s.observe = Some(Observed::Present {
            config: config("cluster"),
            outputs: Outputs::new().with("id", "late-cluster"),
        });
    });
    let (report, _) = run_ok(executor(&provider), in_doubt_plan(&store), &store).await;
    assert_eq!(report.outcome, Outcome::Succeeded);
    assert_eq!(
        provider.count(Op::Apply, "cluster"),
        1,
        "not created a second time"
    );
    assert_eq!(report.counts.adopted, 1);
    assert_eq!(
        provider.last(Op::Apply, "pool").inputs.str("endpoint"),
        Some("late-cluster")
    );
}
