//! Where a step's work runs: in the coordinator's task when it finishes at once, on a spawned
//! task when it has to wait. Either way the durability rule holds, a panic fails only its
//! step, and slow calls run in parallel on the runtime's worker threads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::support::*;
use crate::exec::{Executor, FailurePolicy};
use crate::provider::{
    ApplyRequest, DestroyRequest, ObserveRequest, Observed, Provider, ProviderError, Providers,
};
use crate::state::{MemoryStore, RecordKind};
use crate::step::Outputs;

/// Answers at once — or, for the steps named in `panics`, panics before its first `.await`.
/// With `store`, every apply first checks what the journal holds at the moment of the call.
#[derive(Default)]
struct AtOnce {
    panics: Vec<&'static str>,
    store: Option<Arc<MemoryStore>>,
    /// What the journal-order checks found wrong.
    problems: Mutex<Vec<String>>,
}

impl AtOnce {
    /// The step's intent is the last record of it, and each dependency's `Applied` record
    /// was written before it.
    fn check_journal(&self, req: &ApplyRequest<'_>) {
        let Some(store) = &self.store else { return };
        let records = store.records();
        let position = |id: &crate::step::StepId, applied: bool| {
            records.iter().rposition(|r| {
                &r.id == id
                    && match &r.kind {
                        RecordKind::Intent { .. } => !applied,
                        RecordKind::Applied { .. } => applied,
                        _ => false,
                    }
            })
        };
        let mut problems = self.problems.lock().unwrap();
        let Some(intent) = position(&req.step.id, false) else {
            problems.push(format!(
                "{} was called without a durable intent",
                req.step.id
            ));
            return;
        };
        for dep in &req.step.deps {
            match position(dep, true) {
                Some(applied) if applied < intent => {}
                _ => problems.push(format!(
                    "{}'s intent was written before {dep}'s result",
                    req.step.id
                )),
            }
        }
    }
}

#[async_trait]
impl Provider for AtOnce {
    fn name(&self) -> &str {
        "at-once"
    }
    async fn apply(&self, req: ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        if self.panics.contains(&req.step.id.as_str()) {
            panic!("provider bug in {}", req.step.id);
        }
        self.check_journal(&req);
        Ok(Outputs::new())
    }
    async fn observe(&self, _: ObserveRequest<'_>) -> Result<Observed, ProviderError> {
        Ok(Observed::Absent)
    }
    async fn destroy(&self, _: DestroyRequest<'_>) -> Result<(), ProviderError> {
        Ok(())
    }
}

#[tokio::test]
async fn steps_that_finish_at_once_still_journal_intent_first_and_results_before_dependents() {
    let store = Arc::new(MemoryStore::new());
    let provider = Arc::new(AtOnce {
        store: Some(Arc::clone(&store)),
        ..AtOnce::default()
    });
    let mut plan = PlanBuilder::new();
    plan.create("root", &[]);
    for i in 0..40 {
        plan.create(&format!("fan{i}"), &["root"]);
    }
    plan.create("chain0", &["fan0", "fan39"]);
    for i in 1..30 {
        plan.create(&format!("chain{i}"), &[&format!("chain{}", i - 1)]);
    }
    let exec = Executor::new(Providers::new().fallback(provider.clone())).parallelism(8);
    let report = exec.run(plan.build(), &*store).await.unwrap();
    assert_eq!(report.counts.succeeded, 71);
    assert_eq!(*provider.problems.lock().unwrap(), Vec::<String>::new());
    assert_eq!(
        store.records().len(),
        142,
        "an intent and a result per step"
    );
    assert_eq!(journal_of(&store, "chain29"), ["intent:apply", "applied"]);
}

#[tokio::test]
async fn a_provider_that_panics_before_it_awaits_fails_only_its_step() {
    let provider = Arc::new(AtOnce {
        panics: vec!["buggy"],
        ..AtOnce::default()
    });
    let mut plan = PlanBuilder::new();
    plan.create("buggy", &[])
        .create("fine", &[])
        .create("after_buggy", &["buggy"])
        .create("after_fine", &["fine"]);
    let store = MemoryStore::new();
    let exec =
        Executor::new(Providers::new().fallback(provider)).failure_policy(FailurePolicy::KeepGoing);
    let run = exec.run(plan.build(), &store);
    let report = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the run ends")
        .unwrap();
    assert_panic_failed_only(&report, &store, "buggy", "after_buggy");
    assert_eq!(report.counts.succeeded, 2);
}

/// Yields once (so its work moves to a spawned task), then blocks its thread until all
/// `expected` calls are inside at the same time — or gives up after a long while.
struct Rendezvous {
    expected: usize,
    inside: AtomicUsize,
    met: AtomicUsize,
}

#[async_trait]
impl Provider for Rendezvous {
    fn name(&self) -> &str {
        "rendezvous"
    }
    async fn apply(&self, _: ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        tokio::task::yield_now().await;
        self.inside.fetch_add(1, Ordering::SeqCst);
        let give_up = std::time::Instant::now() + Duration::from_secs(20);
        while self.inside.load(Ordering::SeqCst) < self.expected {
            if std::time::Instant::now() > give_up {
                return Err(ProviderError::permanent(
                    "the other calls never ran alongside",
                ));
            }
            // Blocking on purpose: work that occupies its thread.
            std::thread::sleep(Duration::from_millis(1));
        }
        self.met.fetch_add(1, Ordering::SeqCst);
        Ok(Outputs::new())
    }
    async fn observe(&self, _: ObserveRequest<'_>) -> Result<Observed, ProviderError> {
        Ok(Observed::Absent)
    }
    async fn destroy(&self, _: DestroyRequest<'_>) -> Result<(), ProviderError> {
        Ok(())
    }
}

#[test]
fn slow_provider_calls_run_in_parallel_on_worker_threads() {
    let rt = cli_runtime();
    let provider = Arc::new(Rendezvous {
        expected: 2,
        inside: AtomicUsize::new(0),
        met: AtomicUsize::new(0),
    });
    let mut plan = PlanBuilder::new();
    plan.create("a", &[]).create("b", &[]);
    let store = MemoryStore::new();
    let exec = Executor::new(Providers::new().fallback(provider.clone())).parallelism(2);
    // Under `block_on`, as the CLI runs it: the coordinator has a thread of its own.
    let report = rt.block_on(exec.run(plan.build(), &store)).unwrap();
    assert_eq!(report.failures, [], "both calls were in progress at once");
    assert_eq!(provider.met.load(Ordering::SeqCst), 2);
    assert_eq!(report.counts.succeeded, 2);
}
