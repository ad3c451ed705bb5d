//! Property: on random DAGs with random delays and caps, every step starts only after all
//! its dependencies finished, the cap holds, and every step completes.

use std::time::Duration;

use proptest::prelude::*;

use super::support::*;
use crate::event::Outcome;
use crate::exec::SchedulingOrder;
use crate::state::MemoryStore;

/// Nodes: for each, its delay in ms and its dependencies (indices below it).
fn dag() -> impl Strategy<Value = Vec<(u64, Vec<usize>)>> {
    (1usize..=40).prop_flat_map(|n| {
        (0..n)
            .map(|i| {
                let deps = if i == 0 {
                    Just(Vec::new()).boxed()
                } else {
                    proptest::collection::vec(0..i, 0..=3.min(i)).boxed()
                };
                (0u64..3000, deps)
            })
            .collect::<Vec<_>>()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_dags_respect_dependencies_and_the_cap(
        nodes in dag(),
        cap in 1usize..=8,
        fifo in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let provider = TestProvider::new();
        let mut plan = PlanBuilder::new();
        let names: Vec<String> = (0..nodes.len()).map(|i| format!("n{i}")).collect();
        for (i, (delay, deps)) in nodes.iter().enumerate() {
            let mut deps: Vec<&str> = deps.iter().map(|&d| names[d].as_str()).collect();
            deps.sort_unstable();
            deps.dedup();
            plan.create(&names[i], &deps);
            provider.edit(&names[i], |s| s.delay = Duration::from_millis(*delay));
        }
        let order = if fifo { SchedulingOrder::Fifo } else { SchedulingOrder::CriticalPath };
        let exec = executor(&provider).parallelism(cap).order(order);
        let store = MemoryStore::new();
        let (report, _) = runtime.block_on(run_ok(exec, plan.build(), &store));

        prop_assert_eq!(report.outcome, Outcome::Succeeded);
        prop_assert_eq!(report.counts.succeeded, nodes.len());
        prop_assert!(provider.max_running() <= cap);
        let calls = provider.calls();
        prop_assert_eq!(calls.len(), nodes.len());
        let call_of = |name: &str| calls.iter().find(|c| c.step == name).unwrap();
        for (i, (_, deps)) in nodes.iter().enumerate() {
            let start = call_of(&names[i]).start_seq;
            for &d in deps {
                let end = call_of(&names[d]).end_seq.unwrap();
                prop_assert!(start > end, "n{} started before its dependency n{} ended", i, d);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Keep-going with random permanent failures: every node ends exactly one way, a node runs
    /// only if none of its ancestors failed, and is skipped exactly when one did.
    #[test]
    fn keep_going_skips_exactly_the_descendants_of_failures(
        nodes in dag(),
        failing in proptest::collection::vec(any::<bool>(), 40),
        cap in 1usize..=8,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let provider = TestProvider::new();
        let mut plan = PlanBuilder::new();
        let names: Vec<String> = (0..nodes.len()).map(|i| format!("n{i}")).collect();
        // `failing` is drawn sparse-ish: only every third flag counts.
        let fails = |i: usize| failing[i] && i.is_multiple_of(3);
        for (i, (delay, deps)) in nodes.iter().enumerate() {
            let mut deps: Vec<&str> = deps.iter().map(|&d| names[d].as_str()).collect();
            deps.sort_unstable();
            deps.dedup();
            plan.create(&names[i], &deps);
            provider.edit(&names[i], |s| {
                s.delay = Duration::from_millis(*delay);
                s.fail_permanent = fails(i);
            });
        }
        let exec = executor(&provider)
            .parallelism(cap)
            .failure_policy(crate::exec::FailurePolicy::KeepGoing);
        let (report, _) = runtime.block_on(run_ok(exec, plan.build(), &MemoryStore::new()));

        // Which nodes have a failing ancestor (or fail themselves)?
        let mut doomed = vec![false; nodes.len()];
        let mut blocked = vec![false; nodes.len()];
        for (i, (_, deps)) in nodes.iter().enumerate() {
            blocked[i] = deps.iter().any(|&d| doomed[d]);
            doomed[i] = blocked[i] || fails(i);
        }
        let counts = report.counts;
        prop_assert_eq!(counts.succeeded + counts.failed + counts.skipped, nodes.len());
        for (i, name) in names.iter().enumerate() {
            let ran = provider.count(Op::Apply, name) > 0;
            prop_assert_eq!(ran, !blocked[i], "{} ran={}", name, ran);
            prop_assert_eq!(report.skip_reason(name).is_some(), blocked[i], "{}", name);
            prop_assert_eq!(report.failure(name).is_some(), !blocked[i] && fails(i), "{}", name);
        }
    }
}
