//! EKS operations moto 5.2 does not implement — add-ons, Pod Identity associations and access
//! entries — through the real handlers and the real aws-sdk-eks request and response types,
//! answered by **aws-smithy-mocks**: a small stateful fake of exactly those operations
//! (`CreateAddon`/`DescribeAddon`/`UpdateAddon`/`DeleteAddon`/`DescribeUpdate`, the five
//! Pod Identity association calls, `CreateCluster`/`DescribeCluster` with
//! `CreateAccessEntry`/`AssociateAccessPolicy`). Every request the handlers send is checked
//! against what EKS requires of it, and the fake keeps what was created, so adoption, updates
//! and destroy are exercised against state, not canned answers. Nothing leaves the process:
//! the other services' clients point at a port nothing listens on.

mod aws_mocks;
mod aws_support;

use aws_mocks::eks_fake::{self, in_use, not_found, Fake, Shared};
use aws_mocks::handler::{apply, destroy, inputs, observe, offline_clients, step};
use aws_sdk_eks::operation::associate_access_policy::AssociateAccessPolicyOutput;
use aws_sdk_eks::operation::create_access_entry::{
    CreateAccessEntryError, CreateAccessEntryOutput,
};
use aws_sdk_eks::operation::create_cluster::CreateClusterOutput;
use aws_sdk_eks::operation::describe_cluster::{DescribeClusterError, DescribeClusterOutput};
use aws_sdk_eks::types::{
    AccessScopeType, AuthenticationMode, Certificate, Cluster, ClusterStatus, VpcConfigResponse,
};
use aws_smithy_mocks::{mock, MockResponse, Rule};
use bmac_core::provider::Observed;
use bmac_core::{Inputs, Outputs};
use bmac_providers::aws::addon::EksAddon;
use bmac_providers::aws::cluster::Cluster as EksCluster;
use bmac_providers::aws::pod_identity::PodIdentity;
use bmac_providers::aws::Clients;
use bmac_steps::config::{
    AddonConfig, ClusterConfig, EndpointAccess, IdentityBindingConfig, INPUT_KEY, INPUT_ROLE,
    INPUT_SUBNETS,
};
use bmac_steps::kinds;
use serde_json::json;

const CLUSTER: &str = "mocked";
const ROLE: &str = "arn:aws:iam::123456789012:role/bmac-mocked-vpc-cni";
const OTHER_ROLE: &str = "arn:aws:iam::123456789012:role/someone-elses";

fn cluster_rules(fake: &Shared) -> Vec<Rule> {
    let f = fake.clone();
    let describe = mock!(aws_sdk_eks::Client::describe_cluster).then_compute_response(move |_| {
        let f = f.lock().unwrap();
        match &f.cluster {
            Some(c) => {
                MockResponse::Output(DescribeClusterOutput::builder().cluster(c.clone()).build())
            }
            None => {
                MockResponse::Error(DescribeClusterError::ResourceNotFoundException(not_found()))
            }
        }
    });
    let f = fake.clone();
    let create = mock!(aws_sdk_eks::Client::create_cluster).then_compute_output(move |r| {
        let mut f = f.lock().unwrap();
        f.mutations
            .push(format!("CreateCluster {}", r.name().unwrap_or_default()));
        // Access entries, not the aws-auth ConfigMap; the creator is an admin from the start.
        let access = r.access_config().expect("access config");
        assert_eq!(access.authentication_mode(), Some(&AuthenticationMode::Api));
        assert_eq!(
            access.bootstrap_cluster_creator_admin_permissions(),
            Some(true)
        );
        let key = r
            .encryption_config()
            .first()
            .and_then(|e| e.provider())
            .and_then(|p| p.key_arn());
        assert_eq!(key, Some("arn:aws:kms:us-east-1:123456789012:key/k"));
        let c = Cluster::builder()
            .name(CLUSTER)
            .arn(format!(
                "arn:aws:eks:us-east-1:123456789012:cluster/{CLUSTER}"
            ))
            .endpoint("https://ABC.gr7.us-east-1.eks.amazonaws.com")
            .certificate_authority(Certificate::builder().data("Q0E=").build())
            .status(ClusterStatus::Active)
            .version("1.30")
            .resources_vpc_config(
                VpcConfigResponse::builder()
                    .set_endpoint_public_access(
                        r.resources_vpc_config()
                            .and_then(|v| v.endpoint_public_access()),
                    )
                    .set_endpoint_private_access(
                        r.resources_vpc_config()
                            .and_then(|v| v.endpoint_private_access()),
                    )
                    .build(),
            )
            .build();
        f.cluster = Some(c.clone());
        CreateClusterOutput::builder().cluster(c).build()
    });
    let f = fake.clone();
    let entry = mock!(aws_sdk_eks::Client::create_access_entry).then_compute_response(move |r| {
        let mut f = f.lock().unwrap();
        let principal = r.principal_arn().unwrap_or_default().to_owned();
        f.mutations.push(format!("CreateAccessEntry {principal}"));
        if f.access_entries.contains(&principal) {
            return MockResponse::Error(CreateAccessEntryError::ResourceInUseException(in_use()));
        }
        f.access_entries.push(principal);
        MockResponse::Output(CreateAccessEntryOutput::builder().build())
    });
    let f = fake.clone();
    let policy =
        mock!(aws_sdk_eks::Client::associate_access_policy).then_compute_output(move |r| {
            let mut f = f.lock().unwrap();
            let principal = r.principal_arn().unwrap_or_default().to_owned();
            assert!(
                f.access_entries.contains(&principal),
                "a policy needs its access entry first"
            );
            f.mutations
                .push(format!("AssociateAccessPolicy {principal}"));
            let scope = r
                .access_scope()
                .and_then(|s| s.r#type())
                .cloned()
                .expect("scope");
            f.policies.push((
                principal,
                r.policy_arn().unwrap_or_default().to_owned(),
                scope,
            ));
            AssociateAccessPolicyOutput::builder().build()
        });
    vec![describe, create, entry, policy]
}

/// Clients whose EKS client is the fake; every other service points at a loopback port
/// nothing answers (none is called by these handlers).
async fn clients(fake: &Shared) -> Clients {
    let mut clients = offline_clients(CLUSTER, "us-east-1");
    clients.eks = eks_fake::client(fake, cluster_rules(fake));
    clients
}

fn mutations(fake: &Shared) -> Vec<String> {
    Fake::take_mutations(fake)
}

fn vpc_cni(configuration: serde_json::Value) -> AddonConfig {
    AddonConfig {
        cluster: CLUSTER.into(),
        name: "vpc-cni".into(),
        version: None,
        configuration: serde_json::from_value(configuration).unwrap(),
        namespace: "kube-system".into(),
        service_account: "aws-node".into(),
        preserve: true,
    }
}

#[tokio::test(start_paused = true)]
async fn eks_addon_with_its_pod_identity_role_is_created_adopted_updated_and_preserved_on_mocks() {
    let fake = Fake::new(CLUSTER);
    let aws = clients(&fake).await;
    let config = vpc_cni(json!({"env": {"ENABLE_PREFIX_DELEGATION": "true"}}));
    let s = step("cni", kinds::ADDON, &config);
    let role = inputs(&[(INPUT_ROLE, json!(ROLE))]);

    // Create: waits through CREATING (the fake answers it twice) until ACTIVE.
    let out = apply(&EksAddon, &aws, &s, &role).await.unwrap();
    assert_eq!(mutations(&fake), ["CreateAddon vpc-cni"]);
    assert_eq!(out.str("version"), Some("v1.19.0-eksbuild.1"));
    {
        let f = fake.lock().unwrap();
        let a = &f.addons["vpc-cni"];
        let values: serde_json::Value =
            serde_json::from_str(a.configuration_values().unwrap()).unwrap();
        assert_eq!(values, json!({"env": {"ENABLE_PREFIX_DELEGATION": "true"}}));
        let bound = a.pod_identity_associations();
        assert_eq!(bound.len(), 1);
        assert!(bound[0].ends_with(&format!("aws-node:{ROLE}")), "{bound:?}");
    }

    // Applying again (a step left in doubt) adopts what is there and changes nothing.
    apply(&EksAddon, &aws, &s, &role).await.unwrap();
    assert_eq!(mutations(&fake), Vec::<String>::new());
    let Observed::Present { config: seen, .. } = observe(&EksAddon, &aws, &s, &role).await else {
        panic!("absent")
    };
    assert_eq!(seen, s.config.value().clone(), "no drift right after apply");

    // A hand-deleted association and changed values are drift, and apply restores both
    // with one UpdateAddon that waits for its update.
    {
        let mut f = fake.lock().unwrap();
        let a = f.addons.get_mut("vpc-cni").unwrap();
        a.pod_identity_associations = Some(Vec::new());
        a.configuration_values = Some("{\"env\":{\"WARM_IP_TARGET\":\"5\"}}".into());
    }
    let Observed::Present { config: seen, .. } = observe(&EksAddon, &aws, &s, &role).await else {
        panic!("absent")
    };
    assert_eq!(seen["service_account"], serde_json::Value::Null);
    assert_eq!(
        seen["configuration"],
        json!({"env": {"WARM_IP_TARGET": "5"}})
    );
    apply(&EksAddon, &aws, &s, &role).await.unwrap();
    assert_eq!(mutations(&fake), ["UpdateAddon vpc-cni"]);
    let Observed::Present { config: seen, .. } = observe(&EksAddon, &aws, &s, &role).await else {
        panic!("absent")
    };
    assert_eq!(seen, s.config.value().clone());

    // Settings removed from the spec are cleared (`{}`), not left behind.
    let cleared = step("cni", kinds::ADDON, &vpc_cni(json!({})));
    apply(&EksAddon, &aws, &cleared, &role).await.unwrap();
    assert_eq!(mutations(&fake), ["UpdateAddon vpc-cni"]);
    assert_eq!(
        fake.lock().unwrap().addons["vpc-cni"].configuration_values(),
        Some("{}")
    );

    // Destroy keeps the CNI's software running (preserve), and gone is success.
    destroy(&EksAddon, &aws, &cleared, &role, Outputs::new())
        .await
        .unwrap();
    assert_eq!(
        mutations(&fake),
        ["DeleteAddon vpc-cni preserve=Some(true)"]
    );
    destroy(&EksAddon, &aws, &cleared, &role, Outputs::new())
        .await
        .unwrap();
    assert!(matches!(
        observe(&EksAddon, &aws, &cleared, &role).await,
        Observed::Absent
    ));
}

#[tokio::test]
async fn an_addon_without_a_role_input_is_refused_before_any_call_on_mocks() {
    let fake = Fake::new(CLUSTER);
    let aws = clients(&fake).await;
    let s = step("cni", kinds::ADDON, &vpc_cni(json!({})));
    let err = apply(&EksAddon, &aws, &s, &Inputs::default())
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.message.contains("role"), "{}", err.message);
    assert!(mutations(&fake).is_empty());
}

#[tokio::test]
async fn pod_identity_association_is_created_once_moved_to_the_spec_role_and_deleted_on_mocks() {
    let fake = Fake::new(CLUSTER);
    let aws = clients(&fake).await;
    let config = IdentityBindingConfig {
        cluster: CLUSTER.into(),
        namespace: "payments".into(),
        service_account: "api".into(),
    };
    let s = step(
        "workload_identity.payments-api.binding",
        kinds::IDENTITY_BINDING,
        &config,
    );
    let role = inputs(&[(INPUT_ROLE, json!(ROLE))]);

    let out = apply(&PodIdentity, &aws, &s, &role).await.unwrap();
    assert_eq!(
        mutations(&fake),
        ["CreatePodIdentityAssociation payments/api"]
    );
    assert_eq!(out.str("role"), Some(ROLE));
    // Again: found by namespace and service account, nothing created twice.
    apply(&PodIdentity, &aws, &s, &role).await.unwrap();
    assert!(mutations(&fake).is_empty());
    assert_eq!(fake.lock().unwrap().associations.len(), 1);

    // Someone binds the account to another role: drift, and apply moves it back in place.
    fake.lock().unwrap().associations[0].role_arn = Some(OTHER_ROLE.into());
    let Observed::Present {
        config: seen,
        outputs,
    } = observe(&PodIdentity, &aws, &s, &role).await
    else {
        panic!("absent")
    };
    assert_eq!(seen["service_account"], serde_json::Value::Null);
    assert_eq!(outputs.str("role"), Some(OTHER_ROLE));
    apply(&PodIdentity, &aws, &s, &role).await.unwrap();
    let done = mutations(&fake);
    assert_eq!(done.len(), 1);
    assert!(
        done[0].starts_with("UpdatePodIdentityAssociation a-"),
        "{done:?}"
    );
    assert_eq!(fake.lock().unwrap().associations[0].role_arn(), Some(ROLE));

    destroy(&PodIdentity, &aws, &s, &role, out).await.unwrap();
    assert!(fake.lock().unwrap().associations.is_empty());
    destroy(&PodIdentity, &aws, &s, &role, Outputs::new())
        .await
        .unwrap();
    assert_eq!(
        mutations(&fake).len(),
        1,
        "a second destroy finds nothing to delete"
    );
}

#[tokio::test]
async fn cluster_uses_access_entries_and_makes_each_admin_a_cluster_admin_on_mocks() {
    let fake = Fake::new(CLUSTER);
    let aws = clients(&fake).await;
    let admins = [
        "arn:aws:iam::123456789012:role/platform-admins",
        "arn:aws:iam::123456789012:user/oncall",
    ];
    let config = ClusterConfig {
        name: CLUSTER.into(),
        provider: "eks".into(),
        region: Some("us-east-1".into()),
        version: Some("1.30".into()),
        endpoint: EndpointAccess {
            public: false,
            public_cidrs: Vec::new(),
            private: true,
        },
        log_types: Vec::new(),
        kubeconfig: None,
        context: None,
        account: None,
        admins: admins.iter().map(|a| (*a).to_owned()).collect(),
        datapath: None,
        network_policy: None,
    };
    let s = step("cluster", kinds::CLUSTER, &config);
    let given = inputs(&[
        (
            INPUT_ROLE,
            json!("arn:aws:iam::123456789012:role/bmac-mocked-cluster"),
        ),
        (INPUT_SUBNETS, json!(["subnet-a", "subnet-b"])),
        (INPUT_KEY, json!("arn:aws:kms:us-east-1:123456789012:key/k")),
    ]);
    let out = apply(&EksCluster, &aws, &s, &given).await.unwrap();
    assert_eq!(
        mutations(&fake),
        [
            format!("CreateCluster {CLUSTER}"),
            format!("CreateAccessEntry {}", admins[0]),
            format!("AssociateAccessPolicy {}", admins[0]),
            format!("CreateAccessEntry {}", admins[1]),
            format!("AssociateAccessPolicy {}", admins[1]),
        ]
    );
    let policies = fake.lock().unwrap().policies.clone();
    for (admin, (principal, policy, scope)) in admins.iter().zip(&policies) {
        assert_eq!(principal, admin);
        assert_eq!(
            policy,
            "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
        );
        assert_eq!(scope, &AccessScopeType::Cluster);
    }
    assert_eq!(
        out.str("endpoint"),
        Some("https://ABC.gr7.us-east-1.eks.amazonaws.com")
    );

    // An entry that already exists (a run that stopped after creating it) is adopted: the
    // policy is still associated, and nothing fails.
    fake.lock().unwrap().policies.clear();
    apply(&EksCluster, &aws, &s, &given).await.unwrap();
    assert_eq!(fake.lock().unwrap().policies.len(), 2);
    assert!(!mutations(&fake)
        .iter()
        .any(|m| m.starts_with("CreateCluster")));
}
