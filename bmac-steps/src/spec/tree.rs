//! A spanned TOML tree: the document as `toml_edit` parsed it, reduced to what decoding needs.
//!
//! `toml_edit` keeps a byte span for every key, value and table header, but distinguishes
//! standard tables, inline tables, dotted tables and arrays of tables. Decoding does not care
//! how a table was written, so this module folds them all into one [`Node`] shape: a value or
//! a table, each with a span that always lies inside the source. Implicit tables (created by a
//! dotted key or a nested header) have no span of their own and take their key's.

use std::ops::Range;

use toml_edit::{ImDocument, Item, Value};

/// A node of the document.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub kind: NodeKind,
    pub span: Range<usize>,
    /// What diagnostics about the node as a whole point at: a standard table's header line
    /// (`[[node_pool]]`), otherwise the whole node.
    pub head: Range<usize>,
}

/// What a node holds.
#[derive(Debug, Clone)]
pub(crate) enum NodeKind {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Datetime,
    Array(Vec<Node>),
    Table(Vec<(Key, Node)>),
}

/// A key with its span.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub name: String,
    pub span: Range<usize>,
}

impl NodeKind {
    /// How the kind is named in "expected …, found …" messages.
    pub fn describe(&self) -> &'static str {
        match self {
            NodeKind::Str(_) => "a string",
            NodeKind::Int(_) => "an integer",
            NodeKind::Float(_) => "a float",
            NodeKind::Bool(_) => "a boolean",
            NodeKind::Datetime => "a date-time",
            NodeKind::Array(_) => "an array",
            NodeKind::Table(_) => "a table",
        }
    }
}

/// A TOML syntax error: message and span.
pub(crate) struct SyntaxError {
    pub message: String,
    pub span: Range<usize>,
}

/// Parses `text` into a tree whose root is a table spanning the whole text.
pub(crate) fn parse(text: &str) -> Result<Node, SyntaxError> {
    let doc = ImDocument::parse(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        SyntaxError {
            message: e.message().trim().to_owned(),
            span: clamp(span, text.len()),
        }
    })?;
    let root = table(doc.as_table(), 0..0, text);
    Ok(Node {
        kind: root,
        span: 0..text.len(),
        head: 0..0,
    })
}

/// Keeps a span inside the source (toml_edit spans already are; this is a guard).
fn clamp(span: Range<usize>, len: usize) -> Range<usize> {
    let start = span.start.min(len);
    start..span.end.clamp(start, len)
}

/// The header of a standard table whose span starts with `[`: up to the last `]` of its
/// first line. Other nodes are their own head.
fn head_of(text: &str, span: &Range<usize>) -> Range<usize> {
    let Some(body) = text.get(span.clone()) else {
        return span.clone();
    };
    if !body.starts_with('[') {
        return span.clone();
    }
    let first_line = body.split('\n').next().unwrap_or(body);
    match first_line.rfind(']') {
        Some(i) => span.start..span.start + i + 1,
        None => span.clone(),
    }
}

fn key_of(key: Option<&toml_edit::Key>, name: &str, fallback: &Range<usize>, text: &str) -> Key {
    Key {
        name: name.to_owned(),
        span: clamp(
            key.and_then(toml_edit::Key::span)
                .unwrap_or_else(|| fallback.clone()),
            text.len(),
        ),
    }
}

fn table(t: &toml_edit::Table, fallback: Range<usize>, text: &str) -> NodeKind {
    let entries = t
        .iter()
        .filter_map(|(name, item)| {
            let key = key_of(t.key(name), name, &fallback, text);
            item_node(item, &key.span, text).map(|n| (key, n))
        })
        .collect();
    NodeKind::Table(entries)
}

/// A standard table (header or implicit) as a node.
fn table_node(t: &toml_edit::Table, fallback: &Range<usize>, text: &str) -> Node {
    // Implicit and dotted tables have no span of their own: they take their key's.
    let span = clamp(t.span().unwrap_or_else(|| fallback.clone()), text.len());
    Node {
        kind: table(t, span.clone(), text),
        head: head_of(text, &span),
        span,
    }
}

fn item_node(item: &Item, key_span: &Range<usize>, text: &str) -> Option<Node> {
    match item {
        Item::None => None,
        Item::Value(v) => Some(value_node(v, key_span, text)),
        Item::Table(t) => Some(table_node(t, key_span, text)),
        Item::ArrayOfTables(a) => {
            let span = clamp(a.span().unwrap_or_else(|| key_span.clone()), text.len());
            let items = a.iter().map(|t| table_node(t, &span, text)).collect();
            Some(Node {
                kind: NodeKind::Array(items),
                head: head_of(text, &span),
                span,
            })
        }
    }
}

fn value_node(v: &Value, fallback: &Range<usize>, text: &str) -> Node {
    let span = clamp(v.span().unwrap_or_else(|| fallback.clone()), text.len());
    let kind = match v {
        Value::String(s) => NodeKind::Str(s.value().clone()),
        Value::Integer(i) => NodeKind::Int(*i.value()),
        Value::Float(f) => NodeKind::Float(*f.value()),
        Value::Boolean(b) => NodeKind::Bool(*b.value()),
        Value::Datetime(_) => NodeKind::Datetime,
        Value::Array(a) => NodeKind::Array(a.iter().map(|v| value_node(v, &span, text)).collect()),
        Value::InlineTable(t) => NodeKind::Table(
            t.iter()
                .map(|(name, v)| {
                    let key = key_of(t.key(name), name, &span, text);
                    let node = value_node(v, &key.span, text);
                    (key, node)
                })
                .collect(),
        ),
    };
    Node {
        kind,
        head: span.clone(),
        span,
    }
}
