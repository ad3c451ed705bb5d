//! `identity_binding` on AWS: an EKS Pod Identity association — the role of the `role` input,
//! bound to one Kubernetes service account of the cluster.
//!
//! EKS keeps at most one association per service account, and names it by an id it assigns,
//! so an association is found by listing the cluster's associations for that namespace and
//! service account: a create that crashed, or "already exists" (`ResourceInUseException`),
//! is adopted, and one bound to another role is moved to this one in place
//! (`UpdatePodIdentityAssociation`; the namespace and service account are replacements).
//! Pods get the role's credentials from the Pod Identity agent (an add-on step this one runs
//! after) when they start; pods already running keep what they had.
//!
//! Observe reports the live role as output `role` and shows an association bound to another
//! role as drift of `service_account` (the binding no longer serves the account as the spec
//! says). Destroy deletes the association; gone already is success.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_eks::types::PodIdentityAssociation;
use bmac_core::provider::{ApplyRequest, DestroyRequest, ObserveRequest, Observed};
use bmac_core::{Inputs, Outputs, ProviderError};
use bmac_steps::config::{IdentityBindingConfig, INPUT_ROLE, OUTPUT_ARN};
use serde_json::Value;

use super::error::{created, found, Context as _};
use super::{tags, Clients, Handler};

/// The `identity_binding` handler.
pub struct PodIdentity;

fn resource(c: &IdentityBindingConfig) -> String {
    format!(
        "Pod Identity association of {}/{} in cluster {}",
        c.namespace, c.service_account, c.cluster
    )
}

/// The association for the config's service account, described, if there is one.
async fn find(
    aws: &Clients,
    c: &IdentityBindingConfig,
) -> Result<Option<PodIdentityAssociation>, ProviderError> {
    let what = resource(c);
    // No cluster (yet, or any more) has no associations.
    let Some(listed) = found(
        aws.eks
            .list_pod_identity_associations()
            .cluster_name(&c.cluster)
            .namespace(&c.namespace)
            .service_account(&c.service_account)
            .send()
            .await,
        "eks:ListPodIdentityAssociations",
        &what,
    )?
    else {
        return Ok(None);
    };
    let Some(id) = listed
        .associations()
        .iter()
        .find(|a| {
            a.namespace() == Some(c.namespace.as_str())
                && a.service_account() == Some(c.service_account.as_str())
        })
        .and_then(|a| a.association_id())
    else {
        return Ok(None);
    };
    let described = found(
        aws.eks
            .describe_pod_identity_association()
            .cluster_name(&c.cluster)
            .association_id(id)
            .send()
            .await,
        "eks:DescribePodIdentityAssociation",
        &what,
    )?;
    Ok(described.and_then(|d| d.association))
}

fn outputs(a: &PodIdentityAssociation) -> Outputs {
    Outputs::new()
        .with(OUTPUT_ARN, a.association_arn().unwrap_or_default())
        .with("id", a.association_id().unwrap_or_default())
        .with("role", a.role_arn().unwrap_or_default())
}

fn role(inputs: &Inputs) -> Result<&str, ProviderError> {
    super::cluster::input_str(inputs, INPUT_ROLE)
}

#[async_trait]
impl Handler<Clients> for PodIdentity {
    fn expected(&self) -> std::time::Duration {
        std::time::Duration::from_secs(5)
    }

    async fn apply(&self, aws: &Clients, req: &ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let c: IdentityBindingConfig = super::config(req.step)?;
        let what = resource(&c);
        let role = role(req.inputs)?;
        if find(aws, &c).await?.is_none() {
            let tags: HashMap<String, String> = tags::of(&aws.cluster, req.step.id.as_str(), None)
                .into_iter()
                .collect();
            let made = created(
                aws.eks
                    .create_pod_identity_association()
                    .cluster_name(&c.cluster)
                    .namespace(&c.namespace)
                    .service_account(&c.service_account)
                    .role_arn(role)
                    .set_tags(Some(tags))
                    .send()
                    .await,
                "eks:CreatePodIdentityAssociation",
                &what,
            )?;
            if let super::error::Created::Created(out) = made {
                if let Some(a) = out.association {
                    return Ok(outputs(&a));
                }
            }
        }
        let live = find(aws, &c).await?.ok_or_else(|| {
            ProviderError::retryable(format!("{what} exists but is not listed yet"))
        })?;
        if live.role_arn() == Some(role) {
            return Ok(outputs(&live));
        }
        let out = aws
            .eks
            .update_pod_identity_association()
            .cluster_name(&c.cluster)
            .association_id(live.association_id().unwrap_or_default())
            .role_arn(role)
            .send()
            .await
            .on("eks:UpdatePodIdentityAssociation", &what)?;
        Ok(outputs(out.association.as_ref().unwrap_or(&live)))
    }

    async fn observe(
        &self,
        aws: &Clients,
        req: &ObserveRequest<'_>,
    ) -> Result<Observed, ProviderError> {
        let c: IdentityBindingConfig = super::config(req.step)?;
        let Some(live) = find(aws, &c).await? else {
            return Ok(Observed::Absent);
        };
        let mut config = serde_json::to_value(&c).unwrap_or_default();
        if let Some(want) = req.inputs.str(INPUT_ROLE) {
            if live.role_arn() != Some(want) {
                config["service_account"] = Value::Null;
            }
        }
        Ok(Observed::Present {
            config,
            outputs: outputs(&live),
        })
    }

    async fn destroy(&self, aws: &Clients, req: &DestroyRequest<'_>) -> Result<(), ProviderError> {
        let c: IdentityBindingConfig = super::config(req.step)?;
        let Some(live) = find(aws, &c).await? else {
            return Ok(());
        };
        found(
            aws.eks
                .delete_pod_identity_association()
                .cluster_name(&c.cluster)
                .association_id(live.association_id().unwrap_or_default())
                .send()
                .await,
            "eks:DeletePodIdentityAssociation",
            &resource(&c),
        )?;
        Ok(())
    }
}
