//! The bmac side of the GKE end-to-end tests: [`Gke`], a sandbox holding a `provider = "gke"`
//! spec ([`gke_spec`]) with its local state and the Kyverno bundle it pins, and runs of the real
//! `bmac` binary in it, pointed at the Google Cloud API test server as a user would point it
//! ([`Google::env`]) and given no kubeconfig: the in-cluster steps can reach the kube-apiserver
//! only through the connection the cluster step outputs (endpoint, CA, and a GKE credential
//! source whose access tokens the GCP provider mints).

use std::path::Path;
use std::process::{Child, Stdio};

use serde_json::Value;

use super::Google;
use crate::common::Sandbox;
use crate::kube_support::workspace::Run;

/// The region every test cluster is in.
pub const REGION: &str = "europe-west1";

/// How these tests apply: JSON events, no prompt, and past lint's refusal of a spec without
/// an audit archive (BMAC001; the archive is not part of these tests).
pub const APPLY: [&str; 5] = [
    "--output",
    "json",
    "apply",
    "--auto-approve",
    "--allow-lint-errors",
];

/// The spec these tests build, for cluster `name` in project `project`, with namespace
/// `shop-SFX`: a VPC-native network bmac creates, the cluster (public endpoint restricted to one
/// documentation range), one autoscaled node pool (its own Google service account), the default
/// CNI, Pod Security `restricted` (kube-system exempt), Kyverno from the pinned example bundle
/// with the baseline policies and a registry allow-list, the namespace, and a workload identity
/// (a Google service account bmac creates, bound to the Kubernetes service account
/// `shop-SFX/checkout`). Left out: what is still being built (registry mirrors, the audit
/// archive), so there is no `[audit]` and lint refuses the spec (BMAC001) unless told to go
/// ahead, as a user building the rest first would.
pub fn gke_spec(name: &str, project: &str, sfx: &str) -> String {
    format!(
        r#"[cluster]
name = "{name}"
provider = "gke"
region = "{REGION}"
version = "1.30"
project = "{project}"
endpoint = {{ public = true, public_cidrs = ["198.51.100.0/24"], private = true }}

[network]
cidr = "10.20.0.0/20"
nat = "single"

[[node_pool]]
name = "general"
instance_types = ["e2-standard-4"]
min = 1
max = 3
desired = 1
disk = {{ size_gb = 50, type = "pd-balanced" }}

[cni]
plugin = "default"

[pod_security]
enforce = "restricted"
exempt = ["kube-system"]

[policy]
engine = "kyverno"
version = "1.12.5"
bundle = {{ path = "bundles/kyverno.yaml", sha256 = "08f9218d59aed50bc60e34f5a9756218a077cb7bf8cb1fc635aecfe20d4e6dc0" }}

[registries]
allowed = ["{REGION}-docker.pkg.dev/{project}"]

[[namespace]]
name = "shop-{sfx}"
labels = {{ owner = "shop" }}

[[workload_identity]]
namespace = "shop-{sfx}"
service_account = "checkout"
permissions = ["roles/cloudsql.client"]
"#
    )
}

/// One GKE project: the sandbox, the server, the names.
pub struct Gke {
    /// The spec and `.bmac` state.
    pub sandbox: Sandbox,
    /// The test server.
    pub google: Google,
    /// The cluster's name (`gke-SFX`).
    pub name: String,
    /// The Google Cloud project (`bmac-gke-SFX`).
    pub project: String,
    /// The namespace (`shop-SFX`).
    pub namespace: String,
}

impl Gke {
    /// A project of its own (names from `sfx`) on `google`.
    pub fn new(google: Google, sfx: &str) -> Gke {
        let name = format!("gke-{sfx}");
        let project = format!("bmac-gke-{sfx}");
        let sandbox = Sandbox::with_spec(&gke_spec(&name, &project, sfx));
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/bundles");
        let bundles = sandbox.path().join("bundles");
        std::fs::create_dir(&bundles).expect("bundles directory");
        std::fs::copy(examples.join("kyverno.yaml"), bundles.join("kyverno.yaml"))
            .expect("copy the Kyverno bundle");
        Gke {
            sandbox,
            google,
            name,
            project,
            namespace: format!("shop-{sfx}"),
        }
    }

    /// `projects/P/locations/REGION`.
    pub fn location(&self) -> String {
        format!("projects/{}/locations/{REGION}", self.project)
    }

    /// `projects/P/locations/REGION/clusters/NAME`.
    pub fn cluster_path(&self) -> String {
        format!("{}/clusters/{}", self.location(), self.name)
    }

    /// The cluster, as GKE's API returns it.
    pub fn cluster(&self) -> Option<Value> {
        self.google
            .get("container", &format!("/v1/{}", self.cluster_path()))
    }

    /// A node pool of the cluster.
    pub fn pool(&self, pool: &str) -> Option<Value> {
        self.google.get(
            "container",
            &format!("/v1/{}/nodePools/{pool}", self.cluster_path()),
        )
    }

    /// The e-mail addresses of the project's Google service accounts.
    pub fn service_accounts(&self) -> Vec<String> {
        let list = self
            .google
            .get(
                "iam",
                &format!("/v1/projects/{}/serviceAccounts", self.project),
            )
            .unwrap_or(Value::Null);
        let mut emails: Vec<String> = list["accounts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["email"].as_str().map(str::to_owned))
            .collect();
        emails.sort();
        emails
    }

    /// `bmac ARGS…` in the sandbox: the test server's environment, no kubeconfig.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = self.sandbox.command(args);
        self.google.env(&mut cmd);
        cmd.env_remove("KUBECONFIG")
            .env("HOME", self.sandbox.path())
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `bmac ARGS…` to completion, off the async runtime's threads (so the namespace
    /// finalizer keeps running).
    pub async fn bmac(&self, args: &[&str]) -> Run {
        let mut cmd = self.command(args);
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .expect("join")
            .expect("run bmac");
        Run::from_output(out)
    }

    /// Starts `bmac ARGS…`, stdout piped (stderr dropped).
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn bmac")
    }

    /// `--output json apply --auto-approve --allow-lint-errors`, asserting success.
    pub async fn apply(&self, what: &str) -> Run {
        let run = self.bmac(&APPLY).await;
        run.expect_code(0, what);
        run
    }
}
