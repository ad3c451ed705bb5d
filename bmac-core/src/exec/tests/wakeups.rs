//! No lost wake-ups. The CLI runs the executor under `Runtime::block_on` on a multi-thread
//! runtime: the coordinator (and its journal) is polled by the blocked thread, and step tasks
//! that had to wait message it from worker threads. A wake-up lost on that path leaves a run
//! stalled with messages queued (it did, once, through a thread park inside tokio's
//! `try_recv`); here it shows as the watchdog firing. The second test makes every step wait,
//! so every one of them reports from a worker thread.

use std::time::Duration;

use super::support::*;
use crate::exec::Executor;
use crate::plan::Plan;
use crate::state::MemoryStore;

#[test]
fn runs_under_block_on_never_stall() {
    let mut builder = PlanBuilder::new();
    for i in 0..400 {
        // Independent steps: as many tasks messaging at once as the cap allows.
        builder.create(&format!("s{i}"), &[]);
    }
    never_stalls(&builder.build(), 150, || {
        executor(&TestProvider::new()).parallelism(64)
    });
}

/// Runs `plan` `rounds` times under `block_on` on the CLI's runtime, each time with a fresh
/// store and the executor `make` gives, and checks that every run ends within a watchdog,
/// every step succeeded, and each journaled an intent and a result.
fn never_stalls(plan: &Plan, rounds: usize, make: impl Fn() -> Executor) {
    let rt = cli_runtime();
    for round in 0..rounds {
        let store = MemoryStore::new();
        let executor = make();
        let run = executor.run(plan.clone(), &store);
        let report = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), run).await })
            .unwrap_or_else(|_| panic!("round {round}: the run stalled with work queued"))
            .expect("the run starts");
        assert_eq!(report.counts.succeeded, plan.len(), "round {round}");
        assert_eq!(store.records().len(), 2 * plan.len(), "round {round}");
    }
}

/// Yields once before answering, so every step's work moves to a spawned task.
struct YieldsOnce;

#[async_trait::async_trait]
impl crate::provider::Provider for YieldsOnce {
    fn name(&self) -> &str {
        "yields-once"
    }
    async fn apply(
        &self,
        _: crate::provider::ApplyRequest<'_>,
    ) -> Result<crate::step::Outputs, crate::provider::ProviderError> {
        tokio::task::yield_now().await;
        Ok(crate::step::Outputs::new())
    }
    async fn observe(
        &self,
        _: crate::provider::ObserveRequest<'_>,
    ) -> Result<crate::provider::Observed, crate::provider::ProviderError> {
        Ok(crate::provider::Observed::Absent)
    }
    async fn destroy(
        &self,
        _: crate::provider::DestroyRequest<'_>,
    ) -> Result<(), crate::provider::ProviderError> {
        Ok(())
    }
}

#[test]
fn spawned_steps_under_block_on_never_stall() {
    let mut builder = PlanBuilder::new();
    for i in 0..200 {
        // A chain every fourth step: hand-offs on the critical path as well as fan-out.
        let deps: Vec<String> = if i % 4 == 0 || i < 4 {
            Vec::new()
        } else {
            vec![format!("s{}", i - 1)]
        };
        let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
        builder.create(&format!("s{i}"), &deps);
    }
    let provider: std::sync::Arc<dyn crate::provider::Provider> = std::sync::Arc::new(YieldsOnce);
    never_stalls(&builder.build(), 60, || {
        Executor::new(crate::provider::Providers::new().fallback(provider.clone())).parallelism(16)
    });
}
