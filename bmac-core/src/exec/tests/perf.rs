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

/// Forgets everything: isolates the executor's own cost from the store's.
struct NullStore(MemoryStore);

#[async_trait]
impl crate::state::StateStore for NullStore {
    async fn load(&self) -> Result<crate::state::Loaded, crate::state::StateError> {
        self.0.load().await
    }
    async fn append(&self, _: &[crate::state::Record]) -> Result<u64, crate::state::StateError> {
        Ok(0)
    }
    async fn lock(
        &self,
        r: crate::state::LockRequest,
    ) -> Result<crate::state::LockInfo, crate::state::StateError> {
        self.0.lock(r).await
    }
    async fn unlock(&self, id: &str) -> Result<(), crate::state::StateError> {
        self.0.unlock(id).await
    }
    async fn lock_info(&self) -> Result<Option<crate::state::LockInfo>, crate::state::StateError> {
        self.0.lock_info().await
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
    let null = std::env::var("BMAC_PERF_NULL").is_ok();
    let store: Box<dyn crate::state::StateStore> = if null {
        Box::new(NullStore(MemoryStore::new()))
    } else {
        Box::new(MemoryStore::new())
    };
    let start = Instant::now();
    let report = runtime.block_on(exec.run(plan, &*store)).unwrap();
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
    let modes: &[bool] = match std::env::var("BMAC_PERF_MODE").as_deref() {
        Ok("current") => &[false],
        Ok("multi") => &[true],
        _ => &[false, true],
    };
    for &multi in modes {
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
