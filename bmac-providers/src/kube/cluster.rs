//! `cluster` with `provider = "kube"`: an existing cluster, taken from a kubeconfig context.
//!
//! Apply and observe read the kubeconfig (the config's `kubeconfig` path, else `$KUBECONFIG`
//! — which may list several files, merged as kubectl does — else `~/.kube/config`), pick the
//! context the config names (else the current context), check that the API server answers
//! `/version` with a client built as every in-cluster step builds one, and output what
//! in-cluster steps need: `endpoint`, `ca_data` (base64 PEM), `credentials`, `server_version`
//! and `context`.
//!
//! `credentials` is a plain [`CredentialSource::Kubeconfig`] naming the kubeconfig path as the
//! spec wrote it (absent for `$KUBECONFIG`) and the *resolved* context: no token, no key. Each
//! in-cluster step authenticates as that context's user when it runs — whatever the user has:
//! a token, a token file, a client certificate, or an exec plugin (`aws eks get-token`,
//! `gke-gcloud-auth-plugin`, `kubelogin`), which kube-rs runs again as its tokens expire. The
//! output does not change when a token rotates, so no fingerprint moves, and a deleted
//! in-cluster step rebuilds its client from the recorded source in any later process.
//! Users bmac cannot authenticate as (basic auth, legacy auth-providers other than `gcp` with a
//! `cmd-path`) are refused with what to use instead (`kubeconfig.rs`).
//!
//! Destroy deletes nothing: the cluster existed before bmac and is not bmac's to remove.

use bmac_core::provider::Observed;
use bmac_core::{Outputs, ProviderError, Step};
use bmac_steps::config::ClusterConfig;
use bmac_steps::CredentialSource;
use serde_json::json;

use super::access::{Call, ClientCache, ClusterAccess, Connection, Credentials};
use super::error::{map_error, Operation};
use super::kubeconfig;

/// The cluster's config, refused unless its provider is `kube`.
pub(crate) fn check_kube(step: &Step) -> Result<(), ProviderError> {
    kube_config(step).map(|_| ())
}

fn kube_config(step: &Step) -> Result<ClusterConfig, ProviderError> {
    let cfg: ClusterConfig = super::config(step)?;
    if cfg.provider != "kube" {
        return Err(ProviderError::permanent(format!(
            "cluster `{}` has provider {:?}; the kube provider serves only existing clusters \
             (provider = \"kube\")",
            cfg.name, cfg.provider
        )));
    }
    Ok(cfg)
}

/// Resolves the context and checks the cluster answers.
pub(crate) async fn apply(step: &Step, clients: &ClientCache) -> Result<Outputs, ProviderError> {
    let cfg = kube_config(step)?;
    let (access, context) = resolve(&cfg)?;
    let version = server_version(clients, &access).await?;
    Ok(outputs(&cfg, &access, &context, &version))
}

/// The same as apply: an existing cluster is present when its context resolves and answers.
pub(crate) async fn observe(step: &Step, clients: &ClientCache) -> Result<Observed, ProviderError> {
    let cfg = kube_config(step)?;
    let (access, context) = resolve(&cfg)?;
    let version = server_version(clients, &access).await?;
    let mut config = json!({ "provider": "kube", "context": context });
    if let Some(path) = &cfg.kubeconfig {
        config["kubeconfig"] = json!(path);
    }
    if let Some(wanted) = &cfg.version {
        // Report the server's version in the spec's precision: "1.20" for a spec of "1.20".
        let live = version.trim_start_matches('v');
        let precision = wanted.split('.').count();
        let shown: Vec<&str> = live.split(['.', '-', '+']).take(precision).collect();
        config["version"] = json!(shown.join("."));
    }
    Ok(Observed::Present {
        config,
        outputs: outputs(&cfg, &access, &context, &version),
    })
}

fn outputs(cfg: &ClusterConfig, access: &ClusterAccess, context: &str, version: &str) -> Outputs {
    Outputs::new()
        .with("endpoint", access.endpoint.clone())
        .with("ca_data", access.ca_data.clone())
        .with("credentials", source(cfg, context).to_value())
        .with("server_version", version.to_owned())
        .with("context", context.to_owned())
}

/// The credential source of the resolved context: the spec's kubeconfig path, as written.
fn source(cfg: &ClusterConfig, context: &str) -> CredentialSource {
    CredentialSource::kubeconfig(cfg.kubeconfig.clone(), context)
}

async fn server_version(
    clients: &ClientCache,
    access: &ClusterAccess,
) -> Result<String, ProviderError> {
    let op = Operation {
        verb: "get",
        resource: "/version",
        group: "",
        name: None,
        namespace: None,
    };
    let op = &op;
    let call = |conn: Connection| -> Call<'_, String> {
        Box::pin(async move {
            let info = conn
                .client
                .apiserver_version()
                .await
                .map_err(|e| map_error(e, op))?;
            Ok(info.git_version)
        })
    };
    clients.with_connection(access, call).await
}

/// Reads the kubeconfig and turns the chosen context into cluster access, with the context as
/// the credential source.
fn resolve(cfg: &ClusterConfig) -> Result<(ClusterAccess, String), ProviderError> {
    let kubeconfig = kubeconfig::read(cfg.kubeconfig.as_deref())?;
    let name = cfg
        .context
        .clone()
        .or_else(|| kubeconfig.current_context.clone())
        .ok_or_else(|| {
            ProviderError::permanent(
                "the cluster config names no `context` and the kubeconfig has no current context",
            )
        })?;
    let context = kubeconfig::context(&kubeconfig, &name)?;
    let cluster = kubeconfig::cluster(&kubeconfig, &name, context)?;
    let endpoint = cluster.server.clone().ok_or_else(|| {
        ProviderError::permanent(format!("cluster {:?} has no `server`", context.cluster))
    })?;
    if cluster.insecure_skip_tls_verify == Some(true) {
        return Err(ProviderError::permanent(format!(
            "cluster {:?} sets insecure-skip-tls-verify; bmac needs the cluster's CA \
             (certificate-authority or certificate-authority-data)",
            context.cluster
        )));
    }
    let ca_data = match (
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
    ) {
        (Some(data), _) => data.trim().to_owned(),
        (None, Some(file)) => kubeconfig::encode_file(file, "certificate-authority")?,
        (None, None) => String::new(),
    };
    Ok((
        ClusterAccess {
            endpoint,
            ca_data,
            credentials: Credentials::Source(source(cfg, &name)),
        },
        name,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmac_core::StepId;
    use serde_json::Value;
    use std::path::Path;

    fn step(cfg: Value) -> Step {
        Step::new(
            StepId::new("cluster").unwrap(),
            bmac_steps::kinds::kind("cluster"),
            &cfg,
        )
        .unwrap()
    }

    fn kubeconfig(dir: &Path, user: &str) -> String {
        let path = dir.join("config");
        std::fs::write(&path, format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n    certificate-authority-data: Q0E=\n\
             users:\n- name: u\n  user:\n{user}\ncontexts:\n- name: ctx\n  context: {{cluster: c, user: u}}\ncurrent-context: ctx\n"
        )).unwrap();
        path.to_str().unwrap().to_owned()
    }

    fn cfg(path: &str, context: Option<&str>) -> ClusterConfig {
        serde_json::from_value(
            json!({"name": "x", "provider": "kube", "kubeconfig": path, "context": context}),
        )
        .unwrap()
    }

    #[test]
    fn contexts_resolve_to_endpoint_ca_and_a_source_naming_the_context() {
        let dir = tempfile::tempdir().unwrap();
        let path = kubeconfig(dir.path(), "    token: abc");
        // No context in the spec: the current one is resolved and recorded.
        let cfg = cfg(&path, None);
        let (access, context) = resolve(&cfg).unwrap();
        assert_eq!(context, "ctx");
        assert_eq!(access.endpoint, "https://127.0.0.1:1");
        assert_eq!(access.ca_data, "Q0E=");
        let outputs = outputs(&cfg, &access, &context, "v1.20.2");
        let credentials = outputs.get("credentials").unwrap();
        assert!(!credentials.is_sensitive());
        assert_eq!(
            credentials.value(),
            Some(&json!({"type": "kubeconfig", "path": path, "context": "ctx"}))
        );
        assert!(!format!("{outputs:?}").contains("abc"));
    }

    #[test]
    fn exec_users_are_taken_and_unusable_users_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = kubeconfig(
            dir.path(),
            "    exec: {command: aws, apiVersion: client.authentication.k8s.io/v1beta1}",
        );
        let err = resolve(&cfg(&path, Some("nope"))).err().unwrap();
        assert!(
            err.message.contains("no context \"nope\" (it has: ctx)"),
            "{}",
            err.message
        );
        assert!(
            resolve(&cfg(&path, Some("ctx"))).is_ok(),
            "exec users are fine"
        );

        let path = kubeconfig(dir.path(), "    username: admin\n    password: hunter2");
        let (access, _) = resolve(&cfg(&path, Some("ctx"))).unwrap();
        let err = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(server_version(&ClientCache::default(), &access))
            .err()
            .unwrap();
        assert!(err.message.contains("basic auth"), "{}", err.message);
        assert!(!err.is_retryable());
    }

    #[test]
    fn only_kube_clusters_are_served() {
        let s = step(json!({"name": "x", "provider": "eks", "region": "eu-west-1"}));
        let err = check_kube(&s).unwrap_err();
        assert!(err.message.contains("provider \"eks\""), "{}", err.message);
        assert!(check_kube(&step(json!({"name": "x", "provider": "kube"}))).is_ok());
    }
}
