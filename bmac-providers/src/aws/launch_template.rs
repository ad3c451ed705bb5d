//! The launch template of a node group: `bmac-<cluster>-<pool>`, with an encrypted root
//! volume of the pool's size and type, IMDSv2 required with a hop limit of 2, and the user data
//! that points containerd at the registry mirrors ([`user_data`](super::user_data)).
//!
//! It is found by name before it is created (a create left in doubt is adopted). What a
//! launch template holds cannot change in place: a different user data is a new template
//! version ([`template_version`]), which the node group then rolls its nodes onto.

use aws_sdk_ec2::types::{
    LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    LaunchTemplateHttpTokensState, LaunchTemplateInstanceMetadataOptionsRequest,
    RequestLaunchTemplateData, ResourceType, Tag as Ec2Tag, TagSpecification, VolumeType,
};
use aws_sdk_eks::types::Nodegroup;
use bmac_core::ProviderError;
use bmac_steps::config::NodePoolConfig;

use super::error::{found, Context as _};
use super::{tags, Clients};

/// The launch template's name: `bmac-<cluster>-<pool>`.
pub(crate) fn template_name(aws: &Clients, pool: &str) -> String {
    format!("bmac-{}-{pool}", aws.cluster)
}

/// What the pool's launch template holds: the root volume, IMDSv2, and the user data that
/// points containerd at the registry mirrors (see [`user_data`](super::user_data)).
fn template_data(c: &NodePoolConfig) -> RequestLaunchTemplateData {
    let disk = LaunchTemplateEbsBlockDeviceRequest::builder()
        .volume_size(c.disk.size_gb as i32)
        .volume_type(VolumeType::from(c.disk.kind.as_str()))
        .encrypted(c.disk.encrypted)
        .delete_on_termination(true)
        .build();
    RequestLaunchTemplateData::builder()
        .block_device_mappings(
            LaunchTemplateBlockDeviceMappingRequest::builder()
                .device_name("/dev/xvda")
                .ebs(disk)
                .build(),
        )
        .metadata_options(
            LaunchTemplateInstanceMetadataOptionsRequest::builder()
                .http_tokens(LaunchTemplateHttpTokensState::Required)
                .http_put_response_hop_limit(2)
                .build(),
        )
        .set_user_data(super::user_data::encoded(&c.mirrors))
        .build()
}

/// The launch template of the pool: found by name, or created.
pub(crate) async fn ensure_template(
    aws: &Clients,
    step: &str,
    c: &NodePoolConfig,
) -> Result<String, ProviderError> {
    let name = template_name(aws, &c.name);
    let found_one = found(
        aws.ec2
            .describe_launch_templates()
            .launch_template_names(&name)
            .send()
            .await,
        "ec2:DescribeLaunchTemplates",
        &name,
    )?;
    if let Some(id) = found_one.and_then(|o| {
        o.launch_templates()
            .first()
            .and_then(|t| t.launch_template_id().map(str::to_owned))
    }) {
        return Ok(id);
    }
    let data = template_data(c);
    let tag_list = tags::of(&aws.cluster, step, None)
        .into_iter()
        .map(|(k, v)| Ec2Tag::builder().key(k).value(v).build())
        .collect();
    let out = aws
        .ec2
        .create_launch_template()
        .launch_template_name(&name)
        .launch_template_data(data)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::LaunchTemplate)
                .set_tags(Some(tag_list))
                .build(),
        )
        .send()
        .await
        .on("ec2:CreateLaunchTemplate", &name)?;
    out.launch_template()
        .and_then(|t| t.launch_template_id())
        .map(str::to_owned)
        .ok_or_else(|| {
            ProviderError::retryable("ec2:CreateLaunchTemplate answered without a template")
        })
}

/// A new version of the pool's launch template when its user data is not the config's, as
/// `(template id, version number)`; `None` when it is, or when the group has no bmac template.
pub(crate) async fn template_version(
    aws: &Clients,
    c: &NodePoolConfig,
    live: &Nodegroup,
) -> Result<Option<(String, String)>, ProviderError> {
    let name = template_name(aws, &c.name);
    let Some(id) = live
        .launch_template()
        .and_then(|t| t.id())
        .map(str::to_owned)
    else {
        return Ok(None);
    };
    let latest = found(
        aws.ec2
            .describe_launch_template_versions()
            .launch_template_id(&id)
            .versions("$Latest")
            .send()
            .await,
        "ec2:DescribeLaunchTemplateVersions",
        &name,
    )?;
    let Some(latest) = latest.and_then(|o| o.launch_template_versions().first().cloned()) else {
        return Ok(None);
    };
    let have = latest.launch_template_data().and_then(|d| d.user_data());
    let want = super::user_data::encoded(&c.mirrors);
    if have == want.as_deref() {
        return Ok(None);
    }
    let out = aws
        .ec2
        .create_launch_template_version()
        .launch_template_id(&id)
        .launch_template_data(template_data(c))
        .send()
        .await
        .on("ec2:CreateLaunchTemplateVersion", &name)?;
    let number = out
        .launch_template_version()
        .and_then(|v| v.version_number())
        .ok_or_else(|| {
            ProviderError::retryable("ec2:CreateLaunchTemplateVersion answered without a version")
        })?;
    Ok(Some((id, number.to_string())))
}
