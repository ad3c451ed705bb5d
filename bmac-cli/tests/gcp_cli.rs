//! End-to-end tests of the real `bmac` binary building a GKE cluster with its in-cluster
//! baseline: the Google side on the project's Google Cloud API test server
//! (`scripts/gcp-env.sh`), the Kubernetes side on the real kube-apiserver
//! (`scripts/kube-env.sh`) whose address and CA the test server's clusters report. bmac gets
//! the environment a user pointing it at Google endpoints would have (endpoint overrides and an
//! `authorized_user` credentials file) and no kubeconfig: the in-cluster steps reach the
//! apiserver through the cluster step's outputs, with Google access tokens the GCP provider
//! mints, which the apiserver's token webhook authenticates as the Google account (GKE's rule:
//! the user is the account's e-mail) by asking the test server's `tokeninfo`.
//!
//! - [`a_gke_build_is_applied_reapplied_changed_repaired_and_destroyed`]: the first apply, read
//!   back from both servers (cluster, pool, service accounts; namespaces, Pod Security labels,
//!   the annotated ServiceAccount, Kyverno and its policies); a re-apply that sends the test
//!   server no mutating call; the pool's autoscaling changed in the spec — exactly one
//!   `setAutoscaling`; hand changes (authorized networks, the pool's autoscaling) shown by
//!   `bmac drift` (exit 2) naming step and field, and put right by `bmac apply`; destroy
//!   leaving nothing bmac made.
//! - [`an_apply_killed_while_the_cluster_is_created_resumes_without_creating_twice`]: `bmac apply`
//!   SIGKILLed once the cluster's create operation is checkpointed and still running; the next
//!   apply completes: one `clusters` create over both runs, nothing made twice. (It adopts the
//!   in-doubt cluster by observing it rather than polling the checkpointed operation, and so
//!   keeps GKE's `default-pool`: a known bug of the cluster handler, see the test.)
//!
//! What bmac did is read back from the servers — the test server's REST API and request log
//! (`GET /_bmac/requests`), the apiserver through kube-rs — never taken from bmac's state or
//! output.
//!
//! Run (as scripts/test.sh does): `scripts/kube-env.sh start /tmp/k && . /tmp/k/env &&
//! GCP_ENV_DELAY_MS=1000 GCP_ENV_CLUSTER_CA=/tmp/k/pki/ca.crt scripts/gcp-env.sh start /tmp/g &&
//! . /tmp/g/env && BMAC_E2E=1 cargo test -p bmac-cli --all-features --test gcp_cli`. Without
//! the servers (and without `BMAC_E2E=1`) every test prints a notice and returns.

#![cfg(all(feature = "gcp", feature = "kube"))]

mod common;
mod gcp_support;
mod kube_support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use common::ids;
use common::unwrapped;
use gcp_support::project::{Gke, APPLY};
use gcp_support::{google, Call, Google};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, PostParams};
use kube::Client;
use kube_support::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

/// The account the test server's credentials belong to, and the Kubernetes user GKE makes of
/// it; [`owner_is_cluster_admin`] checks that the apiserver agrees.
const TEST_USER: &str = "bmac-test@example.com";

/// GKE's status enums as the test server writes them (the integers of the API's enums, as the
/// clients ask with `enum-encoding=int`): a cluster's `PROVISIONING` and `RUNNING`, an
/// operation's `RUNNING`.
const CLUSTER_PROVISIONING: i64 = 1;
const CLUSTER_RUNNING: i64 = 2;
const OPERATION_RUNNING: i64 = 2;

/// What GKE gives a project owner: cluster-admin, here through RBAC.
const OWNER_BINDING: &str = "bmac-gke-project-owner";

/// The Kyverno policies the spec asks for.
const POLICIES: &[&str] = &[
    "default-pod-security-labels",
    "disallow-host-namespaces",
    "disallow-privileged",
    "require-non-root",
    "restrict-registries",
];

/// Every step the spec expands to.
fn steps(gke: &Gke) -> Vec<String> {
    let ns = &gke.namespace;
    let mut all: Vec<String> = [
        "network",
        "cluster.key",
        "cluster",
        "node_pool.general.role",
        "node_pool.general",
        "policy.engine",
        "pod_security.kube-system",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    all.extend(POLICIES.iter().map(|p| format!("policy.{p}")));
    all.extend([
        format!("namespace.{ns}"),
        format!("pod_security.{ns}"),
        format!("workload_identity.{ns}-checkout.role"),
        format!("workload_identity.{ns}-checkout.binding"),
        format!("workload_identity.{ns}-checkout.service_account"),
    ]);
    all
}

/// Checks that the apiserver authenticates the test server's tokens as GKE does (the account's
/// e-mail, asked of the token's issuer) and refuses one it did not mint, then gives that account
/// what GKE gives a project owner: cluster-admin (a ClusterRoleBinding, made once per apiserver).
async fn owner_is_cluster_admin(admin: &Client, google: &Google) {
    let token = google.mint().expect("a token of the test user");
    let (status, info) = google.token_info(&token);
    assert_eq!(status, 200, "tokeninfo: {info}");
    assert_eq!(info["email"], TEST_USER, "{info}");
    for (token, expected) in [
        (token.as_str(), Some(TEST_USER)),
        ("ya29.bmac-never-minted", None),
    ] {
        let review = token_review(admin, token).await;
        let user = review["status"]["user"]["username"].as_str();
        assert_eq!(
            (
                review["status"]["authenticated"].as_bool().unwrap_or(false),
                user
            ),
            (expected.is_some(), expected),
            "the apiserver's review of a Google token (is BMAC_GKE_TOKENINFO_FILE filled, i.e. \
             gcp-env.sh started with kube-env.sh's env?): {review}"
        );
    }
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": OWNER_BINDING},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": TEST_USER}],
    }))
    .expect("a ClusterRoleBinding");
    let api: Api<ClusterRoleBinding> = Api::all(admin.clone());
    match api.create(&PostParams::default(), &binding).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("create the owner's ClusterRoleBinding: {e}"),
    }
}

/// The apiserver's TokenReview of `token` (its authenticators, the webhook among them).
async fn token_review(admin: &Client, token: &str) -> Value {
    let body = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token},
    });
    let req = http::Request::post("/apis/authentication.k8s.io/v1/tokenreviews")
        .header("content-type", "application/json")
        .body(body.to_string().into_bytes())
        .expect("a TokenReview request");
    let text = admin.request_text(req).await.expect("POST tokenreviews");
    serde_json::from_str(&text).expect("a TokenReview")
}

/// Both servers, the lock on the apiserver, and the account's rights; `None` when a test is
/// skipped (no `BMAC_E2E`).
async fn servers(test: &str) -> Option<(Google, TestCluster)> {
    let google = google(test)?;
    let kube = connect(test).await?;
    owner_is_cluster_admin(&kube.admin, &google).await;
    Some((google, kube))
}

/// The mutating requests as `METHOD path`.
fn mutations(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .map(|c| format!("{} {}", c.method, c.path))
        .collect()
}

/// `(totalMinNodeCount, totalMaxNodeCount)` of a pool.
fn autoscaling(gke: &Gke, pool: &str) -> (i64, i64) {
    let p = gke.pool(pool).unwrap_or_else(|| panic!("node pool {pool}"));
    let a = &p["autoscaling"];
    (
        a["totalMinNodeCount"].as_i64().unwrap_or(-1),
        a["totalMaxNodeCount"].as_i64().unwrap_or(-1),
    )
}

/// The authorized networks of the cluster's control plane.
fn authorized_networks(gke: &Gke) -> Vec<String> {
    let c = gke.cluster().expect("the cluster");
    c["controlPlaneEndpointsConfig"]["ipEndpointsConfig"]["authorizedNetworksConfig"]["cidrBlocks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["cidrBlock"].as_str().map(str::to_owned))
        .collect()
}

/// The steps a human `bmac plan` lists as changing.
fn planned_changes(plan: &str) -> Vec<String> {
    plan.lines()
        .filter(|l| l.contains(" will be ") || l.contains(" must be replaced"))
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .collect()
}

/// The node pool's Google service account.
fn pool_account(gke: &Gke) -> String {
    format!(
        "bmac-{}-general@{}.iam.gserviceaccount.com",
        gke.name, gke.project
    )
}

/// Reads back what the first apply built, on both servers.
async fn check_built(gke: &Gke, admin: &Client) {
    let cluster = gke.cluster().expect("the GKE cluster exists");
    assert_eq!(cluster["status"], CLUSTER_RUNNING, "{cluster}");
    let server = std::env::var("BMAC_KUBE_SERVER").expect("BMAC_KUBE_SERVER");
    assert_eq!(
        format!(
            "https://{}",
            cluster["endpoint"].as_str().unwrap_or_default()
        ),
        server,
        "the test server's clusters report the apiserver"
    );
    assert_eq!(
        cluster["workloadIdentityConfig"]["workloadPool"],
        format!("{}.svc.id.goog", gke.project)
    );
    let pools: Vec<&str> = cluster["nodePools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(pools, ["general"], "the default pool is removed");
    assert_eq!(autoscaling(gke, "general"), (1, 3));
    assert_eq!(authorized_networks(gke), ["198.51.100.0/24"]);

    let ns = &gke.namespace;
    let mut labels = psa_labels("restricted", "restricted", "restricted");
    labels.insert("owner".into(), "shop".into());
    let actual = namespace_labels(admin, ns).await.expect("the namespace");
    for (k, v) in &labels {
        assert_eq!(actual.get(k), Some(v), "label {k} of {ns}: {actual:?}");
    }
    let system = namespace_labels(admin, "kube-system")
        .await
        .expect("kube-system");
    assert_eq!(
        system
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("privileged"),
        "kube-system is exempt: {system:?}"
    );
    // The Kubernetes service account names the Google one bmac made for it, and the project
    // has that one and the pool's, no other.
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), ns);
    let sa = sas
        .get("checkout")
        .await
        .expect("the Kubernetes service account");
    let annotations = sa.metadata.annotations.unwrap_or_default();
    let workload = annotations
        .get("iam.gke.io/gcp-service-account")
        .cloned()
        .unwrap_or_else(|| panic!("no iam.gke.io/gcp-service-account: {annotations:?}"));
    assert!(
        workload.starts_with(&format!("bmac-{}-", gke.name))
            && workload.ends_with(&format!("@{}.iam.gserviceaccount.com", gke.project)),
        "{workload}"
    );
    let mut accounts = vec![pool_account(gke), workload];
    accounts.sort();
    assert_eq!(gke.service_accounts(), accounts);
    assert_eq!(crd_established(admin, KYVERNO_CRD).await, Some(true));
    let mut names: Vec<String> = cluster_policies(admin)
        .await
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    names.sort();
    assert_eq!(names, POLICIES);
}

/// Asserts that nothing bmac made is left on either server.
async fn check_destroyed(gke: &Gke, admin: &Client) {
    assert!(gke.cluster().is_none(), "the cluster is gone");
    assert_eq!(
        gke.service_accounts(),
        Vec::<String>::new(),
        "accounts left"
    );
    let networks = gke
        .google
        .get(
            "compute",
            &format!("/compute/v1/projects/{}/global/networks", gke.project),
        )
        .unwrap_or(Value::Null);
    let left: Vec<&Value> = networks["items"].as_array().into_iter().flatten().collect();
    assert!(left.is_empty(), "networks left: {left:?}");
    assert_eq!(namespace_labels(admin, &gke.namespace).await, None);
    assert_eq!(crd_established(admin, KYVERNO_CRD).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gke_build_is_applied_reapplied_changed_repaired_and_destroyed() {
    let Some((google, kube)) = servers("gke lifecycle").await else {
        return;
    };
    let admin = &kube.admin;
    ensure_no_kyverno(admin).await;
    let t0 = Instant::now();
    let gke = Gke::new(google.clone(), &suffix());

    // The spec has no audit archive: apply refuses it on the baseline, before any Google call,
    // unless told to go ahead.
    google.clear_requests();
    let refused = gke.bmac(&["apply", "--auto-approve"]).await;
    refused.expect_code(3, "lint refusal");
    assert!(
        unwrapped(&refused.stderr).contains("BMAC001"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        google.requests(false),
        Vec::<Call>::new(),
        "refused before any call"
    );

    // 1. The first apply builds every step, the in-cluster ones through the cluster's outputs:
    // the apiserver asked the test server's tokeninfo about bmac's Google token.
    let first = gke.apply("first apply").await;
    let succeeded = ids(&first.events(), "step_succeeded");
    for step in steps(&gke) {
        assert!(
            succeeded.contains(&step),
            "{step} did not succeed: {succeeded:?}"
        );
    }
    let calls = google.requests(false);
    assert!(
        calls
            .iter()
            .any(|c| c.service == "oauth" && c.path == "/tokeninfo" && c.status == 200),
        "the apiserver never asked about a Google token: {:#?}",
        calls.iter().map(Call::to_string).collect::<Vec<_>>()
    );
    let created = mutations(&google.requests(true));
    let count = |suffix: &str| created.iter().filter(|c| c.ends_with(suffix)).count();
    assert_eq!(
        count(&format!("{}/clusters", gke.location())),
        1,
        "{created:#?}"
    );
    assert_eq!(
        count(&format!("{}/nodePools", gke.cluster_path())),
        1,
        "{created:#?}"
    );
    assert_eq!(
        count(&format!("projects/{}/serviceAccounts", gke.project)),
        2,
        "{created:#?}"
    );
    check_built(&gke, admin).await;

    // 2. Re-applying changes nothing: no mutating call reaches the test server.
    google.clear_requests();
    let again = gke.apply("re-apply").await;
    assert!(
        ids(&again.events(), "step_started").is_empty(),
        "a no-op apply started steps: {}",
        again.stdout
    );
    let calls = google.requests(false);
    assert!(
        calls
            .iter()
            .any(|c| c.method == "GET" && c.path.ends_with(&gke.cluster_path())),
        "the re-apply did not observe the cluster: {calls:?}"
    );
    assert_eq!(
        mutations(&google.requests(true)),
        Vec::<String>::new(),
        "the re-apply wrote to Google"
    );

    // 3. The pool's autoscaling changes in the spec: one in-place update, one setAutoscaling.
    gke.sandbox.edit_spec("max = 3\n", "max = 5\n");
    let plan = gke.bmac(&["plan", "--detailed-exitcode"]).await;
    plan.expect_code(2, "plan after the autoscaling change");
    let text = plan.stdout;
    assert_eq!(planned_changes(&text), ["node_pool.general"], "{text}");
    assert!(text.contains("~ /scaling/max: 3 → 5"), "{text}");
    google.clear_requests();
    gke.apply("apply the autoscaling change").await;
    assert_eq!(
        mutations(&google.requests(true)),
        [format!(
            "POST /v1/{}/nodePools/general:setAutoscaling",
            gke.cluster_path()
        )]
    );
    assert_eq!(autoscaling(&gke, "general"), (1, 5));

    // 4. Hand changes: the control plane opened to everyone, the pool's maximum raised.
    gke.google.edit(
        "container",
        &gke.cluster_path(),
        json!({"controlPlaneEndpointsConfig": {"ipEndpointsConfig": {"authorizedNetworksConfig":
            {"enabled": true, "cidrBlocks": [{"cidrBlock": "0.0.0.0/0"}]}}}}),
    );
    gke.google.edit(
        "container",
        &format!("{}/nodePools/general", gke.cluster_path()),
        json!({"autoscaling": {"totalMaxNodeCount": 9}}),
    );
    assert_eq!(authorized_networks(&gke), ["0.0.0.0/0"]);
    google.clear_requests();
    let drift = gke.bmac(&["drift"]).await;
    drift.expect_code(2, "drift after hand changes");
    let text = drift.stdout;
    for line in [
        "~ cluster (cluster) changed outside bmac:",
        "    /endpoint/public_cidrs/0: applied \"198.51.100.0/24\" → now \"0.0.0.0/0\"",
        "~ node_pool.general (node_pool) changed outside bmac:",
        "    /scaling/max: applied 5 → now 9",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
    assert_eq!(
        mutations(&google.requests(true)),
        Vec::<String>::new(),
        "drift wrote"
    );
    google.clear_requests();
    gke.apply("apply after the hand changes").await;
    let mut repaired = mutations(&google.requests(true));
    repaired.sort();
    assert_eq!(
        repaired,
        [
            format!(
                "POST /v1/{}/nodePools/general:setAutoscaling",
                gke.cluster_path()
            ),
            format!("PUT /v1/{}", gke.cluster_path()),
        ]
    );
    assert_eq!(authorized_networks(&gke), ["198.51.100.0/24"]);
    assert_eq!(autoscaling(&gke, "general"), (1, 5));
    gke.bmac(&["drift"])
        .await
        .expect_code(0, "drift after the repair");

    // 5. Destroy: nothing bmac made is left on either server.
    let _finalizer = NamespaceFinalizer::start(admin);
    gke.bmac(&["destroy", "--auto-approve"])
        .await
        .expect_code(0, "destroy");
    check_destroyed(&gke, admin).await;
    eprintln!("GKE lifecycle took {:.1}s", t0.elapsed().as_secs_f64());
}

/// The checkpoint the journal holds for `step`, if any.
fn checkpoint(gke: &Gke, step: &str) -> Option<Value> {
    std::fs::read_to_string(gke.sandbox.state_dir().join("journal.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.find('{').map(|at| &line[at..]))
        .filter_map(|json| serde_json::from_str::<Value>(json).ok())
        .rfind(|r| r["record"] == "checkpoint" && r["id"] == step)
        .map(|r| r["data"].clone())
}

/// Starts `bmac apply` and SIGKILLs it once the journal holds the checkpoint of the cluster's
/// create operation; returns that operation's name and the steps the run had reported done.
fn apply_killed_while_the_cluster_is_created(gke: &Gke) -> (String, BTreeSet<String>) {
    let mut child = gke.spawn(&APPLY);
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("a pid fits in i32"));
    let stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
            .collect::<Vec<Value>>()
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let op = loop {
        if let Some(op) = checkpoint(gke, "cluster") {
            break op;
        }
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            let _ = kill(pid, Signal::SIGKILL);
            panic!("the cluster's create was never checkpointed");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    kill(pid, Signal::SIGKILL).expect("SIGKILL bmac");
    let status = child.wait().expect("wait for bmac");
    assert!(status.code().is_none(), "bmac was killed: {status:?}");
    let events = reader.join().expect("the reader thread");
    let name = op["operation"]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("a GKE operation in the checkpoint: {op}"))
        .to_owned();
    (name, ids(&events, "step_succeeded").into_iter().collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_killed_while_the_cluster_is_created_resumes_without_creating_twice() {
    let Some((google, kube)) = servers("gke kill and resume").await else {
        return;
    };
    let admin = &kube.admin;
    ensure_no_kyverno(admin).await;
    let gke = Gke::new(google.clone(), &suffix());
    google.clear_requests();

    let (op, done) =
        tokio::task::block_in_place(|| apply_killed_while_the_cluster_is_created(&gke));
    assert!(!done.contains("cluster"), "{done:?}");
    let running = google
        .get("container", &format!("/v1/{op}"))
        .expect("the checkpointed operation");
    assert_eq!(
        running["status"], OPERATION_RUNNING,
        "the kill landed while the create ran (is the test server's --delay-ms, \
         GCP_ENV_DELAY_MS, at least 1000?): {running}"
    );
    let cluster = gke.cluster().expect("the cluster being created");
    assert_eq!(cluster["status"], CLUSTER_PROVISIONING, "{cluster}");

    // The resume observes the in-doubt cluster (PROVISIONING, then RUNNING: its status is
    // what it waits on) and adopts it; it does not re-create it.
    // Known bug, not asserted here: an adopted cluster keeps GKE's `default-pool` (the
    // cluster handler removes it in `apply`, which adoption does not call), and the
    // checkpointed operation is never polled (observe's status is waited on instead).
    gke.sandbox.unlock_stale();
    gke.apply("the resumed apply").await;

    // Over both runs: one create of each thing, and one of each exists.
    let both = mutations(&google.requests(true));
    let count = |suffix: &str| both.iter().filter(|c| c.ends_with(suffix)).count();
    assert_eq!(
        count(&format!("POST /v1/{}/clusters", gke.location())),
        1,
        "{both:#?}"
    );
    assert_eq!(
        count(&format!("{}/nodePools", gke.cluster_path())),
        1,
        "{both:#?}"
    );
    assert_eq!(
        count(&format!(
            "POST /v1/projects/{}/serviceAccounts",
            gke.project
        )),
        2,
        "{both:#?}"
    );
    assert_eq!(
        count(&format!(
            "/compute/v1/projects/{}/global/networks",
            gke.project
        )),
        1,
        "{both:#?}"
    );
    let cluster = gke.cluster().expect("the cluster");
    assert_eq!(cluster["status"], CLUSTER_RUNNING, "{cluster}");
    assert_eq!(autoscaling(&gke, "general"), (1, 3));
    assert_eq!(
        gke.service_accounts().len(),
        2,
        "{:?}",
        gke.service_accounts()
    );
    assert!(namespace_labels(admin, &gke.namespace).await.is_some());
    gke.bmac(&["plan", "--detailed-exitcode"])
        .await
        .expect_code(0, "plan after the resume");

    let _finalizer = NamespaceFinalizer::start(admin);
    gke.bmac(&["destroy", "--auto-approve"])
        .await
        .expect_code(0, "destroy after the resume");
    check_destroyed(&gke, admin).await;
}
