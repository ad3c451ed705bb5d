//! Cancellation: no new starts, a grace period, abandonment journaled.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::support::*;
use crate::event::{CancelReason, Event, Outcome, SkipReason};
use crate::exec::RetryPolicy;
use crate::state::MemoryStore;

fn cancel_after(token: &CancellationToken, after: Duration) {
    let token = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        token.cancel();
    });
}

#[tokio::test(start_paused = true)]
async fn running_steps_get_a_grace_period_then_are_abandoned_and_journaled() {
    let provider = TestProvider::new();
    provider.delay("finishes", 3); // ignores cancellation but ends within the grace period
    provider.delay("stubborn", 100); // ignores cancellation, outlives the grace period
    provider.delay("polite", 100);
    provider.edit("polite", |s| s.honour_cancel = true);
    let mut plan = PlanBuilder::new();
    plan.create("finishes", &[])
        .create("stubborn", &[])
        .create("polite", &[])
        .create("after", &["finishes"]);
    let token = CancellationToken::new();
    cancel_after(&token, Duration::from_secs(1));
    let exec = executor(&provider)
        .cancel_token(token)
        .grace_period(Duration::from_secs(10));
    let store = MemoryStore::new();
    let start = Instant::now();
    let (report, events) = run_ok(exec, plan.build(), &store).await;

    assert_eq!(report.outcome, Outcome::Cancelled);
    assert_eq!(secs_since(start), 11.0, "cancelled at 1 s + 10 s grace");
    assert_eq!(journal_of(&store, "finishes"), ["intent:apply", "applied"]);
    assert_eq!(
        journal_of(&store, "polite"),
        ["intent:apply", "failed:interrupted by cancellation"],
        "the provider saw the step context's cancellation"
    );
    assert_eq!(
        journal_of(&store, "stubborn"),
        ["intent:apply", "failed:abandoned: run cancelled"]
    );
    assert!(store.state().steps[&id("stubborn")].in_doubt);
    assert_eq!(report.skip_reason("after"), Some(&SkipReason::Cancelled));
    assert_eq!(provider.count(Op::Apply, "after"), 0);
    assert_eq!(report.counts.succeeded, 1);
    assert_eq!(report.counts.failed, 2);
    assert_eq!(report.counts.skipped, 1);

    let cancelling: Vec<CancelReason> = events
        .iter()
        .filter_map(|e| match e {
            Event::Cancelling { reason } => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(
        cancelling,
        [CancelReason::Requested, CancelReason::GraceExpired]
    );
    assert!(matches!(
        events.last(),
        Some(Event::RunFinished {
            outcome: Outcome::Cancelled,
            ..
        })
    ));
    assert!(store.current_lock().is_none(), "the lock is released");
}

#[tokio::test(start_paused = true)]
async fn a_run_cancelled_before_it_starts_calls_nothing() {
    let provider = TestProvider::new();
    let mut plan = PlanBuilder::new();
    plan.create("a", &[]).create("b", &["a"]);
    let token = CancellationToken::new();
    token.cancel();
    let store = MemoryStore::new();
    let (report, _) = run_ok(
        executor(&provider).cancel_token(token),
        plan.build(),
        &store,
    )
    .await;
    assert_eq!(report.outcome, Outcome::Cancelled);
    assert!(provider.calls().is_empty());
    assert_eq!(report.counts.skipped, 2);
    assert!(store.records().is_empty());
}

#[tokio::test(start_paused = true)]
async fn cancellation_cuts_a_retry_wait_short() {
    let provider = TestProvider::new();
    provider.edit("flaky", |s| s.fail_retryable = u32::MAX);
    let mut plan = PlanBuilder::new();
    plan.create("flaky", &[]);
    let token = CancellationToken::new();
    cancel_after(&token, Duration::from_millis(1500));
    let exec = executor(&provider).cancel_token(token).retry(RetryPolicy {
        max_attempts: 10,
        jitter: false,
        ..RetryPolicy::default()
    });
    let store = MemoryStore::new();
    let start = Instant::now();
    let (report, _) = run_ok(exec, plan.build(), &store).await;
    // Attempt 1 at 0 s, attempt 2 at 1 s, then the 2 s wait is cut at 1.5 s.
    assert_eq!(provider.count(Op::Apply, "flaky"), 2);
    assert_eq!(secs_since(start), 1.5);
    assert_eq!(report.outcome, Outcome::Cancelled);
    assert_eq!(
        journal_of(&store, "flaky"),
        ["intent:apply", "failed:throttled"]
    );
}

/// A store whose appends take a second (a slow remote backend).
struct SlowDisk(MemoryStore);

#[async_trait::async_trait]
impl crate::state::StateStore for SlowDisk {
    async fn load(&self) -> Result<crate::state::Loaded, crate::state::StateError> {
        self.0.load().await
    }
    async fn append(
        &self,
        records: &[crate::state::Record],
    ) -> Result<u64, crate::state::StateError> {
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.0.append(records).await
    }
    async fn lock(
        &self,
        request: crate::state::LockRequest,
    ) -> Result<crate::state::LockInfo, crate::state::StateError> {
        self.0.lock(request).await
    }
    async fn unlock(&self, id: &str) -> Result<(), crate::state::StateError> {
        self.0.unlock(id).await
    }
    async fn lock_info(&self) -> Result<Option<crate::state::LockInfo>, crate::state::StateError> {
        self.0.lock_info().await
    }
}

#[tokio::test(start_paused = true)]
async fn steps_whose_intent_is_still_being_written_do_not_start_after_cancellation() {
    let provider = TestProvider::new();
    let mut plan = PlanBuilder::new();
    plan.create("a", &[]).create("b", &[]);
    let token = CancellationToken::new();
    cancel_after(&token, Duration::from_millis(500));
    let store = SlowDisk(MemoryStore::new());
    let (result, events) = run(
        executor(&provider).cancel_token(token),
        plan.build(),
        &store,
    )
    .await;
    let report = result.unwrap();
    assert_eq!(report.outcome, Outcome::Cancelled);
    assert!(provider.calls().is_empty(), "{:?}", provider.calls());
    assert_eq!(report.skip_reason("a"), Some(&SkipReason::Cancelled));
    assert_eq!(report.skip_reason("b"), Some(&SkipReason::Cancelled));
    assert!(!events
        .iter()
        .any(|e| matches!(e, Event::StepStarted { .. })));
    // The intents were written: next time both are in doubt and observed first.
    assert_eq!(journal_of(&store.0, "a"), ["intent:apply"]);
    assert!(store.0.state().steps[&id("a")].in_doubt);
    assert!(store.0.current_lock().is_none());
}
