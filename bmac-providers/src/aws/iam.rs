//! `iam_role` on AWS: the EKS cluster role, node roles, and workload-identity roles.
//!
//! What each purpose means here:
//! - `cluster` — trusted by `eks.amazonaws.com`, with `AmazonEKSClusterPolicy`;
//! - `nodes` — trusted by `ec2.amazonaws.com`, with `AmazonEKSWorkerNodePolicy`,
//!   `AmazonEKS_CNI_Policy` and `AmazonEC2ContainerRegistryReadOnly` (the three policies EKS
//!   documents for a managed node group's role);
//! - none (a workload identity or an add-on bound by EKS Pod Identity) — trusted by
//!   `pods.eks.amazonaws.com` (with `sts:TagSession`, which Pod Identity needs);
//! - `irsa` (IAM roles for service accounts) — trusted through the cluster's IAM OIDC provider
//!   (input `oidc_provider`) for `sts:AssumeRoleWithWebIdentity`, only by the one service
//!   account (`<issuer>:sub` = `system:serviceaccount:<ns>:<sa>`) and only for audience
//!   `sts.amazonaws.com` (`<issuer>:aud`), as `eksctl create iamserviceaccount` writes it.
//!
//! Workload and add-on roles get the AWS-managed policies the config names (`managed`) and
//! the spec's `permissions` as an inline policy `bmac`, on the config's `resources` (every
//! resource when none).
//!
//! `oidc_provider` (also here, [`OidcProvider`]): the IAM OIDC provider for the cluster's
//! issuer (input `oidc_issuer`), with the audiences of the config. IAM names it by the issuer
//! URL (`arn:…:oidc-provider/<issuer without https://>`), so one that exists is adopted; no
//! thumbprint is given — IAM fetches and checks the issuer's certificate itself for EKS
//! issuers. Its audiences are updated in place; destroy deletes it.
//!
//! A role is found by name (IAM names are unique in an account), so a create that crashed is
//! adopted. An update rewrites the trust policy and the inline policy and attaches what is
//! missing; it never detaches a policy someone else attached. `existing` roles are only read:
//! bmac neither changes nor deletes them.

use async_trait::async_trait;
use aws_sdk_iam::types::Tag;
use bmac_core::provider::{ApplyRequest, DestroyRequest, ObserveRequest, Observed};
use bmac_core::Inputs;
use bmac_core::{Outputs, ProviderError};
use bmac_steps::config::{
    IamRoleConfig, OidcProviderConfig, INPUT_OIDC_ISSUER, INPUT_OIDC_PROVIDER, OUTPUT_ARN,
    ROLE_FOR_CLUSTER, ROLE_FOR_IRSA, ROLE_FOR_NODES,
};
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

fn desired(aws: &Clients, c: &IamRoleConfig, inputs: &Inputs) -> Result<Desired, ProviderError> {
    let part = partition(&aws.region);
    let managed = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("arn:{part}:iam::aws:policy/{n}"))
            .collect::<Vec<_>>()
    };
    let workload_managed: Vec<&str> = c.managed.iter().map(String::as_str).collect();
    let inline = (!c.permissions.is_empty()).then(|| {
        let resources: Vec<&str> = if c.resources.is_empty() {
            vec!["*"]
        } else {
            c.resources.iter().map(String::as_str).collect()
        };
        json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": c.permissions, "Resource": resources}]
        })
    });
    Ok(match c.purpose.as_deref() {
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
        Some(ROLE_FOR_IRSA) => Desired {
            name: c.name.clone(),
            trust: irsa_trust(
                super::cluster::input_str(inputs, INPUT_OIDC_PROVIDER)?,
                super::cluster::input_str(inputs, INPUT_OIDC_ISSUER)?,
                &c.namespace,
                &c.service_account,
            ),
            managed: managed(&workload_managed),
            inline,
        },
        _ => Desired {
            name: c.name.clone(),
            trust: trust(
                "pods.eks.amazonaws.com",
                &["sts:AssumeRole", "sts:TagSession"],
                None,
            ),
            managed: managed(&workload_managed),
            inline,
        },
    })
}

/// The trust policy of an IRSA role: the OIDC provider `provider` (ARN) of `issuer` may let
/// exactly `system:serviceaccount:<namespace>:<account>` assume it, for STS.
pub(crate) fn irsa_trust(
    provider: &str,
    issuer: &str,
    namespace: &str,
    account: &str,
) -> serde_json::Value {
    let host = issuer.trim_start_matches("https://");
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": provider},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                format!("{host}:sub"): format!("system:serviceaccount:{namespace}:{account}"),
                format!("{host}:aud"): "sts.amazonaws.com",
            }},
        }]
    })
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
impl Handler<Clients> for Role {
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
        let d = desired(aws, &c, req.inputs)?;
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
        // (Inputs an observe cannot resolve yet leave nothing to compare.)
        if let (None, Ok(d)) = (&c.existing, desired(aws, &c, req.inputs)) {
            // A managed policy detached by hand is drift: shown as the purpose (or the managed
            // policy) it no longer serves.
            let have = attached(aws, &name).await?;
            if d.managed.iter().any(|p| !have.contains(p)) {
                if c.managed.is_empty() {
                    config["purpose"] = serde_json::Value::Null;
                } else {
                    config["managed"] = serde_json::json!(have);
                }
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

/// bmac's tags for what `step` creates in IAM.
fn iam_tags(aws: &Clients, step: &str) -> Result<Vec<Tag>, ProviderError> {
    tags::of(&aws.cluster, step, None)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ProviderError::permanent(format!("tag: {e}")))
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
    let tag_list = iam_tags(aws, step)?;
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

/// The `oidc_provider` handler (see the module docs).
pub struct OidcProvider;

/// The ARN of the IAM OIDC provider for `issuer`, if there is one.
async fn find_oidc(aws: &Clients, issuer: &str) -> Result<Option<String>, ProviderError> {
    let suffix = format!("oidc-provider/{}", issuer.trim_start_matches("https://"));
    let out = aws
        .iam
        .list_open_id_connect_providers()
        .send()
        .await
        .on("iam:ListOpenIDConnectProviders", &suffix)?;
    Ok(out
        .open_id_connect_provider_list()
        .iter()
        .filter_map(|p| p.arn())
        .find(|arn| arn.ends_with(&suffix))
        .map(str::to_owned))
}

/// The audiences (client ids) of the OIDC provider `arn`.
async fn audiences(aws: &Clients, arn: &str) -> Result<Option<Vec<String>>, ProviderError> {
    let got = found(
        aws.iam
            .get_open_id_connect_provider()
            .open_id_connect_provider_arn(arn)
            .send()
            .await,
        "iam:GetOpenIDConnectProvider",
        arn,
    )?;
    Ok(got.map(|o| o.client_id_list().to_vec()))
}

#[async_trait]
impl Handler<Clients> for OidcProvider {
    async fn apply(&self, aws: &Clients, req: &ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let c: OidcProviderConfig = super::config(req.step)?;
        let issuer = super::cluster::input_str(req.inputs, INPUT_OIDC_ISSUER)?;
        if !issuer.starts_with("https://") {
            return Err(ProviderError::permanent(format!(
                "cluster {} has no HTTPS OIDC issuer (`{issuer}`); IRSA needs one",
                c.cluster
            )));
        }
        let resource = format!("OIDC provider for {issuer}");
        let tag_list = iam_tags(aws, req.step.id.as_str())?;
        let made = created(
            aws.iam
                .create_open_id_connect_provider()
                .url(issuer)
                .set_client_id_list(Some(c.audiences.clone()))
                .set_tags(Some(tag_list))
                .send()
                .await,
            "iam:CreateOpenIDConnectProvider",
            &resource,
        )?;
        let arn = match made {
            Created::Created(out) => out.open_id_connect_provider_arn.unwrap_or_default(),
            Created::Exists => find_oidc(aws, issuer).await?.ok_or_else(|| {
                ProviderError::retryable(format!("{resource} exists but is not listed yet"))
            })?,
        };
        let have = audiences(aws, &arn).await?.unwrap_or_default();
        for add in c.audiences.iter().filter(|a| !have.contains(a)) {
            aws.iam
                .add_client_id_to_open_id_connect_provider()
                .open_id_connect_provider_arn(&arn)
                .client_id(add)
                .send()
                .await
                .on("iam:AddClientIDToOpenIDConnectProvider", &resource)?;
        }
        for extra in have.iter().filter(|a| !c.audiences.contains(a)) {
            aws.iam
                .remove_client_id_from_open_id_connect_provider()
                .open_id_connect_provider_arn(&arn)
                .client_id(extra)
                .send()
                .await
                .on("iam:RemoveClientIDFromOpenIDConnectProvider", &resource)?;
        }
        Ok(Outputs::new().with(OUTPUT_ARN, arn))
    }

    async fn observe(
        &self,
        aws: &Clients,
        req: &ObserveRequest<'_>,
    ) -> Result<Observed, ProviderError> {
        let c: OidcProviderConfig = super::config(req.step)?;
        let Some(issuer) = req.inputs.str(INPUT_OIDC_ISSUER) else {
            return Ok(Observed::Absent);
        };
        let Some(arn) = find_oidc(aws, issuer).await? else {
            return Ok(Observed::Absent);
        };
        let Some(mut have) = audiences(aws, &arn).await? else {
            return Ok(Observed::Absent);
        };
        have.sort();
        let mut want = c.audiences.clone();
        want.sort();
        let mut config = serde_json::to_value(&c).unwrap_or_default();
        if have != want {
            config["audiences"] = json!(have);
        }
        Ok(Observed::Present {
            config,
            outputs: Outputs::new().with(OUTPUT_ARN, arn),
        })
    }

    async fn destroy(&self, aws: &Clients, req: &DestroyRequest<'_>) -> Result<(), ProviderError> {
        let arn = match req.prior.outputs().str(OUTPUT_ARN) {
            Some(arn) => arn.to_owned(),
            None => match req.inputs.str(INPUT_OIDC_ISSUER) {
                Some(issuer) => match find_oidc(aws, issuer).await? {
                    Some(arn) => arn,
                    None => return Ok(()),
                },
                None => return Ok(()),
            },
        };
        found(
            aws.iam
                .delete_open_id_connect_provider()
                .open_id_connect_provider_arn(&arn)
                .send()
                .await,
            "iam:DeleteOpenIDConnectProvider",
            &arn,
        )?;
        Ok(())
    }
}
