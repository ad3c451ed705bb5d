//! `iam_role` and `identity_binding` on Google Cloud: Google service accounts and the IAM
//! bindings that let a Kubernetes service account act as one (GKE Workload Identity).
//!
//! `iam_role` is a Google service account (GSA), `ACCOUNT_ID@PROJECT.iam.gserviceaccount.com`
//! with the step's `name` as its account id — created, or the `existing` one (an email) used as
//! it is. A created account is granted, on the project's IAM policy, the predefined roles of
//! its config: `managed` (a node pool's account gets GKE's least-privilege node roles there,
//! instead of Compute Engine's default account, which holds Editor) and `permissions` (the
//! `roles/…` a workload identity asks for). Roles a previous apply granted and the config no
//! longer names are revoked; nothing else on the project's policy is touched
//! ([`super::iam_policy`]). Observe reports which of the config's roles are still bound, so a
//! binding removed by hand is drift that apply restores. Destroy revokes the roles, then deletes
//! the account (an `existing` one is left alone). Output `arn`: the account's email.
//!
//! `identity_binding` grants `roles/iam.workloadIdentityUser` on the GSA of input `role` to
//! `serviceAccount:PROJECT.svc.id.goog[NAMESPACE/KSA]` — the member of the cluster's workload
//! identity pool, which exists once the cluster does. Destroy revokes that one member.
//!
//! IAM is eventually consistent: a grant to an account created seconds ago can be refused with
//! `INVALID_ARGUMENT` "… does not exist"; that answer is retryable here, as Terraform retries it.
//! Policies are read at version 3 so conditional bindings someone else made survive the write.

use async_trait::async_trait;
use bmac_core::provider::{ApplyRequest, DestroyRequest, ObserveRequest, Observed};
use bmac_core::{Outputs, ProviderError};
use bmac_steps::config::{IamRoleConfig, IdentityBindingConfig, INPUT_ROLE, OUTPUT_ARN};
use google_cloud_iam_admin_v1::model::ServiceAccount;
use google_cloud_iam_v1::model::{GetPolicyOptions, Policy};
use serde_json::json;

use super::error::{created, found, Context as _, Status};
use super::iam_policy::{self, Change};
use super::{Clients, Handler};
use crate::cloud::{input_str, Boxed};

/// The role that lets a workload identity pool member act as a service account.
pub const WORKLOAD_IDENTITY_USER: &str = "roles/iam.workloadIdentityUser";

/// The `iam_role` handler.
pub struct Role;

/// The `identity_binding` handler.
pub struct Binding;

/// The email of the account `c` names.
fn email(gcp: &Clients, c: &IamRoleConfig) -> String {
    c.existing
        .clone()
        .unwrap_or_else(|| format!("{}@{}.iam.gserviceaccount.com", c.name, gcp.project))
}

/// `projects/P/serviceAccounts/EMAIL`.
fn account_path(gcp: &Clients, email: &str) -> String {
    format!("projects/{}/serviceAccounts/{email}", gcp.project)
}

/// The roles granted on the project for `c` (none for an existing account).
fn roles(c: &IamRoleConfig) -> Vec<String> {
    if c.existing.is_some() {
        return Vec::new();
    }
    let mut roles: Vec<String> = c.managed.iter().chain(&c.permissions).cloned().collect();
    roles.sort();
    roles.dedup();
    roles
}

fn outputs(email: &str) -> Outputs {
    Outputs::new().with(OUTPUT_ARN, email).with("email", email)
}

async fn get_account(gcp: &Clients, email: &str) -> Result<Option<ServiceAccount>, ProviderError> {
    found(
        gcp.iam
            .get_service_account()
            .set_name(account_path(gcp, email))
            .send()
            .boxed()
            .await,
        "iam.serviceAccounts.get",
        &format!("service account {email}"),
    )
}

/// Version 3, so conditional bindings come back whole.
fn v3() -> GetPolicyOptions {
    GetPolicyOptions::new().set_requested_policy_version(3)
}

/// The project's IAM policy (version 3).
pub(crate) async fn project_policy(
    gcp: &Clients,
) -> Result<Policy, google_cloud_gax::error::Error> {
    gcp.projects
        .get_iam_policy()
        .set_resource(format!("projects/{}", gcp.project))
        .set_options(v3())
        .send()
        .boxed()
        .await
}

/// Applies `changes` to the project's policy (the write names `auditConfigs` when a change is
/// to them: Google keeps the old audit configs otherwise).
pub(crate) async fn edit_project(gcp: &Clients, changes: &[Change]) -> Result<bool, ProviderError> {
    let resource = format!("projects/{}", gcp.project);
    let mask: &[&str] = if changes.iter().any(Change::is_audit) {
        &["bindings", "etag", "auditConfigs"]
    } else {
        &["bindings", "etag"]
    };
    iam_policy::edit(
        &format!("project {}", gcp.project),
        changes,
        || project_policy(gcp),
        |p| {
            gcp.projects
                .set_iam_policy()
                .set_resource(&resource)
                .set_policy(p)
                .set_update_mask(
                    google_cloud_wkt::FieldMask::default().set_paths(mask.iter().copied()),
                )
                .send()
                .boxed()
        },
    )
    .boxed()
    .await
    .map_err(not_yet_visible)
}

/// Applies `changes` to the policy of service account `email`.
async fn edit_account(
    gcp: &Clients,
    email: &str,
    changes: &[Change],
) -> Result<bool, ProviderError> {
    let resource = account_path(gcp, email);
    iam_policy::edit(
        &format!("service account {email}"),
        changes,
        || {
            gcp.iam
                .get_iam_policy()
                .set_resource(&resource)
                .set_options(v3())
                .send()
                .boxed()
        },
        |p| {
            gcp.iam
                .set_iam_policy()
                .set_resource(&resource)
                .set_policy(p)
                .send()
                .boxed()
        },
    )
    .boxed()
    .await
    .map_err(not_yet_visible)
}

/// A grant to a member IAM does not know yet (a just-created account, a pool whose cluster is
/// seconds old) is refused as `INVALID_ARGUMENT` "… does not exist": retryable.
fn not_yet_visible(e: ProviderError) -> ProviderError {
    if e.code.as_deref() == Some("INVALID_ARGUMENT") && e.message.contains("does not exist") {
        ProviderError::retryable(e.message).with_code("INVALID_ARGUMENT")
    } else {
        e
    }
}

fn member_of(email: &str) -> String {
    format!("serviceAccount:{email}")
}

#[async_trait]
impl Handler<Clients> for Role {
    async fn apply(&self, gcp: &Clients, req: &ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let c: IamRoleConfig = super::config(req.step)?;
        let email = email(gcp, &c);
        if get_account(gcp, &email).boxed().await?.is_none() {
            if c.existing.is_some() {
                return Err(ProviderError::permanent(format!(
                    "the existing service account {email} does not exist (or the credentials in use cannot see it)"
                ))
                .with_code("NOT_FOUND"));
            }
            created(
                gcp.iam
                    .create_service_account()
                    .set_name(format!("projects/{}", gcp.project))
                    .set_account_id(&c.name)
                    .set_service_account(
                        ServiceAccount::new()
                            .set_display_name(format!("bmac {}", req.step.id))
                            .set_description(format!(
                                "bmac: step {} of cluster {}",
                                req.step.id, gcp.cluster
                            )),
                    )
                    .send()
                    .boxed()
                    .await,
                "iam.serviceAccounts.create",
                &format!("service account {email}"),
            )?;
        }
        let member = member_of(&email);
        let want = roles(&c);
        let before: Vec<String> = req
            .prior
            .and_then(|p| serde_json::from_value::<IamRoleConfig>(p.config().clone()).ok())
            .map(|p| roles(&p))
            .unwrap_or_default();
        let mut changes: Vec<Change> = before
            .iter()
            .filter(|r| !want.contains(r))
            .map(|role| Change::Revoke {
                role: role.clone(),
                member: member.clone(),
            })
            .collect();
        changes.extend(want.iter().map(|role| Change::Grant {
            role: role.clone(),
            member: member.clone(),
        }));
        if !changes.is_empty() {
            edit_project(gcp, &changes).boxed().await?;
        }
        Ok(outputs(&email))
    }

    async fn observe(
        &self,
        gcp: &Clients,
        req: &ObserveRequest<'_>,
    ) -> Result<Observed, ProviderError> {
        let c: IamRoleConfig = super::config(req.step)?;
        let email = email(gcp, &c);
        if get_account(gcp, &email).boxed().await?.is_none() {
            return Ok(Observed::Absent);
        }
        let mut config = serde_json::to_value(&c).unwrap_or_default();
        if c.existing.is_none() {
            let policy = project_policy(gcp).await.on(
                "resourcemanager.projects.getIamPolicy",
                &format!("project {}", gcp.project),
            )?;
            let member = member_of(&email);
            let bound = |r: &String| iam_policy::has(&policy, r, &member);
            for field in ["managed", "permissions"] {
                let list: &Vec<String> = if field == "managed" {
                    &c.managed
                } else {
                    &c.permissions
                };
                if !list.is_empty() {
                    config[field] = json!(list.iter().filter(|r| bound(r)).collect::<Vec<_>>());
                }
            }
        }
        Ok(Observed::Present {
            config,
            outputs: outputs(&email),
        })
    }

    async fn destroy(&self, gcp: &Clients, req: &DestroyRequest<'_>) -> Result<(), ProviderError> {
        let c: IamRoleConfig = super::config(req.step)?;
        if c.existing.is_some() {
            return Ok(());
        }
        let email = email(gcp, &c);
        let member = member_of(&email);
        let revoke: Vec<Change> = roles(&c)
            .into_iter()
            .map(|role| Change::Revoke {
                role,
                member: member.clone(),
            })
            .collect();
        if !revoke.is_empty() {
            edit_project(gcp, &revoke).boxed().await?;
        }
        match gcp
            .iam
            .delete_service_account()
            .set_name(account_path(gcp, &email))
            .send()
            .boxed()
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if Status::of(&e) == Status::NotFound => Ok(()),
            Err(e) => Err(super::error::classify(
                "iam.serviceAccounts.delete",
                &format!("service account {email}"),
                e,
            )),
        }
    }
}

/// The member of the cluster's workload identity pool that `c` binds.
fn pool_member(gcp: &Clients, c: &IdentityBindingConfig) -> String {
    format!(
        "serviceAccount:{}.svc.id.goog[{}/{}]",
        gcp.project, c.namespace, c.service_account
    )
}

#[async_trait]
impl Handler<Clients> for Binding {
    async fn apply(&self, gcp: &Clients, req: &ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let c: IdentityBindingConfig = super::config(req.step)?;
        let email = input_str(req.inputs, INPUT_ROLE)?;
        let member = pool_member(gcp, &c);
        let grant = Change::Grant {
            role: WORKLOAD_IDENTITY_USER.to_owned(),
            member: member.clone(),
        };
        edit_account(gcp, email, &[grant]).boxed().await?;
        Ok(Outputs::new()
            .with("member", member)
            .with(OUTPUT_ARN, email))
    }

    async fn observe(
        &self,
        gcp: &Clients,
        req: &ObserveRequest<'_>,
    ) -> Result<Observed, ProviderError> {
        let c: IdentityBindingConfig = super::config(req.step)?;
        let Some(email) = req.inputs.str(INPUT_ROLE) else {
            return Ok(Observed::Absent);
        };
        let member = pool_member(gcp, &c);
        let policy = found(
            gcp.iam
                .get_iam_policy()
                .set_resource(account_path(gcp, email))
                .set_options(v3())
                .send()
                .boxed()
                .await,
            "iam.serviceAccounts.getIamPolicy",
            &format!("service account {email}"),
        )?;
        match policy {
            Some(p) if iam_policy::has(&p, WORKLOAD_IDENTITY_USER, &member) => {
                Ok(Observed::Present {
                    config: req.step.config.value().clone(),
                    outputs: Outputs::new()
                        .with("member", member)
                        .with(OUTPUT_ARN, email),
                })
            }
            _ => Ok(Observed::Absent),
        }
    }

    async fn destroy(&self, gcp: &Clients, req: &DestroyRequest<'_>) -> Result<(), ProviderError> {
        let c: IdentityBindingConfig = super::config(req.step)?;
        let email = match req.inputs.str(INPUT_ROLE) {
            Some(e) => e.to_owned(),
            None => match req.prior.outputs().str(OUTPUT_ARN) {
                Some(e) => e.to_owned(),
                None => return Ok(()),
            },
        };
        if get_account(gcp, &email).boxed().await?.is_none() {
            return Ok(());
        }
        let revoke = Change::Revoke {
            role: WORKLOAD_IDENTITY_USER.to_owned(),
            member: pool_member(gcp, &c),
        };
        edit_account(gcp, &email, &[revoke])
            .boxed()
            .await
            .map(|_| ())
    }
}
