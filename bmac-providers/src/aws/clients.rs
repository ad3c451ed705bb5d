//! [`Aws`]: the AWS SDK clients every handler calls, built once per provider from the run's
//! [`CloudConfig`] — the one configuration seam (DESIGN, real clouds 3).
//!
//! The shared `SdkConfig` comes from `aws-config`'s standard chain: credentials from the
//! environment, the shared config and credentials files (profiles, SSO, `credential_process`),
//! web identity and instance metadata, exactly as the AWS CLI finds them; the profile is
//! [`CloudConfig::profile`] when set. The region is the spec's (resolved into
//! [`CloudConfig::region`]). Endpoints follow the AWS convention: `--endpoint SERVICE=URL`,
//! then `AWS_ENDPOINT_URL_<SERVICE>`, then `AWS_ENDPOINT_URL`, then a profile's `endpoint_url`
//! (which `aws-config` itself reads), then the service's public endpoint. Service keys are the
//! SDK's service ids in lower case with `_` for spaces: `eks`, `iam`, `ec2`, `s3`,
//! `cloudwatch_logs`, `firehose`, `cloudwatch`, `sns`, `ecr`, `kms`, `sts`.
//!
//! TLS: rustls with the `ring` provider (the one kube already builds) and the system's
//! trust roots; `AWS_CA_BUNDLE` (a PEM file, as the AWS CLI reads it) adds the roots of a
//! TLS-intercepting proxy or a test server. S3 is addressed path-style whenever an endpoint is
//! overridden (local servers have no wildcard DNS), virtual-hosted otherwise.
//!
//! Loading the chain is asynchronous and may fail (no region, an unreadable CA bundle), so it
//! happens on the first call and is then shared by every handler; a failure is a permanent
//! error naming what is missing. When the spec names an `account`, loading also asks STS who
//! the caller is and refuses credentials of another account — before any handler has changed
//! anything.

use std::sync::Arc;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use bmac_core::ProviderError;
use tokio::sync::OnceCell;

use super::error::Context as _;
use crate::config::CloudConfig;

/// The variable naming an extra PEM trust bundle, as the AWS CLI and SDKs define it.
pub const CA_BUNDLE_VAR: &str = "AWS_CA_BUNDLE";

/// The SDK clients of one provider, built on first use.
pub struct Aws {
    cluster: String,
    account: Option<String>,
    region: Option<String>,
    profile: Option<String>,
    endpoints: Vec<(String, String)>,
    fallback_endpoint: Option<String>,
    ca_bundle: Option<String>,
    sdk: OnceCell<Arc<Clients>>,
}

/// Every service client, sharing one `SdkConfig` (cloning shares the connections).
#[allow(missing_docs)]
#[derive(Clone)]
pub struct Clients {
    pub cluster: String,
    pub sdk: SdkConfig,
    pub region: String,
    pub eks: aws_sdk_eks::Client,
    pub iam: aws_sdk_iam::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub s3: aws_sdk_s3::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub firehose: aws_sdk_firehose::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub sns: aws_sdk_sns::Client,
    pub ecr: aws_sdk_ecr::Client,
    pub kms: aws_sdk_kms::Client,
    pub sts: aws_sdk_sts::Client,
}

impl std::fmt::Debug for Aws {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aws")
            .field("region", &self.region)
            .field("profile", &self.profile)
            .field("endpoints", &self.endpoints)
            .field("loaded", &self.sdk.initialized())
            .finish()
    }
}

impl Aws {
    /// The clients `config` describes (nothing is loaded or called yet).
    pub fn new(config: &CloudConfig) -> Self {
        let endpoints = config
            .endpoints
            .iter()
            .filter(|(service, _)| service.as_str() != crate::config::ANY_SERVICE)
            .map(|(s, u)| (s.clone(), u.clone()))
            .collect();
        Aws {
            cluster: config.cluster.clone(),
            account: config.account.clone(),
            region: config.region.clone(),
            profile: config.profile.clone(),
            endpoints,
            fallback_endpoint: config.endpoints.get(crate::config::ANY_SERVICE).cloned(),
            ca_bundle: config.var(CA_BUNDLE_VAR).map(str::to_owned),
            sdk: OnceCell::new(),
        }
    }

    /// Clients an embedder built itself (its own `SdkConfig`, interceptors or HTTP client),
    /// used as they are: no credential chain is loaded and no account is checked.
    pub fn from_clients(clients: Clients) -> Self {
        Aws {
            cluster: clients.cluster.clone(),
            account: None,
            region: Some(clients.region.clone()),
            profile: None,
            endpoints: Vec::new(),
            fallback_endpoint: None,
            ca_bundle: None,
            sdk: OnceCell::new_with(Some(Arc::new(clients))),
        }
    }

    /// The cluster these clients build.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The endpoint override for `service`, if any.
    pub fn endpoint(&self, service: &str) -> Option<&str> {
        self.endpoints
            .iter()
            .find(|(s, _)| s == service)
            .map(|(_, u)| u.as_str())
            .or(self.fallback_endpoint.as_deref())
    }

    /// The clients, loading the credential chain on first use.
    pub async fn clients(&self) -> Result<Arc<Clients>, ProviderError> {
        self.sdk
            .get_or_try_init(|| async { self.load().await.map(Arc::new) })
            .await
            .cloned()
    }

    async fn load(&self) -> Result<Clients, ProviderError> {
        let region = self.region.clone().ok_or_else(|| {
            ProviderError::permanent(
                "no AWS region: set `[cluster] region` in the spec (or AWS_REGION)",
            )
            .with_code("bmac::aws::no_region")
        })?;
        let mut trust = TrustStore::default();
        if let Some(path) = &self.ca_bundle {
            let pem = tokio::fs::read(path).await.map_err(|e| {
                ProviderError::permanent(format!(
                    "cannot read the CA bundle {path} (from ${CA_BUNDLE_VAR}): {e}"
                ))
                .with_code("bmac::aws::ca_bundle")
            })?;
            trust = trust.with_pem_certificate(pem.as_slice());
        }
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .tls_context(
                TlsContext::builder()
                    .with_trust_store(trust)
                    .build()
                    .map_err(|e| {
                        ProviderError::permanent(format!("the TLS settings are not usable: {e}"))
                    })?,
            )
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.clone()))
            .http_client(http);
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile);
        }
        let sdk = loader.load().await;
        let at = |service: &str| self.endpoint(service).map(str::to_owned);
        macro_rules! client {
            ($krate:ident, $service:literal) => {{
                let mut b = $krate::config::Builder::from(&sdk);
                if let Some(url) = at($service) {
                    b = b.endpoint_url(url);
                }
                $krate::Client::from_conf(b.build())
            }};
        }
        let s3 = {
            let mut b = aws_sdk_s3::config::Builder::from(&sdk);
            if let Some(url) = at("s3") {
                b = b.endpoint_url(url).force_path_style(true);
            }
            aws_sdk_s3::Client::from_conf(b.build())
        };
        let sts = client!(aws_sdk_sts, "sts");
        if let Some(expected) = &self.account {
            let me = sts
                .get_caller_identity()
                .send()
                .await
                .on("sts:GetCallerIdentity", "the caller")?;
            let actual = me.account().unwrap_or_default();
            if actual != expected {
                return Err(ProviderError::permanent(format!(
                    "the AWS credentials in use belong to account {actual}, but the spec builds in account {expected}: use the profile or credentials of account {expected} (--profile, AWS_PROFILE)"
                ))
                .with_code("bmac::aws::wrong_account"));
            }
        }
        Ok(Clients {
            eks: client!(aws_sdk_eks, "eks"),
            iam: client!(aws_sdk_iam, "iam"),
            ec2: client!(aws_sdk_ec2, "ec2"),
            s3,
            logs: client!(aws_sdk_cloudwatchlogs, "cloudwatch_logs"),
            firehose: client!(aws_sdk_firehose, "firehose"),
            cloudwatch: client!(aws_sdk_cloudwatch, "cloudwatch"),
            sns: client!(aws_sdk_sns, "sns"),
            ecr: client!(aws_sdk_ecr, "ecr"),
            kms: client!(aws_sdk_kms, "kms"),
            sts,
            cluster: self.cluster.clone(),
            region,
            sdk,
        })
    }
}
