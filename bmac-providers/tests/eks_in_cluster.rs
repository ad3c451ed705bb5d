//! The in-cluster half of an EKS build on the real kube-apiserver, authenticated as on EKS: with
//! the `k8s-aws-v1.` tokens bmac mints from the AWS credentials, checked by the API server's
//! token webhook (`scripts/eks-authenticator.py`, started by `scripts/kube-env.sh`: what
//! aws-iam-authenticator does, the SigV4 signature verified as STS verifies it, the identity
//! asked of moto's STS and mapped through access entries).
//!
//! The cluster step really runs on moto, so the `credentials` the in-cluster steps get are the
//! `CredentialSource::Eks` it produced. moto's cluster has no API server behind its endpoint,
//! so **the endpoint and CA are the one thing substituted**: [`LocalApiServer`] wraps the AWS
//! provider for the `cluster` kind and replaces only the `endpoint` and `ca_data` of its
//! outputs with the local apiserver's; every other provider is the one `for_config` routes
//! for `provider = "eks"` (the kube provider with its `EksMinter`). Like EKS's cluster-creator
//! access entry (AmazonEKSClusterAdminPolicy, here the group `system:masters`), the test maps
//! the identity that creates the cluster in the authenticator's access-entry file.
//!
//! Also: tokens refused for each of aws-iam-authenticator's checks (with the reason the API
//! server reports), and the refresh of a token before its validity window ends.
//!
//! Needs moto (`scripts/moto-env.sh`) started before the kube test environment, whose `env`
//! then names the authenticator's cluster id (`BMAC_EKS_CLUSTER`) and access entries
//! (`BMAC_EKS_ACCESS_ENTRIES`); `scripts/test.sh` does both.

mod aws_mocks;
mod aws_support;
mod kube_support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::Credentials;
use aws_mocks::eks_fake::{self, Fake};
use aws_support::{eks, moto, output, spec, Build};
use base64::Engine as _;
use bmac_core::provider::{
    ApplyRequest, ConcurrencyGroup, DestroyRequest, ObserveRequest, Observed, Provider,
};
use bmac_core::{Inputs, OutputValue, Outputs, ProviderError, Step};
use bmac_providers::aws::token::{token, TOKEN_LIFETIME};
use bmac_providers::aws::{Aws, AwsProvider, EksMinter};
use bmac_providers::kube::{KubeProvider, MintedToken, TokenMinter};
use bmac_steps::config::{INPUT_CA_DATA, INPUT_CREDENTIALS, INPUT_ENDPOINT};
use bmac_steps::{kinds, CredentialSource};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use kube_support::fixtures::{bundle_sha256, cluster_policy_resource, crd_exists, namespace};
use kube_support::{connect, ensure_no_kyverno, in_cluster, suffix, NamespaceFinalizer, Run};
use serde_json::{json, Value};

const REGION: &str = "us-east-1";
/// How long STS honours a presigned URL after its signing time.
const SERVER_WINDOW: Duration = Duration::from_secs(15 * 60);

/// The AWS provider, with the `endpoint` and `ca_data` outputs of the steps routed to it (the
/// `cluster` step only) replaced by the local apiserver's: moto's EKS clusters have a made-up
/// endpoint with nothing behind it. Everything else, `credentials` included, is what the AWS
/// provider returned.
struct LocalApiServer {
    aws: AwsProvider,
    endpoint: String,
    ca_data: String,
}

impl LocalApiServer {
    fn substitute(&self, outputs: Outputs) -> Outputs {
        outputs
            .with(INPUT_ENDPOINT, self.endpoint.as_str())
            .with(INPUT_CA_DATA, self.ca_data.as_str())
    }
}

#[async_trait]
impl Provider for LocalApiServer {
    fn name(&self) -> &str {
        self.aws.name()
    }

    fn expected_duration(&self, step: &Step) -> Option<Duration> {
        self.aws.expected_duration(step)
    }

    fn max_duration(&self, step: &Step) -> Option<Duration> {
        self.aws.max_duration(step)
    }

    fn poll_interval(&self, step: &Step) -> Duration {
        self.aws.poll_interval(step)
    }

    fn concurrency_group(&self, step: &Step) -> Option<ConcurrencyGroup> {
        self.aws.concurrency_group(step)
    }

    async fn apply(&self, req: ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        Ok(self.substitute(self.aws.apply(req).await?))
    }

    async fn observe(&self, req: ObserveRequest<'_>) -> Result<Observed, ProviderError> {
        Ok(match self.aws.observe(req).await? {
            Observed::Present { config, outputs } => Observed::Present {
                config,
                outputs: self.substitute(outputs),
            },
            other => other,
        })
    }

    async fn destroy(&self, req: DestroyRequest<'_>) -> Result<(), ProviderError> {
        self.aws.destroy(req).await
    }
}

/// The local apiserver's URL and CA (base64 PEM), from the test kubeconfig.
fn local_api_server(kubeconfig: &str) -> (String, String) {
    let config = Kubeconfig::read_from(kubeconfig).expect("test kubeconfig");
    let cluster = config
        .clusters
        .first()
        .and_then(|c| c.cluster.clone())
        .expect("a cluster in the test kubeconfig");
    (
        cluster.server.expect("server"),
        cluster
            .certificate_authority_data
            .expect("certificate-authority-data"),
    )
}

/// The authenticator's side of the test environment (see the module docs). Made after the
/// test's `TestCluster`, so that it is dropped — the entries emptied — while the test still
/// holds the cluster.
struct Eks {
    /// The cluster id tokens must be signed for.
    cluster: String,
    /// The access-entry file, emptied again when the test ends.
    entries: PathBuf,
}

impl Eks {
    fn from_env() -> Option<Eks> {
        match (
            std::env::var("BMAC_EKS_CLUSTER"),
            std::env::var("BMAC_EKS_ACCESS_ENTRIES"),
        ) {
            (Ok(cluster), Ok(entries)) => Some(Eks {
                cluster,
                entries: entries.into(),
            }),
            _ if std::env::var("BMAC_E2E").is_ok_and(|v| v == "1") => panic!(
                "BMAC_E2E=1 but the kube test environment has no EKS authenticator \
                 (BMAC_EKS_CLUSTER, BMAC_EKS_ACCESS_ENTRIES): start moto, then \
                 `scripts/kube-env.sh start DIR`, and source both env files"
            ),
            _ => {
                eprintln!("skipped: no EKS authenticator (run scripts/test.sh)");
                None
            }
        }
    }

    /// Maps `arn` (only) to `groups`, as an access entry; the authenticator reads the file on
    /// every review. Written whole, then renamed, so no review sees half of it.
    fn map(&self, arn: &str, groups: &[&str]) {
        let entries = json!({"accessEntries": [{"principalArn": arn, "kubernetesGroups": groups}]});
        self.write(&entries);
    }

    fn unmap_all(&self) {
        self.write(&json!({"accessEntries": []}));
    }

    fn write(&self, entries: &Value) {
        let next = self.entries.with_extension("next");
        std::fs::write(&next, entries.to_string()).expect("write access entries");
        std::fs::rename(&next, &self.entries).expect("replace access entries");
    }

    fn source(&self) -> CredentialSource {
        CredentialSource::Eks {
            cluster: self.cluster.clone(),
            region: REGION.into(),
        }
    }
}

impl Drop for Eks {
    fn drop(&mut self) {
        self.unmap_all();
    }
}

/// A token signed at `at` with the process's test credentials (those the harness gives the
/// SDK, and the authenticator's STS knows), as `EksMinter` signs them.
fn signed(cluster: &str, at: SystemTime) -> String {
    let credentials = Credentials::new("testing", "testing", None, None, "eks-test");
    token(credentials, REGION, cluster, at).expect("token")
}

/// Waits for the next second of the clock. A token is its signing second (and credentials and
/// cluster), and the API server caches reviews by token for two minutes: a check that must be
/// reviewed afresh (after an access entry changed) uses a token of a second no earlier token
/// was signed in.
async fn next_second() {
    let into = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_nanos();
    let rest = Duration::from_secs(1) - Duration::from_nanos(u64::from(into));
    tokio::time::sleep(rest + Duration::from_millis(20)).await;
}

fn presigned_url(token: &str) -> String {
    let body = token.strip_prefix("k8s-aws-v1.").expect("token prefix");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .expect("base64url");
    String::from_utf8(bytes).expect("utf-8 URL")
}

fn token_of(url: &str) -> String {
    format!(
        "k8s-aws-v1.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url)
    )
}

fn query_param<'a>(url: &'a str, name: &str) -> &'a str {
    url.split(['?', '&'])
        .find_map(|p| p.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
        .unwrap_or_else(|| panic!("{name} in {url}"))
}

/// The HTTP status of listing namespaces with `token` as the bearer token.
async fn status_with(kubeconfig: &str, token: &str) -> u16 {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("test kubeconfig");
    let options = KubeConfigOptions {
        context: Some("bmac-admin".into()),
        ..KubeConfigOptions::default()
    };
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .expect("config");
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.to_owned().into()),
        ..Default::default()
    };
    let client = Client::try_from(config).expect("client");
    match Api::<Namespace>::all(client)
        .list(&ListParams::default().limit(1))
        .await
    {
        Ok(_) => 200,
        Err(kube::Error::Api(status)) => status.code,
        Err(e) => panic!("listing namespaces: {e}"),
    }
}

/// The API server's own TokenReview of `token` (its whole authenticator chain, the webhook
/// included): who it takes the bearer for, or why not.
async fn review(admin: &Client, token: &str) -> Value {
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                      "spec": {"token": token}});
    let request = http::Request::post("/apis/authentication.k8s.io/v1/tokenreviews")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).expect("json"))
        .expect("request");
    let answer: Value = admin.request(request).await.expect("POST tokenreviews");
    answer["status"].clone()
}

fn rejection(status: &Value) -> String {
    assert_ne!(status["authenticated"], json!(true), "{status}");
    status["error"].as_str().unwrap_or_default().to_owned()
}

/// The EKS build: cluster, network and node pool, and every in-cluster kind.
fn eks_spec(cluster: &str, sfx: &str) -> String {
    let bundle = kube_support::fixtures::BUNDLE;
    let sha = bundle_sha256();
    eks(
        cluster,
        &format!(
            r#"
[pod_security]
enforce = "baseline"
audit = "restricted"
warn = "restricted"
exempt = ["kube-system"]

[[namespace]]
name = "payments-{sfx}"
labels = {{ team = "payments" }}

[[storage_class]]
name = "gp3-{sfx}"
type = "gp3"
encrypted = true

[[workload_identity]]
namespace = "payments-{sfx}"
service_account = "api"
permissions = ["s3:GetObject"]
mechanism = "irsa"

[policy]
engine = "kyverno"
version = "v1.12.5"
bundle = {{ path = "{bundle}", sha256 = "{sha}" }}
baseline = ["disallow-privileged"]

[[manifest]]
name = "settings"
namespace = "payments-{sfx}"
inline = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  region: {REGION}
"""
"#
        ),
    )
}

/// The in-cluster inputs of a cluster step's recorded outputs.
fn in_cluster_inputs(state: &bmac_core::State) -> Inputs {
    let mut inputs = Inputs::default();
    for name in [INPUT_ENDPOINT, INPUT_CA_DATA, INPUT_CREDENTIALS] {
        inputs.0.insert(
            name.to_owned(),
            OutputValue::Plain(output(state, "cluster", name).clone()),
        );
    }
    inputs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_cluster_half_of_an_eks_build_runs_on_the_apiserver_as_the_eks_identity() {
    let Some(c) = connect("the_in_cluster_half_of_an_eks_build").await else {
        return;
    };
    let Some(moto) = moto() else { return };
    let Some(eks) = Eks::from_env() else { return };
    let _finalizer = NamespaceFinalizer::start(&c.admin);
    ensure_no_kyverno(&c.admin).await;
    kube_support::release_default_pod_security(&c.admin).await;

    let sfx = suffix();
    let s = spec(&eks_spec(&eks.cluster, &sfx));
    let (endpoint, ca_data) = local_api_server(&c.kubeconfig);
    let local = (endpoint.clone(), ca_data.clone());
    // EKS add-ons (the Pod Identity agent, the EBS CSI driver a storage class needs) are not in
    // moto: their steps go to the AWS provider on moto's clients with EKS answered by the SDK
    // mocks' fake of those operations (`aws_mocks::eks_fake`).
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut with_fake = (*moto.clients(&s, scratch.path()).await).clone();
    let fake = Fake::new(&eks.cluster);
    with_fake.eks = eks_fake::client(&fake, Vec::new());
    let addons = Arc::new(AwsProvider::from_aws(Aws::from_clients(with_fake)));
    let build = Build::new(moto.clone()).routing(move |providers, config| {
        providers
            .route(
                [kinds::CLUSTER],
                Arc::new(LocalApiServer {
                    aws: AwsProvider::new(config),
                    endpoint: local.0.clone(),
                    ca_data: local.1.clone(),
                }),
            )
            .route([kinds::ADDON, kinds::IDENTITY_BINDING], addons.clone())
    });
    let aws = moto.clients(&s, build.dir.path()).await;
    let identity = aws.sts.get_caller_identity().send().await.expect("STS");
    let creator = identity.arn().expect("caller ARN").to_owned();

    // An identity with no access entry is nobody to the cluster, even with a good token.
    eks.unmap_all();
    next_second().await;
    let unmapped = signed(&eks.cluster, SystemTime::now());
    assert_eq!(status_with(&c.kubeconfig, &unmapped).await, 401);
    let why = rejection(&review(&c.admin, &unmapped).await);
    assert!(why.contains("ARN is not mapped"), "{why}");

    // The cluster creator's access entry, as EKS makes it; then the build.
    eks.map(&creator, &["system:masters"]);
    let (summary, report) = build.apply(&s).await;
    assert!(report.is_success(), "{report:#?}");
    assert!(summary.create >= 12, "{summary:?}");
    let state = build.state().await;

    // The in-cluster steps got the cluster step's own credential source; only the endpoint and
    // CA are the local apiserver's (moto's cluster has its made-up endpoint).
    assert_eq!(
        output(&state, "cluster", "credentials"),
        &json!({"type": "eks", "cluster": eks.cluster, "region": REGION})
    );
    assert_eq!(output(&state, "cluster", "endpoint"), &json!(endpoint));
    let described = aws
        .eks
        .describe_cluster()
        .name(&eks.cluster)
        .send()
        .await
        .expect("DescribeCluster");
    let moto_endpoint = described
        .cluster()
        .and_then(|c| c.endpoint())
        .unwrap_or_default();
    assert!(
        moto_endpoint.starts_with("https://") && moto_endpoint != endpoint,
        "{moto_endpoint}"
    );

    // What the build made, read back with the admin client.
    let ns_name = format!("payments-{sfx}");
    let ns = Api::<Namespace>::all(c.admin.clone())
        .get(&ns_name)
        .await
        .expect("namespace");
    let labels = ns.metadata.labels.unwrap_or_default();
    assert_eq!(labels.get("team").map(String::as_str), Some("payments"));
    assert_eq!(
        labels
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("baseline"),
        "{labels:?}"
    );
    let account = Api::<ServiceAccount>::namespaced(c.admin.clone(), &ns_name)
        .get("api")
        .await
        .expect("service account");
    let role = output(
        &state,
        &format!("workload_identity.{ns_name}-api.role"),
        "arn",
    );
    assert_eq!(
        account
            .metadata
            .annotations
            .unwrap_or_default()
            .get("eks.amazonaws.com/role-arn")
            .map(|a| json!(a)),
        Some(role.clone()),
        "the account carries the IAM role made on moto"
    );
    let class = Api::<StorageClass>::all(c.admin.clone())
        .get(&format!("gp3-{sfx}"))
        .await
        .expect("storage class");
    assert_eq!(class.provisioner, "ebs.csi.aws.com");
    // The class came after the EBS CSI driver add-on and its Pod Identity agent (on the fake).
    let made = fake.lock().unwrap().mutations.clone();
    for addon in ["eks-pod-identity-agent", "aws-ebs-csi-driver"] {
        assert!(made.contains(&format!("CreateAddon {addon}")), "{made:?}");
    }
    assert_eq!(
        class.parameters.unwrap_or_default().get("type"),
        Some(&"gp3".to_owned())
    );
    let settings = Api::<ConfigMap>::namespaced(c.admin.clone(), &ns_name)
        .get("settings")
        .await
        .expect("manifest's ConfigMap");
    assert_eq!(settings.data.unwrap_or_default()["region"], REGION);
    assert!(crd_exists(&c.admin, "clusterpolicies.kyverno.io").await);
    let policies: Api<kube::api::DynamicObject> =
        Api::all_with(c.admin.clone(), &cluster_policy_resource());
    let names: Vec<String> = policies
        .list(&ListParams::default())
        .await
        .expect("cluster policies")
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert!(
        names.iter().any(|n| n.contains("disallow-privileged")),
        "{names:?}"
    );

    // Who the API server takes an EKS token for: the creator's ARN, with the entry's group.
    let who = review(&c.admin, &signed(&eks.cluster, SystemTime::now())).await;
    assert_eq!(who["authenticated"], json!(true), "{who}");
    assert_eq!(who["user"]["username"], json!(creator));
    let groups = who["user"]["groups"].as_array().expect("groups");
    assert!(groups.contains(&json!("system:masters")), "{who}");
    assert_eq!(who["user"]["extra"]["arn"], json!([creator]));

    // A new process re-reads everything through the same tokens: nothing to do.
    let plan = build.refreshed_plan(&s).await;
    let again = plan.summary();
    assert_eq!(
        (again.create, again.update, again.destroy),
        (0, 0, 0),
        "{again:?}"
    );

    // The identity the kube provider authenticates as is the ARN: without the entry's group,
    // RBAC forbids it (the API server names that user). Tokens are reviewed again only when
    // they differ (see `next_second`).
    eks.map(&creator, &[]);
    next_second().await;
    let minter = Arc::new(EksMinter::new(Arc::new(Aws::new(
        &moto.config(&s, build.dir.path()),
    ))));
    let mut run = Run::with_inputs(
        KubeProvider::new().with_minter("eks", minter),
        in_cluster_inputs(&state),
    );
    let denied = in_cluster(
        "namespace.denied",
        kinds::NAMESPACE,
        &namespace(&format!("denied-{sfx}"), &[]),
    );
    let err = run.apply(&denied).await.expect_err("RBAC forbids it");
    assert!(
        err.message.contains(&format!("as user \"{creator}\"")),
        "{}",
        err.message
    );

    // Tokens the authenticator refuses, each for its own reason: 401 from the API server (the
    // good one of the same second passes).
    eks.map(&creator, &["system:masters"]);
    next_second().await;
    let now = SystemTime::now();
    assert_eq!(
        status_with(&c.kubeconfig, &signed(&eks.cluster, now)).await,
        200
    );
    let other = signed("another-cluster", now);
    let earlier = presigned_url(&signed(&eks.cluster, now - Duration::from_secs(600)));
    let url = presigned_url(&signed(&eks.cluster, now));
    let forged = url.replace(
        query_param(&url, "X-Amz-Date"),
        query_param(&earlier, "X-Amz-Date"),
    );
    assert_ne!(forged, url);
    let expired = signed(&eks.cluster, now - SERVER_WINDOW - Duration::from_secs(30));
    for (what, token, reason) in [
        ("another cluster's", other, "SignatureDoesNotMatch"),
        ("a re-dated", token_of(&forged), "SignatureDoesNotMatch"),
        ("an expired", expired, "expired"),
    ] {
        assert_eq!(
            status_with(&c.kubeconfig, &token).await,
            401,
            "{what} token"
        );
        let why = rejection(&review(&c.admin, &token).await);
        assert!(why.contains(reason), "{what} token: {why}");
    }

    // Destroy: the in-cluster objects go through the same tokens, then the AWS side.
    let plan = build.destroy_plan().await;
    let report = build.run(&s, plan).await;
    assert!(report.is_success(), "{report:#?}");
    for _ in 0..100 {
        if Api::<Namespace>::all(c.admin.clone())
            .get_opt(&ns_name)
            .await
            .expect("GET namespace")
            .is_none()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(Api::<Namespace>::all(c.admin.clone())
        .get_opt(&ns_name)
        .await
        .expect("GET namespace")
        .is_none());
    assert!(Api::<StorageClass>::all(c.admin.clone())
        .get_opt(&format!("gp3-{sfx}"))
        .await
        .expect("GET storage class")
        .is_none());
}

/// An EKS minter whose tokens the cache is told live only `lifetime`: the validity window,
/// shortened so that its end comes within the test.
struct ShortLived {
    inner: Arc<EksMinter>,
    lifetime: Duration,
    mints: AtomicUsize,
}

#[async_trait]
impl TokenMinter for ShortLived {
    async fn mint(&self, source: &CredentialSource) -> Result<MintedToken, ProviderError> {
        let token = self.inner.mint(source).await?;
        self.mints.fetch_add(1, Ordering::SeqCst);
        Ok(token.expiring_at(SystemTime::now() + self.lifetime))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eks_token_is_minted_again_before_its_validity_window_ends() {
    let Some(c) = connect("an_eks_token_is_minted_again").await else {
        return;
    };
    let Some(moto) = moto() else { return };
    let Some(eks) = Eks::from_env() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let config = moto.config(&spec(&eks_spec(&eks.cluster, "refresh")), dir.path());
    let aws = Arc::new(Aws::new(&config));
    let creator = aws
        .clients()
        .await
        .expect("clients")
        .sts
        .get_caller_identity()
        .send()
        .await
        .expect("STS")
        .arn()
        .expect("ARN")
        .to_owned();
    eks.map(&creator, &["system:masters"]);
    next_second().await;

    // The server's window, measured: a token is good until 15 minutes after it was signed.
    let now = SystemTime::now();
    let late = signed(&eks.cluster, now - SERVER_WINDOW + Duration::from_secs(20));
    assert_eq!(status_with(&c.kubeconfig, &late).await, 200);
    let past = signed(&eks.cluster, now - SERVER_WINDOW - Duration::from_secs(20));
    assert_eq!(status_with(&c.kubeconfig, &past).await, 401);

    // The minter says its token expires inside that window (the cache mints again a minute
    // before that), and its token works.
    let minter = Arc::new(EksMinter::new(aws));
    let before = SystemTime::now();
    let minted = minter.mint(&eks.source()).await.expect("mint");
    let expires = minted
        .expires_at()
        .expect("an EKS token says when it expires");
    assert!(
        expires < before + SERVER_WINDOW && expires >= before + TOKEN_LIFETIME,
        "{minted:?}"
    );

    // Through the kube provider: one token while it is fresh, a new one (accepted) once its
    // window — two seconds here — is at its end (the cache refreshes at half of so short a
    // life).
    let short = Arc::new(ShortLived {
        inner: minter,
        lifetime: Duration::from_secs(2),
        mints: AtomicUsize::new(0),
    });
    let (endpoint, ca_data) = local_api_server(&c.kubeconfig);
    let mut inputs = Inputs::default();
    inputs
        .0
        .insert(INPUT_ENDPOINT.into(), OutputValue::Plain(json!(endpoint)));
    inputs
        .0
        .insert(INPUT_CA_DATA.into(), OutputValue::Plain(json!(ca_data)));
    inputs.0.insert(
        INPUT_CREDENTIALS.into(),
        OutputValue::Plain(eks.source().to_value()),
    );
    let run = Run::with_inputs(
        KubeProvider::new().with_minter("eks", short.clone()),
        inputs,
    );
    let step = in_cluster("ns.default", kinds::NAMESPACE, &namespace("default", &[]));
    for _ in 0..3 {
        assert!(matches!(
            run.observe(&step).await.expect("observe"),
            Observed::Present { .. }
        ));
    }
    assert_eq!(
        short.mints.load(Ordering::SeqCst),
        1,
        "a fresh token is kept"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(matches!(
        run.observe(&step)
            .await
            .expect("observe with the new token"),
        Observed::Present { .. }
    ));
    assert_eq!(short.mints.load(Ordering::SeqCst), 2, "minted again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_failing_the_authenticators_checks_are_refused_with_their_reasons() {
    let Some(c) = connect("tokens_failing_the_authenticators_checks").await else {
        return;
    };
    let Some(_moto) = moto() else { return };
    let Some(eks) = Eks::from_env() else { return };
    // Each is a good token's URL with one thing changed, as the checks before STS see it.
    let url = presigned_url(&signed(&eks.cluster, SystemTime::now()));
    let expires = format!("X-Amz-Expires={}", query_param(&url, "X-Amz-Expires"));
    let signed_headers = format!(
        "X-Amz-SignedHeaders={}",
        query_param(&url, "X-Amz-SignedHeaders")
    );
    let cases = [
        (
            url.replace(
                "https://sts.us-east-1.amazonaws.com/",
                "https://sts.example.com/",
            ),
            "unexpected hostname",
        ),
        (
            url.replace("amazonaws.com/", "amazonaws.com:8443/"),
            "unexpected hostname",
        ),
        (url.replace("https://", "http://"), "unexpected scheme"),
        (
            url.replace("amazonaws.com/?", "amazonaws.com/other?"),
            "unexpected path",
        ),
        (
            url.replace("Action=GetCallerIdentity", "Action=GetSessionToken"),
            "unexpected action",
        ),
        (
            url.replace(&expires, "X-Amz-Expires=901"),
            "invalid X-Amz-Expires",
        ),
        (
            url.replace(&signed_headers, "X-Amz-SignedHeaders=host"),
            "did not sign the x-k8s-aws-id header",
        ),
        (
            format!("{url}&RoleArn=x"),
            "non-whitelisted query parameter",
        ),
        (format!("{url}&Action=GetCallerIdentity"), "multiple values"),
    ];
    for (changed, reason) in cases {
        assert_ne!(changed, url, "{reason}: the URL was changed");
        let why = rejection(&review(&c.admin, &token_of(&changed)).await);
        assert!(why.contains(reason), "{reason}: {why}");
    }
    let why = rejection(&review(&c.admin, &format!("k8s-aws-v2.{}", &token_of(&url)[11..])).await);
    assert!(
        why.contains("missing expected 'k8s-aws-v1.' prefix"),
        "{why}"
    );
    let huge = format!("{url}&X-Amz-Security-Token={}", "a".repeat(4096));
    let why = rejection(&review(&c.admin, &token_of(&huge)).await);
    assert!(why.contains("too large"), "{why}");
}
