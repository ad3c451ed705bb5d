//! Pure JSON comparisons between what bmac wants and what the API server holds: the part of
//! server-side apply that decides whether a write is needed at all, and the projection that
//! turns a live object back into the shape of a step's config.
//!
//! Invariants:
//! - [`in_sync`] is true only when a server-side apply of `desired` by `manager` would change
//!   nothing: every desired field is live with the same value ([`contains`]), and every field
//!   the manager owns today is still desired ([`covers`]) — otherwise the apply would remove
//!   it. Re-applying an unchanged step therefore sends zero write requests.
//! - Comparisons never look at fields `desired` does not name, so fields owned by other
//!   managers (defaults, controllers, people) never cause a write or show as drift.

use serde_json::{Map, Value};

/// Whether a server-side apply of `desired` by field manager `manager` would leave `live`
/// unchanged.
pub(crate) fn in_sync(desired: &Value, live: &Value, manager: &str) -> bool {
    contains(live, desired)
        && managed_fields(live, manager).is_none_or(|fields| covers(desired, fields))
}

/// Whether every field of `desired` is present in `live` with the same value. Objects compare
/// key by key (extra live keys are ignored), lists element by element with equal lengths, and
/// an empty object, empty list or `null` in `desired` matches a missing live field.
pub(crate) fn contains(live: &Value, desired: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d.iter().all(|(k, dv)| match l.get(k) {
            Some(lv) => contains(lv, dv),
            None => is_empty(dv),
        }),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(dv, lv)| contains(lv, dv))
        }
        (Value::Number(d), Value::Number(l)) => d == l || d.as_f64() == l.as_f64(),
        (d, Value::Null) => is_empty(d),
        (d, l) => d == l,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// The `fieldsV1` set that `manager` owns on `live` through server-side apply, if any.
pub(crate) fn managed_fields<'a>(live: &'a Value, manager: &str) -> Option<&'a Value> {
    live.pointer("/metadata/managedFields")?
        .as_array()?
        .iter()
        .find(|entry| {
            entry.get("manager").and_then(Value::as_str) == Some(manager)
                && entry.get("operation").and_then(Value::as_str) == Some("Apply")
                && entry
                    .get("subresource")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
        })
        .and_then(|entry| entry.get("fieldsV1"))
}

/// The keys of the labels (`map = "labels"`) or annotations `manager` owns on `live`.
pub(crate) fn managed_metadata_keys(live: &Value, manager: &str, map: &str) -> Vec<String> {
    managed_fields(live, manager)
        .and_then(|f| f.get("f:metadata"))
        .and_then(|m| m.get(format!("f:{map}")))
        .and_then(Value::as_object)
        .map(|keys| {
            keys.keys()
                .filter_map(|k| k.strip_prefix("f:"))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether every field named in a `fieldsV1` set is present in `desired`. A field the manager
/// owns but no longer declares would be removed by the next apply, so it means "not in sync".
///
/// Field-set keys: `f:<name>` (a map field), `k:<json>` (a list item by its merge keys),
/// `v:<json>` (a set item by value), `i:<n>` (a list item by index), `.` (the node itself).
pub(crate) fn covers(desired: &Value, fields: &Value) -> bool {
    let Some(fields) = fields.as_object() else {
        return true;
    };
    fields.iter().all(|(key, sub)| {
        if key == "." {
            true
        } else if let Some(name) = key.strip_prefix("f:") {
            desired.get(name).is_some_and(|child| covers(child, sub))
        } else if let Some(keys) = key.strip_prefix("k:") {
            list_item_by_keys(desired, keys).is_some_and(|item| covers(item, sub))
        } else if let Some(value) = key.strip_prefix("v:") {
            serde_json::from_str::<Value>(value)
                .is_ok_and(|v| desired.as_array().is_some_and(|items| items.contains(&v)))
        } else if let Some(index) = key.strip_prefix("i:") {
            index
                .parse::<usize>()
                .ok()
                .and_then(|i| desired.as_array()?.get(i))
                .is_some_and(|item| covers(item, sub))
        } else {
            false
        }
    })
}

/// The item of list `desired` whose merge keys match `keys` (a JSON object). A key the desired
/// item leaves out (the server defaulted it, e.g. a port's `protocol`) does not prevent a
/// match, but at least one key must be present and equal.
fn list_item_by_keys<'a>(desired: &'a Value, keys: &str) -> Option<&'a Value> {
    let Ok(Value::Object(keys)) = serde_json::from_str::<Value>(keys) else {
        return None;
    };
    desired.as_array()?.iter().find(|item| {
        let mut matched = false;
        for (k, v) in &keys {
            match item.get(k) {
                Some(iv) if iv == v => matched = true,
                Some(_) => return false,
                None => {}
            }
        }
        matched
    })
}

/// The live value cut down to the shape of `shape`: map keys `shape` does not name are
/// dropped, a key `shape` names that is missing live is `null` (an empty desired value stays
/// as it is — "nothing" is there), list items are projected on the matching item of `shape`
/// (extra live items are kept whole so a list that grew shows as drift), scalars are the live
/// ones.
pub(crate) fn project(live: &Value, shape: &Value) -> Value {
    match (shape, live) {
        (Value::Object(s), Value::Object(l)) => Value::Object(
            s.iter()
                .map(|(k, sv)| {
                    let v = match l.get(k) {
                        Some(lv) => project(lv, sv),
                        None if is_empty(sv) => sv.clone(),
                        None => Value::Null,
                    };
                    (k.clone(), v)
                })
                .collect::<Map<_, _>>(),
        ),
        (Value::Array(s), Value::Array(l)) => Value::Array(
            l.iter()
                .enumerate()
                .map(|(i, lv)| match s.get(i) {
                    Some(si) => project(lv, si),
                    None => lv.clone(),
                })
                .collect(),
        ),
        _ => live.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live_with_fields(labels: Value, fields: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {
                "name": "payments", "labels": labels, "uid": "u1",
                "managedFields": [
                    {"manager": "kubectl", "operation": "Update",
                     "fieldsV1": {"f:metadata": {"f:labels": {"f:other": {}}}}},
                    {"manager": "bmac", "operation": "Apply", "fieldsV1": fields}
                ]
            }
        })
    }

    #[test]
    fn unchanged_desired_state_is_in_sync_and_ignores_other_managers() {
        let live = live_with_fields(
            json!({"team": "pay", "other": "x"}),
            json!({"f:metadata": {"f:labels": {"f:team": {}}}}),
        );
        let desired = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "payments", "labels": {"team": "pay"}}});
        assert!(in_sync(&desired, &live, "bmac"));
    }

    #[test]
    fn a_changed_value_or_a_dropped_owned_field_needs_a_write() {
        let live = live_with_fields(
            json!({"team": "pay", "tier": "1"}),
            json!({"f:metadata": {"f:labels": {"f:team": {}, "f:tier": {}}}}),
        );
        let changed =
            json!({"metadata": {"name": "payments", "labels": {"team": "ops", "tier": "1"}}});
        assert!(!in_sync(&changed, &live, "bmac"));
        // `tier` is owned by bmac but no longer desired: the apply must remove it.
        let dropped = json!({"metadata": {"name": "payments", "labels": {"team": "pay"}}});
        assert!(!in_sync(&dropped, &live, "bmac"));
        assert_eq!(
            managed_metadata_keys(&live, "bmac", "labels"),
            ["team", "tier"]
        );
        assert!(managed_metadata_keys(&live, "someone", "labels").is_empty());
    }

    #[test]
    fn list_items_match_by_merge_keys_even_with_defaulted_keys() {
        let desired = json!({"spec": {"containers": [
            {"name": "kyverno", "image": "m/kyverno:1", "ports": [{"containerPort": 9443}]}]}});
        let fields = json!({"f:spec": {"f:containers": {
            "k:{\"name\":\"kyverno\"}": {".": {}, "f:image": {}, "f:name": {},
                "f:ports": {"k:{\"containerPort\":9443,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}}}}});
        assert!(covers(&desired, &fields));
        let other = json!({"spec": {"containers": [{"name": "sidecar"}]}});
        assert!(!covers(&other, &fields));
        assert!(covers(&json!({"a": [1, 2]}), &json!({"f:a": {"v:2": {}}})));
        assert!(!covers(&json!({"a": [1]}), &json!({"f:a": {"v:2": {}}})));
    }

    #[test]
    fn contains_compares_lists_and_treats_empty_as_missing() {
        let live = json!({"a": [{"x": 1, "d": "default"}], "n": 1.0});
        assert!(contains(&live, &json!({"a": [{"x": 1}], "n": 1, "e": {}})));
        assert!(!contains(&live, &json!({"a": [{"x": 1}, {"x": 2}]})));
        assert!(!contains(&live, &json!({"b": "missing"})));
    }

    #[test]
    fn projection_keeps_only_the_desired_shape() {
        let live = json!({"metadata": {"name": "n", "uid": "u", "labels": {"a": "1", "b": "2"}},
            "spec": {"list": [{"x": 1, "y": 2}, {"x": 3}]}});
        let shape = json!({"metadata": {"name": "", "labels": {"a": "", "gone": "x"}, "annotations": {}},
            "spec": {"list": [{"x": 0}]}});
        assert_eq!(
            project(&live, &shape),
            json!({"metadata": {"name": "n", "labels": {"a": "1", "gone": null}, "annotations": {}},
                "spec": {"list": [{"x": 1}, {"x": 3}]}})
        );
    }
}
