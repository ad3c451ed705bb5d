//! The longer phases of the `existing_cluster_lifecycle` scenario: what the first apply must
//! have built (read back with kube-rs), a hand edit as `kubectl label` makes it, and an apply
//! killed mid-run then resumed.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde_json::json;

use super::workspace::{ids, outcome, Workspace};
use super::*;

/// Everything the example spec describes exists, read back with kube-rs.
pub async fn check_first_apply(
    admin: &Client,
    sfx: &str,
    system_before: &BTreeMap<String, String>,
) {
    let apps = format!("apps-{sfx}");
    let legacy = format!("legacy-{sfx}");
    assert_eq!(
        namespace_labels(admin, &apps).await,
        Some(merged(
            &[("owner", "platform")],
            &psa_labels("baseline", "restricted", "restricted")
        ))
    );
    assert_eq!(
        namespace_labels(admin, &legacy).await,
        Some(merged(
            &[("team", "legacy"), ("tier", "legacy-apps")],
            &psa_labels("restricted", "restricted", "restricted")
        )),
        "bmac labels a namespace it did not create, keeping its owner's label"
    );
    let mut system = system_before.clone();
    system.extend(psa_labels("privileged", "privileged", "privileged"));
    assert_eq!(namespace_labels(admin, "kube-system").await, Some(system));

    assert_eq!(crd_established(admin, KYVERNO_CRD).await, Some(true));
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), "kyverno");
    let d = deployments
        .get("kyverno-admission-controller")
        .await
        .expect("the engine's deployment");
    let image = d
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|p| p.containers.first().and_then(|c| c.image.clone()));
    assert!(
        image.as_deref().is_some_and(|i| i.ends_with(":v1.12.5")),
        "{image:?}"
    );
    let policies = cluster_policies(admin).await;
    let mut names: Vec<String> = policies
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "default-pod-security-labels",
            "disallow-host-namespaces",
            "disallow-privileged",
            "require-non-root",
            "restrict-registries"
        ]
    );
    let registries = policies
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some("restrict-registries"))
        .map(|p| p.data["spec"].to_string())
        .unwrap_or_default();
    assert!(registries.contains("registry.example.com"), "{registries}");

    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), &apps);
    let sa = accounts.get("api").await.expect("the workload's account");
    assert_eq!(
        sa.metadata
            .annotations
            .unwrap_or_default()
            .get("eks.amazonaws.com/role-arn")
            .map(String::as_str),
        Some("arn:aws:iam::111122223333:role/existing-apps-api")
    );
    let classes: Api<StorageClass> = Api::all(admin.clone());
    let class = classes
        .get(&format!("standard-{sfx}"))
        .await
        .expect("the storage class");
    assert_eq!(
        class
            .metadata
            .annotations
            .unwrap_or_default()
            .get("storageclass.kubernetes.io/is-default-class")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(
        class
            .parameters
            .unwrap_or_default()
            .get("encrypted")
            .map(String::as_str),
        Some("true")
    );
}

/// Moves a namespace's `enforce` label the way `kubectl label --overwrite` would: a merge
/// patch under another field manager.
pub async fn hand_edit_enforce(admin: &Client, ns: &str, level: &str) {
    let api: Api<Namespace> = Api::all(admin.clone());
    let patch = json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": level}}});
    api.patch(
        ns,
        &PatchParams {
            field_manager: Some("kubectl-label".to_owned()),
            ..PatchParams::default()
        },
        &Patch::Merge(&patch),
    )
    .await
    .expect("hand edit");
}

/// Adds namespaces, SIGKILLs the apply after a few steps, unlocks and applies again; returns
/// the namespaces added.
pub async fn interrupted_apply_resumes(admin: &Client, ws: &Workspace, sfx: &str) -> Vec<String> {
    let burst: Vec<String> = (0..16).map(|i| format!("burst-{sfx}-{i}")).collect();
    ws.edit_spec(|mut t| {
        for ns in &burst {
            t.push_str(&format!("\n[[namespace]]\nname = \"{ns}\"\n"));
        }
        t
    });
    let burst_steps: Vec<String> = burst
        .iter()
        .flat_map(|ns| [format!("namespace.{ns}"), format!("pod_security.{ns}")])
        .collect();

    // One step at a time, so the kill lands between steps of a run that is far from done.
    let (seen, finished) = ws
        .bmac_killed(&["apply", "--auto-approve", "-p", "1"], 5)
        .await;
    assert!(!finished, "the apply finished before it could be killed");
    let done_before_kill = ids(&seen, "step_succeeded");
    assert_eq!(done_before_kill.len(), 5, "{seen:?}");

    // The killed run still holds the lock: a new apply is refused, naming the lock's id.
    let locked = ws.bmac(&["apply", "--auto-approve"]).await;
    locked.expect_code(4, "apply while a killed run holds the lock");
    let lock_id = locked
        .stderr
        .split("lock `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .unwrap_or_else(|| panic!("no lock id in:\n{}", locked.stderr))
        .to_owned();
    ws.bmac(&["state", "unlock", &lock_id])
        .await
        .expect_code(0, "state unlock");

    let resumed = ws
        .bmac(&["--output", "json", "apply", "--auto-approve"])
        .await;
    resumed.expect_code(0, "resumed apply");
    let events = resumed.events();
    assert_eq!(outcome(&events).as_deref(), Some("succeeded"));
    let started = ids(&events, "step_started");
    assert!(
        !started.is_empty(),
        "the resumed apply had nothing left to do"
    );
    // A step the killed run reported done is never applied again. Its `Applied` record may
    // not have reached the disk before the kill (results are journalled after the event);
    // then it is in doubt, observed, and adopted as it exists — started, but not changed.
    let changed_again: Vec<&String> = started
        .intersection(&done_before_kill)
        .filter(|id| {
            events.iter().any(|e| {
                e["event"] == "step_succeeded" && e["id"] == id.as_str() && e["changed"] == true
            })
        })
        .collect();
    assert!(
        changed_again.is_empty(),
        "steps finished before the kill were applied again: {changed_again:?}"
    );
    let done_after = ids(&events, "step_succeeded");
    for step in &burst_steps {
        assert!(
            done_before_kill.contains(step) || done_after.contains(step),
            "{step} finished in neither run"
        );
    }
    let expected = psa_labels("baseline", "restricted", "restricted");
    for ns in &burst {
        assert_eq!(
            namespace_labels(admin, ns).await,
            Some(expected.clone()),
            "{ns}"
        );
    }
    ws.bmac(&["plan", "--detailed-exitcode"])
        .await
        .expect_code(0, "plan after the resumed apply");
    burst
}
