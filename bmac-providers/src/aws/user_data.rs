//! The user data of a node group's launch template: containerd registry mirrors for the
//! EKS-optimised Amazon Linux 2023 AMI.
//!
//! # The format, and why
//! EKS managed node groups take user data only as a MIME multi-part archive; for AL2023 EKS
//! adds its own `application/node.eks.aws` part (nodeadm's `NodeConfig` with the cluster's
//! name, endpoint and CA) to whatever the launch template carries. nodeadm's `NodeConfig`
//! has `spec.containerd.config` (TOML merged into containerd's `config.toml`) but no way to
//! write the per-registry `hosts.toml` files containerd reads mirrors from — and it needs
//! none for the containerd side: the AMI's containerd configuration (for containerd 1.7 and
//! 2.x alike) already sets the registry `config_path` to
//! `/etc/containerd/certs.d:/etc/docker/certs.d`. So the user data is one `text/cloud-config`
//! part (cloud-init runs on AL2023 beside nodeadm) whose `write_files` puts
//! `/etc/containerd/certs.d/<upstream>/hosts.toml` in place; containerd reads those files at
//! each pull, so it does not matter whether they land before or after nodeadm starts it.
//! No `NodeConfig` part is added: bmac has nothing to merge into EKS's own.
//!
//! Each `hosts.toml` keeps the upstream as its `server` (Docker Hub's registry is
//! `registry-1.docker.io`) and puts the mirror first with `pull` and `resolve`; a mirror with
//! a path (an ECR cache `HOST/PREFIX`) is addressed `https://HOST/v2/PREFIX` with
//! `override_path = true`, the form containerd needs for a registry below a path.
//!
//! # Caveat: credentials for an ECR mirror
//! containerd sends a mirror the credentials the kubelet passed for the *image's* registry.
//! The kubelet's ECR credential provider on the AMI matches only ECR hosts, so a pull of
//! `docker.io/library/nginx` reaches the ECR mirror without credentials, gets 401 and falls
//! back to the upstream: pulls keep working, but bypass the cache. Images named by their
//! mirror (`ACCOUNT.dkr.ecr.REGION.amazonaws.com/docker-hub/library/nginx`, e.g. through the
//! policy engine's image rewriting) authenticate as usual; extending the credential
//! provider's `matchImages` to the mirrored upstreams (as kops does for ECR mirrors) is the
//! node-side way and is not done here.

use base64::Engine as _;
use bmac_steps::config::NodeMirror;
use bmac_steps::spec::registry_host;

/// Where containerd on the AMI reads registry host configurations.
pub const CERTS_D: &str = "/etc/containerd/certs.d";

/// The MIME boundary of the user data.
const BOUNDARY: &str = "==BMAC==";

/// The `hosts.toml` of one mirrored upstream.
pub fn hosts_toml(m: &NodeMirror) -> String {
    let upstream = registry_host(&m.upstream);
    let server = match upstream {
        "docker.io" => "registry-1.docker.io",
        other => other,
    };
    let (host, override_path) = crate::cloud::containerd_host(&m.mirror);
    let mut out = format!(
        "server = \"https://{server}\"\n\n[host.\"{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
    );
    if override_path {
        out.push_str("  override_path = true\n");
    }
    out
}

/// The path of an upstream's `hosts.toml` (`/etc/containerd/certs.d/docker.io/hosts.toml`).
pub fn hosts_path(m: &NodeMirror) -> String {
    format!("{CERTS_D}/{}/hosts.toml", registry_host(&m.upstream))
}

/// The MIME multi-part user data writing the mirrors' `hosts.toml`, or `None` without mirrors.
pub fn user_data(mirrors: &[NodeMirror]) -> Option<String> {
    if mirrors.is_empty() {
        return None;
    }
    let mut cloud_config = String::from("#cloud-config\nwrite_files:\n");
    for m in mirrors {
        cloud_config.push_str(&format!(
            "  - path: {}\n    owner: root:root\n    permissions: \"0644\"\n    content: |\n",
            hosts_path(m)
        ));
        for line in hosts_toml(m).lines() {
            if line.is_empty() {
                cloud_config.push('\n');
            } else {
                cloud_config.push_str(&format!("      {line}\n"));
            }
        }
    }
    Some(format!(
        "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\n\n--{BOUNDARY}\nContent-Type: text/cloud-config; charset=\"us-ascii\"\n\n{cloud_config}\n--{BOUNDARY}--\n"
    ))
}

/// [`user_data`], base64-encoded as a launch template takes it.
pub fn encoded(mirrors: &[NodeMirror]) -> Option<String> {
    user_data(mirrors).map(|u| base64::engine::general_purpose::STANDARD.encode(u))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror(upstream: &str, mirror: &str) -> NodeMirror {
        NodeMirror {
            upstream: upstream.into(),
            mirror: mirror.into(),
        }
    }

    /// The launch template's user data, decoded from base64 and read as a MIME archive: one
    /// cloud-config part whose files are containerd's hosts.toml per upstream.
    #[test]
    fn user_data_decodes_to_a_cloud_config_with_one_hosts_toml_per_upstream() {
        let mirrors = [
            mirror(
                "docker.io",
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com/docker-hub",
            ),
            mirror("quay.io", "mirror.example.com"),
        ];
        assert_eq!(encoded(&[]), None);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(encoded(&mirrors).unwrap())
            .unwrap();
        let text = String::from_utf8(raw).unwrap();
        let (headers, body) = text.split_once("\n\n").unwrap();
        assert!(headers.contains("MIME-Version: 1.0"), "{headers}");
        let boundary = headers
            .split("boundary=\"")
            .nth(1)
            .and_then(|b| b.split('"').next())
            .unwrap();
        let parts: Vec<&str> = body
            .split(&format!("--{boundary}"))
            .map(str::trim)
            .filter(|p| !p.is_empty() && *p != "--")
            .collect();
        assert_eq!(parts.len(), 1, "{parts:?}");
        let (part_headers, cloud_config) = parts[0].split_once("\n\n").unwrap();
        assert!(part_headers.contains("Content-Type: text/cloud-config"));
        assert!(cloud_config.starts_with("#cloud-config\n"));
        // The files, as cloud-init reads the YAML block scalars (6-space indent).
        let mut files: Vec<(String, String)> = Vec::new();
        for line in cloud_config.lines() {
            if let Some(path) = line.strip_prefix("  - path: ") {
                files.push((path.to_owned(), String::new()));
            } else if let Some(content) = line.strip_prefix("      ") {
                let file = &mut files.last_mut().unwrap().1;
                file.push_str(content);
                file.push('\n');
            } else if line.is_empty() {
                if let Some(f) = files.last_mut() {
                    f.1.push('\n');
                }
            }
        }
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].0, "/etc/containerd/certs.d/docker.io/hosts.toml");
        assert_eq!(
            files[0].1,
            "server = \"https://registry-1.docker.io\"\n\n[host.\"https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/v2/docker-hub\"]\n  capabilities = [\"pull\", \"resolve\"]\n  override_path = true\n"
        );
        assert_eq!(files[1].0, "/etc/containerd/certs.d/quay.io/hosts.toml");
        assert!(files[1].1.starts_with("server = \"https://quay.io\""));
        assert!(files[1].1.contains("[host.\"https://mirror.example.com\"]"));
        assert!(!files[1].1.contains("override_path"));
        // An alias of Docker Hub configures the host containerd resolves images under.
        assert_eq!(
            hosts_path(&mirror("index.docker.io", "m.example.com")),
            "/etc/containerd/certs.d/docker.io/hosts.toml"
        );
    }
}
