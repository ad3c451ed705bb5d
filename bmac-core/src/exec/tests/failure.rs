//! Fail-fast and keep-going.

use super::support::*;
use crate::event::{CancelReason, Event, Outcome, SkipReason};
use crate::exec::FailurePolicy;
use crate::state::MemoryStore;

/// `broken` fails at once; `slow` (5 s) is independent; `after_slow` needs `slow`;
/// `after_broken` needs `broken`, `last` needs `after_broken`.
fn graph(provider: &TestProvider) -> PlanBuilder {
    provider.edit("broken", |s| s.fail_permanent = true);
    provider.delay("slow", 5);
    let mut plan = PlanBuilder::new();
    plan.create("broken", &[])
        .create("slow", &[])
        .create("after_slow", &["slow"])
        .create("after_broken", &["broken"])
        .create("last", &["after_broken"]);
    plan
}

#[tokio::test(start_paused = true)]
async fn fail_fast_lets_running_steps_finish_and_skips_the_rest() {
    let provider = TestProvider::new();
    let plan = graph(&provider).build();
    let store = MemoryStore::new();
    let (report, events) = run_ok(executor(&provider), plan, &store).await;
    assert_eq!(report.outcome, Outcome::Failed);
    assert_eq!(
        provider.applied(),
        ["broken", "slow"],
        "nothing new starts after the failure"
    );
    assert!(
        provider.last(Op::Apply, "slow").ended.is_some(),
        "the running step finished"
    );
    assert_eq!(journal_of(&store, "slow"), ["intent:apply", "applied"]);
    assert_eq!(
        journal_of(&store, "broken"),
        ["intent:apply", "failed:permission denied"]
    );
    for skipped in ["after_slow", "after_broken", "last"] {
        assert_eq!(
            report.skip_reason(skipped),
            Some(&SkipReason::FailFast),
            "{skipped}"
        );
    }
    assert_eq!(report.counts.succeeded, 1);
    assert_eq!(report.counts.failed, 1);
    assert_eq!(report.counts.skipped, 3);
    assert_eq!(
        report.failure("broken").unwrap().error.to_string(),
        "permission denied"
    );
    assert!(events.contains(&Event::Cancelling {
        reason: CancelReason::StepFailed
    }));
}

#[tokio::test(start_paused = true)]
async fn keep_going_runs_independent_branches_and_skips_dependents_of_the_failure() {
    let provider = TestProvider::new();
    let plan = graph(&provider).build();
    let store = MemoryStore::new();
    let exec = executor(&provider).failure_policy(FailurePolicy::KeepGoing);
    let (report, events) = run_ok(exec, plan, &store).await;
    assert_eq!(report.outcome, Outcome::Failed);
    assert_eq!(provider.applied(), ["broken", "slow", "after_slow"]);
    let because_broken = SkipReason::DependencyFailed {
        dependency: id("broken"),
    };
    assert_eq!(report.skip_reason("after_broken"), Some(&because_broken));
    assert_eq!(report.skip_reason("last"), Some(&because_broken));
    assert_eq!(report.skip_reason("after_slow"), None);
    assert_eq!(report.counts.succeeded, 2);
    assert_eq!(report.counts.failed, 1);
    assert_eq!(report.counts.skipped, 2);
    assert_eq!(events_of(&events, "last"), ["skipped"]);
    assert!(!events.iter().any(|e| matches!(e, Event::Cancelling { .. })));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_provider_fails_its_step_and_is_journaled() {
    let provider = TestProvider::new();
    provider.edit("buggy", |s| s.panic = true);
    let mut plan = PlanBuilder::new();
    plan.create("buggy", &[])
        .create("fine", &[])
        .create("after_buggy", &["buggy"]);
    let store = MemoryStore::new();
    let exec = executor(&provider).failure_policy(FailurePolicy::KeepGoing);
    let (report, _) = run_ok(exec, plan.build(), &store).await;
    assert_panic_failed_only(&report, &store, "buggy", "after_buggy");
    assert_eq!(report.counts.succeeded, 1);
}
