//! Kubernetes objects the spec brings in from outside the catalogue's own knowledge: the
//! `[[manifest]]` entries and `[[policy.extra]]` policies, written inline or in a file next to
//! the spec.
//!
//! Text is read as YAML (a superset of JSON): several documents separated by `---`, a JSON
//! array of objects, or a `kind: …List` object with `items` are all flattened into one list in
//! file order; empty documents are skipped. Every resulting object must be a mapping with
//! string `apiVersion` and `kind` and a string `metadata.name` (or `metadata.generateName`) —
//! what the API server would reject otherwise is rejected here, before any plan is made, with
//! a diagnostic pointing at the spec entry the objects came from.
//!
//! Relative file paths are resolved against the spec file's directory (the spec model's rule);
//! the file is read when the spec is expanded, so a plan records the objects themselves and a
//! saved plan does not depend on the file staying put.

use std::path::Path;

use crate::spec::{Spec, TextSource};
use miette::SourceSpan;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{CatalogueError, InvalidObjectError, ParseObjectsError, ReadObjectsError};

/// Reads the objects of `source` (inline text, or a file relative to `base`); `what` names the
/// entry for messages (`manifest web-config`), `span` is where the spec gives the source.
pub(crate) fn load(
    spec: &Spec,
    base: &Path,
    source: &TextSource,
    what: &str,
    span: SourceSpan,
) -> Result<Vec<Value>, CatalogueError> {
    let (origin, text) = match source {
        TextSource::Inline(text) => (format!("the inline text of {what}"), text.clone()),
        TextSource::File(path) => {
            let path = base.join(path);
            let text = std::fs::read_to_string(&path).map_err(|source| {
                CatalogueError::ReadObjects(Box::new(ReadObjectsError {
                    path: path.clone(),
                    source,
                    src: spec.named_source(),
                    span,
                }))
            })?;
            (format!("`{}` ({what})", path.display()), text)
        }
    };
    let objects = parse(&text).map_err(|message| {
        CatalogueError::ParseObjects(Box::new(ParseObjectsError {
            origin: origin.clone(),
            message,
            src: spec.named_source(),
            span,
        }))
    })?;
    for (i, object) in objects.iter().enumerate() {
        if let Err(problem) = check(object) {
            return Err(CatalogueError::InvalidObject(Box::new(
                InvalidObjectError {
                    origin,
                    index: i + 1,
                    problem,
                    src: spec.named_source(),
                    span,
                },
            )));
        }
    }
    Ok(objects)
}

/// Parses YAML/JSON text into a flat list of documents (not yet checked to be objects).
pub(crate) fn parse(text: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = Value::deserialize(document).map_err(|e| e.to_string())?;
        flatten(value, &mut out);
    }
    Ok(out)
}

fn flatten(value: Value, out: &mut Vec<Value>) {
    match value {
        Value::Null => {}
        Value::Array(items) => items.into_iter().for_each(|i| flatten(i, out)),
        Value::Object(mut map)
            if map
                .get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("List"))
                && map.get("items").is_some_and(Value::is_array) =>
        {
            if let Some(items) = map.remove("items") {
                flatten(items, out);
            }
        }
        other => out.push(other),
    }
}

/// Whether a document is a Kubernetes object; the problem otherwise.
pub(crate) fn check(object: &Value) -> Result<(), String> {
    let Value::Object(map) = object else {
        return Err(format!("is not a mapping but {}", type_name(object)));
    };
    for field in ["apiVersion", "kind"] {
        match map.get(field) {
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(other) => {
                return Err(format!(
                    "has `{field}` {}, not a non-empty string",
                    type_name(other)
                ))
            }
            None => return Err(format!("has no `{field}`")),
        }
    }
    let named = ["name", "generateName"].iter().any(|f| {
        object
            .pointer(&format!("/metadata/{f}"))
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    });
    if named {
        Ok(())
    } else {
        Err("has no `metadata.name`".to_owned())
    }
}

/// The namespaces the objects live in (`metadata.namespace`), each once, in order.
pub(crate) fn namespaces(objects: &[Value]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for ns in objects
        .iter()
        .filter_map(|o| o.pointer("/metadata/namespace").and_then(Value::as_str))
    {
        if !out.contains(&ns) {
            out.push(ns);
        }
    }
    out
}

/// The names of the `Namespace` objects among `objects`, each once, in order.
pub(crate) fn created_namespaces(objects: &[Value]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for o in objects {
        let is_namespace = o.get("kind").and_then(Value::as_str) == Some("Namespace")
            && o.get("apiVersion").and_then(Value::as_str) == Some("v1");
        let name = o.pointer("/metadata/name").and_then(Value::as_str);
        if let (true, Some(name)) = (is_namespace, name) {
            if !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documents_arrays_and_lists_flatten_in_order() {
        let text = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\n\
                    apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Secret, metadata: {name: b}}\n";
        let objects = parse(text).unwrap();
        let names: Vec<_> = objects
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b"]);
        let json = r#"[{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x"}}]"#;
        assert_eq!(parse(json).unwrap()[0]["kind"], "Namespace");
    }

    #[test]
    fn objects_need_api_version_kind_and_name() {
        assert!(check(
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}})
        )
        .is_ok());
        assert!(check(
            &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "a-"}})
        )
        .is_ok());
        assert_eq!(
            check(&json!({"kind": "Pod"})).unwrap_err(),
            "has no `apiVersion`"
        );
        assert_eq!(
            check(&json!({"apiVersion": "v1", "kind": 3})).unwrap_err(),
            "has `kind` a number, not a non-empty string"
        );
        assert_eq!(
            check(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}})).unwrap_err(),
            "has no `metadata.name`"
        );
        assert_eq!(
            check(&json!("text")).unwrap_err(),
            "is not a mapping but a string"
        );
    }

    #[test]
    fn bad_yaml_is_an_error_with_a_position() {
        let err = parse("a: [unclosed").unwrap_err();
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn namespaces_are_collected_once() {
        let objects = vec![
            json!({"metadata": {"namespace": "web"}}),
            json!({"metadata": {}}),
            json!({"metadata": {"namespace": "web"}}),
            json!({"metadata": {"namespace": "api"}}),
        ];
        assert_eq!(namespaces(&objects), ["web", "api"]);
    }
}
