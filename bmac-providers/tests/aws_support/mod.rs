//! Harness for the AWS provider's tests against a real AWS API server: moto, started by
//! `scripts/moto-env.sh start DIR; . DIR/env` (HTTPS on 127.0.0.1 with a test CA).
//!
//! - [`moto`] finds it through `BMAC_MOTO_ENDPOINT` and `BMAC_MOTO_CA`. With `BMAC_E2E=1` a
//!   missing or unreachable server FAILS the test; without it the test prints a notice and
//!   returns early.
//! - The SDK is pointed at moto the way a user points the AWS CLI at a proxy: the environment
//!   pairs `AWS_ENDPOINT_URL` and `AWS_CA_BUNDLE` go through [`CloudConfig::resolve`], and the
//!   process has static test credentials (moto accepts any) with the shared config files and
//!   instance metadata switched off, so nothing on the machine or beyond it is consulted.
//! - [`Build`] runs specs through the real engine — catalogue, planner, executor, a local
//!   journal — with the providers `for_config` picks, as `bmac apply` does ([`Build::routing`]
//!   lets a test re-route kinds on top of them).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};

use bmac_core::exec::RunReport;
use bmac_core::plan::{Planner, Summary};
use bmac_core::state::State;
use bmac_core::{Executor, LocalStore, Plan, Providers, StateStore};
use bmac_providers::aws::{Aws, Clients};
use bmac_providers::{for_config, CloudConfig, Overrides};
use bmac_steps::expand_in;
use bmac_steps::spec::Spec;

/// Where moto runs.
#[derive(Debug, Clone)]
pub struct Moto {
    /// `https://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The test CA's certificate (PEM file).
    pub ca: PathBuf,
}

static CREDENTIALS: Once = Once::new();

/// Static test credentials for the whole test process, and nothing else from the machine.
fn test_credentials() {
    CREDENTIALS.call_once(|| {
        for (k, v) in [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/nonexistent/bmac-test/config"),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/bmac-test/credentials",
            ),
        ] {
            std::env::set_var(k, v);
        }
        std::env::remove_var("AWS_SESSION_TOKEN");
        std::env::remove_var("AWS_PROFILE");
    });
}

/// The moto server, or `None` (test skipped) when it is not configured and `BMAC_E2E` is unset.
pub fn moto() -> Option<Moto> {
    let endpoint = std::env::var("BMAC_MOTO_ENDPOINT").ok();
    let ca = std::env::var("BMAC_MOTO_CA").ok();
    match (endpoint, ca) {
        (Some(endpoint), Some(ca)) => {
            test_credentials();
            Some(Moto {
                endpoint,
                ca: PathBuf::from(ca),
            })
        }
        _ if std::env::var("BMAC_E2E").is_ok_and(|v| v == "1") => panic!(
            "BMAC_E2E=1 but no moto server: run `scripts/moto-env.sh start DIR` and source DIR/env"
        ),
        _ => {
            eprintln!("skipped: no moto server (set BMAC_MOTO_ENDPOINT and BMAC_MOTO_CA, or run scripts/test.sh)");
            None
        }
    }
}

impl Moto {
    /// The environment a user pointing bmac at this server would have.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.endpoint.clone()),
            ("AWS_CA_BUNDLE".into(), self.ca.display().to_string()),
        ]
    }

    /// The cloud config for `spec`, resolved as the CLI does, pointed at moto.
    pub fn config(&self, spec: &Spec, dir: &Path) -> CloudConfig {
        CloudConfig::resolve(spec, dir, self.env(), &Overrides::default())
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    /// SDK clients on moto for reading back what a build made.
    pub async fn clients(&self, spec: &Spec, dir: &Path) -> Arc<Clients> {
        Aws::new(&self.config(spec, dir))
            .clients()
            .await
            .unwrap_or_else(|e| panic!("{e:?}"))
    }
}

/// A spec from text (named `bmac.toml`), panicking with its diagnostics if it is invalid.
pub fn spec(text: &str) -> Spec {
    Spec::parse("bmac.toml", text).unwrap_or_else(|e| panic!("{:?}", miette::Report::new(e)))
}

/// An EKS spec on moto's region: cluster `name` (public and private endpoint), a network in two
/// zones and one node pool, followed by `extra`.
pub fn eks(name: &str, extra: &str) -> String {
    format!(
        r#"[cluster]
name = "{name}"
provider = "eks"
region = "us-east-1"
version = "1.30"
account = "123456789012"
endpoint = {{ public = true, public_cidrs = ["198.51.100.0/24"], private = true }}

[network]
zones = ["us-east-1a", "us-east-1b"]

[[node_pool]]
name = "system"
instance_types = ["m6i.large"]
min = 1
max = 3
labels = {{ "bmac.dev/pool" = "system" }}
taints = [{{ key = "CriticalAddonsOnly", value = "true", effect = "NoSchedule" }}]
disk = {{ size_gb = 50, type = "gp3" }}
{extra}"#
    )
}

/// The plain output `name` of the applied `step`, panicking when there is none.
pub fn output<'a>(state: &'a bmac_core::State, step: &str, name: &str) -> &'a serde_json::Value {
    let applied = state
        .applied(&step.parse().unwrap())
        .unwrap_or_else(|| panic!("{step} not applied"));
    match applied.outputs.get(name) {
        Some(bmac_core::OutputValue::Plain(v)) => v,
        other => panic!("{step}.{name}: {other:?}"),
    }
}

/// Changes a test makes to the providers `for_config` picked.
type Routing = Box<dyn Fn(Providers, &CloudConfig) -> Providers + Send + Sync>;

/// Builds of one spec into one state directory.
pub struct Build {
    /// The server.
    pub moto: Moto,
    /// Keeps the state directory.
    pub dir: tempfile::TempDir,
    /// The journal.
    pub store: LocalStore,
    routing: Option<Routing>,
}

impl Build {
    /// A fresh state directory.
    pub fn new(moto: Moto) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::open(dir.path().join("state")).expect("store");
        Build {
            moto,
            dir,
            store,
            routing: None,
        }
    }

    /// Every run's providers are `routing` applied to those `for_config` picks (with the
    /// config they were made from), e.g. to route one kind to a wrapper.
    pub fn routing(
        mut self,
        routing: impl Fn(Providers, &CloudConfig) -> Providers + Send + Sync + 'static,
    ) -> Self {
        self.routing = Some(Box::new(routing));
        self
    }

    /// The current state.
    pub async fn state(&self) -> State {
        self.store.load().await.expect("state").state
    }

    /// The plan for `spec` against the current state.
    pub async fn plan(&self, spec: &Spec) -> Plan {
        let e = expand_in(spec, self.dir.path()).expect("expansion");
        Planner::new(e.steps, &self.state().await)
            .sources(e.sources)
            .plan()
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    /// The destroy plan.
    pub async fn destroy_plan(&self) -> Plan {
        Planner::new(Vec::<bmac_core::Step>::new(), &self.state().await)
            .destroy()
            .plan()
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    /// What changed outside bmac, as `bmac drift` reports it.
    pub async fn drift(&self, spec: &Spec) -> bmac_core::drift::DriftReport {
        let e = expand_in(spec, self.dir.path()).expect("expansion");
        self.executor(spec)
            .drift(&e.steps, &self.state().await)
            .await
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    /// The plan `bmac apply` makes: against the state refreshed from what exists.
    pub async fn refreshed_plan(&self, spec: &Spec) -> Plan {
        let e = expand_in(spec, self.dir.path()).expect("expansion");
        let refreshed = self
            .executor(spec)
            .refresh(&e.steps, &self.state().await)
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        Planner::new(e.steps, &refreshed.state)
            .sources(e.sources)
            .plan()
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn executor(&self, spec: &Spec) -> Executor {
        let config = self.moto.config(spec, self.dir.path());
        let providers = for_config(&config).expect("providers");
        match &self.routing {
            Some(routing) => Executor::new(routing(providers, &config)),
            None => Executor::new(providers),
        }
    }

    /// One `bmac apply` of `plan`: fresh providers, as a new process would have.
    pub async fn run(&self, spec: &Spec, plan: Plan) -> RunReport {
        self.executor(spec)
            .run(plan, &self.store)
            .await
            .expect("run")
    }

    /// Plans and applies `spec`, returning the plan's summary and the report.
    pub async fn apply(&self, spec: &Spec) -> (Summary, RunReport) {
        let plan = self.plan(spec).await;
        let summary = plan.summary();
        (summary, self.run(spec, plan).await)
    }
}
