//! `encryption_key` on AWS: the KMS key that envelope-encrypts the cluster's Secrets.
//!
//! A created key is symmetric, tagged, described, rotated yearly (`EnableKeyRotation`) and
//! found again by its alias (`alias/bmac/<cluster>/secrets`). Between `CreateKey` and
//! `CreateAlias` the new key id is checkpointed, so a crash there resumes with that key
//! instead of leaving one orphan and making another. An `existing` key is only checked (it
//! must exist and be enabled) and never changed or deleted.
//!
//! Destroy does not delete a key at once — AWS cannot: it schedules deletion after the
//! longest waiting period (30 days), during which `CancelKeyDeletion` brings it back, and
//! removes the alias; the progress message says so. A key pending deletion is absent to
//! `observe`.

use async_trait::async_trait;
use aws_sdk_kms::types::{KeyMetadata, KeyState, Tag};
use bmac_core::provider::{ApplyRequest, DestroyRequest, ObserveRequest, Observed};
use bmac_core::{Outputs, ProviderError};
use bmac_steps::config::{EncryptionKeyConfig, OUTPUT_ARN};
use serde_json::json;

use super::error::{found, Context as _};
use super::{tags, Clients, Handler};

/// Days a destroyed key waits before AWS deletes it (the longest window).
pub const DELETION_WINDOW_DAYS: i32 = 30;

/// The `encryption_key` handler.
pub struct Key;

async fn describe(aws: &Clients, id: &str) -> Result<Option<KeyMetadata>, ProviderError> {
    let out = found(
        aws.kms.describe_key().key_id(id).send().await,
        "kms:DescribeKey",
        &format!("key {id}"),
    )?;
    Ok(out.and_then(|o| o.key_metadata).filter(|k| {
        !matches!(
            k.key_state(),
            Some(KeyState::PendingDeletion) | Some(KeyState::PendingReplicaDeletion)
        )
    }))
}

/// Whether automatic rotation is on for key `id`.
async fn rotating(aws: &Clients, id: &str) -> Result<bool, ProviderError> {
    Ok(aws
        .kms
        .get_key_rotation_status()
        .key_id(id)
        .send()
        .await
        .on("kms:GetKeyRotationStatus", &format!("key {id}"))?
        .key_rotation_enabled())
}

fn outputs(key: &KeyMetadata) -> Outputs {
    Outputs::new()
        .with(OUTPUT_ARN, key.arn().unwrap_or_default())
        .with("key_id", key.key_id())
}

#[async_trait]
impl Handler<Clients> for Key {
    async fn apply(&self, aws: &Clients, req: &ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let c: EncryptionKeyConfig = super::config(req.step)?;
        if let Some(arn) = &c.existing {
            let key = describe(aws, arn).await?.ok_or_else(|| {
                ProviderError::permanent(format!(
                    "the KMS key {arn} the spec names does not exist (or is pending deletion)"
                ))
                .with_code("NotFoundException")
            })?;
            if !key.enabled() {
                return Err(ProviderError::permanent(format!(
                    "the KMS key {arn} is disabled: EKS cannot encrypt Secrets with it"
                ))
                .with_code("DisabledException"));
            }
            return Ok(outputs(&key));
        }
        let resource = format!("key {}", c.alias);
        let key = match describe(aws, &c.alias).await? {
            Some(key) => key,
            None => {
                let resumed = req
                    .ctx
                    .last_checkpoint()
                    .and_then(|v| v.get("key_id"))
                    .and_then(|v| v.as_str())
                    .map(str::to_owned);
                let key = match resumed {
                    Some(id) => describe(aws, &id).await?,
                    None => None,
                };
                let key = match key {
                    Some(key) => key,
                    None => {
                        let tag_list = tags::of(&aws.cluster, req.step.id.as_str(), None)
                            .into_iter()
                            .map(|(k, v)| Tag::builder().tag_key(k).tag_value(v).build())
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(|e| ProviderError::permanent(format!("tag: {e}")))?;
                        let out = aws
                            .kms
                            .create_key()
                            .description(&c.description)
                            .set_tags(Some(tag_list))
                            .send()
                            .await
                            .on("kms:CreateKey", &resource)?;
                        let key = out.key_metadata.ok_or_else(|| {
                            ProviderError::retryable("kms:CreateKey answered without the key")
                        })?;
                        req.ctx.checkpoint(json!({"key_id": key.key_id()})).await?;
                        key
                    }
                };
                aws.kms
                    .create_alias()
                    .alias_name(&c.alias)
                    .target_key_id(key.key_id())
                    .send()
                    .await
                    .on("kms:CreateAlias", &resource)?;
                key
            }
        };
        let rotating = rotating(aws, key.key_id()).await?;
        if c.rotation && !rotating {
            aws.kms
                .enable_key_rotation()
                .key_id(key.key_id())
                .send()
                .await
                .on("kms:EnableKeyRotation", &resource)?;
        } else if !c.rotation && rotating {
            aws.kms
                .disable_key_rotation()
                .key_id(key.key_id())
                .send()
                .await
                .on("kms:DisableKeyRotation", &resource)?;
        }
        Ok(outputs(&key))
    }

    async fn observe(
        &self,
        aws: &Clients,
        req: &ObserveRequest<'_>,
    ) -> Result<Observed, ProviderError> {
        let c: EncryptionKeyConfig = super::config(req.step)?;
        let id = c.existing.clone().unwrap_or_else(|| c.alias.clone());
        let Some(key) = describe(aws, &id).await? else {
            return Ok(Observed::Absent);
        };
        let mut config = serde_json::to_value(&c).unwrap_or_default();
        if c.existing.is_none() {
            let rotating = rotating(aws, key.key_id()).await?;
            config["rotation"] = json!(rotating);
        }
        Ok(Observed::Present {
            config,
            outputs: outputs(&key),
        })
    }

    async fn destroy(&self, aws: &Clients, req: &DestroyRequest<'_>) -> Result<(), ProviderError> {
        let c: EncryptionKeyConfig = super::config(req.step)?;
        if c.existing.is_some() {
            return Ok(());
        }
        let Some(key) = describe(aws, &c.alias).await? else {
            return Ok(());
        };
        let resource = format!("key {}", c.alias);
        found(
            aws.kms.delete_alias().alias_name(&c.alias).send().await,
            "kms:DeleteAlias",
            &resource,
        )?;
        aws.kms
            .schedule_key_deletion()
            .key_id(key.key_id())
            .pending_window_in_days(DELETION_WINDOW_DAYS)
            .send()
            .await
            .on("kms:ScheduleKeyDeletion", &resource)?;
        req.ctx.progress(format!(
            "KMS key {} ({}) is scheduled for deletion in {DELETION_WINDOW_DAYS} days; `aws kms cancel-key-deletion` brings it back until then",
            c.alias,
            key.key_id()
        ));
        Ok(())
    }
}
