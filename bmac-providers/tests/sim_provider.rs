//! The simulated provider's behaviour as the executor sees it: latency, idempotency,
//! determinism, eventual consistency, cluster tokens and cancellation.

use std::time::Duration;

use bmac_core::provider::{
    ApplyRequest, DestroyRequest, ErrorClass, ObserveRequest, Observed, Prior, Provider,
    ProviderError, StepContext,
};
use bmac_core::step::{Inputs, Kind, OutputValue, Outputs, Step, StepId};
use bmac_providers::sim::{FaultRule, SimConfig, SimProvider};
use serde_json::{json, Value};
use tokio::time::Instant;

fn step(id: &str, kind: &str, config: Value) -> Step {
    Step::new(StepId::new(id).unwrap(), Kind::new(kind), &config).unwrap()
}

fn provider(seed: u64, speed: f64) -> SimProvider {
    SimProvider::new(SimConfig {
        seed,
        speed,
        ..SimConfig::default()
    })
    .unwrap()
}

fn ctx(attempt: u32) -> StepContext {
    StepContext::new(Default::default(), attempt)
}

async fn apply(p: &SimProvider, s: &Step, attempt: u32) -> Result<Outputs, ProviderError> {
    p.apply(ApplyRequest {
        step: s,
        inputs: &Inputs::default(),
        prior: None,
        ctx: &ctx(attempt),
    })
    .await
}

async fn observe(p: &SimProvider, s: &Step) -> Observed {
    observe_with(p, s, &Inputs::default()).await.unwrap()
}

async fn observe_with(
    p: &SimProvider,
    s: &Step,
    inputs: &Inputs,
) -> Result<Observed, ProviderError> {
    p.observe(ObserveRequest {
        step: s,
        inputs,
        prior: None,
        ctx: &ctx(1),
    })
    .await
}

async fn apply_with(p: &SimProvider, s: &Step, inputs: &Inputs) -> Result<Outputs, ProviderError> {
    p.apply(ApplyRequest {
        step: s,
        inputs,
        prior: None,
        ctx: &ctx(1),
    })
    .await
}

async fn destroy(p: &SimProvider, s: &Step) -> Result<(), ProviderError> {
    let prior = Prior::new(s.config.clone(), Outputs::new());
    p.destroy(DestroyRequest {
        step: s,
        inputs: &Inputs::default(),
        prior: &prior,
        ctx: &ctx(1),
    })
    .await
}

fn cluster() -> Step {
    step(
        "prod.cluster",
        "cluster",
        json!({"name": "prod", "region": "eu-west-1", "version": "1.31", "endpoint": {"public": false}}),
    )
}

fn text(outputs: &Outputs, name: &str) -> String {
    outputs
        .get(name)
        .and_then(|v| v.value())
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("output {name} missing in {outputs:?}"))
        .to_owned()
}

/// Everything observable about a sequence of calls: results (or error text) and timings.
async fn transcript(p: &SimProvider, steps: &[Step]) -> Vec<String> {
    let mut lines = Vec::new();
    for s in steps {
        for attempt in 1..=3 {
            let start = Instant::now();
            let result = apply(p, s, attempt).await;
            let shown = match result {
                Ok(out) => format!(
                    "ok {:?}",
                    out.0.values().filter_map(|v| v.value()).collect::<Vec<_>>()
                ),
                Err(e) => format!("err {:?} {}", e.class, e.message),
            };
            lines.push(format!("{} #{attempt} {:?} {shown}", s.id, start.elapsed()));
        }
    }
    lines
}

#[tokio::test(start_paused = true)]
async fn same_seed_replays_outputs_latencies_and_faults() {
    let steps = vec![
        cluster(),
        step("prod.pool", "node_pool", json!({"desired": 3})),
        step("prod.ns", "namespace", json!({"name": "payments"})),
        step("prod.role", "iam_role", json!({"name": "payments-reader"})),
    ];
    let faulty = |seed| {
        SimProvider::new(SimConfig {
            seed,
            speed: 0.01,
            faults: FaultRule::parse_list("*:server:0.4,*:throttle:0.3").unwrap(),
            ..SimConfig::default()
        })
        .unwrap()
    };
    let a = transcript(&faulty(7), &steps).await;
    let b = transcript(&faulty(7), &steps).await;
    assert_eq!(a, b);
    assert!(
        a.iter().any(|l| l.contains("err")),
        "no fault drawn: {a:#?}"
    );
    assert!(
        a.iter().any(|l| l.contains("ok")),
        "every call failed: {a:#?}"
    );

    // Another seed is another cloud: other ids.
    let s = cluster();
    let x = apply(&provider(1, 0.0), &s, 1).await.unwrap();
    let y = apply(&provider(1, 0.0), &s, 1).await.unwrap();
    let z = apply(&provider(2, 0.0), &s, 1).await.unwrap();
    assert_eq!(x, y);
    assert_ne!(text(&x, "cluster_id"), text(&z, "cluster_id"));
    assert_eq!(text(&x, "endpoint"), text(&z, "endpoint"));
}

#[tokio::test(start_paused = true)]
async fn latency_follows_kind_and_speed() {
    async fn took(p: &SimProvider, s: &Step) -> Duration {
        let start = Instant::now();
        apply(p, s, 1).await.unwrap();
        start.elapsed()
    }
    let ns = step("ns", "namespace", json!({}));
    let real = provider(0, 1.0);
    let cluster_time = took(&real, &cluster()).await;
    let ns_time = took(&real, &ns).await;
    assert!(
        (Duration::from_secs(480)..=Duration::from_secs(720)).contains(&cluster_time),
        "{cluster_time:?}"
    );
    assert!(
        (Duration::from_millis(80)..=Duration::from_millis(120)).contains(&ns_time),
        "{ns_time:?}"
    );

    let fast = provider(0, 0.01);
    let fast_cluster = took(&fast, &cluster()).await;
    assert!(
        (Duration::from_millis(4800)..=Duration::from_millis(7200)).contains(&fast_cluster),
        "{fast_cluster:?}"
    );
    // Same seed, step and attempt: the same jitter, so exactly 100× shorter (to rounding).
    let ratio = cluster_time.as_secs_f64() / fast_cluster.as_secs_f64();
    assert!((ratio - 100.0).abs() < 0.01, "{ratio}");

    let instant = provider(0, 0.0);
    assert_eq!(took(&instant, &cluster()).await, Duration::ZERO);

    // The executor's critical-path weights: scaled, and ordered like the real world.
    let weight = |p: &SimProvider, s: &Step| p.expected_duration(s).unwrap();
    assert_eq!(weight(&fast, &cluster()), Duration::from_secs(6));
    assert!(weight(&fast, &cluster()) > weight(&fast, &step("np", "node_pool", json!({}))));
    assert!(weight(&fast, &step("np", "node_pool", json!({}))) > weight(&fast, &ns));
    assert!(weight(&instant, &cluster()) > weight(&instant, &ns));
}

#[tokio::test]
async fn applying_again_changes_nothing_and_a_new_config_updates_in_place() {
    let p = provider(3, 0.0);
    let pool = step(
        "pool",
        "node_pool",
        json!({"scaling": {"desired": 3, "min": 1, "max": 5}}),
    );
    let first = apply(&p, &pool, 1).await.unwrap();
    let again = apply(&p, &pool, 1).await.unwrap();
    assert_eq!(first, again);
    let stats = p.stats().kind("node_pool");
    assert_eq!((stats.creates, stats.updates, stats.unchanged), (1, 0, 1));
    assert_eq!(p.cloud().get("pool").unwrap().generation, 1);

    let bigger = step(
        "pool",
        "node_pool",
        json!({"scaling": {"desired": 5, "min": 1, "max": 5}}),
    );
    let updated = apply(&p, &bigger, 1).await.unwrap();
    assert_eq!(updated.get("nodes").unwrap().value(), Some(&json!(5)));
    assert_eq!(
        text(&updated, "node_group_id"),
        text(&first, "node_group_id")
    );
    let stats = p.stats();
    assert_eq!((stats.total.creates, stats.total.updates), (1, 1));
    assert_eq!(p.cloud().get("pool").unwrap().generation, 2);
    assert_eq!(p.cloud().len(), 1);

    // Same id, another kind: the step's resource does not exist yet, and applying it
    // replaces the old one (a create).
    let ns = step("pool", "namespace", json!({}));
    assert_eq!(observe(&p, &ns).await, Observed::Absent);
    apply(&p, &ns, 1).await.unwrap();
    assert_eq!(p.stats().kind("namespace").creates, 1);
    assert_eq!(p.cloud().get("pool").unwrap().kind, "namespace");
}

#[tokio::test]
async fn observe_reports_what_exists_and_destroy_removes_it() {
    let p = provider(0, 0.0);
    let c = cluster();
    assert_eq!(observe(&p, &c).await, Observed::Absent);
    let outputs = apply(&p, &c, 1).await.unwrap();
    match observe(&p, &c).await {
        Observed::Present {
            config,
            outputs: seen,
        } => {
            assert_eq!(config, c.config);
            assert_eq!(seen, outputs);
        }
        other => panic!("created cluster reads as {other:?}"),
    }
    destroy(&p, &c).await.unwrap();
    assert_eq!(observe(&p, &c).await, Observed::Absent);
    destroy(&p, &c)
        .await
        .expect("destroying what is gone succeeds");
    let stats = p.stats().kind("cluster");
    assert_eq!((stats.destroys, stats.observes), (1, 3));
    assert!(p.cloud().is_empty());
}

#[tokio::test(start_paused = true)]
async fn destroy_takes_about_half_the_create_latency() {
    let p = provider(0, 1.0);
    let pool = step("pool", "node_pool", json!({}));
    apply(&p, &pool, 1).await.unwrap();
    let start = Instant::now();
    destroy(&p, &pool).await.unwrap();
    let took = start.elapsed();
    assert!(
        (Duration::from_secs(96)..=Duration::from_secs(144)).contains(&took),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn new_resources_become_visible_within_the_consistency_window() {
    let p = SimProvider::new(SimConfig {
        seed: 11,
        speed: 1.0,
        consistency_delay: Duration::from_secs(5),
        ..SimConfig::default()
    })
    .unwrap();
    let steps: Vec<Step> = (0..20)
        .map(|i| step(&format!("ns{i}"), "namespace", json!({})))
        .collect();
    for s in &steps {
        apply(&p, s, 1).await.unwrap();
    }
    let mut absent = 0;
    for s in &steps {
        assert!(p.cloud().get(s.id.as_str()).is_some(), "not created");
        if observe(&p, s).await == Observed::Absent {
            absent += 1;
        }
    }
    // Each namespace is observed about 2 s after its creation, in a 5 s window: some have
    // settled, some not (which ones is fixed by the seed).
    assert!(
        (3..18).contains(&absent),
        "{absent} of 20 fresh namespaces read as absent"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    for s in &steps {
        assert!(
            matches!(observe(&p, s).await, Observed::Present { .. }),
            "{} still invisible after the window",
            s.id
        );
    }
}

#[tokio::test]
async fn the_cluster_hands_out_a_source_and_in_cluster_calls_mint_tokens() {
    let p = provider(5, 0.0);
    let c = cluster();
    let outputs = apply(&p, &c, 1).await.unwrap();
    // Where to mint tokens, never a token: a plain output naming the simulated cluster.
    let credentials = outputs.get("credentials").unwrap();
    assert!(!credentials.is_sensitive());
    assert_eq!(
        credentials.value(),
        Some(&json!({"type": "sim", "cluster_id": text(&outputs, "cluster_id")}))
    );
    assert!(!serde_json::to_string(&outputs).unwrap().contains("simtok."));

    // An in-cluster step authenticates with a token minted from that source; the token stays
    // in the provider's memory, out of every output.
    let mut inputs = Inputs::default();
    inputs.0.insert("credentials".into(), credentials.clone());
    let ns = step("prod.ns", "namespace", json!({"name": "apps"}));
    let made = apply_with(&p, &ns, &inputs).await.unwrap();
    assert!(!format!("{made:?}").contains("simtok."));
    assert!(!serde_json::to_string(&made).unwrap().contains("simtok."));
    assert!(matches!(
        observe_with(&p, &ns, &inputs).await.unwrap(),
        Observed::Present { .. }
    ));
    let counted = p.stats().kind("namespace");
    assert_eq!((counted.tokens_minted, counted.unauthorized), (1, 0));

    // A source the simulator cannot mint from is a permanent error naming it.
    let mut kube = Inputs::default();
    kube.0.insert(
        "credentials".into(),
        OutputValue::Plain(json!({"type": "kubeconfig", "context": "prod"})),
    );
    let err = apply_with(&p, &ns, &kube).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Permanent);
    assert_eq!(err.code.as_deref(), Some("InvalidCredentialSource"));
}

#[tokio::test(start_paused = true)]
async fn tokens_that_rotate_on_every_call_and_expire_are_reminted_once_each_time() {
    let p = SimProvider::new(SimConfig {
        seed: 3,
        speed: 1.0,
        token_ttl: Duration::from_secs(2),
        token_uses: Some(1),
        ..SimConfig::default()
    })
    .unwrap();
    let c = cluster();
    let outputs = apply(&p, &c, 1).await.unwrap();
    let mut inputs = Inputs::default();
    inputs.0.insert(
        "credentials".into(),
        outputs.get("credentials").unwrap().clone(),
    );
    let ns = step("prod.ns", "namespace", json!({"name": "apps"}));
    // First call: one mint, admitted. Every later call: the used-up token is refused (401),
    // dropped and re-minted once.
    apply_with(&p, &ns, &inputs).await.unwrap();
    for _ in 0..3 {
        observe_with(&p, &ns, &inputs).await.unwrap();
    }
    let counted = p.stats().kind("namespace");
    assert_eq!((counted.tokens_minted, counted.unauthorized), (4, 3));

    // Past its lifetime a token is re-minted before use, without a 401 round trip.
    let q = SimProvider::with_cloud(
        SimConfig {
            seed: 3,
            speed: 1.0,
            token_ttl: Duration::from_secs(2),
            ..SimConfig::default()
        },
        p.cloud().clone(),
    )
    .unwrap();
    observe_with(&q, &ns, &inputs).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    observe_with(&q, &ns, &inputs).await.unwrap();
    let counted = q.stats().kind("namespace");
    assert_eq!((counted.tokens_minted, counted.unauthorized), (2, 0));
}

/// Applies `s` with `context`, cancelling the context after `after`; the call must fail.
async fn apply_cancelled_after(
    p: &SimProvider,
    s: &Step,
    context: &StepContext,
    after: Duration,
) -> ProviderError {
    let token = context.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        token.cancel();
    });
    p.apply(ApplyRequest {
        step: s,
        inputs: &Inputs::default(),
        prior: None,
        ctx: context,
    })
    .await
    .unwrap_err()
}

#[tokio::test(start_paused = true)]
async fn a_long_create_is_accepted_at_once_and_goes_on_in_the_cloud_when_the_caller_stops() {
    let p = provider(0, 1.0);
    let c = cluster();
    let err = apply_cancelled_after(&p, &c, &ctx(1), Duration::from_secs(60)).await;
    assert!(err.is_retryable());
    assert!(
        err.message.contains("the create goes on"),
        "{}",
        err.message
    );
    // The cloud accepted the create: the cluster exists, still being created.
    assert_eq!(p.stats().total.creates, 1);
    let operation = p.cloud().get("prod.cluster").unwrap().operation.unwrap();
    assert!(operation.id.starts_with("sim-op-") && !operation.done);
    match observe(&p, &c).await {
        Observed::Pending { status } => {
            assert_eq!(status, format!("CREATING (operation {})", operation.id))
        }
        other => panic!("a cluster being created reads as {other:?}"),
    }
    // Applying again polls the same operation; nothing is created a second time.
    apply(&p, &c, 2).await.unwrap();
    assert_eq!(p.stats().total.creates, 1);
    let done = p.cloud().get("prod.cluster").unwrap().operation.unwrap();
    assert_eq!((done.id, done.done), (operation.id, true));
}

#[tokio::test(start_paused = true)]
async fn cancellation_mid_latency_returns_promptly_without_the_change() {
    let p = provider(0, 1.0);
    // A policy engine takes 90 s and is not a long operation: cancelled, nothing is made.
    let c = step("policy", "policy_engine", json!({"engine": "kyverno"}));
    let context = ctx(1);
    let start = Instant::now();
    let err = apply_cancelled_after(&p, &c, &context, Duration::from_secs(1)).await;
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(err.class, ErrorClass::Retryable);
    assert!(err.message.contains("cancelled"), "{}", err.message);
    assert!(p.cloud().is_empty());
    assert_eq!(p.stats().total.creates, 0);

    // Already cancelled: no wait at all.
    let start = Instant::now();
    let err = p
        .observe(ObserveRequest {
            step: &c,
            inputs: &Inputs::default(),
            prior: None,
            ctx: &context,
        })
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert!(err.is_retryable());
}

#[tokio::test]
async fn every_kind_returns_its_outputs() {
    let p = provider(9, 0.0);
    let cases: &[(&str, Value, &[&str])] = &[
        (
            "cluster",
            json!({"name": "prod", "region": "eu-west-1", "version": "1.31"}),
            &[
                "endpoint",
                "ca_data",
                "oidc_issuer",
                "cluster_id",
                "credentials",
            ],
        ),
        ("cni", json!({"plugin": "cilium"}), &["plugin", "version"]),
        (
            "node_pool",
            json!({"scaling": {"min": 1, "max": 3, "desired": 2}}),
            &["node_group_id", "nodes"],
        ),
        ("storage_class", json!({"name": "gp3"}), &["name"]),
        (
            "object_bucket",
            json!({"name": "audit_logs"}),
            &["bucket", "url"],
        ),
        (
            "audit_logging",
            json!({"cluster": "prod", "log_types": ["audit"], "retention_days": 30}),
            &["log_group"],
        ),
        ("audit_archive", json!({}), &["export_id"]),
        ("audit_alarm", json!({}), &["alarm_id"]),
        ("namespace", json!({"name": "payments"}), &["name", "uid"]),
        (
            "policy_engine",
            json!({"engine": "gatekeeper"}),
            &["engine", "version"],
        ),
        ("policy", json!({"name": "disallow-privileged"}), &["name"]),
        (
            "registry_mirror",
            json!({"upstream": "docker.io", "mirror": "registry.example.com/hub", "pull_through_cache": true}),
            &["mirror_url"],
        ),
        (
            "pod_security_labels",
            json!({
                "namespace": "web",
                "enforce": {"level": "restricted", "version": "latest"},
                "audit": {"level": "restricted", "version": "latest"},
                "warn": {"level": "baseline", "version": "v1.30"},
            }),
            &["namespace", "labels"],
        ),
        ("iam_role", json!({"name": "reader"}), &["arn"]),
        (
            "service_account",
            json!({"namespace": "payments", "name": "api", "role_annotation": "sim.bmac.invalid/role"}),
            &["name", "namespace", "annotations"],
        ),
        ("manifest", json!({"objects": [{}, {}, {}]}), &["objects"]),
        ("custom_thing", json!({}), &["id"]),
    ];
    for (kind, config, expected) in cases {
        let out = apply(&p, &step(&format!("x.{kind}"), kind, config.clone()), 1)
            .await
            .unwrap();
        let mut names: Vec<&str> = out.0.keys().collect();
        names.sort_unstable();
        let mut want = expected.to_vec();
        want.sort_unstable();
        assert_eq!(names, want, "{kind}");
    }
    let all = p.cloud().resources();
    let get = |kind: &str, name: &str| {
        let r = all.iter().find(|r| r.kind == kind).unwrap();
        r.outputs.get(name).unwrap().value().unwrap().clone()
    };
    assert_eq!(
        get("cluster", "endpoint"),
        json!("https://prod.eu-west-1.sim.bmac.invalid")
    );
    assert_eq!(
        get("object_bucket", "url"),
        json!("sim://bucket/audit-logs")
    );
    assert_eq!(get("node_pool", "nodes"), json!(2));
    assert_eq!(get("manifest", "objects"), json!(3));
    assert_eq!(get("policy_engine", "engine"), json!("gatekeeper"));
    assert_eq!(get("namespace", "name"), json!("payments"));
    assert_eq!(get("service_account", "name"), json!("api"));
    // No `role` input: nothing to annotate with.
    assert_eq!(get("service_account", "annotations"), json!({}));
    assert_eq!(get("audit_logging", "log_group"), json!("/sim/audit/prod"));
    assert_eq!(
        get("registry_mirror", "mirror_url"),
        json!("https://registry.example.com/hub")
    );
    assert_eq!(
        get("pod_security_labels", "labels"),
        json!({
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
            "pod-security.kubernetes.io/audit": "restricted",
            "pod-security.kubernetes.io/audit-version": "latest",
            "pod-security.kubernetes.io/warn": "baseline",
            "pod-security.kubernetes.io/warn-version": "v1.30",
        })
    );
    let arn = get("iam_role", "arn");
    let arn = arn.as_str().unwrap();
    assert!(
        arn.starts_with("arn:sim:iam::") && arn.ends_with(":role/reader"),
        "{arn}"
    );
    let id = get("custom_thing", "id");
    let id = id.as_str().unwrap();
    assert!(id.starts_with("sim-") && id.len() == 16, "{id}");
    let ca = get("cluster", "ca_data");
    assert!(
        ca.as_str().unwrap().starts_with("LS0tLS1CRUdJTi"),
        "not base64 PEM: {ca}"
    );
}

#[tokio::test]
async fn invalid_configs_are_permanent_400s() {
    let p = provider(0, 0.0);
    for (kind, config) in [
        ("node_pool", json!({"scaling": {"desired": "three"}})),
        ("node_pool", json!({"scaling": {"desired": 9, "max": 5}})),
        ("node_pool", json!({"scaling": {"min": 4, "max": 2}})),
        ("node_pool", json!({"scaling": 3})),
        ("cluster", json!({"region": 7})),
        ("service_account", json!({"role_annotation": ["a"]})),
        (
            "pod_security_labels",
            json!({"enforce": {"level": "root", "version": "latest"}}),
        ),
        ("pod_security_labels", json!({"audit": "restricted"})),
        ("namespace", json!(["not", "an", "object"])),
    ] {
        let err = apply(&p, &step("bad", kind, config.clone()), 1)
            .await
            .unwrap_err();
        assert_eq!(err.class, ErrorClass::Permanent, "{kind} {config}");
        assert!(
            err.message.starts_with("400 invalid request"),
            "{}",
            err.message
        );
    }
    assert!(p.cloud().is_empty());
}

#[tokio::test]
async fn a_service_account_is_annotated_with_its_role_input() {
    let p = provider(2, 0.0);
    let sa = step(
        "wi.sa",
        "service_account",
        json!({"namespace": "payments", "name": "api", "role_annotation": "sim.bmac.invalid/role"}),
    );
    let mut inputs = Inputs::default();
    inputs.0.insert(
        "role".into(),
        bmac_core::OutputValue::Plain(json!("arn:sim:iam::1:role/api")),
    );
    let out = p
        .apply(ApplyRequest {
            step: &sa,
            inputs: &inputs,
            prior: None,
            ctx: &ctx(1),
        })
        .await
        .unwrap();
    assert_eq!(
        out.get("annotations").unwrap().value(),
        Some(&json!({"sim.bmac.invalid/role": "arn:sim:iam::1:role/api"}))
    );
    assert_eq!(
        out.get("namespace").unwrap().value(),
        Some(&json!("payments"))
    );
}

#[tokio::test]
async fn an_existing_role_keeps_its_arn() {
    let p = provider(2, 0.0);
    let role = step(
        "wi.role",
        "iam_role",
        json!({"name": "x", "existing": "arn:aws:iam::123456789012:role/app", "namespace": "a", "service_account": "b"}),
    );
    let out = apply(&p, &role, 1).await.unwrap();
    assert_eq!(
        out.get("arn").unwrap().value(),
        Some(&json!("arn:aws:iam::123456789012:role/app"))
    );
}
