//! No lost wake-ups. The CLI runs the executor under `Runtime::block_on` on a multi-thread
//! runtime: step tasks on worker threads message the coordinator and the journal writer,
//! which are both polled by the blocked thread. A wake-up lost on that path leaves a run
//! stalled with messages queued (it did, once, through a thread park inside tokio's
//! `try_recv`); here it shows as the watchdog firing.

use std::time::Duration;

use super::support::*;
use crate::state::MemoryStore;

#[test]
fn runs_under_block_on_never_stall() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut builder = PlanBuilder::new();
    for i in 0..400 {
        // Independent steps: as many tasks messaging at once as the cap allows.
        builder.create(&format!("s{i}"), &[]);
    }
    let plan = builder.build();
    for round in 0..150 {
        let provider = TestProvider::new();
        let store = MemoryStore::new();
        let executor = executor(&provider).parallelism(64);
        let run = executor.run(plan.clone(), &store);
        let report = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), run).await })
            .unwrap_or_else(|_| panic!("round {round}: the run stalled with work queued"))
            .expect("the run starts");
        assert_eq!(report.counts.succeeded, 400, "round {round}");
        assert_eq!(store.records().len(), 800, "round {round}");
    }
}
