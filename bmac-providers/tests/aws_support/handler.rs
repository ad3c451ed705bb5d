//! Driving one AWS handler directly, as the executor would: a step from a typed config,
//! plain inputs, and `apply` / `observe` / `destroy` with a fresh [`StepContext`] — plus SDK
//! clients that reach nothing ([`offline_clients`]), for tests whose calls all go to mocks.

use std::collections::BTreeMap;

use bmac_core::provider::{
    ApplyRequest, DestroyRequest, ObserveRequest, Observed, Prior, StepContext,
};
use bmac_core::{Inputs, OutputValue, Outputs, ProviderError, Step, StepId};
use bmac_providers::aws::{Aws, Clients, Handler};
use bmac_providers::{CloudConfig, Overrides};
use bmac_steps::kinds;

/// A step of catalogue kind `kind` with `config`.
pub fn step<C: serde::Serialize>(id: &str, kind: &str, config: &C) -> Step {
    Step::new(StepId::new(id).unwrap(), kinds::kind(kind), config).unwrap()
}

/// Plain inputs from `(name, value)` pairs.
pub fn inputs(pairs: &[(&str, serde_json::Value)]) -> Inputs {
    Inputs(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OutputValue::Plain(v.clone())))
            .collect::<BTreeMap<_, _>>(),
    )
}

/// `h.apply` of `step` with `inputs`.
pub async fn apply(
    h: &dyn Handler,
    aws: &Clients,
    step: &Step,
    inputs: &Inputs,
) -> Result<Outputs, ProviderError> {
    let ctx = StepContext::default();
    h.apply(
        aws,
        &ApplyRequest {
            step,
            inputs,
            prior: None,
            ctx: &ctx,
        },
    )
    .await
}

/// `h.observe` of `step`, which must not fail.
pub async fn observe(h: &dyn Handler, aws: &Clients, step: &Step, inputs: &Inputs) -> Observed {
    let ctx = StepContext::default();
    h.observe(
        aws,
        &ObserveRequest {
            step,
            inputs,
            prior: None,
            ctx: &ctx,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:?}"))
}

/// `h.destroy` of `step` as last applied with outputs `out`, which must not fail.
pub async fn destroy(h: &dyn Handler, aws: &Clients, step: &Step, inputs: &Inputs, out: Outputs) {
    let ctx = StepContext::default();
    let prior = Prior::new(step.config.value().clone(), out);
    h.destroy(
        aws,
        &DestroyRequest {
            step,
            inputs,
            prior: &prior,
            ctx: &ctx,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:?}"));
}

/// Clients for an EKS cluster `cluster` in us-east-1 whose every service points at a loopback
/// port nothing listens on: a test replaces the clients it calls with mocks.
pub async fn offline_clients(cluster: &str) -> Clients {
    super::test_credentials();
    let spec = super::spec(&format!(
        "[cluster]\nname = \"{cluster}\"\nprovider = \"eks\"\nregion = \"us-east-1\"\n"
    ));
    let dir = tempfile::tempdir().unwrap();
    let env = [(
        "AWS_ENDPOINT_URL".to_owned(),
        "http://127.0.0.1:9".to_owned(),
    )];
    let config = CloudConfig::resolve(&spec, dir.path(), env, &Overrides::default()).unwrap();
    (*Aws::new(&config).clients().await.unwrap()).clone()
}
