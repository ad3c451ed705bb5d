//! `registry_mirror` and `registry_policy` on AWS: ECR pull-through caches, and the registry
//! policy that lets the cluster's nodes fill them.
//!
//! # Pull-through cache rules (`registry_mirror`)
//! A mirror `ACCOUNT.dkr.ecr.REGION.amazonaws.com/PREFIX` of an upstream is one pull-through
//! cache rule of that registry: `CreatePullThroughCacheRule` with `ecrRepositoryPrefix` =
//! `PREFIX`, the upstream as ECR names it (`upstreamRegistryUrl`, `upstreamRegistry`; Docker
//! Hub is `registry-1.docker.io`, see [`bmac_steps::spec::ecr_upstream`]) and, for an
//! upstream that needs them, the credentials the spec names by ARN: `credentialArn` (a Secrets
//! Manager secret named `ecr-pullthroughcache/…`) or, for another ECR registry,
//! `customRoleArn`. The spec's rules (validated before any call) make sure the mirror is this
//! account's registry in the cluster's region.
//!
//! A rule that already exists (`PullThroughCacheRuleAlreadyExistsException`) is adopted after
//! `DescribePullThroughCacheRules` shows it caches the same upstream; different credentials are
//! brought to the spec's with `UpdatePullThroughCacheRule` (the only thing ECR lets change). A
//! rule of that prefix caching another upstream is a permanent error: ECR cannot change a
//! rule's upstream, and deleting someone's rule is not bmac's call. Destroy is
//! `DeletePullThroughCacheRule`; a rule already gone is success. The cached repositories
//! themselves are kept (they are images, made by pulls, not by bmac).
//!
//! A mirror that is not a pull-through cache (`pull_through_cache = false`) exists already:
//! bmac calls nothing for it and only reports its URL.
//!
//! # The registry policy (`registry_policy`)
//! The first pull of an image through a cache creates its repository and imports the image:
//! the puller needs `ecr:CreateRepository` and `ecr:BatchImportUpstreamImage` on the cache's
//! repositories (the node role's `AmazonEC2ContainerRegistryReadOnly` grants neither). ECR lets
//! a registry permissions policy grant both, so `registries.policy` is one statement of the
//! registry's policy: the node roles (inputs `node_role.<pool>`) may do those two actions on
//! `repository/PREFIX/*` of each cache. A registry has a single policy, shared by every cluster
//! of the account and region: bmac reads it, replaces only its own statement (Sid
//! `BmacPullThroughCache<cluster>`) and writes it back (`PutRegistryPolicy`); destroy removes
//! that statement, and deletes the policy (`DeleteRegistryPolicy`) only when nothing else is
//! left. Two builds changing the same registry's policy at the same moment can lose one
//! another's statement (ECR has no conditional write); the next apply restores it.

use async_trait::async_trait;
use aws_sdk_ecr::types::{PullThroughCacheRule, UpstreamRegistry};
use bmac_core::provider::{ApplyRequest, DestroyRequest, ObserveRequest, Observed};
use bmac_core::{Inputs, Outputs, ProviderError};
use bmac_steps::config::{
    RegistryMirrorConfig, RegistryPolicyConfig, INPUT_NODE_ROLE_PREFIX, OUTPUT_MIRROR_URL,
};
use bmac_steps::spec::{
    ecr_mirror, ecr_upstream, partition, valid_prefix, EcrUpstream, UpstreamAuth,
};
use serde_json::{json, Value};

use super::error::{created, found, Context as _, Created};
use super::{Clients, Handler};

/// The `registry_mirror` handler.
pub struct Mirror;

/// The `registry_policy` handler.
pub struct RegistryPolicy;

/// The actions a first pull through a cache needs.
pub const PULL_THROUGH_ACTIONS: &[&str] = &["ecr:CreateRepository", "ecr:BatchImportUpstreamImage"];

/// One pull-through cache rule, as the spec wants it.
struct Rule {
    registry: String,
    host: String,
    prefix: String,
    upstream: EcrUpstream,
    credential: Option<String>,
}

impl Rule {
    fn of(c: &RegistryMirrorConfig) -> Result<Rule, ProviderError> {
        let bad = |why: String| {
            ProviderError::permanent(format!(
                "the mirror {} of {} cannot be an ECR pull-through cache: {why}",
                c.mirror, c.upstream
            ))
            .with_code("bmac::aws::mirror")
        };
        let mirror =
            ecr_mirror(&c.mirror).ok_or_else(|| bad("it is not a private ECR registry".into()))?;
        if !valid_prefix(mirror.prefix) {
            return Err(bad(format!(
                "`{}` is not a repository prefix ECR takes",
                mirror.prefix
            )));
        }
        let upstream = ecr_upstream(&c.upstream)
            .ok_or_else(|| bad("ECR does not cache that upstream".into()))?;
        Ok(Rule {
            registry: mirror.account.to_owned(),
            host: mirror.host.to_owned(),
            prefix: mirror.prefix.to_owned(),
            upstream,
            credential: c.credential.clone(),
        })
    }

    fn resource(&self) -> String {
        format!(
            "pull-through cache rule {} of registry {}",
            self.prefix, self.registry
        )
    }

    fn outputs(&self) -> Outputs {
        Outputs::new()
            .with(
                OUTPUT_MIRROR_URL,
                format!("https://{}/{}", self.host, self.prefix),
            )
            .with("prefix", self.prefix.as_str())
            .with("upstream_url", self.upstream.url.as_str())
    }

    /// The credential a live rule has (its secret, or its role for an ECR upstream).
    fn live_credential(live: &PullThroughCacheRule) -> Option<&str> {
        live.credential_arn().or(live.custom_role_arn())
    }
}

async fn describe_rule(
    aws: &Clients,
    rule: &Rule,
) -> Result<Option<PullThroughCacheRule>, ProviderError> {
    let out = found(
        aws.ecr
            .describe_pull_through_cache_rules()
            .registry_id(&rule.registry)
            .ecr_repository_prefixes(&rule.prefix)
            .send()
            .await,
        "ecr:DescribePullThroughCacheRules",
        &rule.resource(),
    )?;
    Ok(out.and_then(|o| {
        o.pull_through_cache_rules()
            .iter()
            .find(|r| r.ecr_repository_prefix() == Some(rule.prefix.as_str()))
            .cloned()
    }))
}

/// Adopts the rule already there: same upstream, credentials brought to the spec's.
async fn adopt(aws: &Clients, rule: &Rule) -> Result<Outputs, ProviderError> {
    let resource = rule.resource();
    let live = describe_rule(aws, rule).await?.ok_or_else(|| {
        ProviderError::retryable(format!("{resource} exists but is not visible yet"))
    })?;
    let live_url = live.upstream_registry_url().unwrap_or_default();
    if live_url != rule.upstream.url {
        return Err(ProviderError::permanent(format!(
            "{resource} already caches `{live_url}`, not `{}`: ECR cannot change the upstream of a rule — delete that rule (`aws ecr delete-pull-through-cache-rule --ecr-repository-prefix {}`) or give this mirror another prefix",
            rule.upstream.url, rule.prefix
        ))
        .with_code("bmac::aws::mirror_conflict"));
    }
    if Rule::live_credential(&live) != rule.credential.as_deref() {
        let mut update = aws
            .ecr
            .update_pull_through_cache_rule()
            .registry_id(&rule.registry)
            .ecr_repository_prefix(&rule.prefix);
        update = match rule.upstream.auth {
            UpstreamAuth::Role => update.set_custom_role_arn(rule.credential.clone()),
            _ => update.set_credential_arn(rule.credential.clone()),
        };
        update
            .send()
            .await
            .on("ecr:UpdatePullThroughCacheRule", &resource)?;
    }
    Ok(rule.outputs())
}

/// The outputs of a mirror that is not a cache bmac makes.
fn existing_outputs(c: &RegistryMirrorConfig) -> Outputs {
    Outputs::new().with(OUTPUT_MIRROR_URL, format!("https://{}", c.mirror))
}

#[async_trait]
impl Handler<Clients> for Mirror {
    async fn apply(&self, aws: &Clients, req: &ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let c: RegistryMirrorConfig = super::config(req.step)?;
        if !c.pull_through_cache {
            return Ok(existing_outputs(&c));
        }
        let rule = Rule::of(&c)?;
        let mut create = aws
            .ecr
            .create_pull_through_cache_rule()
            .registry_id(&rule.registry)
            .ecr_repository_prefix(&rule.prefix)
            .upstream_registry_url(&rule.upstream.url)
            .upstream_registry(UpstreamRegistry::from(rule.upstream.name));
        create = match rule.upstream.auth {
            UpstreamAuth::Role => create.set_custom_role_arn(rule.credential.clone()),
            _ => create.set_credential_arn(rule.credential.clone()),
        };
        match created(
            create.send().await,
            "ecr:CreatePullThroughCacheRule",
            &rule.resource(),
        )? {
            Created::Created(_) => Ok(rule.outputs()),
            Created::Exists => adopt(aws, &rule).await,
        }
    }

    async fn observe(
        &self,
        aws: &Clients,
        req: &ObserveRequest<'_>,
    ) -> Result<Observed, ProviderError> {
        let c: RegistryMirrorConfig = super::config(req.step)?;
        if !c.pull_through_cache {
            return Ok(Observed::Present {
                config: req.step.config.value().clone(),
                outputs: existing_outputs(&c),
            });
        }
        let rule = Rule::of(&c)?;
        let Some(live) = describe_rule(aws, &rule).await? else {
            return Ok(Observed::Absent);
        };
        let mut config = serde_json::to_value(&c).unwrap_or_default();
        let live_url = live.upstream_registry_url().unwrap_or_default();
        if live_url != rule.upstream.url {
            config["upstream"] = json!(live_url);
        }
        match Rule::live_credential(&live) {
            Some(arn) => config["credential"] = json!(arn),
            None => {
                config.as_object_mut().map(|m| m.remove("credential"));
            }
        }
        Ok(Observed::Present {
            config,
            outputs: rule.outputs(),
        })
    }

    async fn destroy(&self, aws: &Clients, req: &DestroyRequest<'_>) -> Result<(), ProviderError> {
        let c: RegistryMirrorConfig = super::config(req.step)?;
        if !c.pull_through_cache {
            return Ok(());
        }
        let rule = Rule::of(&c)?;
        found(
            aws.ecr
                .delete_pull_through_cache_rule()
                .registry_id(&rule.registry)
                .ecr_repository_prefix(&rule.prefix)
                .send()
                .await,
            "ecr:DeletePullThroughCacheRule",
            &rule.resource(),
        )?;
        Ok(())
    }
}

/// The Sid of a cluster's statement in the registry policy (letters and digits only, as IAM
/// requires of a Sid).
pub fn statement_id(cluster: &str) -> String {
    let name: String = cluster
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    format!("BmacPullThroughCache{name}")
}

/// The repositories of each cache: `arn:PARTITION:ecr:REGION:ACCOUNT:repository/PREFIX/*`.
fn cache_repositories(c: &RegistryPolicyConfig) -> Result<Vec<String>, ProviderError> {
    c.mirrors
        .iter()
        .map(|m| {
            let e = ecr_mirror(m)
                .filter(|e| valid_prefix(e.prefix))
                .ok_or_else(|| {
                    ProviderError::permanent(format!(
                        "registries.policy: the mirror {m} is not an ECR pull-through cache"
                    ))
                    .with_code("bmac::aws::mirror")
                })?;
            Ok(format!(
                "arn:{}:ecr:{}:{}:repository/{}/*",
                partition(e.region),
                e.region,
                e.account,
                e.prefix
            ))
        })
        .collect()
}

/// The node roles granted (inputs `node_role.<pool>`), in input order.
fn node_roles(inputs: &Inputs) -> Vec<String> {
    inputs
        .0
        .iter()
        .filter(|(name, _)| name.starts_with(INPUT_NODE_ROLE_PREFIX))
        .filter_map(|(_, v)| v.value().and_then(Value::as_str).map(str::to_owned))
        .collect()
}

/// The registry whose policy it is (the caches' account; every cache is in one registry).
fn registry_of(c: &RegistryPolicyConfig) -> Result<(String, String), ProviderError> {
    c.mirrors
        .iter()
        .find_map(|m| ecr_mirror(m).map(|e| (e.account.to_owned(), e.region.to_owned())))
        .ok_or_else(|| {
            ProviderError::permanent("registries.policy names no ECR pull-through cache")
                .with_code("bmac::aws::mirror")
        })
}

/// The registry's policy now (`None` when it has none).
async fn current_policy(aws: &Clients, registry: &str) -> Result<Option<Value>, ProviderError> {
    let resource = format!("the registry policy of {registry}");
    let Some(out) = found(
        aws.ecr.get_registry_policy().send().await,
        "ecr:GetRegistryPolicy",
        &resource,
    )?
    else {
        return Ok(None);
    };
    let Some(text) = out.policy_text() else {
        return Ok(None);
    };
    serde_json::from_str(text).map(Some).map_err(|e| {
        ProviderError::permanent(format!("{resource} is not JSON: {e}"))
            .with_code("bmac::aws::registry_policy")
    })
}

/// The statements of `policy`, split into ours (Sid `sid`) and everyone else's.
fn split_statements(policy: Option<&Value>, sid: &str) -> (Option<Value>, Vec<Value>) {
    let statements = match policy.and_then(|p| p.get("Statement")) {
        Some(Value::Array(list)) => list.clone(),
        Some(one @ Value::Object(_)) => vec![one.clone()],
        _ => Vec::new(),
    };
    let (ours, others): (Vec<Value>, Vec<Value>) = statements
        .into_iter()
        .partition(|s| s.get("Sid").and_then(Value::as_str) == Some(sid));
    (ours.into_iter().next(), others)
}

/// A policy element that may be one string or a list of them, as a list.
fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

async fn put_policy(
    aws: &Clients,
    registry: &str,
    statements: Vec<Value>,
) -> Result<(), ProviderError> {
    let resource = format!("the registry policy of {registry}");
    let doc = json!({"Version": "2012-10-17", "Statement": statements});
    aws.ecr
        .put_registry_policy()
        .policy_text(doc.to_string())
        .send()
        .await
        .on("ecr:PutRegistryPolicy", &resource)?;
    Ok(())
}

#[async_trait]
impl Handler<Clients> for RegistryPolicy {
    async fn apply(&self, aws: &Clients, req: &ApplyRequest<'_>) -> Result<Outputs, ProviderError> {
        let c: RegistryPolicyConfig = super::config(req.step)?;
        let (registry, _) = registry_of(&c)?;
        let roles = node_roles(req.inputs);
        if roles.is_empty() {
            return Err(ProviderError::permanent(
                "registries.policy has no node role to grant (inputs `node_role.<pool>`)",
            )
            .with_code("bmac::aws::registry_policy"));
        }
        let sid = statement_id(&c.cluster);
        let ours = json!({
            "Sid": sid,
            "Effect": "Allow",
            "Principal": {"AWS": roles},
            "Action": PULL_THROUGH_ACTIONS,
            "Resource": cache_repositories(&c)?,
        });
        let now = current_policy(aws, &registry).await?;
        let (_, mut statements) = split_statements(now.as_ref(), &sid);
        statements.push(ours);
        put_policy(aws, &registry, statements).await?;
        Ok(Outputs::new()
            .with("registry", registry.as_str())
            .with("statement", sid.as_str()))
    }

    async fn observe(
        &self,
        aws: &Clients,
        req: &ObserveRequest<'_>,
    ) -> Result<Observed, ProviderError> {
        let c: RegistryPolicyConfig = super::config(req.step)?;
        let (registry, _) = registry_of(&c)?;
        let sid = statement_id(&c.cluster);
        let now = current_policy(aws, &registry).await?;
        let Some(ours) = split_statements(now.as_ref(), &sid).0 else {
            return Ok(Observed::Absent);
        };
        // What the statement still grants: the caches whose repositories it names, and only
        // when it still allows both actions to every node role.
        let actions = strings(ours.get("Action"));
        let principals = strings(ours.get("Principal").and_then(|p| p.get("AWS")));
        let resources = strings(ours.get("Resource"));
        let complete = PULL_THROUGH_ACTIONS
            .iter()
            .all(|a| actions.iter().any(|have| have == a))
            && node_roles(req.inputs)
                .iter()
                .all(|r| principals.contains(r));
        let wanted = cache_repositories(&c)?;
        let mirrors: Vec<&String> = c
            .mirrors
            .iter()
            .zip(&wanted)
            .filter(|(_, repo)| complete && resources.contains(repo))
            .map(|(m, _)| m)
            .collect();
        Ok(Observed::Present {
            config: json!({"cluster": c.cluster, "mirrors": mirrors}),
            outputs: Outputs::new()
                .with("registry", registry.as_str())
                .with("statement", sid.as_str()),
        })
    }

    async fn destroy(&self, aws: &Clients, req: &DestroyRequest<'_>) -> Result<(), ProviderError> {
        let c: RegistryPolicyConfig = super::config(req.step)?;
        let (registry, _) = registry_of(&c)?;
        let sid = statement_id(&c.cluster);
        let now = current_policy(aws, &registry).await?;
        let (ours, others) = split_statements(now.as_ref(), &sid);
        if ours.is_none() {
            return Ok(());
        }
        if others.is_empty() {
            found(
                aws.ecr.delete_registry_policy().send().await,
                "ecr:DeleteRegistryPolicy",
                &format!("the registry policy of {registry}"),
            )?;
            return Ok(());
        }
        put_policy(aws, &registry, others).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_of_other_clusters_are_kept_apart() {
        let policy = json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "Theirs", "Effect": "Allow"},
            {"Sid": statement_id("prod-1"), "Effect": "Allow"},
        ]});
        let (ours, others) = split_statements(Some(&policy), &statement_id("prod-1"));
        assert_eq!(ours.unwrap()["Sid"], "BmacPullThroughCacheprod1");
        assert_eq!(others, vec![json!({"Sid": "Theirs", "Effect": "Allow"})]);
        assert_eq!(strings(Some(&json!("a"))), ["a"]);
        let c = RegistryPolicyConfig {
            cluster: "prod".into(),
            mirrors: vec!["123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/docker-hub".into()],
        };
        assert_eq!(
            cache_repositories(&c).unwrap(),
            ["arn:aws-cn:ecr:cn-north-1:123456789012:repository/docker-hub/*"]
        );
    }
}
