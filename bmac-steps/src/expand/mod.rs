//! Expanding a [`Spec`] into [`Step`]s: [`expand`] and the [`Expansion`] it returns.
//!
//! Each concern has its own module — [`infra`] (cluster, CNI, node pools, storage classes,
//! registry mirrors), [`audit`], [`workloads`] (namespaces, Pod Security labels, workload
//! identity, manifests) and [`policy`] (engine and policies) — which adds the concern's steps
//! with the dependencies the real world has (node pools after the cluster and the CNI, the
//! policy engine after there are nodes to run it and the mirrors its images come from, …).
//! Outputs flow as input references: every in-cluster step takes `endpoint`, `ca_data` and
//! `credentials` (a plain [`CredentialSource`](crate::CredentialSource), never a secret) from
//! the `cluster` step, a service account takes its role's `arn`, the audit
//! archive its log group and bucket.
//!
//! Concerns are expanded in dependency order (what another concern refers to first), so a
//! concern can ask which steps exist. Then the spec's own `depends_on` items are wired: every
//! step made from an entry depends on every step made from the named entry, or on the named
//! step itself. A name that is neither is passed through unchanged, so the planner reports it
//! with its did-you-mean and the span of the `depends_on` item; a known entry that made no
//! steps (registries without mirrors) adds no edge. The `depends_on` of an entry that made no
//! steps (a disabled `[audit]`) has nothing to attach to and is not wired.
//!
//! [`Expansion::sources`] carries the spec text and spans for the planner's diagnostics: the
//! entry each step came from, the `depends_on` item behind each spec-made edge and the
//! dependent's entry for every edge the catalogue made.

mod audit;
pub mod cloud;
pub(crate) mod infra;
mod policy;
mod workloads;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::spec::Spec;
use bmac_core::plan::Sources;
use bmac_core::step::{Ref, Step, StepId};
use miette::SourceSpan;
use serde::Serialize;

use crate::config::{
    INPUT_CA_DATA, INPUT_CREDENTIALS, INPUT_ENDPOINT, OUTPUT_CA_DATA, OUTPUT_CREDENTIALS,
    OUTPUT_ENDPOINT,
};
use crate::error::{CatalogueError, InvalidIdError};
use crate::kinds;

/// The steps a spec expands into, with the spans the planner's diagnostics point at.
#[derive(Debug, Clone)]
pub struct Expansion {
    /// The steps, in the order the catalogue made them, shared: a plan made from them (and
    /// the state an apply records) holds the same steps, not copies.
    pub steps: Vec<Arc<Step>>,
    /// The spec text, the entry span of each step and the span behind each edge.
    pub sources: Sources,
}

/// Expands a spec into steps. Relative paths in the spec (policy bundle, manifest and policy
/// files) are resolved against the directory of the spec file, taken from the spec's source
/// name (as [`Spec::load`] records it); see [`expand_in`] to give the directory explicitly.
pub fn expand(spec: &Spec) -> Result<Expansion, CatalogueError> {
    let base = Path::new(spec.source().0)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    expand_in(spec, &base)
}

/// Expands a spec whose relative paths are relative to `base` (for a spec parsed from text
/// that did not come from a file next to its bundles).
pub fn expand_in(spec: &Spec, base: &Path) -> Result<Expansion, CatalogueError> {
    let mut c = Catalogue {
        spec,
        base: base.to_path_buf(),
        steps: Vec::new(),
        spans: HashMap::new(),
        members: HashMap::new(),
    };
    infra::cluster(&mut c)?;
    infra::cni(&mut c)?;
    infra::node_pools(&mut c)?;
    infra::storage_classes(&mut c)?;
    infra::registry_mirrors(&mut c)?;
    audit::expand(&mut c)?;
    workloads::namespaces(&mut c)?;
    workloads::pod_security(&mut c)?;
    workloads::workload_identities(&mut c)?;
    policy::expand(&mut c)?;
    workloads::manifests(&mut c)?;
    Ok(c.finish())
}

/// The expansion under way: the steps so far and which entry made each.
pub(crate) struct Catalogue<'s> {
    pub spec: &'s Spec,
    /// The directory relative paths are resolved against.
    pub base: PathBuf,
    steps: Vec<Step>,
    spans: HashMap<StepId, SourceSpan>,
    /// Entry id → indices of the steps it made.
    members: HashMap<StepId, Vec<usize>>,
}

impl Catalogue<'_> {
    /// A step id from text, or a diagnostic at `span`.
    pub fn id(&self, text: &str, span: SourceSpan) -> Result<StepId, CatalogueError> {
        StepId::new(text).map_err(|e| {
            CatalogueError::InvalidId(Box::new(InvalidIdError {
                id: e.id,
                reason: e.reason.to_owned(),
                src: self.spec.named_source(),
                span,
            }))
        })
    }

    /// A step of catalogue kind `kind` with a typed config.
    pub fn step<C: Serialize>(
        &self,
        id: StepId,
        kind: &str,
        config: &C,
    ) -> Result<Step, CatalogueError> {
        Step::new(id.clone(), kinds::kind(kind), config).map_err(|source| CatalogueError::Config {
            step: id.to_string(),
            source,
        })
    }

    /// Records `step` as made from the entry `entry`, defined at `span`.
    pub fn add(&mut self, entry: &StepId, span: SourceSpan, step: Step) -> StepId {
        let id = step.id.clone();
        self.spans.insert(id.clone(), span);
        self.members
            .entry(entry.clone())
            .or_default()
            .push(self.steps.len());
        self.steps.push(step);
        id
    }

    /// The cluster step's id (the cluster entry's id, `cluster`).
    pub fn cluster(&self) -> StepId {
        self.spec.cluster.meta.id.clone()
    }

    /// Adds the cluster-access inputs every in-cluster step takes from the cluster step.
    pub fn in_cluster(&self, step: Step) -> Step {
        let cluster = self.cluster();
        step.input(INPUT_ENDPOINT, Ref::new(cluster.clone(), OUTPUT_ENDPOINT))
            .input(INPUT_CA_DATA, Ref::new(cluster.clone(), OUTPUT_CA_DATA))
            .input(INPUT_CREDENTIALS, Ref::new(cluster, OUTPUT_CREDENTIALS))
    }

    /// Adds the edge `id` → `on` to a step already made (a no-op when it has it, or when no
    /// step `id` exists).
    pub fn depend(&mut self, id: &StepId, on: StepId) {
        if let Some(step) = self.steps.iter_mut().find(|s| &s.id == id) {
            if !step.deps.contains(&on) {
                step.deps.push(on);
            }
        }
    }

    /// Whether a step with this id has been made.
    pub fn has(&self, id: &str) -> bool {
        self.spans.contains_key(id)
    }

    /// The ids of the steps of `kind` made so far, in order.
    pub fn of_kind(&self, kind: &str) -> Vec<StepId> {
        self.steps
            .iter()
            .filter(|s| s.kind.name() == kind)
            .map(|s| s.id.clone())
            .collect()
    }

    /// Wires `depends_on` and builds the sources.
    fn finish(mut self) -> Expansion {
        let (name, text) = self.spec.source();
        let mut sources = Sources::new(name, text.clone());
        for entry in self.spec.entries() {
            let Some(members) = self.members.get(entry.id).cloned() else {
                continue;
            };
            for (named, span) in entry.depends_on {
                let targets: Vec<StepId> = match self.members.get(named) {
                    Some(made) => made.iter().map(|&i| self.steps[i].id.clone()).collect(),
                    None if self.spans.contains_key(named) => vec![named.clone()],
                    None if self.spec.entry(named.as_str()).is_some() => Vec::new(),
                    None => vec![named.clone()],
                };
                for &i in &members {
                    for target in &targets {
                        let step = &mut self.steps[i];
                        if !step.deps.contains(target) {
                            step.deps.push(target.clone());
                        }
                        sources
                            .edges
                            .insert((step.id.clone(), target.clone()), *span);
                    }
                }
            }
        }
        for step in &self.steps {
            let Some(&span) = self.spans.get(&step.id) else {
                continue;
            };
            for dep in step.dependencies() {
                sources
                    .edges
                    .entry((step.id.clone(), dep.clone()))
                    .or_insert(span);
            }
        }
        sources.steps = self.spans;
        Expansion {
            steps: self.steps.into_iter().map(Arc::new).collect(),
            sources,
        }
    }
}
