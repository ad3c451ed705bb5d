//! The GCP provider's infrastructure handlers — network, Secrets key, GKE cluster and node pool —
//! against the project's own Google Cloud API test server (a separate process, see
//! `bmac-providers/gcp-test-server`), through the real google-cloud-rust clients with real
//! OAuth credentials (an `authorized_user` file whose token endpoint is the server's).
//!
//! Shown: a network, key, cluster and pool built with the fields GKE needs; a re-apply that sends
//! no mutating call; an autoscaling change that is exactly one update; a hand change of the
//! authorized networks shown by observe and restored by apply; a create interrupted while its
//! operation runs, resumed from the checkpointed operation without a second create; destroy in
//! reverse; 429s retried as retryable and 403 permanent, naming the permission. Workload
//! identity: a Google service account with its project roles and the pool member's
//! `workloadIdentityUser` binding, others' grants (conditional ones too) kept, a stale etag
//! retried, a hand-removed grant restored, a changed role swapped, all undone on destroy; a node
//! pool's account with GKE's node roles only. Registry mirrors: Artifact Registry remote
//! repositories (Docker Hub's preset, a custom remote), re-applied without writes, a repository of
//! that name that is not such a remote refused, a hand-made one adopted and kept on destroy; the
//! pool's containerd registry hosts pointing at them, restored after a hand removal.
//! Cloud Storage (the server's JSON API service): an
//! `object_bucket` made with uniform access, public access prevention enforced, a retention
//! policy of `retention_days`, a lifecycle rule and bmac's labels in one insert; re-applied
//! without writes; a hand-lowered retention and opened public access shown by observe and
//! restored by one metageneration-guarded patch; `lock_retention` locking it with one call,
//! a later lower retention refused permanently before any call (and by the API), a higher one
//! patched; destroy keeping a bucket bmac did not make (adopted by name and secured, not
//! recreated) or made without `force_destroy`, and deleting a `force_destroy` one after its
//! objects — failing, permanently and naming retention, while they are retained. An
//! `audit_archive` sink into `storage.googleapis.com/BUCKET` with the cluster's audit filter and
//! its own writer identity, granted only `roles/storage.objectCreator` on that bucket
//! (others' bucket bindings, a conditional one too, kept; nothing on the project); re-applied
//! without writes; a hand-removed grant shown as drift and restored; destroy removing the sink
//! and the grant.

use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bmac_core::provider::{
    ApplyRequest, DestroyRequest, ObserveRequest, Observed, Prior, Provider, StepContext,
};
use bmac_core::{Inputs, OutputValue, Outputs, ProviderError, Step, StepId};
use bmac_providers::gcp::audit::OBJECT_CREATOR;
use bmac_providers::gcp::operation::{checkpoint, Op};
use bmac_providers::gcp::GcpProvider;
use bmac_providers::{CloudConfig, Overrides};
use bmac_steps::config::{
    AuditAlarmConfig, AuditArchiveConfig, AuditLoggingConfig, BucketConfig, ClusterConfig, Disk,
    EncryptionKeyConfig, EndpointAccess, IamRoleConfig, IdentityBindingConfig, NetworkConfig,
    NodePoolConfig, Scaling, SecondaryRanges,
};
use bmac_steps::kinds;
use bmac_steps::spec::Spec;
use serde_json::{json, Value};

#[path = "../gcp-test-server/tests/support/run.rs"]
mod run_on_big_stack;
use run_on_big_stack::run;

const REGION: &str = "europe-west1";

/// The test server of this test binary (one per process: the credentials file names its token
/// endpoint, and google-cloud-auth reads that from the process environment). It lives as long
/// as the process: it exits when the pipe to its stdin closes.
struct Server {
    _child: Child,
    env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

fn server_binary() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("BMAC_GCP_TEST_SERVER") {
        return p.into();
    }
    // target/debug/deps/<this test> → target/debug/bmac-gcp-test-server
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("bmac-gcp-test-server"))
        .expect("target directory")
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        bmac_providers::gcp::clients::install_crypto();
        let bin = server_binary();
        assert!(
            bin.exists(),
            "{} is missing: build it with `cargo build -p bmac-gcp-test-server` (scripts/gcp-env.sh does)",
            bin.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let env_file = dir.path().join("env");
        let child = Command::new(&bin)
            .arg("--env-file")
            .arg(&env_file)
            .args(["--delay-ms", "300", "--cluster-endpoint", "127.0.0.1:6443"])
            .arg("--exit-with-stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bmac-gcp-test-server");
        let t0 = Instant::now();
        while !env_file.exists() {
            assert!(t0.elapsed() < Duration::from_secs(20), "no env file after 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        let env: Vec<(String, String)> = std::fs::read_to_string(&env_file)
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let token_uri = env
            .iter()
            .find(|(k, _)| k == "BMAC_GCP_OAUTH")
            .map(|(_, v)| v.clone())
            .expect("token endpoint");
        let adc = dir.path().join("adc.json");
        std::fs::write(
            &adc,
            json!({
                "type": "authorized_user",
                "client_id": "bmac-test-client.apps.googleusercontent.com",
                "client_secret": "bmac-test-client-secret",
                "refresh_token": "bmac-test-refresh-token",
                "token_uri": token_uri,
            })
            .to_string(),
        )
        .unwrap();
        // The only credentials this process may use: never the machine's, never the metadata
        // server (which would leave loopback).
        std::env::set_var("GOOGLE_APPLICATION_CREDENTIALS", &adc);
        std::env::set_var("GCE_METADATA_HOST", "127.0.0.1:9");
        Server {
            _child: child,
            env,
            _dir: dir,
        }
    })
}

impl Server {
    fn url(&self, service: &str) -> String {
        let key = format!("CLOUDSDK_API_ENDPOINT_OVERRIDES_{}", service.to_uppercase());
        self.env
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {key}"))
    }

    async fn control(&self, service: &str, method: &str, path: &str, body: Option<Value>) -> Value {
        let client = reqwest::Client::new();
        let url = format!("{}{path}", self.url(service));
        let req = match method {
            "POST" => client.post(url),
            "DELETE" => client.delete(url),
            _ => client.get(url),
        };
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(b.to_string()),
            None => req,
        };
        let resp = req.send().await.expect("control endpoint");
        assert!(
            resp.status().is_success(),
            "{method} {path}: {}",
            resp.status()
        );
        serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap_or(Value::Null)
    }

    /// The mutating requests one service received whose path contains `part`.
    async fn mutations(&self, service: &str, part: &str) -> Vec<Value> {
        let all = self
            .control(
                service,
                "GET",
                &format!("/_bmac/requests?service={service}&mutating=true"),
                None,
            )
            .await;
        all.as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["path"].as_str().is_some_and(|p| p.contains(part)))
            .cloned()
            .collect()
    }
}

/// A provider for cluster `cluster` of project `project`, on the test server.
fn provider(project: &str, cluster: &str) -> GcpProvider {
    let s = server();
    let text = format!(
        "[cluster]\nname = \"{cluster}\"\nprovider = \"gke\"\nregion = \"{REGION}\"\nproject = \"{project}\"\n"
    );
    let spec = Spec::parse("bmac.toml", &text).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config =
        CloudConfig::resolve(&spec, dir.path(), s.env.clone(), &Overrides::default()).unwrap();
    GcpProvider::new(&config)
}

fn step<C: serde::Serialize>(id: &str, kind: &str, config: &C) -> Step {
    Step::new(StepId::new(id).unwrap(), kinds::kind(kind), config).unwrap()
}

fn inputs(pairs: &[(&str, Value)]) -> Inputs {
    Inputs(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OutputValue::Plain(v.clone())))
            .collect(),
    )
}

fn inputs_from(out: &Outputs, names: &[(&str, &str)]) -> Vec<(String, Value)> {
    names
        .iter()
        .map(|(input, output)| {
            let v = out
                .get(output)
                .and_then(|v| v.value())
                .cloned()
                .unwrap_or(Value::Null);
            ((*input).to_owned(), v)
        })
        .collect()
}

async fn apply(
    p: &GcpProvider,
    s: &Step,
    i: &Inputs,
    ctx: &StepContext,
) -> Result<Outputs, ProviderError> {
    p.apply(ApplyRequest {
        step: s,
        inputs: i,
        prior: None,
        ctx,
    })
    .await
}

async fn observe(p: &GcpProvider, s: &Step, i: &Inputs) -> Observed {
    let ctx = StepContext::default();
    p.observe(ObserveRequest {
        step: s,
        inputs: i,
        prior: None,
        ctx: &ctx,
    })
    .await
    .unwrap_or_else(|e| panic!("{e:?}"))
}

async fn destroy(p: &GcpProvider, s: &Step, i: &Inputs, out: Outputs) -> Result<(), ProviderError> {
    let ctx = StepContext::default();
    let prior = Prior::new(s.config.value().clone(), out);
    p.destroy(DestroyRequest {
        step: s,
        inputs: i,
        prior: &prior,
        ctx: &ctx,
    })
    .await
}

fn network_config(cluster: &str) -> NetworkConfig {
    NetworkConfig {
        cluster: cluster.into(),
        cidr: "10.0.0.0/20".into(),
        zones: vec![format!("{REGION}-b")],
        zone_count: 3,
        nat: "single".into(),
        existing: None,
        secondary: Some(SecondaryRanges {
            pods_cidr: "10.16.0.0/14".into(),
            services_cidr: "10.20.0.0/20".into(),
            pods_range: String::new(),
            services_range: String::new(),
        }),
    }
}

fn cluster_config(cluster: &str, project: &str, cidrs: &[&str]) -> ClusterConfig {
    ClusterConfig {
        name: cluster.into(),
        provider: "gke".into(),
        region: Some(REGION.into()),
        version: Some("1.30".into()),
        endpoint: EndpointAccess {
            public: true,
            public_cidrs: cidrs.iter().map(|c| (*c).to_owned()).collect(),
            private: true,
        },
        log_types: Vec::new(),
        kubeconfig: None,
        context: None,
        account: Some(project.into()),
        admins: Vec::new(),
        datapath: Some("cilium".into()),
        network_policy: None,
    }
}

fn pool_config(min: u32, max: u32) -> NodePoolConfig {
    NodePoolConfig {
        name: "general".into(),
        instance_types: vec!["e2-standard-4".into()],
        scaling: Scaling {
            min,
            max,
            desired: min,
        },
        labels: [("team".to_owned(), "platform".to_owned())].into(),
        taints: Vec::new(),
        disk: Disk {
            size_gb: 100,
            kind: "pd-balanced".into(),
            encrypted: true,
        },
        version: Some("1.30".into()),
        mirrors: Vec::new(),
    }
}

/// Everything the cluster step takes, built: network and key.
async fn foundations(p: &GcpProvider, cluster: &str) -> (Step, Outputs, Step, Outputs) {
    let ctx = StepContext::default();
    let net = step("network", kinds::NETWORK, &network_config(cluster));
    let net_out = apply(p, &net, &Inputs::default(), &ctx).await.unwrap();
    let key = step(
        "cluster.key",
        kinds::ENCRYPTION_KEY,
        &EncryptionKeyConfig {
            alias: format!("bmac-{cluster}/secrets"),
            description: "test".into(),
            rotation: true,
            existing: None,
        },
    );
    let key_out = apply(p, &key, &Inputs::default(), &ctx).await.unwrap();
    (net, net_out, key, key_out)
}

fn cluster_inputs(net_out: &Outputs, key_out: &Outputs) -> Inputs {
    let mut pairs = inputs_from(
        net_out,
        &[
            ("network", "vpc_id"),
            ("subnets", "subnets"),
            ("secondary_ranges", "secondary_ranges"),
            ("zones", "zones"),
        ],
    );
    pairs.extend(inputs_from(key_out, &[("key", "arn")]));
    let refs: Vec<(&str, Value)> = pairs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    inputs(&refs)
}

#[test]
fn a_cluster_is_built_reapplied_without_writes_updated_in_place_and_destroyed() {
    run(async {
        let (project, cluster) = ("acme-build", "prod");
        let s = server();
        let p = provider(project, cluster);
        let ctx = StepContext::default();
        let (net, net_out, key, key_out) = foundations(&p, cluster).await;
        assert_eq!(
            net_out.get("vpc_id").and_then(|v| v.value()),
            Some(&json!(format!(
                "projects/{project}/global/networks/bmac-{cluster}"
            )))
        );
        assert_eq!(
            net_out.get("secondary_ranges").and_then(|v| v.value()),
            Some(&json!({"pods": "pods", "services": "services"}))
        );

        let c_in = cluster_inputs(&net_out, &key_out);
        let cl = step(
            "cluster",
            kinds::CLUSTER,
            &cluster_config(cluster, project, &["203.0.113.0/24"]),
        );
        let out = apply(&p, &cl, &c_in, &ctx).await.unwrap();
        assert_eq!(out.str("endpoint"), Some("https://127.0.0.1:6443"));
        let creds = out
            .get("credentials")
            .and_then(|v| v.value())
            .cloned()
            .unwrap();
        assert_eq!(creds["type"], "gke");
        assert_eq!(creds["project"], project);

        // What GKE got: read back with the official client.
        let gke = google_cloud_container_v1::client::ClusterManager::builder()
            .with_endpoint(s.url("container"))
            .build()
            .await
            .unwrap();
        let got = gke
            .get_cluster()
            .set_name(format!(
                "projects/{project}/locations/{REGION}/clusters/{cluster}"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(
            got.workload_identity_config.as_ref().unwrap().workload_pool,
            format!("{project}.svc.id.goog")
        );
        assert_eq!(
            got.database_encryption.as_ref().unwrap().key_name,
            format!(
                "projects/{project}/locations/{REGION}/keyRings/bmac-{cluster}/cryptoKeys/secrets"
            )
        );
        assert!(got.shielded_nodes.as_ref().unwrap().enabled);
        assert!(
            got.node_pools.iter().all(|np| np.name != "default-pool"),
            "the default pool is removed"
        );
        assert_eq!(
            got.subnetwork,
            format!("projects/{project}/regions/{REGION}/subnetworks/bmac-{cluster}-nodes")
        );

        let pool = step("node_pool.general", kinds::NODE_POOL, &pool_config(1, 3));
        let pool_in = inputs(&[(
            "role",
            json!(format!(
                "bmac-{cluster}-general@{project}.iam.gserviceaccount.com"
            )),
        )]);
        apply(&p, &pool, &pool_in, &ctx).await.unwrap();

        // A second apply of everything changes nothing.
        s.control("container", "DELETE", "/_bmac/requests", None)
            .await;
        s.control("compute", "DELETE", "/_bmac/requests", None)
            .await;
        s.control("cloudkms", "DELETE", "/_bmac/requests", None)
            .await;
        apply(&p, &net, &Inputs::default(), &ctx).await.unwrap();
        apply(&p, &key, &Inputs::default(), &ctx).await.unwrap();
        apply(&p, &cl, &c_in, &ctx).await.unwrap();
        apply(&p, &pool, &pool_in, &ctx).await.unwrap();
        for service in ["container", "compute", "cloudkms"] {
            let m = s.mutations(service, "").await;
            assert!(m.is_empty(), "a re-apply wrote to {service}: {m:#?}");
        }

        // Autoscaling 1..3 → 2..5 is exactly one setAutoscaling.
        let bigger = step("node_pool.general", kinds::NODE_POOL, &pool_config(2, 5));
        apply(&p, &bigger, &pool_in, &ctx).await.unwrap();
        let m = s.mutations("container", "").await;
        assert_eq!(m.len(), 1, "{m:#?}");
        assert!(
            m[0]["path"].as_str().unwrap().ends_with(":setAutoscaling"),
            "{m:#?}"
        );
        match observe(&p, &bigger, &pool_in).await {
            Observed::Present { config, .. } => {
                assert_eq!(config["scaling"]["min"], 2);
                assert_eq!(config["scaling"]["max"], 5);
            }
            other => panic!("{other:?}"),
        }

        // A hand change of the authorized networks is drift, and apply restores it.
        s.control(
        "container",
        "POST",
        "/_bmac/edit",
        Some(json!({
            "name": format!("projects/{project}/locations/{REGION}/clusters/{cluster}"),
            "patch": {"controlPlaneEndpointsConfig": {"ipEndpointsConfig": {"authorizedNetworksConfig": {"enabled": true, "cidrBlocks": [{"cidrBlock": "0.0.0.0/0"}]}}}}
        })),
    )
    .await;
        match observe(&p, &cl, &c_in).await {
            Observed::Present { config, .. } => {
                assert_eq!(config["endpoint"]["public_cidrs"], json!(["0.0.0.0/0"]))
            }
            other => panic!("{other:?}"),
        }
        apply(&p, &cl, &c_in, &ctx).await.unwrap();
        match observe(&p, &cl, &c_in).await {
            Observed::Present { config, .. } => {
                assert_eq!(
                    config["endpoint"]["public_cidrs"],
                    json!(["203.0.113.0/24"])
                )
            }
            other => panic!("{other:?}"),
        }

        // Destroy in reverse; gone is success the second time.
        destroy(&p, &bigger, &pool_in, Outputs::new())
            .await
            .unwrap();
        destroy(&p, &cl, &c_in, Outputs::new()).await.unwrap();
        assert!(matches!(observe(&p, &cl, &c_in).await, Observed::Absent));
        destroy(&p, &cl, &c_in, Outputs::new()).await.unwrap();
        destroy(&p, &key, &Inputs::default(), Outputs::new())
            .await
            .unwrap();
        destroy(&p, &net, &Inputs::default(), Outputs::new())
            .await
            .unwrap();
        assert!(matches!(
            observe(&p, &net, &Inputs::default()).await,
            Observed::Absent
        ));
    });
}

#[test]
fn an_interrupted_create_resumes_polling_the_same_operation() {
    run(async {
        let (project, cluster) = ("acme-resume", "edge");
        let s = server();
        let p = provider(project, cluster);
        let (_, net_out, _, key_out) = foundations(&p, cluster).await;
        let c_in = cluster_inputs(&net_out, &key_out);
        let cl = step(
            "cluster",
            kinds::CLUSTER,
            &cluster_config(cluster, project, &[]),
        );

        // The run is stopped while the create's operation is still running.
        let ctx = StepContext::default();
        let cancel = ctx.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            cancel.cancel();
        });
        let err = apply(&p, &cl, &c_in, &ctx).await.unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
        let creates = s
            .mutations(
                "container",
                &format!("projects/{project}/locations/{REGION}/clusters"),
            )
            .await;
        let creates: Vec<_> = creates
            .iter()
            .filter(|r| r["method"] == "POST" && r["path"].as_str().unwrap().ends_with("/clusters"))
            .collect();
        assert_eq!(creates.len(), 1);

        // What the killed run had checkpointed: the create's operation.
        let gke = google_cloud_container_v1::client::ClusterManager::builder()
            .with_endpoint(s.url("container"))
            .build()
            .await
            .unwrap();
        let ops = gke
            .list_operations()
            .set_parent(format!("projects/{project}/locations/{REGION}"))
            .send()
            .await
            .unwrap();
        let op = ops
            .operations
            .iter()
            .find(|o| o.target_link.ends_with(&format!("/clusters/{cluster}")))
            .expect("the create's operation");
        let name = if op.name.starts_with("projects/") {
            op.name.clone()
        } else {
            format!(
                "projects/{project}/locations/{REGION}/operations/{}",
                op.name
            )
        };
        let resumed = StepContext::default().with_checkpoint(checkpoint(&Op::Container { name }));
        let out = apply(&p, &cl, &c_in, &resumed).await.unwrap();
        assert_eq!(out.str("name"), Some(cluster));
        let creates = s.mutations("container", "").await;
        let creates: Vec<_> = creates
            .iter()
            .filter(|r| {
                r["method"] == "POST"
                    && r["path"]
                        .as_str()
                        .unwrap()
                        .ends_with(&format!("projects/{project}/locations/{REGION}/clusters"))
            })
            .collect();
        assert_eq!(
            creates.len(),
            1,
            "the resumed run created nothing: {creates:#?}"
        );
    });
}

#[test]
fn throttling_is_retryable_and_a_denied_call_names_the_permission() {
    run(async {
        let (project, cluster) = ("acme-faults", "ops");
        let s = server();
        let p = provider(project, cluster);
        let net = step("network", kinds::NETWORK, &network_config(cluster));
        s.control(
        "compute",
        "POST",
        "/_bmac/faults",
        Some(json!({"method": "GET", "path_prefix": format!("/compute/v1/projects/{project}/global/networks"), "status": 429, "count": 1})),
    )
    .await;
        let err = apply(&p, &net, &Inputs::default(), &StepContext::default())
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
        assert_eq!(err.code.as_deref(), Some("RESOURCE_EXHAUSTED"), "{err:?}");
        // The retry the executor would make goes through.
        apply(&p, &net, &Inputs::default(), &StepContext::default())
            .await
            .unwrap();

        s.control(
        "container",
        "POST",
        "/_bmac/faults",
        Some(json!({"method": "GET", "path_prefix": format!("/v1/projects/{project}/locations/{REGION}/clusters/{cluster}"), "status": 403, "count": 1, "message": "Permission 'container.clusters.get' denied on resource"})),
    )
    .await;
        let cl = step(
            "cluster",
            kinds::CLUSTER,
            &cluster_config(cluster, project, &[]),
        );
        let err = apply(&p, &cl, &Inputs::default(), &StepContext::default())
            .await
            .unwrap_err();
        assert!(!err.is_retryable(), "{err:?}");
        assert!(
            err.message.contains("container.clusters.get"),
            "{}",
            err.message
        );
        assert_eq!(err.code.as_deref(), Some("PERMISSION_DENIED"));
    });
}

fn role_config(name: &str, permissions: &[&str]) -> IamRoleConfig {
    IamRoleConfig {
        name: name.into(),
        existing: None,
        permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
        namespace: "apps".into(),
        service_account: "app".into(),
        purpose: None,
        resources: Vec::new(),
        managed: Vec::new(),
    }
}

/// The bindings of `member` in the policy JSON `policy`, as `role` strings.
fn roles_of(policy: &Value, member: &str) -> Vec<String> {
    let mut roles: Vec<String> = policy["bindings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| {
            b["members"]
                .as_array()
                .is_some_and(|m| m.iter().any(|x| x == member))
        })
        .filter_map(|b| b["role"].as_str().map(str::to_owned))
        .collect();
    roles.sort();
    roles
}

impl Server {
    /// The project's IAM policy, as JSON (through the official client).
    async fn project_policy(&self, project: &str) -> Value {
        let rm = google_cloud_resourcemanager_v3::client::Projects::builder()
            .with_endpoint(self.url("cloudresourcemanager"))
            .build()
            .await
            .unwrap();
        let p = rm
            .get_iam_policy()
            .set_resource(format!("projects/{project}"))
            .send()
            .await
            .unwrap();
        serde_json::to_value(p).unwrap()
    }

    /// A service account's IAM policy, as JSON.
    async fn account_policy(&self, project: &str, email: &str) -> Value {
        let iam = google_cloud_iam_admin_v1::client::Iam::builder()
            .with_endpoint(self.url("iam"))
            .build()
            .await
            .unwrap();
        let p = iam
            .get_iam_policy()
            .set_resource(format!("projects/{project}/serviceAccounts/{email}"))
            .send()
            .await
            .unwrap();
        serde_json::to_value(p).unwrap()
    }
}

#[test]
fn workload_identity_is_a_service_account_project_roles_and_a_pool_binding() {
    run(async {
        let (project, cluster) = ("acme-identity", "prod");
        let s = server();
        let p = provider(project, cluster);
        let ctx = StepContext::default();
        // Someone else's grants on the project, which bmac must keep.
        s.control(
        "cloudresourcemanager",
        "POST",
        "/_bmac/edit",
        Some(json!({"name": format!("projects/{project}"), "patch": {"bindings": [
            {"role": "roles/viewer", "members": ["user:ana@example.com"]},
            {"role": "roles/storage.objectViewer", "members": ["group:data@example.com"],
             "condition": {"title": "only logs", "expression": "resource.name.startsWith(\"projects/_/buckets/logs\")"}}
        ]}})),
    )
    .await;

        let role = step(
            "workload_identity.app.role",
            kinds::IAM_ROLE,
            &role_config("bmac-prod-app", &["roles/storage.objectViewer"]),
        );
        let out = apply(&p, &role, &Inputs::default(), &ctx).await.unwrap();
        let email = format!("bmac-prod-app@{project}.iam.gserviceaccount.com");
        assert_eq!(out.str("arn"), Some(email.as_str()));
        let member = format!("serviceAccount:{email}");
        let policy = s.project_policy(project).await;
        assert_eq!(roles_of(&policy, &member), ["roles/storage.objectViewer"]);
        assert_eq!(
            roles_of(&policy, "user:ana@example.com"),
            ["roles/viewer"],
            "another member's grant is kept"
        );
        assert!(
            policy["bindings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|b| !b["condition"].is_null() && b["members"][0] == "group:data@example.com"),
            "a conditional binding survives: {policy:#}"
        );

        let bind_cfg = IdentityBindingConfig {
            cluster: cluster.into(),
            namespace: "apps".into(),
            service_account: "app".into(),
        };
        let binding = step(
            "workload_identity.app.binding",
            kinds::IDENTITY_BINDING,
            &bind_cfg,
        );
        let bind_in = inputs(&[("role", json!(email))]);
        apply(&p, &binding, &bind_in, &ctx).await.unwrap();
        let pool_member = format!("serviceAccount:{project}.svc.id.goog[apps/app]");
        let sa_policy = s.account_policy(project, &email).await;
        assert_eq!(
            roles_of(&sa_policy, &pool_member),
            ["roles/iam.workloadIdentityUser"]
        );

        // Re-applied: no write to IAM.
        for svc in ["iam", "cloudresourcemanager"] {
            s.control(svc, "DELETE", "/_bmac/requests", None).await;
        }
        apply(&p, &role, &Inputs::default(), &ctx).await.unwrap();
        apply(&p, &binding, &bind_in, &ctx).await.unwrap();
        for svc in ["iam", "cloudresourcemanager"] {
            let m = s.mutations(svc, "").await;
            assert!(m.is_empty(), "a re-apply wrote to {svc}: {m:#?}");
        }

        // A grant removed by hand is drift; apply restores it, past one stale etag.
        s.control(
            "cloudresourcemanager",
            "POST",
            "/_bmac/edit",
            Some(
                json!({"name": format!("projects/{project}"), "patch": {"bindings": [
                    {"role": "roles/viewer", "members": ["user:ana@example.com"]}
                ]}}),
            ),
        )
        .await;
        match observe(&p, &role, &Inputs::default()).await {
            Observed::Present { config, .. } => assert_eq!(config["permissions"], json!([])),
            other => panic!("{other:?}"),
        }
        s.control(
        "cloudresourcemanager",
        "POST",
        "/_bmac/faults",
        Some(json!({"method": "POST", "path_prefix": format!("/v3/projects/{project}:setIamPolicy"), "status": 409, "status_name": "ABORTED", "count": 1,
                    "message": "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff."})),
    )
    .await;
        s.control("cloudresourcemanager", "DELETE", "/_bmac/requests", None)
            .await;
        apply(&p, &role, &Inputs::default(), &ctx).await.unwrap();
        assert_eq!(
            roles_of(&s.project_policy(project).await, &member),
            ["roles/storage.objectViewer"]
        );
        let sets: Vec<u64> = s
            .mutations("cloudresourcemanager", ":setIamPolicy")
            .await
            .iter()
            .filter_map(|r| r["status"].as_u64())
            .collect();
        assert_eq!(
            sets,
            [409, 200],
            "the stale write, then one from a fresh read"
        );

        // A changed permission: the old role is revoked, the new one granted.
        let changed = step(
            "workload_identity.app.role",
            kinds::IAM_ROLE,
            &role_config("bmac-prod-app", &["roles/pubsub.subscriber"]),
        );
        let prior = Prior::new(role.config.value().clone(), out.clone());
        p.apply(ApplyRequest {
            step: &changed,
            inputs: &Inputs::default(),
            prior: Some(&prior),
            ctx: &ctx,
        })
        .await
        .unwrap();
        assert_eq!(
            roles_of(&s.project_policy(project).await, &member),
            ["roles/pubsub.subscriber"]
        );

        // Destroy: the binding's member, then the roles and the account; others' grants stay.
        destroy(&p, &binding, &bind_in, Outputs::new())
            .await
            .unwrap();
        assert!(roles_of(&s.account_policy(project, &email).await, &pool_member).is_empty());
        assert!(matches!(
            observe(&p, &binding, &bind_in).await,
            Observed::Absent
        ));
        destroy(&p, &changed, &Inputs::default(), out)
            .await
            .unwrap();
        assert!(matches!(
            observe(&p, &changed, &Inputs::default()).await,
            Observed::Absent
        ));
        let policy = s.project_policy(project).await;
        assert!(roles_of(&policy, &member).is_empty(), "{policy:#}");
        assert_eq!(roles_of(&policy, "user:ana@example.com"), ["roles/viewer"]);
        destroy(&p, &changed, &Inputs::default(), Outputs::new())
            .await
            .unwrap();
    });
}

#[test]
fn a_node_pools_account_gets_gkes_node_roles_only() {
    run(async {
        let (project, cluster) = ("acme-nodes", "prod");
        let s = server();
        let p = provider(project, cluster);
        let mut c = role_config(
            &bmac_steps::spelling::gcp_account_id("bmac-prod-general"),
            &[],
        );
        c.namespace.clear();
        c.service_account.clear();
        c.purpose = Some(bmac_steps::config::ROLE_FOR_NODES.into());
        c.managed = bmac_steps::spelling::GKE_NODE_ROLES
            .iter()
            .map(|r| (*r).to_owned())
            .collect();
        let role = step("node_pool.general.role", kinds::IAM_ROLE, &c);
        let out = apply(&p, &role, &Inputs::default(), &StepContext::default())
            .await
            .unwrap();
        let email = out.str("arn").unwrap().to_owned();
        assert_eq!(
            email,
            format!("bmac-prod-general@{project}.iam.gserviceaccount.com")
        );
        assert_eq!(
            roles_of(
                &s.project_policy(project).await,
                &format!("serviceAccount:{email}")
            ),
            [
                "roles/artifactregistry.reader",
                "roles/container.defaultNodeServiceAccount"
            ]
        );
    });
}

/// The remote repository `name` as Artifact Registry's own client reads it, if it exists.
async fn repository(name: &str) -> Option<google_cloud_artifactregistry_v1::model::Repository> {
    let ar = google_cloud_artifactregistry_v1::client::ArtifactRegistry::builder()
        .with_endpoint(server().url("artifactregistry"))
        .build()
        .await
        .unwrap();
    ar.get_repository().set_name(name).send().await.ok()
}

fn mirror_step(upstream: &str, mirror: &str) -> Step {
    step(
        &bmac_steps::spelling::mirror_step_id(upstream),
        kinds::REGISTRY_MIRROR,
        &bmac_steps::config::RegistryMirrorConfig {
            upstream: upstream.into(),
            mirror: mirror.into(),
            pull_through_cache: true,
            credential: None,
        },
    )
}

#[test]
fn registry_mirrors_are_remote_repositories_and_the_pools_containerd_hosts() {
    use google_cloud_artifactregistry_v1::model::remote_repository_config::docker_repository::PublicRepository;
    use google_cloud_artifactregistry_v1::model::remote_repository_config::RemoteSource;
    use google_cloud_artifactregistry_v1::model::repository::{Format, Mode};
    run(async {
        let (project, cluster) = ("acme-registry", "prod");
        let s = server();
        let p = provider(project, cluster);
        let ctx = StepContext::default();
        let none = Inputs::default();
        let hub_repo = format!("projects/{project}/locations/europe/repositories/docker-hub");
        let ghcr_repo = format!("projects/{project}/locations/{REGION}/repositories/ghcr");
        let hub = mirror_step(
            "docker.io",
            &format!("europe-docker.pkg.dev/{project}/docker-hub"),
        );
        let ghcr = mirror_step(
            "ghcr.io",
            &format!("{REGION}-docker.pkg.dev/{project}/ghcr"),
        );
        let out = apply(&p, &hub, &none, &ctx).await.unwrap();
        assert_eq!(
            out.str("mirror_url"),
            Some(format!("https://europe-docker.pkg.dev/{project}/docker-hub").as_str())
        );
        apply(&p, &ghcr, &none, &ctx).await.unwrap();

        // Docker remote repositories: Docker Hub's preset, and ghcr.io as a custom remote.
        let source = |r: &google_cloud_artifactregistry_v1::model::Repository| {
            assert_eq!(r.format, Format::Docker);
            assert_eq!(r.mode, Mode::RemoteRepository);
            match r.remote_repository_config().unwrap().remote_source.clone() {
                Some(RemoteSource::DockerRepository(d)) => d,
                other => panic!("{other:?}"),
            }
        };
        let got = repository(&hub_repo).await.expect("docker hub mirror");
        assert_eq!(
            source(&got).public_repository(),
            Some(&PublicRepository::DockerHub)
        );
        assert_eq!(got.labels["bmac-cluster"], cluster);
        let got = repository(&ghcr_repo).await.expect("ghcr mirror");
        assert_eq!(
            source(&got).custom_repository().unwrap().uri,
            "https://ghcr.io"
        );

        // Re-applied: nothing written.
        s.control("artifactregistry", "DELETE", "/_bmac/requests", None)
            .await;
        apply(&p, &hub, &none, &ctx).await.unwrap();
        apply(&p, &ghcr, &none, &ctx).await.unwrap();
        let m = s.mutations("artifactregistry", "").await;
        assert!(m.is_empty(), "a re-apply wrote: {m:#?}");

        // A repository of that name that is not a remote of the upstream is refused, not
        // replaced; a remote of the same upstream made by hand is adopted and kept on destroy.
        let ar = google_cloud_artifactregistry_v1::client::ArtifactRegistry::builder()
            .with_endpoint(s.url("artifactregistry"))
            .build()
            .await
            .unwrap();
        let mut standard = google_cloud_artifactregistry_v1::model::Repository::new();
        standard.format = Format::Docker;
        let parent = format!("projects/{project}/locations/{REGION}");
        ar.create_repository()
            .set_parent(&parent)
            .set_repository_id("taken")
            .set_repository(standard)
            .send()
            .await
            .unwrap();
        let t0 = Instant::now();
        while repository(&format!("{parent}/repositories/taken"))
            .await
            .is_none()
        {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "no repository after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let taken = mirror_step(
            "quay.io",
            &format!("{REGION}-docker.pkg.dev/{project}/taken"),
        );
        let e = apply(&p, &taken, &none, &ctx).await.unwrap_err();
        assert!(!e.is_retryable(), "{e:?}");
        assert_eq!(
            e.code.as_deref(),
            Some("bmac::gcp::mirror_conflict"),
            "{e:?}"
        );
        assert!(
            e.message
                .contains("not a Docker remote repository of https://quay.io"),
            "{}",
            e.message
        );
        let quay = google_cloud_artifactregistry_v1::model::Repository::new()
            .set_format(Format::Docker)
            .set_mode(Mode::RemoteRepository)
            .set_remote_repository_config(
                google_cloud_artifactregistry_v1::model::RemoteRepositoryConfig::new()
                    .set_docker_repository(
                        google_cloud_artifactregistry_v1::model::remote_repository_config::DockerRepository::new()
                            .set_custom_repository(
                                google_cloud_artifactregistry_v1::model::remote_repository_config::docker_repository::CustomRepository::new()
                                    .set_uri("https://quay.io"),
                            ),
                    ),
            );
        ar.create_repository()
            .set_parent(&parent)
            .set_repository_id("quay")
            .set_repository(quay)
            .send()
            .await
            .unwrap();
        let quay_repo = format!("{parent}/repositories/quay");
        while repository(&quay_repo).await.is_none() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "no repository after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        s.control("artifactregistry", "DELETE", "/_bmac/requests", None)
            .await;
        let adopted = mirror_step(
            "quay.io",
            &format!("{REGION}-docker.pkg.dev/{project}/quay"),
        );
        apply(&p, &adopted, &none, &ctx).await.unwrap();
        let m = s.mutations("artifactregistry", "").await;
        assert!(m.is_empty(), "an existing remote was made again: {m:#?}");
        destroy(&p, &adopted, &none, Outputs::new()).await.unwrap();
        assert!(
            repository(&quay_repo).await.is_some(),
            "a repository bmac did not make is kept"
        );

        // Nodes pull through them: the pool's containerd registry hosts.
        let (_net, net_out, _key, key_out) = foundations(&p, cluster).await;
        let c_in = cluster_inputs(&net_out, &key_out);
        let cl = step(
            "cluster",
            kinds::CLUSTER,
            &cluster_config(cluster, project, &[]),
        );
        apply(&p, &cl, &c_in, &ctx).await.unwrap();
        let mut pc = pool_config(1, 3);
        pc.mirrors = vec![bmac_steps::config::NodeMirror {
            upstream: "docker.io".into(),
            mirror: format!("europe-docker.pkg.dev/{project}/docker-hub"),
        }];
        let pool = step("node_pool.general", kinds::NODE_POOL, &pc);
        apply(&p, &pool, &none, &ctx).await.unwrap();
        let pool_name =
            format!("projects/{project}/locations/{REGION}/clusters/{cluster}/nodePools/general");
        let gke = google_cloud_container_v1::client::ClusterManager::builder()
            .with_endpoint(s.url("container"))
            .build()
            .await
            .unwrap();
        let read = || async {
            gke.get_node_pool()
                .set_name(&pool_name)
                .send()
                .await
                .unwrap()
                .config
                .and_then(|c| c.containerd_config)
                .map(|c| c.registry_hosts)
                .unwrap_or_default()
        };
        let hosts = read().await;
        assert_eq!(hosts.len(), 1, "{hosts:?}");
        assert_eq!(hosts[0].server, "docker.io");
        assert_eq!(
            hosts[0].hosts[0].host,
            format!("https://europe-docker.pkg.dev/v2/{project}/docker-hub")
        );
        assert!(hosts[0].hosts[0].override_path);
        assert_eq!(hosts[0].hosts[0].capabilities.len(), 2);
        s.control("container", "DELETE", "/_bmac/requests", None)
            .await;
        apply(&p, &pool, &none, &ctx).await.unwrap();
        let m = s.mutations("container", "").await;
        assert!(m.is_empty(), "a re-apply wrote: {m:#?}");

        // The hosts removed by hand is drift; apply puts them back in one update.
        s.control(
            "container",
            "POST",
            "/_bmac/edit",
            Some(json!({"name": pool_name, "patch": {"config": {"containerdConfig": null}}})),
        )
        .await;
        match observe(&p, &pool, &none).await {
            Observed::Present { config, .. } => {
                assert!(config.get("mirrors").is_none(), "{config:#}")
            }
            other => panic!("{other:?}"),
        }
        apply(&p, &pool, &none, &ctx).await.unwrap();
        let m = s.mutations("container", "").await;
        assert_eq!(m.len(), 1, "{m:#?}");
        assert_eq!(read().await, hosts, "{m:#?}");

        // Destroy deletes the repositories bmac made.
        destroy(&p, &pool, &none, Outputs::new()).await.unwrap();
        destroy(&p, &cl, &c_in, Outputs::new()).await.unwrap();
        destroy(&p, &hub, &none, Outputs::new()).await.unwrap();
        destroy(&p, &ghcr, &none, Outputs::new()).await.unwrap();
        assert!(repository(&hub_repo).await.is_none());
        assert!(repository(&ghcr_repo).await.is_none());
        assert!(matches!(observe(&p, &hub, &none).await, Observed::Absent));
    });
}

impl Server {
    /// The project's IAM policy with its audit configs, as JSON.
    async fn audit_configs(&self, project: &str) -> Value {
        self.project_policy(project).await["auditConfigs"].clone()
    }
}

/// The log types turned on for `service` in `configs` (audit configs JSON), sorted.
fn audit_types(configs: &Value, service: &str) -> Vec<String> {
    let mut t: Vec<String> = configs
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["service"] == service)
        .flat_map(|c| c["auditLogConfigs"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| match &c["logType"] {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(
                ["UNSPECIFIED", "ADMIN_READ", "DATA_WRITE", "DATA_READ"]
                    [n.as_u64().unwrap_or(0) as usize]
                    .to_owned(),
            ),
            _ => None,
        })
        .collect();
    t.sort();
    t
}

#[test]
fn audit_turns_on_data_access_logs_control_plane_components_and_alarms() {
    run(async {
        let (project, cluster) = ("acme-audit", "ops");
        let s = server();
        let p = provider(project, cluster);
        let ctx = StepContext::default();
        let (_, net_out, _, key_out) = foundations(&p, cluster).await;
        let c_in = cluster_inputs(&net_out, &key_out);
        let cl = step(
            "cluster",
            kinds::CLUSTER,
            &cluster_config(cluster, project, &[]),
        );
        apply(&p, &cl, &c_in, &ctx).await.unwrap();
        // Audit configs someone else set: another service's, and an exemption on GKE's.
        s.control(
            "cloudresourcemanager",
            "POST",
            "/_bmac/edit",
            Some(json!({"name": format!("projects/{project}"), "patch": {"auditConfigs": [
                {"service": "storage.googleapis.com", "auditLogConfigs": [{"logType": "DATA_READ"}]},
                {"service": "container.googleapis.com", "auditLogConfigs": [{"logType": "ADMIN_READ", "exemptedMembers": ["user:ci@example.com"]}]}
            ]}})),
        )
        .await;

        let config = AuditLoggingConfig {
            cluster: cluster.into(),
            log_types: ["api", "audit", "scheduler", "controller_manager"]
                .map(String::from)
                .to_vec(),
            retention_days: 30,
        };
        let logging = step("audit.logging", kinds::AUDIT_LOGGING, &config);
        let out = apply(&p, &logging, &Inputs::default(), &ctx).await.unwrap();
        assert_eq!(
            out.get("enabled_audit_logs").and_then(|v| v.value()),
            Some(&json!(["DATA_READ", "DATA_WRITE"]))
        );
        let filter = out.str("log_group").unwrap().to_owned();
        assert!(
            filter.contains(&format!("resource.labels.cluster_name=\"{cluster}\"")),
            "{filter}"
        );
        let configs = s.audit_configs(project).await;
        assert_eq!(
            audit_types(&configs, "container.googleapis.com"),
            ["ADMIN_READ", "DATA_READ", "DATA_WRITE"]
        );
        assert_eq!(
            audit_types(&configs, "storage.googleapis.com"),
            ["DATA_READ"],
            "another service's config is kept"
        );
        assert!(
            configs.to_string().contains("user:ci@example.com"),
            "the exemption is kept: {configs}"
        );
        let gke = google_cloud_container_v1::client::ClusterManager::builder()
            .with_endpoint(s.url("container"))
            .build()
            .await
            .unwrap();
        let name = format!("projects/{project}/locations/{REGION}/clusters/{cluster}");
        let components = |c: &google_cloud_container_v1::model::Cluster| -> Vec<i32> {
            let mut v: Vec<i32> = c
                .logging_config
                .as_ref()
                .and_then(|l| l.component_config.as_ref())
                .map(|cc| {
                    cc.enable_components
                        .iter()
                        .map(|x| x.value().unwrap_or(0))
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        };
        use google_cloud_container_v1::model::logging_component_config::Component;
        let all = {
            let mut v: Vec<i32> = [
                Component::SystemComponents,
                Component::Workloads,
                Component::Apiserver,
                Component::Scheduler,
                Component::ControllerManager,
            ]
            .iter()
            .map(|c| c.value().unwrap())
            .collect();
            v.sort();
            v
        };
        let got = gke.get_cluster().set_name(&name).send().await.unwrap();
        assert_eq!(components(&got), all);

        // Re-applied: nothing written.
        let prior = Prior::new(logging.config.value().clone(), out.clone());
        for svc in ["container", "cloudresourcemanager"] {
            s.control(svc, "DELETE", "/_bmac/requests", None).await;
        }
        p.apply(ApplyRequest {
            step: &logging,
            inputs: &Inputs::default(),
            prior: Some(&prior),
            ctx: &ctx,
        })
        .await
        .unwrap();
        for svc in ["container", "cloudresourcemanager"] {
            let m = s.mutations(svc, "").await;
            assert!(m.is_empty(), "a re-apply wrote to {svc}: {m:#?}");
        }

        // API server logs switched off by hand: drift, restored.
        s.control(
            "container",
            "POST",
            "/_bmac/edit",
            Some(json!({"name": name, "patch": {"loggingConfig": {"componentConfig": {"enableComponents": ["SYSTEM_COMPONENTS", "WORKLOADS"]}}}})),
        )
        .await;
        match observe(&p, &logging, &Inputs::default()).await {
            Observed::Present { config, .. } => assert_eq!(config["log_types"], json!(["audit"])),
            other => panic!("{other:?}"),
        }
        apply(&p, &logging, &Inputs::default(), &ctx).await.unwrap();
        let got = gke.get_cluster().set_name(&name).send().await.unwrap();
        assert_eq!(components(&got), all);

        // Alarms on denied requests and anomalies, to a new e-mail channel.
        let alarm_cfg = AuditAlarmConfig {
            on: vec!["deny".into(), "anomalies".into()],
            notify: Some("secops@example.com".into()),
        };
        let alarm = step("audit.alarm", kinds::AUDIT_ALARM, &alarm_cfg);
        let alarm_in = inputs(&[("log_group", json!(filter))]);
        let alarm_out = apply(&p, &alarm, &alarm_in, &ctx).await.unwrap();
        let logging_v2 = google_cloud_logging_v2::client::MetricsServiceV2::builder()
            .with_endpoint(s.url("logging"))
            .build()
            .await
            .unwrap();
        let metrics = logging_v2
            .list_log_metrics()
            .set_parent(format!("projects/{project}"))
            .send()
            .await
            .unwrap()
            .metrics;
        let denied = metrics
            .iter()
            .find(|m| m.name.ends_with("bmac-ops-audit-deny"))
            .expect("the denied metric");
        assert!(
            denied.filter.starts_with(&filter)
                && denied.filter.contains("protoPayload.status.code=7"),
            "{}",
            denied.filter
        );
        assert!(metrics
            .iter()
            .any(|m| m.name.ends_with("bmac-ops-audit-anomalies")));
        let alerts = google_cloud_monitoring_v3::client::AlertPolicyService::builder()
            .with_endpoint(s.url("monitoring"))
            .build()
            .await
            .unwrap();
        let policies = alerts
            .list_alert_policies()
            .set_name(format!("projects/{project}"))
            .send()
            .await
            .unwrap()
            .alert_policies;
        assert_eq!(policies.len(), 2, "{policies:#?}");
        let channel = alarm_out.str("channel").unwrap().to_owned();
        assert!(policies
            .iter()
            .all(|p| p.notification_channels == [channel.clone()]));
        let channels = google_cloud_monitoring_v3::client::NotificationChannelService::builder()
            .with_endpoint(s.url("monitoring"))
            .build()
            .await
            .unwrap();
        let ch = channels
            .get_notification_channel()
            .set_name(&channel)
            .send()
            .await
            .unwrap();
        assert_eq!(ch.r#type, "email");
        assert_eq!(
            ch.labels.get("email_address").map(String::as_str),
            Some("secops@example.com")
        );
        for svc in ["logging", "monitoring"] {
            s.control(svc, "DELETE", "/_bmac/requests", None).await;
        }
        apply(&p, &alarm, &alarm_in, &ctx).await.unwrap();
        for svc in ["logging", "monitoring"] {
            let m = s.mutations(svc, "").await;
            assert!(m.is_empty(), "a re-apply wrote to {svc}: {m:#?}");
        }
        destroy(&p, &alarm, &alarm_in, alarm_out).await.unwrap();
        assert!(alerts
            .list_alert_policies()
            .set_name(format!("projects/{project}"))
            .send()
            .await
            .unwrap()
            .alert_policies
            .is_empty());
        assert!(logging_v2
            .list_log_metrics()
            .set_parent(format!("projects/{project}"))
            .send()
            .await
            .unwrap()
            .metrics
            .is_empty());
        assert!(
            channels
                .get_notification_channel()
                .set_name(&channel)
                .send()
                .await
                .is_err(),
            "bmac's channel is gone"
        );

        // Destroy turns off only what bmac turned on.
        // (What the first apply recorded: later applies found the logs already on.)
        destroy(&p, &logging, &Inputs::default(), prior.outputs().clone())
            .await
            .unwrap();
        let configs = s.audit_configs(project).await;
        assert_eq!(
            audit_types(&configs, "container.googleapis.com"),
            ["ADMIN_READ"]
        );
        assert_eq!(
            audit_types(&configs, "storage.googleapis.com"),
            ["DATA_READ"]
        );
        let got = gke.get_cluster().set_name(&name).send().await.unwrap();
        let mut base: Vec<i32> = [Component::SystemComponents, Component::Workloads]
            .iter()
            .map(|c| c.value().unwrap())
            .collect();
        base.sort();
        assert_eq!(components(&got), base);
    });
}

fn bucket_config(name: &str, retention_days: u32) -> BucketConfig {
    BucketConfig {
        name: name.into(),
        retention_days,
        object_lock: true,
        require_tls: true,
        force_destroy: false,
        lock_retention: false,
    }
}

impl Server {
    /// A Cloud Storage JSON API call with a bearer token minted for the test user (the storage
    /// listener, like every Google API here, refuses calls without one): status and body.
    async fn gcs(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let client = reqwest::Client::new();
        let oauth = self
            .env
            .iter()
            .find(|(k, _)| k == "BMAC_GCP_OAUTH")
            .map(|(_, v)| v.clone())
            .expect("token endpoint");
        let minted = client
            .post(oauth)
            .header("content-type", "application/json")
            .body(
                json!({
                    "grant_type": "refresh_token",
                    "client_id": "bmac-test-client.apps.googleusercontent.com",
                    "client_secret": "bmac-test-client-secret",
                    "refresh_token": "bmac-test-refresh-token",
                })
                .to_string(),
            )
            .send()
            .await
            .expect("token endpoint");
        let token: Value = serde_json::from_slice(&minted.bytes().await.unwrap()).unwrap();
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = client
            .request(method, format!("{}{path}", self.url("storage")))
            .bearer_auth(token["access_token"].as_str().expect("a token"));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.expect("storage listener");
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// The bucket as the JSON API shows it.
    async fn bucket(&self, name: &str) -> Value {
        let (status, b) = self
            .gcs("GET", &format!("/storage/v1/b/{name}"), None)
            .await;
        assert_eq!(status, 200, "bucket {name}: {b}");
        b
    }

    /// The bucket's IAM policy (at version 3: it may hold conditions).
    async fn bucket_policy(&self, name: &str) -> Value {
        let path = format!("/storage/v1/b/{name}/iam?optionsRequestedPolicyVersion=3");
        let (status, p) = self.gcs("GET", &path, None).await;
        assert_eq!(status, 200, "policy of {name}: {p}");
        p
    }

    /// Every mutating storage request about bucket `name` of `project`: its inserts, and
    /// calls on it and its objects.
    async fn bucket_writes(&self, project: &str, name: &str) -> Vec<Value> {
        let on = format!("/b/{name}");
        self.mutations("storage", "")
            .await
            .into_iter()
            .filter(|r| {
                let path = r["path"].as_str().unwrap_or_default();
                let query = r["query"].as_str().unwrap_or_default();
                (path == "/storage/v1/b" && query.contains(&format!("project={project}")))
                    || path
                        .split_once(&on)
                        .is_some_and(|(_, rest)| rest.is_empty() || rest.starts_with('/'))
            })
            .collect()
    }
}

/// The config observe reports.
fn observed_config(o: Observed) -> Value {
    match o {
        Observed::Present { config, .. } => config,
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_object_bucket_is_private_retained_converged_and_locked() {
    run(async {
        let (project, cluster) = ("acme-bucket", "prod");
        let s = server();
        let p = provider(project, cluster);
        let ctx = StepContext::default();
        let none = Inputs::default();
        let name = "acme-prod-audit";
        let b = step(
            "audit.bucket",
            kinds::OBJECT_BUCKET,
            &bucket_config(name, 30),
        );
        let out = apply(&p, &b, &none, &ctx).await.unwrap();
        assert_eq!(out.str("bucket"), Some(name));
        assert_eq!(out.str("url"), Some("gs://acme-prod-audit"));
        assert_eq!(
            out.get("created").and_then(|v| v.value()),
            Some(&json!(true))
        );
        let got = s.bucket(name).await;
        assert_eq!(got["location"], "EUROPE-WEST1");
        assert_eq!(
            got["iamConfiguration"]["uniformBucketLevelAccess"]["enabled"],
            true
        );
        assert_eq!(
            got["iamConfiguration"]["publicAccessPrevention"],
            "enforced"
        );
        assert_eq!(got["retentionPolicy"]["retentionPeriod"], "2592000");
        assert!(
            got["retentionPolicy"].get("isLocked").is_none(),
            "not locked unless asked"
        );
        assert_eq!(
            got["lifecycle"],
            json!({"rule": [{"action": {"type": "Delete"}, "condition": {"age": 30}}]})
        );
        assert_eq!(
            got["labels"],
            json!({"bmac-cluster": cluster, "bmac-step": "audit_bucket", "bmac-created": "true"})
        );
        let writes = s.bucket_writes(project, name).await;
        assert_eq!(
            writes.len(),
            1,
            "one insert, settings included: {writes:#?}"
        );

        // Re-applied: nothing written.
        let prior = Prior::new(b.config.value().clone(), out.clone());
        p.apply(ApplyRequest {
            step: &b,
            inputs: &none,
            prior: Some(&prior),
            ctx: &ctx,
        })
        .await
        .unwrap();
        assert_eq!(s.bucket_writes(project, name).await.len(), 1);

        // Retention lowered and public access opened by hand: drift, shown and restored by
        // one patch guarded by the metageneration read.
        s.control(
            "storage",
            "POST",
            "/_bmac/edit",
            Some(json!({"name": format!("b/{name}"), "patch": {
                "retentionPolicy": {"retentionPeriod": "86400"},
                "iamConfiguration": {"publicAccessPrevention": "inherited"}
            }})),
        )
        .await;
        let config = observed_config(observe(&p, &b, &none).await);
        assert_eq!(config["retention_days"], 1);
        assert_eq!(config["require_tls"], false);
        let metageneration = s.bucket(name).await["metageneration"].clone();
        apply(&p, &b, &none, &ctx).await.unwrap();
        let writes = s.bucket_writes(project, name).await;
        assert_eq!(writes.len(), 2, "{writes:#?}");
        assert_eq!(writes[1]["method"], "PATCH");
        assert_eq!(
            writes[1]["query"],
            format!("ifMetagenerationMatch={}", metageneration.as_str().unwrap())
        );
        let config = observed_config(observe(&p, &b, &none).await);
        assert_eq!(config["retention_days"], 30);
        assert_eq!(config["require_tls"], true);

        // lock_retention locks it: one call, then nothing more.
        let mut cfg = bucket_config(name, 30);
        cfg.lock_retention = true;
        let locked = step("audit.bucket", kinds::OBJECT_BUCKET, &cfg);
        apply(&p, &locked, &none, &ctx).await.unwrap();
        let writes = s.bucket_writes(project, name).await;
        assert_eq!(writes.len(), 3, "{writes:#?}");
        assert_eq!(
            writes[2]["path"],
            format!("/storage/v1/b/{name}/lockRetentionPolicy")
        );
        assert_eq!(s.bucket(name).await["retentionPolicy"]["isLocked"], true);
        assert_eq!(
            observed_config(observe(&p, &locked, &none).await)["lock_retention"],
            true
        );
        apply(&p, &locked, &none, &ctx).await.unwrap();
        assert_eq!(s.bucket_writes(project, name).await.len(), 3);

        // A lower retention is refused before any call, permanently and saying why; Cloud
        // Storage itself refuses it too.
        cfg.retention_days = 10;
        let lower = step("audit.bucket", kinds::OBJECT_BUCKET, &cfg);
        let err = apply(&p, &lower, &none, &ctx).await.unwrap_err();
        assert!(!err.is_retryable(), "{err:?}");
        assert_eq!(err.code.as_deref(), Some("bmac::gcp::retention_locked"));
        assert!(
            err.message.contains("locked at 30 days") && err.message.contains("lowered to 10"),
            "{}",
            err.message
        );
        assert_eq!(s.bucket_writes(project, name).await.len(), 3);
        let (status, e) = s
            .gcs(
                "PATCH",
                &format!("/storage/v1/b/{name}"),
                Some(json!({"retentionPolicy": {"retentionPeriod": "864000"}})),
            )
            .await;
        assert_eq!(status, 403, "{e}");
        // Raised, it is patched and stays locked.
        cfg.retention_days = 60;
        let higher = step("audit.bucket", kinds::OBJECT_BUCKET, &cfg);
        apply(&p, &higher, &none, &ctx).await.unwrap();
        let got = s.bucket(name).await;
        assert_eq!(got["retentionPolicy"]["retentionPeriod"], "5184000");
        assert_eq!(got["retentionPolicy"]["isLocked"], true);
        assert_eq!(got["lifecycle"]["rule"][0]["condition"]["age"], 60);
    });
}

#[test]
fn destroy_keeps_buckets_bmac_did_not_make_or_may_not_delete_and_empties_the_rest() {
    run(async {
        let (project, cluster) = ("acme-keep", "prod");
        let s = server();
        let p = provider(project, cluster);
        let ctx = StepContext::default();
        let none = Inputs::default();

        // Someone's bucket given by name: adopted and secured, not recreated, never deleted.
        let theirs = "acme-existing-logs";
        let (status, made) = s
            .gcs(
                "POST",
                &format!("/storage/v1/b?project={project}"),
                Some(json!({"name": theirs, "location": "EUROPE-WEST1", "labels": {"owner": "secops"}})),
            )
            .await;
        assert_eq!(status, 200, "{made}");
        let mut cfg = bucket_config(theirs, 30);
        cfg.force_destroy = true;
        let adopted = step("audit.bucket", kinds::OBJECT_BUCKET, &cfg);
        let out = apply(&p, &adopted, &none, &ctx).await.unwrap();
        assert_eq!(
            out.get("created").and_then(|v| v.value()),
            Some(&json!(false))
        );
        let writes = s.bucket_writes(project, theirs).await;
        let methods: Vec<&str> = writes
            .iter()
            .map(|r| r["method"].as_str().unwrap())
            .collect();
        assert_eq!(
            methods,
            ["POST", "PATCH"],
            "their insert, then bmac's one patch"
        );
        let got = s.bucket(theirs).await;
        assert_eq!(
            got["labels"],
            json!({"owner": "secops"}),
            "not marked as bmac's"
        );
        assert_eq!(
            got["iamConfiguration"]["publicAccessPrevention"],
            "enforced"
        );
        assert_eq!(got["retentionPolicy"]["retentionPeriod"], "2592000");
        destroy(&p, &adopted, &none, out).await.unwrap();
        s.bucket(theirs).await;

        // Made by bmac without force_destroy: kept.
        let kept = step(
            "audit.bucket",
            kinds::OBJECT_BUCKET,
            &bucket_config("acme-kept-audit", 30),
        );
        let out = apply(&p, &kept, &none, &ctx).await.unwrap();
        assert_eq!(
            out.get("created").and_then(|v| v.value()),
            Some(&json!(true))
        );
        destroy(&p, &kept, &none, out).await.unwrap();
        s.bucket("acme-kept-audit").await;

        // Made by bmac with force_destroy: emptied, then deleted — once retention lets it.
        let scratch = "acme-scratch-audit";
        let mut cfg = bucket_config(scratch, 30);
        cfg.force_destroy = true;
        let doomed = step("audit.bucket", kinds::OBJECT_BUCKET, &cfg);
        let out = apply(&p, &doomed, &none, &ctx).await.unwrap();
        let objects = [
            "cloudaudit.googleapis.com/activity/2026/01/01/a.json",
            "b.json",
        ];
        for o in objects {
            let path = format!("/upload/storage/v1/b/{scratch}/o?uploadType=media&name={o}");
            let (status, e) = s.gcs("POST", &path, Some(json!({"entry": 1}))).await;
            assert_eq!(status, 200, "{e}");
        }
        let err = destroy(&p, &doomed, &none, out.clone()).await.unwrap_err();
        assert!(!err.is_retryable(), "{err:?}");
        assert!(
            err.message.contains("retention policy") && !err.message.contains("credentials"),
            "a retained object is no missing permission: {}",
            err.message
        );
        s.bucket(scratch).await;
        for o in objects {
            s.control(
                "storage",
                "POST",
                "/_bmac/edit",
                Some(json!({"name": format!("b/{scratch}/o/{o}"), "patch": {"timeCreated": "2020-01-01T00:00:00Z"}})),
            )
            .await;
        }
        destroy(&p, &doomed, &none, out).await.unwrap();
        let (status, _) = s
            .gcs("GET", &format!("/storage/v1/b/{scratch}"), None)
            .await;
        assert_eq!(status, 404);
        let deletes: Vec<String> = s
            .bucket_writes(project, scratch)
            .await
            .iter()
            .filter(|r| r["method"] == "DELETE" && r["status"] == 204)
            .map(|r| r["path"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            deletes,
            [
                format!("/storage/v1/b/{scratch}/o/b.json"),
                format!("/storage/v1/b/{scratch}/o/{}", objects[0]),
                format!("/storage/v1/b/{scratch}"),
            ],
            "the objects (as listed), then the bucket"
        );
    });
}

/// The bindings of `policy` (JSON) that are not `role`'s.
fn bindings_but(policy: &Value, role: &str) -> Vec<Value> {
    policy["bindings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["role"] != role)
        .cloned()
        .collect()
}

#[test]
fn an_audit_archive_is_a_sink_whose_own_identity_may_only_create_objects_in_the_bucket() {
    run(async {
        let (project, cluster) = ("acme-archive", "ops");
        let s = server();
        let p = provider(project, cluster);
        let ctx = StepContext::default();
        let bucket = "acme-ops-audit";
        let b = step(
            "audit.bucket",
            kinds::OBJECT_BUCKET,
            &bucket_config(bucket, 30),
        );
        apply(&p, &b, &Inputs::default(), &ctx).await.unwrap();

        // Others' grants on the bucket, a conditional one among them (read back only at
        // policy version 3).
        let mut policy = s.bucket_policy(bucket).await;
        let conditional = json!({"role": "roles/storage.objectViewer", "members": ["user:temp@example.com"],
            "condition": {"title": "until 2030", "expression": "request.time < timestamp(\"2030-01-01T00:00:00Z\")"}});
        let others = json!({"role": "roles/storage.objectViewer", "members": ["group:auditors@example.com"]});
        let bindings = policy["bindings"].as_array_mut().unwrap();
        bindings.push(others.clone());
        bindings.push(conditional.clone());
        policy["version"] = json!(3);
        let (status, e) = s
            .gcs("PUT", &format!("/storage/v1/b/{bucket}/iam"), Some(policy))
            .await;
        assert_eq!(status, 200, "{e}");
        let theirs = s.bucket_policy(bucket).await["bindings"].clone();

        let filter = format!(
            "logName:\"cloudaudit.googleapis.com\" AND resource.type=\"k8s_cluster\" AND resource.labels.cluster_name=\"{cluster}\" AND resource.labels.location=\"{REGION}\""
        );
        let archive = step(
            "audit.archive",
            kinds::AUDIT_ARCHIVE,
            &AuditArchiveConfig {
                prefix: "audit/".into(),
            },
        );
        let a_in = inputs(&[("log_group", json!(filter)), ("bucket", json!(bucket))]);
        let out = apply(&p, &archive, &a_in, &ctx).await.unwrap();
        let writer = out.str("writer_identity").unwrap().to_owned();
        assert!(
            writer.starts_with("serviceAccount:service-")
                && writer.ends_with("@gcp-sa-logging.iam.gserviceaccount.com"),
            "the sink's own identity: {writer}"
        );
        let sinks = google_cloud_logging_v2::client::ConfigServiceV2::builder()
            .with_endpoint(s.url("logging"))
            .build()
            .await
            .unwrap();
        let sink_name = format!("projects/{project}/sinks/bmac-{cluster}-audit");
        assert_eq!(out.str("sink"), Some(sink_name.as_str()));
        let sink = sinks
            .get_sink()
            .set_sink_name(&sink_name)
            .send()
            .await
            .unwrap();
        assert_eq!(sink.destination, format!("storage.googleapis.com/{bucket}"));
        assert_eq!(sink.filter, filter);
        assert_eq!(sink.writer_identity, writer);
        let policy = s.bucket_policy(bucket).await;
        assert_eq!(roles_of(&policy, &writer), [OBJECT_CREATOR]);
        assert_eq!(
            bindings_but(&policy, OBJECT_CREATOR),
            theirs.as_array().unwrap().clone(),
            "others' bindings, the conditional one too, are kept"
        );
        assert!(
            roles_of(&s.project_policy(project).await, &writer).is_empty(),
            "nothing on the project"
        );

        // Re-applied: nothing written.
        let storage_writes = s.mutations("storage", bucket).await.len();
        let sink_writes = s.mutations("logging", "/sinks").await.len();
        apply(&p, &archive, &a_in, &ctx).await.unwrap();
        assert_eq!(s.mutations("storage", bucket).await.len(), storage_writes);
        assert_eq!(s.mutations("logging", "/sinks").await.len(), sink_writes);

        // The grant removed by hand: drift, and apply grants it again.
        let without = bindings_but(&s.bucket_policy(bucket).await, OBJECT_CREATOR);
        s.control(
            "storage",
            "POST",
            "/_bmac/edit",
            Some(json!({"name": format!("b/{bucket}:iamPolicy"), "patch": {"bindings": without}})),
        )
        .await;
        let config = observed_config(observe(&p, &archive, &a_in).await);
        assert_eq!(config["delivery"], format!("not into gs://{bucket}"));
        apply(&p, &archive, &a_in, &ctx).await.unwrap();
        let policy = s.bucket_policy(bucket).await;
        assert_eq!(roles_of(&policy, &writer), [OBJECT_CREATOR]);
        assert_eq!(
            bindings_but(&policy, OBJECT_CREATOR),
            theirs.as_array().unwrap().clone()
        );
        assert!(observed_config(observe(&p, &archive, &a_in).await)
            .get("delivery")
            .is_none());

        // Destroyed: the sink and its grant go, others' bindings stay.
        destroy(&p, &archive, &a_in, out).await.unwrap();
        let err = sinks
            .get_sink()
            .set_sink_name(&sink_name)
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.http_status_code(), Some(404));
        let policy = s.bucket_policy(bucket).await;
        assert!(roles_of(&policy, &writer).is_empty());
        assert_eq!(policy["bindings"], theirs);
        assert!(matches!(
            observe(&p, &archive, &a_in).await,
            Observed::Absent
        ));
    });
}

/// The bad-input rows only Google can answer: an archive bucket another project owns is refused
/// before bmac changes it; one the credentials may not read is the API's 403, naming the
/// permission.
#[test]
fn an_archive_bucket_of_another_project_is_refused_and_a_denied_one_names_the_permission() {
    run(async {
        let (project, cluster) = ("acme-mine", "prod");
        let s = server();
        let p = provider(project, cluster);
        let ctx = StepContext::default();
        let none = Inputs::default();
        let theirs = "acme-someone-elses-logs";
        let (status, made) = s
            .gcs(
                "POST",
                "/storage/v1/b?project=acme-other",
                Some(json!({"name": theirs, "location": "EUROPE-WEST1"})),
            )
            .await;
        assert_eq!(status, 200, "{made}");
        s.control("storage", "DELETE", "/_bmac/requests", None)
            .await;
        let other = step(
            "audit.bucket",
            kinds::OBJECT_BUCKET,
            &bucket_config(theirs, 30),
        );
        let e = apply(&p, &other, &none, &ctx).await.unwrap_err();
        assert!(!e.is_retryable(), "{e:?}");
        assert_eq!(e.code.as_deref(), Some("bmac::gcp::bucket_taken"), "{e:?}");
        assert!(e.message.contains("another project"), "{}", e.message);
        let writes = s.bucket_writes("acme-other", theirs).await;
        assert!(
            writes.is_empty(),
            "another project's bucket was changed: {writes:#?}"
        );

        let denied = "acme-denied-logs";
        s.control(
            "storage",
            "POST",
            "/_bmac/faults",
            Some(json!({"method": "GET", "path_prefix": format!("/storage/v1/b/{denied}"), "status": 403, "count": 1,
                "message": format!("bmac@{project}.iam.gserviceaccount.com does not have storage.buckets.get access to the Google Cloud Storage bucket.")})),
        )
        .await;
        let step_denied = step(
            "audit.bucket",
            kinds::OBJECT_BUCKET,
            &bucket_config(denied, 30),
        );
        let e = apply(&p, &step_denied, &none, &ctx).await.unwrap_err();
        assert!(!e.is_retryable(), "{e:?}");
        assert!(e.message.contains("storage.buckets.get"), "{}", e.message);
    });
}
