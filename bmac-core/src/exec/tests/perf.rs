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
    let exec = Executor::new(Providers::new().fallback(provider)).parallelism(64);
    let plan = plan.build();
    let report_plan = plan.clone();
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
    let children = {
        let mut children = vec![Vec::new(); n];
        for (i, node) in report_plan.nodes().iter().enumerate() {
            for &d in &node.deps {
                children[d as usize].push(i as u32);
            }
        }
        children
    };
    let parents: Vec<u32> = report_plan
        .nodes()
        .iter()
        .map(|n| n.deps.len() as u32)
        .collect();
    let start = Instant::now();
    let ran = runtime.block_on(baseline(&parents, &children, 64));
    let baseline_elapsed = start.elapsed();
    assert_eq!(ran, n);
    println!(
        "{name} baseline (multi-thread: {multi}): {:.2} µs/step",
        baseline_elapsed.as_secs_f64() * 1e6 / n as f64
    );
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

/// The least a scheduler can do: counters, a FIFO queue, a semaphore, spawned tasks.
async fn baseline(parents: &[u32], children: &[Vec<u32>], cap: usize) -> usize {
    use futures::stream::{FuturesUnordered, StreamExt};
    let mut pending = parents.to_vec();
    let mut ready: std::collections::VecDeque<u32> = (0..parents.len() as u32)
        .filter(|&i| pending[i as usize] == 0)
        .collect();
    let permits = Arc::new(tokio::sync::Semaphore::new(cap));
    let mut running = FuturesUnordered::new();
    let mut done = 0;
    loop {
        while let Some(&i) = ready.front() {
            let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                break;
            };
            ready.pop_front();
            running.push(tokio::spawn(async move {
                let _permit = permit;
                std::hint::black_box(i)
            }));
        }
        let Some(Ok(i)) = running.next().await else {
            break;
        };
        done += 1;
        for &c in &children[i as usize] {
            pending[c as usize] -= 1;
            if pending[c as usize] == 0 {
                ready.push_back(c);
            }
        }
    }
    done
}

#[test]
#[ignore = "release-mode size guard"]
fn step_task_future_size() {
    use crate::exec::journal::Journal;
    use crate::exec::shared::{Planned, Shared, TaskMode};
    use crate::exec::step_task::step_task;
    let mut plan = PlanBuilder::new();
    plan.create("a", &[]);
    let (journal, _queue) = Journal::channel();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let shared = Arc::new(Shared::new(
        plan.build(),
        Providers::new(),
        tx,
        journal,
        crate::exec::RetryPolicy::default(),
        std::time::Duration::from_secs(1),
        0,
        tokio_util::sync::CancellationToken::new(),
    ));
    let mode = TaskMode::Journaled {
        inputs: Default::default(),
        call: Planned::Apply(crate::step::Fingerprint([0; 32])),
    };
    let task = step_task(shared, 0, mode);
    let size = std::mem::size_of_val(&task);
    println!("step task future: {size} bytes");
    // Every started step allocates and moves this much; keep it from creeping up.
    assert!(size <= 1536, "the step task future grew to {size} bytes");
}
