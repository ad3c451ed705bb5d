//! `cni`: Cilium or Calico installed in-cluster from its pinned release bundle, with what the
//! vendor's EKS guide requires of the VPC CNI's `aws-node` (`aws_node.rs`).
//!
//! The bundle is the plugin's manifests as its vendor publishes or renders them: Cilium's
//! `helm template cilium cilium/cilium --namespace kube-system …` output (every namespaced
//! object names `kube-system`), Calico's `calico.yaml` (also `kube-system`), or the Tigera
//! operator's `tigera-operator.yaml` (its own `tigera-operator` namespace, created by the
//! bundle) with the `Installation` resource appended. Namespaced objects that name no
//! namespace go to [`NAMESPACE`], where both vendors put their agents.
//!
//! Order of work, each a precondition of the next:
//! 1. the bundle is read (a file, the cache, or — apply only — a download, `fetch.rs`) and its
//!    SHA-256 checked: a mismatch is a permanent error and nothing has been written, `aws-node`
//!    included;
//! 2. every object's API is checked (`served.rs`), again before any write;
//! 3. `aws-node` is changed as the guide for the step's `mode` says (the guides do it before
//!    installing the plugin);
//! 4. the objects are applied as the policy engine's are (`object_set.rs`): CRDs first, waited
//!    for until `Established`, then the rest in bundle order.
//!
//! The config's fields:
//! - `plugin` must be `cilium` or `calico`: the provider's default CNI is not installed through
//!   the API server (on EKS it is the VPC CNI add-on), so such a step is a permanent error here.
//! - `version` is recorded in the outputs; the bundle's digest is what pins what is installed.
//! - `settings` are not read: bmac applies a bundle as it is and renders no Helm chart, so the
//!   spec refuses `settings` beside a bundle (only the simulated cloud reads them).
//! - `mode` decides what happens to `aws-node`; without one it is left alone.
//!
//! Observe reports the bundle as the manifest steps do (its `bundle.sha256` marked with the
//! objects changed outside bmac) and, when the step has a `mode`, that `mode` — followed by
//! what is wrong when `aws-node` is no longer as the guide wants it (`"cni (kube-system/aws-node
//! runs on nodes again …)"`), so drift names it and apply puts it back. Destroy removes the
//! bundle's objects last-first (deleting what the step created, releasing bmac's fields on the
//! rest), then restores `aws-node` (`aws_node.rs` says how far it can).

use bmac_core::provider::{Observed, Prior};
use bmac_core::{Outputs, ProviderError, Step};
use bmac_steps::bundle_cache::normalise;
use bmac_steps::config::{Bundle, CniConfig};
use serde_json::json;

use super::aws_node::{self, Change};
use super::fetch::Need;
use super::object_set::{self, applied_outputs, apply_all, bundle_objects};
use super::objects::Session;
use super::served;

/// Where a CNI bundle's namespaced objects without a namespace go.
pub(crate) const NAMESPACE: &str = "kube-system";

/// The step's config, its bundle and what it does to `aws-node`, or why it cannot be installed.
fn install(step: &Step) -> Result<(CniConfig, Bundle, Change), ProviderError> {
    let cfg: CniConfig = super::config(step)?;
    match cfg.plugin.as_str() {
        "cilium" | "calico" => {}
        "default" => {
            return Err(ProviderError::permanent(
                "the provider's default CNI is not installed through the API server (on EKS it \
                 is the VPC CNI add-on); the kube provider installs `cilium` or `calico` from a \
                 bundle",
            ))
        }
        other => {
            return Err(ProviderError::permanent(format!(
                "CNI plugin {other:?} is not `cilium` or `calico`"
            )))
        }
    }
    let Some(bundle) = cfg.bundle.clone() else {
        return Err(ProviderError::permanent(format!(
            "CNI {} has no `bundle`; the kube provider installs a CNI from a release bundle \
             pinned by its sha256",
            cfg.plugin
        )));
    };
    let change = Change::of(&cfg.plugin, cfg.mode.as_deref())?;
    Ok((cfg, bundle, change))
}

/// The outputs every `cni` step records beside its objects.
fn described(mut outputs: Outputs, cfg: &CniConfig, bundle: &Bundle) -> Outputs {
    outputs = outputs
        .with("plugin", cfg.plugin.clone())
        .with("bundle_sha256", normalise(&bundle.sha256));
    if let Some(version) = &cfg.version {
        outputs = outputs.with("version", version.clone());
    }
    outputs
}

pub(crate) async fn apply(s: &Session<'_>, step: &Step) -> Result<Outputs, ProviderError> {
    let (cfg, bundle, change) = install(step)?;
    let Some(objects) = bundle_objects(s, &bundle, Need::Download).await? else {
        return Err(ProviderError::permanent("the bundle could not be fetched"));
    };
    served::check(s, &objects, Some(NAMESPACE)).await?;
    let aws_node = aws_node::apply(s, change).await?;
    let applied = apply_all(s, &objects, Some(NAMESPACE)).await?;
    Ok(described(applied_outputs(&applied), &cfg, &bundle).with("aws_node", aws_node))
}

pub(crate) async fn observe(
    s: &Session<'_>,
    step: &Step,
    prior: Option<&Prior>,
) -> Result<Observed, ProviderError> {
    let (cfg, bundle, change) = install(step)?;
    let Observed::Present {
        mut config,
        outputs,
    } = object_set::observe(s, step, prior).await?
    else {
        return Ok(Observed::Absent);
    };
    if let Some(mode) = &cfg.mode {
        config["mode"] = match aws_node::check(s, change).await? {
            None => json!(mode),
            Some(moved) => json!(format!("{mode} ({moved})")),
        };
    }
    let mut outputs = described(outputs, &cfg, &bundle);
    let done = prior.and_then(|p| p.outputs().get("aws_node").and_then(|o| o.value()));
    if let Some(done) = done {
        outputs = outputs.with("aws_node", done.clone());
    }
    Ok(Observed::Present { config, outputs })
}

pub(crate) async fn destroy(
    s: &Session<'_>,
    step: &Step,
    prior: &Outputs,
) -> Result<(), ProviderError> {
    let (_, _, change) = install(step)?;
    object_set::destroy(s, step, prior).await?;
    aws_node::restore(s, change).await
}
