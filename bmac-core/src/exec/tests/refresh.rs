//! Refresh and drift through the executor, on the paused clock: the cap, concurrency groups,
//! retries, timeouts, dependency order and cancellation.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::support::*;
use crate::drift::{DriftError, DriftReport, StepDrift};
use crate::event::{CancelReason, Event};
use crate::exec::{Executor, RetryPolicy};
use crate::provider::{Observed, Providers};
use crate::state::{Record, RecordKind, State};
use crate::step::{Inputs, Outputs, Ref, Step};

/// State recording every step of `steps` as applied, with output `id = "<step>-recorded"`.
fn applied(steps: &[Arc<Step>]) -> State {
    let mut state = State::default();
    for s in steps {
        state.apply(&Record {
            id: s.id.clone(),
            kind: RecordKind::Applied {
                step: Arc::clone(s),
                fingerprint: s.fingerprint(&Inputs::default()),
                outputs: Outputs::new().with("id", format!("{}-recorded", s.id)),
            },
        });
    }
    state
}

/// What exists for a test step as applied, with output `id = "<step>-live"`.
fn present(name: &str) -> Observed {
    Observed::Present {
        config: config(name),
        outputs: Outputs::new().with("id", format!("{name}-live")),
    }
}

/// A provider that finds each of `names` as applied.
fn live(names: &[String]) -> Arc<TestProvider> {
    let provider = TestProvider::new();
    for name in names {
        provider.edit(name, |s| s.observe = Some(present(name)));
    }
    provider
}

fn drift_of<'r>(report: &'r DriftReport, step: &str) -> &'r StepDrift {
    &report
        .steps
        .iter()
        .find(|s| s.id.as_str() == step)
        .unwrap_or_else(|| panic!("{step} not reported"))
        .drift
}

/// The most calls of `steps` that overlapped in time.
fn max_overlap(provider: &TestProvider, steps: &[String]) -> usize {
    let mut edges: Vec<(Instant, i32)> = Vec::new();
    for call in provider.calls().iter().filter(|c| steps.contains(&c.step)) {
        edges.push((call.started, 1));
        edges.push((call.ended.expect("every call returned"), -1));
    }
    // Ends before starts at the same instant: back-to-back calls do not overlap.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    most as usize
}

fn is_send<T: Send>(_: &T) {}

#[tokio::test(start_paused = true)]
async fn refresh_of_500_steps_with_30_percent_throttled_stays_under_the_cap() {
    let names: Vec<String> = (0..500).map(|i| format!("s{i:03}")).collect();
    let steps: Vec<Arc<Step>> = names.iter().map(|n| Arc::new(step(n))).collect();
    let state = applied(&steps);
    let provider = live(&names);
    // 30% throttled once or twice before they answer.
    let failures = |i: usize| if i % 10 < 3 { 1 + (i % 2) as u32 } else { 0 };
    for (i, name) in names.iter().enumerate() {
        provider.edit(name, |s| {
            s.observe_delay = Duration::from_secs(1);
            s.fail_observe_retryable = failures(i);
        });
    }
    let (events, mut received) = mpsc::unbounded_channel();
    let exec = executor(&provider).parallelism(8).events(events);
    let start = Instant::now();
    let refreshing = exec.refresh(&steps, &state);
    is_send(&refreshing);
    let refreshed = refreshing.await.unwrap();

    assert_eq!(refreshed.report.steps.len(), 500);
    assert!(refreshed
        .report
        .steps
        .iter()
        .all(|s| s.drift == StepDrift::InSync));
    assert!(!refreshed.report.has_drift());
    assert_eq!(
        provider.max_running(),
        8,
        "the cap is reached, never passed"
    );
    let mut calls = 0;
    for (i, name) in names.iter().enumerate() {
        let expected = failures(i) as usize + 1;
        assert_eq!(provider.count(Op::Observe, name), expected, "{name}");
        calls += expected;
    }
    assert_eq!(calls, 700);
    // Every call takes a second and at most 8 run at once.
    assert!(
        secs_since(start) >= calls as f64 / 8.0,
        "{}",
        secs_since(start)
    );
    drop(exec);
    let mut retries = 0;
    while let Some(event) = received.recv().await {
        if let Event::StepRetrying { error, .. } = event {
            assert_eq!(error, "throttled");
            retries += 1;
        }
    }
    assert_eq!(retries, 200);
}

#[tokio::test(start_paused = true)]
async fn each_step_is_observed_once_its_dependencies_are_with_their_observed_outputs() {
    let steps = [
        step("cluster"),
        step("pool").input("endpoint", Ref::new(id("cluster"), "id")),
        step("cni").input("pool", Ref::new(id("pool"), "id")),
        step("other"),
        step("pending"),
    ]
    .map(Arc::new);
    let state = applied(&steps);
    let new = Arc::new(step("new"));
    let all: Vec<Arc<Step>> = steps.iter().cloned().chain([new]).collect();
    let provider = live(&["cluster".into(), "other".into()]);
    provider.edit("cluster", |s| s.observe_delay = Duration::from_secs(5));
    provider.edit("other", |s| s.observe_delay = Duration::from_secs(1));
    provider.edit("pool", |s| s.observe = Some(Observed::Absent));
    provider.edit("pending", |s| {
        s.observe = Some(Observed::Pending {
            status: "CREATING".into(),
        })
    });
    let report = executor(&provider).drift(&all, &state).await.unwrap();

    // Every spec step once, in dependency order (the plan's).
    let order: Vec<&str> = report.steps.iter().map(|s| s.id.as_str()).collect();
    let at = |step: &str| order.iter().position(|s| *s == step).unwrap();
    assert_eq!(order.len(), 6);
    assert!(
        at("cluster") < at("pool") && at("pool") < at("cni"),
        "{order:?}"
    );
    let (cluster, pool) = (
        provider.last(Op::Observe, "cluster"),
        provider.last(Op::Observe, "pool"),
    );
    assert!(
        pool.start_seq > cluster.end_seq.unwrap(),
        "after its dependency"
    );
    // An independent step does not wait for the chain.
    assert!(provider.last(Op::Observe, "other").start_seq < cluster.end_seq.unwrap());
    // From what the cluster is now, not what state recorded...
    assert_eq!(pool.inputs.str("endpoint"), Some("cluster-live"));
    // ...and from state when the source was not found.
    let cni = provider.last(Op::Observe, "cni");
    assert_eq!(cni.inputs.str("pool"), Some("pool-recorded"));
    assert_eq!(drift_of(&report, "pool"), &StepDrift::Missing);
    // In progress is reported as it is: observed once, not waited for.
    assert_eq!(
        drift_of(&report, "pending"),
        &StepDrift::InProgress {
            status: "CREATING".into()
        }
    );
    assert_eq!(provider.count(Op::Observe, "pending"), 1);
    assert_eq!(drift_of(&report, "new"), &StepDrift::NotApplied);
    assert_eq!(provider.count(Op::Observe, "new"), 0);
}

#[tokio::test(start_paused = true)]
async fn an_observe_that_times_out_is_retried_then_reported_unobservable() {
    let steps = [step("hangs"), step("slow-kind"), step("fine")].map(Arc::new);
    let state = applied(&steps);
    let provider = live(&["hangs".into(), "slow-kind".into(), "fine".into()]);
    provider.edit("hangs", |s| s.observe_delay = Duration::from_secs(100));
    // The provider's own limit for the step wins over the executor's.
    provider.edit("slow-kind", |s| {
        s.observe_delay = Duration::from_secs(100);
        s.max = Some(Duration::from_secs(2));
    });
    let exec = executor(&provider)
        .step_timeout(Duration::from_secs(3))
        .retry(RetryPolicy {
            max_attempts: 2,
            jitter: false,
            ..RetryPolicy::default()
        });
    let start = Instant::now();
    let report = exec.drift(&steps, &state).await.unwrap();
    assert_eq!(provider.count(Op::Observe, "hangs"), 2);
    assert_eq!(
        drift_of(&report, "hangs"),
        &StepDrift::Unobservable {
            error: "timed out after 3s".into()
        }
    );
    assert_eq!(
        drift_of(&report, "slow-kind"),
        &StepDrift::Unobservable {
            error: "timed out after 2s".into()
        }
    );
    assert_eq!(drift_of(&report, "fine"), &StepDrift::InSync);
    // 3 s, a 1 s backoff, 3 s.
    assert_eq!(secs_since(start), 7.0);
}

#[tokio::test(start_paused = true)]
async fn a_concurrency_group_limits_its_observes_within_the_cap() {
    let grouped: Vec<String> = (0..10).map(|i| format!("g{i}")).collect();
    let free: Vec<String> = (0..10).map(|i| format!("f{i}")).collect();
    let names: Vec<String> = grouped.iter().chain(&free).cloned().collect();
    let steps: Vec<Arc<Step>> = names.iter().map(|n| Arc::new(step(n))).collect();
    let state = applied(&steps);
    let provider = live(&names);
    for name in &names {
        provider.edit(name, |s| s.observe_delay = Duration::from_secs(1));
    }
    for name in &grouped {
        provider.edit(name, |s| s.group = Some(("api", 2)));
    }
    let report = executor(&provider)
        .parallelism(6)
        .drift(&steps, &state)
        .await
        .unwrap();
    assert!(report.steps.iter().all(|s| s.drift == StepDrift::InSync));
    assert_eq!(max_overlap(&provider, &grouped), 2);
    assert_eq!(provider.max_running(), 6);
}

/// Ten steps whose observes take 10 s, four at a time; cancelled after 5 s.
async fn cancelled_after_5s(
    honour_cancel: bool,
) -> (Result<DriftReport, DriftError>, f64, Arc<TestProvider>) {
    let names: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
    let steps: Vec<Arc<Step>> = names.iter().map(|n| Arc::new(step(n))).collect();
    let state = applied(&steps);
    let provider = live(&names);
    for name in &names {
        provider.edit(name, |s| {
            s.observe_delay = Duration::from_secs(10);
            s.honour_cancel = honour_cancel;
        });
    }
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        cancel.cancel();
    });
    let exec = executor(&provider)
        .parallelism(4)
        .cancel_token(token)
        .grace_period(Duration::from_secs(1));
    let start = Instant::now();
    let result = exec.drift(&steps, &state).await;
    (result, secs_since(start), provider)
}

#[tokio::test(start_paused = true)]
async fn cancellation_stops_new_observes_and_running_ones_may_end() {
    let (result, secs, provider) = cancelled_after_5s(true).await;
    assert!(matches!(result, Err(DriftError::Cancelled)), "{result:?}");
    assert_eq!(provider.calls_of(Op::Observe).len(), 4, "no new observes");
    // The running observes stopped when told: no grace period needed.
    assert_eq!(secs, 5.0);
}

#[tokio::test(start_paused = true)]
async fn observes_still_running_after_the_grace_period_are_dropped() {
    let (result, secs, provider) = cancelled_after_5s(false).await;
    assert!(matches!(result, Err(DriftError::Cancelled)), "{result:?}");
    assert_eq!(provider.calls_of(Op::Observe).len(), 4);
    assert_eq!(secs, 6.0);
}

#[tokio::test(start_paused = true)]
async fn a_refresh_cancelled_before_it_starts_observes_nothing() {
    let steps = [step("a")].map(Arc::new);
    let provider = live(&["a".into()]);
    let token = CancellationToken::new();
    token.cancel();
    let (events, mut received) = mpsc::unbounded_channel();
    let exec = executor(&provider).cancel_token(token).events(events);
    let result = exec.drift(&steps, &applied(&steps)).await;
    assert!(matches!(result, Err(DriftError::Cancelled)), "{result:?}");
    assert!(provider.calls().is_empty());
    drop(exec);
    assert_eq!(
        received.recv().await,
        Some(Event::Cancelling {
            reason: CancelReason::Requested
        })
    );
}

#[tokio::test]
async fn an_observe_carries_the_checkpoint_state_holds_for_the_step() {
    let steps = [step("cluster")].map(Arc::new);
    let mut state = applied(&steps);
    state.apply(&Record {
        id: id("cluster"),
        kind: RecordKind::Checkpoint {
            data: Arc::new(json!({"operation": "op-1"})),
        },
    });
    let provider = live(&["cluster".into()]);
    executor(&provider).drift(&steps, &state).await.unwrap();
    assert_eq!(
        provider.last(Op::Observe, "cluster").checkpoint,
        Some(json!({"operation": "op-1"}))
    );
}

#[tokio::test]
async fn a_kind_without_provider_is_refused_before_anything_is_observed() {
    let steps = [step("a"), step("b")].map(Arc::new);
    let state = applied(&steps[..1]);
    // Nothing serves kind `test`: `b`, never applied, needs no provider, `a` does.
    let exec = Executor::new(Providers::new());
    match exec.drift(&steps, &state).await {
        Err(DriftError::NoProvider { id, kind }) => {
            assert_eq!((id.as_str(), &*kind), ("a", "test"))
        }
        other => panic!("{other:?}"),
    }
    let report = exec.drift(&steps[1..], &state).await.unwrap();
    assert_eq!(drift_of(&report, "b"), &StepDrift::NotApplied);
}
