//! Reading kubeconfig files as kubectl does, for the two places that need one: the cluster step
//! (`provider = "kube"`, which takes endpoint and CA from a context's cluster) and a
//! [`CredentialSource::Kubeconfig`](bmac_steps::CredentialSource::Kubeconfig), which
//! authenticates as a context's user whenever a client is built.
//!
//! Rules:
//! - The file is the given path (a leading `~/` is the home directory), else `$KUBECONFIG`
//!   (several files merged, the first to set a value wins), else `~/.kube/config`; relative
//!   file references inside it are relative to the file that makes them (kube-rs does that).
//! - It is read at call time, every time a client is built: a token someone rotated in the file
//!   is picked up on the next client (and after a 401, see `access.rs`).
//! - A user must have credentials kube-rs can use and refresh: a token, a token file, a client
//!   certificate and key (inline or files), an exec plugin, or the legacy `gcp` auth-provider
//!   with a `cmd-path`. Basic auth (gone from Kubernetes since 1.19) and other auth-providers
//!   are refused with a message saying what to use instead.
//! - Nothing read here is put in a message except names and paths.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use bmac_core::ProviderError;
use kube::config::{AuthInfo, Cluster, Context, Kubeconfig};

/// Reads the kubeconfig at `path`, else `$KUBECONFIG`, else `~/.kube/config`.
pub(crate) fn read(path: Option<&str>) -> Result<Kubeconfig, ProviderError> {
    match path {
        Some(path) => Kubeconfig::read_from(expand_home(path)),
        None => Kubeconfig::read(),
    }
    .map_err(|e| {
        ProviderError::permanent(format!(
            "cannot read the kubeconfig ({}): {e}",
            path.unwrap_or("$KUBECONFIG or ~/.kube/config")
        ))
    })
}

/// The context named `name`.
pub(crate) fn context<'k>(
    kubeconfig: &'k Kubeconfig,
    name: &str,
) -> Result<&'k Context, ProviderError> {
    kubeconfig
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
        })
}

/// The cluster of context `name`.
pub(crate) fn cluster<'k>(
    kubeconfig: &'k Kubeconfig,
    name: &str,
    context: &Context,
) -> Result<&'k Cluster, ProviderError> {
    kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.as_ref())
        .ok_or_else(|| {
            ProviderError::permanent(format!(
                "context {name:?} names cluster {:?}, which the kubeconfig does not define",
                context.cluster
            ))
        })
}

/// The user of context `name`, checked to have credentials bmac can use.
pub(crate) fn user<'k>(
    kubeconfig: &'k Kubeconfig,
    name: &str,
) -> Result<&'k AuthInfo, ProviderError> {
    let context = context(kubeconfig, name)?;
    let user_name = context.user.as_deref().ok_or_else(|| {
        ProviderError::permanent(format!(
            "context {name:?} names no user; bmac needs one with credentials"
        ))
    })?;
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
    check_user(user, user_name)?;
    Ok(user)
}

/// Refuses users whose credentials kube-rs (as bmac builds it) cannot use or refresh.
fn check_user(user: &AuthInfo, name: &str) -> Result<(), ProviderError> {
    let has_certificate =
        user.client_certificate.is_some() || user.client_certificate_data.is_some();
    let has_key = user.client_key.is_some() || user.client_key_data.is_some();
    if user.token.is_some() || user.token_file.is_some() || user.exec.is_some() {
        return Ok(());
    }
    if has_certificate && has_key {
        return Ok(());
    }
    let refusal = if let Some(provider) = &user.auth_provider {
        if provider.name == "gcp" && provider.config.contains_key("cmd-path") {
            return Ok(());
        }
        format!(
            "the legacy auth-provider {:?}, which bmac does not support (kubectl dropped \
             auth-providers in 1.26); use the exec plugin that replaced it \
             (gke-gcloud-auth-plugin, kubelogin)",
            provider.name
        )
    } else if has_certificate {
        "a client certificate without its key (client-key or client-key-data)".to_owned()
    } else if user.username.is_some() {
        "basic auth, which Kubernetes removed in 1.19; use a token, a client certificate or \
         an exec plugin"
            .to_owned()
    } else {
        "no credentials; give it a token, a token file, a client certificate and key, or an \
         exec plugin"
            .to_owned()
    };
    Err(ProviderError::permanent(format!(
        "user {name:?} authenticates with {refusal}"
    )))
}

/// The base64 of a file's contents (a CA or certificate named by path).
pub(crate) fn encode_file(path: &str, what: &str) -> Result<String, ProviderError> {
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

    fn kubeconfig(users: &str) -> Kubeconfig {
        Kubeconfig::from_yaml(&format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: https://127.0.0.1:1}}\n\
             users:\n{users}\ncontexts:\n- name: ctx\n  context: {{cluster: c, user: u}}\n\
             - name: lonely\n  context: {{cluster: c}}\n"
        ))
        .expect("kubeconfig")
    }

    #[test]
    fn users_with_tokens_certificates_or_exec_plugins_are_accepted() {
        for given in [
            "    token: abc",
            "    tokenFile: /var/run/token",
            "    client-certificate: c.crt\n    client-key: c.key",
            "    exec: {command: aws, apiVersion: client.authentication.k8s.io/v1beta1}",
            "    auth-provider: {name: gcp, config: {cmd-path: gcloud}}",
        ] {
            let k = kubeconfig(&format!("- name: u\n  user:\n{given}"));
            assert!(user(&k, "ctx").is_ok(), "{given}");
        }
    }

    #[test]
    fn unusable_users_are_refused_with_what_to_use_instead() {
        for (given, says) in [
            (
                "    auth-provider: {name: oidc, config: {id-token: x}}",
                "kubelogin",
            ),
            ("    username: admin\n    password: hunter2", "basic auth"),
            ("    client-certificate-data: Q0VSVA==", "without its key"),
            ("    as: someone", "no credentials"),
        ] {
            let k = kubeconfig(&format!("- name: u\n  user:\n{given}"));
            let err = user(&k, "ctx").expect_err(given);
            assert!(err.message.contains(says), "{}", err.message);
            assert!(!err.message.contains("hunter2") && !err.is_retryable());
        }
        let k = kubeconfig("- name: u\n  user: {token: abc}");
        let err = user(&k, "lonely").expect_err("no user");
        assert!(err.message.contains("names no user"), "{}", err.message);
        let err = user(&k, "nope").expect_err("no context");
        assert!(
            err.message
                .contains("no context \"nope\" (it has: ctx, lonely)"),
            "{}",
            err.message
        );
    }
}
