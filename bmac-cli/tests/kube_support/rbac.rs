//! RBAC for the missing-rights test: user `bmac-limited` (a token with no groups, see
//! `scripts/kube-env.sh`) gets a read-only grant for the second half of the test, and the
//! texts a raw API error dump would show.

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::Client;
use serde_json::json;

const RBAC_LABEL: &str = "bmac.dev/test";

/// Texts that show a raw HTTP/API dump rather than an explanation.
const RAW_DUMP: &[&str] = &[
    "ErrorResponse",
    "\"kind\":\"Status\"",
    "kind: Status",
    "status: \"Failure\"",
    "HTTP/1",
    "<html",
    "code: 403",
    "reason: \"Forbidden\"",
];

pub fn assert_clear_denial(text: &str) {
    for raw in RAW_DUMP {
        assert!(!text.contains(raw), "raw API text `{raw}` in:\n{text}");
    }
}

/// Grants user `bmac-limited` read-only access to what the example touches, and waits until
/// the authorizer sees it.
pub async fn grant_read(admin: &Client, kubeconfig: &str, name: &str) {
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    let bindings: Api<ClusterRoleBinding> = Api::all(admin.clone());
    let role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {RBAC_LABEL: "kube-cli"}},
        "rules": [
            {"apiGroups": [""], "resources": ["namespaces", "serviceaccounts", "configmaps"],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
             "verbs": ["get", "list", "watch"]}
        ]
    }))
    .expect("role");
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {RBAC_LABEL: "kube-cli"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bmac-limited"}]
    }))
    .expect("binding");
    roles
        .create(&PostParams::default(), &role)
        .await
        .expect("create role");
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .expect("create binding");
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let options = kube::config::KubeConfigOptions {
        context: Some("bmac-limited".to_owned()),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kc, &options)
        .await
        .expect("limited config");
    let limited = Client::try_from(config).expect("limited client");
    let nss: Api<Namespace> = Api::all(limited);
    for _ in 0..100 {
        if nss.get_opt("default").await.is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the read grant never took effect");
}

/// Removes read grants this test left (now or in an earlier, failed run).
pub async fn revoke_grants(admin: &Client) {
    let lp = ListParams::default().labels(&format!("{RBAC_LABEL}=kube-cli"));
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    let bindings: Api<ClusterRoleBinding> = Api::all(admin.clone());
    let _ = bindings
        .delete_collection(&DeleteParams::default(), &lp)
        .await;
    let _ = roles.delete_collection(&DeleteParams::default(), &lp).await;
}
