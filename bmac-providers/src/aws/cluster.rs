//! `cluster` on AWS: the EKS control plane.
//!
//! Create: `CreateCluster` with the version, the cluster role (input `role`), the subnets
//! (input `subnets`), endpoint public/private access and `publicAccessCidrs`, envelope
//! encryption of Secrets with the KMS key (input `key`), and access config with authentication
//! mode `API` and the creator as cluster admin; then one access entry with
//! `AmazonEKSClusterAdminPolicy` per extra admin. A cluster that already exists
//! (`ResourceInUseException`) is adopted. The create checkpoints the cluster name and waits
//! through `CREATING`, reporting progress, until `ACTIVE`; `FAILED` is permanent.
//!
//! Update in place: endpoint access and CIDRs (`UpdateClusterConfig`) and the version
//! (`UpdateClusterVersion`, one minor at a time as EKS requires); each waits for its update.
//! Name, region and account are replacements (see `bmac_steps::kinds`).
//!
//! Outputs: `endpoint`, `ca_data`, `oidc_issuer`, `arn`, `name` and `credentials` — a
//! [`CredentialSource::Eks`] the kube provider mints tokens from (see [`token`](super::token)).
//! Observe reports `CREATING`, `UPDATING` and `DELETING` as pending.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_eks::types::{
    AccessScope, AccessScopeType, AuthenticationMode, ClusterStatus, CreateAccessConfigRequest,
    EncryptionConfig, UpdateStatus, VpcConfigRequest,
};
use bmac_core::provider::{ApplyRequest, DestroyRequest, ObserveRequest, Observed, StepContext};
use bmac_core::{Outputs, ProviderError};
use bmac_steps::config::{
    ClusterConfig, EndpointAccess, INPUT_KEY, INPUT_ROLE, INPUT_SUBNETS, OUTPUT_ARN,
    OUTPUT_CA_DATA, OUTPUT_CREDENTIALS, OUTPUT_ENDPOINT, OUTPUT_OIDC_ISSUER,
};
use bmac_steps::spec::partition;
use bmac_steps::CredentialSource;
use serde_json::json;

use super::error::{created, found, Code, Context as _, Created};
use super::{tags, Clients, Handler};
use crate::cloud::wait::{self, Poll};

/// The `cluster` handler.
pub struct Cluster;

pub(crate) use crate::cloud::{input_list, input_str};

fn vpc_config(e: &EndpointAccess, subnets: Option<Vec<String>>) -> VpcConfigRequest {
    VpcConfigRequest::builder()
        .set_subnet_ids(subnets)
        .endpoint_public_access(e.public)
        .endpoint_private_access(e.private)
        .set_public_access_cidrs(e.public.then(|| {
            if e.public_cidrs.is_empty() {
                vec!["0.0.0.0/0".to_owned()]
            } else {
                e.public_cidrs.clone()
            }
        }))
        .build()
}

async fn describe(
    aws: &Clients,
    name: &str,
) -> Result<Option<aws_sdk_eks::types::Cluster>, ProviderError> {
    Ok(found(
        aws.eks.describe_cluster().name(name).send().await,
        "eks:DescribeCluster",
        &format!("cluster {name}"),
    )?
    .and_then(|o| o.cluster))
}

fn outputs(aws: &Clients, c: &aws_sdk_eks::types::Cluster) -> Outputs {
    let name = c.name().unwrap_or_default();
    Outputs::new()
        .with(OUTPUT_ENDPOINT, c.endpoint().unwrap_or_default())
        .with(
            OUTPUT_CA_DATA,
            c.certificate_authority()
                .and_then(|a| a.data())
                .unwrap_or_default(),
        )
        .with(
            OUTPUT_OIDC_ISSUER,
            c.identity()
                .and_then(|i| i.oidc())
                .and_then(|o| o.issuer())
                .unwrap_or_default(),
        )
        .with(OUTPUT_ARN, c.arn().unwrap_or_default())
        .with("name", name)
        .with(
            OUTPUT_CREDENTIALS,
            CredentialSource::Eks {
                cluster: name.to_owned(),
                region: aws.region.clone(),
            }
            .to_value(),
        )
}

/// Waits until the cluster is `ACTIVE`.
pub(crate) async fn wait_active(
    aws: &Clients,
    ctx: &StepContext,
    name: &str,
) -> Result<aws_sdk_eks::types::Cluster, ProviderError> {
    wait::until(ctx, &format!("cluster {name}"), || async {
        let c = describe(aws, name).await?.ok_or_else(|| {
            ProviderError::retryable(format!("cluster {name} is not visible yet"))
        })?;
        match c.status() {
            Some(ClusterStatus::Active) | None => Ok(Poll::Done(c)),
            Some(ClusterStatus::Failed) => Err(ProviderError::permanent(format!(
                "cluster {name} FAILED; see its health issues in the EKS console"
            ))
            .with_code("FAILED")),
            Some(other) => Ok(Poll::Waiting(other.as_str().to_owned())),
        }
    })
    .await
}

/// What an EKS update (`DescribeUpdate`) is of.
#[derive(Clone, Copy)]
pub(crate) enum UpdateOf<'a> {
    /// The control plane.
    Cluster,
    /// A managed node group.
    Nodegroup(&'a str),
    /// An add-on.
    Addon(&'a str),
}

/// Waits until EKS update `id` of `of` has succeeded; `Failed` and `Cancelled` are permanent,
/// with EKS's error list. A server without `DescribeUpdate` (a 404 with no AWS error code, as
/// moto answers for node groups) ends the wait at once, leaving the resource's own status to
/// wait on.
pub(crate) async fn wait_for_update(
    aws: &Clients,
    ctx: &StepContext,
    of: UpdateOf<'_>,
    resource: &str,
    id: &str,
) -> Result<(), ProviderError> {
    wait::until(ctx, &format!("update {id} of {resource}"), || async {
        let mut call = aws.eks.describe_update().name(&aws.cluster).update_id(id);
        call = match of {
            UpdateOf::Cluster => call,
            UpdateOf::Nodegroup(n) => call.nodegroup_name(n),
            UpdateOf::Addon(a) => call.addon_name(a),
        };
        let out = match call.send().await {
            Ok(out) => out,
            Err(e)
                if {
                    let code = Code::of(&e);
                    code.code.is_none() && code.status == Some(404)
                } =>
            {
                return Ok(Poll::Done(()))
            }
            Err(e) => return Err(super::error::classify("eks:DescribeUpdate", resource, e)),
        };
        match out.update().and_then(|u| u.status()) {
            Some(UpdateStatus::Successful) | None => Ok(Poll::Done(())),
            Some(UpdateStatus::Failed) | Some(UpdateStatus::Cancelled) => {
                Err(ProviderError::permanent(format!(
                    "update {id} of {resource} did not succeed: {:?}",
                    out.update().map(|u| u.errors()).unwrap_or_default()
                )))
            }
            Some(other) => Ok(Poll::Waiting(other.as_str().to_owned())),
        }
    })
    .await
}

/// Waits for one cluster update; an update AWS does not report (no id) waits for `ACTIVE`.
pub(crate) async fn wait_update(
    aws: &Clients,
    ctx: &StepContext,
    name: &str,
    update: Option<&aws_sdk_eks::types::Update>,
) -> Result<(), ProviderError> {
    if let Some(id) = update.and_then(|u| u.id()) {
        wait_for_update(aws, ctx, UpdateOf::Cluster, &format!("cluster {name}"), id).await?;
    }
    wait_active(aws, ctx, name).await.map(|_| ())
}

async fn add_admins(aws: &Clients, name: &str, admins: &[String]) -> Result<(), ProviderError> {
    let part = partition(&aws.region);
    for admin in admins {
        let resource = format!("access entry {admin} of cluster {name}");
        created(
            aws.eks
                .create_access_entry()
                .cluster_name(name)
                .principal_arn(admin)
                .send()
                .await,
            "eks:CreateAccessEntry",
            &resource,
        )?;
        aws.eks
            .associate_access_policy()
            .cluster_name(name)
            .principal_arn(admin)
            .policy_arn(format!(
                "arn:{part}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
            ))
            .access_scope(
                AccessScope::builder()
                    .r#type(AccessScopeType::Cluster)
                    .build(),
            )
            .send()
            .await
            .on("eks:AssociateAccessPolicy", &resource)?;
    }
    Ok(())
}

fn observed_config(c: &ClusterConfig, live: &aws_sdk_eks::types::Cluster) -> serde_json::Value {
    let mut config = serde_json::to_value(c).unwrap_or_default();
    if let Some(v) = live.version() {
        config["version"] = json!(v);
    }
    if let Some(vpc) = live.resources_vpc_config() {
        let public = vpc.endpoint_public_access();
        let mut cidrs: Vec<String> = vpc.public_access_cidrs().to_vec();
        if cidrs == ["0.0.0.0/0"] && c.endpoint.public_cidrs.is_empty() {
            cidrs.clear();
        }
        config["endpoint"] = json!({"public": public, "public_cidrs": if public { cidrs } else { Vec::new() }, "private": vpc.endpoint_private_access()});
    }
    config
}

#[async_trait]
impl Handler<Clients> for Cluster {
    fn expected(&self) -> std::time::Duration {
        std::time::Duration::from_secs(600)
    }

    fn max(&self) -> std::time::Duration {
        std::time::Duration::from_secs(40 * 60)
    }

    fn cluster_update(&self) -> bool {
        true
    }

    async fn apply(&self, aws: &Clients, req: &ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let c: ClusterConfig = super::config(req.step)?;
        let resource = format!("cluster {}", c.name);
        let existing = describe(aws, &c.name).await?;
        let live = match existing {
            Some(live) => {
                if matches!(live.status(), Some(ClusterStatus::Deleting)) {
                    return Err(ProviderError::retryable(format!(
                        "{resource} is being deleted; it is created again once it is gone"
                    )));
                }
                let live = wait_active(aws, req.ctx, &c.name).await?;
                self.update(aws, req.ctx, &c, &live).await?
            }
            None => {
                let tags: HashMap<String, String> =
                    tags::of(&aws.cluster, req.step.id.as_str(), None)
                        .into_iter()
                        .collect();
                let mut create = aws
                    .eks
                    .create_cluster()
                    .name(&c.name)
                    .role_arn(input_str(req.inputs, INPUT_ROLE)?)
                    .resources_vpc_config(vpc_config(
                        &c.endpoint,
                        Some(input_list(req.inputs, INPUT_SUBNETS)?),
                    ))
                    .access_config(
                        CreateAccessConfigRequest::builder()
                            .authentication_mode(AuthenticationMode::Api)
                            .bootstrap_cluster_creator_admin_permissions(true)
                            .build(),
                    )
                    .set_tags(Some(tags));
                if let Some(v) = &c.version {
                    create = create.version(v);
                }
                if let Ok(key) = input_str(req.inputs, INPUT_KEY) {
                    create = create.encryption_config(
                        EncryptionConfig::builder()
                            .provider(aws_sdk_eks::types::Provider::builder().key_arn(key).build())
                            .build(),
                    );
                }
                match created(create.send().await, "eks:CreateCluster", &resource)? {
                    Created::Created(_) => {
                        req.ctx
                            .checkpoint(json!({"cluster": c.name, "creating": true}))
                            .await?
                    }
                    Created::Exists => {}
                }
                wait_active(aws, req.ctx, &c.name).await?
            }
        };
        add_admins(aws, &c.name, &c.admins).await?;
        Ok(outputs(aws, &live))
    }

    async fn observe(
        &self,
        aws: &Clients,
        req: &ObserveRequest<'_>,
    ) -> Result<Observed, ProviderError> {
        let c: ClusterConfig = super::config(req.step)?;
        let Some(live) = describe(aws, &c.name).await? else {
            return Ok(Observed::Absent);
        };
        Ok(match live.status() {
            Some(ClusterStatus::Active) | None => Observed::Present {
                config: observed_config(&c, &live),
                outputs: outputs(aws, &live),
            },
            Some(ClusterStatus::Failed) => Observed::Present {
                config: json!({"status": "FAILED"}),
                outputs: outputs(aws, &live),
            },
            Some(other) => Observed::Pending {
                status: other.as_str().to_owned(),
            },
        })
    }

    async fn destroy(&self, aws: &Clients, req: &DestroyRequest<'_>) -> Result<(), ProviderError> {
        let c: ClusterConfig = super::config(req.step)?;
        let resource = format!("cluster {}", c.name);
        if describe(aws, &c.name).await?.is_none() {
            return Ok(());
        }
        let deleting = found(
            aws.eks.delete_cluster().name(&c.name).send().await,
            "eks:DeleteCluster",
            &resource,
        )?;
        if deleting.is_none() {
            return Ok(());
        }
        wait::until(req.ctx, &resource, || async {
            Ok(match describe(aws, &c.name).await? {
                None => Poll::Done(()),
                Some(live) => Poll::Waiting(
                    live.status()
                        .map_or("DELETING".into(), |s| s.as_str().to_owned()),
                ),
            })
        })
        .await
    }
}

impl Cluster {
    /// Brings a live cluster to the config: endpoint access, then the version.
    async fn update(
        &self,
        aws: &Clients,
        ctx: &StepContext,
        c: &ClusterConfig,
        live: &aws_sdk_eks::types::Cluster,
    ) -> Result<aws_sdk_eks::types::Cluster, ProviderError> {
        let resource = format!("cluster {}", c.name);
        let now: EndpointAccess =
            serde_json::from_value(observed_config(c, live)["endpoint"].clone())
                .unwrap_or_default();
        if now != c.endpoint {
            let out = aws
                .eks
                .update_cluster_config()
                .name(&c.name)
                .resources_vpc_config(vpc_config(&c.endpoint, None))
                .send()
                .await
                .on("eks:UpdateClusterConfig", &resource)?;
            wait_update(aws, ctx, &c.name, out.update()).await?;
        }
        if let (Some(want), Some(have)) = (&c.version, live.version()) {
            if want != have {
                let out = aws
                    .eks
                    .update_cluster_version()
                    .name(&c.name)
                    .version(want)
                    .send()
                    .await
                    .on("eks:UpdateClusterVersion", &resource)?;
                wait_update(aws, ctx, &c.name, out.update()).await?;
            }
        }
        wait_active(aws, ctx, &c.name).await
    }
}
