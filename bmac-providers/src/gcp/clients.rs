//! [`Gcp`]: the Google Cloud clients every handler calls, built once per provider from the
//! run's [`CloudConfig`] — the one configuration seam (DESIGN, real clouds 3).
//!
//! Credentials are Application Default Credentials, found as the `gcloud` CLI and every Google
//! client library find them: `GOOGLE_APPLICATION_CREDENTIALS` (a service-account key, an
//! `authorized_user` file, an external-account (workload identity federation) file, or an
//! `impersonated_service_account` file — service-account impersonation), else the file
//! `gcloud auth application-default login` writes, else the metadata server of the machine
//! bmac runs on. google-cloud-auth reads them when a handler first calls, and refreshes tokens
//! itself; bmac never sees a key.
//!
//! Endpoints follow gcloud's convention: `--endpoint SERVICE=URL`, then
//! `CLOUDSDK_API_ENDPOINT_OVERRIDES_<SERVICE>` (service keys `container`, `compute`, `iam`,
//! `cloudresourcemanager`, `cloudkms`, `logging`, `monitoring`, `artifactregistry`, `storage`
//! — for Cloud Storage `STORAGE_EMULATOR_HOST` too, when gcloud's variable is not set), then
//! the public endpoint. gcloud's override values end in `/` and, for Compute, in `compute/v1/`; the
//! clients add those paths themselves, so both are cut.
//!
//! TLS: rustls with the `ring` provider, installed as the process default on first use (the
//! crates are built without their aws-lc default, and kube already builds ring).
//!
//! Loading is asynchronous and may fail (no credentials, an unreadable file), so it happens on
//! the first call and is then shared by every handler; a failure is a permanent error naming
//! what is missing. The project and region come from the spec (resolved into the config).

use crate::cloud::Boxed;
use std::sync::Arc;

use bmac_core::ProviderError;
use google_cloud_auth::credentials::{AccessTokenCredentials, Credentials};
use tokio::sync::OnceCell;

use crate::config::CloudConfig;

/// The Google Cloud clients of one provider, built on first use.
pub struct Gcp {
    cluster: String,
    project: Option<String>,
    region: Option<String>,
    endpoints: Vec<(String, String)>,
    clients: OnceCell<Arc<Clients>>,
}

impl std::fmt::Debug for Gcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gcp")
            .field("cluster", &self.cluster)
            .field("project", &self.project)
            .field("region", &self.region)
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

/// Every service client, sharing one set of credentials.
#[allow(missing_docs)]
#[derive(Clone)]
pub struct Clients {
    /// The cluster the provider builds (what resources are named and labelled after).
    pub cluster: String,
    /// The project everything is created in.
    pub project: String,
    /// The cluster's location (a region, or a zone for a zonal cluster).
    pub location: String,
    /// The region of the location (where regional resources go).
    pub region: String,
    /// The credentials the clients use (for the GKE token minter too).
    pub credentials: AccessTokenCredentials,
    pub container: google_cloud_container_v1::client::ClusterManager,
    pub networks: google_cloud_compute_v1::client::Networks,
    pub subnetworks: google_cloud_compute_v1::client::Subnetworks,
    pub routers: google_cloud_compute_v1::client::Routers,
    pub region_operations: google_cloud_compute_v1::client::RegionOperations,
    pub global_operations: google_cloud_compute_v1::client::GlobalOperations,
    pub projects: google_cloud_resourcemanager_v3::client::Projects,
    pub iam: google_cloud_iam_admin_v1::client::Iam,
    pub kms: google_cloud_kms_v1::client::KeyManagementService,
    pub sinks: google_cloud_logging_v2::client::ConfigServiceV2,
    pub metrics: google_cloud_logging_v2::client::MetricsServiceV2,
    pub alerts: google_cloud_monitoring_v3::client::AlertPolicyService,
    pub channels: google_cloud_monitoring_v3::client::NotificationChannelService,
    /// Cloud Storage bucket administration (JSON API: see [`super::storage`]).
    pub storage: super::storage::Gcs,
    /// Artifact Registry (remote repositories for the registry mirrors).
    pub artifact_registry: google_cloud_artifactregistry_v1::client::ArtifactRegistry,
}

impl Clients {
    /// `projects/PROJECT/locations/LOCATION`, the parent of the project's clusters.
    pub fn location_path(&self) -> String {
        format!("projects/{}/locations/{}", self.project, self.location)
    }
}

/// Installs ring as rustls's process-wide provider (once; a provider installed before wins).
/// The clients call it before they are built; call it first to use rustls elsewhere earlier.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Gcp {
    /// Clients for the cluster of `config`, built on first use.
    pub fn new(config: &CloudConfig) -> Self {
        let endpoints = [
            "container",
            "compute",
            "iam",
            "cloudresourcemanager",
            "cloudkms",
            "logging",
            "monitoring",
            "artifactregistry",
            "iamcredentials",
            "storage",
        ]
        .into_iter()
        .filter_map(|service| {
            let url = config.endpoints.get(service)?;
            Some((service.to_owned(), service_root(service, url)))
        })
        .collect();
        Gcp {
            cluster: config.cluster.clone(),
            project: config.account.clone(),
            region: config.region.clone(),
            endpoints,
            clients: OnceCell::new(),
        }
    }

    /// The cluster these clients build.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    fn endpoint(&self, service: &str) -> Option<&str> {
        self.endpoints
            .iter()
            .find(|(s, _)| s == service)
            .map(|(_, u)| u.as_str())
    }

    /// The clients, built on the first call.
    pub async fn clients(&self) -> Result<Arc<Clients>, ProviderError> {
        self.clients
            .get_or_try_init(|| async { self.build().await.map(Arc::new) })
            .await
            .cloned()
    }

    async fn build(&self) -> Result<Clients, ProviderError> {
        install_crypto();
        let project = self.project.clone().ok_or_else(|| {
            ProviderError::permanent("the GKE cluster names no `project`")
                .with_code("bmac::gcp::config")
        })?;
        let location = self.region.clone().ok_or_else(|| {
            ProviderError::permanent("the GKE cluster names no `region`")
                .with_code("bmac::gcp::config")
        })?;
        let region = bmac_steps::spec::gcp_location(&location)
            .map(|(r, _)| r.to_owned())
            .unwrap_or_else(|| location.clone());
        let credentials = google_cloud_auth::credentials::Builder::default()
            .build_access_token_credentials()
            .map_err(|e| {
                ProviderError::permanent(format!(
                    "no usable Google credentials: {} — run `gcloud auth application-default login`, or point GOOGLE_APPLICATION_CREDENTIALS at a credentials file",
                    crate::cloud::describe(&e)
                ))
                .with_code("bmac::gcp::credentials")
            })?;
        let creds: Credentials = credentials.clone().into();
        macro_rules! client {
            ($ty:ty, $service:literal) => {{
                let mut b = <$ty>::builder().with_credentials(creds.clone());
                if let Some(url) = self.endpoint($service) {
                    b = b.with_endpoint(url);
                }
                b.build().boxed().await.map_err(|e| {
                    ProviderError::permanent(format!(
                        "the {} client could not be built: {}",
                        $service,
                        crate::cloud::describe(&e)
                    ))
                    .with_code("bmac::gcp::client")
                })?
            }};
        }
        Ok(Clients {
            cluster: self.cluster.clone(),
            project,
            location,
            region,
            container: client!(
                google_cloud_container_v1::client::ClusterManager,
                "container"
            ),
            networks: client!(google_cloud_compute_v1::client::Networks, "compute"),
            subnetworks: client!(google_cloud_compute_v1::client::Subnetworks, "compute"),
            routers: client!(google_cloud_compute_v1::client::Routers, "compute"),
            region_operations: client!(
                google_cloud_compute_v1::client::RegionOperations,
                "compute"
            ),
            global_operations: client!(
                google_cloud_compute_v1::client::GlobalOperations,
                "compute"
            ),
            projects: client!(
                google_cloud_resourcemanager_v3::client::Projects,
                "cloudresourcemanager"
            ),
            iam: client!(google_cloud_iam_admin_v1::client::Iam, "iam"),
            kms: client!(
                google_cloud_kms_v1::client::KeyManagementService,
                "cloudkms"
            ),
            sinks: client!(google_cloud_logging_v2::client::ConfigServiceV2, "logging"),
            metrics: client!(google_cloud_logging_v2::client::MetricsServiceV2, "logging"),
            alerts: client!(
                google_cloud_monitoring_v3::client::AlertPolicyService,
                "monitoring"
            ),
            channels: client!(
                google_cloud_monitoring_v3::client::NotificationChannelService,
                "monitoring"
            ),
            artifact_registry: client!(
                google_cloud_artifactregistry_v1::client::ArtifactRegistry,
                "artifactregistry"
            ),
            storage: super::storage::Gcs::new(self.endpoint("storage")),
            credentials,
        })
    }
}

/// The root URL the client of `service` is given for an override `url` (see the module docs).
fn service_root(service: &str, url: &str) -> String {
    let mut root = url.trim_end_matches('/');
    if service == "compute" {
        root = root.strip_suffix("/compute/v1").unwrap_or(root);
    }
    root.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcloud_overrides_become_client_roots() {
        assert_eq!(
            service_root("container", "https://container.example.test/"),
            "https://container.example.test"
        );
        assert_eq!(
            service_root("compute", "http://127.0.0.1:9000/compute/v1/"),
            "http://127.0.0.1:9000"
        );
        assert_eq!(
            service_root("iam", "http://127.0.0.1:9"),
            "http://127.0.0.1:9"
        );
    }
}
