//! Typed reading of the spanned tree: field lookup, type checks, and problem collection.
//!
//! A [`Decoder`] accumulates [`Problem`]s instead of stopping at the first one. Each table is
//! read through [`Fields`], which knows the table's valid field names: fields are taken one by
//! one, and [`Fields::finish`] reports every field nobody took as unknown, with a "did you
//! mean" when a valid name is close. Getters return `None` (after recording a problem) when a
//! value has the wrong type, so section decoders can carry on with a default and report
//! everything at once; a spec with any problem is never returned to the caller.

use std::collections::BTreeMap;
use std::ops::Range;

use miette::SourceSpan;

use super::diag::{closest, quoted_list, suggest, Problem, ProblemCode};
use super::model::{DependsOn, EntryMeta, Spanned};
use super::tree::{Key, Node, NodeKind};
use bmac_core::step::StepId;

/// Builds an entry's meta from its id and what [`Decoder::depends_on`] read.
pub(crate) fn meta(id: StepId, (span, depends_on): (SourceSpan, Vec<DependsOn>)) -> EntryMeta {
    EntryMeta {
        id,
        span,
        depends_on,
    }
}

/// Converts a byte range to a miette span.
pub(crate) fn span(r: &Range<usize>) -> SourceSpan {
    (r.start, r.end.saturating_sub(r.start)).into()
}

/// Collects problems while decoding.
#[derive(Default)]
pub(crate) struct Decoder {
    pub problems: Vec<Problem>,
}

/// The fields of one table, with the names that are valid there.
pub(crate) struct Fields<'a> {
    entries: &'a [(Key, Node)],
    taken: Vec<bool>,
    /// How the table is named in messages, e.g. "`[[node_pool]]`".
    pub context: String,
    known: &'static [&'static str],
    /// The table's head (a standard table's header line, an inline table's whole text).
    pub span: Range<usize>,
}

impl<'a> Fields<'a> {
    /// A field's node, marking it used.
    pub fn get(&mut self, name: &str) -> Option<&'a Node> {
        debug_assert!(self.known.contains(&name), "{name} not declared as known");
        let i = self.entries.iter().position(|(k, _)| k.name == name)?;
        self.taken[i] = true;
        Some(&self.entries[i].1)
    }

    /// Every entry of a free-form table (overrides by namespace, mirrors by upstream).
    pub fn entries(&self) -> &'a [(Key, Node)] {
        self.entries
    }

    /// The key of a field (for pointing at it), if present.
    pub fn key_span(&self, name: &str) -> Option<SourceSpan> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == name)
            .map(|(k, _)| span(&k.span))
    }

    /// The table's span as a miette span.
    pub fn table_span(&self) -> SourceSpan {
        span(&self.span)
    }

    /// Reports every field not taken as unknown.
    pub fn finish(self, d: &mut Decoder) {
        for ((key, _), taken) in self.entries.iter().zip(&self.taken) {
            if *taken {
                continue;
            }
            let help = match closest(&key.name, self.known) {
                Some(c) => format!("did you mean `{c}`?"),
                None => format!("valid fields here: {}", quoted_list(self.known)),
            };
            d.problems.push(
                Problem::new(
                    ProblemCode::UnknownField,
                    span(&key.span),
                    format!("unknown field `{}` in {}", key.name, self.context),
                    "unknown field",
                )
                .with_help(help),
            );
        }
    }
}

impl Decoder {
    /// Records a problem.
    pub fn push(&mut self, p: Problem) {
        self.problems.push(p);
    }

    /// Records an invalid-value problem at a node.
    pub fn invalid(&mut self, node: &Node, message: impl Into<String>, help: impl Into<String>) {
        self.invalid_at(span(&node.head), message, help);
    }

    /// Records an invalid-value problem at a span.
    pub fn invalid_at(
        &mut self,
        at: SourceSpan,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.push(
            Problem::new(ProblemCode::InvalidValue, at, message, "invalid value").with_help(help),
        );
    }

    fn wrong_type(&mut self, node: &Node, field: &str, expected: &str) {
        self.push(
            Problem::new(
                ProblemCode::InvalidValue,
                span(&node.head),
                format!(
                    "`{field}` must be {expected}, found {}",
                    node.kind.describe()
                ),
                format!("expected {expected}"),
            )
            .with_help(format!("write `{field}` as {expected}")),
        );
    }

    /// Opens a node as a table with the given valid fields.
    pub fn table<'a>(
        &mut self,
        node: &'a Node,
        field: &str,
        context: impl Into<String>,
        known: &'static [&'static str],
    ) -> Option<Fields<'a>> {
        match &node.kind {
            NodeKind::Table(entries) => Some(Fields {
                entries,
                taken: vec![false; entries.len()],
                context: context.into(),
                known,
                span: node.head.clone(),
            }),
            _ => {
                self.wrong_type(node, field, "a table");
                None
            }
        }
    }

    /// Records a missing required field.
    pub fn missing(&mut self, f: &Fields<'_>, field: &str, example: &str) {
        self.push(
            Problem::new(
                ProblemCode::MissingField,
                f.table_span(),
                format!("{} is missing required field `{field}`", f.context),
                format!("`{field}` is required here"),
            )
            .with_help(format!("add `{field} = {example}`")),
        );
    }

    /// A string field.
    pub fn str(&mut self, f: &mut Fields<'_>, field: &str) -> Option<Spanned<String>> {
        let node = f.get(field)?;
        self.str_node(node, field)
    }

    /// A node that must be a string.
    pub fn str_node(&mut self, node: &Node, field: &str) -> Option<Spanned<String>> {
        match &node.kind {
            NodeKind::Str(s) => Some(Spanned::new(s.clone(), span(&node.span))),
            _ => {
                self.wrong_type(node, field, "a string");
                None
            }
        }
    }

    /// A required string field.
    pub fn req_str(
        &mut self,
        f: &mut Fields<'_>,
        field: &str,
        example: &str,
    ) -> Option<Spanned<String>> {
        if f.key_span(field).is_none() {
            self.missing(f, field, example);
            return None;
        }
        self.str(f, field)
    }

    /// A non-empty string field.
    pub fn nonempty_str(&mut self, f: &mut Fields<'_>, field: &str) -> Option<Spanned<String>> {
        let s = self.str(f, field)?;
        if s.value.trim().is_empty() {
            self.invalid_at(
                s.span,
                format!("`{field}` must not be empty"),
                format!("give `{field}` a value or remove it"),
            );
            return None;
        }
        Some(s)
    }

    /// A boolean field.
    pub fn bool(&mut self, f: &mut Fields<'_>, field: &str) -> Option<Spanned<bool>> {
        let node = f.get(field)?;
        match node.kind {
            NodeKind::Bool(b) => Some(Spanned::new(b, span(&node.span))),
            _ => {
                self.wrong_type(node, field, "a boolean (`true` or `false`)");
                None
            }
        }
    }

    /// A boolean field with a default, spanned at the key (or the table when absent).
    pub fn bool_or(&mut self, f: &mut Fields<'_>, field: &str, default: bool) -> Spanned<bool> {
        self.bool(f, field)
            .unwrap_or_else(|| Spanned::new(default, f.table_span()))
    }

    /// An integer field in `[min, max]`.
    pub fn int(
        &mut self,
        f: &mut Fields<'_>,
        field: &str,
        min: i64,
        max: i64,
    ) -> Option<Spanned<i64>> {
        let node = f.get(field)?;
        match node.kind {
            NodeKind::Int(i) if (min..=max).contains(&i) => Some(Spanned::new(i, span(&node.span))),
            NodeKind::Int(i) => {
                self.invalid(
                    node,
                    format!("`{field}` = {i} is out of range"),
                    format!("`{field}` must be between {min} and {max}"),
                );
                None
            }
            _ => {
                self.wrong_type(node, field, "an integer");
                None
            }
        }
    }

    /// A `u32` field (0 ..= `u32::MAX`).
    pub fn u32(&mut self, f: &mut Fields<'_>, field: &str) -> Option<Spanned<u32>> {
        self.int(f, field, 0, i64::from(u32::MAX))
            .map(|s| Spanned::new(u32::try_from(s.value).unwrap_or_default(), s.span))
    }

    /// A number field (integer or float), finite.
    pub fn number(&mut self, f: &mut Fields<'_>, field: &str) -> Option<Spanned<f64>> {
        let node = f.get(field)?;
        let v = match node.kind {
            NodeKind::Int(i) => i as f64,
            NodeKind::Float(x) if x.is_finite() => x,
            NodeKind::Float(_) => {
                self.invalid(
                    node,
                    format!("`{field}` must be a finite number"),
                    "use an ordinary number, not `inf` or `nan`",
                );
                return None;
            }
            _ => {
                self.wrong_type(node, field, "a number");
                return None;
            }
        };
        Some(Spanned::new(v, span(&node.span)))
    }

    /// An array field whose items are decoded by `item`.
    pub fn array<T>(
        &mut self,
        f: &mut Fields<'_>,
        field: &str,
        mut item: impl FnMut(&mut Self, &Node) -> Option<T>,
    ) -> Option<Vec<T>> {
        let node = f.get(field)?;
        match &node.kind {
            NodeKind::Array(items) => Some(items.iter().filter_map(|n| item(self, n)).collect()),
            _ => {
                self.wrong_type(node, field, "an array");
                None
            }
        }
    }

    /// An array of strings.
    pub fn str_list(&mut self, f: &mut Fields<'_>, field: &str) -> Option<Vec<Spanned<String>>> {
        let item_name = format!("{field}[]");
        self.array(f, field, |d, n| d.str_node(n, &item_name))
    }

    /// A table of string values (labels, parameters).
    pub fn str_map(&mut self, f: &mut Fields<'_>, field: &str) -> BTreeMap<String, String> {
        let Some(node) = f.get(field) else {
            return BTreeMap::new();
        };
        let NodeKind::Table(entries) = &node.kind else {
            self.wrong_type(node, field, "a table of strings");
            return BTreeMap::new();
        };
        let mut out = BTreeMap::new();
        for (k, v) in entries {
            if let Some(s) = self.str_node(v, &format!("{field}.{}", k.name)) {
                out.insert(k.name.clone(), s.value);
            }
        }
        out
    }

    /// A string field restricted to the spellings of an enum.
    pub fn choice<T: Copy>(
        &mut self,
        f: &mut Fields<'_>,
        field: &str,
        names: &[&str],
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<Spanned<T>> {
        let s = self.str(f, field)?;
        self.choice_of(s, field, names, parse)
    }

    /// Checks a string against the spellings of an enum.
    pub fn choice_of<T: Copy>(
        &mut self,
        s: Spanned<String>,
        field: &str,
        names: &[&str],
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<Spanned<T>> {
        match parse(&s.value) {
            Some(v) => Some(Spanned::new(v, s.span)),
            None => {
                self.invalid_at(
                    s.span,
                    format!("`{}` is not a valid `{field}`", s.value),
                    suggest(&s.value, names),
                );
                None
            }
        }
    }

    /// Checks that `name` is a valid step-id segment; returns the id `prefix.name` (or `name`).
    pub fn entry_id(
        &mut self,
        prefix: Option<&str>,
        name: &Spanned<String>,
        what: &str,
    ) -> Option<StepId> {
        let valid = !name.value.is_empty()
            && name
                .value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        let id = match prefix {
            Some(p) => StepId::new(format!("{p}.{}", name.value)),
            None => StepId::new(&name.value),
        };
        match id {
            Ok(id) if valid => Some(id),
            _ => {
                self.push(
                    Problem::new(
                        ProblemCode::InvalidId,
                        name.span,
                        format!("{what} `{}` cannot be used in a step id", name.value),
                        "not a valid id segment",
                    )
                    .with_help(
                        "use only letters, digits, `_` and `-` (no dots, spaces or other \
                         characters), and not an empty name",
                    ),
                );
                None
            }
        }
    }

    /// Reads `depends_on`; with the table's span, the makings of an [`EntryMeta`].
    pub fn depends_on(&mut self, f: &mut Fields<'_>) -> (SourceSpan, Vec<DependsOn>) {
        let deps = self
            .array(f, "depends_on", |d, n| d.dependency(n))
            .unwrap_or_default();
        (f.table_span(), deps)
    }

    fn dependency(&mut self, node: &Node) -> Option<DependsOn> {
        let s = self.str_node(node, "depends_on[]")?;
        match StepId::new(&s.value) {
            Ok(id) => Some((id, s.span)),
            Err(e) => {
                self.push(
                    Problem::new(
                        ProblemCode::InvalidId,
                        s.span,
                        format!("`depends_on` item `{}` is not a valid entry id", s.value),
                        e.reason,
                    )
                    .with_help(
                        "name an entry as `section.name`, e.g. `namespace.payments`, \
                         `node_pool.system`, `cluster`",
                    ),
                );
                None
            }
        }
    }
}
