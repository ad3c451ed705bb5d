//! The AWS provider against a real AWS API server (moto over HTTPS, `scripts/moto-env.sh`),
//! through the official SDK and the real engine: an EKS cluster with its network, roles, KMS
//! key and a node group is built, read back through the SDK, re-planned (nothing to do),
//! changed in place, and destroyed; a create that finds its cluster already there adopts it;
//! credentials of another account are refused before anything is created.
//!
//! moto has no CREATING phase (clusters and node groups are ACTIVE at once), so the waits
//! return on their first poll here; their progress and cancellation are unit-tested in
//! `aws::wait`.

mod aws_support;

use aws_sdk_ec2::types::Filter;
use aws_support::{eks, moto, output, spec, Build};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eks_cluster_is_built_read_back_updated_in_place_and_destroyed() {
    let Some(moto) = moto() else { return };
    let name = "bmac-e2e-build";
    let build = Build::new(moto.clone());
    let s = spec(&eks(name, ""));
    let aws = moto.clients(&s, build.dir.path()).await;

    let (summary, report) = build.apply(&s).await;
    assert!(report.is_success(), "{report:#?}");
    // network, cluster.role, cluster.key, cluster, node_pool.system.role, node_pool.system
    assert_eq!(summary.create, 6, "{summary:?}");
    let state = build.state().await;

    // The network: a VPC with DNS, a private and a public subnet per zone, tagged for load
    // balancers, an internet gateway and a NAT gateway.
    let vpc = output(&state, "network", "vpc_id")
        .as_str()
        .unwrap()
        .to_owned();
    let subnets = aws
        .ec2
        .describe_subnets()
        .filters(Filter::builder().name("vpc-id").values(&vpc).build())
        .send()
        .await
        .unwrap();
    assert_eq!(subnets.subnets().len(), 4);
    let tag = |s: &aws_sdk_ec2::types::Subnet, k: &str| {
        s.tags()
            .iter()
            .find(|t| t.key() == Some(k))
            .and_then(|t| t.value())
            .map(str::to_owned)
    };
    let private: Vec<_> = subnets
        .subnets()
        .iter()
        .filter(|s| tag(s, "kubernetes.io/role/internal-elb").as_deref() == Some("1"))
        .collect();
    let public: Vec<_> = subnets
        .subnets()
        .iter()
        .filter(|s| tag(s, "kubernetes.io/role/elb").as_deref() == Some("1"))
        .collect();
    assert_eq!((private.len(), public.len()), (2, 2));
    assert!(public
        .iter()
        .all(|s| s.map_public_ip_on_launch() == Some(true)));
    let mut zones: Vec<_> = private
        .iter()
        .filter_map(|s| s.availability_zone())
        .collect();
    zones.sort();
    assert_eq!(zones, ["us-east-1a", "us-east-1b"]);
    assert!(subnets
        .subnets()
        .iter()
        .all(|s| tag(s, &format!("kubernetes.io/cluster/{name}")).as_deref() == Some("shared")));
    let nats = aws
        .ec2
        .describe_nat_gateways()
        .filter(Filter::builder().name("vpc-id").values(&vpc).build())
        .send()
        .await
        .unwrap();
    assert_eq!(nats.nat_gateways().len(), 1, "nat = single");
    let igws = aws
        .ec2
        .describe_internet_gateways()
        .filters(
            Filter::builder()
                .name("attachment.vpc-id")
                .values(&vpc)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(igws.internet_gateways().len(), 1);

    // IAM: the cluster role and the node role with the policies EKS documents.
    let attached = |role: String| {
        let aws = aws.clone();
        async move {
            let out = aws
                .iam
                .list_attached_role_policies()
                .role_name(role)
                .send()
                .await
                .unwrap();
            let mut names: Vec<String> = out
                .attached_policies()
                .iter()
                .filter_map(|p| p.policy_name().map(str::to_owned))
                .collect();
            names.sort();
            names
        }
    };
    assert_eq!(
        attached(format!("bmac-{name}-cluster")).await,
        ["AmazonEKSClusterPolicy"]
    );
    assert_eq!(
        attached(format!("bmac-{name}-system-nodes")).await,
        [
            "AmazonEC2ContainerRegistryReadOnly",
            "AmazonEKSWorkerNodePolicy",
            "AmazonEKS_CNI_Policy"
        ]
    );

    // KMS: the Secrets key, found by its alias, rotating.
    let key = aws
        .kms
        .describe_key()
        .key_id(format!("alias/bmac/{name}/secrets"))
        .send()
        .await
        .unwrap();
    let key_id = key.key_metadata().unwrap().key_id().to_owned();
    let rotation = aws
        .kms
        .get_key_rotation_status()
        .key_id(&key_id)
        .send()
        .await
        .unwrap();
    assert!(rotation.key_rotation_enabled());

    // EKS: the cluster with its version, endpoint access and Secrets encryption.
    let cluster = aws.eks.describe_cluster().name(name).send().await.unwrap();
    let cluster = cluster.cluster().unwrap();
    assert_eq!(cluster.version(), Some("1.30"));
    let vpc_config = cluster.resources_vpc_config().unwrap();
    assert!(vpc_config.endpoint_public_access() && vpc_config.endpoint_private_access());
    assert_eq!(vpc_config.public_access_cidrs(), ["198.51.100.0/24"]);
    assert_eq!(vpc_config.subnet_ids().len(), 4);
    let encryption = cluster.encryption_config();
    assert_eq!(
        encryption
            .first()
            .and_then(|e| e.provider())
            .and_then(|p| p.key_arn()),
        output(&state, "cluster.key", "arn").as_str()
    );
    assert_eq!(
        output(&state, "cluster", "credentials"),
        &serde_json::json!({"type": "eks", "cluster": name, "region": "us-east-1"})
    );
    assert!(output(&state, "cluster", "endpoint")
        .as_str()
        .unwrap()
        .starts_with("https://"));

    // The node group: scaling, labels, taints, the node role, private subnets, and a launch
    // template with an encrypted gp3 root volume and IMDSv2.
    let group = aws
        .eks
        .describe_nodegroup()
        .cluster_name(name)
        .nodegroup_name("system")
        .send()
        .await
        .unwrap();
    let group = group.nodegroup().unwrap();
    let scaling = group.scaling_config().unwrap();
    assert_eq!(
        (
            scaling.min_size(),
            scaling.max_size(),
            scaling.desired_size()
        ),
        (Some(1), Some(3), Some(1))
    );
    assert_eq!(group.labels().unwrap()["bmac.dev/pool"], "system");
    assert_eq!(group.taints().len(), 1);
    assert_eq!(
        group.node_role(),
        output(&state, "node_pool.system.role", "arn").as_str()
    );
    let mut group_subnets = group.subnets().to_vec();
    group_subnets.sort();
    let mut private_ids: Vec<String> = private
        .iter()
        .filter_map(|s| s.subnet_id().map(str::to_owned))
        .collect();
    private_ids.sort();
    assert_eq!(group_subnets, private_ids);
    let template = aws
        .ec2
        .describe_launch_template_versions()
        .launch_template_name(format!("bmac-{name}-system"))
        .send()
        .await
        .unwrap();
    let data = template.launch_template_versions()[0]
        .launch_template_data()
        .unwrap();
    let ebs = data.block_device_mappings()[0].ebs().unwrap();
    assert_eq!((ebs.volume_size(), ebs.encrypted()), (Some(50), Some(true)));
    assert_eq!(ebs.volume_type().map(|v| v.as_str()), Some("gp3"));
    assert_eq!(
        data.metadata_options()
            .and_then(|m| m.http_tokens())
            .map(|t| t.as_str()),
        Some("required")
    );

    // Again: nothing to do.
    let plan = build.plan(&s).await;
    let again = plan.summary();
    assert_eq!(
        (again.create, again.update, again.destroy),
        (0, 0, 0),
        "{again:?}"
    );

    // More nodes and a label changed: one in-place update of the node group.
    let changed = spec(
        &eks(name, "")
            .replace("max = 3", "max = 5\ndesired = 2")
            .replace(
                "labels = { \"bmac.dev/pool\" = \"system\" }",
                "labels = { \"bmac.dev/pool\" = \"core\" }",
            ),
    );
    let (summary, report) = build.apply(&changed).await;
    assert!(report.is_success(), "{report:#?}");
    assert_eq!(
        (summary.create, summary.update, summary.destroy),
        (0, 1, 0),
        "{summary:?}"
    );
    let group = aws
        .eks
        .describe_nodegroup()
        .cluster_name(name)
        .nodegroup_name("system")
        .send()
        .await
        .unwrap();
    let group = group.nodegroup().unwrap();
    let scaling = group.scaling_config().unwrap();
    assert_eq!(
        (scaling.max_size(), scaling.desired_size()),
        (Some(5), Some(2))
    );
    assert_eq!(group.labels().unwrap()["bmac.dev/pool"], "core");

    // Destroy: the node group, the cluster, the roles and the network go; the key is scheduled
    // for deletion (KMS deletes keys only after a waiting period).
    let plan = build.destroy_plan().await;
    assert_eq!(plan.summary().destroy, 6);
    let report = build.run(&changed, plan).await;
    assert!(report.is_success(), "{report:#?}");
    assert!(aws.eks.describe_cluster().name(name).send().await.is_err());
    assert!(aws
        .iam
        .get_role()
        .role_name(format!("bmac-{name}-cluster"))
        .send()
        .await
        .is_err());
    let vpcs = aws.ec2.describe_vpcs().vpc_ids(&vpc).send().await;
    assert!(
        vpcs.map_or(true, |v| v.vpcs().is_empty()),
        "the VPC is gone"
    );
    let key = aws.kms.describe_key().key_id(&key_id).send().await.unwrap();
    assert_eq!(
        key.key_metadata().unwrap().key_state().map(|s| s.as_str()),
        Some("PendingDeletion")
    );
    assert!(aws
        .kms
        .describe_key()
        .key_id(format!("alias/bmac/{name}/secrets"))
        .send()
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_already_exists_is_adopted_not_created_twice() {
    let Some(moto) = moto() else { return };
    let name = "bmac-e2e-adopt";
    let build = Build::new(moto.clone());
    let s = spec(&eks(name, ""));
    let aws = moto.clients(&s, build.dir.path()).await;
    // Someone (a crashed run whose journal lost the record) already created the cluster.
    aws.eks
        .create_cluster()
        .name(name)
        .version("1.30")
        .role_arn("arn:aws:iam::123456789012:role/anything")
        .resources_vpc_config(
            aws_sdk_eks::types::VpcConfigRequest::builder()
                .subnet_ids("subnet-0")
                .endpoint_public_access(true)
                .public_access_cidrs("198.51.100.0/24")
                .endpoint_private_access(true)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let arn_before = aws
        .eks
        .describe_cluster()
        .name(name)
        .send()
        .await
        .unwrap()
        .cluster()
        .unwrap()
        .arn()
        .unwrap()
        .to_owned();
    let (_, report) = build.apply(&s).await;
    assert!(report.is_success(), "{report:#?}");
    let clusters = aws.eks.list_clusters().send().await.unwrap();
    assert_eq!(clusters.clusters().iter().filter(|c| *c == name).count(), 1);
    let state = build.state().await;
    assert_eq!(
        output(&state, "cluster", "arn").as_str(),
        Some(arn_before.as_str())
    );
    let report = build.run(&s, build.destroy_plan().await).await;
    assert!(report.is_success(), "{report:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_of_another_account_are_refused_before_anything_is_created() {
    let Some(moto) = moto() else { return };
    let name = "bmac-e2e-account";
    let build = Build::new(moto.clone());
    let s = spec(&eks(name, "").replace("123456789012", "999999999999"));
    let (_, report) = build.apply(&s).await;
    assert!(!report.is_success());
    let failure = report.failure("network").expect("the first step fails");
    assert_eq!(
        failure.error.code.as_deref(),
        Some("bmac::aws::wrong_account"),
        "{failure:?}"
    );
    assert!(
        failure.error.message.contains("999999999999"),
        "{}",
        failure.error.message
    );
    let aws = moto.clients(&spec(&eks(name, "")), build.dir.path()).await;
    let vpcs = aws
        .ec2
        .describe_vpcs()
        .filters(
            Filter::builder()
                .name("tag:bmac.dev/cluster")
                .values(name)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(vpcs.vpcs().is_empty(), "nothing was created");
}

/// The audit section of an EKS spec whose archive bucket is `bucket`.
///
/// Without `alarm`: the current aws-sdk-cloudwatch speaks the Smithy RPC v2 CBOR protocol,
/// which moto 5.2 does not serve (its CloudWatch answers only the query protocol, so
/// `PutMetricAlarm` gets moto's 404 page); the alarm step is tested apart, with CloudWatch Logs
/// and SNS on moto.
fn audit(bucket: &str, force_destroy: bool) -> String {
    format!(
        r#"
[audit]
log_types = ["api", "audit", "authenticator"]
archive = "s3://{bucket}/prod"
retention_days = 365
force_destroy = {force_destroy}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_is_archived_end_to_end_and_restored_after_drift() {
    use std::io::Read as _;

    let Some(moto) = moto() else { return };
    let name = "bmac-e2e-audit";
    let bucket = "bmac-e2e-audit-archive";
    let build = Build::new(moto.clone());
    let s = spec(&eks(name, &audit(bucket, true)));
    let aws = moto.clients(&s, build.dir.path()).await;
    let (_, report) = build.apply(&s).await;
    assert!(report.is_success(), "{report:#?}");

    // Control-plane logging: exactly the spec's types, into a group that keeps 30 days (the
    // hot copy; the archive keeps 365).
    let cluster = aws.eks.describe_cluster().name(name).send().await.unwrap();
    let logging = cluster.cluster().unwrap().logging().unwrap();
    let mut on: Vec<&str> = logging
        .cluster_logging()
        .iter()
        .filter(|s| s.enabled() == Some(true))
        .flat_map(|s| s.types())
        .map(|t| t.as_str())
        .collect();
    on.sort();
    assert_eq!(on, ["api", "audit", "authenticator"]);
    let group = format!("/aws/eks/{name}/cluster");
    let groups = aws
        .logs
        .describe_log_groups()
        .log_group_name_prefix(&group)
        .send()
        .await
        .unwrap();
    assert_eq!(groups.log_groups()[0].retention_in_days(), Some(30));

    // The bucket: private, encrypted, versioned, TLS only, expiring after 365 days, locked.
    let pab = aws
        .s3
        .get_public_access_block()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let pab = pab.public_access_block_configuration().unwrap();
    assert_eq!(
        (
            pab.block_public_acls(),
            pab.ignore_public_acls(),
            pab.block_public_policy(),
            pab.restrict_public_buckets()
        ),
        (Some(true), Some(true), Some(true), Some(true))
    );
    let enc = aws
        .s3
        .get_bucket_encryption()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let rule = &enc.server_side_encryption_configuration().unwrap().rules()[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default()
            .map(|d| d.sse_algorithm().as_str()),
        Some("AES256")
    );
    let policy = aws
        .s3
        .get_bucket_policy()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let policy: serde_json::Value = serde_json::from_str(policy.policy().unwrap()).unwrap();
    assert_eq!(policy["Statement"][0]["Effect"], "Deny");
    assert_eq!(
        policy["Statement"][0]["Condition"]["Bool"]["aws:SecureTransport"],
        "false"
    );
    // moto 5.2 evaluates bucket-policy statements without their conditions (its
    // `IAMPolicy.is_action_permitted` ignores `Condition`), so the TLS-only Deny, verified
    // above, refuses every object request even over TLS. The rest of the test reads and writes
    // objects as the archive's consumers would, so it lifts that policy first; the apply after
    // the drift below restores it.
    aws.s3
        .delete_bucket_policy()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    // Versioning (moto's GetBucketVersioning answers an XML root the SDK rejects): two writes of
    // one key keep two versions.
    for body in ["one", "two"] {
        aws.s3
            .put_object()
            .bucket(bucket)
            .key("versioned")
            .body(aws_sdk_s3::primitives::ByteStream::from_static(
                body.as_bytes(),
            ))
            .send()
            .await
            .unwrap();
    }
    let versions = aws
        .s3
        .list_object_versions()
        .bucket(bucket)
        .prefix("versioned")
        .send()
        .await
        .unwrap();
    assert_eq!(versions.versions().len(), 2);
    let lifecycle = aws
        .s3
        .get_bucket_lifecycle_configuration()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    assert_eq!(
        lifecycle.rules()[0].expiration().and_then(|e| e.days()),
        Some(365)
    );
    let lock = aws
        .s3
        .get_object_lock_configuration()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let lock = lock.object_lock_configuration().unwrap();
    let retention = lock.rule().and_then(|r| r.default_retention()).unwrap();
    assert_eq!(
        (retention.mode().map(|m| m.as_str()), retention.days()),
        (Some("GOVERNANCE"), Some(365))
    );

    // Firehose into the bucket, fed by a subscription filter on the log group.
    let stream = aws
        .firehose
        .describe_delivery_stream()
        .delivery_stream_name(format!("bmac-{name}-audit"))
        .send()
        .await
        .unwrap();
    let stream = stream.delivery_stream_description().unwrap();
    let destination = stream.destinations()[0]
        .extended_s3_destination_description()
        .unwrap();
    assert_eq!(destination.bucket_arn(), format!("arn:aws:s3:::{bucket}"));
    assert_eq!(destination.prefix(), Some("prod/"));
    let filters = aws
        .logs
        .describe_subscription_filters()
        .log_group_name(&group)
        .send()
        .await
        .unwrap();
    assert_eq!(
        filters.subscription_filters()[0].destination_arn(),
        Some(stream.delivery_stream_arn())
    );

    // End to end: an audit event written to the log group lands as an object in the bucket.
    let event = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","verb":"get","user":{"username":"system:anonymous"},"responseStatus":{"code":403},"auditID":"bmac-e2e-0001"}"#;
    aws.logs
        .create_log_stream()
        .log_group_name(&group)
        .log_stream_name("kube-apiserver-audit-e2e")
        .send()
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    aws.logs
        .put_log_events()
        .log_group_name(&group)
        .log_stream_name("kube-apiserver-audit-e2e")
        .log_events(
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp(now)
                .message(event)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let objects = aws
        .s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix("prod/")
        .send()
        .await
        .unwrap();
    assert!(
        !objects.contents().is_empty(),
        "the record reached the archive"
    );
    let key = objects.contents()[0].key().unwrap();
    let body = aws
        .s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let bytes = body.body.collect().await.unwrap().into_bytes();
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .unwrap_or_else(|_| {
            text = String::from_utf8_lossy(&bytes).into_owned();
            0
        });
    assert!(text.contains("bmac-e2e-0001"), "{text}");

    // Someone switches logging off by hand: drift shows it, apply restores it.
    aws.eks
        .update_cluster_config()
        .name(name)
        .logging(
            aws_sdk_eks::types::Logging::builder()
                .cluster_logging(
                    aws_sdk_eks::types::LogSetup::builder()
                        .types(aws_sdk_eks::types::LogType::Audit)
                        .types(aws_sdk_eks::types::LogType::Api)
                        .types(aws_sdk_eks::types::LogType::Authenticator)
                        .enabled(false)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let drift = build.drift(&s).await;
    assert!(drift.has_drift(), "{}", drift.render());
    let rendered = drift.render();
    assert!(
        rendered.contains("~ audit.logging (audit_logging) changed outside bmac"),
        "{rendered}"
    );
    assert!(rendered.contains("log_types"), "{rendered}");
    // The lifted bucket policy is drift too.
    assert!(
        rendered.contains("~ audit.bucket (object_bucket) changed outside bmac"),
        "{rendered}"
    );
    assert!(rendered.contains("require_tls"), "{rendered}");
    let plan = build.refreshed_plan(&s).await;
    let summary = plan.summary();
    assert_eq!(
        (summary.create, summary.update, summary.destroy),
        // the two drifted steps, and the archive, which takes the bucket's outputs and so
        // converges again after the bucket's update
        (0, 3, 0),
        "{summary:?}\n{rendered}"
    );
    let report = build.run(&s, plan).await;
    assert!(report.is_success(), "{report:#?}");
    assert!(!build.drift(&s).await.has_drift());
    assert!(aws
        .s3
        .get_bucket_policy()
        .bucket(bucket)
        .send()
        .await
        .is_ok());

    // (moto's condition-less policy evaluation again: lift it so destroy can empty the bucket.)
    aws.s3
        .delete_bucket_policy()
        .bucket(bucket)
        .send()
        .await
        .unwrap();

    // Destroy with force_destroy: the bucket bmac made goes with its records; the log group
    // (hot audit records) is kept.
    let report = build.run(&s, build.destroy_plan().await).await;
    assert!(report.is_success(), "{report:#?}");
    assert!(
        aws.s3.head_bucket().bucket(bucket).send().await.is_err(),
        "bucket deleted"
    );
    let groups = aws
        .logs
        .describe_log_groups()
        .log_group_name_prefix(&group)
        .send()
        .await
        .unwrap();
    assert_eq!(groups.log_groups().len(), 1, "the log group is kept");
    assert!(aws
        .firehose
        .describe_delivery_stream()
        .delivery_stream_name(format!("bmac-{name}-audit"))
        .send()
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_keeps_the_archive_bucket_unless_told_otherwise() {
    let Some(moto) = moto() else { return };
    let name = "bmac-e2e-keep";
    let bucket = "bmac-e2e-keep-archive";
    let build = Build::new(moto.clone());
    let s = spec(&eks(name, &audit(bucket, false)));
    let aws = moto.clients(&s, build.dir.path()).await;
    let (_, report) = build.apply(&s).await;
    assert!(report.is_success(), "{report:#?}");
    // moto ignores the TLS-only policy's condition (see the test above): lift it to write.
    aws.s3
        .delete_bucket_policy()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    aws.s3
        .put_object()
        .bucket(bucket)
        .key("prod/record")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"audit"))
        .send()
        .await
        .unwrap();
    let report = build.run(&s, build.destroy_plan().await).await;
    assert!(report.is_success(), "{report:#?}");
    let kept = aws
        .s3
        .get_object()
        .bucket(bucket)
        .key("prod/record")
        .send()
        .await;
    assert!(kept.is_ok(), "the bucket and its records are kept");
    assert!(
        aws.eks.describe_cluster().name(name).send().await.is_err(),
        "the cluster is gone"
    );
}
