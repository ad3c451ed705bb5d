//! The spec: `bmac.toml` read into a typed model that remembers where everything was written.
//!
//! Reading happens in three phases, each collecting *every* problem before giving up:
//! 1. **syntax** — `toml_edit` parses the text into a spanned tree (`tree.rs`);
//! 2. **decode** — each section is read into its model type (`parse.rs`, `security.rs`,
//!    `workloads.rs`): unknown fields (with "did you mean"), wrong types, values outside their
//!    set, names that cannot be step ids, missing required fields;
//! 3. **validate** — only if decoding was clean: contradictions between fields and entries
//!    (`validate.rs`), e.g. `min > max`, two default storage classes, a workload identity in an
//!    undeclared namespace.
//!
//! Any problem makes [`Spec::parse`] return a [`SpecError`] carrying the named source and all
//! problems, each with a code, a label at the exact span and a help line. No input, however
//! malformed, panics (a proptest over arbitrary and mutated text holds us to that).
//!
//! Every entry that becomes steps has an **entry id** — `cluster`, `node_pool.<name>`, `cni`,
//! `storage_class.<name>`, `audit`, `pod_security`, `policy`, `registries`,
//! `workload_identity.<name>` (or `<namespace>-<service_account>`), `namespace.<name>`,
//! `manifest.<name>` — and may list `depends_on = ["namespace.payments", …]`. Dependency ids
//! are checked for syntax here; whether they exist (and whether they form a cycle) is the
//! planner's job, so the spec keeps the span of every entry and of every `depends_on` item.
//!
//! `[state]` and `[sim]` configure bmac itself, not the cluster: they are not entries.
//! File paths in the spec (`policy.bundle.path`, `manifest.file`, …) are relative to the spec
//! file; the spec does not read them.
//!
//! [`lint`] checks a valid spec against the security baseline.

mod cloud;
mod decode;
mod diag;
mod ecr;
mod gke;
pub mod lint;
mod model;
mod model_cloud;
mod model_security;
mod parse;
mod security;
mod tree;
mod validate;
mod workloads;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::SourceSpan;

pub use cloud::{partition, Arn, INSTANCE_FAMILIES, LOG_RETENTION_DAYS};
pub use diag::{InvalidSpec, Problem, ProblemCode, SpecError};
pub use ecr::{
    ecr_mirror, ecr_registry, ecr_upstream, valid_prefix, EcrMirror, EcrUpstream, UpstreamAuth,
    ECR_UPSTREAMS, SECRET_PREFIX,
};
pub use gke::{is_project_id, location as gcp_location, KmsKeyName, MACHINE_FAMILIES};
pub use model::*;
pub use model_cloud::*;
pub use model_security::*;
pub use validate::registry_host;

use bmac_core::step::StepId;
use decode::{span, Decoder};
use tree::{Node, NodeKind};

/// A valid spec, with its source text.
#[derive(Debug, Clone)]
pub struct Spec {
    name: String,
    text: Arc<str>,
    /// The directory relative paths in the spec are resolved against.
    base_dir: PathBuf,
    sim_span: Option<SourceSpan>,
    /// `[cluster]`.
    pub cluster: Cluster,
    /// `[state]` (local by default).
    pub state: StateConfig,
    /// `[sim]` (defaults when absent).
    pub sim: SimConfig,
    /// `[network]` (cloud providers; absent means the provider's default network).
    pub network: Option<Network>,
    /// `[[node_pool]]`, in file order.
    pub node_pools: Vec<NodePool>,
    /// `[cni]`.
    pub cni: Option<Cni>,
    /// `[[storage_class]]`, in file order.
    pub storage_classes: Vec<StorageClass>,
    /// `[audit]`.
    pub audit: Option<Audit>,
    /// `[pod_security]`.
    pub pod_security: Option<PodSecurity>,
    /// `[policy]`.
    pub policy: Option<Policy>,
    /// `[registries]`.
    pub registries: Option<Registries>,
    /// `[[workload_identity]]`, in file order.
    pub workload_identities: Vec<WorkloadIdentity>,
    /// `[[namespace]]`, in file order.
    pub namespaces: Vec<Namespace>,
    /// `[[manifest]]`, in file order.
    pub manifests: Vec<Manifest>,
}

/// A view of one entry: what the planner and catalogue need to wire and report it.
#[derive(Debug, Clone, Copy)]
pub struct EntryRef<'a> {
    /// The entry id.
    pub id: &'a StepId,
    /// The section it comes from (`node_pool`, `cluster` …).
    pub section: &'static str,
    /// Its table in the spec.
    pub span: SourceSpan,
    /// Its `depends_on` items, with their spans.
    pub depends_on: &'a [DependsOn],
}

impl Spec {
    /// Reads a spec from text; `name` is how the source is named in diagnostics.
    pub fn parse(name: &str, text: &str) -> Result<Spec, SpecError> {
        let fail = |problems: Vec<Problem>| SpecError::from(InvalidSpec::new(name, text, problems));
        let root = match tree::parse(text) {
            Ok(root) => root,
            Err(e) => {
                let message = if e.message.is_empty() {
                    "invalid TOML".to_owned()
                } else {
                    e.message
                };
                let p = Problem::new(ProblemCode::Syntax, span(&e.span), format!("invalid TOML: {message}"), "here")
                    .with_help("fix the TOML syntax (quotes, brackets, `key = value` pairs) at the marked spot");
                return Err(fail(vec![p]));
            }
        };
        let mut d = Decoder::default();
        let spec = decode_root(&mut d, &root, name, text);
        if !d.problems.is_empty() {
            return Err(fail(sorted(d.problems)));
        }
        let Some(spec) = spec else {
            // Decoding returns no spec only after recording why.
            return Err(fail(vec![Problem::new(
                ProblemCode::MissingField,
                (0, 0).into(),
                "spec has no usable `[cluster]`",
                "here",
            )
            .with_help("add `[cluster]` with `name` and `provider`")]));
        };
        let problems = validate::validate(&spec);
        if problems.is_empty() {
            Ok(spec)
        } else {
            Err(fail(sorted(problems)))
        }
    }

    /// Reads a spec file; diagnostics name it by its path as given.
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut spec = Spec::parse(&path.display().to_string(), &text)?;
        spec.base_dir = path.parent().map_or_else(PathBuf::new, Path::to_path_buf);
        Ok(spec)
    }

    /// The directory relative paths in the spec (`policy.bundle.path`, `manifest.file`,
    /// `state.path`, `cluster.kubeconfig`) are relative to: the spec file's directory, or
    /// the current directory (empty path) for a spec parsed from text.
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// A path from the spec, resolved against [`Spec::base_dir`] (absolute paths unchanged).
    pub fn resolve_path(&self, path: &Path) -> PathBuf {
        self.base_dir.join(path)
    }

    /// The source name and text (for diagnostics that point into the spec).
    pub fn source(&self) -> (&str, &Arc<str>) {
        (&self.name, &self.text)
    }

    /// A `NamedSource` of the spec text, for building diagnostics.
    pub fn named_source(&self) -> miette::NamedSource<Arc<str>> {
        miette::NamedSource::new(&self.name, Arc::clone(&self.text))
    }

    /// 1-based line and column of a byte offset in the source (for messages and tests).
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..floor_char_boundary(&self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    /// Every entry, in section order: cluster, network, node pools, cni, storage classes, audit,
    /// pod_security, policy, registries, workload identities, namespaces, manifests.
    pub fn entries(&self) -> impl Iterator<Item = EntryRef<'_>> {
        fn view<'a>(section: &'static str, m: &'a EntryMeta) -> EntryRef<'a> {
            EntryRef {
                id: &m.id,
                section,
                span: m.span,
                depends_on: &m.depends_on,
            }
        }
        std::iter::once(view("cluster", &self.cluster.meta))
            .chain(self.network.iter().map(move |n| view("network", &n.meta)))
            .chain(
                self.node_pools
                    .iter()
                    .map(move |p| view("node_pool", &p.meta)),
            )
            .chain(self.cni.iter().map(move |c| view("cni", &c.meta)))
            .chain(
                self.storage_classes
                    .iter()
                    .map(move |s| view("storage_class", &s.meta)),
            )
            .chain(self.audit.iter().map(move |a| view("audit", &a.meta)))
            .chain(
                self.pod_security
                    .iter()
                    .map(move |p| view("pod_security", &p.meta)),
            )
            .chain(self.policy.iter().map(move |p| view("policy", &p.meta)))
            .chain(
                self.registries
                    .iter()
                    .map(move |r| view("registries", &r.meta)),
            )
            .chain(
                self.workload_identities
                    .iter()
                    .map(move |w| view("workload_identity", &w.meta)),
            )
            .chain(
                self.namespaces
                    .iter()
                    .map(move |n| view("namespace", &n.meta)),
            )
            .chain(
                self.manifests
                    .iter()
                    .map(move |m| view("manifest", &m.meta)),
            )
    }

    /// The entry with this id.
    pub fn entry(&self, id: &str) -> Option<EntryRef<'_>> {
        self.entries().find(|e| e.id.as_str() == id)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn sorted(mut problems: Vec<Problem>) -> Vec<Problem> {
    problems.sort_by_key(|p| p.span.offset());
    problems
}

/// Decodes every section; `None` when `[cluster]` is unusable (a problem is recorded).
fn decode_root(d: &mut Decoder, root: &Node, name: &str, text: &str) -> Option<Spec> {
    let NodeKind::Table(entries) = &root.kind else {
        return None;
    };
    let mut sections: Vec<(&str, &Node)> = Vec::new();
    for (key, node) in entries {
        if parse::SECTIONS.contains(&key.name.as_str()) {
            sections.push((&key.name, node));
        } else {
            let help = match diag::closest(&key.name, parse::SECTIONS) {
                Some(c) => format!("did you mean `{c}`?"),
                None => format!("valid sections: {}", diag::quoted_list(parse::SECTIONS)),
            };
            d.push(
                Problem::new(
                    ProblemCode::UnknownField,
                    span(&key.span),
                    format!("unknown section `{}`", key.name),
                    "unknown section",
                )
                .with_help(help),
            );
        }
    }
    let get = |s: &str| sections.iter().find(|(k, _)| *k == s).map(|(_, n)| *n);
    let cluster = match get("cluster") {
        Some(n) => parse::cluster(d, n),
        None => {
            d.push(
                Problem::new(ProblemCode::MissingField, (0, 0).into(), "the spec has no `[cluster]` section", "expected `[cluster]`")
                    .with_help("start the spec with `[cluster]`, `name = \"…\"` and `provider = \"sim\"` (or `kube`, `eks`, `gke`)"),
            );
            None
        }
    };
    let state = get("state").map(|n| parse::state(d, n)).unwrap_or_default();
    let sim_span = get("sim").map(|n| span(&n.head));
    let sim = get("sim")
        .and_then(|n| parse::sim(d, n))
        .unwrap_or_default();
    let many = |d: &mut Decoder, section: &str| -> Vec<&Node> {
        get(section)
            .map(|n| parse::each_table(d, n, section))
            .unwrap_or_default()
    };
    let network = get("network").and_then(|n| match cluster.as_ref().map(|c| c.provider.value) {
        Some(model::Provider::Gke) => gke::network(d, n),
        _ => cloud::network(d, n),
    });
    let node_pools = many(d, "node_pool")
        .into_iter()
        .filter_map(|n| parse::node_pool(d, n))
        .collect();
    let cni = get("cni").and_then(|n| parse::cni(d, n));
    let storage_classes = many(d, "storage_class")
        .into_iter()
        .filter_map(|n| parse::storage_class(d, n))
        .collect();
    let audit = get("audit").and_then(|n| security::audit(d, n));
    let pod_security = get("pod_security").and_then(|n| security::pod_security(d, n));
    let policy = get("policy").and_then(|n| security::policy(d, n));
    let registries = get("registries").and_then(|n| security::registries(d, n));
    let workload_identities = many(d, "workload_identity")
        .into_iter()
        .filter_map(|n| workloads::workload_identity(d, n))
        .collect();
    let namespaces = many(d, "namespace")
        .into_iter()
        .filter_map(|n| workloads::namespace(d, n))
        .collect();
    let manifests = many(d, "manifest")
        .into_iter()
        .filter_map(|n| workloads::manifest(d, n))
        .collect();
    Some(Spec {
        name: name.to_owned(),
        text: Arc::from(text),
        base_dir: PathBuf::new(),
        sim_span,
        cluster: cluster?,
        state,
        sim,
        network,
        node_pools,
        cni,
        storage_classes,
        audit,
        pod_security,
        policy,
        registries,
        workload_identities,
        namespaces,
        manifests,
    })
}
