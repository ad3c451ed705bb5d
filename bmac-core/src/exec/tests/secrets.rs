//! Secrets reach dependents but never the journal nor events; after a restart they are
//! re-read by observing the step that produced them.

use std::sync::Arc;

use serde_json::json;

use super::support::*;
use crate::event::Event;
use crate::plan::Action;
use crate::provider::Observed;
use crate::state::{MemoryStore, RecordKind};
use crate::step::{Outputs, Ref};

const SECRET: &str = "hunter2-very-secret";

fn cluster_outputs() -> Outputs {
    Outputs::new()
        .with("endpoint", "https://k8s")
        .with_sensitive("token", SECRET)
}

fn assert_no_secret(events: &[Event], store: &MemoryStore) {
    for e in events {
        let text = format!("{} {e:?}", serde_json::to_string(e).unwrap());
        assert!(!text.contains(SECRET), "event leaks the secret: {text}");
    }
    for r in store.records() {
        let text = format!("{} {r:?}", serde_json::to_string(&r).unwrap());
        assert!(!text.contains(SECRET), "journal leaks the secret: {text}");
        if let RecordKind::Applied { outputs, .. } = &r.kind {
            assert!(outputs
                .0
                .values()
                .all(|v| !v.is_sensitive() || v.value().is_none()));
        }
    }
}

/// A provider whose `cluster` returns the secret on apply and on observe.
fn observable_cluster() -> std::sync::Arc<TestProvider> {
    let provider = TestProvider::new();
    provider.edit("cluster", |s| {
        s.outputs = Some(cluster_outputs());
        s.observe = Some(Observed::Present {
            config: config("cluster"),
            outputs: cluster_outputs(),
        });
    });
    provider
}

/// A first run building `cluster` (whose `token` is a secret) and `app`, which takes it.
async fn cluster_and_app(provider: &Arc<TestProvider>) -> MemoryStore {
    let store = MemoryStore::new();
    let mut first = PlanBuilder::new();
    first
        .create("cluster", &[])
        .create("app", &[])
        .input("app", "token", "cluster", "token");
    run_ok(executor(provider), first.build(), &store).await;
    store
}

#[tokio::test]
async fn secrets_reach_dependents_but_never_the_journal_or_events() {
    let provider = TestProvider::new();
    provider.edit("cluster", |s| s.outputs = Some(cluster_outputs()));
    let mut plan = PlanBuilder::new();
    plan.create("cluster", &[])
        .create("app", &[])
        .input("app", "token", "cluster", "token");
    let store = MemoryStore::new();
    let (report, events) = run_ok(executor(&provider), plan.build(), &store).await;
    assert_eq!(report.counts.succeeded, 2);
    assert_eq!(
        provider.last(Op::Apply, "app").inputs.str("token"),
        Some(SECRET)
    );
    assert_no_secret(&events, &store);
    let recorded = store
        .state()
        .applied(&id("cluster"))
        .unwrap()
        .outputs
        .clone();
    assert!(recorded.has_redacted_secret());
}

#[tokio::test]
async fn after_a_restart_an_unchanged_upstream_is_observed_to_reread_its_secret() {
    let provider = observable_cluster();
    let store = MemoryStore::new();
    let mut first = PlanBuilder::new();
    first
        .create("cluster", &[])
        .create("app", &[])
        .input("app", "token", "cluster", "token")
        .create("dashboard", &[])
        .input("dashboard", "url", "cluster", "endpoint");
    run_ok(executor(&provider), first.build(), &store).await;
    let journaled = store.records().len();

    // A new process: only state is left, the token is a digest there. `app` changes.
    let state = store.state();
    let mut again = PlanBuilder::against(&state);
    again
        .add("cluster", Action::NoOp, &[])
        .add("app", update(), &[])
        .input("app", "token", "cluster", "token")
        .add("dashboard", update(), &[])
        .input("dashboard", "url", "cluster", "endpoint");
    for step in ["cluster", "app", "dashboard"] {
        again.recorded(step, &state);
    }
    Arc::make_mut(&mut again.node("app").step).config =
        json!({"name": "app", "replicas": 3}).into();
    let (report, events) = run_ok(executor(&provider), again.build(), &store).await;

    assert_eq!(provider.count(Op::Observe, "cluster"), 1, "re-read once");
    assert_eq!(
        provider.count(Op::Apply, "cluster"),
        1,
        "only the first run applied it"
    );
    assert_eq!(
        provider.last(Op::Apply, "app").inputs.str("token"),
        Some(SECRET)
    );
    assert_eq!(
        provider.count(Op::Apply, "dashboard"),
        1,
        "unchanged, no second call"
    );
    assert!(
        journal_of(&store, "cluster").len() == 2,
        "the re-read is not journaled"
    );
    assert_eq!(
        store.records().len(),
        journaled + 2,
        "only app's intent and result"
    );
    assert_eq!(report.counts.unchanged, 2);
    assert_eq!(report.counts.succeeded, 1);
    assert_no_secret(&events, &store);
}

#[tokio::test]
async fn an_unchanged_dependent_does_not_trigger_a_reread() {
    let provider = TestProvider::new();
    provider.edit("cluster", |s| s.outputs = Some(cluster_outputs()));
    let store = cluster_and_app(&provider).await;

    let state = store.state();
    let mut again = PlanBuilder::against(&state);
    again
        .add("cluster", Action::NoOp, &[])
        .add("app", Action::NoOp, &[])
        .input("app", "token", "cluster", "token");
    again.recorded("cluster", &state).recorded("app", &state);
    let (report, _) = run_ok(executor(&provider), again.build(), &store).await;
    assert!(provider.calls_of(Op::Observe).is_empty());
    assert_eq!(report.counts.unchanged, 2);
}

#[tokio::test]
async fn a_deletion_after_a_restart_rereads_the_secret_it_needs_once() {
    let provider = observable_cluster();
    let store = MemoryStore::new();
    let mut first = PlanBuilder::new();
    first
        .create("cluster", &[])
        .create("app", &[])
        .input("app", "token", "cluster", "token")
        .create("worker", &[])
        .input("worker", "token", "cluster", "token");
    run_ok(executor(&provider), first.build(), &store).await;

    // A new process destroys everything: deletions run dependents first, so the cluster's
    // token is known only as a digest when `app` and `worker` are deleted.
    let state = store.state();
    let mut destroy = PlanBuilder::against(&state);
    destroy
        .add("app", Action::Delete, &[])
        .add("worker", Action::Delete, &[])
        .add("cluster", Action::Delete, &["app", "worker"]);
    for step in ["cluster", "app", "worker"] {
        destroy.recorded(step, &state);
    }
    for step in ["app", "worker"] {
        let node = destroy.node(step);
        node.step = Arc::new(
            (*node.step)
                .clone()
                .input("token", Ref::new(id("cluster"), "token")),
        );
    }
    let (report, events) = run_ok(executor(&provider), destroy.build(), &store).await;

    assert_eq!(report.counts.succeeded, 3, "{report:?}");
    assert_eq!(
        provider.count(Op::Observe, "cluster"),
        1,
        "observed once for both"
    );
    for step in ["app", "worker"] {
        assert_eq!(
            provider.last(Op::Destroy, step).inputs.str("token"),
            Some(SECRET)
        );
    }
    assert!(store.state().steps.is_empty());
    assert_no_secret(&events, &store);
}

#[tokio::test]
async fn a_secret_made_from_a_secret_is_reread_through_its_producer_once_each() {
    const PASSWORD: &str = "derived-from-the-token";
    let provider = observable_cluster();
    let vault_outputs = || Outputs::new().with_sensitive("password", PASSWORD);
    provider.edit("vault", |s| {
        s.outputs = Some(vault_outputs());
        s.observe = Some(Observed::Present {
            config: config("vault"),
            outputs: vault_outputs(),
        });
    });
    let store = MemoryStore::new();
    let mut first = PlanBuilder::new();
    first
        .create("cluster", &[])
        .create("vault", &[])
        .input("vault", "token", "cluster", "token")
        .create("app", &[])
        .input("app", "password", "vault", "password")
        .create("worker", &[])
        .input("worker", "password", "vault", "password");
    run_ok(executor(&provider), first.build(), &store).await;

    // A new process: both secrets are digests in state. Two dependents of `vault` change.
    let state = store.state();
    let mut again = PlanBuilder::against(&state);
    again
        .add("cluster", Action::NoOp, &[])
        .add("vault", Action::NoOp, &[])
        .input("vault", "token", "cluster", "token")
        .add("app", update(), &[])
        .input("app", "password", "vault", "password")
        .add("worker", update(), &[])
        .input("worker", "password", "vault", "password");
    for step in ["cluster", "vault", "app", "worker"] {
        again.recorded(step, &state);
    }
    for step in ["app", "worker"] {
        Arc::make_mut(&mut again.node(step).step).config =
            json!({"name": step, "replicas": 3}).into();
    }
    let (report, events) = run_ok(executor(&provider), again.build(), &store).await;

    // `vault` is observed with the token re-read from `cluster`; each is observed once
    // although two calls needed the password.
    assert_eq!(provider.count(Op::Observe, "cluster"), 1);
    assert_eq!(provider.count(Op::Observe, "vault"), 1);
    assert_eq!(
        provider.last(Op::Observe, "vault").inputs.str("token"),
        Some(SECRET)
    );
    for step in ["app", "worker"] {
        assert_eq!(
            provider.last(Op::Apply, step).inputs.str("password"),
            Some(PASSWORD),
            "{step}"
        );
    }
    assert_eq!(report.counts.succeeded, 2);
    assert_eq!(report.counts.unchanged, 2);
    assert_no_secret(&events, &store);
    for e in &events {
        assert!(!format!("{e:?}").contains(PASSWORD));
    }
}

#[tokio::test]
async fn a_producer_gone_behind_our_back_fails_the_call_that_needs_its_secret() {
    let provider = TestProvider::new();
    provider.edit("cluster", |s| {
        s.outputs = Some(cluster_outputs());
        s.observe = Some(Observed::Absent);
    });
    let store = cluster_and_app(&provider).await;

    let state = store.state();
    let mut again = PlanBuilder::against(&state);
    again
        .add("cluster", Action::NoOp, &[])
        .add("app", update(), &[])
        .input("app", "token", "cluster", "token");
    again.recorded("cluster", &state).recorded("app", &state);
    Arc::make_mut(&mut again.node("app").step).config =
        json!({"name": "app", "replicas": 3}).into();
    let report = executor(&provider)
        .run(again.build(), &store)
        .await
        .expect("the run itself completes");
    assert_eq!(report.counts.failed, 1, "{report:?}");
    let failure = format!("{report:?}");
    assert!(failure.contains("no longer exists"), "{failure}");
    assert_eq!(
        provider.count(Op::Apply, "app"),
        1,
        "no call without the token"
    );
}
