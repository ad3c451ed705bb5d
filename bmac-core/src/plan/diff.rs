//! The diff of one desired step against what state remembers of it: which [`Action`] it gets.
//!
//! Rules, in order:
//! 1. nothing applied yet → `Create`;
//! 2. applied with another kind → `Replace` (with no fields: the kind, not a field, forced it);
//! 3. config differs → the changed leaf fields as JSON pointers (`/scaling/max`); when the
//!    value under any of the kind's `replace_on` pointers differs → `Replace` naming the changed
//!    fields at or under those pointers, else `Update`;
//! 4. its input references changed, or a step it takes inputs from changes → `Update` with
//!    `inputs_may_change` (the executor compares fingerprints once inputs resolve). Whether
//!    an input source changes is known only in plan order, so [`diff`] decides everything
//!    else and [`with_changing_inputs`] applies this rule once the sources are decided;
//! 5. in doubt (a crash or failure after the last apply) → never `NoOp`: at least an `Update`
//!    with no fields, so the executor observes it;
//! 6. otherwise `NoOp`.
//!
//! Configs are compared by the digest each [`Config`](crate::step::Config) carries (made when
//! the config was, never while planning), so an unchanged step costs no walk of either JSON
//! tree; the changed fields are listed only for a config that differs. That field walk is
//! iterative (an explicit stack), so deep configs cannot overflow the stack.

use std::sync::Arc;

use serde_json::Value;

use super::Action;
use crate::provider::Prior;
use crate::state::StepState;
use crate::step::Step;

/// What the diff decided for one step.
pub(crate) struct Diff {
    pub action: Action,
    /// The state's record of the last apply, shared (none: never applied).
    pub prior: Option<Prior>,
    pub in_doubt: bool,
}

/// Decides the action for `step`, given its state entry, as if none of the steps it takes
/// inputs from changed (see [`with_changing_inputs`]).
pub(crate) fn diff(step: &Step, entry: Option<&StepState>) -> Diff {
    let in_doubt = entry.is_some_and(|e| e.in_doubt);
    let Some(applied) = entry.and_then(|e| e.applied.as_ref()) else {
        return Diff {
            action: Action::Create,
            prior: None,
            in_doubt,
        };
    };
    let before = &applied.step;
    let inputs_may_change = before.inputs != step.inputs;
    let action = if before.kind != step.kind {
        Action::Replace { fields: Vec::new() }
    } else if before.config != step.config {
        let fields = changed_fields(&before.config, &step.config);
        let forcing = forcing_fields(step, &before.config, &fields);
        if forcing.is_empty() {
            Action::Update {
                fields,
                inputs_may_change,
            }
        } else {
            Action::Replace { fields: forcing }
        }
    } else if inputs_may_change {
        Action::Update {
            fields: Vec::new(),
            inputs_may_change: true,
        }
    } else if in_doubt {
        Action::Update {
            fields: Vec::new(),
            inputs_may_change: false,
        }
    } else {
        Action::NoOp
    };
    Diff {
        action,
        prior: Some(Prior::recorded(Arc::clone(applied))),
        in_doubt,
    }
}

/// `action` once a step it takes inputs from is known to change: an update, or a no-op
/// becoming one, may see other inputs (rule 4); a create or a replace is unaffected.
pub(crate) fn with_changing_inputs(action: Action) -> Action {
    match action {
        Action::NoOp => Action::Update {
            fields: Vec::new(),
            inputs_may_change: true,
        },
        Action::Update { fields, .. } => Action::Update {
            fields,
            inputs_may_change: true,
        },
        other => other,
    }
}

/// The fields that force replacement: for each `replace_on` pointer whose value differs, the
/// changed leaves at or under it, or the pointer itself when the change is above it (a whole
/// parent object replaced or removed). Sorted, without duplicates.
fn forcing_fields(step: &Step, before: &Value, changed: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in step.kind.replace_on() {
        if before.pointer(p) == step.config.pointer(p) {
            continue;
        }
        let start = out.len();
        out.extend(changed.iter().filter(|c| is_at_or_under(c, p)).cloned());
        if out.len() == start {
            out.push(p.to_owned());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Whether JSON pointer `field` is `parent` or lies under it.
fn is_at_or_under(field: &str, parent: &str) -> bool {
    field
        .strip_prefix(parent)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The leaf fields that differ between two configs, as sorted JSON pointers (RFC 6901). A
/// key present on one side only, or a value whose type changed, is reported at its own
/// pointer; arrays are compared index by index.
pub(crate) fn changed_fields(before: &Value, after: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack: Vec<(String, &Value, &Value)> = vec![(String::new(), before, after)];
    while let Some((at, a, b)) = stack.pop() {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for (k, va) in x {
                    let p = child(&at, k);
                    match y.get(k) {
                        Some(vb) => stack.push((p, va, vb)),
                        None => out.push(p),
                    }
                }
                out.extend(
                    y.keys()
                        .filter(|k| !x.contains_key(*k))
                        .map(|k| child(&at, k)),
                );
            }
            (Value::Array(x), Value::Array(y)) => {
                for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                    stack.push((child(&at, &i.to_string()), va, vb));
                }
                let common = x.len().min(y.len());
                out.extend((common..x.len().max(y.len())).map(|i| child(&at, &i.to_string())));
            }
            (a, b) => {
                if a != b {
                    out.push(at);
                }
            }
        }
    }
    out.sort();
    out
}

/// Where what exists no longer matches what was applied, as sorted JSON pointers: the one rule
/// for "does what exists match" — drift's moved fields and the executor's adoption of an
/// in-doubt step both ask it.
///
/// `actual` is what a provider observed ([`Observed::Present`]), which leaves out what the
/// provider cannot see or does not manage. So:
/// - objects are compared over the keys present on both sides: a key applied but absent from
///   what was observed is invisible to the provider and skipped; a key only in the live object
///   belongs to someone else and is ignored. A managed value removed by hand is observed as an
///   explicit `null`, which does differ;
/// - arrays of equal length are compared element by element; arrays whose length changed
///   moved as a whole (the array's own pointer: their elements have no identity to pair);
/// - anything else (scalars, or a value whose type changed) moved if unequal.
///
/// Like [`changed_fields`], the walk is iterative.
///
/// [`Observed::Present`]: crate::provider::Observed::Present
pub(crate) fn moved_pointers(applied: &Value, actual: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack: Vec<(String, &Value, &Value)> = vec![(String::new(), applied, actual)];
    while let Some((at, a, b)) = stack.pop() {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for (k, va) in x {
                    if let Some(vb) = y.get(k) {
                        stack.push((child(&at, k), va, vb));
                    }
                }
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                    stack.push((child(&at, &i.to_string()), va, vb));
                }
            }
            (a, b) => {
                if a != b {
                    out.push(at);
                }
            }
        }
    }
    out.sort();
    out
}

/// `parent` + `/` + the escaped key (`~` → `~0`, `/` → `~1`).
fn child(parent: &str, key: &str) -> String {
    let mut p = String::with_capacity(parent.len() + key.len() + 1);
    p.push_str(parent);
    p.push('/');
    for c in key.chars() {
        match c {
            '~' => p.push_str("~0"),
            '/' => p.push_str("~1"),
            c => p.push(c),
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::AppliedStep;
    use crate::step::{Fingerprint, Kind, Outputs, Ref, StepId};
    use serde_json::json;

    fn id(s: &str) -> StepId {
        StepId::new(s).unwrap()
    }

    fn step(kind: Kind, config: Value) -> Step {
        Step::new(id("pool"), kind, &config).unwrap()
    }

    fn entry(step: Step, in_doubt: bool) -> StepState {
        StepState {
            applied: Some(Arc::new(AppliedStep {
                step: Arc::new(step),
                fingerprint: Fingerprint([1; 32]),
                outputs: Outputs::new(),
            })),
            in_doubt,
            last_error: None,
            checkpoint: None,
        }
    }

    fn pool_kind() -> Kind {
        Kind::with_replace_on("node_pool", ["/machine", "/disk/type"])
    }

    #[test]
    fn changed_fields_are_leaf_pointers() {
        let a = json!({"scaling": {"min": 1, "max": 3}, "labels": {"a/b": "x", "t~": 1},
                       "zones": ["a", "b"], "gone": 1});
        let b = json!({"scaling": {"min": 1, "max": 5}, "labels": {"a/b": "y", "t~": 1},
                       "zones": ["a", "c", "d"], "new": {"x": 1}});
        assert_eq!(
            changed_fields(&a, &b),
            [
                "/gone",
                "/labels/a~1b",
                "/new",
                "/scaling/max",
                "/zones/1",
                "/zones/2"
            ]
        );
        assert!(changed_fields(&a, &a).is_empty());
        assert_eq!(changed_fields(&json!(1), &json!({"a": 1})), [""]);
    }

    #[test]
    fn moved_pointers_compare_only_what_both_sides_show() {
        let applied = json!({"name": "payments", "labels": {"team": "pay", "tier": "1"},
                             "quota": {"cpu": 4}, "zones": ["a", "b"],
                             "rules": [{"port": 80, "note": "x"}], "size": 3});
        // `name` and `quota` are invisible to the provider; `tier` was deleted by hand;
        // `owner` and a rule's `uid` belong to other managers; `size` changed type.
        let actual = json!({"labels": {"team": "ops", "tier": null, "owner": "x"},
                            "zones": ["a", "c"], "rules": [{"port": 80, "uid": 7}],
                            "size": "3"});
        assert_eq!(
            moved_pointers(&applied, &actual),
            ["/labels/team", "/labels/tier", "/size", "/zones/1"]
        );
        assert!(moved_pointers(&applied, &applied).is_empty());
        // Nothing visible: nothing moved.
        assert!(moved_pointers(&applied, &json!({})).is_empty());
        assert_eq!(moved_pointers(&json!({"a": 1}), &json!(null)), [""]);
    }

    #[test]
    fn an_array_whose_length_changed_moved_as_a_whole() {
        let applied = json!({"zones": ["a", "b"], "deep": {"list": [1]}});
        let grown = json!({"zones": ["a", "b", "c"], "deep": {"list": []}});
        assert_eq!(moved_pointers(&applied, &grown), ["/deep/list", "/zones"]);
        // Where the old field diff names the extra indices, which one side lacks.
        assert_eq!(
            changed_fields(&applied, &grown),
            ["/deep/list/0", "/zones/2"]
        );
    }

    #[test]
    fn replace_only_when_a_replace_on_field_changes() {
        let old = step(
            pool_kind(),
            json!({"machine": "m5", "disk": {"type": "gp2", "size": 10}}),
        );
        let e = entry(old, false);
        let resized = step(
            pool_kind(),
            json!({"machine": "m5", "disk": {"type": "gp2", "size": 20}}),
        );
        assert_eq!(
            diff(&resized, Some(&e)).action,
            Action::Update {
                fields: vec!["/disk/size".into()],
                inputs_may_change: false
            }
        );
        let retyped = step(
            pool_kind(),
            json!({"machine": "m5", "disk": {"type": "gp3", "size": 20}}),
        );
        assert_eq!(
            diff(&retyped, Some(&e)).action,
            Action::Replace {
                fields: vec!["/disk/type".into()]
            }
        );
        // The whole parent removed: the replace_on field changed though no leaf under it did.
        let no_disk = step(pool_kind(), json!({"machine": "m5"}));
        assert_eq!(
            diff(&no_disk, Some(&e)).action,
            Action::Replace {
                fields: vec!["/disk/type".into()]
            }
        );
    }

    #[test]
    fn kind_change_replaces_and_nothing_applied_creates() {
        let e = entry(step(Kind::new("a"), json!({})), false);
        let d = diff(&step(Kind::new("b"), json!({})), Some(&e));
        assert_eq!(d.action, Action::Replace { fields: vec![] });
        let d = diff(&step(Kind::new("a"), json!({})), None);
        assert_eq!(d.action, Action::Create);
        assert!(d.prior.is_none());
    }

    #[test]
    fn inputs_and_doubt_never_give_noop() {
        let s = step(Kind::new("a"), json!({"x": 1}));
        let e = entry(s.clone(), false);
        assert_eq!(diff(&s, Some(&e)).action, Action::NoOp);
        let upstream = Action::Update {
            fields: vec![],
            inputs_may_change: true,
        };
        assert_eq!(with_changing_inputs(diff(&s, Some(&e)).action), upstream);
        // An update stays one, now with inputs that may change; a replace is unaffected.
        let doubtful = entry(s.clone(), true);
        assert_eq!(
            with_changing_inputs(diff(&s, Some(&doubtful)).action),
            upstream
        );
        let replace = Action::Replace { fields: vec![] };
        assert_eq!(with_changing_inputs(replace.clone()), replace);
        let rewired = s.clone().input("ep", Ref::new(id("cluster"), "endpoint"));
        assert_eq!(diff(&rewired, Some(&e)).action, upstream);
        let d = diff(&s, Some(&doubtful));
        assert!(d.in_doubt);
        assert_eq!(
            d.action,
            Action::Update {
                fields: vec![],
                inputs_may_change: false
            }
        );
        let never_applied = StepState {
            in_doubt: true,
            ..StepState::default()
        };
        let d = diff(&s, Some(&never_applied));
        assert_eq!((d.action, d.in_doubt), (Action::Create, true));
    }
}
