//! Choosing the providers for a spec: [`for_spec`], or [`for_config`] with a
//! [`CloudConfig`] resolved from the spec, the environment and flags.
//!
//! The spec's `[cluster] provider` decides the backend:
//! - `sim` — one [`SimProvider`] serving every kind (as the fallback), configured from the
//!   spec's `[sim]` table ([`sim_settings`]) layered with the `BMAC_SIM_*` environment (set
//!   variables win, so CI can inject faults without editing the spec), its cloud persisted at
//!   `<state_dir>/sim-cloud.log` next to the state it belongs with;
//! - `kube` — the kube-rs provider for an existing cluster and every in-cluster kind (cargo
//!   feature `kube`);
//! - `eks` — the AWS provider (feature `aws`) for the cloud kinds and the kube provider for
//!   the in-cluster ones, which mints EKS tokens with the AWS provider's credentials;
//! - `gke` — the Google Cloud provider (feature `gcp`) for the cloud kinds and the kube
//!   provider for the in-cluster ones, which mints GKE access tokens with the same credentials
//!   (`azure` is declared for AKS).
//!
//! A provider whose feature the build lacks is a [`SetupError::FeatureMissing`] that says how
//! to get it — never a panic or a silent fallback to the simulator.
//!
//! The spec's fault rules map onto the simulator's [`FaultRule`]s one to one, with two
//! differences the simulator imposes: a rule applies to a whole kind (a rule naming one
//! `step` is refused rather than widened to every step of its kind), and `times` counts per
//! step.

use std::path::Path;
use std::sync::Arc;

use bmac_core::Providers;
use bmac_steps::spec::{FaultError, Provider, Spec};

use crate::config::CloudConfig;
use crate::sim::{FaultKind, FaultRule, SimConfig, SimError, SimProvider};

/// The file, inside the state directory, where the simulated cloud persists itself.
pub const SIM_CLOUD_FILE: &str = "sim-cloud.log";

/// Why the providers for a spec could not be set up.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SetupError {
    /// The spec's provider is not compiled into this build.
    #[error("the spec asks for provider `{provider}`, which this build of bmac does not include")]
    #[diagnostic(
        code(bmac::setup::feature_missing),
        help(
            "this build of bmac has no `{feature}` provider; rebuild with `--features {feature}`"
        )
    )]
    FeatureMissing {
        /// The spec's provider (`eks`, `gke`, `kube`).
        provider: &'static str,
        /// The cargo feature that provides it.
        feature: &'static str,
    },
    /// A `[sim]` fault names one step; the simulator injects faults per kind.
    #[error("the simulated-cloud fault for kind `{kind}` is limited to step `{step}`, which the simulator cannot do")]
    #[diagnostic(
        code(bmac::setup::step_fault),
        help("the simulator injects faults for every step of a kind: remove `step` from the fault, or set BMAC_SIM_FAULTS instead")
    )]
    StepFault {
        /// The fault's kind.
        kind: String,
        /// The step it names.
        step: String,
    },
    /// An endpoint override is not a usable URL.
    #[error("the endpoint for `{service}` (from {origin}) is not usable: {problem}")]
    #[diagnostic(
        code(bmac::setup::endpoint),
        help("write it as an absolute URL, e.g. http://127.0.0.1:5000")
    )]
    Endpoint {
        /// The service it is for (`eks`, `s3`, `*` …).
        service: String,
        /// Where it was set (`$AWS_ENDPOINT_URL_EKS`, `--endpoint eks=…`).
        origin: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The simulated cloud could not be configured or opened.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Sim(#[from] SimError),
}

/// The providers that build `spec`, with any local provider state (the simulated cloud) kept
/// in `state_dir`, configured from the process environment
/// ([`CloudConfig::from_env`]).
pub fn for_spec(spec: &Spec, state_dir: &Path) -> Result<Providers, SetupError> {
    for_config(&CloudConfig::from_env(spec, state_dir)?)
}

/// The providers for the cluster provider `config` was resolved for, configured from it alone.
pub fn for_config(config: &CloudConfig) -> Result<Providers, SetupError> {
    match config.provider {
        Provider::Sim => {
            let sim = SimProvider::new(config.sim.clone())?;
            Ok(Providers::new().fallback(Arc::new(sim)))
        }
        Provider::Kube => kube(config),
        Provider::Eks => eks(config),
        Provider::Gke => gke(config),
    }
}

/// A cloud provider whose feature this build lacks.
#[cfg(not(all(feature = "aws", feature = "gcp")))]
fn missing(provider: &'static str, feature: &'static str) -> SetupError {
    SetupError::FeatureMissing { provider, feature }
}

/// EKS: the AWS provider for the cloud kinds, the kube provider — minting EKS tokens with the
/// same credentials — for every in-cluster kind.
#[cfg(feature = "aws")]
fn eks(config: &CloudConfig) -> Result<Providers, SetupError> {
    use crate::aws::{AwsProvider, EksMinter};
    use crate::kube::KubeProvider;
    let aws = AwsProvider::new(config);
    let minter = Arc::new(EksMinter::new(aws.aws()));
    let kube = Arc::new(kube_provider(config).with_minter("eks", minter));
    Ok(Providers::new()
        .route(KubeProvider::KINDS.iter().copied(), kube)
        .route(AwsProvider::KINDS.iter().copied(), Arc::new(aws)))
}

#[cfg(not(feature = "aws"))]
fn eks(_: &CloudConfig) -> Result<Providers, SetupError> {
    Err(missing("eks", "aws"))
}

/// GKE: the Google Cloud provider for the cloud kinds, the kube provider — minting GKE access
/// tokens with the same credentials — for every in-cluster kind.
#[cfg(feature = "gcp")]
fn gke(config: &CloudConfig) -> Result<Providers, SetupError> {
    use crate::gcp::{GcpProvider, GkeMinter};
    use crate::kube::KubeProvider;
    let gcp = GcpProvider::new(config);
    let minter = Arc::new(GkeMinter::new(gcp.gcp()));
    let kube = Arc::new(kube_provider(config).with_minter("gke", minter));
    Ok(Providers::new()
        .route(KubeProvider::KINDS.iter().copied(), kube)
        .route(GcpProvider::KINDS.iter().copied(), Arc::new(gcp)))
}

#[cfg(not(feature = "gcp"))]
fn gke(_: &CloudConfig) -> Result<Providers, SetupError> {
    Err(missing("gke", "gcp"))
}

#[cfg(feature = "kube")]
fn kube(config: &CloudConfig) -> Result<Providers, SetupError> {
    use crate::kube::KubeProvider;
    let provider = Arc::new(kube_provider(config));
    Ok(Providers::new().route(KubeProvider::KINDS.iter().copied(), provider))
}

/// The kube provider of a run: downloaded release bundles are kept in the user's cache
/// (BMAC_CACHE_DIR, XDG_CACHE_HOME, HOME, as captured in the config).
#[cfg(feature = "kube")]
fn kube_provider(config: &CloudConfig) -> crate::kube::KubeProvider {
    use crate::kube::{BundleFetch, KubeProvider};
    let mut bundles = BundleFetch::new();
    if let Some(cache) = bmac_steps::BundleCache::locate(|name| config.var(name).map(str::to_owned))
    {
        bundles = bundles.with_cache(cache);
    }
    KubeProvider::new().with_bundles(bundles)
}

#[cfg(not(feature = "kube"))]
fn kube(_config: &CloudConfig) -> Result<Providers, SetupError> {
    Err(SetupError::FeatureMissing {
        provider: "kube",
        feature: "kube",
    })
}

/// The simulator's configuration for `spec`: `[sim]` seed, speed and faults, the cloud at
/// `<state_dir>/sim-cloud.log`, then the process's `BMAC_SIM_*` environment on top.
pub fn sim_config(spec: &Spec, state_dir: &Path) -> Result<SimConfig, SetupError> {
    Ok(sim_settings(spec, state_dir)?.with_env()?)
}

/// The simulator's configuration from `spec` alone: `[sim]` seed, speed and faults, the cloud
/// at `<state_dir>/sim-cloud.log` (no environment).
pub fn sim_settings(spec: &Spec, state_dir: &Path) -> Result<SimConfig, SetupError> {
    let faults = spec
        .sim
        .faults
        .iter()
        .map(|f| {
            if let Some(step) = &f.step {
                return Err(SetupError::StepFault {
                    kind: f.kind.clone(),
                    step: step.to_string(),
                });
            }
            let error = match f.error {
                FaultError::Throttle => FaultKind::Throttle,
                FaultError::Server => FaultKind::ServerError,
                FaultError::Timeout => FaultKind::Timeout,
                FaultError::Permanent => FaultKind::Permanent,
            };
            let kind = (f.kind != "*").then_some(f.kind.as_str());
            let rule = FaultRule::new(kind, error, f.rate);
            Ok(match f.times {
                Some(times) => rule.times(times),
                None => rule,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let config = SimConfig {
        seed: spec.sim.seed,
        speed: spec.sim.speed,
        faults,
        cloud_path: Some(state_dir.join(SIM_CLOUD_FILE)),
        ..SimConfig::default()
    };
    config.validate()?;
    Ok(config)
}
