//! Long operations on the paused clock: pending resources are waited for, progress and
//! checkpoints reach the run, per-kind timeouts, timed-out creates are looked at before they
//! are retried, and concurrency groups.

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::support::*;
use crate::event::{Event, Outcome};
use crate::plan::Action;
use crate::provider::Observed;
use crate::state::{MemoryStore, Operation, Record, RecordKind, StateStore};
use crate::step::Outputs;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn pending(status: &str) -> Observed {
    Observed::Pending {
        status: status.to_owned(),
    }
}

/// What exists for a test step as its config says.
fn present(name: &str) -> Observed {
    Observed::Present {
        config: config(name),
        outputs: Outputs::new().with("id", format!("{name}-live")),
    }
}

fn progress(events: &[Event], step: &str) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::StepProgress { id, message, at } if id.as_str() == step => {
                assert!(at.ends_with('Z') && at.len() == 20, "not RFC 3339: {at}");
                Some(message.clone())
            }
            _ => None,
        })
        .collect()
}

/// A store whose journal ends with `records` for `cluster` after its intent: a crash mid-call.
async fn crashed(records: Vec<RecordKind>) -> MemoryStore {
    let store = MemoryStore::new();
    let mut all = vec![Record {
        id: id("cluster"),
        kind: RecordKind::Intent {
            op: Operation::Apply,
            fingerprint: None,
        },
    }];
    all.extend(records.into_iter().map(|kind| Record {
        id: id("cluster"),
        kind,
    }));
    store.append(&all).await.unwrap();
    store
}

fn in_doubt_create(store: &MemoryStore) -> crate::plan::Plan {
    let state = store.state();
    let mut plan = PlanBuilder::against(&state);
    plan.create("cluster", &[]);
    plan.node("cluster").in_doubt = true;
    plan.build()
}

#[tokio::test(start_paused = true)]
async fn an_in_doubt_step_observed_pending_is_waited_for_then_adopted_never_created_again() {
    let provider = TestProvider::new();
    provider.edit("cluster", |s| {
        s.observe_seq = vec![
            pending("CREATING"),
            pending("CREATING"),
            pending("CREATING"),
        ];
        s.observe = Some(present("cluster"));
        s.poll = Some(secs(10));
    });
    let store = crashed(vec![]).await;
    let start = Instant::now();
    let (report, events) = run_ok(executor(&provider), in_doubt_create(&store), &store).await;
    assert_eq!(report.outcome, Outcome::Succeeded);
    assert_eq!(report.counts.adopted, 1);
    assert_eq!(
        provider.count(Op::Apply, "cluster"),
        0,
        "never created twice"
    );
    assert_eq!(provider.count(Op::Observe, "cluster"), 4);
    // Waits of 10 s, 15 s and 22.5 s between the four looks.
    assert_eq!(secs_since(start), 47.5);
    assert_eq!(
        progress(&events, "cluster"),
        ["CREATING, 0ms", "CREATING, 10s", "CREATING, 25s"]
    );
    assert_eq!(
        journal_of(&store, "cluster"),
        ["intent:apply", "applied"],
        "adopted with what exists"
    );
    let applied = store.state();
    let outputs = &applied.applied(&id("cluster")).unwrap().outputs;
    assert_eq!(outputs.get("id").unwrap().to_string(), "\"cluster-live\"");
}

#[tokio::test(start_paused = true)]
async fn a_pending_resource_that_disappears_is_created_once() {
    let provider = TestProvider::new();
    provider.edit("cluster", |s| {
        s.observe_seq = vec![pending("DELETING")];
        s.poll = Some(secs(1));
    });
    let store = crashed(vec![]).await;
    let (report, _) = run_ok(executor(&provider), in_doubt_create(&store), &store).await;
    assert_eq!(report.outcome, Outcome::Succeeded);
    assert_eq!(provider.count(Op::Observe, "cluster"), 2);
    assert_eq!(provider.count(Op::Apply, "cluster"), 1);
    assert!(provider.last(Op::Apply, "cluster").prior.is_none());
}

#[tokio::test(start_paused = true)]
async fn waiting_gives_up_after_the_kinds_maximum_duration() {
    let provider = TestProvider::new();
    provider.edit("cluster", |s| {
        s.observe = Some(pending("CREATING"));
        s.poll = Some(secs(60));
        s.max = Some(secs(150));
    });
    let store = crashed(vec![]).await;
    let exec = executor(&provider).retry(crate::exec::RetryPolicy::never());
    let start = Instant::now();
    let (report, _) = run_ok(exec, in_doubt_create(&store), &store).await;
    assert_eq!(report.outcome, Outcome::Failed);
    let error = &report.failure("cluster").unwrap().error;
    assert_eq!(error.to_string(), "still CREATING after 2m30s");
    assert_eq!(error.code.as_deref(), Some("bmac::timeout"));
    assert_eq!(secs_since(start), 150.0);
    assert_eq!(provider.count(Op::Apply, "cluster"), 0);
}

#[tokio::test(start_paused = true)]
async fn cancelling_stops_a_wait_at_once() {
    let provider = TestProvider::new();
    provider.edit("cluster", |s| {
        s.observe = Some(pending("CREATING"));
        s.poll = Some(secs(600));
    });
    let store = crashed(vec![]).await;
    let exec = executor(&provider);
    let cancel = exec.cancellation().clone();
    tokio::spawn(async move {
        tokio::time::sleep(secs(30)).await;
        cancel.cancel();
    });
    let start = Instant::now();
    let (report, _) = run_ok(exec, in_doubt_create(&store), &store).await;
    assert_eq!(report.outcome, Outcome::Cancelled);
    assert_eq!(secs_since(start), 30.0);
    assert_eq!(provider.count(Op::Apply, "cluster"), 0);
    assert!(
        store.state().steps[&id("cluster")].in_doubt,
        "still in doubt"
    );
}

#[tokio::test(start_paused = true)]
async fn a_kinds_maximum_duration_is_its_timeout_and_a_timed_out_create_is_looked_at_first() {
    let provider = TestProvider::new();
    provider.edit("cluster", |s| {
        s.delay = secs(3600);
        s.max = Some(secs(900));
        // After the timeout the create turns out to have happened.
        s.observe = Some(present("cluster"));
    });
    provider.edit("label", |s| s.delay = secs(1));
    let mut plan = PlanBuilder::new();
    plan.create("cluster", &[]).create("label", &[]);
    let store = MemoryStore::new();
    let start = Instant::now();
    let (report, events) = run_ok(executor(&provider), plan.build(), &store).await;
    assert_eq!(report.outcome, Outcome::Succeeded);
    assert_eq!(
        provider.count(Op::Apply, "cluster"),
        1,
        "not created a second time"
    );
    let calls: Vec<Op> = provider
        .calls()
        .into_iter()
        .filter(|c| c.step == "cluster")
        .map(|c| c.op)
        .collect();
    assert_eq!(calls, [Op::Apply, Op::Observe]);
    // 15 min, then the 1 s backoff before the look.
    assert_eq!(secs_since(start), 901.0);
    assert!(events.iter().any(|e| matches!(e,
        Event::StepRetrying { id, error, .. } if id.as_str() == "cluster" && error == "timed out after 15m")));
    let state = store.state();
    let outputs = &state.applied(&id("cluster")).unwrap().outputs;
    assert_eq!(outputs.get("id").unwrap().to_string(), "\"cluster-live\"");
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_create_found_absent_is_applied_again() {
    let provider = TestProvider::new();
    provider.edit("cluster", |s| {
        s.delay = secs(100);
        s.max = Some(secs(10));
    });
    let store = MemoryStore::new();
    let exec = executor(&provider).retry(crate::exec::RetryPolicy {
        max_attempts: 2,
        jitter: false,
        ..Default::default()
    });
    let mut plan = PlanBuilder::new();
    plan.create("cluster", &[]);
    let (report, _) = run_ok(exec, plan.build(), &store).await;
    assert_eq!(report.outcome, Outcome::Failed);
    let ops: Vec<Op> = provider.calls().into_iter().map(|c| c.op).collect();
    assert_eq!(ops, [Op::Apply, Op::Observe, Op::Apply]);
    assert!(provider.last(Op::Apply, "cluster").prior.is_none());
}

#[tokio::test(start_paused = true)]
async fn progress_reaches_the_events_with_a_timestamp() {
    let provider = TestProvider::new();
    provider.edit("cluster", |s| {
        s.delay = secs(5);
        s.progress = vec!["cluster CREATING, 0s".into(), "cluster CREATING, 4s".into()];
    });
    let mut plan = PlanBuilder::new();
    plan.create("cluster", &[]);
    let store = MemoryStore::new();
    let (_, events) = run_ok(executor(&provider), plan.build(), &store).await;
    assert_eq!(
        progress(&events, "cluster"),
        ["cluster CREATING, 0s", "cluster CREATING, 4s"]
    );
    let order = events_of(&events, "cluster");
    assert_eq!(order.first().map(String::as_str), Some("started"));
    assert_eq!(
        order.last().map(String::as_str),
        Some("succeeded(changed=true)")
    );
    let json = serde_json::to_value(
        events
            .iter()
            .find(|e| matches!(e, Event::StepProgress { .. }))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(json["event"], "step_progress");
    assert_eq!(json["message"], "cluster CREATING, 0s");
}

#[tokio::test(start_paused = true)]
async fn a_checkpoint_is_journaled_and_handed_to_the_next_attempt() {
    let provider = TestProvider::new();
    provider.edit("cluster", |s| {
        s.checkpoint = Some(json!({"operation": "op-1"}));
        s.fail_retryable = 1;
    });
    let mut plan = PlanBuilder::new();
    plan.create("cluster", &[]);
    let store = MemoryStore::new();
    let (report, _) = run_ok(executor(&provider), plan.build(), &store).await;
    assert_eq!(report.outcome, Outcome::Succeeded);
    let applies = provider.calls_of(Op::Apply);
    assert_eq!(applies[0].checkpoint, None);
    assert_eq!(applies[1].checkpoint, Some(json!({"operation": "op-1"})));
    assert_eq!(
        journal_of(&store, "cluster"),
        [
            "intent:apply",
            r#"checkpoint:{"operation":"op-1"}"#,
            "applied"
        ],
        "checkpointed once, before the result"
    );
    assert_eq!(
        store.state().steps[&id("cluster")].checkpoint,
        None,
        "cleared once applied"
    );
}

#[tokio::test(start_paused = true)]
async fn a_checkpoint_from_an_interrupted_run_is_handed_to_observe_and_apply() {
    let provider = TestProvider::new();
    provider.edit("cluster", |s| s.observe_seq = vec![pending("PROVISIONING")]);
    let store = crashed(vec![RecordKind::Checkpoint {
        data: json!({"operation": "op-7"}).into(),
    }])
    .await;
    let state = store.state();
    assert!(state.steps[&id("cluster")].in_doubt);
    let (report, _) = run_ok(executor(&provider), in_doubt_create(&store), &store).await;
    assert_eq!(report.outcome, Outcome::Succeeded);
    let seen: Vec<_> = provider
        .calls()
        .into_iter()
        .map(|c| (c.op, c.checkpoint))
        .collect();
    let op7 = Some(json!({"operation": "op-7"}));
    assert_eq!(
        seen,
        [
            (Op::Observe, op7.clone()),
            (Op::Observe, op7.clone()),
            (Op::Apply, op7)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_concurrency_group_runs_at_most_its_limit_on_top_of_the_cap() {
    let provider = TestProvider::new();
    for name in ["pool-a", "pool-b", "pool-c"] {
        provider.edit(name, |s| {
            s.delay = secs(10);
            s.group = Some(("eks:prod/updates", 1));
        });
    }
    provider.edit("other", |s| s.delay = secs(10));
    let mut plan = PlanBuilder::new();
    plan.add("pool-a", update(), &[])
        .add("pool-b", update(), &[])
        .add("pool-c", update(), &[])
        .create("other", &[]);
    let store = MemoryStore::new();
    let start = Instant::now();
    let (report, _) = run_ok(executor(&provider), plan.build(), &store).await;
    assert_eq!(report.outcome, Outcome::Succeeded);
    assert_eq!(
        secs_since(start),
        30.0,
        "the group's three ran one after another"
    );
    let started = |name| provider.last(Op::Apply, name).started.duration_since(start);
    let mut pools = [started("pool-a"), started("pool-b"), started("pool-c")];
    pools.sort();
    assert_eq!(pools, [secs(0), secs(10), secs(20)]);
    assert_eq!(
        started("other"),
        secs(0),
        "the rest of the run is not held up"
    );
    assert_eq!(provider.max_running(), 2);
}

#[tokio::test(start_paused = true)]
async fn parked_steps_are_skipped_when_the_run_fails_fast() {
    let provider = TestProvider::new();
    provider.edit("pool-a", |s| {
        s.delay = secs(10);
        s.fail_permanent = true;
        s.group = Some(("g", 1));
    });
    provider.edit("pool-b", |s| s.group = Some(("g", 1)));
    let mut plan = PlanBuilder::new();
    plan.add("pool-a", Action::Create, &[])
        .add("pool-b", Action::Create, &[]);
    let store = MemoryStore::new();
    let (report, _) = run_ok(executor(&provider), plan.build(), &store).await;
    assert_eq!(report.outcome, Outcome::Failed);
    assert_eq!(provider.count(Op::Apply, "pool-b"), 0);
    assert!(report.skip_reason("pool-b").is_some());
}
