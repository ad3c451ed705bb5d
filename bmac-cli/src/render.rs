//! Text for people: plans in Terraform's shape (`+` create, `~` update, `-/+` replace,
//! `-` destroy, a summary line), state listings and drift reports.
//!
//! Renderers return `String`s and never print, so they are snapshot-tested as they are. Values
//! come from configs (which hold no secrets) and from outputs through their `Display`, which
//! shows secrets as `(sensitive)`.

use std::fmt::Write;

use bmac::core::plan::{Action, Plan, PlanNode};
use bmac::core::state::State;
use serde_json::Value;

/// The plan as Terraform users expect to read it; planned no-ops are not listed.
pub fn plan(plan: &Plan) -> String {
    let mut out = String::new();
    if !plan.has_changes() {
        out.push_str("No changes. The cluster matches the spec.\n");
        return out;
    }
    out.push_str("bmac will perform the following actions:\n\n");
    for node in plan.nodes().iter().filter(|n| n.action.is_change()) {
        node_lines(&mut out, node);
    }
    let _ = writeln!(out, "\n{}", plan.summary());
    out
}

fn node_lines(out: &mut String, node: &PlanNode) {
    let verb = match &node.action {
        Action::Create => "will be created",
        Action::Update { .. } => "will be updated in place",
        Action::Replace { .. } => "must be replaced",
        Action::Delete => "will be destroyed",
        Action::NoOp => "is up to date",
        _ => "will change",
    };
    let doubt = if node.in_doubt {
        " (in doubt after an interrupted run: will be observed first)"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "  {:>3} {} ({}) {verb}{doubt}",
        node.action.symbol(),
        node.step.id,
        node.step.kind
    );
    match &node.action {
        Action::Update {
            fields,
            inputs_may_change,
        } => {
            field_lines(out, node, fields, "~", "");
            if *inputs_may_change {
                out.push_str("          (inputs from changing steps: known after apply)\n");
            }
        }
        Action::Replace { fields } => field_lines(out, node, fields, "~", " # forces replacement"),
        _ => {}
    }
}

fn field_lines(out: &mut String, node: &PlanNode, fields: &[String], mark: &str, note: &str) {
    let old = node.prior.as_ref().map(|p| p.config());
    for field in fields {
        let before = old.and_then(|c| c.pointer(field));
        let after = node.step.config.pointer(field);
        let _ = writeln!(
            out,
            "        {mark} {field}: {} → {}{note}",
            show(before),
            show(after)
        );
    }
}

fn show(v: Option<&Value>) -> String {
    match v {
        None => "(none)".to_owned(),
        Some(Value::String(s)) => format!("{s:?}"),
        Some(v) => {
            let s = v.to_string();
            if s.chars().count() > 60 {
                format!("{}…", s.chars().take(59).collect::<String>())
            } else {
                s
            }
        }
    }
}

/// `bmac state list`: one line per step, sorted by id.
pub fn state_list(state: &State) -> String {
    let mut out = String::new();
    let mut steps: Vec<_> = state.steps.iter().collect();
    steps.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for (id, s) in steps {
        let kind = s
            .applied
            .as_ref()
            .map_or("?".to_owned(), |a| a.step.kind.to_string());
        let status = match (&s.applied, s.in_doubt) {
            (_, true) => "in doubt",
            (Some(_), false) => "applied",
            (None, false) => "unknown",
        };
        let _ = writeln!(out, "{id}  {kind}  {status}");
    }
    if state.steps.is_empty() {
        out.push_str("The state is empty.\n");
    }
    out
}

/// `bmac state show ID`.
pub fn state_show(state: &State, id: &str) -> Option<String> {
    let s = state.steps.get(id)?;
    let mut out = String::new();
    let _ = writeln!(out, "{id}");
    if let Some(a) = &s.applied {
        let _ = writeln!(out, "  kind:        {}", a.step.kind);
        let _ = writeln!(out, "  fingerprint: {}", a.fingerprint);
        let deps: Vec<_> = a.step.dependencies().map(|d| d.as_str()).collect();
        if !deps.is_empty() {
            let _ = writeln!(out, "  depends on:  {}", deps.join(", "));
        }
        let config = serde_json::to_string_pretty(&sorted(&a.step.config)).unwrap_or_default();
        let _ = writeln!(out, "  config:");
        for line in config.lines() {
            let _ = writeln!(out, "    {line}");
        }
        let _ = writeln!(out, "  outputs:");
        for (name, value) in &a.outputs.0 {
            match value.value() {
                Some(v) if !value.is_sensitive() => {
                    let _ = writeln!(out, "    {name} = {}", sorted(v));
                }
                _ => {
                    let _ = writeln!(out, "    {name} = {value}");
                }
            }
        }
    }
    if s.in_doubt {
        out.push_str("  in doubt: a call started or failed after the last apply\n");
    }
    if let Some(e) = &s.last_error {
        let _ = writeln!(out, "  last error: {e}");
    }
    Some(out)
}

/// `v` with every object's keys in sorted order, so what is shown does not depend on whether
/// a dependency turned on serde_json's `preserve_order` (the AWS SDK's test support does).
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}
