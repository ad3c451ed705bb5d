//! Release-mode checks of the executor's hot path (run with `--release -- --ignored`): a
//! multi-thread stress run that must never hang, and a bound on the step task's size. The
//! timing comparison lives in `benches/` (`cargo bench -p bmac-benches`).

use std::sync::Arc;

use super::support::PlanBuilder;
use crate::exec::Executor;
use crate::provider::tests::Named;
use crate::provider::{Provider, Providers};
use crate::state::MemoryStore;

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
        let provider: Arc<dyn Provider> = Arc::new(Named("instant"));
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

#[test]
#[ignore = "release-mode size guard"]
fn step_task_future_size() {
    use crate::exec::shared::{Planned, Shared, TaskMode};
    use crate::exec::step_task::{step_work, TaskGuard};
    let mut plan = PlanBuilder::new();
    plan.create("a", &[]);
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let shared = Arc::new(Shared::new(
        plan.build(),
        Providers::new(),
        tx,
        crate::exec::RetryPolicy::default(),
        std::time::Duration::from_secs(1),
        0,
        tokio_util::sync::CancellationToken::new(),
    ));
    let mode = TaskMode::Journaled {
        inputs: Default::default(),
        call: Planned::Apply(crate::step::Fingerprint([0; 32])),
    };
    let task = step_work(TaskGuard::new(shared, 0), mode, Vec::new());
    let size = std::mem::size_of_val(&task);
    println!("step task future: {size} bytes");
    // Every started step allocates this much. Keep it from creeping up, and under 1000 bytes:
    // larger blocks leave the allocators' fast per-thread caches (glibc's tcache ends at
    // 1032), which measurably slows every step.
    assert!(size <= 1000, "the step task future grew to {size} bytes");
}
