//! What stops a run before or during it: locks, stale plans, missing providers, the journal.

use std::sync::Arc;

use async_trait::async_trait;
use miette::Diagnostic;

use super::support::*;
use crate::exec::{ExecError, Executor};
use crate::provider::Providers;
use crate::state::{
    Loaded, LockInfo, LockRequest, MemoryStore, Record, RecordKind, StateError, StateStore,
};

#[tokio::test]
async fn a_stale_plan_is_refused_and_the_lock_released() {
    let provider = TestProvider::new();
    let store = MemoryStore::new();
    let plan = {
        let mut p = PlanBuilder::against(&store.state());
        p.create("a", &[]);
        p.build()
    };
    // Another run moves the state after the plan was made.
    store
        .append(&[Record {
            id: id("other"),
            kind: RecordKind::Destroyed,
        }])
        .await
        .unwrap();
    let (result, _) = run(executor(&provider), plan, &store).await;
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            ExecError::StalePlan {
                plan_serial: 0,
                state_serial: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.code().unwrap().to_string(), "bmac::exec::stale_plan");
    assert!(err.help().is_some());
    assert!(provider.calls().is_empty());
    assert!(store.current_lock().is_none());
}

#[tokio::test]
async fn a_held_lock_is_reported_with_its_holder() {
    let provider = TestProvider::new();
    let store = MemoryStore::new();
    let held = store
        .lock(LockRequest {
            operation: "apply".into(),
            holder: "alice".into(),
        })
        .await
        .unwrap();
    let mut plan = PlanBuilder::new();
    plan.create("a", &[]);
    let (result, _) = run(executor(&provider), plan.build(), &store).await;
    let err = result.unwrap_err();
    assert!(matches!(&err, ExecError::Locked { holder, .. } if holder.holder == "alice"));
    let text = err.to_string();
    assert!(text.contains("alice") && text.contains(&held.id), "{text}");
    assert!(err.help().unwrap().to_string().contains(&held.id));
    assert!(provider.calls().is_empty());
    assert_eq!(
        store.current_lock(),
        Some(held),
        "someone else's lock is left alone"
    );
}

#[tokio::test]
async fn a_kind_without_provider_is_refused_before_anything_runs() {
    let store = MemoryStore::new();
    let mut plan = PlanBuilder::new();
    plan.create("a", &[]);
    let err = Executor::new(Providers::new())
        .run(plan.build(), &store)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ExecError::NoProvider { kind, .. } if kind == "test"),
        "{err}"
    );
    assert!(store.current_lock().is_none());
}

/// A store whose appends fail.
struct BrokenDisk(MemoryStore);

#[async_trait]
impl StateStore for BrokenDisk {
    async fn load(&self) -> Result<Loaded, StateError> {
        self.0.load().await
    }
    async fn append(&self, _: &[Record]) -> Result<u64, StateError> {
        Err(StateError::Io {
            path: ".bmac/journal".into(),
            source: std::io::Error::other("disk full"),
        })
    }
    async fn lock(&self, request: LockRequest) -> Result<LockInfo, StateError> {
        self.0.lock(request).await
    }
    async fn unlock(&self, id: &str) -> Result<(), StateError> {
        self.0.unlock(id).await
    }
    async fn lock_info(&self) -> Result<Option<LockInfo>, StateError> {
        self.0.lock_info().await
    }
}

#[tokio::test]
async fn no_provider_call_happens_without_a_durable_intent() {
    let provider = TestProvider::new();
    let store = BrokenDisk(MemoryStore::new());
    let mut plan = PlanBuilder::new();
    plan.create("a", &[]).create("b", &[]).create("c", &["a"]);
    let exec = executor(&provider).failure_policy(crate::exec::FailurePolicy::KeepGoing);
    let (result, _) = run(exec, plan.build(), &store).await;
    let err = result.unwrap_err();
    assert!(matches!(err, ExecError::Journal { .. }), "{err}");
    assert_eq!(err.code().unwrap().to_string(), "bmac::exec::journal");
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(source.contains(".bmac/journal"), "{source}");
    assert!(provider.calls().is_empty(), "{:?}", provider.calls());
    assert!(store.0.current_lock().is_none());
}

#[test]
fn executor_settings_are_clamped() {
    let provider: Arc<dyn crate::provider::Provider> = TestProvider::new();
    let exec = Executor::new(Providers::new().fallback(provider)).parallelism(0);
    assert!(format!("{exec:?}").contains("parallelism: 1"));
}

#[test]
fn a_cause_the_message_already_carries_is_not_repeated() {
    use crate::exec::StepError;
    use crate::provider::ProviderError;
    let describe = |e: &ProviderError| StepError::from_provider(e).to_string();
    let io = || std::io::Error::other("connection refused");
    let repeated =
        ProviderError::retryable("cannot get namespaces: connection refused").with_source(io());
    assert_eq!(
        describe(&repeated),
        "cannot get namespaces: connection refused"
    );
    let new_cause = ProviderError::permanent("cannot get namespaces").with_source(io());
    assert_eq!(
        describe(&new_cause),
        "cannot get namespaces: connection refused"
    );
}
