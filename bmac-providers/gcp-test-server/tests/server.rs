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

#[tokio::test]
async fn cluster_lifecycle_with_operations_conflicts_and_404() {
    std::fs::create_dir_all(std::env::temp_dir()).unwrap();
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
            ClusterUpdate::new().set_desired_datapath_provider(DatapathProvider::AdvancedDatapath),
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
}

#[tokio::test]
async fn invalid_clusters_are_400() {
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
}

#[tokio::test]
async fn unknown_fields_are_refused_at_any_depth() {
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
}

#[tokio::test]
async fn injected_429s_then_success_and_the_request_log() {
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
        Some(&json!({"method": "GET", "path_prefix": "/v1/projects/", "status": 429, "count": 2})),
        None,
    );
    assert_eq!(status, 200);
    let (status, body) = http(
        "GET",
        &format!("{}/v1/{PARENT}/clusters", server.url("CONTAINER")),
        None,
        None,
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
    assert!(log.iter().all(|r| r["query"]
        .as_str()
        .unwrap()
        .contains("%24alt=json%3Benum-encoding%3Dint")
        || r["query"]
            .as_str()
            .unwrap()
            .contains("$alt=json;enum-encoding=int")
        || r["query"] == ""));
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

#[tokio::test]
async fn tokens_from_the_token_endpoint_401_without_and_impersonation() {
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
}

#[tokio::test]
async fn iam_policies_keep_etags_and_audit_configs() {
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
    assert_eq!(p1.audit_configs, [audit.clone()]);

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
}

fn bytes_of(s: &str) -> bytes::Bytes {
    bytes::Bytes::from(s.as_bytes().to_vec())
}
