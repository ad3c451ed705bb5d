//! [`CloudConfig`]: the one configuration every provider is built from — where to call the
//! cloud (region, endpoint overrides), as whom (the profile of the credentials chain), and the
//! simulator's knobs — resolved once from the spec, the environment and command-line flags.
//!
//! Providers built by [`for_config`](crate::for_config) read no other setting from the process
//! environment: it is read once, here, as `(name, value)` pairs (so tests and embedders pass a
//! list instead of mutating the process), and what it held is visible in [`CloudConfig::vars`].
//! (`SimConfig::with_env` and `setup::sim_config` remain for using the simulator on its own.) Credentials
//! themselves are not part of it: the SDKs' own chains read them (environment keys, profiles,
//! SSO, web identity, instance metadata) when a provider first calls, and no variable holding a
//! secret is ever captured here ([`CAPTURED`] lists what is).
//!
//! Precedence, for each setting:
//! - **region**: the spec's `[cluster] region` (where the cluster is), else `AWS_REGION`, else
//!   `AWS_DEFAULT_REGION`, else `CLOUDSDK_COMPUTE_REGION`. There is deliberately no flag: the
//!   region is part of what the spec builds, not of how bmac reaches it.
//! - **profile**: [`Overrides::profile`] (`--profile`), else the cluster provider's own variable
//!   (`AWS_PROFILE` for `eks`, `CLOUDSDK_ACTIVE_CONFIG_NAME` for `gke`).
//! - **endpoints**, per service (the SDK's service id in lower case: `eks`, `s3`, `sts`,
//!   `container`, `storage`, `arm` …): [`Overrides::endpoints`] (`--endpoint SERVICE=URL`), else
//!   `AWS_ENDPOINT_URL_<SERVICE>`, `CLOUDSDK_API_ENDPOINT_OVERRIDES_<SERVICE>` or, for
//!   `storage`, `STORAGE_EMULATOR_HOST` (the variables the AWS SDKs, gcloud and the Cloud Storage
//!   emulator define); `AWS_ENDPOINT_URL` is every AWS service's fallback (key `*`). This is how
//!   tests point real SDKs at servers on 127.0.0.1.
//! - **sim**: the spec's `[sim]` table, then the `BMAC_SIM_*` variables
//!   ([`SimConfig::with_vars`]).
//!
//! Invariants: every endpoint is an absolute `http`/`https` URL with a host (checked when the
//! config is resolved, with an error naming where it came from); the config holds no secret,
//! so it may be logged with `{:?}`.

use std::collections::BTreeMap;
use std::path::Path;

use bmac_steps::spec::{Provider, Spec};

use crate::setup::{sim_settings, SetupError};
use crate::sim::SimConfig;

/// The environment variables a config captures: exact names, and prefixes ending in `_`.
/// None of them holds a secret (`AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
/// `AZURE_CLIENT_SECRET` … are left to the SDKs' own credential chains).
pub const CAPTURED: &[&str] = &[
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_CA_BUNDLE",
    "CLOUDSDK_COMPUTE_REGION",
    "CLOUDSDK_CORE_PROJECT",
    "CLOUDSDK_ACTIVE_CONFIG_NAME",
    "CLOUDSDK_API_ENDPOINT_OVERRIDES_",
    "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "STORAGE_EMULATOR_HOST",
    "AZURE_SUBSCRIPTION_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_AUTHORITY_HOST",
    "AZURE_CONFIG_DIR",
    "BMAC_SIM_FAULTS",
    "BMAC_SIM_SEED",
    "BMAC_SIM_SPEED",
    "BMAC_SIM_CONSISTENCY_MS",
    "BMAC_SIM_CLOUD",
    "BMAC_SIM_TOKEN_TTL_MS",
    "BMAC_SIM_TOKEN_USES",
    "BMAC_CACHE_DIR",
    "XDG_CACHE_HOME",
    "HOME",
];

/// The key of the endpoint every AWS service falls back to (`AWS_ENDPOINT_URL`).
pub const ANY_SERVICE: &str = "*";

/// Settings given on the command line (or by an embedder), which win over the spec and the
/// environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// The profile of the credentials chain (`--profile`).
    pub profile: Option<String>,
    /// Endpoint overrides as `(service, url)` (`--endpoint SERVICE=URL`, repeatable).
    pub endpoints: Vec<(String, String)>,
}

impl Overrides {
    /// Parses one `SERVICE=URL` argument into an endpoint override.
    pub fn parse_endpoint(arg: &str) -> Result<(String, String), String> {
        let (service, url) = arg.split_once('=').ok_or_else(|| {
            format!("`{arg}` is not SERVICE=URL (e.g. eks=http://127.0.0.1:5000)")
        })?;
        let service = service.trim().to_ascii_lowercase();
        if service.is_empty()
            || !service
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'*')
        {
            return Err(format!(
                "`{service}` is not a service name (e.g. eks, s3, container)"
            ));
        }
        Ok((service, url.trim().to_owned()))
    }
}

/// Where and how providers call their cloud (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct CloudConfig {
    /// The name of the cluster the providers build (what cloud resources are named and tagged
    /// after).
    pub cluster: String,
    /// The cloud account the cluster must be built in (`[cluster] account`; for GKE the
    /// `project`), when the spec names one: providers check their credentials belong to it
    /// before changing anything.
    pub account: Option<String>,
    /// The cluster's provider (`sim`, `kube`, `eks`, `gke`).
    pub provider: Provider,
    /// The region cloud APIs are called in.
    pub region: Option<String>,
    /// The profile of the credentials chain.
    pub profile: Option<String>,
    /// Endpoint overrides per service (lower-case service id; [`ANY_SERVICE`] for all AWS
    /// services).
    pub endpoints: BTreeMap<String, String>,
    /// The simulator's settings.
    pub sim: SimConfig,
    /// The captured environment ([`CAPTURED`] names), for providers that hand settings to an
    /// SDK's own loader.
    pub vars: BTreeMap<String, String>,
}

impl CloudConfig {
    /// Resolves the config for `spec` (simulator state in `state_dir`) from the process
    /// environment, with no overrides.
    pub fn from_env(spec: &Spec, state_dir: &Path) -> Result<Self, SetupError> {
        CloudConfig::resolve(spec, state_dir, process_env(), &Overrides::default())
    }

    /// Resolves the config for `spec` from the environment `env` (name, value pairs; only the
    /// [`CAPTURED`] ones are kept) and `overrides`, in the precedence the module docs give.
    pub fn resolve(
        spec: &Spec,
        state_dir: &Path,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Self, SetupError> {
        let vars: BTreeMap<String, String> = env
            .into_iter()
            .filter(|(name, value)| is_captured(name) && !value.trim().is_empty())
            .collect();
        let var = |name: &str| vars.get(name).cloned();
        let provider = spec.cluster.provider.value;
        let region = spec
            .cluster
            .region
            .as_ref()
            .map(|r| r.value.clone())
            .or_else(|| var("AWS_REGION"))
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .or_else(|| var("CLOUDSDK_COMPUTE_REGION"));
        let profile = overrides.profile.clone().or_else(|| match provider {
            Provider::Eks => var("AWS_PROFILE"),
            Provider::Gke => var("CLOUDSDK_ACTIVE_CONFIG_NAME"),
            _ => None,
        });
        let mut endpoints = BTreeMap::new();
        let mut origins = BTreeMap::new();
        // Only the cluster's own cloud's variables: both clouds name an `iam` service, and a
        // Google override of one service would shadow `AWS_ENDPOINT_URL` (every AWS service's
        // fallback) on a machine that serves both clouds' test endpoints.
        let other_cloud = |name: &str| match provider {
            Provider::Eks => name.starts_with("CLOUDSDK_") || name == "STORAGE_EMULATOR_HOST",
            Provider::Gke => name.starts_with("AWS_"),
            _ => false,
        };
        let ordered = vars.iter().filter(|(name, _)| !other_cloud(name));
        for (name, value) in ordered {
            // gcloud's own Cloud Storage override wins over the emulator convention.
            if name == "STORAGE_EMULATOR_HOST"
                && vars.contains_key("CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE")
            {
                continue;
            }
            let service = if name == "AWS_ENDPOINT_URL" {
                Some(ANY_SERVICE.to_owned())
            } else if name == "STORAGE_EMULATOR_HOST" {
                Some("storage".to_owned())
            } else {
                ["AWS_ENDPOINT_URL_", "CLOUDSDK_API_ENDPOINT_OVERRIDES_"]
                    .iter()
                    .find_map(|p| name.strip_prefix(p))
                    .map(str::to_ascii_lowercase)
            };
            if let Some(service) = service {
                // The Cloud Storage emulator's variable is conventionally a bare host:port.
                let value = if name == "STORAGE_EMULATOR_HOST" && !value.contains("://") {
                    format!("http://{value}")
                } else {
                    value.clone()
                };
                endpoints.insert(service.clone(), value);
                origins.insert(service, format!("${name}"));
            }
        }
        for (service, url) in &overrides.endpoints {
            endpoints.insert(service.clone(), url.clone());
            origins.insert(service.clone(), format!("--endpoint {service}={url}"));
        }
        for (service, url) in &endpoints {
            check_endpoint(url).map_err(|problem| SetupError::Endpoint {
                service: service.clone(),
                origin: origins.get(service).cloned().unwrap_or_default(),
                problem,
            })?;
        }
        let sim = sim_settings(spec, state_dir)?.with_vars(|name| var(name))?;
        Ok(CloudConfig {
            cluster: spec.cluster.name.value.clone(),
            // A GKE cluster's account is its project.
            account: match provider {
                Provider::Gke => spec.cluster.project.as_ref().map(|p| p.value.clone()),
                _ => spec.cluster.account.clone(),
            },
            provider,
            region,
            profile,
            endpoints,
            sim,
            vars,
        })
    }

    /// The endpoint override for `service` (lower-case service id), else the all-services one.
    pub fn endpoint(&self, service: &str) -> Option<&str> {
        self.endpoints
            .get(service)
            .or_else(|| self.endpoints.get(ANY_SERVICE))
            .map(String::as_str)
    }

    /// A captured environment variable.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }
}

/// The process environment as `(name, value)` pairs, for [`CloudConfig::resolve`] (variables
/// whose name or value is not UTF-8 are skipped: none of the [`CAPTURED`] ones can be).
pub fn process_env() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
}

/// Whether `name` is one of the [`CAPTURED`] variables.
fn is_captured(name: &str) -> bool {
    CAPTURED.iter().any(|c| match c.strip_suffix('_') {
        Some(_) => name.len() > c.len() && name.starts_with(c),
        None => name == *c,
    })
}

/// Checks that `url` is an absolute `http`/`https` URL with a host and no credentials.
fn check_endpoint(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| "it must start with http:// or https://".to_owned())?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.contains('@') {
        return Err("it must not carry credentials (user:password@)".into());
    }
    if host.is_empty() || host.starts_with(':') {
        return Err("it names no host".into());
    }
    Ok(())
}
