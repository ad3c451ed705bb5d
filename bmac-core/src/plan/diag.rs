//! Planner diagnostics: the [`PlanError`] enum, the [`Sources`] that let a diagnostic point
//! into `bmac.toml`, and the "did you mean …" search.
//!
//! Every error names the steps involved in its message text, so it reads well without any
//! source file (steps built in Rust, a saved plan). When the caller passes [`Sources`], the
//! errors also carry the file as a miette `NamedSource` and label the spans of the spec
//! entries and `depends_on` / reference entries involved.
//!
//! Everything here runs on the error path only, so it may scan all step ids (the
//! did-you-mean search is O(ids × id length²)); the planner's happy path never calls into it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, Severity, SourceCode, SourceSpan};

use super::StateRef;
use crate::step::StepId;

/// Where the steps came from, so diagnostics can point at the right line of `bmac.toml`.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The file's path, as shown to the user.
    pub name: String,
    /// The file's contents.
    pub text: Arc<str>,
    /// Span of the spec entry that defines each step.
    pub steps: HashMap<StepId, SourceSpan>,
    /// Span where step `from` names step `to` (in `depends_on` or in a reference), keyed
    /// `(from, to)`.
    pub edges: HashMap<(StepId, StepId), SourceSpan>,
}

impl Sources {
    /// Sources for a file with no spans recorded yet.
    pub fn new(name: impl Into<String>, text: impl Into<Arc<str>>) -> Self {
        Sources {
            name: name.into(),
            text: text.into(),
            steps: HashMap::new(),
            edges: HashMap::new(),
        }
    }

    /// The file as miette source code.
    pub(crate) fn named(&self) -> NamedSource<Arc<str>> {
        NamedSource::new(self.name.clone(), Arc::clone(&self.text))
    }

    /// The span where `from` names `to`, else the span of `from`'s entry.
    pub(crate) fn edge_or_step(&self, from: &StepId, to: &StepId) -> Option<SourceSpan> {
        self.edges
            .get(&(from.clone(), to.clone()))
            .or_else(|| self.steps.get(from))
            .copied()
    }
}

/// Why a plan could not be made (or a saved plan cannot be used).
///
/// Each variant wraps a struct with the details (the bulky ones boxed, so that a `Result`
/// carrying a `PlanError` stays small); the enum forwards `Display`, `source` and every
/// miette [`Diagnostic`] method to it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// Steps depend on each other in a circle (`bmac::plan::cycle`).
    #[error(transparent)]
    Cycle(Box<CycleError>),
    /// A step names a step that does not exist (`bmac::plan::unknown_dep`).
    #[error(transparent)]
    UnknownDep(Box<UnknownDepError>),
    /// Two steps share an id (`bmac::plan::duplicate_step`).
    #[error(transparent)]
    DuplicateStep(Box<DuplicateStepError>),
    /// `--target` or `--exclude` names a step the plan does not have
    /// (`bmac::plan::unknown_target`).
    #[error(transparent)]
    UnknownTarget(Box<UnknownTargetError>),
    /// A saved plan was made against another state than the current one
    /// (`bmac::plan::stale`).
    #[error(transparent)]
    Stale(StaleError),
    /// A saved plan file is damaged, edited, or from another bmac version
    /// (`bmac::plan::invalid_file`).
    #[error(transparent)]
    InvalidFile(InvalidPlanFile),
}

impl PlanError {
    /// An invalid plan file, for a reason found after parsing.
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        PlanError::InvalidFile(InvalidPlanFile {
            reason: reason.into(),
            source: None,
        })
    }

    fn details(&self) -> &(dyn Diagnostic + 'static) {
        match self {
            PlanError::Cycle(e) => &**e,
            PlanError::UnknownDep(e) => &**e,
            PlanError::DuplicateStep(e) => &**e,
            PlanError::UnknownTarget(e) => &**e,
            PlanError::Stale(e) => e,
            PlanError::InvalidFile(e) => e,
        }
    }
}

impl Diagnostic for PlanError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.details().code()
    }
    fn severity(&self) -> Option<Severity> {
        self.details().severity()
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.details().help()
    }
    fn url<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.details().url()
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.details().source_code()
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.details().labels()
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        self.details().related()
    }
    fn diagnostic_source(&self) -> Option<&dyn Diagnostic> {
        self.details().diagnostic_source()
    }
}

/// Steps depend on each other in a circle.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("dependency cycle: {}", arrows(cycle))]
#[diagnostic(code(bmac::plan::cycle), help("{help}"))]
pub struct CycleError {
    /// One cycle, in order: each step depends on the next, the last on the first.
    pub cycle: Vec<StepId>,
    /// The edge to cut, `(from, to)`: `from` stops depending on `to`.
    pub cut: (StepId, StepId),
    /// How to break the cycle.
    pub help: String,
    /// The spec file, when known.
    #[source_code]
    pub src: Option<NamedSource<Arc<str>>>,
    /// One label per edge of the cycle that has a known span.
    #[label(collection)]
    pub labels: Vec<LabeledSpan>,
}

/// A step names a step that does not exist.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("step `{step}` {relation} `{missing}`, which is not defined")]
#[diagnostic(code(bmac::plan::unknown_dep), help("{help}"))]
pub struct UnknownDepError {
    /// The step with the bad dependency.
    pub step: StepId,
    /// How it names it: `depends on` or `takes input `x` from`.
    pub relation: String,
    /// The id that does not exist.
    pub missing: StepId,
    /// The closest existing id, when one is close enough.
    pub suggestion: Option<StepId>,
    /// What to do.
    pub help: String,
    /// The spec file, when known (related errors render against their parent's).
    #[source_code]
    pub src: Option<NamedSource<Arc<str>>>,
    /// Where the bad name is written.
    #[label("not defined")]
    pub span: Option<SourceSpan>,
    /// Further unknown dependencies found in the same plan.
    #[related]
    pub others: Vec<UnknownDepError>,
}

/// Two steps share an id.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("step `{id}` is defined more than once")]
#[diagnostic(
    code(bmac::plan::duplicate_step),
    help("step ids must be unique; rename or remove one of the definitions")
)]
pub struct DuplicateStepError {
    /// The repeated id.
    pub id: StepId,
    /// The spec file, when known.
    #[source_code]
    pub src: Option<NamedSource<Arc<str>>>,
    /// Where the step is defined.
    #[label("`{id}` defined here")]
    pub span: Option<SourceSpan>,
}

/// `--target` or `--exclude` names a step the plan does not have.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("cannot {flag} `{id}`: no such step {scope}")]
#[diagnostic(code(bmac::plan::unknown_target), help("{help}"))]
pub struct UnknownTargetError {
    /// `target` or `exclude`.
    pub flag: &'static str,
    /// The id given.
    pub id: StepId,
    /// Where the planner looked: `in the spec or the state`, or `in the state`.
    pub scope: &'static str,
    /// The closest existing id, when one is close enough.
    pub suggestion: Option<StepId>,
    /// What to do.
    pub help: String,
}

/// A saved plan was made against another state than the current one.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{}", stale_message(planned, current))]
#[diagnostic(
    code(bmac::plan::stale),
    help("run `bmac plan` again, review it, and apply the new plan")
)]
pub struct StaleError {
    /// The state the plan was made against.
    pub planned: StateRef,
    /// The state now.
    pub current: StateRef,
}

/// A saved plan file is damaged, edited, or from another bmac version.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("the plan file is not a valid bmac plan: {reason}")]
#[diagnostic(
    code(bmac::plan::invalid_file),
    help("plan files are written by `bmac plan --out`; make a new one rather than editing it")
)]
pub struct InvalidPlanFile {
    /// What is wrong.
    pub reason: String,
    /// The parse error, if parsing failed.
    #[source]
    pub source: Option<serde_json::Error>,
}

/// `a → b → c → a`.
fn arrows(cycle: &[StepId]) -> String {
    let mut s = String::new();
    for id in cycle.iter().chain(cycle.first()) {
        if !s.is_empty() {
            s.push_str(" → ");
        }
        s.push_str(id.as_str());
    }
    s
}

fn stale_message(planned: &StateRef, current: &StateRef) -> String {
    if planned.lineage != current.lineage {
        format!(
            "this plan was made against another state (lineage `{}`, serial {}) than the \
             current one (lineage `{}`, serial {}); run `bmac plan` again",
            planned.lineage, planned.serial, current.lineage, current.serial
        )
    } else {
        format!(
            "the state changed since this plan was made (serial {} → {}); run `bmac plan` again",
            planned.serial, current.serial
        )
    }
}

/// How one edge of a cycle came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EdgeKind {
    /// `depends_on`: ordering only, free to cut.
    Deps,
    /// An input reference (possibly also listed in `depends_on`): carries data.
    Input,
    /// Recorded in state by an earlier apply (deletion order).
    Recorded,
}

/// One edge of a cycle: `from` depends on `to`.
pub(crate) struct CycleEdge<'a> {
    pub from: &'a StepId,
    pub to: &'a StepId,
    pub kind: EdgeKind,
    /// For input edges, the name of (one) input taken from `to`.
    pub input: Option<&'a str>,
}

/// Builds the cycle error for `edges`, which go around the cycle in order.
pub(crate) fn cycle_error(edges: &[CycleEdge<'_>], sources: Option<&Sources>) -> PlanError {
    let cycle: Vec<StepId> = edges.iter().map(|e| e.from.clone()).collect();
    // Prefer an explicit dependency: it only orders, a reference carries data.
    let cut_at = edges
        .iter()
        .position(|e| e.kind == EdgeKind::Deps)
        .unwrap_or(0);
    let Some(cut) = edges.get(cut_at) else {
        return PlanError::invalid("internal error: an empty dependency cycle was reported");
    };
    let help = match cut.kind {
        EdgeKind::Deps => {
            let refs = edges.iter().filter(|e| e.kind == EdgeKind::Input).count();
            let why = if refs > 0 {
                " (an explicit dependency only orders steps, while an input reference carries \
                 data, so cut a `depends_on` edge)"
            } else {
                ""
            };
            format!(
                "cut the edge `{} → {}`: remove `{}` from the `depends_on` of `{}`{why}",
                cut.from, cut.to, cut.to, cut.from
            )
        }
        EdgeKind::Input => format!(
            "every edge of this cycle is an input reference; cut `{} → {}` by giving input \
             `{}` of `{}` a value that does not come from `{}`",
            cut.from,
            cut.to,
            cut.input.unwrap_or("?"),
            cut.from,
            cut.to
        ),
        EdgeKind::Recorded => "the state records these steps as depending on each other, \
             which no plan can produce; the state file was edited or is damaged"
            .to_owned(),
    };
    let mut labels = Vec::new();
    if let Some(src) = sources {
        for (i, e) in edges.iter().enumerate() {
            let Some(span) = src.edge_or_step(e.from, e.to) else {
                continue;
            };
            let mut text = match (e.kind, e.input) {
                (EdgeKind::Input, Some(input)) => {
                    format!("`{}` takes input `{input}` from `{}`", e.from, e.to)
                }
                _ => format!("`{}` depends on `{}`", e.from, e.to),
            };
            if i == cut_at {
                text.push_str(" — cut this edge");
            }
            labels.push(LabeledSpan::new_with_span(Some(text), span));
        }
    }
    PlanError::Cycle(Box::new(CycleError {
        cut: (cut.from.clone(), cut.to.clone()),
        cycle,
        help,
        src: sources.map(Sources::named),
        labels,
    }))
}

/// One unknown dependency found while building the graph.
pub(crate) struct Unknown<'a> {
    pub step: &'a StepId,
    pub missing: &'a StepId,
    /// For input references, the input's name.
    pub input: Option<&'a str>,
}

/// Builds one error for all unknown dependencies: the first one, with the rest related.
pub(crate) fn unknown_deps_error<'a>(
    unknown: &[Unknown<'_>],
    known: impl Iterator<Item = &'a StepId> + Clone,
    sources: Option<&Sources>,
) -> PlanError {
    let mut errors = unknown.iter().enumerate().map(|(i, u)| {
        let suggestion = closest(u.missing, known.clone()).cloned();
        let relation = match u.input {
            Some(input) => format!("takes input `{input}` from"),
            None => "depends on".to_owned(),
        };
        let help = match &suggestion {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!(
                "define a step `{}`, or remove it from `{}`",
                u.missing, u.step
            ),
        };
        UnknownDepError {
            step: u.step.clone(),
            relation,
            missing: u.missing.clone(),
            suggestion,
            help,
            // Related errors render against their parent's source.
            src: if i == 0 {
                sources.map(Sources::named)
            } else {
                None
            },
            span: sources.and_then(|s| s.edge_or_step(u.step, u.missing)),
            others: Vec::new(),
        }
    });
    let Some(mut first) = errors.next() else {
        return PlanError::invalid("internal: no unknown dependency to report");
    };
    first.others.extend(errors);
    PlanError::UnknownDep(Box::new(first))
}

/// The unknown-target error for `id` given to `--target` / `--exclude`.
pub(crate) fn unknown_target_error<'a>(
    flag: &'static str,
    id: &StepId,
    destroy: bool,
    known: impl Iterator<Item = &'a StepId>,
) -> PlanError {
    let suggestion = closest(id, known).cloned();
    let help = match &suggestion {
        Some(s) => format!("did you mean `{s}`?"),
        None => "`bmac plan` lists every step; `bmac state list` the applied ones".to_owned(),
    };
    PlanError::UnknownTarget(Box::new(UnknownTargetError {
        flag,
        id: id.clone(),
        scope: if destroy {
            "in the state"
        } else {
            "in the spec or the state"
        },
        suggestion,
        help,
    }))
}

/// The known id closest to `wanted` by edit distance, if it is close enough to be a typo
/// (at most a third of the longer id's length, and at most 4 edits). Ties go to the
/// smallest id, so the suggestion is deterministic.
pub(crate) fn closest<'a>(
    wanted: &StepId,
    known: impl Iterator<Item = &'a StepId>,
) -> Option<&'a StepId> {
    let w: Vec<char> = wanted.as_str().chars().collect();
    let mut best: Option<(usize, &StepId)> = None;
    for k in known {
        if k == wanted {
            continue;
        }
        let kc: Vec<char> = k.as_str().chars().collect();
        let d = edit_distance(&w, &kc);
        let longer = w.len().max(kc.len());
        if d == 0 || d > 4 || d * 3 > longer {
            continue;
        }
        let better = match best {
            None => true,
            Some((bd, bk)) => d < bd || (d == bd && k < bk),
        };
        if better {
            best = Some((d, k));
        }
    }
    best.map(|(_, k)| k)
}

/// Levenshtein distance with two rows (O(|a|·|b|) time, O(|b|) space).
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> StepId {
        StepId::new(s).unwrap()
    }

    #[test]
    fn edit_distance_counts_edits() {
        let d = |a: &str, b: &str| {
            edit_distance(
                &a.chars().collect::<Vec<_>>(),
                &b.chars().collect::<Vec<_>>(),
            )
        };
        assert_eq!(d("", ""), 0);
        assert_eq!(d("abc", ""), 3);
        assert_eq!(d("nmespace", "namespace"), 1);
        assert_eq!(d("kitten", "sitting"), 3);
    }

    #[test]
    fn suggests_only_close_ids() {
        let known = [
            id("namespace.payments"),
            id("cluster"),
            id("node_pool.system"),
        ];
        assert_eq!(
            closest(&id("nmespace.payments"), known.iter()),
            Some(&known[0])
        );
        assert_eq!(closest(&id("clustr"), known.iter()), Some(&known[1]));
        assert_eq!(closest(&id("audit_sink"), known.iter()), None);
        assert_eq!(
            closest(&id("x"), [id("y")].iter()),
            None,
            "1 of 1 is no typo"
        );
    }

    #[test]
    fn stale_message_names_serials_or_lineages() {
        let r = |l: &str, s| StateRef {
            lineage: l.into(),
            serial: s,
        };
        let e = StaleError {
            planned: r("L", 12),
            current: r("L", 15),
        };
        assert_eq!(
            e.to_string(),
            "the state changed since this plan was made (serial 12 → 15); run `bmac plan` again"
        );
        let e = StaleError {
            planned: r("A", 3),
            current: r("B", 3),
        };
        let text = e.to_string();
        assert!(text.contains("`A`") && text.contains("`B`"), "{text}");
    }
}
