//! A rough measurement of scheduling overhead (run with `--release -- --ignored`); the real
//! benchmark lives in `benches/`.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::support::PlanBuilder;
use crate::exec::Executor;
use crate::provider::{
    ApplyRequest, DestroyRequest, ObserveRequest, Observed, Provider, ProviderError, Providers,
};
use crate::state::MemoryStore;
use crate::step::Outputs;

/// Returns at once.
struct Instant0;

#[async_trait]
impl Provider for Instant0 {
    fn name(&self) -> &str {
        "instant"
    }
    async fn apply(&self, _: ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        Ok(Outputs::new())
    }
    async fn observe(&self, _: ObserveRequest<'_>) -> Result<Observed, ProviderError> {
        Ok(Observed::Absent)
    }
    async fn destroy(&self, _: DestroyRequest<'_>) -> Result<(), ProviderError> {
        Ok(())
    }
}

fn measure(name: &str, plan: PlanBuilder, n: usize, multi: bool) {
    let runtime = if multi {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    }
    .enable_all()
    .build()
    .unwrap();
    let provider: Arc<dyn Provider> = Arc::new(Instant0);
    let exec = Executor::new(Providers::new().fallback(provider));
    let plan = plan.build();
    let store = MemoryStore::new();
    let start = Instant::now();
    let report = runtime.block_on(exec.run(plan, &store)).unwrap();
    let elapsed = start.elapsed();
    assert_eq!(report.counts.succeeded, n);
    println!(
        "{name} (multi-thread: {multi}): {n} steps in {elapsed:?} = {:.2} µs/step",
        elapsed.as_secs_f64() * 1e6 / n as f64
    );
}

#[test]
#[ignore = "timing; run in release"]
fn scheduling_overhead() {
    let n = 20_000;
    let mut wide = PlanBuilder::new();
    let mut chain = PlanBuilder::new();
    let names: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    for i in 0..n {
        wide.create(&names[i], &[]);
        if i == 0 {
            chain.create(&names[i], &[]);
        } else {
            chain.create(&names[i], &[&names[i - 1]]);
        }
    }
    for multi in [false, true] {
        measure("fan-out", wide.clone(), n, multi);
        measure("chain", chain.clone(), n, multi);
    }
}

#[test]
#[ignore = "stress"]
fn stress_multi_thread() {
    let n = 2000;
    let mut wide = PlanBuilder::new();
    for i in 0..n {
        wide.create(&format!("s{i}"), &[]);
    }
    let plan = wide.build();
    for round in 0..300 {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let provider: Arc<dyn Provider> = Arc::new(Instant0);
        let exec = Executor::new(Providers::new().fallback(provider));
        let store = MemoryStore::new();
        let result = runtime.block_on(async {
            tokio::time::timeout(
                std::time::Duration::from_secs(10),
                exec.run(plan.clone(), &store),
            )
            .await
        });
        match result {
            Ok(r) => assert_eq!(r.unwrap().counts.succeeded, n),
            Err(_) => panic!(
                "round {round} hung; {} records journaled",
                store.records().len()
            ),
        }
    }
}
