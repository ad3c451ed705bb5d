//! Driving one AWS handler directly, as the executor would: a step from a typed config,
//! plain inputs, and `apply` / `observe` / `destroy` with a fresh [`StepContext`] — plus SDK
//! clients that reach nothing ([`offline_clients`]), for tests whose calls all go to mocks.

use std::collections::BTreeMap;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use bmac_core::provider::{
    ApplyRequest, DestroyRequest, ObserveRequest, Observed, Prior, StepContext,
};
use bmac_core::{Inputs, OutputValue, Outputs, ProviderError, Step, StepId};
use bmac_providers::aws::{Clients, Handler};
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
    h: &dyn Handler<Clients>,
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
pub async fn observe(
    h: &dyn Handler<Clients>,
    aws: &Clients,
    step: &Step,
    inputs: &Inputs,
) -> Observed {
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

/// `h.destroy` of `step` as last applied with outputs `out`.
pub async fn destroy(
    h: &dyn Handler<Clients>,
    aws: &Clients,
    step: &Step,
    inputs: &Inputs,
    out: Outputs,
) -> Result<(), ProviderError> {
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
}

/// Clients for cluster `cluster` in `region` whose every service points at a loopback port
/// nothing listens on, with static test credentials: only the mocked clients a test puts in
/// place can answer.
pub fn offline_clients(cluster: &str, region: &str) -> Clients {
    let sdk = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing", "testing", None, None, "test",
        )))
        .endpoint_url("http://127.0.0.1:9")
        .build();
    Clients {
        cluster: cluster.into(),
        region: region.into(),
        eks: aws_sdk_eks::Client::new(&sdk),
        iam: aws_sdk_iam::Client::new(&sdk),
        ec2: aws_sdk_ec2::Client::new(&sdk),
        s3: aws_sdk_s3::Client::new(&sdk),
        logs: aws_sdk_cloudwatchlogs::Client::new(&sdk),
        firehose: aws_sdk_firehose::Client::new(&sdk),
        cloudwatch: aws_sdk_cloudwatch::Client::new(&sdk),
        sns: aws_sdk_sns::Client::new(&sdk),
        ecr: aws_sdk_ecr::Client::new(&sdk),
        kms: aws_sdk_kms::Client::new(&sdk),
        sts: aws_sdk_sts::Client::new(&sdk),
        sdk,
    }
}
