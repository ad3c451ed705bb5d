//! A user-defined step and provider composed with bmac's built-in ones.
//!
//! The quickstart's steps come from the catalogue; we add a `dns_record` step of our own that
//! publishes the cluster's API endpoint under a name. Its `target` input is a reference to the
//! `cluster` step's `endpoint` output, so it is an edge of the plan and its value arrives when
//! the step runs. Our provider serves the `dns_record` kind; the simulated cloud serves the rest.
//!
//! ```text
//! cargo run -p bmac-providers --example custom_step
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bmac_core::provider::{
    ApplyRequest, DestroyRequest, ObserveRequest, Observed, Provider, ProviderError,
};
use bmac_core::state::MemoryStore;
use bmac_core::{Executor, Kind, Outputs, Planner, Ref, State, Step, StepId};
use bmac_steps::spec::Spec;
use miette::{IntoDiagnostic, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The desired state of a DNS record.
#[derive(Debug, Serialize, Deserialize)]
struct DnsRecord {
    name: String,
    ttl: u32,
}

/// A toy DNS service: records kept in memory.
#[derive(Default)]
struct Dns {
    zone: Mutex<BTreeMap<String, String>>,
}

#[async_trait]
impl Provider for Dns {
    fn name(&self) -> &str {
        "dns"
    }

    async fn apply(&self, req: ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let record: DnsRecord = req
            .step
            .config_as()
            .map_err(|e| ProviderError::permanent(format!("bad dns_record config: {e}")))?;
        let target = req
            .inputs
            .str("target")
            .ok_or_else(|| ProviderError::permanent("dns_record needs a `target` input"))?;
        let host = target.trim_start_matches("https://").to_owned();
        self.zone
            .lock()
            .map_err(|_| ProviderError::permanent("zone lock poisoned"))?
            .insert(record.name.clone(), host.clone());
        Ok(Outputs::new().with("fqdn", record.name).with("cname", host))
    }

    async fn observe(&self, req: ObserveRequest<'_>) -> Result<Observed, ProviderError> {
        let record: DnsRecord = req
            .step
            .config_as()
            .map_err(|e| ProviderError::permanent(e.to_string()))?;
        let zone = self
            .zone
            .lock()
            .map_err(|_| ProviderError::permanent("zone lock poisoned"))?;
        Ok(match zone.get(&record.name) {
            Some(cname) => Observed::Present {
                config: req.step.config.value().clone(),
                outputs: Outputs::new()
                    .with("fqdn", record.name.clone())
                    .with("cname", cname.clone()),
            },
            None => Observed::Absent,
        })
    }

    async fn destroy(&self, req: DestroyRequest<'_>) -> Result<(), ProviderError> {
        let record: DnsRecord = req
            .step
            .config_as()
            .map_err(|e| ProviderError::permanent(e.to_string()))?;
        if let Ok(mut zone) = self.zone.lock() {
            zone.remove(&record.name);
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let spec = Spec::load("examples/quickstart.toml".as_ref())?;
    let mut steps = bmac_steps::expand(&spec)?.steps;

    let cluster = StepId::new("cluster").into_diagnostic()?;
    let api_record = Step::new(
        StepId::new("dns.api").into_diagnostic()?,
        Kind::new("dns_record"),
        &json!({ "name": "api.payments.example.internal", "ttl": 300 }),
    )
    .into_diagnostic()?
    .input("target", Ref::new(cluster, "endpoint"));
    steps.push(Arc::new(api_record));

    let dns = Arc::new(Dns::default());
    let state_dir = tempfile::tempdir().into_diagnostic()?;
    let providers =
        bmac_providers::for_spec(&spec, state_dir.path())?.route(["dns_record"], dns.clone());

    let plan = Planner::new(steps, &State::default()).plan()?;
    println!("{}", plan.summary());
    let report = Executor::new(providers)
        .run(plan, &MemoryStore::new())
        .await?;
    println!("run {:?}", report.outcome);
    for (name, target) in dns
        .zone
        .lock()
        .map_err(|_| miette::miette!("poisoned"))?
        .iter()
    {
        println!("{name} CNAME {target}");
    }
    Ok(())
}
