//! How the simulated cloud holds a resource: as the text of its `put` operation.
//!
//! A 100k-resource cloud kept as [`Resource`] values would hold a `serde_json` object (a
//! ~600-byte B-tree node even for one key) and an outputs map per resource; the text of the
//! resource's `put` line is a few hundred bytes in one allocation, and it is exactly what the
//! op log writes and what compaction copies. The cost is a parse per read (`lookup`,
//! `observe`), which a simulated cloud can afford.
//!
//! Invariant: a [`Stored`] always decodes. [`Stored::encode`] reads its own text back before
//! accepting it, so a resource the JSON reader cannot read (nested deeper than its recursion
//! limit) is refused when it is stored, with [`SimError::Unstorable`], never lost later.
//!
//! The line formats (`put`, `delete`, `tamper`) are those of the op log (see the parent
//! module); secrets are kept in clear here, as a real cloud keeps them.

use std::collections::BTreeMap;

use bmac_core::step::{OutputValue, Outputs, StepId};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use super::{Operation, Resource};
use crate::sim::error::SimError;

/// An output as the cloud stores it: the value in clear (the cloud is where secrets live),
/// flagged when sensitive.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct StoredOutput {
    value: Value,
    #[serde(default)]
    sensitive: bool,
}

/// One line of the op log, as read.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(super) enum Op {
    /// A resource was created or replaced whole.
    Put(PutOp),
    /// A resource was removed.
    Delete { id: StepId },
    /// A resource's long operation finished.
    Done { id: StepId, operation: String },
    /// A resource's config was edited by hand.
    Tamper {
        id: StepId,
        pointer: String,
        value: Value,
    },
}

/// What a `put` line says: a whole resource.
#[derive(Debug, Deserialize)]
pub(super) struct PutOp {
    id: StepId,
    kind: String,
    config: Value,
    outputs: BTreeMap<String, StoredOutput>,
    created_at_ms: u64,
    generation: u64,
    #[serde(default)]
    operation: Option<Operation>,
}

impl PutOp {
    /// The resource the line describes.
    pub(super) fn into_resource(self) -> Resource {
        Resource {
            id: self.id,
            kind: self.kind,
            config: self.config,
            outputs: load_outputs(self.outputs),
            created_at_ms: self.created_at_ms,
            generation: self.generation,
            operation: self.operation,
        }
    }
}

/// A `put` line, written from a borrowed resource.
#[derive(Serialize)]
struct PutLine<'a> {
    op: &'static str,
    id: &'a StepId,
    kind: &'a str,
    config: &'a Value,
    outputs: StoredOutputs<'a>,
    created_at_ms: u64,
    generation: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    operation: Option<&'a Operation>,
}

/// Outputs with secrets in clear, `{"name": {"value": …, "sensitive": true}}`.
struct StoredOutputs<'a>(&'a Outputs);

impl Serialize for StoredOutputs<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Entry<'a> {
            value: &'a Value,
            #[serde(skip_serializing_if = "std::ops::Not::not")]
            sensitive: bool,
        }
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, v) in self.0.iter() {
            let entry = Entry {
                value: v.value().unwrap_or(&Value::Null),
                sensitive: v.is_sensitive(),
            };
            map.serialize_entry(name, &entry)?;
        }
        map.end()
    }
}

/// A tamper line.
#[derive(Serialize)]
struct TamperLine<'a> {
    op: &'static str,
    id: &'a StepId,
    pointer: &'a str,
    value: &'a Value,
}

/// A done line.
#[derive(Serialize)]
struct DoneLine<'a> {
    op: &'static str,
    id: &'a StepId,
    operation: &'a str,
}

/// A delete line.
#[derive(Serialize)]
struct DeleteLine<'a> {
    op: &'static str,
    id: &'a StepId,
}

/// A resource as the cloud holds it: the text of its `put` line (no newline).
#[derive(Debug, Clone)]
pub(super) struct Stored(Box<str>);

impl Stored {
    /// The stored form of `resource`, checked to read back.
    pub fn encode(resource: &Resource) -> Result<Self, SimError> {
        let unstorable = |source| SimError::Unstorable {
            id: resource.id.to_string(),
            source,
        };
        let text = serde_json::to_string(&PutLine {
            op: "put",
            id: &resource.id,
            kind: &resource.kind,
            config: &resource.config,
            outputs: StoredOutputs(&resource.outputs),
            created_at_ms: resource.created_at_ms,
            generation: resource.generation,
            operation: resource.operation.as_ref(),
        })
        .map_err(unstorable)?;
        let stored = Stored(text.into_boxed_str());
        stored.parse().map_err(unstorable)?;
        Ok(stored)
    }

    /// The resource. Never `None` in practice: [`Stored::encode`] read the same text back.
    pub fn decode(&self) -> Option<Resource> {
        self.parse().ok()
    }

    /// The `put` line's text.
    pub fn text(&self) -> &str {
        &self.0
    }

    fn parse(&self) -> Result<Resource, serde_json::Error> {
        match serde_json::from_str::<Op>(&self.0)? {
            Op::Put(put) => Ok(put.into_resource()),
            Op::Delete { .. } | Op::Tamper { .. } | Op::Done { .. } => Err(
                serde::de::Error::custom("a stored resource is not a `put` operation"),
            ),
        }
    }
}

/// The text of a done line.
pub(super) fn done_line(id: &StepId, operation: &str) -> serde_json::Result<String> {
    serde_json::to_string(&DoneLine {
        op: "done",
        id,
        operation,
    })
}

/// The text of a tamper line.
pub(super) fn tamper_line(id: &StepId, pointer: &str, value: &Value) -> serde_json::Result<String> {
    serde_json::to_string(&TamperLine {
        op: "tamper",
        id,
        pointer,
        value,
    })
}

/// The text of a delete line.
pub(super) fn delete_line(id: &StepId) -> serde_json::Result<String> {
    serde_json::to_string(&DeleteLine { op: "delete", id })
}

fn load_outputs(stored: BTreeMap<String, StoredOutput>) -> Outputs {
    stored
        .into_iter()
        .map(|(name, s)| {
            let value = if s.sensitive {
                OutputValue::sensitive(s.value)
            } else {
                OutputValue::Plain(s.value)
            };
            (name, value)
        })
        .collect()
}

/// Sets `value` at JSON `pointer` inside `target`, creating the last key if needed.
pub(super) fn set_pointer(target: &mut Value, pointer: &str, value: Value) -> Result<(), String> {
    if pointer.is_empty() {
        *target = value;
        return Ok(());
    }
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return Err("a JSON pointer starts with `/`".into());
    };
    if !parent.is_empty() && !parent.starts_with('/') {
        return Err("a JSON pointer starts with `/`".into());
    }
    let key = last.replace("~1", "/").replace("~0", "~");
    let parent = target
        .pointer_mut(parent)
        .ok_or_else(|| format!("`{parent}` does not exist in the config"))?;
    match parent {
        Value::Object(map) => {
            map.insert(key, value);
            Ok(())
        }
        Value::Array(items) if key == "-" => {
            items.push(value);
            Ok(())
        }
        Value::Array(items) => {
            let slot = key
                .parse::<usize>()
                .ok()
                .and_then(|i| items.get_mut(i))
                .ok_or_else(|| format!("`{key}` is not an index of the array"))?;
            *slot = value;
            Ok(())
        }
        _ => Err("its parent is neither an object nor an array".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resource(config: Value) -> Resource {
        Resource {
            id: StepId::new("c").unwrap(),
            kind: "cluster".into(),
            config,
            outputs: Outputs::new()
                .with("endpoint", "https://x")
                .with_sensitive("token", "hunter2"),
            created_at_ms: 7,
            operation: None,
            generation: 2,
        }
    }

    #[test]
    fn a_resource_reads_back_whole_secrets_included() {
        let r = resource(json!({"name": "prod", "tags": {"a": [1, 2.5, null]}}));
        let stored = Stored::encode(&r).unwrap();
        assert_eq!(stored.decode(), Some(r));
        assert!(stored
            .text()
            .starts_with(r#"{"op":"put","id":"c","kind":"cluster""#));
        assert!(stored.text().contains("hunter2"), "the cloud keeps secrets");
    }

    #[test]
    fn a_config_too_deep_to_read_back_is_refused_when_stored() {
        let mut deep = json!(1);
        for _ in 0..200 {
            deep = json!([deep]);
        }
        let err = Stored::encode(&resource(deep)).unwrap_err();
        assert!(
            matches!(err, SimError::Unstorable { ref id, .. } if id == "c"),
            "{err}"
        );
    }

    #[test]
    fn pointers_set_nested_keys_and_array_items() {
        let mut v = json!({"a": {"b": 1}, "list": [1, 2]});
        set_pointer(&mut v, "/a/b", json!(2)).unwrap();
        set_pointer(&mut v, "/a/c~1d", json!(3)).unwrap();
        set_pointer(&mut v, "/list/0", json!(9)).unwrap();
        set_pointer(&mut v, "/list/-", json!(10)).unwrap();
        assert_eq!(v, json!({"a": {"b": 2, "c/d": 3}, "list": [9, 2, 10]}));
        assert!(set_pointer(&mut v, "/missing/x", json!(0)).is_err());
        assert!(set_pointer(&mut v, "/list/7", json!(0)).is_err());
        assert!(set_pointer(&mut v, "/a/b/c", json!(0)).is_err());
        assert!(set_pointer(&mut v, "nope", json!(0)).is_err());
    }
}
