//! [`CatalogueError`]: why a valid spec could still not be expanded into steps.
//!
//! The spec parser checks everything it can see in `bmac.toml` itself; what is left for the
//! catalogue is what lives *outside* it or only shows when the steps are made: a manifest or
//! policy file that cannot be read or parsed, Kubernetes objects without the fields every
//! object needs, a policy-engine bundle that cannot be pinned or named, an id that cannot be
//! formed. Each error carries the spec as a miette source and labels the entry or value that
//! led to it, with a code under `bmac::catalogue::` and a help line.
//!
//! The enum wraps one boxed detail struct per variant (as the planner's `PlanError` does) so
//! a `Result<_, CatalogueError>` stays one pointer wide.

use std::path::PathBuf;
use std::sync::Arc;

use miette::{NamedSource, SourceSpan};

/// Why the catalogue could not expand a spec.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CatalogueError {
    /// A manifest or policy file could not be read (`bmac::catalogue::read_objects`).
    #[error(transparent)]
    #[diagnostic(transparent)]
    ReadObjects(Box<ReadObjectsError>),
    /// Manifest or policy text is not valid YAML/JSON (`bmac::catalogue::parse_objects`).
    #[error(transparent)]
    #[diagnostic(transparent)]
    ParseObjects(Box<ParseObjectsError>),
    /// A manifest or policy document is not a Kubernetes object
    /// (`bmac::catalogue::invalid_object`).
    #[error(transparent)]
    #[diagnostic(transparent)]
    InvalidObject(Box<InvalidObjectError>),
    /// A release bundle cannot be used as written (`bmac::catalogue::bundle`).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Bundle(Box<BundleError>),
    /// A step id could not be formed from the spec's names (`bmac::catalogue::invalid_id`).
    #[error(transparent)]
    #[diagnostic(transparent)]
    InvalidId(Box<InvalidIdError>),
    /// A step's typed config did not serialise (`bmac::catalogue::config`; a bug in bmac).
    #[error("the config of step `{step}` could not be serialised: {source}")]
    #[diagnostic(
        code(bmac::catalogue::config),
        help("this is a bug in bmac's catalogue; please report it with the spec that caused it")
    )]
    Config {
        /// The step.
        step: String,
        /// The serialiser's error.
        #[source]
        source: serde_json::Error,
    },
}

/// A manifest or policy file that could not be read.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("cannot read `{}`", path.display())]
#[diagnostic(
    code(bmac::catalogue::read_objects),
    help("paths in the spec are relative to the spec file's directory; check that the file exists and is readable")
)]
pub struct ReadObjectsError {
    /// The path, resolved against the spec's directory.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
    /// The spec.
    #[source_code]
    pub src: NamedSource<Arc<str>>,
    /// Where the file is named.
    #[label("named here")]
    pub span: SourceSpan,
}

/// Manifest or policy text that is not YAML/JSON.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{origin} is not valid YAML/JSON: {message}")]
#[diagnostic(
    code(bmac::catalogue::parse_objects),
    help("write Kubernetes objects as YAML documents separated by `---`, or as JSON (one object or an array of objects)")
)]
pub struct ParseObjectsError {
    /// What was being read (`file objects.yaml`, `the inline text of manifest web-config`).
    pub origin: String,
    /// The parser's message, with its line and column inside that text.
    pub message: String,
    /// The spec.
    #[source_code]
    pub src: NamedSource<Arc<str>>,
    /// Where the text (or its file) is given.
    #[label("from here")]
    pub span: SourceSpan,
}

/// A document that is not a Kubernetes object.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("object #{index} of {origin} {problem}")]
#[diagnostic(
    code(bmac::catalogue::invalid_object),
    help("every object needs `apiVersion`, `kind` and `metadata.name` (strings)")
)]
pub struct InvalidObjectError {
    /// What was being read.
    pub origin: String,
    /// 1-based position of the object.
    pub index: usize,
    /// What is wrong with it.
    pub problem: String,
    /// The spec.
    #[source_code]
    pub src: NamedSource<Arc<str>>,
    /// Where the objects come from.
    #[label("objects from here")]
    pub span: SourceSpan,
}

/// A policy-engine bundle the catalogue cannot hand to a provider.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("bundle: {problem}")]
#[diagnostic(code(bmac::catalogue::bundle))]
pub struct BundleError {
    /// What is wrong.
    pub problem: String,
    /// How to fix it.
    #[help]
    pub help: String,
    /// The spec.
    #[source_code]
    pub src: NamedSource<Arc<str>>,
    /// The bundle table (`[policy.bundle]`, a manifest's `bundle`).
    #[label("this bundle")]
    pub span: SourceSpan,
}

/// A step id that cannot be formed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("cannot form the step id `{id}`: {reason}")]
#[diagnostic(
    code(bmac::catalogue::invalid_id),
    help("names that become step ids may contain only letters, digits, `_` and `-`")
)]
pub struct InvalidIdError {
    /// The id that was attempted.
    pub id: String,
    /// Why it is invalid.
    pub reason: String,
    /// The spec.
    #[source_code]
    pub src: NamedSource<Arc<str>>,
    /// The name it was formed from.
    #[label("from this name")]
    pub span: SourceSpan,
}
