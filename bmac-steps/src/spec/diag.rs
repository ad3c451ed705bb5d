//! Spec diagnostics: what is wrong with a `bmac.toml`, where, and how to fix it.
//!
//! Reading a spec never stops at the first mistake: the decoder and the validator collect
//! every [`Problem`] they find, and [`SpecError`] carries them all together with the named
//! source text, so `bmac` can print each one with file, line and column. The first problem is
//! the headline diagnostic; the others are its `related` diagnostics, which miette renders
//! against the same source.
//!
//! Every problem has a stable [`ProblemCode`] (`bmac::spec::unknown_field` …), a primary label
//! pointing at the offending text, optional secondary labels ("first defined here") and a help
//! line. Spans are byte ranges into the source and always lie inside it.

use std::fmt;
use std::path::PathBuf;

use miette::{Diagnostic, LabeledSpan, NamedSource, Severity, SourceSpan};

/// The kind of a spec problem; its [`code`](ProblemCode::code) is stable and documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemCode {
    /// The text is not valid TOML.
    Syntax,
    /// A field or section that bmac does not know.
    UnknownField,
    /// A required field is absent.
    MissingField,
    /// A value of the wrong type or outside its allowed set.
    InvalidValue,
    /// A name that cannot be used as (part of) a step id.
    InvalidId,
    /// Two entries with the same id.
    DuplicateEntry,
    /// Fields that are each valid but cannot hold together.
    Contradiction,
}

impl ProblemCode {
    /// The diagnostic code, e.g. `bmac::spec::unknown_field`.
    pub fn code(self) -> &'static str {
        match self {
            ProblemCode::Syntax => "bmac::spec::syntax",
            ProblemCode::UnknownField => "bmac::spec::unknown_field",
            ProblemCode::MissingField => "bmac::spec::missing_field",
            ProblemCode::InvalidValue => "bmac::spec::invalid_value",
            ProblemCode::InvalidId => "bmac::spec::invalid_id",
            ProblemCode::DuplicateEntry => "bmac::spec::duplicate_entry",
            ProblemCode::Contradiction => "bmac::spec::contradiction",
        }
    }
}

impl fmt::Display for ProblemCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// One thing wrong with a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What kind of problem it is.
    pub code: ProblemCode,
    /// The headline, e.g. "unknown field `desird` in `[[node_pool]]`".
    pub message: String,
    /// The offending text.
    pub span: SourceSpan,
    /// The label shown under the offending text.
    pub label: String,
    /// Other places that explain the problem ("first defined here").
    pub secondary: Vec<(SourceSpan, String)>,
    /// How to fix it.
    pub help: Option<String>,
}

impl Problem {
    /// A problem with a primary label and no help yet.
    pub fn new(
        code: ProblemCode,
        span: SourceSpan,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> Self {
        Problem {
            code,
            message: message.into(),
            span,
            label: label.into(),
            secondary: Vec::new(),
            help: None,
        }
    }

    /// Adds the help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Adds a secondary label.
    pub fn with_secondary(mut self, span: SourceSpan, label: impl Into<String>) -> Self {
        self.secondary.push((span, label.into()));
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Problem {}

impl Diagnostic for Problem {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code.code()))
    }

    fn severity(&self) -> Option<Severity> {
        Some(Severity::Error)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_deref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let primary = LabeledSpan::new_primary_with_span(Some(self.label.clone()), self.span);
        let rest = self
            .secondary
            .iter()
            .map(|(span, label)| LabeledSpan::new_with_span(Some(label.clone()), *span));
        Some(Box::new(std::iter::once(primary).chain(rest)))
    }
}

/// Why a spec could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("cannot read spec file `{}`", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The spec was read but is not valid; every problem found is listed.
    #[error(transparent)]
    Invalid(#[from] InvalidSpec),
}

impl Diagnostic for SpecError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        match self {
            SpecError::Read { .. } => Some(Box::new("bmac::spec::read")),
            SpecError::Invalid(e) => e.code(),
        }
    }

    fn severity(&self) -> Option<Severity> {
        Some(Severity::Error)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        match self {
            SpecError::Read { .. } => Some(Box::new(
                "check the path (`--spec`, default `bmac.toml`) and that the file is UTF-8 text",
            )),
            SpecError::Invalid(e) => e.help(),
        }
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        match self {
            SpecError::Read { .. } => None,
            SpecError::Invalid(e) => e.source_code(),
        }
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        match self {
            SpecError::Read { .. } => None,
            SpecError::Invalid(e) => e.labels(),
        }
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        match self {
            SpecError::Read { .. } => None,
            SpecError::Invalid(e) => e.related(),
        }
    }
}

impl SpecError {
    /// Every problem found (none for a read error).
    pub fn problems(&self) -> &[Problem] {
        match self {
            SpecError::Read { .. } => &[],
            SpecError::Invalid(e) => &e.problems,
        }
    }
}

/// A spec that was read but is not valid: its source and every problem found (at least one).
#[derive(Debug)]
pub struct InvalidSpec {
    src: NamedSource<String>,
    problems: Vec<Problem>,
}

impl InvalidSpec {
    /// Wraps the problems found in a source. `problems` must not be empty.
    pub(crate) fn new(name: &str, text: &str, problems: Vec<Problem>) -> Self {
        debug_assert!(!problems.is_empty());
        InvalidSpec {
            src: NamedSource::new(name, text.to_owned()),
            problems,
        }
    }

    /// Every problem, in source order.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// The named source the problems point into.
    pub fn source_code_named(&self) -> &NamedSource<String> {
        &self.src
    }
}

impl fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The file name is not repeated here: every label shows `file:line:column`.
        match self.problems.split_first() {
            Some((first, [])) => f.write_str(&first.message),
            Some((first, rest)) => write!(
                f,
                "{} (and {} more problem{})",
                first.message,
                rest.len(),
                if rest.len() == 1 { "" } else { "s" }
            ),
            None => write!(f, "{}: invalid spec", self.src.name()),
        }
    }
}

impl std::error::Error for InvalidSpec {}

impl Diagnostic for InvalidSpec {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.problems.first().and_then(Diagnostic::code)
    }

    fn severity(&self) -> Option<Severity> {
        Some(Severity::Error)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.problems.first().and_then(Diagnostic::help)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.src)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.problems.first().and_then(Diagnostic::labels)
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        if self.problems.len() < 2 {
            return None;
        }
        Some(Box::new(
            self.problems[1..].iter().map(|p| p as &dyn Diagnostic),
        ))
    }
}

/// Levenshtein distance, for "did you mean" suggestions (inputs are short field names).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The closest candidate to `word`, if it is close enough to be a likely typo.
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// A help line for a value outside `allowed`: "did you mean `x`?" or the full list.
pub(crate) fn suggest(word: &str, allowed: &[&str]) -> String {
    match closest(word, allowed) {
        Some(c) => format!("did you mean `{c}`?"),
        None => format!("expected one of {}", quoted_list(allowed)),
    }
}

/// `a`, `b` and `c` — for help lines.
pub(crate) fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_find_typos_and_skip_strangers() {
        assert_eq!(edit_distance("desird", "desired"), 1);
        assert_eq!(
            closest("desird", &["min", "max", "desired"]),
            Some("desired")
        );
        assert_eq!(closest("colour", &["min", "max", "desired"]), None);
        assert_eq!(
            suggest("restriced", &["baseline", "restricted"]),
            "did you mean `restricted`?"
        );
        assert!(suggest("zzz", &["a", "b"]).contains("`a`, `b`"));
    }
}
