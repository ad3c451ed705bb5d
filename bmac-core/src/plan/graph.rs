//! Rendering a sealed plan's graph: Graphviz DOT, Mermaid, or indented text.
//!
//! Output is deterministic (nodes in the plan's stored topological order, edges in sorted
//! index order) so it can be diffed and snapshot-tested. Edges point from a step to the steps
//! that wait for it. Node ids in DOT/Mermaid are `n<index>`; the step id is in the label, so
//! ids with dots need no quoting games. Rendering is linear in nodes + edges; the text form
//! caps its indentation at [`MAX_INDENT_DEPTH`] levels so a 100k-step chain does not print a
//! quadratic number of spaces.

use std::fmt::{self, Write as _};
use std::str::FromStr;

use super::{Action, Plan};

/// Deeper text lines keep this indentation (two spaces per level).
pub const MAX_INDENT_DEPTH: usize = 24;

/// A graph output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GraphFormat {
    /// Graphviz DOT, nodes filled by action.
    Dot,
    /// Mermaid `flowchart TD`, nodes classed by action.
    Mermaid,
    /// One line per step in plan order: the action marker in a fixed column, then the step
    /// indented by its depth (longest path from a step without dependencies), its kind, and
    /// `← deps`.
    Text,
}

impl FromStr for GraphFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "dot" => Ok(GraphFormat::Dot),
            "mermaid" => Ok(GraphFormat::Mermaid),
            "text" => Ok(GraphFormat::Text),
            other => Err(format!(
                "unknown graph format `{other}` (expected dot, mermaid or text)"
            )),
        }
    }
}

impl fmt::Display for GraphFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GraphFormat::Dot => "dot",
            GraphFormat::Mermaid => "mermaid",
            GraphFormat::Text => "text",
        })
    }
}

/// The class name and fill colour of an action.
fn style(action: &Action) -> (&'static str, &'static str) {
    match action {
        Action::NoOp => ("noop", "#eeeeee"),
        Action::Create => ("create", "#c8e6c9"),
        Action::Update { .. } => ("update", "#fff59d"),
        Action::Replace { .. } => ("replace", "#ffcc80"),
        Action::Delete => ("delete", "#ef9a9a"),
    }
}

/// The node label: marker, id and kind.
fn label(plan: &Plan, i: usize) -> String {
    let node = &plan.nodes[i];
    let marker = node.action.symbol().trim();
    let sep = if marker.is_empty() { "" } else { " " };
    format!("{marker}{sep}{} ({})", node.step.id, node.step.kind)
}

impl Plan {
    /// Renders the plan graph in `format`.
    pub fn render_graph(&self, format: GraphFormat) -> String {
        match format {
            GraphFormat::Dot => self.render_dot(),
            GraphFormat::Mermaid => self.render_mermaid(),
            GraphFormat::Text => self.render_text(),
        }
    }

    fn render_dot(&self) -> String {
        let mut out = String::from("digraph plan {\n");
        out.push_str("  rankdir=TB;\n");
        out.push_str("  node [shape=box, style=\"rounded,filled\", fontname=\"monospace\"];\n");
        for i in 0..self.nodes.len() {
            let (_, fill) = style(&self.nodes[i].action);
            let text = label(self, i).replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(out, "  n{i} [label=\"{text}\", fillcolor=\"{fill}\"];");
        }
        for (i, node) in self.nodes.iter().enumerate() {
            for d in &node.deps {
                let _ = writeln!(out, "  n{d} -> n{i};");
            }
        }
        out.push_str("}\n");
        out
    }

    fn render_mermaid(&self) -> String {
        let mut out = String::from("flowchart TD\n");
        for i in 0..self.nodes.len() {
            let (class, _) = style(&self.nodes[i].action);
            let text = label(self, i).replace('"', "#quot;");
            let _ = writeln!(out, "  n{i}[\"{text}\"]:::{class}");
        }
        for (i, node) in self.nodes.iter().enumerate() {
            for d in &node.deps {
                let _ = writeln!(out, "  n{d} --> n{i}");
            }
        }
        for action in [
            Action::NoOp,
            Action::Create,
            Action::Update {
                fields: Vec::new(),
                inputs_may_change: false,
            },
            Action::Replace { fields: Vec::new() },
            Action::Delete,
        ] {
            let (class, fill) = style(&action);
            let _ = writeln!(out, "  classDef {class} fill:{fill},stroke:#555555");
        }
        out
    }

    fn render_text(&self) -> String {
        let mut depth = vec![0usize; self.nodes.len()];
        let mut out = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            // Deps come first in a sealed plan, so their depths are final.
            depth[i] = node
                .deps
                .iter()
                .filter_map(|&d| depth.get(d as usize))
                .map(|d| d + 1)
                .max()
                .unwrap_or(0);
            let indent = 2 * depth[i].min(MAX_INDENT_DEPTH);
            let _ = write!(
                out,
                "{:<3} {:indent$}{} ({})",
                node.action.symbol(),
                "",
                node.step.id,
                node.step.kind
            );
            let mut deps = node.deps.iter().filter_map(|&d| self.nodes.get(d as usize));
            if let Some(first) = deps.next() {
                let _ = write!(out, " ← {}", first.step.id);
                for dep in deps {
                    let _ = write!(out, ", {}", dep.step.id);
                }
            }
            out.push('\n');
        }
        out
    }
}
