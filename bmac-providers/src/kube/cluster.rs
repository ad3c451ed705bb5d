//! `cluster` with `provider = "kube"`: an existing cluster, taken from a kubeconfig context.
//!
//! Apply and observe read the kubeconfig (the config's `kubeconfig` path, else `$KUBECONFIG`
//! — which may list several files, merged as kubectl does — else `~/.kube/config`), pick the
//! context the config names (else the current context), check that the API server answers
//! `/version`, and output what in-cluster steps need: `endpoint`, `ca_data` (base64 PEM),
//! `credentials` (sensitive: a token or a client certificate and key), `server_version` and
//! `context`.
//!
//! Only credentials that can be handed to other steps are supported: tokens (inline or a token
//! file) and client certificates (inline or files). Exec plugins and auth providers produce
//! short-lived credentials through a program on this machine; the error says so.
//!
//! Destroy deletes nothing: the cluster existed before bmac and is not bmac's to remove.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use bmac_core::provider::Observed;
use bmac_core::{Outputs, ProviderError, Step};
use bmac_steps::config::ClusterConfig;
use kube::config::{AuthInfo, Kubeconfig};
use serde_json::json;

use super::access::{ClusterAccess, Credentials};
use super::error::{map_error, Operation};

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
pub(crate) async fn apply(step: &Step) -> Result<Outputs, ProviderError> {
    let cfg = kube_config(step)?;
    let (access, context) = resolve(&cfg)?;
    let version = server_version(&access).await?;
    Ok(outputs(&access, &context, &version))
}

/// The same as apply: an existing cluster is present when its context resolves and answers.
pub(crate) async fn observe(step: &Step) -> Result<Observed, ProviderError> {
    let cfg = kube_config(step)?;
    let (access, context) = resolve(&cfg)?;
    let version = server_version(&access).await?;
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
        outputs: outputs(&access, &context, &version),
    })
}

fn outputs(access: &ClusterAccess, context: &str, version: &str) -> Outputs {
    Outputs::new()
        .with("endpoint", access.endpoint.clone())
        .with("ca_data", access.ca_data.clone())
        .with_sensitive("credentials", access.credentials.to_json())
        .with("server_version", version.to_owned())
        .with("context", context.to_owned())
}

async fn server_version(access: &ClusterAccess) -> Result<String, ProviderError> {
    let client = access.client().await?;
    let op = Operation {
        verb: "get",
        resource: "/version",
        group: "",
        name: None,
        namespace: None,
    };
    let info = client
        .apiserver_version()
        .await
        .map_err(|e| map_error(e, &op))?;
    Ok(info.git_version)
}

/// Reads the kubeconfig and turns the chosen context into cluster access.
fn resolve(cfg: &ClusterConfig) -> Result<(ClusterAccess, String), ProviderError> {
    let kubeconfig = match &cfg.kubeconfig {
        Some(path) => Kubeconfig::read_from(expand_home(path)),
        None => Kubeconfig::read(),
    }
    .map_err(|e| {
        ProviderError::permanent(format!(
            "cannot read the kubeconfig ({}): {e}",
            cfg.kubeconfig
                .as_deref()
                .unwrap_or("$KUBECONFIG or ~/.kube/config")
        ))
    })?;
    let name = cfg
        .context
        .clone()
        .or_else(|| kubeconfig.current_context.clone())
        .ok_or_else(|| {
            ProviderError::permanent(
                "the cluster config names no `context` and the kubeconfig has no current context",
            )
        })?;
    let context = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == name)
        .and_then(|c| c.context.as_ref())
        .ok_or_else(|| {
            let known: Vec<&str> = kubeconfig
                .contexts
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            ProviderError::permanent(format!(
                "kubeconfig has no context {name:?} (it has: {})",
                known.join(", ")
            ))
        })?;
    let cluster = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.as_ref())
        .ok_or_else(|| {
            ProviderError::permanent(format!(
                "context {name:?} names cluster {:?}, which the kubeconfig does not define",
                context.cluster
            ))
        })?;
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
        (None, Some(file)) => encode_file(file, "certificate-authority")?,
        (None, None) => String::new(),
    };
    let user_name = context.user.clone().unwrap_or_default();
    let user = kubeconfig
        .auth_infos
        .iter()
        .find(|u| u.name == user_name)
        .and_then(|u| u.auth_info.as_ref())
        .ok_or_else(|| {
            ProviderError::permanent(format!(
                "context {name:?} names user {user_name:?}, which the kubeconfig does not define"
            ))
        })?;
    let credentials = credentials(user, &user_name)?;
    Ok((
        ClusterAccess {
            endpoint,
            ca_data,
            credentials,
        },
        name,
    ))
}

fn credentials(user: &AuthInfo, name: &str) -> Result<Credentials, ProviderError> {
    use secrecy::ExposeSecret as _;
    if let Some(token) = &user.token {
        return Ok(Credentials::Token(token.expose_secret().trim().to_owned()));
    }
    if let Some(file) = &user.token_file {
        let token = std::fs::read_to_string(file).map_err(|e| {
            ProviderError::permanent(format!(
                "cannot read token-file {file:?} of user {name:?}: {e}"
            ))
        })?;
        return Ok(Credentials::Token(token.trim().to_owned()));
    }
    let certificate = match (&user.client_certificate_data, &user.client_certificate) {
        (Some(d), _) => Some(d.trim().to_owned()),
        (None, Some(f)) => Some(encode_file(f, "client-certificate")?),
        (None, None) => None,
    };
    let key = match (&user.client_key_data, &user.client_key) {
        (Some(d), _) => Some(d.expose_secret().trim().to_owned()),
        (None, Some(f)) => Some(encode_file(f, "client-key")?),
        (None, None) => None,
    };
    if let (Some(certificate_data), Some(key_data)) = (certificate, key) {
        return Ok(Credentials::ClientCertificate {
            certificate_data,
            key_data,
        });
    }
    let how = if user.exec.is_some() {
        "an exec plugin"
    } else if user.auth_provider.is_some() {
        "an auth-provider"
    } else if user.username.is_some() {
        "basic auth"
    } else {
        "no credentials"
    };
    Err(ProviderError::permanent(format!(
        "user {name:?} authenticates with {how}; bmac hands credentials to in-cluster steps and \
         supports a token or a client certificate and key — use a context with one of those"
    )))
}

fn encode_file(path: &str, what: &str) -> Result<String, ProviderError> {
    let bytes = std::fs::read(expand_home(path))
        .map_err(|e| ProviderError::permanent(format!("cannot read {what} file {path:?}: {e}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmac_core::StepId;
    use serde_json::Value;

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

    #[test]
    fn contexts_resolve_to_endpoint_ca_and_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let path = kubeconfig(dir.path(), "    token: abc");
        let cfg: ClusterConfig = serde_json::from_value(
            json!({"name": "x", "provider": "kube", "kubeconfig": path, "context": "ctx"}),
        )
        .unwrap();
        let (access, context) = resolve(&cfg).unwrap();
        assert_eq!(context, "ctx");
        assert_eq!(access.endpoint, "https://127.0.0.1:1");
        assert_eq!(access.ca_data, "Q0E=");
        assert_eq!(access.credentials.to_json(), json!({"token": "abc"}));
    }

    #[test]
    fn unknown_contexts_and_exec_users_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = kubeconfig(
            dir.path(),
            "    exec: {command: aws, apiVersion: client.authentication.k8s.io/v1beta1}",
        );
        let mut cfg: ClusterConfig = serde_json::from_value(
            json!({"name": "x", "provider": "kube", "kubeconfig": path, "context": "nope"}),
        )
        .unwrap();
        let err = resolve(&cfg).err().unwrap();
        assert!(
            err.message.contains("no context \"nope\" (it has: ctx)"),
            "{}",
            err.message
        );
        cfg.context = Some("ctx".into());
        let err = resolve(&cfg).err().unwrap();
        assert!(err.message.contains("exec plugin"), "{}", err.message);
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
