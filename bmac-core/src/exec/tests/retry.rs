//! Retries, backoff and timeouts on the paused clock.

use std::time::Duration;

use tokio::time::Instant;

use super::support::*;
use crate::event::{Event, Outcome};
use crate::exec::RetryPolicy;
use crate::state::MemoryStore;

fn retries(events: &[Event]) -> Vec<(u32, Duration)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::StepRetrying { attempt, delay, .. } => Some((*attempt, *delay)),
            _ => None,
        })
        .collect()
}

fn one_step(name: &str) -> PlanBuilder {
    let mut plan = PlanBuilder::new();
    plan.create(name, &[]);
    plan
}

#[tokio::test(start_paused = true)]
async fn retryable_errors_back_off_exponentially() {
    let provider = TestProvider::new();
    provider.edit("flaky", |s| s.fail_retryable = 3);
    let store = MemoryStore::new();
    let start = Instant::now();
    let (report, events) = run_ok(executor(&provider), one_step("flaky").build(), &store).await;
    assert_eq!(report.outcome, Outcome::Succeeded);
    let secs = Duration::from_secs;
    assert_eq!(retries(&events), [(1, secs(1)), (2, secs(2)), (3, secs(4))]);
    assert_eq!(secs_since(start), 7.0);
    let attempts: Vec<u32> = provider
        .calls_of(Op::Apply)
        .iter()
        .map(|c| c.attempt)
        .collect();
    assert_eq!(attempts, [1, 2, 3, 4]);
    assert_eq!(
        journal_of(&store, "flaky"),
        ["intent:apply", "applied"],
        "one intent covers every attempt"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_when_longer_than_the_backoff() {
    let provider = TestProvider::new();
    provider.edit("throttled", |s| {
        s.fail_retryable = 2;
        s.retry_after = Some(Duration::from_secs(10));
    });
    let start = Instant::now();
    let (_, events) = run_ok(
        executor(&provider),
        one_step("throttled").build(),
        &MemoryStore::new(),
    )
    .await;
    let ten = Duration::from_secs(10);
    assert_eq!(retries(&events), [(1, ten), (2, ten)]);
    assert_eq!(secs_since(start), 20.0);
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_are_not_retried() {
    let provider = TestProvider::new();
    provider.edit("denied", |s| s.fail_permanent = true);
    let (report, events) = run_ok(
        executor(&provider),
        one_step("denied").build(),
        &MemoryStore::new(),
    )
    .await;
    assert_eq!(provider.count(Op::Apply, "denied"), 1);
    assert!(retries(&events).is_empty());
    assert_eq!(
        report.failure("denied").unwrap().error.to_string(),
        "permission denied"
    );
}

#[tokio::test(start_paused = true)]
async fn a_timeout_is_retryable_and_attempts_are_bounded() {
    let provider = TestProvider::new();
    provider.delay("hangs", 100);
    let exec = executor(&provider)
        .step_timeout(Duration::from_secs(3))
        .retry(RetryPolicy {
            max_attempts: 3,
            jitter: false,
            ..RetryPolicy::default()
        });
    let store = MemoryStore::new();
    let start = Instant::now();
    let (report, events) = run_ok(exec, one_step("hangs").build(), &store).await;
    assert_eq!(provider.count(Op::Apply, "hangs"), 3);
    assert_eq!(retries(&events).len(), 2);
    // 3 s + 1 s + 3 s + 2 s + 3 s.
    assert_eq!(secs_since(start), 12.0);
    let error = &report.failure("hangs").unwrap().error;
    assert_eq!(error.to_string(), "timed out after 3s");
    assert_eq!(error.code.as_deref(), Some("bmac::timeout"));
    assert_eq!(error.class, crate::provider::ErrorClass::Retryable);
    assert_eq!(
        journal_of(&store, "hangs"),
        ["intent:apply", "failed:timed out after 3s"]
    );
}

#[tokio::test(start_paused = true)]
async fn jittered_delays_are_bounded_and_reproducible_from_the_seed() {
    let delays = |seed: u64| async move {
        let provider = TestProvider::new();
        provider.edit("flaky", |s| s.fail_retryable = 4);
        let exec = executor(&provider).seed(seed).retry(RetryPolicy::default());
        let (_, events) = run_ok(exec, one_step("flaky").build(), &MemoryStore::new()).await;
        retries(&events)
    };
    let first = delays(42).await;
    assert_eq!(first.len(), 4);
    assert_eq!(first, delays(42).await);
    assert_ne!(first, delays(43).await);
    for (attempt, delay) in first {
        assert!(
            delay <= Duration::from_secs(1 << (attempt - 1)),
            "{attempt}: {delay:?}"
        );
    }
}
