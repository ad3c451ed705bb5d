//! Short-lived cluster tokens end to end: the quickstart built on a simulated cloud whose
//! cluster tokens rotate every other call and expire many times during the run. The run
//! completes (every refused token re-minted once), a re-plan is all no-op (re-minting moves no
//! fingerprint), and no token — nor any digest of one — is in a state file, the cloud's log,
//! the plan or the events.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bmac_core::event::Event;
use bmac_core::plan::Planner;
use bmac_core::step::Fingerprint;
use bmac_core::{Executor, LocalStore, Plan, Providers, StateStore};
use bmac_providers::setup::sim_config;
use bmac_providers::sim::tokens::{token, TOKEN_PREFIX};
use bmac_providers::SimProvider;
use bmac_steps::expand;
use bmac_steps::spec::Spec;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn quickstart() -> Spec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    Spec::parse(&path.display().to_string(), &text).unwrap_or_else(|e| panic!("{e:?}"))
}

async fn plan(spec: &Spec, store: &LocalStore) -> Plan {
    let state = store.load().await.unwrap().state;
    let e = expand(spec).unwrap();
    Planner::new(e.steps, &state)
        .sources(e.sources)
        .plan()
        .unwrap()
}

/// A provider over the spec's persisted cloud whose tokens admit two calls and live 100 ms
/// (a 20 s lifetime at speed 0.005), while the in-cluster half of the build takes seconds.
fn rotating(spec: &Spec, dir: &Path) -> Arc<SimProvider> {
    let mut config = sim_config(spec, dir).unwrap();
    config.seed = 11;
    config.speed = 0.005;
    config.token_ttl = Duration::from_secs(20);
    config.token_uses = Some(2);
    Arc::new(SimProvider::new(config).unwrap())
}

/// Every way a token could be written down: itself, and the digests an engine could take of
/// it (the fingerprint of it as a JSON value, SHA-256 of its bytes).
fn leak_needles(cluster_id: &str, minted: u64) -> Vec<String> {
    (0..minted)
        .flat_map(|n| {
            let t = token(11, cluster_id, n);
            let fingerprint = Fingerprint::of_value(&Value::String(t.clone())).to_string();
            let sha: String = Sha256::digest(t.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            [t, fingerprint, sha]
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_expiring_tokens_complete_the_build_and_reach_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let spec = quickstart();
    let sim = rotating(&spec, dir.path());
    let first = plan(&spec, &store).await;
    let plan_file = dir.path().join("plan.json");
    std::fs::write(&plan_file, first.to_json()).unwrap();

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let report = Executor::new(Providers::new().fallback(sim.clone()))
        .parallelism(8)
        .events(tx)
        .run(first, &store)
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    let mut events = String::new();
    while let Ok(event) = rx.try_recv() {
        let event: Event = event;
        events.push_str(&serde_json::to_string(&event).unwrap());
        events.push('\n');
    }

    // Tokens rotated (refused, then re-minted) and expired (re-minted before use) many times.
    let stats = sim.stats().total;
    assert!(stats.unauthorized >= 5, "{stats:?}");
    assert!(
        stats.tokens_minted > stats.unauthorized + 1,
        "some tokens were re-minted because they expired: {stats:?}"
    );
    assert_eq!(stats.faults_injected, 0);

    // A new process (fresh token cache, fresh token service) has nothing to do: the
    // credential source in state did not change, so no fingerprint moved.
    let again = plan(&spec, &store).await;
    assert!(!again.has_changes(), "{}", again.summary());
    let second = rotating(&spec, dir.path());
    let report = Executor::new(Providers::new().fallback(second.clone()))
        .run(again, &store)
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    assert_eq!(
        second.stats().total.creates + second.stats().total.updates,
        0
    );

    // Scan everything the runs wrote for every token minted and its digests.
    let state = store.load().await.unwrap().state;
    let cluster = state.applied(&"cluster".parse().unwrap()).unwrap();
    let cluster_id = cluster
        .outputs
        .get("cluster_id")
        .and_then(|v| v.value())
        .and_then(Value::as_str)
        .unwrap()
        .to_owned();
    let minted = stats.tokens_minted.max(second.stats().total.tokens_minted);
    let needles = leak_needles(&cluster_id, minted);
    let mut haystacks = vec![("events".to_owned(), events)];
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            haystacks.push((
                path.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
    assert!(
        haystacks.len() >= 4,
        "state, cloud, plan and events scanned"
    );
    for (name, text) in &haystacks {
        assert!(!text.contains(TOKEN_PREFIX), "{name} holds a token");
        for needle in &needles {
            assert!(
                !text.contains(needle.as_str()),
                "{name} holds a token or its digest"
            );
        }
    }
}
