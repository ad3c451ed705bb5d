//! Fault injection: what a user who sets `BMAC_SIM_FAULTS` sees the cloud do.

use std::time::Duration;

use bmac_core::provider::{
    ApplyRequest, DestroyRequest, ErrorClass, Prior, Provider, ProviderError, StepContext,
};
use bmac_core::step::{Inputs, Kind, Outputs, Step, StepId};
use bmac_providers::sim::{FaultKind, FaultRule, SimConfig, SimProvider};
use serde_json::{json, Value};
use tokio::time::Instant;

fn step(id: &str, kind: &str, config: Value) -> Step {
    Step::new(StepId::new(id).unwrap(), Kind::new(kind), &config).unwrap()
}

fn faulty(faults: &str, speed: f64) -> SimProvider {
    SimProvider::new(SimConfig {
        seed: 42,
        speed,
        faults: FaultRule::parse_list(faults).unwrap(),
        ..SimConfig::default()
    })
    .unwrap()
}

async fn apply(p: &SimProvider, s: &Step, attempt: u32) -> Result<Outputs, ProviderError> {
    let ctx = StepContext::new(Default::default(), attempt);
    p.apply(ApplyRequest {
        step: s,
        inputs: &Inputs::default(),
        prior: None,
        ctx: &ctx,
    })
    .await
}

async fn destroy(p: &SimProvider, s: &Step, attempt: u32) -> Result<(), ProviderError> {
    let ctx = StepContext::new(Default::default(), attempt);
    let prior = Prior::new(s.config.clone(), Outputs::new());
    p.destroy(DestroyRequest {
        step: s,
        inputs: &Inputs::default(),
        prior: &prior,
        ctx: &ctx,
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn a_rule_limited_to_two_times_fails_twice_then_lets_the_step_through() {
    let p = faulty("node_pool:throttle:1.0:2", 1.0);
    let pool = step("pool", "node_pool", json!({"scaling": {"desired": 2}}));
    for attempt in 1..=2 {
        let start = Instant::now();
        let err = apply(&p, &pool, attempt).await.unwrap_err();
        assert_eq!(err.class, ErrorClass::Retryable);
        assert!(
            err.message.starts_with("429 too many requests"),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("node_pool:throttle:1:2"),
            "{}",
            err.message
        );
        assert_eq!(err.retry_after, Some(Duration::from_secs(1)));
        // A rejected request comes back fast, not after the 4-minute create.
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
    }
    assert!(
        p.cloud().is_empty(),
        "a throttled request must not create anything"
    );
    let outputs = apply(&p, &pool, 3).await.unwrap();
    assert_eq!(outputs.get("nodes").unwrap().value(), Some(&json!(2)));
    let stats = p.stats();
    assert_eq!(stats.kind("node_pool").faults_injected, 2);
    assert_eq!(stats.total.creates, 1);

    // Other kinds are not affected by a rule for node_pool.
    apply(&p, &step("ns", "namespace", json!({})), 1)
        .await
        .unwrap();
    assert_eq!(p.stats().kind("namespace").faults_injected, 0);
}

#[tokio::test]
async fn permanent_faults_stay_permanent() {
    let p = faulty("*:permanent:1.0", 0.0);
    let s = step("role", "iam_role", json!({"name": "r"}));
    for attempt in 1..=3 {
        let err = apply(&p, &s, attempt).await.unwrap_err();
        assert_eq!(err.class, ErrorClass::Permanent);
        assert!(!err.is_retryable());
        assert!(
            err.message.starts_with("400 invalid request"),
            "{}",
            err.message
        );
    }
    assert!(p.cloud().is_empty());
    assert_eq!(p.stats().total.faults_injected, 3);
}

#[tokio::test]
async fn server_errors_are_retryable_500s() {
    let p = faulty("*:server:1.0:1", 0.0);
    let s = step("ns", "namespace", json!({}));
    let err = apply(&p, &s, 1).await.unwrap_err();
    assert!(err.is_retryable());
    assert!(
        err.message.starts_with("500 internal error"),
        "{}",
        err.message
    );
    assert_eq!(err.retry_after, None);
    apply(&p, &s, 2).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_timeout_loses_the_response_not_the_change() {
    let p = faulty("cluster:timeout:1.0:1", 1.0);
    let c = step("c", "cluster", json!({"name": "c"}));
    let start = Instant::now();
    let err = apply(&p, &c, 1).await.unwrap_err();
    assert!(err.is_retryable());
    assert!(err.message.contains("timed out"), "{}", err.message);
    assert!(
        start.elapsed() >= Duration::from_secs(480),
        "{:?}",
        start.elapsed()
    );
    assert!(
        p.cloud().get("c").is_some(),
        "the change should have landed"
    );
    // The retry converges instead of duplicating.
    apply(&p, &c, 2).await.unwrap();
    let stats = p.stats().kind("cluster");
    assert_eq!(
        (stats.creates, stats.unchanged, stats.faults_injected),
        (1, 1, 1)
    );
    assert_eq!(p.cloud().len(), 1);
}

#[tokio::test]
async fn destroy_is_faulted_too() {
    let p = faulty("object_bucket:server:1.0:1", 0.0);
    let b = step("b", "object_bucket", json!({}));
    apply(&p, &b, 1).await.unwrap_err();
    apply(&p, &b, 2).await.unwrap();
    // The rule fired its one time on apply; destroy goes through.
    destroy(&p, &b, 1).await.unwrap();
    assert!(p.cloud().is_empty());

    let p = faulty("*:throttle:1.0", 0.0);
    let q = SimProvider::with_cloud(
        SimConfig {
            speed: 0.0,
            ..SimConfig::default()
        },
        p.cloud().clone(),
    )
    .unwrap();
    apply(&q, &b, 1).await.unwrap();
    let err = destroy(&p, &b, 1).await.unwrap_err();
    assert!(err.is_retryable());
    assert!(
        p.cloud().get("b").is_some(),
        "a throttled destroy removed the bucket"
    );
}

#[tokio::test]
async fn rates_are_honoured_and_reproducible() {
    let run = || async {
        let p = faulty("namespace:server:0.3", 0.0);
        let mut failed = Vec::new();
        for i in 0..200 {
            let s = step(&format!("ns{i}"), "namespace", json!({}));
            if apply(&p, &s, 1).await.is_err() {
                failed.push(i);
            }
        }
        (failed, p.stats().total.faults_injected)
    };
    let (a, count) = run().await;
    let (b, _) = run().await;
    assert_eq!(a, b, "the same seed must fail the same steps");
    assert_eq!(count, a.len() as u64);
    assert!(
        (35..=85).contains(&a.len()),
        "{} of 200 failed at rate 0.3",
        a.len()
    );
}

#[tokio::test]
async fn rules_are_checked_in_order_and_rate_zero_never_fires() {
    let p = SimProvider::new(SimConfig {
        speed: 0.0,
        faults: vec![
            FaultRule::new(Some("cni"), FaultKind::Permanent, 0.0),
            FaultRule::new(None, FaultKind::Throttle, 1.0).times(1),
            FaultRule::new(None, FaultKind::ServerError, 1.0).times(1),
        ],
        ..SimConfig::default()
    })
    .unwrap();
    let s = step("cni", "cni", json!({}));
    let first = apply(&p, &s, 1).await.unwrap_err();
    assert!(first.message.starts_with("429"), "{}", first.message);
    let second = apply(&p, &s, 2).await.unwrap_err();
    assert!(second.message.starts_with("500"), "{}", second.message);
    apply(&p, &s, 3).await.unwrap();
}
