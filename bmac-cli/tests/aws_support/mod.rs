//! Harness for the CLI's end-to-end tests against a real AWS API server (moto over TLS,
//! `scripts/moto-env.sh start DIR; . DIR/env`): the bmac side is [`Eks`] (a sandbox with an EKS
//! spec and runs of the real `bmac` binary, each with its own credentials), the server side is
//! the provider tests' harness ([`moto`], [`Moto::clients`] for reading back through the SDK),
//! moto's own request log ([`recorder`]) and a slow link to it ([`proxy`]).
//!
//! Every `bmac` run gets the environment a user pointing bmac at an AWS-compatible endpoint
//! would have — `AWS_ENDPOINT_URL`, `AWS_CA_BUNDLE`, static keys, no config files, no
//! instance metadata — and nothing else from the machine's `AWS_*` variables. Each run signs
//! with an access key id of its own, which is how [`Run::calls`] finds exactly that run's
//! requests in the server's shared log.

#![allow(dead_code)]

#[path = "../../../bmac-providers/tests/aws_support/mod.rs"]
mod provider;
pub mod proxy;
pub mod recorder;

pub use provider::{moto, Moto};

use std::process::{Child, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bmac_providers::aws::Clients;

use crate::common::{events, text, Sandbox};
use recorder::{Call, Recorder};

/// The access key id the provider harness gives this test process's own SDK clients.
const HARNESS_KEY: &str = "testing";

/// A short suffix no other run on the same server has (cluster, role and bucket names).
pub fn suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{:08x}", nanos ^ std::process::id().rotate_left(16))
}

/// The EKS spec these tests build: a network bmac creates, the cluster, two node pools and
/// the audit pipeline into an S3 archive — what moto serves. Left out: alarms (CloudWatch's
/// CBOR protocol is not in moto) and every in-cluster kind (moto's cluster endpoint answers
/// nothing), so no policy engine either: lint's BMAC005 is an error and these runs pass
/// `--allow-lint-errors`, as a user building the cloud side first would.
pub fn eks_spec(name: &str, bucket: &str) -> String {
    format!(
        r#"[cluster]
name = "{name}"
provider = "eks"
region = "us-east-1"
version = "1.30"
account = "123456789012"
endpoint = {{ public = true, public_cidrs = ["198.51.100.0/24"], private = true }}

[network]
cidr = "10.40.0.0/16"
zones = ["us-east-1a", "us-east-1b"]
nat = "single"

[[node_pool]]
name = "system"
instance_types = ["m6i.large"]
min = 1
max = 3
labels = {{ "bmac.dev/pool" = "system" }}
taints = [{{ key = "CriticalAddonsOnly", value = "true", effect = "NoSchedule" }}]
disk = {{ size_gb = 50, type = "gp3" }}

[[node_pool]]
name = "general"
instance_types = ["m6i.xlarge"]
min = 2
max = 5
desired = 2
disk = {{ size_gb = 100, type = "gp3" }}

[audit]
log_types = ["api", "audit", "authenticator"]
archive = "s3://{bucket}/prod"
retention_days = 365
force_destroy = false
"#
    )
}

/// One EKS project: a sandbox holding the spec and its local state, the server, its recorder.
pub struct Eks {
    /// The spec and `.bmac` state.
    pub sandbox: Sandbox,
    /// The server.
    pub moto: Moto,
    /// Its request log.
    pub recorder: Recorder,
    /// The cluster's name (`cli-SUFFIX`).
    pub name: String,
    /// The archive bucket's name.
    pub bucket: String,
    /// SDK clients on moto, for reading back and for changes made by hand.
    pub aws: Arc<Clients>,
    runs: AtomicUsize,
}

/// A finished `bmac` run and the access key it signed with.
pub struct Run {
    /// The key.
    pub key: String,
    /// What it printed and how it exited.
    pub out: Output,
}

impl Run {
    /// Standard output.
    pub fn stdout(&self) -> String {
        text(&self.out.stdout)
    }

    /// Standard error.
    pub fn stderr(&self) -> String {
        text(&self.out.stderr)
    }

    /// Asserts the exit code; returns `self`.
    pub fn expect(self, code: i32, what: &str) -> Run {
        assert_eq!(
            self.out.status.code(),
            Some(code),
            "{what}: `bmac` should exit {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }

    /// Its `--output json` events.
    pub fn events(&self) -> Vec<serde_json::Value> {
        events(&self.out.stdout)
    }

    /// Every request moto received from this run.
    pub fn calls(&self, recorder: &Recorder) -> Vec<Call> {
        recorder.calls(&self.key)
    }
}

impl Eks {
    /// A project for a cluster of its own on `moto`, with `spec(name, bucket)` as its spec.
    pub async fn new(moto: Moto, spec: impl Fn(&str, &str) -> String) -> Eks {
        let sfx = suffix();
        let name = format!("cli-{sfx}");
        let bucket = format!("bmac-cli-{sfx}-audit");
        let text = spec(&name, &bucket);
        let sandbox = Sandbox::with_spec(&text);
        let aws = moto.clients(&provider::spec(&text), sandbox.path()).await;
        let recorder = Recorder::start(&moto.endpoint, moto.ca.clone());
        // One call of the test's own, so the log exists and is known to record: everything
        // "no mutating call" asserts later rests on it.
        aws.sts
            .get_caller_identity()
            .send()
            .await
            .expect("STS on moto");
        assert!(
            recorder
                .calls(HARNESS_KEY)
                .iter()
                .any(|c| c.action == "GetCallerIdentity"),
            "moto's recorder is not recording (is moto-env.sh's MOTO_ENABLE_RECORDING in effect?)"
        );
        Eks {
            sandbox,
            moto,
            recorder,
            name,
            bucket,
            aws,
            runs: AtomicUsize::new(0),
        }
    }

    /// A fresh access key id for one run.
    fn key(&self) -> String {
        let n = self.runs.fetch_add(1, Ordering::SeqCst);
        format!(
            "AKIDBMAC{}{n:03}",
            self.name.trim_start_matches("cli-").to_uppercase()
        )
    }

    /// `bmac ARGS…` in the sandbox, calling AWS at `endpoint` and signing with `key`.
    pub fn command(&self, endpoint: &str, key: &str, args: &[&str]) -> std::process::Command {
        let mut cmd = self.sandbox.command(args);
        for (var, _) in std::env::vars_os() {
            if var.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(var);
            }
        }
        cmd.env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_CA_BUNDLE", &self.moto.ca)
            .env("AWS_ACCESS_KEY_ID", key)
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent/bmac-test/config")
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/bmac-test/credentials",
            )
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `bmac ARGS…` against moto to completion.
    pub fn bmac(&self, args: &[&str]) -> Run {
        let key = self.key();
        let out = self
            .command(&self.moto.endpoint, &key, args)
            .output()
            .expect("run bmac");
        Run { key, out }
    }

    /// Starts `bmac ARGS…` against AWS at `endpoint` (a proxy), stdout piped; returns the
    /// child and its key.
    pub fn spawn(&self, endpoint: &str, args: &[&str]) -> (Child, String) {
        let key = self.key();
        let child = self
            .command(endpoint, &key, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn bmac");
        (child, key)
    }

    /// `apply --auto-approve --allow-lint-errors --output json`, asserting success.
    pub fn apply(&self, what: &str) -> Run {
        self.bmac(&[
            "--output",
            "json",
            "apply",
            "--auto-approve",
            "--allow-lint-errors",
        ])
        .expect(0, what)
    }
}
