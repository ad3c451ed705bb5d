//! The test API server, as both crates' end-to-end tests reach it: connecting through
//! `$KUBECONFIG` (failing under `BMAC_E2E=1` when nothing answers, never passing by skipping),
//! one test at a time, the server's own write counter, and the namespace controller's last part.
//! Included by `bmac-providers/tests/kube_support` and `bmac-cli/tests/kube_support`.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;
use tokio::sync::{Mutex, MutexGuard};

static SERIAL: Mutex<()> = Mutex::const_new(());

/// A reachable test cluster, held exclusively by one test.
pub struct TestCluster {
    /// An admin client (context `bmac-admin`) for checking what bmac did.
    pub admin: Client,
    /// The kubeconfig path.
    pub kubeconfig: String,
    _serial: MutexGuard<'static, ()>,
}

/// The test cluster, or `None` (with a printed notice) when there is none and `BMAC_E2E` is
/// not set. Panics when `BMAC_E2E=1` and no server answers.
pub async fn connect(test: &str) -> Option<TestCluster> {
    let serial = SERIAL.lock().await;
    let required = std::env::var("BMAC_E2E").is_ok_and(|v| v == "1");
    match try_connect().await {
        Ok((admin, kubeconfig)) => Some(TestCluster {
            admin,
            kubeconfig,
            _serial: serial,
        }),
        Err(why) if required => {
            panic!("BMAC_E2E=1 but no Kubernetes API server is reachable ({why}); start one with `scripts/kube-env.sh start DIR` and `. DIR/env`")
        }
        Err(why) => {
            eprintln!("NOTICE: {test} did not run: no Kubernetes API server ({why}); set BMAC_E2E=1 to make this a failure");
            None
        }
    }
}

async fn try_connect() -> Result<(Client, String), String> {
    let path = std::env::var("KUBECONFIG").map_err(|_| "KUBECONFIG is not set".to_owned())?;
    let admin = client_for(&path, "bmac-admin").await?;
    tokio::time::timeout(Duration::from_secs(10), admin.apiserver_version())
        .await
        .map_err(|_| "GET /version timed out".to_owned())?
        .map_err(|e| format!("GET /version failed: {e}"))?;
    Ok((admin, path))
}

/// A client for one context of a kubeconfig.
pub async fn client_for(path: &str, context: &str) -> Result<Client, String> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| format!("{path}: {e}"))?;
    let options = KubeConfigOptions {
        context: Some(context.to_owned()),
        ..KubeConfigOptions::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| e.to_string())?;
    Client::try_from(config).map_err(|e| e.to_string())
}

/// A short suffix that differs between runs, so tests on a long-lived server do not collide.
pub fn suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}", (nanos / 1000) % 0xff_ffff)
}

/// The API server's count of write requests (POST, PUT, PATCH, APPLY, DELETE), read from its
/// own `/metrics`.
pub async fn writes(admin: &Client) -> u64 {
    let req = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("static request");
    let text = admin.request_text(req).await.expect("GET /metrics");
    let mut total = 0.0;
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let write = [
            "POST",
            "PUT",
            "PATCH",
            "APPLY",
            "DELETE",
            "DELETECOLLECTION",
        ]
        .iter()
        .any(|v| line.contains(&format!("verb=\"{v}\"")));
        if write {
            let value = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
            total += value.expect("a metric sample value");
        }
    }
    total as u64
}

/// Plays the namespace controller's finalization while alive (see the module docs).
pub struct NamespaceFinalizer(tokio::task::JoinHandle<()>);

impl NamespaceFinalizer {
    /// Starts finalizing terminating namespaces: as the namespace controller does, first
    /// deletes what they contain (the kinds bmac's tests create there), then clears
    /// `spec.finalizers`. Without the first part, objects would survive in etcd and reappear
    /// when a namespace of the same name is created again.
    pub fn start(admin: &Client) -> Self {
        let api: Api<Namespace> = Api::all(admin.clone());
        let client = admin.clone();
        NamespaceFinalizer(tokio::spawn(async move {
            loop {
                if let Ok(list) = api.list(&ListParams::default()).await {
                    for mut ns in list.items {
                        let terminating = ns.metadata.deletion_timestamp.is_some();
                        let name = ns.metadata.name.clone().unwrap_or_default();
                        if terminating {
                            empty_namespace(&client, &name).await;
                            if let Some(spec) = ns.spec.as_mut() {
                                spec.finalizers = Some(Vec::new());
                            }
                            let _ = api
                                .replace_subresource("finalize", &name, &PostParams::default(), &ns)
                                .await;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }))
    }
}

/// Deletes the namespaced objects the tests create (workloads, their accounts, config, RBAC).
async fn empty_namespace(client: &Client, namespace: &str) {
    const KINDS: &[(&str, &str, &str)] = &[
        ("apps", "v1", "Deployment"),
        ("apps", "v1", "DaemonSet"),
        ("apps", "v1", "StatefulSet"),
        ("", "v1", "ServiceAccount"),
        ("", "v1", "ConfigMap"),
        ("", "v1", "Secret"),
        ("", "v1", "Service"),
        ("rbac.authorization.k8s.io", "v1", "Role"),
        ("rbac.authorization.k8s.io", "v1", "RoleBinding"),
    ];
    for (group, version, kind) in KINDS {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
        let _ = api
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await;
    }
}

impl Drop for NamespaceFinalizer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A namespace's labels, or `None` when it does not exist.
pub async fn namespace_labels(admin: &Client, name: &str) -> Option<BTreeMap<String, String>> {
    let api: Api<Namespace> = Api::all(admin.clone());
    api.get_opt(name)
        .await
        .expect("GET namespace")
        .map(|ns| ns.metadata.labels.unwrap_or_default())
}
