//! The test server driven as a separate process by the official google-cloud-rust clients
//! (and, for what those clients cannot send, raw HTTP). Every test starts its own server.

mod support;

use std::time::{Duration, Instant};

use google_cloud_container_v1::client::ClusterManager;
use google_cloud_container_v1::model::{
    cluster, node_pool, operation, ClusterUpdate, DatapathProvider, NodePool, NodePoolAutoscaling,
    Operation,
};
use google_cloud_gax::error::rpc::Code;
use serde_json::json;
use support::{anonymous, crypto, http, Server};

const PARENT: &str = "projects/bmac-test-project/locations/europe-west4";

async fn container(server: &Server) -> ClusterManager {
    crypto();
    ClusterManager::builder()
        .with_endpoint(server.url("CONTAINER"))
        .with_credentials(anonymous())
        .build()
        .await
        .expect("client")
}

async fn wait_done(client: &ClusterManager, op: &Operation) -> Operation {
    let name = format!("{PARENT}/operations/{}", op.name);
    let t0 = Instant::now();
    loop {
        let op = client
            .get_operation()
            .set_name(&name)
            .send()
            .await
            .expect("get operation");
        if op.status == operation::Status::Done {
            return op;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "operation not done in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[allow(deprecated)]
fn new_cluster(name: &str) -> google_cloud_container_v1::model::Cluster {
    google_cloud_container_v1::model::Cluster::new()
        .set_name(name)
        .set_initial_node_count(2)
}

#[test]
fn cluster_lifecycle_with_operations_conflicts_and_404() {
    support::run(async {
        let ca = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            ca.path(),
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let server = Server::start(&[
            "--allow-anonymous",
            "--delay-ms",
            "400",
            "--cluster-endpoint",
            "127.0.0.1:6443",
            "--cluster-ca",
            ca.path().to_str().unwrap(),
        ]);
        let client = container(&server).await;
        let cluster_name = format!("{PARENT}/clusters/c1");

        let op = client
            .create_cluster()
            .set_parent(PARENT)
            .set_cluster(new_cluster("c1"))
            .send()
            .await
            .expect("create");
        assert_eq!(op.operation_type, operation::Type::CreateCluster);
        assert_eq!(op.status, operation::Status::Running);
        assert!(op.name.starts_with("operation-"), "{}", op.name);

        let c = client
            .get_cluster()
            .set_name(&cluster_name)
            .send()
            .await
            .unwrap();
        assert_eq!(c.status, cluster::Status::Provisioning);
        assert_eq!(c.endpoint, "127.0.0.1:6443");
        assert_eq!(c.node_pools.len(), 1);
        assert_eq!(c.node_pools[0].name, "default-pool");
        assert_eq!(c.node_pools[0].initial_node_count, 2);
        assert_eq!(c.node_pools[0].status, node_pool::Status::Provisioning);
        let ca_b64 = &c.master_auth.as_ref().unwrap().cluster_ca_certificate;
        assert!(
            ca_b64.starts_with("LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t"),
            "{ca_b64}"
        );
        assert_eq!(
            c.self_link,
            format!("https://container.googleapis.com/v1/{cluster_name}")
        );

        // A second create of the same name, and any change while the operation runs.
        let err = client
            .create_cluster()
            .set_parent(PARENT)
            .set_cluster(new_cluster("c1"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.status().unwrap().code, Code::AlreadyExists);
        assert_eq!(err.http_status_code(), Some(409));
        let err = client
            .update_cluster()
            .set_name(&cluster_name)
            .set_update(ClusterUpdate::new().set_desired_logging_service("none"))
            .send()
            .await
            .unwrap_err();
        let status = err.status().unwrap();
        assert_eq!(status.code, Code::FailedPrecondition);
        assert_eq!(
            status.message,
            format!("Cluster is running incompatible operation {}.", op.name)
        );
        assert_eq!(err.http_status_code(), Some(400));

        let done = wait_done(&client, &op).await;
        assert!(!done.end_time.is_empty());
        let c = client
            .get_cluster()
            .set_name(&cluster_name)
            .send()
            .await
            .unwrap();
        assert_eq!(c.status, cluster::Status::Running);
        assert_eq!(c.node_pools[0].status, node_pool::Status::Running);

        // Node pool autoscaling through an update: applied when its operation is done.
        let op = client
            .update_cluster()
            .set_name(&cluster_name)
            .set_update(
                ClusterUpdate::new()
                    .set_desired_node_pool_id("default-pool")
                    .set_desired_node_pool_autoscaling(
                        NodePoolAutoscaling::new()
                            .set_enabled(true)
                            .set_min_node_count(1)
                            .set_max_node_count(5),
                    ),
            )
            .send()
            .await
            .unwrap();
        let c = client
            .get_cluster()
            .set_name(&cluster_name)
            .send()
            .await
            .unwrap();
        assert_eq!(c.status, cluster::Status::Reconciling);
        assert!(c.node_pools[0].autoscaling.is_none());
        wait_done(&client, &op).await;
        let pool = client
            .get_node_pool()
            .set_name(format!("{cluster_name}/nodePools/default-pool"))
            .send()
            .await
            .unwrap();
        let a = pool.autoscaling.unwrap();
        assert!(a.enabled);
        assert_eq!((a.min_node_count, a.max_node_count), (1, 5));

        // The datapath provider is fixed at creation.
        let err = client
            .update_cluster()
            .set_name(&cluster_name)
            .set_update(
                ClusterUpdate::new()
                    .set_desired_datapath_provider(DatapathProvider::AdvancedDatapath),
            )
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.status().unwrap().code, Code::InvalidArgument);

        // A second pool, then its duplicate.
        let op = client
            .create_node_pool()
            .set_parent(&cluster_name)
            .set_node_pool(NodePool::new().set_name("pool-b").set_initial_node_count(1))
            .send()
            .await
            .unwrap();
        assert_eq!(op.operation_type, operation::Type::CreateNodePool);
        wait_done(&client, &op).await;
        let err = client
            .create_node_pool()
            .set_parent(&cluster_name)
            .set_node_pool(NodePool::new().set_name("pool-b").set_initial_node_count(1))
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.status().unwrap().code, Code::AlreadyExists);
        let pools = client
            .list_node_pools()
            .set_parent(&cluster_name)
            .send()
            .await
            .unwrap();
        assert_eq!(
            pools
                .node_pools
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>(),
            ["default-pool", "pool-b"]
        );

        // 404s.
        let err = client
            .get_cluster()
            .set_name(format!("{PARENT}/clusters/nope"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.status().unwrap().code, Code::NotFound);
        assert_eq!(err.http_status_code(), Some(404));
        let err = client
            .get_operation()
            .set_name(format!("{PARENT}/operations/operation-nope"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.status().unwrap().code, Code::NotFound);

        // Delete: STOPPING, then gone.
        let op = client
            .delete_cluster()
            .set_name(&cluster_name)
            .send()
            .await
            .unwrap();
        assert_eq!(op.operation_type, operation::Type::DeleteCluster);
        let c = client
            .get_cluster()
            .set_name(&cluster_name)
            .send()
            .await
            .unwrap();
        assert_eq!(c.status, cluster::Status::Stopping);
        wait_done(&client, &op).await;
        let err = client
            .get_cluster()
            .set_name(&cluster_name)
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.status().unwrap().code, Code::NotFound);
        let ops = client
            .list_operations()
            .set_parent(PARENT)
            .send()
            .await
            .unwrap();
        assert_eq!(ops.operations.len(), 4);
    });
}

#[test]
fn invalid_clusters_are_400() {
    support::run(async {
        let server = Server::start(&["--allow-anonymous"]);
        let client = container(&server).await;
        for (parent, cluster, needle) in [
            (
                PARENT,
                google_cloud_container_v1::model::Cluster::new().set_name("c1"),
                "initial_node_count",
            ),
            (
                "projects/bmac-test-project/locations/mars",
                new_cluster("c1"),
                "not a valid region or zone",
            ),
            (
                "projects/Bad_Project/locations/europe-west4",
                new_cluster("c1"),
                "Invalid project id",
            ),
            (PARENT, new_cluster("Not_A_Name"), "cluster.name"),
            (
                PARENT,
                new_cluster("dpv2")
                    .set_network_config(
                        google_cloud_container_v1::model::NetworkConfig::new()
                            .set_datapath_provider(DatapathProvider::AdvancedDatapath),
                    )
                    .set_network_policy(
                        google_cloud_container_v1::model::NetworkPolicy::new().set_enabled(true),
                    ),
                "Dataplane V2",
            ),
        ] {
            let err = client
                .create_cluster()
                .set_parent(parent)
                .set_cluster(cluster)
                .send()
                .await
                .unwrap_err();
            let status = err.status().expect("a service error");
            assert_eq!(status.code, Code::InvalidArgument, "{parent}");
            assert!(status.message.contains(needle), "{}", status.message);
        }
    });
}

#[test]
fn unknown_fields_are_refused_at_any_depth() {
    support::run(async {
        let server = Server::start(&["--allow-anonymous"]);
        let url = format!("{}/v1/{PARENT}/clusters", server.url("CONTAINER"));
        let (status, body) = http(
            "POST",
            &url,
            Some(
                &json!({"cluster": {"name": "c1", "initialNodeCount": 1, "masterAuth": {"bogusField": true}}}),
            ),
            None,
        );
        assert_eq!(status, 400);
        assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains("Unknown name \"bogusField\""), "{msg}");
        // The same body without it is accepted.
        let (status, _) = http(
            "POST",
            &url,
            Some(&json!({"cluster": {"name": "c1", "initialNodeCount": 1, "masterAuth": {}}})),
            None,
        );
        assert_eq!(status, 200);
    });
}

#[test]
fn injected_429s_then_success_and_the_request_log() {
    support::run(async {
        use google_cloud_gax::retry_policy::{AlwaysRetry, RetryPolicyExt};
        let server = Server::start(&["--allow-anonymous", "--delay-ms", "0"]);
        crypto();
        let client = ClusterManager::builder()
            .with_endpoint(server.url("CONTAINER"))
            .with_credentials(anonymous())
            .with_retry_policy(AlwaysRetry.with_attempt_limit(5))
            .with_backoff_policy(
                google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder::new()
                    .with_initial_delay(Duration::from_millis(10))
                    .with_maximum_delay(Duration::from_millis(20))
                    .build()
                    .unwrap(),
            )
            .build()
            .await
            .unwrap();
        let control = format!("{}/_bmac/faults", server.url("CONTAINER"));
        let (status, _) = http(
            "POST",
            &control,
            Some(
                &json!({"method": "GET", "path_prefix": "/v1/projects/", "status": 429, "count": 2}),
            ),
            None,
        );
        assert_eq!(status, 200);
        let (status, head, body) = support::http_full(
            "GET",
            &format!("{}/v1/{PARENT}/clusters", server.url("CONTAINER")),
            None,
            None,
        );
        assert!(
            head.to_ascii_lowercase().contains("\r\nretry-after: 1"),
            "{head}"
        );
        assert_eq!(status, 429);
        assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
        let list = client
            .list_clusters()
            .set_parent(PARENT)
            .send()
            .await
            .expect("retried to success");
        assert!(list.clusters.is_empty());

        let op = client
            .create_cluster()
            .set_parent(PARENT)
            .set_cluster(new_cluster("c2"))
            .send()
            .await
            .unwrap();
        wait_done(&client, &op).await;
        let log = server.requests("container");
        let statuses: Vec<u64> = log.iter().map(|r| r["status"].as_u64().unwrap()).collect();
        assert_eq!(&statuses[..3], [429, 429, 200]);
        let mutating: Vec<&str> = log
            .iter()
            .filter(|r| r["mutating"] == true)
            .map(|r| r["path"].as_str().unwrap())
            .collect();
        assert_eq!(mutating, [format!("/v1/{PARENT}/clusters")]);
        let (_, only) = http(
            "GET",
            &format!("{}/_bmac/requests?mutating=true", server.url("COMPUTE")),
            None,
            None,
        );
        assert_eq!(only.as_array().unwrap().len(), 1);
        assert_eq!(only[0]["method"], "POST");
        // Every call the SDK made asked for JSON with enums as integers.
        for r in &log[1..] {
            let q = r["query"].as_str().unwrap();
            assert!(q.contains("%24alt=json%3Benum-encoding%3Dint"), "{q}");
        }
    });
}

const PROJECT: &str = "bmac-test-project";

fn authorized_user(server: &Server) -> serde_json::Value {
    json!({
        "type": "authorized_user",
        "client_id": "bmac-test-client.apps.googleusercontent.com",
        "client_secret": "bmac-test-client-secret",
        "refresh_token": "bmac-test-refresh-token",
        "token_uri": server.env["BMAC_GCP_OAUTH"],
    })
}

#[test]
fn tokens_from_the_token_endpoint_401_without_and_impersonation() {
    support::run(async {
        use google_cloud_auth::credentials::{impersonated, user_account};
        use google_cloud_iam_admin_v1::client::Iam;
        use google_cloud_resourcemanager_v3::client::Projects;
        let server = Server::start(&["--project", PROJECT]);
        crypto();

        let anon = container(&server).await;
        let err = anon
            .list_clusters()
            .set_parent(PARENT)
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.status().unwrap().code, Code::Unauthenticated);
        assert_eq!(err.http_status_code(), Some(401));

        let user = user_account::Builder::new(authorized_user(&server))
            .build()
            .unwrap();
        let gke = ClusterManager::builder()
            .with_endpoint(server.url("CONTAINER"))
            .with_credentials(user.clone())
            .build()
            .await
            .unwrap();
        gke.list_clusters()
            .set_parent(PARENT)
            .send()
            .await
            .expect("authorised list");
        let log = server.requests("container");
        assert_eq!(log.len(), 2);
        assert_eq!(log[0]["principal"], serde_json::Value::Null);
        assert_eq!(log[0]["status"], 401);
        assert_eq!(log[1]["principal"], "user:bmac-test@example.com");
        assert_eq!(server.requests("oauth").len(), 1);

        // A project this server does not have.
        let err = gke
            .list_clusters()
            .set_parent("projects/someone-elses/locations/europe-west4")
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.status().unwrap().code, Code::PermissionDenied);

        // Impersonating a service account the user created.
        let iam = Iam::builder()
            .with_endpoint(server.url("IAM"))
            .with_credentials(user.clone())
            .build()
            .await
            .unwrap();
        let sa = iam
            .create_service_account()
            .set_name(format!("projects/{PROJECT}"))
            .set_account_id("bmac-deployer")
            .send()
            .await
            .unwrap();
        assert_eq!(
            sa.email,
            format!("bmac-deployer@{PROJECT}.iam.gserviceaccount.com")
        );
        let imp = impersonated::Builder::new(json!({
            "type": "impersonated_service_account",
            "service_account_impersonation_url": format!(
                "{}/v1/projects/-/serviceAccounts/{}:generateAccessToken",
                server.url("IAMCREDENTIALS"),
                sa.email
            ),
            "source_credentials": authorized_user(&server),
        }))
        .build()
        .unwrap();
        let rm = Projects::builder()
            .with_endpoint(server.url("CLOUDRESOURCEMANAGER"))
            .with_credentials(imp)
            .build()
            .await
            .unwrap();
        let p = rm
            .get_project()
            .set_name(format!("projects/{PROJECT}"))
            .send()
            .await
            .unwrap();
        assert_eq!(p.project_id, PROJECT);
        assert!(
            p.name.starts_with("projects/") && p.name.len() == "projects/".len() + 12,
            "{}",
            p.name
        );
        let log = server.requests("cloudresourcemanager");
        assert_eq!(log[0]["principal"], format!("serviceAccount:{}", sa.email));
        let iamcreds = server.requests("iamcredentials");
        assert_eq!(iamcreds.len(), 1);
        assert_eq!(iamcreds[0]["principal"], "user:bmac-test@example.com");
    });
}

#[test]
fn iam_policies_keep_etags_and_audit_configs() {
    support::run(async {
        use google_cloud_iam_admin_v1::client::Iam;
        use google_cloud_iam_v1::model::{AuditConfig, AuditLogConfig, Binding, Policy};
        use google_cloud_resourcemanager_v3::client::Projects;
        let server = Server::start(&["--allow-anonymous"]);
        crypto();
        let rm = Projects::builder()
            .with_endpoint(server.url("CLOUDRESOURCEMANAGER"))
            .with_credentials(anonymous())
            .build()
            .await
            .unwrap();
        let resource = format!("projects/{PROJECT}");
        let p0 = rm
            .get_iam_policy()
            .set_resource(&resource)
            .send()
            .await
            .unwrap();
        assert!(!p0.etag.is_empty());
        let audit = AuditConfig::new()
            .set_service("container.googleapis.com")
            .set_audit_log_configs([AuditLogConfig::new()
                .set_log_type(google_cloud_iam_v1::model::audit_log_config::LogType::DataRead)]);
        let p1 = rm
            .set_iam_policy()
            .set_resource(&resource)
            .set_policy(
                Policy::new()
                    .set_etag(p0.etag.clone())
                    .set_bindings([Binding::new()
                        .set_role("roles/viewer")
                        .set_members(["user:a@example.com"])])
                    .set_audit_configs([audit.clone()]),
            )
            .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths([
                "bindings",
                "etag",
                "auditConfigs",
            ]))
            .send()
            .await
            .unwrap();
        assert_ne!(p1.etag, p0.etag);
        assert_eq!(p1.audit_configs, std::slice::from_ref(&audit));

        // The stale etag.
        let err = rm
            .set_iam_policy()
            .set_resource(&resource)
            .set_policy(Policy::new().set_etag(p0.etag.clone()))
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.status().unwrap().code, Code::Aborted);
        assert_eq!(err.http_status_code(), Some(409));

        // Without a mask only bindings change: the audit configs stay.
        let p2 = rm
            .set_iam_policy()
            .set_resource(&resource)
            .set_policy(
                Policy::new()
                    .set_etag(p1.etag.clone())
                    .set_bindings([Binding::new()
                        .set_role("roles/editor")
                        .set_members(["user:b@example.com"])]),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(p2.bindings.len(), 1);
        assert_eq!(p2.bindings[0].role, "roles/editor");
        assert_eq!(p2.audit_configs, [audit]);

        // Service accounts: id rules, duplicates, unique ids, their own policies.
        let iam = Iam::builder()
            .with_endpoint(server.url("IAM"))
            .with_credentials(anonymous())
            .build()
            .await
            .unwrap();
        let err = iam
            .create_service_account()
            .set_name(&resource)
            .set_account_id("short")
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.status().unwrap().code, Code::InvalidArgument);
        let sa = iam
            .create_service_account()
            .set_name(&resource)
            .set_account_id("bmac-nodes")
            .send()
            .await
            .unwrap();
        assert_eq!(sa.unique_id.len(), 21);
        let err = iam
            .create_service_account()
            .set_name(&resource)
            .set_account_id("bmac-nodes")
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.status().unwrap().code, Code::AlreadyExists);
        let by_id = iam
            .get_service_account()
            .set_name(format!("projects/-/serviceAccounts/{}", sa.unique_id))
            .send()
            .await
            .unwrap();
        assert_eq!(by_id.email, sa.email);
        let sa_policy = iam
            .get_iam_policy()
            .set_resource(&sa.name)
            .send()
            .await
            .unwrap();
        let err = iam
            .set_iam_policy()
            .set_resource(&sa.name)
            .set_policy(Policy::new().set_etag(bytes_of("stale")))
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.status().unwrap().code, Code::Aborted);
        iam.set_iam_policy()
            .set_resource(&sa.name)
            .set_policy(
                Policy::new()
                    .set_etag(sa_policy.etag)
                    .set_bindings([Binding::new()
                        .set_role("roles/iam.workloadIdentityUser")
                        .set_members([format!(
                            "serviceAccount:{PROJECT}.svc.id.goog[kube-system/bmac]"
                        )])]),
            )
            .send()
            .await
            .unwrap();
        iam.delete_service_account()
            .set_name(&sa.name)
            .send()
            .await
            .unwrap();
        let err = iam
            .get_service_account()
            .set_name(&sa.name)
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.status().unwrap().code, Code::NotFound);
    });
}

fn bytes_of(s: &str) -> bytes::Bytes {
    bytes::Bytes::from(s.as_bytes().to_vec())
}

macro_rules! client {
    ($ty:ty, $server:expr, $service:literal) => {
        <$ty>::builder()
            .with_endpoint($server.url($service))
            .with_credentials(anonymous())
            .build()
            .await
            .unwrap()
    };
}

#[test]
fn kms_logging_monitoring_and_artifact_registry() {
    support::run(async {
        use google_cloud_artifactregistry_v1::client::ArtifactRegistry;
        use google_cloud_artifactregistry_v1::model::{
            remote_repository_config as rrc, repository, RemoteRepositoryConfig, Repository,
        };
        use google_cloud_kms_v1::client::KeyManagementService;
        use google_cloud_kms_v1::model::{CryptoKey, KeyRing};
        use google_cloud_logging_v2::client::{ConfigServiceV2, MetricsServiceV2};
        use google_cloud_logging_v2::model::{LogMetric, LogSink};
        use google_cloud_monitoring_v3::client::{AlertPolicyService, NotificationChannelService};
        use google_cloud_monitoring_v3::model::{alert_policy, AlertPolicy, NotificationChannel};
        use google_cloud_wkt::{Duration as PbDuration, FieldMask, Timestamp};
        let server = Server::start(&["--allow-anonymous", "--delay-ms", "100"]);
        crypto();
        let parent = format!("projects/{PROJECT}");

        // KMS: a ring, a key with rotation, a patch through the mask, the rules.
        let kms = client!(KeyManagementService, server, "CLOUDKMS");
        let loc = format!("{parent}/locations/europe-west4");
        let ring = kms
            .create_key_ring()
            .set_parent(&loc)
            .set_key_ring_id("bmac")
            .set_key_ring(KeyRing::new())
            .send()
            .await
            .unwrap();
        assert_eq!(ring.name, format!("{loc}/keyRings/bmac"));
        let err = kms
            .create_key_ring()
            .set_parent(&loc)
            .set_key_ring_id("bmac")
            .set_key_ring(KeyRing::new())
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.status().unwrap().code, Code::AlreadyExists);
        let next = Timestamp::clamp(4_000_000_000, 0);
        let key = kms
            .create_crypto_key()
            .set_parent(&ring.name)
            .set_crypto_key_id("secrets")
            .set_crypto_key(
                CryptoKey::new()
                    .set_rotation_period(PbDuration::clamp(7_776_000, 0))
                    .set_next_rotation_time(next),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            key.primary.as_ref().unwrap().name,
            format!("{}/cryptoKeyVersions/1", key.name)
        );
        let err = kms
            .create_crypto_key()
            .set_parent(&ring.name)
            .set_crypto_key_id("too-fast")
            .set_crypto_key(
                CryptoKey::new()
                    .set_rotation_period(PbDuration::clamp(3600, 0))
                    .set_next_rotation_time(next),
            )
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.status().unwrap().code, Code::InvalidArgument);
        let key = kms
            .update_crypto_key()
            .set_crypto_key(
                CryptoKey::new()
                    .set_name(&key.name)
                    .set_rotation_period(PbDuration::clamp(2_592_000, 0)),
            )
            .set_update_mask(FieldMask::default().set_paths(["rotation_period"]))
            .send()
            .await
            .unwrap();
        assert_eq!(key.rotation_period().unwrap().seconds(), 2_592_000);
        assert_eq!(key.next_rotation_time, Some(next));
        let policy = kms
            .get_iam_policy()
            .set_resource(&key.name)
            .send()
            .await
            .unwrap();
        assert!(!policy.etag.is_empty());

        // Logging: a sink with a unique writer identity, a metric.
        let config = client!(ConfigServiceV2, server, "LOGGING");
        let sink = config
            .create_sink()
            .set_parent(&parent)
            .set_sink(
                LogSink::new()
                    .set_name("bmac-audit")
                    .set_destination("storage.googleapis.com/bmac-audit")
                    .set_filter("logName:cloudaudit"),
            )
            .set_unique_writer_identity(true)
            .send()
            .await
            .unwrap();
        assert!(
            sink.writer_identity.starts_with("serviceAccount:service-"),
            "{}",
            sink.writer_identity
        );
        assert!(sink
            .writer_identity
            .ends_with("@gcp-sa-logging.iam.gserviceaccount.com"));
        let digits = sink
            .writer_identity
            .trim_start_matches("serviceAccount:service-")
            .split('@')
            .next()
            .unwrap();
        assert_eq!(digits.len(), 12);
        let sink = config
            .update_sink()
            .set_sink_name(format!("{parent}/sinks/bmac-audit"))
            .set_sink(
                LogSink::new()
                    .set_name("bmac-audit")
                    .set_destination("storage.googleapis.com/other")
                    .set_filter("ignored"),
            )
            .set_update_mask(FieldMask::default().set_paths(["destination"]))
            .send()
            .await
            .unwrap();
        assert_eq!(
            (sink.destination.as_str(), sink.filter.as_str()),
            ("storage.googleapis.com/other", "logName:cloudaudit")
        );
        let metrics = client!(MetricsServiceV2, server, "LOGGING");
        metrics
            .create_log_metric()
            .set_parent(&parent)
            .set_metric(
                LogMetric::new()
                    .set_name("bmac-denied")
                    .set_filter("protoPayload.status.code=7"),
            )
            .send()
            .await
            .unwrap();
        let err = metrics
            .create_log_metric()
            .set_parent(&parent)
            .set_metric(LogMetric::new().set_name("bmac-denied").set_filter("x"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.status().unwrap().code, Code::AlreadyExists);
        config
            .delete_sink()
            .set_sink_name(format!("{parent}/sinks/bmac-audit"))
            .send()
            .await
            .unwrap();
        let err = config
            .get_sink()
            .set_sink_name(format!("{parent}/sinks/bmac-audit"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.status().unwrap().code, Code::NotFound);

        // Monitoring: a channel and a policy that names it, found by display name.
        let channels = client!(NotificationChannelService, server, "MONITORING");
        let channel = channels
            .create_notification_channel()
            .set_name(&parent)
            .set_notification_channel(
                NotificationChannel::new()
                    .set_type("email")
                    .set_display_name("ops")
                    .set_labels([("email_address", "ops@example.com")]),
            )
            .send()
            .await
            .unwrap();
        assert!(channel
            .name
            .starts_with(&format!("{parent}/notificationChannels/")));
        let alerts = client!(AlertPolicyService, server, "MONITORING");
        let condition = alert_policy::Condition::new()
            .set_display_name("denied")
            .set_condition_threshold(
                alert_policy::condition::MetricThreshold::new()
                    .set_filter("metric.type=\"logging.googleapis.com/user/bmac-denied\""),
            );
        let err = alerts
            .create_alert_policy()
            .set_name(&parent)
            .set_alert_policy(
                AlertPolicy::new()
                    .set_display_name("bmac denied")
                    .set_conditions([condition.clone()])
                    .set_notification_channels([format!("{parent}/notificationChannels/404")]),
            )
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.status().unwrap().code, Code::InvalidArgument);
        let created = alerts
            .create_alert_policy()
            .set_name(&parent)
            .set_alert_policy(
                AlertPolicy::new()
                    .set_display_name("bmac denied")
                    .set_conditions([condition])
                    .set_notification_channels([channel.name.clone()]),
            )
            .send()
            .await
            .unwrap();
        let found = alerts
            .list_alert_policies()
            .set_name(&parent)
            .set_filter("display_name = \"bmac denied\"")
            .send()
            .await
            .unwrap();
        assert_eq!(found.alert_policies.len(), 1);
        assert_eq!(found.alert_policies[0].name, created.name);
        let none = alerts
            .list_alert_policies()
            .set_name(&parent)
            .set_filter("display_name = \"other\"")
            .send()
            .await
            .unwrap();
        assert!(none.alert_policies.is_empty());

        // Artifact Registry: a remote repository through a long-running operation.
        let ar = client!(ArtifactRegistry, server, "ARTIFACTREGISTRY");
        let repo = Repository::new()
            .set_format(repository::Format::Docker)
            .set_mode(repository::Mode::RemoteRepository)
            .set_remote_repository_config(RemoteRepositoryConfig::new().set_docker_repository(
                rrc::DockerRepository::new().set_custom_repository(
                    rrc::docker_repository::CustomRepository::new().set_uri("https://ghcr.io"),
                ),
            ));
        let op = ar
            .create_repository()
            .set_parent(&loc)
            .set_repository_id("ghcr")
            .set_repository(repo.clone())
            .send()
            .await
            .unwrap();
        assert!(!op.done);
        assert!(op.name.starts_with(&format!("{loc}/operations/")));
        let err = ar
            .create_repository()
            .set_parent(&loc)
            .set_repository_id("ghcr")
            .set_repository(repo)
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.status().unwrap().code, Code::AlreadyExists);
        tokio::time::sleep(Duration::from_millis(150)).await;
        let op = ar.get_operation().set_name(&op.name).send().await.unwrap();
        assert!(op.done);
        let got = ar
            .get_repository()
            .set_name(format!("{loc}/repositories/ghcr"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            got.registry_uri,
            format!("europe-west4-docker.pkg.dev/{PROJECT}/ghcr")
        );
        assert!(got.remote_repository_config().is_some());
    });
}

#[test]
fn compute_networks_subnetworks_and_routers() {
    support::run(async {
        use google_cloud_compute_v1::client::{
            GlobalOperations, Networks, RegionOperations, Routers, Subnetworks,
        };
        use google_cloud_compute_v1::model::{
            operation, Network, Router, RouterNat, Subnetwork, SubnetworkSecondaryRange,
        };
        let server = Server::start(&["--allow-anonymous", "--delay-ms", "100"]);
        crypto();
        let networks = client!(Networks, server, "COMPUTE");
        let ops = client!(GlobalOperations, server, "COMPUTE");
        let op = networks
            .insert()
            .set_project(PROJECT)
            .set_body(
                Network::new()
                    .set_name("bmac-vpc")
                    .set_auto_create_subnetworks(false),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(op.status, Some(operation::Status::Running));
        let err = networks
            .get()
            .set_project(PROJECT)
            .set_network("bmac-vpc")
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.status().unwrap().code, Code::NotFound);
        tokio::time::sleep(Duration::from_millis(150)).await;
        let op = ops
            .get()
            .set_project(PROJECT)
            .set_operation(op.name.unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(op.status, Some(operation::Status::Done));
        let net = networks
            .get()
            .set_project(PROJECT)
            .set_network("bmac-vpc")
            .send()
            .await
            .unwrap();
        assert_eq!(
            net.self_link.as_deref(),
            Some(
                format!(
                "https://www.googleapis.com/compute/v1/projects/{PROJECT}/global/networks/bmac-vpc"
            )
                .as_str()
            )
        );
        let err = networks
            .insert()
            .set_project(PROJECT)
            .set_body(Network::new().set_name("bmac-vpc"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.http_status_code(), Some(409));
        assert_eq!(err.status().unwrap().code, Code::AlreadyExists);
        let (status, body) = http(
            "POST",
            &format!(
                "{}/compute/v1/projects/{PROJECT}/global/networks",
                server.url("COMPUTE")
            ),
            Some(&json!({"name": "bmac-vpc"})),
            None,
        );
        assert_eq!(status, 409);
        assert_eq!(body["error"]["errors"][0]["reason"], "alreadyExists");

        let subnets = client!(Subnetworks, server, "COMPUTE");
        let region_ops = client!(RegionOperations, server, "COMPUTE");
        let subnet = Subnetwork::new()
            .set_name("bmac-nodes")
            .set_network(net.self_link.clone().unwrap())
            .set_ip_cidr_range("10.0.0.0/20")
            .set_secondary_ip_ranges([
                SubnetworkSecondaryRange::new()
                    .set_range_name("pods")
                    .set_ip_cidr_range("10.4.0.0/14"),
                SubnetworkSecondaryRange::new()
                    .set_range_name("services")
                    .set_ip_cidr_range("10.8.0.0/20"),
            ]);
        let err = subnets
            .insert()
            .set_project(PROJECT)
            .set_region("europe-west4")
            .set_body(subnet.clone().set_ip_cidr_range("10.0.0.0/99"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.status().unwrap().code, Code::InvalidArgument);
        let op = subnets
            .insert()
            .set_project(PROJECT)
            .set_region("europe-west4")
            .set_body(subnet)
            .send()
            .await
            .unwrap();
        let routers = client!(Routers, server, "COMPUTE");
        let rop = routers
            .insert()
            .set_project(PROJECT)
            .set_region("europe-west4")
            .set_body(
                Router::new()
                    .set_name("bmac-router")
                    .set_network(net.self_link.clone().unwrap())
                    .set_nats([RouterNat::new().set_name("bmac-nat")]),
            )
            .send()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        for op in [op, rop] {
            let done = region_ops
                .get()
                .set_project(PROJECT)
                .set_region("europe-west4")
                .set_operation(op.name.unwrap())
                .send()
                .await
                .unwrap();
            assert_eq!(done.status, Some(operation::Status::Done));
        }
        let got = subnets
            .get()
            .set_project(PROJECT)
            .set_region("europe-west4")
            .set_subnetwork("bmac-nodes")
            .send()
            .await
            .unwrap();
        assert_eq!(got.secondary_ip_ranges.len(), 2);
        assert_eq!(
            got.secondary_ip_ranges[0].range_name.as_deref(),
            Some("pods")
        );
        // A patch needs the current fingerprint.
        let err = subnets
            .patch()
            .set_project(PROJECT)
            .set_region("europe-west4")
            .set_subnetwork("bmac-nodes")
            .set_body(
                Subnetwork::new()
                    .set_fingerprint(bytes_of("stale"))
                    .set_private_ip_google_access(true),
            )
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.http_status_code(), Some(412));
        subnets
            .patch()
            .set_project(PROJECT)
            .set_region("europe-west4")
            .set_subnetwork("bmac-nodes")
            .set_body(
                Subnetwork::new()
                    .set_fingerprint(got.fingerprint.clone().unwrap())
                    .set_private_ip_google_access(true),
            )
            .send()
            .await
            .unwrap();
        let router = routers
            .get()
            .set_project(PROJECT)
            .set_region("europe-west4")
            .set_router("bmac-router")
            .send()
            .await
            .unwrap();
        assert_eq!(router.nats[0].name.as_deref(), Some("bmac-nat"));
        // The network is in use.
        let err = networks
            .delete()
            .set_project(PROJECT)
            .set_network("bmac-vpc")
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.status().unwrap().code, Code::InvalidArgument);
    });
}

#[test]
fn hand_edits_drift_a_cluster_and_node_pool_updates() {
    support::run(async {
        use google_cloud_container_v1::model::{
            network_policy, NetworkPolicy, NodeLabels, NodeTaint, NodeTaints,
        };
        let server = Server::start(&["--allow-anonymous", "--delay-ms", "0"]);
        let client = container(&server).await;
        let op = client
            .create_cluster()
            .set_parent(PARENT)
            .set_cluster(new_cluster("c3"))
            .send()
            .await
            .unwrap();
        wait_done(&client, &op).await;
        let name = format!("{PARENT}/clusters/c3");
        let (status, _) = http(
            "POST",
            &format!("{}/_bmac/edit", server.url("CONTAINER")),
            Some(
                &json!({"name": name, "patch": {"masterAuthorizedNetworksConfig": {"enabled": true, "cidrBlocks": [{"cidrBlock": "0.0.0.0/0"}]}}}),
            ),
            None,
        );
        assert_eq!(status, 200);
        #[allow(deprecated)]
        let man = client
            .get_cluster()
            .set_name(&name)
            .send()
            .await
            .unwrap()
            .master_authorized_networks_config
            .unwrap();
        assert!(man.enabled);
        assert_eq!(man.cidr_blocks[0].cidr_block, "0.0.0.0/0");
        // An edit must still be a valid resource.
        let (status, body) = http(
            "POST",
            &format!("{}/_bmac/edit", server.url("CONTAINER")),
            Some(&json!({"name": name, "patch": {"notAField": 1}})),
            None,
        );
        assert_eq!(status, 400, "{body}");

        // The older per-setting calls are operations too.
        let op = client
            .set_network_policy()
            .set_name(&name)
            .set_network_policy(
                NetworkPolicy::new()
                    .set_enabled(true)
                    .set_provider(network_policy::Provider::Calico),
            )
            .send()
            .await
            .unwrap();
        wait_done(&client, &op).await;
        let op = client
            .set_logging_service()
            .set_name(&name)
            .set_logging_service("none")
            .send()
            .await
            .unwrap();
        wait_done(&client, &op).await;
        let c = client.get_cluster().set_name(&name).send().await.unwrap();
        assert_eq!(
            c.network_policy.unwrap().provider,
            network_policy::Provider::Calico
        );
        assert_eq!(c.logging_service, "none");

        let pool = format!("{name}/nodePools/default-pool");
        let op = client
            .update_node_pool()
            .set_name(&pool)
            .set_node_version("1.33.6-gke.1000")
            .set_labels(NodeLabels::new().set_labels([("team", "platform")]))
            .set_taints(
                NodeTaints::new()
                    .set_taints([NodeTaint::new().set_key("dedicated").set_value("infra")]),
            )
            .send()
            .await
            .unwrap();
        wait_done(&client, &op).await;
        let op = client
            .set_node_pool_size()
            .set_name(&pool)
            .set_node_count(4)
            .send()
            .await
            .unwrap();
        assert_eq!(op.operation_type, operation::Type::SetNodePoolSize);
        wait_done(&client, &op).await;
        let p = client.get_node_pool().set_name(&pool).send().await.unwrap();
        assert_eq!(p.version, "1.33.6-gke.1000");
        assert_eq!(p.initial_node_count, 4);
        let config = p.config.unwrap();
        assert_eq!(config.labels["team"], "platform");
        assert_eq!(config.taints[0].key, "dedicated");
        let op = client
            .delete_node_pool()
            .set_name(&pool)
            .send()
            .await
            .unwrap();
        wait_done(&client, &op).await;
        let err = client
            .get_node_pool()
            .set_name(&pool)
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.status().unwrap().code, Code::NotFound);
    });
}

#[test]
fn the_clients_pollers_run_to_completion() {
    support::run(async {
        use google_cloud_artifactregistry_v1::client::ArtifactRegistry;
        use google_cloud_artifactregistry_v1::model::{repository, Repository};
        use google_cloud_compute_v1::client::Networks;
        use google_cloud_compute_v1::model::{operation, Network};
        use google_cloud_lro::Poller;
        let server = Server::start(&["--allow-anonymous", "--delay-ms", "300"]);
        crypto();
        let backoff = || {
            google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder::new()
                .with_initial_delay(Duration::from_millis(50))
                .with_maximum_delay(Duration::from_millis(100))
                .build()
                .unwrap()
        };
        let ar = ArtifactRegistry::builder()
            .with_endpoint(server.url("ARTIFACTREGISTRY"))
            .with_credentials(anonymous())
            .with_polling_backoff_policy(backoff())
            .build()
            .await
            .unwrap();
        let t0 = Instant::now();
        let repo = ar
            .create_repository()
            .set_parent(format!("projects/{PROJECT}/locations/us-central1"))
            .set_repository_id("docker-hub")
            .set_repository(Repository::new().set_format(repository::Format::Docker))
            .poller()
            .until_done()
            .await
            .expect("the repository");
        assert!(t0.elapsed() >= Duration::from_millis(300));
        assert_eq!(
            repo.name,
            format!("projects/{PROJECT}/locations/us-central1/repositories/docker-hub")
        );
        assert_eq!(repo.mode, repository::Mode::StandardRepository);

        let networks = Networks::builder()
            .with_endpoint(server.url("COMPUTE"))
            .with_credentials(anonymous())
            .with_polling_backoff_policy(backoff())
            .build()
            .await
            .unwrap();
        let op = networks
            .insert()
            .set_project(PROJECT)
            .set_body(
                Network::new()
                    .set_name("polled")
                    .set_auto_create_subnetworks(false),
            )
            .poller()
            .until_done()
            .await
            .expect("the operation");
        assert_eq!(op.status, Some(operation::Status::Done));
        networks
            .get()
            .set_project(PROJECT)
            .set_network("polled")
            .send()
            .await
            .expect("the network");
    });
}
