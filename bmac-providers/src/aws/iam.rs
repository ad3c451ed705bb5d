//! `iam_role` on AWS: the EKS cluster role, node roles, and workload-identity roles.
//!
//! What each purpose means here:
//! - `cluster` — trusted by `eks.amazonaws.com`, with `AmazonEKSClusterPolicy`;
//! - `nodes` — trusted by `ec2.amazonaws.com`, with `AmazonEKSWorkerNodePolicy`,
//!   `AmazonEKS_CNI_Policy` and `AmazonEC2ContainerRegistryReadOnly` (the three policies EKS
//!   documents for a managed node group's role);
//! - none (a workload identity) — trusted by `pods.eks.amazonaws.com` (EKS Pod Identity), with
//!   the spec's `permissions` as an inline policy `bmac`.
//!
//! A role is found by name (IAM names are unique in an account), so a create that crashed is
//! adopted. An update rewrites the trust policy and the inline policy and attaches what is
//! missing; it never detaches a policy someone else attached. `existing` roles are only read:
//! bmac neither changes nor deletes them.

use async_trait::async_trait;
use aws_sdk_iam::types::Tag;
use bmac_core::provider::{ApplyRequest, DestroyRequest, ObserveRequest, Observed};
use bmac_core::{Outputs, ProviderError};
use bmac_steps::config::{IamRoleConfig, OUTPUT_ARN, ROLE_FOR_CLUSTER, ROLE_FOR_NODES};
use bmac_steps::spec::partition;
use serde_json::json;

use super::error::{created, found, Context as _, Created};
use super::{tags, Clients, Handler};

/// The name of the inline policy holding a workload role's `permissions`.
pub const INLINE_POLICY: &str = "bmac";

/// The `iam_role` handler.
pub struct Role;

/// What a role must look like.
pub(crate) struct Desired {
    /// Its name.
    pub name: String,
    /// Its trust policy.
    pub trust: serde_json::Value,
    /// Managed policies (ARNs) attached to it.
    pub managed: Vec<String>,
    /// The inline policy `bmac`, if any.
    pub inline: Option<serde_json::Value>,
}

fn desired(aws: &Clients, c: &IamRoleConfig) -> Desired {
    let part = partition(&aws.region);
    let managed = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("arn:{part}:iam::aws:policy/{n}"))
            .collect::<Vec<_>>()
    };
    match c.purpose.as_deref() {
        Some(ROLE_FOR_CLUSTER) => Desired {
            name: c.name.clone(),
            trust: trust(
                "eks.amazonaws.com",
                &["sts:AssumeRole", "sts:TagSession"],
                None,
            ),
            managed: managed(&["AmazonEKSClusterPolicy"]),
            inline: None,
        },
        Some(ROLE_FOR_NODES) => Desired {
            name: c.name.clone(),
            trust: trust("ec2.amazonaws.com", &["sts:AssumeRole"], None),
            managed: managed(&[
                "AmazonEKSWorkerNodePolicy",
                "AmazonEKS_CNI_Policy",
                "AmazonEC2ContainerRegistryReadOnly",
            ]),
            inline: None,
        },
        _ => Desired {
            name: c.name.clone(),
            trust: trust(
                "pods.eks.amazonaws.com",
                &["sts:AssumeRole", "sts:TagSession"],
                None,
            ),
            managed: Vec::new(),
            inline: (!c.permissions.is_empty()).then(|| {
                json!({
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": c.permissions, "Resource": "*"}]
                })
            }),
        },
    }
}

/// The role name of an existing role's ARN (`arn:aws:iam::1:role/path/name` → `name`).
fn name_of_arn(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

fn outputs(arn: &str, name: &str) -> Outputs {
    Outputs::new().with(OUTPUT_ARN, arn).with("name", name)
}

async fn get(aws: &Clients, name: &str) -> Result<Option<aws_sdk_iam::types::Role>, ProviderError> {
    let got = found(
        aws.iam.get_role().role_name(name).send().await,
        "iam:GetRole",
        &format!("role {name}"),
    )?;
    Ok(got.and_then(|o| o.role))
}

async fn attached(aws: &Clients, name: &str) -> Result<Vec<String>, ProviderError> {
    let out = aws
        .iam
        .list_attached_role_policies()
        .role_name(name)
        .send()
        .await
        .on("iam:ListAttachedRolePolicies", &format!("role {name}"))?;
    Ok(out
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn().map(str::to_owned))
        .collect())
}

#[async_trait]
impl Handler for Role {
    async fn apply(&self, aws: &Clients, req: &ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let c: IamRoleConfig = super::config(req.step)?;
        if let Some(arn) = &c.existing {
            let name = name_of_arn(arn);
            let role = get(aws, name).await?.ok_or_else(|| {
                ProviderError::permanent(format!("the role {arn} the spec names does not exist"))
                    .with_code("NoSuchEntity")
            })?;
            return Ok(outputs(role.arn(), role.role_name()));
        }
        let d = desired(aws, &c);
        let description = format!("bmac: {} ({})", req.step.id, aws.cluster);
        let arn = ensure_role(aws, req.step.id.as_str(), &description, &d).await?;
        Ok(outputs(&arn, &d.name))
    }

    async fn observe(
        &self,
        aws: &Clients,
        req: &ObserveRequest<'_>,
    ) -> Result<Observed, ProviderError> {
        let c: IamRoleConfig = super::config(req.step)?;
        let name = match &c.existing {
            Some(arn) => name_of_arn(arn).to_owned(),
            None => c.name.clone(),
        };
        let Some(role) = get(aws, &name).await? else {
            return Ok(Observed::Absent);
        };
        let mut config = serde_json::to_value(&c).unwrap_or_default();
        if c.existing.is_none() {
            // A managed policy detached by hand is drift: shown as the purpose it no longer serves.
            let d = desired(aws, &c);
            let have = attached(aws, &name).await?;
            if d.managed.iter().any(|p| !have.contains(p)) {
                config["purpose"] = serde_json::Value::Null;
            }
        }
        Ok(Observed::Present {
            config,
            outputs: outputs(role.arn(), role.role_name()),
        })
    }

    async fn destroy(&self, aws: &Clients, req: &DestroyRequest<'_>) -> Result<(), ProviderError> {
        let c: IamRoleConfig = super::config(req.step)?;
        if c.existing.is_some() {
            return Ok(());
        }
        remove_role(aws, &c.name).await
    }
}

/// Creates the role `d` describes, or brings the one of that name to it (trust policy, inline
/// policy `bmac`, the managed policies it lacks); returns its ARN.
pub(crate) async fn ensure_role(
    aws: &Clients,
    step: &str,
    description: &str,
    d: &Desired,
) -> Result<String, ProviderError> {
    let resource = format!("role {}", d.name);
    let trust = d.trust.to_string();
    let tag_list = tags::of(&aws.cluster, step, None)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ProviderError::permanent(format!("tag: {e}")))?;
    let made = created(
        aws.iam
            .create_role()
            .role_name(&d.name)
            .assume_role_policy_document(&trust)
            .description(description)
            .set_tags(Some(tag_list))
            .send()
            .await,
        "iam:CreateRole",
        &resource,
    )?;
    let arn = match made {
        Created::Created(out) => out.role.map(|r| r.arn).unwrap_or_default(),
        Created::Exists => {
            aws.iam
                .update_assume_role_policy()
                .role_name(&d.name)
                .policy_document(&trust)
                .send()
                .await
                .on("iam:UpdateAssumeRolePolicy", &resource)?;
            get(aws, &d.name).await?.map(|r| r.arn).unwrap_or_default()
        }
    };
    let have = attached(aws, &d.name).await?;
    for policy in d.managed.iter().filter(|p| !have.contains(p)) {
        aws.iam
            .attach_role_policy()
            .role_name(&d.name)
            .policy_arn(policy)
            .send()
            .await
            .on("iam:AttachRolePolicy", &resource)?;
    }
    match &d.inline {
        Some(doc) => {
            aws.iam
                .put_role_policy()
                .role_name(&d.name)
                .policy_name(INLINE_POLICY)
                .policy_document(doc.to_string())
                .send()
                .await
                .on("iam:PutRolePolicy", &resource)?;
        }
        None => {
            found(
                aws.iam
                    .delete_role_policy()
                    .role_name(&d.name)
                    .policy_name(INLINE_POLICY)
                    .send()
                    .await,
                "iam:DeleteRolePolicy",
                &resource,
            )?;
        }
    }
    Ok(arn)
}

/// Deletes role `name` with its policies (detached, inline deleted); gone already is success.
pub(crate) async fn remove_role(aws: &Clients, name: &str) -> Result<(), ProviderError> {
    let resource = format!("role {name}");
    if get(aws, name).await?.is_none() {
        return Ok(());
    }
    for policy in attached(aws, name).await? {
        aws.iam
            .detach_role_policy()
            .role_name(name)
            .policy_arn(policy)
            .send()
            .await
            .on("iam:DetachRolePolicy", &resource)?;
    }
    let inline = aws
        .iam
        .list_role_policies()
        .role_name(name)
        .send()
        .await
        .on("iam:ListRolePolicies", &resource)?;
    for policy in inline.policy_names() {
        aws.iam
            .delete_role_policy()
            .role_name(name)
            .policy_name(policy)
            .send()
            .await
            .on("iam:DeleteRolePolicy", &resource)?;
    }
    found(
        aws.iam.delete_role().role_name(name).send().await,
        "iam:DeleteRole",
        &resource,
    )?;
    Ok(())
}

/// A trust policy letting `service` assume a role with `actions` (and `condition`, if any).
pub(crate) fn trust(
    service: &str,
    actions: &[&str],
    condition: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut statement = json!({
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": actions,
    });
    if let Some(c) = condition {
        statement["Condition"] = c;
    }
    json!({"Version": "2012-10-17", "Statement": [statement]})
}
