//! A small stateful fake of the EKS operations moto 5.2 does not implement — add-ons
//! (`CreateAddon`, `DescribeAddon`, `UpdateAddon`, `DeleteAddon`, their `DescribeUpdate`) and
//! Pod Identity associations (create, list, describe, update, delete) — as **aws-smithy-mocks**
//! rules on the real aws-sdk-eks request and response types. It checks what EKS requires of
//! each request, keeps what was created (so adoption, updates and destroy meet state, not
//! canned answers) and records every mutating call.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_eks::operation::create_addon::{CreateAddonError, CreateAddonOutput};
use aws_sdk_eks::operation::create_pod_identity_association::{
    CreatePodIdentityAssociationError, CreatePodIdentityAssociationOutput,
};
use aws_sdk_eks::operation::delete_addon::DeleteAddonOutput;
use aws_sdk_eks::operation::delete_pod_identity_association::DeletePodIdentityAssociationOutput;
use aws_sdk_eks::operation::describe_addon::{DescribeAddonError, DescribeAddonOutput};
use aws_sdk_eks::operation::describe_pod_identity_association::{
    DescribePodIdentityAssociationError, DescribePodIdentityAssociationOutput,
};
use aws_sdk_eks::operation::describe_update::DescribeUpdateOutput;
use aws_sdk_eks::operation::list_pod_identity_associations::ListPodIdentityAssociationsOutput;
use aws_sdk_eks::operation::update_addon::UpdateAddonOutput;
use aws_sdk_eks::operation::update_pod_identity_association::UpdatePodIdentityAssociationOutput;
use aws_sdk_eks::types::error::{ResourceInUseException, ResourceNotFoundException};
use aws_sdk_eks::types::{
    AccessScopeType, Addon, AddonStatus, Cluster, PodIdentityAssociation,
    PodIdentityAssociationSummary, ResolveConflicts, Update, UpdateStatus,
};
use aws_smithy_mocks::{mock, mock_client, MockResponse, Rule, RuleMode};
use aws_smithy_types::error::ErrorMetadata;

/// What the fake EKS holds, and every mutating call it received (`Op target`).
#[derive(Default)]
pub struct Fake {
    /// The cluster every call must name.
    pub name: String,
    pub addons: BTreeMap<String, Addon>,
    /// Add-on → how many `DescribeAddon`s still answer `CREATING` after a create.
    pub creating: BTreeMap<String, u32>,
    pub associations: Vec<PodIdentityAssociation>,
    pub cluster: Option<Cluster>,
    pub access_entries: Vec<String>,
    pub policies: Vec<(String, String, AccessScopeType)>,
    pub mutations: Vec<String>,
    pub next_id: u32,
}

/// The fake, shared between its mock rules and the test.
pub type Shared = Arc<Mutex<Fake>>;

impl Fake {
    /// An empty fake EKS for cluster `name`.
    pub fn new(name: &str) -> Shared {
        Arc::new(Mutex::new(Fake {
            name: name.to_owned(),
            ..Fake::default()
        }))
    }

    /// The mutating calls so far (`Op target`), taken.
    pub fn take_mutations(fake: &Shared) -> Vec<String> {
        std::mem::take(&mut fake.lock().unwrap().mutations)
    }
}

pub fn meta(code: &str) -> ErrorMetadata {
    ErrorMetadata::builder()
        .code(code)
        .message("the fake EKS says so")
        .build()
}

pub fn not_found() -> ResourceNotFoundException {
    ResourceNotFoundException::builder()
        .message("not found")
        .meta(meta("ResourceNotFoundException"))
        .build()
}

pub fn in_use() -> ResourceInUseException {
    ResourceInUseException::builder()
        .message("already exists")
        .meta(meta("ResourceInUseException"))
        .build()
}

pub fn addon_rules(fake: &Shared) -> Vec<Rule> {
    let f = fake.clone();
    let describe = mock!(aws_sdk_eks::Client::describe_addon).then_compute_response(move |r| {
        let mut f = f.lock().unwrap();
        let name = r.addon_name().unwrap_or_default().to_owned();
        let creating = f.creating.get(&name).copied().unwrap_or(0);
        if creating > 0 {
            f.creating.insert(name.clone(), creating - 1);
        }
        match f.addons.get(&name) {
            Some(a) => {
                let status = if creating > 0 {
                    AddonStatus::Creating
                } else {
                    AddonStatus::Active
                };
                let mut a = a.clone();
                a.status = Some(status);
                MockResponse::Output(DescribeAddonOutput::builder().addon(a).build())
            }
            None => MockResponse::Error(DescribeAddonError::ResourceNotFoundException(not_found())),
        }
    });
    let f = fake.clone();
    let create = mock!(aws_sdk_eks::Client::create_addon).then_compute_response(move |r| {
        let mut f = f.lock().unwrap();
        let name = r.addon_name().unwrap_or_default().to_owned();
        f.mutations.push(format!("CreateAddon {name}"));
        assert_eq!(r.cluster_name(), Some(f.name.as_str()));
        // A new cluster runs a self-managed aws-node: taking it over needs OVERWRITE.
        assert_eq!(r.resolve_conflicts(), Some(&ResolveConflicts::Overwrite));
        if f.addons.contains_key(&name) {
            return MockResponse::Error(CreateAddonError::ResourceInUseException(in_use()));
        }
        if let Some(v) = r.configuration_values() {
            serde_json::from_str::<serde_json::Value>(v).expect("configuration values are JSON");
        }
        let associations: Vec<String> = r
            .pod_identity_associations()
            .iter()
            .map(|a| {
                format!(
                    "arn:aws:eks:us-east-1:123456789012:podidentityassociation/{}/a-{}:{}:{}",
                    f.name,
                    name,
                    a.service_account(),
                    a.role_arn()
                )
            })
            .collect();
        let addon = Addon::builder()
            .addon_name(&name)
            .cluster_name(&f.name)
            .addon_arn(format!(
                "arn:aws:eks:us-east-1:123456789012:addon/{}/{name}/x",
                f.name
            ))
            .addon_version(r.addon_version().unwrap_or("v1.19.0-eksbuild.1"))
            .set_configuration_values(r.configuration_values().map(str::to_owned))
            .set_pod_identity_associations(Some(associations))
            .status(AddonStatus::Creating)
            .build();
        f.addons.insert(name.clone(), addon.clone());
        f.creating.insert(name, 2);
        MockResponse::Output(CreateAddonOutput::builder().addon(addon).build())
    });
    let f = fake.clone();
    let update = mock!(aws_sdk_eks::Client::update_addon).then_compute_output(move |r| {
        let mut f = f.lock().unwrap();
        let name = r.addon_name().unwrap_or_default().to_owned();
        f.mutations.push(format!("UpdateAddon {name}"));
        assert_eq!(r.resolve_conflicts(), Some(&ResolveConflicts::Overwrite));
        let a = f
            .addons
            .get_mut(&name)
            .expect("update of an add-on that exists");
        if let Some(v) = r.addon_version() {
            a.addon_version = Some(v.to_owned());
        }
        a.configuration_values = r.configuration_values().map(str::to_owned);
        if !r.pod_identity_associations().is_empty() {
            a.pod_identity_associations = Some(vec![format!("assoc-of-{name}")]);
        }
        UpdateAddonOutput::builder()
            .update(
                Update::builder()
                    .id("update-1")
                    .status(UpdateStatus::InProgress)
                    .build(),
            )
            .build()
    });
    let describe_update = mock!(aws_sdk_eks::Client::describe_update)
        .match_requests(|r| r.update_id() == Some("update-1") && r.addon_name().is_some())
        .then_output(|| {
            DescribeUpdateOutput::builder()
                .update(
                    Update::builder()
                        .id("update-1")
                        .status(UpdateStatus::Successful)
                        .build(),
                )
                .build()
        });
    let f = fake.clone();
    let delete = mock!(aws_sdk_eks::Client::delete_addon).then_compute_output(move |r| {
        let mut f = f.lock().unwrap();
        let name = r.addon_name().unwrap_or_default().to_owned();
        f.mutations
            .push(format!("DeleteAddon {name} preserve={:?}", r.preserve()));
        f.addons.remove(&name);
        DeleteAddonOutput::builder().build()
    });
    vec![describe, create, update, describe_update, delete]
}

pub fn association_rules(fake: &Shared) -> Vec<Rule> {
    let f = fake.clone();
    let list =
        mock!(aws_sdk_eks::Client::list_pod_identity_associations).then_compute_output(move |r| {
            let f = f.lock().unwrap();
            let summaries = f
                .associations
                .iter()
                .filter(|a| {
                    r.namespace().is_none_or(|ns| a.namespace() == Some(ns))
                        && r.service_account()
                            .is_none_or(|sa| a.service_account() == Some(sa))
                })
                .map(|a| {
                    PodIdentityAssociationSummary::builder()
                        .cluster_name(&f.name)
                        .set_namespace(a.namespace().map(str::to_owned))
                        .set_service_account(a.service_account().map(str::to_owned))
                        .set_association_id(a.association_id().map(str::to_owned))
                        .set_association_arn(a.association_arn().map(str::to_owned))
                        .build()
                })
                .collect();
            ListPodIdentityAssociationsOutput::builder()
                .set_associations(Some(summaries))
                .build()
        });
    let f = fake.clone();
    let describe = mock!(aws_sdk_eks::Client::describe_pod_identity_association)
        .then_compute_response(move |r| {
            let f = f.lock().unwrap();
            match f
                .associations
                .iter()
                .find(|a| a.association_id() == r.association_id())
            {
                Some(a) => MockResponse::Output(
                    DescribePodIdentityAssociationOutput::builder()
                        .association(a.clone())
                        .build(),
                ),
                None => MockResponse::Error(
                    DescribePodIdentityAssociationError::ResourceNotFoundException(not_found()),
                ),
            }
        });
    let f = fake.clone();
    let create = mock!(aws_sdk_eks::Client::create_pod_identity_association).then_compute_response(
        move |r| {
            let mut f = f.lock().unwrap();
            let (ns, sa) = (
                r.namespace().unwrap_or_default(),
                r.service_account().unwrap_or_default(),
            );
            f.mutations
                .push(format!("CreatePodIdentityAssociation {ns}/{sa}"));
            // EKS keeps one association per service account.
            if f.associations
                .iter()
                .any(|a| a.namespace() == Some(ns) && a.service_account() == Some(sa))
            {
                return MockResponse::Error(
                    CreatePodIdentityAssociationError::ResourceInUseException(in_use()),
                );
            }
            f.next_id += 1;
            let id = format!("a-{:017}", f.next_id);
            let a = PodIdentityAssociation::builder()
                .cluster_name(&f.name)
                .namespace(ns)
                .service_account(sa)
                .set_role_arn(r.role_arn().map(str::to_owned))
                .association_id(&id)
                .association_arn(format!(
                    "arn:aws:eks:us-east-1:123456789012:podidentityassociation/{}/{id}",
                    f.name
                ))
                .build();
            f.associations.push(a.clone());
            MockResponse::Output(
                CreatePodIdentityAssociationOutput::builder()
                    .association(a)
                    .build(),
            )
        },
    );
    let f = fake.clone();
    let update =
        mock!(aws_sdk_eks::Client::update_pod_identity_association).then_compute_output(move |r| {
            let mut f = f.lock().unwrap();
            let id = r.association_id().unwrap_or_default().to_owned();
            f.mutations
                .push(format!("UpdatePodIdentityAssociation {id}"));
            let a = f
                .associations
                .iter_mut()
                .find(|a| a.association_id() == Some(id.as_str()))
                .expect("update of an association that exists");
            a.role_arn = r.role_arn().map(str::to_owned);
            UpdatePodIdentityAssociationOutput::builder()
                .association(a.clone())
                .build()
        });
    let f = fake.clone();
    let delete =
        mock!(aws_sdk_eks::Client::delete_pod_identity_association).then_compute_output(move |r| {
            let mut f = f.lock().unwrap();
            let id = r.association_id().unwrap_or_default().to_owned();
            f.mutations
                .push(format!("DeletePodIdentityAssociation {id}"));
            f.associations
                .retain(|a| a.association_id() != Some(id.as_str()));
            DeletePodIdentityAssociationOutput::builder().build()
        });
    vec![list, describe, create, update, delete]
}

/// An EKS client answered by the fake's add-on and association rules, then `extra`.
pub fn client(fake: &Shared, extra: Vec<Rule>) -> aws_sdk_eks::Client {
    let mut rules = addon_rules(fake);
    rules.extend(association_rules(fake));
    rules.extend(extra);
    mock_client!(aws_sdk_eks, RuleMode::MatchAny, rules.iter())
}
