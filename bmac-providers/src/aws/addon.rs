//! `addon` on AWS: an EKS add-on — the VPC CNI, the EBS CSI driver, the Pod Identity agent.
//!
//! Create: `CreateAddon` with the pinned version (EKS's default for the cluster's version
//! when none), the configuration values as JSON, and — when the config names a service
//! account — a Pod Identity association of the `role` input to it, made by EKS with the
//! add-on (`podIdentityAssociations`). Conflicts with what is already in the cluster are
//! resolved by overwriting (`OVERWRITE`): a new cluster runs a self-managed `aws-node` that
//! the VPC CNI add-on takes over, as eksctl and the Terraform EKS module do. An add-on that
//! already exists (`ResourceInUseException`) is adopted and brought to the config. The create
//! waits through `CREATING` (and `DEGRADED`, whose health issues are shown as progress — an
//! add-on whose pods cannot run yet) until `ACTIVE`; `CREATE_FAILED` is permanent and names
//! the issues.
//!
//! Update in place (`UpdateAddon`, waiting on its `DescribeUpdate`): the version, the
//! configuration values and the role. An add-on update shares the cluster's one-update-at-a-time
//! group, as EKS refuses concurrent updates of a cluster.
//!
//! Observe reports the live version (when one is pinned), the live configuration values, and
//! a Pod Identity association deleted by hand as `service_account: null`. Destroy deletes the
//! add-on; with `preserve` (the VPC CNI) its software keeps running in the cluster, since
//! removing it would cut every pod's network.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_sdk_eks::types::{Addon, AddonPodIdentityAssociations, AddonStatus, ResolveConflicts};
use bmac_core::provider::{ApplyRequest, DestroyRequest, ObserveRequest, Observed, StepContext};
use bmac_core::{Outputs, ProviderError};
use bmac_steps::config::{AddonConfig, INPUT_ROLE, OUTPUT_ARN};
use serde_json::{json, Value};

use super::cluster::{wait_for_update, UpdateOf};
use super::error::{created, found, Context as _, Created};
use super::{tags, Clients, Handler};
use crate::cloud::wait::{self, Poll};

/// The `addon` handler.
pub struct EksAddon;

fn resource(c: &AddonConfig) -> String {
    format!("add-on {} of cluster {}", c.name, c.cluster)
}

async fn describe(aws: &Clients, c: &AddonConfig) -> Result<Option<Addon>, ProviderError> {
    Ok(found(
        aws.eks
            .describe_addon()
            .cluster_name(&c.cluster)
            .addon_name(&c.name)
            .send()
            .await,
        "eks:DescribeAddon",
        &resource(c),
    )?
    .and_then(|o| o.addon))
}

/// The configuration values as EKS takes them (a JSON document), or none.
fn configuration(c: &AddonConfig) -> Option<String> {
    (!c.configuration.is_empty()).then(|| json!(c.configuration).to_string())
}

/// The live configuration values, parsed (EKS returns the JSON or YAML it was given; a value
/// that is not a JSON object is shown as a string, so it differs from any config).
fn live_configuration(a: &Addon) -> BTreeMap<String, Value> {
    match a.configuration_values().map(str::trim) {
        None | Some("") => BTreeMap::new(),
        Some(text) => serde_json::from_str(text)
            .unwrap_or_else(|_| BTreeMap::from([("(unparsed)".to_owned(), json!(text))])),
    }
}

/// The Pod Identity association the add-on should carry.
fn association(
    c: &AddonConfig,
    req: &ApplyRequest<'_>,
) -> Result<Option<AddonPodIdentityAssociations>, ProviderError> {
    if c.service_account.is_empty() {
        return Ok(None);
    }
    let role = super::cluster::input_str(req.inputs, INPUT_ROLE)?;
    AddonPodIdentityAssociations::builder()
        .service_account(&c.service_account)
        .role_arn(role)
        .build()
        .map(Some)
        .map_err(|e| ProviderError::permanent(format!("{}: {e}", resource(c))))
}

fn outputs(a: &Addon) -> Outputs {
    Outputs::new()
        .with(OUTPUT_ARN, a.addon_arn().unwrap_or_default())
        .with("name", a.addon_name().unwrap_or_default())
        .with("version", a.addon_version().unwrap_or_default())
}

fn issues(a: &Addon) -> String {
    let issues: Vec<String> = a
        .health()
        .map(|h| h.issues())
        .unwrap_or_default()
        .iter()
        .map(|i| {
            format!(
                "{}: {}",
                i.code().map_or("", |c| c.as_str()),
                i.message().unwrap_or_default()
            )
        })
        .collect();
    issues.join("; ")
}

/// Waits until the add-on is `ACTIVE`.
async fn wait_active(
    aws: &Clients,
    ctx: &StepContext,
    c: &AddonConfig,
) -> Result<Addon, ProviderError> {
    let what = resource(c);
    wait::until(ctx, &what, || async {
        let a = describe(aws, c)
            .await?
            .ok_or_else(|| ProviderError::retryable(format!("{what} is not visible yet")))?;
        match a.status() {
            Some(AddonStatus::Active) | None => Ok(Poll::Done(a)),
            Some(s @ (AddonStatus::CreateFailed | AddonStatus::UpdateFailed)) => Err(
                ProviderError::permanent(format!("{what} {}: {}", s.as_str(), issues(&a)))
                    .with_code(s.as_str()),
            ),
            Some(AddonStatus::Degraded) => Ok(Poll::Waiting(format!("DEGRADED ({})", issues(&a)))),
            Some(other) => Ok(Poll::Waiting(other.as_str().to_owned())),
        }
    })
    .await
}

#[async_trait]
impl Handler<Clients> for EksAddon {
    fn expected(&self) -> std::time::Duration {
        std::time::Duration::from_secs(90)
    }

    fn max(&self) -> std::time::Duration {
        std::time::Duration::from_secs(20 * 60)
    }

    fn cluster_update(&self) -> bool {
        true
    }

    async fn apply(&self, aws: &Clients, req: &ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let c: AddonConfig = super::config(req.step)?;
        let what = resource(&c);
        let association = association(&c, req)?;
        if describe(aws, &c).await?.is_none() {
            let tags: HashMap<String, String> = tags::of(&aws.cluster, req.step.id.as_str(), None)
                .into_iter()
                .collect();
            let create = aws
                .eks
                .create_addon()
                .cluster_name(&c.cluster)
                .addon_name(&c.name)
                .set_addon_version(c.version.clone())
                .set_configuration_values(configuration(&c))
                .set_pod_identity_associations(association.clone().map(|a| vec![a]))
                .resolve_conflicts(ResolveConflicts::Overwrite)
                .set_tags(Some(tags));
            if let Created::Created(_) = created(create.send().await, "eks:CreateAddon", &what)? {
                return Ok(outputs(&wait_active(aws, req.ctx, &c).await?));
            }
        }
        let live = wait_active(aws, req.ctx, &c).await?;
        let version_differs = c
            .version
            .as_deref()
            .is_some_and(|v| Some(v) != live.addon_version());
        let config_differs = live_configuration(&live) != c.configuration;
        let association_missing =
            association.is_some() && live.pod_identity_associations().is_empty();
        if !(version_differs || config_differs || association_missing) {
            return Ok(outputs(&live));
        }
        // An update sends every setting: EKS keeps what an update leaves out, so an empty
        // configuration is sent as `{}` to clear values set earlier.
        let out = aws
            .eks
            .update_addon()
            .cluster_name(&c.cluster)
            .addon_name(&c.name)
            .set_addon_version(c.version.clone())
            .configuration_values(configuration(&c).unwrap_or_else(|| "{}".to_owned()))
            .set_pod_identity_associations(association.map(|a| vec![a]))
            .resolve_conflicts(ResolveConflicts::Overwrite)
            .send()
            .await
            .on("eks:UpdateAddon", &what)?;
        if let Some(id) = out.update().and_then(|u| u.id()) {
            wait_for_update(aws, req.ctx, UpdateOf::Addon(&c.name), &what, id).await?;
        }
        Ok(outputs(&wait_active(aws, req.ctx, &c).await?))
    }

    async fn observe(
        &self,
        aws: &Clients,
        req: &ObserveRequest<'_>,
    ) -> Result<Observed, ProviderError> {
        let c: AddonConfig = super::config(req.step)?;
        let Some(live) = describe(aws, &c).await? else {
            return Ok(Observed::Absent);
        };
        if let Some(s @ (AddonStatus::Creating | AddonStatus::Updating | AddonStatus::Deleting)) =
            live.status()
        {
            return Ok(Observed::Pending {
                status: s.as_str().to_owned(),
            });
        }
        let mut config = serde_json::to_value(&c).unwrap_or_default();
        if c.version.is_some() {
            config["version"] = json!(live.addon_version());
        }
        let configuration = live_configuration(&live);
        if configuration != c.configuration {
            config["configuration"] = json!(configuration);
        }
        if !c.service_account.is_empty() && live.pod_identity_associations().is_empty() {
            config["service_account"] = Value::Null;
        }
        if matches!(
            live.status(),
            Some(AddonStatus::CreateFailed | AddonStatus::UpdateFailed | AddonStatus::DeleteFailed)
        ) {
            config["status"] = json!(live.status().map(|s| s.as_str()));
        }
        Ok(Observed::Present {
            config,
            outputs: outputs(&live),
        })
    }

    async fn destroy(&self, aws: &Clients, req: &DestroyRequest<'_>) -> Result<(), ProviderError> {
        let c: AddonConfig = super::config(req.step)?;
        let what = resource(&c);
        let deleting = found(
            aws.eks
                .delete_addon()
                .cluster_name(&c.cluster)
                .addon_name(&c.name)
                .preserve(c.preserve)
                .send()
                .await,
            "eks:DeleteAddon",
            &what,
        )?;
        if deleting.is_none() {
            return Ok(());
        }
        if c.preserve {
            req.ctx.progress(format!(
                "{what} removed from EKS; its software keeps running in the cluster (preserve)"
            ));
        }
        wait::until(req.ctx, &what, || async {
            Ok(match describe(aws, &c).await? {
                None => Poll::Done(()),
                Some(a) => Poll::Waiting(
                    a.status()
                        .map_or("DELETING".into(), |s| s.as_str().to_owned()),
                ),
            })
        })
        .await
    }
}
