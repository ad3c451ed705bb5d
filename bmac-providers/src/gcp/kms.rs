//! `encryption_key` on Google Cloud: the Cloud KMS key GKE encrypts Secrets with
//! (application-layer Secrets encryption).
//!
//! A created key lives in key ring `bmac-<cluster>` in the cluster's region (GKE requires the
//! key in the cluster's location), is named `secrets`, has purpose `ENCRYPT_DECRYPT`, rotates
//! every 90 days (CIS Google Cloud 1.10) and carries the labels `bmac-cluster` and `bmac-step`.
//! Either way — created or `existing` — the GKE service agent of the project
//! (`service-<number>@container-engine-robot.iam.gserviceaccount.com`) is granted
//! `roles/cloudkms.cryptoKeyEncrypterDecrypter` on the key, the one grant GKE needs to use it;
//! the grant is an etag-guarded edit of the key's policy that keeps every other binding.
//! An existing key must exist and have an enabled primary version; it is never changed
//! otherwise, nor destroyed.
//!
//! Cloud KMS never deletes key rings or keys. Destroy therefore schedules the destruction of
//! every enabled version of a created key (after the key's scheduled-destruction period, 30 days
//! by default, during which `gcloud kms keys versions restore` brings one back) and says so; the
//! names stay taken, so a later apply finds the key again and gives it a new primary version.

use crate::cloud::Boxed;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bmac_core::provider::{ApplyRequest, DestroyRequest, ObserveRequest, Observed};
use bmac_core::{Outputs, ProviderError};
use bmac_steps::config::{EncryptionKeyConfig, OUTPUT_ARN};
use google_cloud_kms_v1::model::crypto_key::CryptoKeyPurpose;
use google_cloud_kms_v1::model::crypto_key_version::CryptoKeyVersionState;
use google_cloud_kms_v1::model::{CryptoKey, CryptoKeyVersion, KeyRing};
use google_cloud_wkt as wkt;
use serde_json::json;

use super::error::{created, found, Context as _};
use super::iam_policy::{self, Change};
use super::{labels, Clients, Handler};

/// How often a created key rotates.
pub const ROTATION: Duration = Duration::from_secs(90 * 24 * 3600);
/// The role GKE's service agent needs on the key.
pub const ENCRYPTER: &str = "roles/cloudkms.cryptoKeyEncrypterDecrypter";

/// The `encryption_key` handler.
pub struct Key;

/// The key's resource name: `existing`, or the created key's (`alias` is `RING/KEY`).
fn key_name(gcp: &Clients, c: &EncryptionKeyConfig) -> String {
    match &c.existing {
        Some(k) => k.clone(),
        None => {
            let (ring, key) = c
                .alias
                .split_once('/')
                .unwrap_or((c.alias.as_str(), "secrets"));
            format!(
                "projects/{}/locations/{}/keyRings/{ring}/cryptoKeys/{key}",
                gcp.project, gcp.region
            )
        }
    }
}

async fn get(gcp: &Clients, name: &str) -> Result<Option<CryptoKey>, ProviderError> {
    found(
        gcp.kms.get_crypto_key().set_name(name).send().boxed().await,
        "cloudkms.cryptoKeys.get",
        &format!("key {name}"),
    )
}

/// The GKE service agent of the project, from the project's number.
pub(crate) async fn project_number(gcp: &Clients) -> Result<String, ProviderError> {
    let p = gcp
        .projects
        .get_project()
        .set_name(format!("projects/{}", gcp.project))
        .send()
        .boxed()
        .await
        .on(
            "resourcemanager.projects.get",
            &format!("project {}", gcp.project),
        )?;
    Ok(p.name.trim_start_matches("projects/").to_owned())
}

fn enabled(key: &CryptoKey) -> bool {
    key.primary
        .as_ref()
        .is_some_and(|v| v.state == CryptoKeyVersionState::Enabled)
}

fn outputs(name: &str) -> Outputs {
    Outputs::new().with(OUTPUT_ARN, name)
}

#[async_trait]
impl Handler<Clients> for Key {
    async fn apply(&self, gcp: &Clients, req: &ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let c: EncryptionKeyConfig = super::config(req.step)?;
        let name = key_name(gcp, &c);
        let resource = format!("key {name}");
        let key = match (get(gcp, &name).await?, &c.existing) {
            (Some(k), _) => k,
            (None, Some(_)) => {
                return Err(ProviderError::permanent(format!(
                    "the Cloud KMS key {name} the spec names does not exist (or the credentials cannot see it)"
                ))
                .with_code("NOT_FOUND"))
            }
            (None, None) => {
                let ring = name.split("/cryptoKeys/").next().unwrap_or(&name).to_owned();
                let (parent, ring_id) = ring.rsplit_once("/keyRings/").unwrap_or((&ring, ""));
                created(
                    gcp.kms
                        .create_key_ring()
                        .set_parent(parent)
                        .set_key_ring_id(ring_id)
                        .set_key_ring(KeyRing::new())
                        .send()
                        .boxed()
                        .await,
                    "cloudkms.keyRings.create",
                    &format!("key ring {ring}"),
                )?;
                let next = SystemTime::now() + ROTATION;
                let body = CryptoKey::new()
                    .set_purpose(CryptoKeyPurpose::EncryptDecrypt)
                    .set_rotation_period(wkt::Duration::clamp(ROTATION.as_secs() as i64, 0))
                    .set_next_rotation_time(wkt::Timestamp::try_from(next).unwrap_or_default())
                    .set_labels(labels::of(&gcp.cluster, req.step.id.as_str()));
                let key_id = name.rsplit('/').next().unwrap_or("secrets");
                created(
                    gcp.kms
                        .create_crypto_key()
                        .set_parent(&ring)
                        .set_crypto_key_id(key_id)
                        .set_crypto_key(body)
                        .send()
                        .boxed()
                        .await,
                    "cloudkms.cryptoKeys.create",
                    &resource,
                )?;
                get(gcp, &name).await?.ok_or_else(|| {
                    ProviderError::retryable(format!("key {name} is not visible yet"))
                })?
            }
        };
        if !enabled(&key) {
            if c.existing.is_some() {
                return Err(ProviderError::permanent(format!(
                    "the Cloud KMS key {name} has no enabled primary version: GKE cannot encrypt Secrets with it"
                ))
                .with_code("FAILED_PRECONDITION"));
            }
            // A key bmac destroyed before keeps its name: give it a new primary version.
            let version = gcp
                .kms
                .create_crypto_key_version()
                .set_parent(&name)
                .set_crypto_key_version(CryptoKeyVersion::new())
                .send()
                .boxed()
                .await
                .on("cloudkms.cryptoKeyVersions.create", &resource)?;
            let id = version
                .name
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            gcp.kms
                .update_crypto_key_primary_version()
                .set_name(&name)
                .set_crypto_key_version_id(id)
                .send()
                .boxed()
                .await
                .on("cloudkms.cryptoKeys.updatePrimaryVersion", &resource)?;
        }
        let agent = format!(
            "serviceAccount:service-{}@container-engine-robot.iam.gserviceaccount.com",
            project_number(gcp).await?
        );
        let change = [Change::Grant {
            role: ENCRYPTER.into(),
            member: agent,
        }];
        iam_policy::edit(
            &resource,
            &change,
            || gcp.kms.get_iam_policy().set_resource(&name).send(),
            |p| {
                gcp.kms
                    .set_iam_policy()
                    .set_resource(&name)
                    .set_policy(p)
                    .send()
            },
        )
        .await?;
        Ok(outputs(&name))
    }

    async fn observe(
        &self,
        gcp: &Clients,
        req: &ObserveRequest<'_>,
    ) -> Result<Observed, ProviderError> {
        let c: EncryptionKeyConfig = super::config(req.step)?;
        let name = key_name(gcp, &c);
        match get(gcp, &name).await? {
            Some(key) if enabled(&key) => {
                let mut config = serde_json::to_value(&c).unwrap_or_default();
                if c.existing.is_none() {
                    config["rotation"] = json!(key.rotation_period().is_some());
                }
                Ok(Observed::Present {
                    config,
                    outputs: outputs(&name),
                })
            }
            _ => Ok(Observed::Absent),
        }
    }

    async fn destroy(&self, gcp: &Clients, req: &DestroyRequest<'_>) -> Result<(), ProviderError> {
        let c: EncryptionKeyConfig = super::config(req.step)?;
        if c.existing.is_some() {
            return Ok(());
        }
        let name = key_name(gcp, &c);
        if get(gcp, &name).await?.is_none() {
            return Ok(());
        }
        let mut scheduled = 0;
        let mut page = gcp
            .kms
            .list_crypto_key_versions()
            .set_parent(&name)
            .send()
            .boxed()
            .await
            .on("cloudkms.cryptoKeyVersions.list", &format!("key {name}"))?;
        loop {
            for v in page.crypto_key_versions.iter().filter(|v| {
                matches!(
                    v.state,
                    CryptoKeyVersionState::Enabled | CryptoKeyVersionState::Disabled
                )
            }) {
                found(
                    gcp.kms
                        .destroy_crypto_key_version()
                        .set_name(&v.name)
                        .send()
                        .boxed()
                        .await,
                    "cloudkms.cryptoKeyVersions.destroy",
                    &v.name,
                )?;
                scheduled += 1;
            }
            if page.next_page_token.is_empty() {
                break;
            }
            page = gcp
                .kms
                .list_crypto_key_versions()
                .set_parent(&name)
                .set_page_token(&page.next_page_token)
                .send()
                .boxed()
                .await
                .on("cloudkms.cryptoKeyVersions.list", &format!("key {name}"))?;
        }
        req.ctx.progress(format!(
            "Cloud KMS key {name}: {scheduled} version(s) scheduled for destruction (restorable until then with `gcloud kms keys versions restore`); Cloud KMS keeps the key ring and key names"
        ));
        Ok(())
    }
}
