//! Registries on EKS: ECR pull-through caches, the registry policy that lets nodes fill them,
//! the containerd mirrors in the node groups' launch templates, and node-group version
//! upgrades.
//!
//! What moto 5.2 serves is tested on moto: the launch template a build makes, with its user
//! data, read back through `DescribeLaunchTemplateVersions`; a new template version when the
//! mirrors change. What it lacks answers through **aws-smithy-mocks**, with the SDK's real
//! request types and real responses — modelled outputs, and error bodies in ECR's JSON wire
//! form (`{"__type": …}`, HTTP 400), so the SDK's own deserialiser turns them into errors:
//! - ECR pull-through cache rules (moto answers 500: not implemented);
//! - the registry policy: moto's `PutRegistryPolicy` refuses every action but
//!   `ecr:CreateRepository` and `ecr:ReplicateImage`, while ECR documents granting
//!   `ecr:BatchImportUpstreamImage` there for pull-through caches;
//! - EKS `UpdateNodegroupVersion` (absent from moto's EKS).

mod aws_mocks;
mod aws_support;

use std::collections::BTreeMap;

use aws_mocks::handler::{apply, destroy, observe, offline_clients};
use aws_sdk_ecr::operation::create_pull_through_cache_rule::CreatePullThroughCacheRuleOutput;
use aws_sdk_ecr::operation::delete_pull_through_cache_rule::DeletePullThroughCacheRuleOutput;
use aws_sdk_ecr::operation::delete_registry_policy::DeleteRegistryPolicyOutput;
use aws_sdk_ecr::operation::describe_pull_through_cache_rules::DescribePullThroughCacheRulesOutput;
use aws_sdk_ecr::operation::get_registry_policy::GetRegistryPolicyOutput;
use aws_sdk_ecr::operation::put_registry_policy::PutRegistryPolicyOutput;
use aws_sdk_ecr::operation::update_pull_through_cache_rule::UpdatePullThroughCacheRuleOutput;
use aws_sdk_ecr::types::{PullThroughCacheRule, UpstreamRegistry};
use aws_sdk_eks::operation::describe_nodegroup::DescribeNodegroupOutput;
use aws_sdk_eks::operation::describe_update::DescribeUpdateOutput;
use aws_sdk_eks::operation::update_nodegroup_version::UpdateNodegroupVersionOutput;
use aws_sdk_eks::types::{
    LaunchTemplateSpecification, Nodegroup, NodegroupScalingConfig, NodegroupStatus, Update,
    UpdateStatus,
};
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use aws_support::{moto, spec, Build};
use base64::Engine as _;
use bmac_core::provider::Observed;
use bmac_core::{Inputs, OutputValue, Step, StepId};
use bmac_providers::aws::ecr::{statement_id, Mirror, RegistryPolicy};
use bmac_providers::aws::node_group::NodeGroup;
use bmac_providers::aws::Clients;
use bmac_steps::config::{
    Disk, NodeMirror, NodePoolConfig, RegistryMirrorConfig, RegistryPolicyConfig, Scaling,
};
use bmac_steps::kinds;
use serde_json::{json, Value};

const REGISTRY: &str = "123456789012";
const HOST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
const SECRET: &str =
    "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ecr-pullthroughcache/docker-hub-Ab12Cd";

fn with_ecr(rules: &[&Rule]) -> Clients {
    let mut clients = offline_clients("prod", "eu-west-1");
    clients.ecr = mock_client!(aws_sdk_ecr, RuleMode::MatchAny, rules.iter().copied());
    clients
}

/// An ECR error as the service sends it (awsJson1.1: HTTP 400, the code in `__type`).
fn ecr_error(code: &str, message: &str) -> aws_smithy_runtime_api::http::Response {
    let body = json!({"__type": code, "message": message}).to_string();
    let mut response = aws_smithy_runtime_api::http::Response::new(
        aws_smithy_runtime_api::http::StatusCode::try_from(400).unwrap(),
        aws_smithy_types::body::SdkBody::from(body),
    );
    response
        .headers_mut()
        .insert("content-type", "application/x-amz-json-1.1");
    response
}

fn hub_step(credential: Option<&str>) -> Step {
    let config = RegistryMirrorConfig {
        upstream: "docker.io".into(),
        mirror: format!("{HOST}/docker-hub"),
        pull_through_cache: true,
        credential: credential.map(str::to_owned),
    };
    Step::new(
        StepId::new("registries.mirror.docker-io").unwrap(),
        kinds::kind(kinds::REGISTRY_MIRROR),
        &config,
    )
    .unwrap()
}

fn live_rule(url: &str, credential: Option<&str>) -> PullThroughCacheRule {
    PullThroughCacheRule::builder()
        .ecr_repository_prefix("docker-hub")
        .upstream_registry_url(url)
        .registry_id(REGISTRY)
        .set_credential_arn(credential.map(str::to_owned))
        .build()
}

/// Mocked ECR (moto lacks pull-through cache rules): the create carries ECR's names for Docker
/// Hub and the secret's ARN, and observe reads the rule back.
#[tokio::test]
async fn mocked_ecr_a_pull_through_cache_rule_is_created_for_docker_hub_with_its_secret() {
    let create = mock!(aws_sdk_ecr::Client::create_pull_through_cache_rule)
        .match_requests(|r| {
            r.ecr_repository_prefix() == Some("docker-hub")
                && r.upstream_registry_url() == Some("registry-1.docker.io")
                && r.upstream_registry() == Some(&UpstreamRegistry::DockerHub)
                && r.credential_arn() == Some(SECRET)
                && r.custom_role_arn().is_none()
                && r.registry_id() == Some(REGISTRY)
        })
        .then_output(|| {
            CreatePullThroughCacheRuleOutput::builder()
                .ecr_repository_prefix("docker-hub")
                .upstream_registry_url("registry-1.docker.io")
                .credential_arn(SECRET)
                .registry_id(REGISTRY)
                .build()
        });
    let describe = mock!(aws_sdk_ecr::Client::describe_pull_through_cache_rules)
        .match_requests(|r| r.ecr_repository_prefixes() == ["docker-hub"])
        .then_output(|| {
            DescribePullThroughCacheRulesOutput::builder()
                .pull_through_cache_rules(live_rule("registry-1.docker.io", Some(SECRET)))
                .build()
        });
    let clients = with_ecr(&[&create, &describe]);
    let step = hub_step(Some(SECRET));
    let out = apply(&Mirror, &clients, &step, &Inputs::default())
        .await
        .unwrap();
    assert_eq!(create.num_calls(), 1);
    assert_eq!(
        out.get("mirror_url")
            .and_then(|v| v.value())
            .and_then(Value::as_str),
        Some(format!("https://{HOST}/docker-hub").as_str())
    );
    let Observed::Present { config, .. } =
        observe(&Mirror, &clients, &step, &Inputs::default()).await
    else {
        panic!("absent")
    };
    // The live rule matches the step: its config reads back unchanged.
    assert_eq!(&config, step.config.value());
}

/// Mocked ECR: "already exists" with the same upstream is adoption; another secret is brought
/// to the spec's with UpdatePullThroughCacheRule; the same one needs no update.
#[tokio::test]
async fn mocked_ecr_an_existing_matching_rule_is_adopted_and_its_secret_updated() {
    let old =
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ecr-pullthroughcache/old-Zz99Yy";
    for (live, updates) in [(old, 1), (SECRET, 0)] {
        let create = mock!(aws_sdk_ecr::Client::create_pull_through_cache_rule)
            .then_http_response(|| {
                ecr_error(
                    "PullThroughCacheRuleAlreadyExistsException",
                    "A pull through cache rule with these settings already exists for this registry",
                )
            });
        let describe =
            mock!(aws_sdk_ecr::Client::describe_pull_through_cache_rules).then_output(move || {
                DescribePullThroughCacheRulesOutput::builder()
                    .pull_through_cache_rules(live_rule("registry-1.docker.io", Some(live)))
                    .build()
            });
        let update = mock!(aws_sdk_ecr::Client::update_pull_through_cache_rule)
            .match_requests(|r| {
                r.ecr_repository_prefix() == Some("docker-hub")
                    && r.credential_arn() == Some(SECRET)
            })
            .then_output(|| UpdatePullThroughCacheRuleOutput::builder().build());
        let clients = with_ecr(&[&create, &describe, &update]);
        apply(
            &Mirror,
            &clients,
            &hub_step(Some(SECRET)),
            &Inputs::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            (create.num_calls(), describe.num_calls(), update.num_calls()),
            (1, 1, updates),
            "live secret {live}"
        );
    }
}

/// Mocked ECR: a rule of that prefix caching another upstream cannot be changed (ECR has no
/// update of the upstream): a permanent error that says what to do; observe shows the drift.
#[tokio::test]
async fn mocked_ecr_a_rule_caching_another_upstream_is_a_permanent_error() {
    let create =
        mock!(aws_sdk_ecr::Client::create_pull_through_cache_rule).then_http_response(|| {
            ecr_error(
                "PullThroughCacheRuleAlreadyExistsException",
                "already exists",
            )
        });
    let describe =
        mock!(aws_sdk_ecr::Client::describe_pull_through_cache_rules).then_output(|| {
            DescribePullThroughCacheRulesOutput::builder()
                .pull_through_cache_rules(live_rule("quay.io", None))
                .build()
        });
    let update = mock!(aws_sdk_ecr::Client::update_pull_through_cache_rule)
        .then_output(|| UpdatePullThroughCacheRuleOutput::builder().build());
    let clients = with_ecr(&[&create, &describe, &update]);
    let step = hub_step(Some(SECRET));
    let err = apply(&Mirror, &clients, &step, &Inputs::default())
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err:?}");
    assert_eq!(err.code.as_deref(), Some("bmac::aws::mirror_conflict"));
    assert!(err.message.contains("`quay.io`"), "{}", err.message);
    assert!(
        err.message.contains("delete-pull-through-cache-rule"),
        "{}",
        err.message
    );
    assert_eq!(update.num_calls(), 0);
    let Observed::Present { config, .. } =
        observe(&Mirror, &clients, &step, &Inputs::default()).await
    else {
        panic!("absent")
    };
    assert_eq!(config["upstream"], "quay.io");
    assert!(config.get("credential").is_none());
}

/// Mocked ECR: destroy deletes the rule; a rule already gone (and a describe that finds none)
/// is success / absent.
#[tokio::test]
async fn mocked_ecr_destroy_deletes_the_rule_and_gone_is_success() {
    let delete = mock!(aws_sdk_ecr::Client::delete_pull_through_cache_rule)
        .match_requests(|r| {
            r.ecr_repository_prefix() == Some("docker-hub") && r.registry_id() == Some(REGISTRY)
        })
        .then_output(|| DeletePullThroughCacheRuleOutput::builder().build());
    let clients = with_ecr(&[&delete]);
    destroy(
        &Mirror,
        &clients,
        &hub_step(Some(SECRET)),
        &Inputs::default(),
        bmac_core::Outputs::new(),
    )
    .await
    .unwrap();
    assert_eq!(delete.num_calls(), 1);

    let gone =
        mock!(aws_sdk_ecr::Client::delete_pull_through_cache_rule).then_http_response(|| {
            ecr_error(
                "PullThroughCacheRuleNotFoundException",
                "The pull through cache rule docker-hub does not exist",
            )
        });
    let none = mock!(aws_sdk_ecr::Client::describe_pull_through_cache_rules)
        .then_http_response(|| ecr_error("PullThroughCacheRuleNotFoundException", "not found"));
    let clients = with_ecr(&[&gone, &none]);
    let step = hub_step(Some(SECRET));
    destroy(
        &Mirror,
        &clients,
        &step,
        &Inputs::default(),
        bmac_core::Outputs::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(gone.num_calls(), 1);
    assert!(matches!(
        observe(&Mirror, &clients, &step, &Inputs::default()).await,
        Observed::Absent
    ));
}

/// Mocked ECR: AccessDenied is permanent and names the action and the rule, which is what an
/// IAM policy has to grant.
#[tokio::test]
async fn mocked_ecr_access_denied_names_the_action_and_the_rule() {
    let denied = mock!(aws_sdk_ecr::Client::create_pull_through_cache_rule).then_http_response(|| {
        ecr_error(
            "AccessDeniedException",
            "User: arn:aws:sts::123456789012:assumed-role/ci/bmac is not authorized to perform: ecr:CreatePullThroughCacheRule",
        )
    });
    let clients = with_ecr(&[&denied]);
    let err = apply(
        &Mirror,
        &clients,
        &hub_step(Some(SECRET)),
        &Inputs::default(),
    )
    .await
    .unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(err.code.as_deref(), Some("AccessDeniedException"));
    assert!(
        err.message.contains("ecr:CreatePullThroughCacheRule"),
        "{}",
        err.message
    );
    assert!(
        err.message
            .contains("pull-through cache rule docker-hub of registry 123456789012"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("eks-iam-policy.json"),
        "{}",
        err.message
    );
}

/// A mirror that is not a cache bmac makes is only reported: no ECR call at all.
#[tokio::test]
async fn an_existing_mirror_calls_nothing() {
    let clients = offline_clients("prod", "eu-west-1");
    let config = RegistryMirrorConfig {
        upstream: "docker.io".into(),
        mirror: "mirror.example.com/hub".into(),
        pull_through_cache: false,
        credential: None,
    };
    let step = Step::new(
        StepId::new("registries.mirror.docker-io").unwrap(),
        kinds::kind(kinds::REGISTRY_MIRROR),
        &config,
    )
    .unwrap();
    let out = apply(&Mirror, &clients, &step, &Inputs::default())
        .await
        .unwrap();
    assert_eq!(
        out.get("mirror_url")
            .and_then(|v| v.value())
            .and_then(Value::as_str),
        Some("https://mirror.example.com/hub")
    );
    destroy(
        &Mirror,
        &clients,
        &step,
        &Inputs::default(),
        bmac_core::Outputs::new(),
    )
    .await
    .unwrap();
}

fn policy_step() -> (Step, Inputs) {
    let config = RegistryPolicyConfig {
        cluster: "prod".into(),
        mirrors: vec![format!("{HOST}/docker-hub"), format!("{HOST}/k8s")],
    };
    let step = Step::new(
        StepId::new("registries.policy").unwrap(),
        kinds::kind(kinds::REGISTRY_POLICY),
        &config,
    )
    .unwrap();
    let inputs = Inputs(BTreeMap::from([
        (
            "node_role.general".to_owned(),
            OutputValue::Plain("arn:aws:iam::123456789012:role/bmac-prod-general-nodes".into()),
        ),
        (
            "node_role.system".to_owned(),
            OutputValue::Plain("arn:aws:iam::123456789012:role/bmac-prod-system-nodes".into()),
        ),
    ]));
    (step, inputs)
}

/// GetRegistryPolicy answering a policy of `statements`.
fn get_policy(statements: Vec<Value>) -> Rule {
    let text = json!({"Version": "2012-10-17", "Statement": statements}).to_string();
    mock!(aws_sdk_ecr::Client::get_registry_policy).then_output(move || {
        GetRegistryPolicyOutput::builder()
            .registry_id(REGISTRY)
            .policy_text(&text)
            .build()
    })
}

/// PutRegistryPolicy matching only a policy of exactly `statements`.
fn put_policy(statements: Vec<Value>) -> Rule {
    let want = json!({"Version": "2012-10-17", "Statement": statements});
    mock!(aws_sdk_ecr::Client::put_registry_policy)
        .match_requests(move |r| {
            r.policy_text()
                .and_then(|t| serde_json::from_str::<Value>(t).ok())
                .as_ref()
                == Some(&want)
        })
        .then_output(|| PutRegistryPolicyOutput::builder().build())
}

/// Mocked ECR (moto's PutRegistryPolicy refuses `ecr:BatchImportUpstreamImage`): the
/// cluster's statement grants both node roles the two actions of a first pull on each cache's
/// repositories, beside — never over — another statement of the registry's one policy; destroy
/// takes only its own statement out, and deletes the policy once nothing else is in it.
#[tokio::test]
async fn mocked_ecr_the_registry_policy_grants_node_roles_beside_other_statements() {
    let theirs = json!({"Sid": "ReplicationFromAudit", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::210987654321:root"},
        "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
        "Resource": "arn:aws:ecr:eu-west-1:123456789012:repository/*"});
    let sid = statement_id("prod");
    let ours = json!({"Sid": sid, "Effect": "Allow",
        "Principal": {"AWS": ["arn:aws:iam::123456789012:role/bmac-prod-general-nodes", "arn:aws:iam::123456789012:role/bmac-prod-system-nodes"]},
        "Action": ["ecr:CreateRepository", "ecr:BatchImportUpstreamImage"],
        "Resource": ["arn:aws:ecr:eu-west-1:123456789012:repository/docker-hub/*", "arn:aws:ecr:eu-west-1:123456789012:repository/k8s/*"]});

    let get = get_policy(vec![theirs.clone()]);
    let put = put_policy(vec![theirs.clone(), ours.clone()]);
    let (step, inputs) = policy_step();
    let clients = with_ecr(&[&get, &put]);
    apply(&RegistryPolicy, &clients, &step, &inputs)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        put.num_calls(),
        1,
        "one PutRegistryPolicy with both statements"
    );

    // Observe reads our statement back as the config; with the other one only, it is absent.
    let get = get_policy(vec![theirs.clone(), ours.clone()]);
    let put_theirs = put_policy(vec![theirs.clone()]);
    let delete = mock!(aws_sdk_ecr::Client::delete_registry_policy)
        .then_output(|| DeleteRegistryPolicyOutput::builder().build());
    let clients = with_ecr(&[&get, &put_theirs, &delete]);
    let Observed::Present { config, .. } = observe(&RegistryPolicy, &clients, &step, &inputs).await
    else {
        panic!("absent")
    };
    assert_eq!(&config, step.config.value());
    destroy(
        &RegistryPolicy,
        &clients,
        &step,
        &inputs,
        bmac_core::Outputs::new(),
    )
    .await
    .unwrap();
    assert_eq!((put_theirs.num_calls(), delete.num_calls()), (1, 0));

    let get = get_policy(vec![ours.clone()]);
    let clients = with_ecr(&[&get, &delete]);
    destroy(
        &RegistryPolicy,
        &clients,
        &step,
        &inputs,
        bmac_core::Outputs::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        delete.num_calls(),
        1,
        "nothing else left: the policy is deleted"
    );

    let none = mock!(aws_sdk_ecr::Client::get_registry_policy).then_http_response(|| {
        ecr_error(
            "RegistryPolicyNotFoundException",
            "Registry policy does not exist in the registry with id '123456789012'",
        )
    });
    let clients = with_ecr(&[&none]);
    assert!(matches!(
        observe(&RegistryPolicy, &clients, &step, &inputs).await,
        Observed::Absent
    ));
    destroy(
        &RegistryPolicy,
        &clients,
        &step,
        &inputs,
        bmac_core::Outputs::new(),
    )
    .await
    .unwrap();
}

fn pool_step(version: &str, mirrors: Vec<NodeMirror>) -> Step {
    let config = NodePoolConfig {
        name: "system".into(),
        instance_types: vec!["m6i.large".into()],
        scaling: Scaling {
            min: 1,
            max: 3,
            desired: 1,
        },
        labels: BTreeMap::new(),
        taints: Vec::new(),
        disk: Disk {
            size_gb: 50,
            kind: "gp3".into(),
            encrypted: true,
        },
        version: Some(version.into()),
        mirrors,
    };
    Step::new(
        StepId::new("node_pool.system").unwrap(),
        kinds::kind(kinds::NODE_POOL),
        &config,
    )
    .unwrap()
}

fn live_group(version: &str, template: Option<&str>) -> Nodegroup {
    Nodegroup::builder()
        .nodegroup_name("system")
        .nodegroup_arn("arn:aws:eks:eu-west-1:123456789012:nodegroup/prod/system/x")
        .status(NodegroupStatus::Active)
        .version(version)
        .instance_types("m6i.large")
        .scaling_config(
            NodegroupScalingConfig::builder()
                .min_size(1)
                .max_size(3)
                .desired_size(1)
                .build(),
        )
        .set_launch_template(template.map(|id| {
            LaunchTemplateSpecification::builder()
                .id(id)
                .version("1")
                .build()
        }))
        .build()
}

fn eks_rules(
    cluster: &'static str,
    live: Nodegroup,
    want_version: Option<&'static str>,
    want_template: Option<(String, String)>,
) -> (Rule, Rule, Rule) {
    let describe = mock!(aws_sdk_eks::Client::describe_nodegroup).then_output(move || {
        DescribeNodegroupOutput::builder()
            .nodegroup(live.clone())
            .build()
    });
    let update = mock!(aws_sdk_eks::Client::update_nodegroup_version)
        .match_requests(move |r| {
            let template = r.launch_template().map(|t| {
                (
                    t.id().unwrap_or_default().to_owned(),
                    t.version().unwrap_or_default().to_owned(),
                )
            });
            r.cluster_name() == Some(cluster)
                && r.nodegroup_name() == Some("system")
                && r.version() == want_version
                && template == want_template
        })
        .then_output(|| {
            UpdateNodegroupVersionOutput::builder()
                .update(
                    Update::builder()
                        .id("u-1")
                        .status(UpdateStatus::InProgress)
                        .build(),
                )
                .build()
        });
    let waited = mock!(aws_sdk_eks::Client::describe_update)
        .match_requests(|r| r.update_id() == Some("u-1") && r.nodegroup_name() == Some("system"))
        .then_output(|| {
            DescribeUpdateOutput::builder()
                .update(
                    Update::builder()
                        .id("u-1")
                        .status(UpdateStatus::Successful)
                        .build(),
                )
                .build()
        });
    (describe, update, waited)
}

/// Mocked EKS (moto has no UpdateNodegroupVersion): a pool whose version is behind the
/// cluster's gets one UpdateNodegroupVersion, waited on through DescribeUpdate — an update in
/// place, not a new group; at the same version nothing is called.
#[tokio::test]
async fn mocked_eks_a_pool_behind_the_cluster_version_is_upgraded_in_place() {
    let (describe, update, waited) =
        eks_rules("prod", live_group("1.29", None), Some("1.30"), None);
    let mut clients = offline_clients("prod", "eu-west-1");
    clients.eks = mock_client!(
        aws_sdk_eks,
        RuleMode::MatchAny,
        [&describe, &update, &waited]
    );
    let step = pool_step("1.30", Vec::new());
    let out = apply(&NodeGroup, &clients, &step, &Inputs::default())
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!((update.num_calls(), waited.num_calls()), (1, 1));
    assert_eq!(
        out.get("name")
            .and_then(|v| v.value())
            .and_then(Value::as_str),
        Some("system")
    );
    // Observe reports the live version, so a pool left behind shows as a change.
    let Observed::Present { config, .. } =
        observe(&NodeGroup, &clients, &step, &Inputs::default()).await
    else {
        panic!("absent")
    };
    assert_eq!(config["version"], "1.29");

    let (describe, update, waited) =
        eks_rules("prod", live_group("1.30", None), Some("1.30"), None);
    let mut clients = offline_clients("prod", "eu-west-1");
    clients.eks = mock_client!(
        aws_sdk_eks,
        RuleMode::MatchAny,
        [&describe, &update, &waited]
    );
    apply(&NodeGroup, &clients, &step, &Inputs::default())
        .await
        .unwrap();
    assert_eq!(update.num_calls(), 0);
}

fn decoded(user_data: &str) -> String {
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(user_data)
            .expect("base64 user data"),
    )
    .expect("UTF-8 user data")
}

fn eks_with_mirrors(name: &str) -> String {
    format!(
        r#"[cluster]
name = "{name}"
provider = "eks"
region = "us-east-1"
version = "1.30"

[network]
zones = ["us-east-1a", "us-east-1b"]

[[node_pool]]
name = "system"
instance_types = ["m6i.large"]
min = 1
max = 2

[registries]
allowed = ["docker.io", "quay.io"]

[registries.mirrors]
"docker.io" = "mirror.example.com/docker-hub"
"quay.io" = "quay-mirror.example.com"
"#
    )
}

/// On moto: a build with mirrors (existing ones: moto has no pull-through caches) makes the
/// node group's launch template with user data that, read back through
/// DescribeLaunchTemplateVersions and decoded, writes containerd's hosts.toml per upstream.
/// Then, with moto's launch templates and mocked EKS (no UpdateNodegroupVersion in moto),
/// changing the mirrors makes a new template version that the group is rolled onto.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_launch_template_points_containerd_at_the_mirrors_and_follows_them() {
    let Some(moto) = moto() else { return };
    let name = "bmac-e2e-mirrors";
    let build = Build::new(moto.clone());
    let s = spec(&eks_with_mirrors(name));
    let (summary, report) = build.apply(&s).await;
    assert!(report.is_success(), "{report:#?}");
    // network, cluster.role, cluster.key, cluster, node role, node pool, two mirrors
    assert_eq!(summary.create, 8, "{summary:?}");
    let aws = moto.clients(&s, build.dir.path()).await;
    let template = format!("bmac-{name}-system");
    let versions = aws
        .ec2
        .describe_launch_template_versions()
        .launch_template_name(&template)
        .send()
        .await
        .unwrap();
    let data = versions.launch_template_versions()[0]
        .launch_template_data()
        .unwrap();
    let text = decoded(data.user_data().expect("user data"));
    assert!(text.starts_with("MIME-Version: 1.0\n"), "{text}");
    assert!(text.contains("Content-Type: text/cloud-config"), "{text}");
    assert!(
        text.contains("  - path: /etc/containerd/certs.d/docker.io/hosts.toml\n"),
        "{text}"
    );
    assert!(
        text.contains("      server = \"https://registry-1.docker.io\"\n"),
        "{text}"
    );
    assert!(
        text.contains("      [host.\"https://mirror.example.com/v2/docker-hub\"]\n"),
        "{text}"
    );
    assert!(
        text.contains("  - path: /etc/containerd/certs.d/quay.io/hosts.toml\n"),
        "{text}"
    );
    assert!(
        text.contains("      [host.\"https://quay-mirror.example.com\"]\n"),
        "{text}"
    );
    // The node group was created at the cluster's version, on that template.
    let group = aws
        .eks
        .describe_nodegroup()
        .cluster_name(name)
        .nodegroup_name("system")
        .send()
        .await
        .unwrap();
    let group = group.nodegroup().unwrap().clone();
    assert_eq!(group.version(), Some("1.30"));
    let template_id = group
        .launch_template()
        .and_then(|t| t.id())
        .expect("the group's launch template")
        .to_owned();

    // A mirror changed: a new template version on moto, and one UpdateNodegroupVersion onto
    // it (mocked EKS), at the same Kubernetes version.
    let mut clients = (*aws).clone();
    let (describe, update, waited) = eks_rules(
        name,
        group,
        None,
        Some((template_id.clone(), "2".to_owned())),
    );
    clients.eks = mock_client!(
        aws_sdk_eks,
        RuleMode::MatchAny,
        [&describe, &update, &waited]
    );
    let step = pool_step(
        "1.30",
        vec![NodeMirror {
            upstream: "docker.io".into(),
            mirror: "other-mirror.example.com/hub".into(),
        }],
    );
    // The spec's scaling (max 2), so that only the mirrors differ.
    let mut config: NodePoolConfig = step.config_as().unwrap();
    config.scaling.max = 2;
    let step = Step::new(step.id.clone(), step.kind.clone(), &config).unwrap();
    apply(&NodeGroup, &clients, &step, &Inputs::default())
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(update.num_calls(), 1);
    let latest = aws
        .ec2
        .describe_launch_template_versions()
        .launch_template_id(&template_id)
        .versions("$Latest")
        .send()
        .await
        .unwrap();
    let latest = &latest.launch_template_versions()[0];
    assert_eq!(latest.version_number(), Some(2));
    let text = decoded(latest.launch_template_data().unwrap().user_data().unwrap());
    assert!(
        text.contains("[host.\"https://other-mirror.example.com/v2/hub\"]"),
        "{text}"
    );

    // Destroy removes the group, the template and the rest.
    let plan = build.destroy_plan().await;
    let report = build.run(&s, plan).await;
    assert!(report.is_success(), "{report:#?}");
    assert!(aws
        .ec2
        .describe_launch_template_versions()
        .launch_template_name(&template)
        .send()
        .await
        .is_err());
}
