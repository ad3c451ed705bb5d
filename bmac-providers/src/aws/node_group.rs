//! `node_pool` on AWS: an EKS managed node group and its launch template
//! ([`launch_template`](super::launch_template)).
//!
//! The launch template `bmac-<cluster>-<pool>` gives nodes an encrypted gp3 root volume of the
//! pool's size (EBS encryption with the account's default key) and requires IMDSv2 with a hop
//! limit of 2 (pods cannot reach the node's credentials through a single-hop proxy). The node
//! group takes the pool's instance types (the AMI type follows them: Graviton families get
//! the ARM image), scaling, labels and taints, the node role (input `role`) and the private
//! subnets (input `subnets`). Create checkpoints and waits through `CREATING` until `ACTIVE`;
//! `CREATE_FAILED` is permanent and names the health issues.
//!
//! Update in place: scaling, labels and taints in one `UpdateNodegroupConfig` (labels and taints
//! removed from the spec are removed from the group), waiting for the update (`DescribeUpdate`;
//! where a server lacks it — a 404 without an AWS error code — for the group to be `ACTIVE`).
//! Then the version: the pool carries the cluster's Kubernetes version, and when it (or the
//! mirrors in the launch template's user data, which get a new template version) differs from
//! the group's, one `UpdateNodegroupVersion` rolls the nodes — never a replacement of the group.
//! The pool runs after the cluster step, so the control plane is upgraded first, as EKS
//! requires. Instance types and the disk are replacements (see `bmac_steps::kinds`).
//!
//! The launch template's user data points containerd at the registry mirrors (see
//! [`user_data`](super::user_data) for the format and its caveat).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_eks::types::{
    AmiTypes, CapacityTypes, LaunchTemplateSpecification, Nodegroup, NodegroupScalingConfig,
    NodegroupStatus, Taint as EksTaint, TaintEffect, UpdateLabelsPayload, UpdateTaintsPayload,
};
use bmac_core::provider::{ApplyRequest, DestroyRequest, ObserveRequest, Observed, StepContext};
use bmac_core::{Outputs, ProviderError};
use bmac_steps::config::{NodePoolConfig, Scaling, Taint, INPUT_ROLE, INPUT_SUBNETS, OUTPUT_ARN};
use serde_json::json;

use super::cluster::{input_list, input_str, wait_for_update, UpdateOf};
use super::error::{created, found, Context as _, Created};
use super::launch_template::{ensure_template, template_name, template_version};
use super::{tags, Clients, Handler};
use crate::cloud::wait::{self, Poll};

/// The `node_pool` handler.
pub struct NodeGroup;

fn effect(spec: &str) -> TaintEffect {
    match spec {
        "NoExecute" => TaintEffect::NoExecute,
        "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
        _ => TaintEffect::NoSchedule,
    }
}

fn spec_effect(api: Option<&TaintEffect>) -> &'static str {
    match api {
        Some(TaintEffect::NoExecute) => "NoExecute",
        Some(TaintEffect::PreferNoSchedule) => "PreferNoSchedule",
        _ => "NoSchedule",
    }
}

fn eks_taint(t: &Taint) -> EksTaint {
    EksTaint::builder()
        .key(&t.key)
        .value(&t.value)
        .effect(effect(&t.effect))
        .build()
}

/// Whether an instance family runs on Graviton (ARM): its attribute letters after the
/// generation start with `g` (`m7g`, `c6gn`, `t4g`, `im4gn`), or it is `a1`.
pub fn graviton(family: &str) -> bool {
    let attrs = family.trim_start_matches(|c: char| c.is_ascii_lowercase());
    let attrs = attrs.trim_start_matches(|c: char| c.is_ascii_digit());
    family == "a1" || attrs.starts_with('g')
}

/// The AMI type for these instance types: ARM when every family is Graviton.
pub fn ami_type(instance_types: &[String]) -> AmiTypes {
    let arm = !instance_types.is_empty()
        && instance_types
            .iter()
            .all(|t| graviton(t.split('.').next().unwrap_or_default()));
    if arm {
        AmiTypes::Al2023Arm64Standard
    } else {
        AmiTypes::Al2023X8664Standard
    }
}

fn scaling(s: &Scaling) -> NodegroupScalingConfig {
    NodegroupScalingConfig::builder()
        .min_size(s.min as i32)
        .max_size(s.max as i32)
        .desired_size(s.desired as i32)
        .build()
}

async fn describe(aws: &Clients, pool: &str) -> Result<Option<Nodegroup>, ProviderError> {
    Ok(found(
        aws.eks
            .describe_nodegroup()
            .cluster_name(&aws.cluster)
            .nodegroup_name(pool)
            .send()
            .await,
        "eks:DescribeNodegroup",
        &format!("node group {pool}"),
    )?
    .and_then(|o| o.nodegroup))
}

async fn wait_active(
    aws: &Clients,
    ctx: &StepContext,
    pool: &str,
) -> Result<Nodegroup, ProviderError> {
    wait::until(ctx, &format!("node group {pool}"), || async {
        let g = describe(aws, pool).await?.ok_or_else(|| {
            ProviderError::retryable(format!("node group {pool} is not visible yet"))
        })?;
        match g.status() {
            Some(NodegroupStatus::Active) | Some(NodegroupStatus::Degraded) | None => {
                Ok(Poll::Done(g))
            }
            Some(NodegroupStatus::CreateFailed) => Err(ProviderError::permanent(format!(
                "node group {pool} CREATE_FAILED: {:?}",
                g.health().map(|h| h.issues()).unwrap_or_default()
            ))
            .with_code("CREATE_FAILED")),
            Some(other) => Ok(Poll::Waiting(other.as_str().to_owned())),
        }
    })
    .await
}

fn outputs(g: &Nodegroup) -> Outputs {
    Outputs::new()
        .with(OUTPUT_ARN, g.nodegroup_arn().unwrap_or_default())
        .with("name", g.nodegroup_name().unwrap_or_default())
}

/// The pool as it is, in the config's shape.
fn observed_config(c: &NodePoolConfig, g: &Nodegroup) -> serde_json::Value {
    let mut config = serde_json::to_value(c).unwrap_or_default();
    if let Some(s) = g.scaling_config() {
        config["scaling"] = json!({"min": s.min_size().unwrap_or(0), "max": s.max_size().unwrap_or(0), "desired": s.desired_size().unwrap_or(0)});
    }
    let labels: std::collections::BTreeMap<&String, &String> =
        g.labels().map(|l| l.iter().collect()).unwrap_or_default();
    config["labels"] = json!(labels);
    let taints: Vec<Taint> = g
        .taints()
        .iter()
        .map(|t| Taint {
            key: t.key().unwrap_or_default().to_owned(),
            value: t.value().unwrap_or_default().to_owned(),
            effect: spec_effect(t.effect()).to_owned(),
        })
        .collect();
    config["taints"] = json!(taints);
    if !g.instance_types().is_empty() {
        config["instance_types"] = json!(g.instance_types());
    }
    if let (Some(_), Some(v)) = (&c.version, g.version()) {
        config["version"] = json!(v);
    }
    if config["labels"].as_object().is_some_and(|m| m.is_empty()) && c.labels.is_empty() {
        config.as_object_mut().map(|m| m.remove("labels"));
    }
    if taints.is_empty() && c.taints.is_empty() {
        config.as_object_mut().map(|m| m.remove("taints"));
    }
    config
}

#[async_trait]
impl Handler<Clients> for NodeGroup {
    fn expected(&self) -> std::time::Duration {
        std::time::Duration::from_secs(240)
    }

    fn max(&self) -> std::time::Duration {
        std::time::Duration::from_secs(30 * 60)
    }

    async fn apply(&self, aws: &Clients, req: &ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let c: NodePoolConfig = super::config(req.step)?;
        let resource = format!("node group {} of cluster {}", c.name, aws.cluster);
        if let Some(live) = describe(aws, &c.name).await? {
            let live = match live.status() {
                Some(NodegroupStatus::Creating) | Some(NodegroupStatus::Updating) => {
                    wait_active(aws, req.ctx, &c.name).await?
                }
                Some(NodegroupStatus::Deleting) => {
                    return Err(ProviderError::retryable(format!(
                        "{resource} is being deleted; it is created again once it is gone"
                    )))
                }
                _ => live,
            };
            return self.update(aws, req.ctx, &c, &live).await;
        }
        let template = ensure_template(aws, req.step.id.as_str(), &c).await?;
        let labels: HashMap<String, String> = c.labels.clone().into_iter().collect();
        let tags: HashMap<String, String> = tags::of(&aws.cluster, req.step.id.as_str(), None)
            .into_iter()
            .collect();
        let create = aws
            .eks
            .create_nodegroup()
            .cluster_name(&aws.cluster)
            .nodegroup_name(&c.name)
            .scaling_config(scaling(&c.scaling))
            .set_subnets(Some(input_list(req.inputs, INPUT_SUBNETS)?))
            .node_role(input_str(req.inputs, INPUT_ROLE)?)
            .set_instance_types(Some(c.instance_types.clone()))
            .ami_type(ami_type(&c.instance_types))
            .set_version(c.version.clone())
            .capacity_type(CapacityTypes::OnDemand)
            .set_labels((!labels.is_empty()).then_some(labels))
            .set_taints((!c.taints.is_empty()).then(|| c.taints.iter().map(eks_taint).collect()))
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .id(&template)
                    .version("$Latest")
                    .build(),
            )
            .set_tags(Some(tags));
        if let Created::Created(_) = created(create.send().await, "eks:CreateNodegroup", &resource)?
        {
            req.ctx
                .checkpoint(json!({"nodegroup": c.name, "creating": true}))
                .await?;
        }
        let live = wait_active(aws, req.ctx, &c.name).await?;
        Ok(outputs(&live))
    }

    async fn observe(
        &self,
        aws: &Clients,
        req: &ObserveRequest<'_>,
    ) -> Result<Observed, ProviderError> {
        let c: NodePoolConfig = super::config(req.step)?;
        let Some(g) = describe(aws, &c.name).await? else {
            return Ok(Observed::Absent);
        };
        Ok(match g.status() {
            Some(NodegroupStatus::Creating)
            | Some(NodegroupStatus::Updating)
            | Some(NodegroupStatus::Deleting) => Observed::Pending {
                status: g
                    .status()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
            },
            _ => Observed::Present {
                config: observed_config(&c, &g),
                outputs: outputs(&g),
            },
        })
    }

    async fn destroy(&self, aws: &Clients, req: &DestroyRequest<'_>) -> Result<(), ProviderError> {
        let c: NodePoolConfig = super::config(req.step)?;
        let resource = format!("node group {} of cluster {}", c.name, aws.cluster);
        if describe(aws, &c.name).await?.is_some() {
            found(
                aws.eks
                    .delete_nodegroup()
                    .cluster_name(&aws.cluster)
                    .nodegroup_name(&c.name)
                    .send()
                    .await,
                "eks:DeleteNodegroup",
                &resource,
            )?;
            wait::until(req.ctx, &resource, || async {
                Ok(match describe(aws, &c.name).await? {
                    None => Poll::Done(()),
                    Some(g) => Poll::Waiting(
                        g.status()
                            .map_or("DELETING".into(), |s| s.as_str().to_owned()),
                    ),
                })
            })
            .await?;
        }
        let name = template_name(aws, &c.name);
        found(
            aws.ec2
                .delete_launch_template()
                .launch_template_name(&name)
                .send()
                .await,
            "ec2:DeleteLaunchTemplate",
            &name,
        )?;
        Ok(())
    }
}

impl NodeGroup {
    /// One `UpdateNodegroupConfig` with whatever of scaling, labels and taints differs.
    async fn update(
        &self,
        aws: &Clients,
        ctx: &StepContext,
        c: &NodePoolConfig,
        live: &Nodegroup,
    ) -> Result<Outputs, ProviderError> {
        let resource = format!("node group {} of cluster {}", c.name, aws.cluster);
        let now = observed_config(c, live);
        let mut call = aws
            .eks
            .update_nodegroup_config()
            .cluster_name(&aws.cluster)
            .nodegroup_name(&c.name);
        let mut changed = false;
        if now["scaling"] != json!(c.scaling) {
            call = call.scaling_config(scaling(&c.scaling));
            changed = true;
        }
        let live_labels: HashMap<String, String> = live.labels().cloned().unwrap_or_default();
        let add: HashMap<String, String> = c
            .labels
            .iter()
            .filter(|(k, v)| live_labels.get(*k) != Some(v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let remove: Vec<String> = live_labels
            .keys()
            .filter(|k| !c.labels.contains_key(*k))
            .cloned()
            .collect();
        if !add.is_empty() || !remove.is_empty() {
            call = call.labels(
                UpdateLabelsPayload::builder()
                    .set_add_or_update_labels((!add.is_empty()).then_some(add))
                    .set_remove_labels((!remove.is_empty()).then_some(remove))
                    .build(),
            );
            changed = true;
        }
        let live_taints: Vec<Taint> =
            serde_json::from_value(now.get("taints").cloned().unwrap_or(json!([])))
                .unwrap_or_default();
        let add: Vec<EksTaint> = c
            .taints
            .iter()
            .filter(|t| !live_taints.contains(t))
            .map(eks_taint)
            .collect();
        let remove: Vec<EksTaint> = live_taints
            .iter()
            .filter(|t| {
                !c.taints
                    .iter()
                    .any(|w| w.key == t.key && w.effect == t.effect)
            })
            .map(eks_taint)
            .collect();
        if !add.is_empty() || !remove.is_empty() {
            call = call.taints(
                UpdateTaintsPayload::builder()
                    .set_add_or_update_taints((!add.is_empty()).then_some(add))
                    .set_remove_taints((!remove.is_empty()).then_some(remove))
                    .build(),
            );
            changed = true;
        }
        if changed {
            let out = call
                .send()
                .await
                .on("eks:UpdateNodegroupConfig", &resource)?;
            wait_update(aws, ctx, &c.name, out.update()).await?;
            wait_active(aws, ctx, &c.name).await?;
        }
        self.update_version(aws, ctx, c, live).await?;
        let live = wait_active(aws, ctx, &c.name).await?;
        Ok(outputs(&live))
    }

    /// One `UpdateNodegroupVersion` when the Kubernetes version or the launch template's
    /// content (the mirrors in its user data) differs: EKS replaces the nodes in a rolling
    /// update, draining each; bmac waits for it.
    async fn update_version(
        &self,
        aws: &Clients,
        ctx: &StepContext,
        c: &NodePoolConfig,
        live: &Nodegroup,
    ) -> Result<(), ProviderError> {
        let resource = format!("node group {} of cluster {}", c.name, aws.cluster);
        let version = c
            .version
            .as_deref()
            .filter(|want| live.version() != Some(*want));
        let template = template_version(aws, c, live).await?;
        if version.is_none() && template.is_none() {
            return Ok(());
        }
        let mut call = aws
            .eks
            .update_nodegroup_version()
            .cluster_name(&aws.cluster)
            .nodegroup_name(&c.name)
            .set_version(version.map(str::to_owned));
        if let Some((id, number)) = template {
            call = call.launch_template(
                LaunchTemplateSpecification::builder()
                    .id(id)
                    .version(number)
                    .build(),
            );
        }
        let out = call
            .send()
            .await
            .on("eks:UpdateNodegroupVersion", &resource)?;
        ctx.progress(format!(
            "{resource}: rolling update to {}",
            version.map_or_else(
                || "a new launch template".to_owned(),
                |v| format!("Kubernetes {v}")
            )
        ));
        wait_update(aws, ctx, &c.name, out.update()).await
    }
}

/// Waits for one update of a node group (`DescribeUpdate`); where a server lacks it — a 404
/// without an AWS error code, as moto answers — the group's own status is waited on after.
async fn wait_update(
    aws: &Clients,
    ctx: &StepContext,
    pool: &str,
    update: Option<&aws_sdk_eks::types::Update>,
) -> Result<(), ProviderError> {
    let resource = format!("node group {pool} of cluster {}", aws.cluster);
    match update.and_then(|u| u.id()) {
        Some(id) => wait_for_update(aws, ctx, UpdateOf::Nodegroup(pool), &resource, id).await,
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graviton_families_get_the_arm_image() {
        for f in ["m7g", "c6gn", "t4g", "im4gn", "x2gd", "a1", "r8g"] {
            assert!(graviton(f), "{f}");
        }
        for f in ["m6i", "g4dn", "g5", "c5n", "t3a", "p4d", "inf2"] {
            assert!(!graviton(f), "{f}");
        }
        assert_eq!(
            ami_type(&["m7g.large".into()]),
            AmiTypes::Al2023Arm64Standard
        );
        assert_eq!(
            ami_type(&["m7g.large".into(), "m6i.large".into()]),
            AmiTypes::Al2023X8664Standard
        );
        assert_eq!(effect("NoExecute"), TaintEffect::NoExecute);
        assert_eq!(
            spec_effect(Some(&TaintEffect::PreferNoSchedule)),
            "PreferNoSchedule"
        );
    }
}
