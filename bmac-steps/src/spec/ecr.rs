//! Amazon ECR's rules for pull-through caches, and the checks of `[registries]` they give on
//! EKS at validate time.
//!
//! # What ECR caches
//! A pull-through cache rule maps a repository prefix of the account's private registry
//! (`ACCOUNT.dkr.ecr.REGION.amazonaws.com/docker-hub`) to one upstream registry. ECR caches only
//! the upstreams it knows ([`ecr_upstream`]), each named by the URL ECR expects — Docker Hub is
//! `registry-1.docker.io`, not `docker.io` — and each with its own way to authenticate:
//!
//! | upstream | ECR's name | authentication |
//! |---|---|---|
//! | `public.ecr.aws` | `ecr-public` | none |
//! | `registry.k8s.io` | `k8s` | none |
//! | `quay.io` | `quay` | optional secret |
//! | `docker.io` | `docker-hub` | secret (required) |
//! | `ghcr.io` | `github-container-registry` | secret (required) |
//! | `registry.gitlab.com` | `gitlab-container-registry` | secret (required) |
//! | `NAME.azurecr.io` | `azure-container-registry` | secret (required) |
//! | `ACCOUNT.dkr.ecr.REGION.amazonaws.com` | `ecr` | IAM role (required) |
//!
//! A secret is a Secrets Manager secret whose name starts with [`SECRET_PREFIX`]
//! (`ecr-pullthroughcache/`), in the registry's account and region — ECR refuses any other. An
//! ECR upstream is reached through an IAM role of the cache's account that ECR assumes
//! (`customRoleArn`, trusted by `pullthroughcache.ecr.amazonaws.com`). The spec names both by
//! ARN in `[registries.credentials]`; credentials are never written inline.
//!
//! # Checked at validate time (EKS, `pull_through_cache = true`)
//! Each mirror must be a repository prefix ECR accepts in this account's registry in the
//! cluster's region (two to thirty characters of lower-case words separated by `/`, `.`, `_` or
//! `-`), prefixes must differ, each upstream must be one ECR caches, an upstream that needs
//! credentials must have them (and one that takes none must not), and each credential must be
//! an ARN of the right service, partition, region and account — with the secret-name prefix
//! ECR requires. Credentials for an upstream without a mirror, or without
//! `pull_through_cache`, are contradictions.

use super::cloud::{arn_problem, invalid, partition, Arn};
use super::diag::{Problem, ProblemCode};
use super::model::Spanned;
use super::validate::registry_host;
use super::Spec;

/// The name prefix ECR requires of the Secrets Manager secrets its pull-through caches read.
pub const SECRET_PREFIX: &str = "ecr-pullthroughcache/";

/// How ECR authenticates to an upstream registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpstreamAuth {
    /// Anonymously (public registries).
    None,
    /// Anonymously, or with a secret when one is given.
    OptionalSecret,
    /// With a Secrets Manager secret (`credentialArn`), always.
    Secret,
    /// By assuming an IAM role of the cache's account (`customRoleArn`): another ECR registry.
    Role,
}

/// An upstream registry as ECR knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrUpstream {
    /// ECR's name of the upstream (`upstreamRegistry`: `docker-hub`, `k8s` …).
    pub name: &'static str,
    /// The URL ECR takes (`upstreamRegistryUrl`: `registry-1.docker.io`).
    pub url: String,
    /// How ECR authenticates to it.
    pub auth: UpstreamAuth,
}

/// The upstream registries ECR caches, as a spec names them (for messages).
pub const ECR_UPSTREAMS: &str = "public.ecr.aws, registry.k8s.io, quay.io, docker.io, ghcr.io, registry.gitlab.com, NAME.azurecr.io and ACCOUNT.dkr.ecr.REGION.amazonaws.com";

/// The upstream `host` (a registry host, no path) as ECR caches it, or `None` when ECR cannot.
pub fn ecr_upstream(host: &str) -> Option<EcrUpstream> {
    let known = |name, url: &str, auth| {
        Some(EcrUpstream {
            name,
            url: url.to_owned(),
            auth,
        })
    };
    match registry_host(host) {
        _ if host.contains('/') => None,
        "public.ecr.aws" => known("ecr-public", host, UpstreamAuth::None),
        "registry.k8s.io" => known("k8s", host, UpstreamAuth::None),
        "quay.io" => known("quay", host, UpstreamAuth::OptionalSecret),
        "docker.io" => known("docker-hub", "registry-1.docker.io", UpstreamAuth::Secret),
        "ghcr.io" => known("github-container-registry", host, UpstreamAuth::Secret),
        "registry.gitlab.com" => known("gitlab-container-registry", host, UpstreamAuth::Secret),
        h if h
            .strip_suffix(".azurecr.io")
            .is_some_and(|name| !name.is_empty() && !name.contains('.')) =>
        {
            known("azure-container-registry", host, UpstreamAuth::Secret)
        }
        h if ecr_registry(h).is_some() => known("ecr", host, UpstreamAuth::Role),
        _ => None,
    }
}

/// A private ECR registry host: `(account, region)` of `ACCOUNT.dkr.ecr.REGION.amazonaws.com`
/// (`.amazonaws.com.cn` in China).
pub fn ecr_registry(host: &str) -> Option<(&str, &str)> {
    let (account, rest) = host.split_once(".dkr.ecr.")?;
    let region = rest
        .strip_suffix(".amazonaws.com")
        .or_else(|| rest.strip_suffix(".amazonaws.com.cn"))?;
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    let region_ok = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    (account_ok && region_ok).then_some((account, region))
}

/// A mirror that is a repository prefix of a private ECR registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EcrMirror<'a> {
    /// The registry host (`123456789012.dkr.ecr.eu-west-1.amazonaws.com`).
    pub host: &'a str,
    /// Its account.
    pub account: &'a str,
    /// Its region.
    pub region: &'a str,
    /// The repository prefix (`docker-hub`; empty when the mirror names no path).
    pub prefix: &'a str,
}

/// The mirror `mirror` (`HOST/PREFIX`) when its host is a private ECR registry.
pub fn ecr_mirror(mirror: &str) -> Option<EcrMirror<'_>> {
    let (host, prefix) = mirror.split_once('/').unwrap_or((mirror, ""));
    let (account, region) = ecr_registry(host)?;
    Some(EcrMirror {
        host,
        account,
        region,
        prefix: prefix.trim_end_matches('/'),
    })
}

/// Whether ECR accepts `prefix` as a pull-through cache's repository prefix: 2 to 30
/// characters of lower-case words (letters and digits) joined by `.`, `_` or `-`, in segments
/// separated by `/`.
pub fn valid_prefix(prefix: &str) -> bool {
    let word_ok = |segment: &str| {
        !segment.is_empty()
            && segment.split(['.', '_', '-']).all(|w| {
                !w.is_empty()
                    && w.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            })
    };
    (2..=30).contains(&prefix.len()) && prefix.split('/').all(word_ok)
}

fn contradiction(at: miette::SourceSpan, message: String, label: &str, help: String) -> Problem {
    Problem::new(ProblemCode::Contradiction, at, message, label).with_help(help)
}

/// The `[registries]` rules of an EKS cluster in `region` (see the module docs).
pub(crate) fn validate(spec: &Spec, region: &Spanned<String>, out: &mut Vec<Problem>) {
    let Some(r) = &spec.registries else { return };
    if !r.pull_through_cache {
        for c in &r.credentials {
            out.push(contradiction(
                c.upstream.span,
                format!("credentials for `{}`, but the mirrors are not pull-through caches", c.upstream.value),
                "only a pull-through cache uses them",
                "set `pull_through_cache = true` to let bmac create the caches, or remove `[registries.credentials]`".to_owned(),
            ));
        }
        return;
    }
    let part = partition(&region.value);
    let account = spec.cluster.account.as_deref();
    let mut prefixes: Vec<(&str, miette::SourceSpan)> = Vec::new();
    for m in &r.mirrors {
        let at = m.mirror.span;
        let example = format!(
            "{}.dkr.ecr.{}.amazonaws.com/<prefix>",
            account.unwrap_or("ACCOUNT"),
            region.value
        );
        match ecr_mirror(&m.mirror.value) {
            None => out.push(invalid(
                at,
                format!("`{}` is not an ECR registry: a pull-through cache lives in the cluster's own", m.mirror.value),
                "not this account's ECR",
                format!("write `{example}`, or set `pull_through_cache = false` to use a mirror that exists"),
            )),
            Some(e) if e.region != region.value => out.push(
                invalid(
                    at,
                    format!("the mirror `{}` is in region `{}`, the cluster in `{}`", m.mirror.value, e.region, region.value),
                    "another region",
                    format!("a pull-through cache is made in the cluster's region: write `{example}`"),
                )
                .with_secondary(region.span, "the cluster's region"),
            ),
            Some(e) if account.is_some_and(|a| a != e.account) => out.push(invalid(
                at,
                format!("the mirror `{}` is in account {}, the cluster in {}", m.mirror.value, e.account, account.unwrap_or_default()),
                "another account",
                format!("a pull-through cache is made in the cluster's account: write `{example}`"),
            )),
            Some(e) if !valid_prefix(e.prefix) => out.push(invalid(
                at,
                format!("`{}` is not a repository prefix ECR accepts", e.prefix),
                "the cache's repository prefix",
                "ECR takes 2 to 30 lower-case letters, digits and `.`, `_`, `-`, `/` after the registry host, e.g. `/docker-hub`".to_owned(),
            )),
            Some(e) => match prefixes.iter().find(|(p, _)| *p == e.prefix) {
                Some((_, first)) => out.push(
                    contradiction(
                        at,
                        format!("two mirrors share the repository prefix `{}`", e.prefix),
                        "second use",
                        "give each pull-through cache its own prefix".to_owned(),
                    )
                    .with_secondary(*first, "first use"),
                ),
                None => prefixes.push((e.prefix, at)),
            },
        }
        let Some(upstream) = ecr_upstream(&m.upstream.value) else {
            out.push(invalid(
                m.upstream.span,
                format!("ECR cannot make a pull-through cache of `{}`", m.upstream.value),
                "not an upstream ECR caches",
                format!("ECR caches {ECR_UPSTREAMS}; mirror another registry with `pull_through_cache = false`"),
            ));
            continue;
        };
        let credential = r.credential(&m.upstream.value);
        match (upstream.auth, credential) {
            (UpstreamAuth::Secret, None) => out.push(
                Problem::new(
                    ProblemCode::MissingField,
                    m.upstream.span,
                    format!("ECR needs credentials to cache `{}`", m.upstream.value),
                    "no `[registries.credentials]` entry",
                )
                .with_help(format!(
                    "store them in Secrets Manager under a name starting `{SECRET_PREFIX}` and add `\"{}\" = \"arn:{part}:secretsmanager:{}:{}:secret:{SECRET_PREFIX}…\"` to `[registries.credentials]`",
                    m.upstream.value, region.value, account.unwrap_or("ACCOUNT")
                )),
            ),
            (UpstreamAuth::Role, None) => out.push(
                Problem::new(
                    ProblemCode::MissingField,
                    m.upstream.span,
                    format!("ECR needs an IAM role to cache the ECR registry `{}`", m.upstream.value),
                    "no `[registries.credentials]` entry",
                )
                .with_help(format!(
                    "create a role trusted by `pullthroughcache.ecr.amazonaws.com` and add `\"{}\" = \"arn:{part}:iam::{}:role/…\"` to `[registries.credentials]`",
                    m.upstream.value, account.unwrap_or("ACCOUNT")
                )),
            ),
            (UpstreamAuth::None, Some(c)) => out.push(contradiction(
                c.arn.span,
                format!("ECR caches `{}` anonymously: it takes no credentials", m.upstream.value),
                "not used",
                format!("remove `{}` from `[registries.credentials]`", c.upstream.value),
            )),
            // The registry's account: the spec's, else the mirror's.
            (UpstreamAuth::Role, Some(c)) => {
                let registry = account.or(ecr_mirror(&m.mirror.value).map(|e| e.account));
                out.extend(role_problem(&c.arn, region, registry));
            }
            (_, Some(c)) => {
                let registry = account.or(ecr_mirror(&m.mirror.value).map(|e| e.account));
                out.extend(secret_problem(&c.arn, region, registry));
            }
            (_, None) => {}
        }
    }
    for c in &r.credentials {
        let host = registry_host(&c.upstream.value);
        if !r
            .mirrors
            .iter()
            .any(|m| registry_host(&m.upstream.value) == host)
        {
            out.push(contradiction(
                c.upstream.span,
                format!("credentials for `{}`, which has no mirror", c.upstream.value),
                "no mirror uses them",
                format!("add a mirror for `{}` under `[registries.mirrors]`, or remove these credentials", c.upstream.value),
            ));
        }
    }
}

/// What is wrong with `arn` as the secret of a pull-through cache in `region` (and the
/// registry's `account`).
fn secret_problem(
    arn: &Spanned<String>,
    region: &Spanned<String>,
    account: Option<&str>,
) -> Option<Problem> {
    if let Some(p) = arn_problem(
        arn,
        "secretsmanager",
        "Secrets Manager secret",
        true,
        region,
    ) {
        return Some(p);
    }
    let a = Arn::parse(&arn.value)?;
    let name = a.resource.strip_prefix("secret:").unwrap_or(a.resource);
    if !name.starts_with(SECRET_PREFIX) || name.len() == SECRET_PREFIX.len() {
        return Some(invalid(
            arn.span,
            format!("ECR reads only secrets named `{SECRET_PREFIX}…`; this one is `{name}`"),
            "secret name without ECR's prefix",
            format!("store the upstream's credentials in a secret whose name starts with `{SECRET_PREFIX}` (e.g. `{SECRET_PREFIX}docker-hub`) and give its ARN"),
        ));
    }
    account.filter(|acc| *acc != a.account).map(|acc| {
        invalid(
            arn.span,
            format!(
                "the secret is in account {}, the registry in {acc}",
                a.account
            ),
            "another account",
            format!("ECR reads the secret of its own account: store it in account {acc}"),
        )
    })
}

/// What is wrong with `arn` as the role ECR assumes to reach an ECR upstream.
fn role_problem(
    arn: &Spanned<String>,
    region: &Spanned<String>,
    account: Option<&str>,
) -> Option<Problem> {
    if let Some(p) = arn_problem(arn, "iam", "IAM role", false, region) {
        return Some(p);
    }
    let a = Arn::parse(&arn.value)?;
    if !a.resource.starts_with("role/") {
        return Some(invalid(
            arn.span,
            format!("`{}` is not an IAM role", arn.value),
            "not a role",
            "give the ARN of a role (`arn:…:iam::ACCOUNT:role/NAME`) trusted by `pullthroughcache.ecr.amazonaws.com`".to_owned(),
        ));
    }
    account.filter(|acc| *acc != a.account).map(|acc| {
        invalid(
            arn.span,
            format!(
                "the role is in account {}, the registry in {acc}",
                a.account
            ),
            "another account",
            format!("ECR assumes a role of the cache's own account: use one in account {acc}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_mirrors_and_prefixes_follow_ecr() {
        let hub = ecr_upstream("docker.io").unwrap();
        assert_eq!(
            (hub.name, hub.url.as_str(), hub.auth),
            ("docker-hub", "registry-1.docker.io", UpstreamAuth::Secret)
        );
        assert_eq!(ecr_upstream("index.docker.io").unwrap().name, "docker-hub");
        assert_eq!(
            ecr_upstream("registry.k8s.io").unwrap().auth,
            UpstreamAuth::None
        );
        assert_eq!(
            ecr_upstream("acme.azurecr.io").unwrap().name,
            "azure-container-registry"
        );
        assert_eq!(
            ecr_upstream("111122223333.dkr.ecr.us-west-2.amazonaws.com")
                .unwrap()
                .auth,
            UpstreamAuth::Role
        );
        assert!(ecr_upstream("gcr.io").is_none());
        assert!(ecr_upstream("ghcr.io/acme").is_none());
        let m = ecr_mirror("123456789012.dkr.ecr.eu-west-1.amazonaws.com/docker-hub").unwrap();
        assert_eq!(
            (m.account, m.region, m.prefix),
            ("123456789012", "eu-west-1", "docker-hub")
        );
        assert!(ecr_mirror("mirror.example.com/docker-hub").is_none());
        assert!(ecr_mirror("12345.dkr.ecr.eu-west-1.amazonaws.com/x").is_none());
        for ok in ["docker-hub", "k8s", "cache/quay.io", "ecr_public"] {
            assert!(valid_prefix(ok), "{ok}");
        }
        for bad in [
            "",
            "x",
            "Docker",
            "a--b",
            "-a",
            "a/",
            "a-very-long-prefix-of-thirty-one",
        ] {
            assert!(!valid_prefix(bad), "{bad}");
        }
    }
}
