//! What a step produces and what it consumes: [`OutputValue`], [`Outputs`] and [`Inputs`].
//!
//! Representation, and why. Every finished step's outputs live in memory until the run ends
//! (the executor keeps them for dependents, the state keeps them per step), so at 100k steps
//! their size is a large share of a run's peak memory. A step has a handful of outputs at
//! most, so [`Outputs`] (its [`OutputMap`]) is a *sorted boxed slice* of `(name, value)`
//! pairs rather than a `BTreeMap`: a one-output map costs one 48-byte allocation (plus the
//! name and the value's own text) instead of a ~1.1 KB B-tree leaf. Lookups are a binary search; inserting rebuilds
//! the slice, which is O(n) and fine for the sizes outputs have. [`OutputValue`] is as small as
//! a JSON [`Value`] (32 bytes): a secret's value and digest live behind one box ([`Secret`]),
//! since secrets are rare and plain values are not.
//!
//! Invariants: names in [`Outputs`] are unique and sorted (byte order, as `BTreeMap<String, _>`
//! orders them), so iteration order, equality and the serialised JSON are exactly those the
//! map gave — `{"name": {"value": …}}` or `{"name": {"sensitive": "<sha256 hex>"}}`, keys
//! sorted. A secret's value never prints and never serialises; only its digest does.
//!
//! [`Inputs`] are transient (built when a step starts, dropped when it ends) and keep their
//! public map.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::Fingerprint;

/// One output value. Sensitive values never print and never serialise in clear.
#[derive(Clone, PartialEq)]
pub enum OutputValue {
    /// An ordinary value.
    Plain(Value),
    /// A secret: its value (absent when read back from state) and its digest.
    Sensitive(Box<Secret>),
}

/// A secret output: the value, when known, and the digest that stands for it everywhere the
/// value must not go (state, plans, events, fingerprints).
#[derive(Clone, PartialEq)]
pub struct Secret {
    value: Option<Value>,
    digest: Fingerprint,
}

impl Secret {
    /// The secret itself; `None` when only the digest is known (loaded from state).
    pub fn value(&self) -> Option<&Value> {
        self.value.as_ref()
    }

    /// SHA-256 of the value's canonical encoding.
    pub fn digest(&self) -> Fingerprint {
        self.digest
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive)")
    }
}

impl OutputValue {
    /// A sensitive value.
    pub fn sensitive(value: Value) -> Self {
        let digest = Fingerprint::of_value(&value);
        OutputValue::Sensitive(Box::new(Secret {
            value: Some(value),
            digest,
        }))
    }

    /// A secret known only by its digest (what state holds).
    pub fn redacted_secret(digest: Fingerprint) -> Self {
        OutputValue::Sensitive(Box::new(Secret {
            value: None,
            digest,
        }))
    }

    /// The value, if it is known (plain, or a sensitive value not yet redacted).
    pub fn value(&self) -> Option<&Value> {
        match self {
            OutputValue::Plain(v) => Some(v),
            OutputValue::Sensitive(secret) => secret.value(),
        }
    }

    /// Whether this is a secret.
    pub fn is_sensitive(&self) -> bool {
        matches!(self, OutputValue::Sensitive(_))
    }

    /// The digest fingerprints use: the value's for plain values, the stored one for secrets.
    pub fn digest(&self) -> Fingerprint {
        match self {
            OutputValue::Plain(v) => Fingerprint::of_value(v),
            OutputValue::Sensitive(secret) => secret.digest,
        }
    }

    /// The same output with a secret's value dropped (what state and events keep).
    pub fn redacted(&self) -> Self {
        match self {
            OutputValue::Plain(v) => OutputValue::Plain(v.clone()),
            OutputValue::Sensitive(secret) => OutputValue::redacted_secret(secret.digest),
        }
    }
}

impl fmt::Debug for OutputValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for OutputValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputValue::Plain(Value::String(s)) => write!(f, "{s:?}"),
            OutputValue::Plain(v) => write!(f, "{v}"),
            OutputValue::Sensitive(_) => f.write_str("(sensitive)"),
        }
    }
}

/// On the wire a plain output is `{"value": …}`, a secret `{"sensitive": "<sha256 hex>"}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum OutputWireIn {
    Plain { value: Value },
    Sensitive { sensitive: Fingerprint },
}

impl Serialize for OutputValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // A one-entry map, as the untagged `{"value": …}` / `{"sensitive": …}` shapes read.
        let mut map = s.serialize_map(Some(1))?;
        match self {
            OutputValue::Plain(v) => map.serialize_entry("value", v)?,
            OutputValue::Sensitive(secret) => map.serialize_entry("sensitive", &secret.digest)?,
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for OutputValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match OutputWireIn::deserialize(d)? {
            OutputWireIn::Plain { value } => OutputValue::Plain(value),
            OutputWireIn::Sensitive { sensitive } => OutputValue::redacted_secret(sensitive),
        })
    }
}

/// A map from output name to [`OutputValue`] stored as a sorted boxed slice (see the module
/// docs): the map behind [`Outputs`], with the read API of a `BTreeMap`.
#[derive(Clone, Default, PartialEq)]
pub struct OutputMap(Box<[(Box<str>, OutputValue)]>);

impl OutputMap {
    /// An empty map.
    pub fn new() -> Self {
        OutputMap::default()
    }

    /// Sets `name`; returns the value it replaces, if any.
    pub fn insert(&mut self, name: impl Into<String>, value: OutputValue) -> Option<OutputValue> {
        let name = name.into();
        match self.position(&name) {
            Ok(at) => Some(std::mem::replace(&mut self.0[at].1, value)),
            Err(at) => {
                let mut entries = Vec::with_capacity(self.0.len() + 1);
                entries.extend(std::mem::take(&mut self.0));
                entries.insert(at, (name.into_boxed_str(), value));
                self.0 = entries.into_boxed_slice();
                None
            }
        }
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&OutputValue> {
        self.position(name).ok().map(|at| &self.0[at].1)
    }

    /// Whether `name` is present.
    pub fn contains_key(&self, name: &str) -> bool {
        self.position(name).is_ok()
    }

    /// Every entry as `(name, value)`, ordered by name.
    pub fn iter(&self) -> OutputIter<'_> {
        self.0.iter().map(entry_ref)
    }

    /// The names, in order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.0.iter().map(|(name, _)| &**name)
    }

    /// The values, ordered by name.
    pub fn values(&self) -> impl ExactSizeIterator<Item = &OutputValue> + '_ {
        self.0.iter().map(|(_, value)| value)
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The same map with every secret's value dropped.
    fn redacted(&self) -> Self {
        OutputMap(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v.redacted()))
                .collect(),
        )
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| (**k).cmp(name))
    }

    /// Sorts `entries` by name, the last of equal names winning (as map inserts would).
    fn from_entries(mut entries: Vec<(Box<str>, OutputValue)>) -> Self {
        // Stable: equal names keep their order, so the last one given is the last of its run.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut unique: Vec<(Box<str>, OutputValue)> = Vec::with_capacity(entries.len());
        for entry in entries {
            match unique.last_mut() {
                Some(last) if last.0 == entry.0 => *last = entry,
                _ => unique.push(entry),
            }
        }
        OutputMap(unique.into_boxed_slice())
    }
}

/// The iterator over an [`OutputMap`]'s entries.
pub type OutputIter<'a> = std::iter::Map<
    std::slice::Iter<'a, (Box<str>, OutputValue)>,
    fn(&'a (Box<str>, OutputValue)) -> (&'a str, &'a OutputValue),
>;

fn entry_ref(entry: &(Box<str>, OutputValue)) -> (&str, &OutputValue) {
    (&entry.0, &entry.1)
}

impl<K: Into<String>> FromIterator<(K, OutputValue)> for OutputMap {
    fn from_iter<I: IntoIterator<Item = (K, OutputValue)>>(iter: I) -> Self {
        OutputMap::from_entries(
            iter.into_iter()
                .map(|(k, v)| (k.into().into_boxed_str(), v))
                .collect(),
        )
    }
}

impl From<BTreeMap<String, OutputValue>> for OutputMap {
    fn from(map: BTreeMap<String, OutputValue>) -> Self {
        OutputMap(
            map.into_iter()
                .map(|(k, v)| (k.into_boxed_str(), v))
                .collect(),
        )
    }
}

impl<'a> IntoIterator for &'a OutputMap {
    type Item = (&'a str, &'a OutputValue);
    type IntoIter = OutputIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl fmt::Debug for OutputMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for OutputMap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.iter() {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for OutputMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OutputMapVisitor;
        impl<'de> Visitor<'de> for OutputMapVisitor {
            type Value = OutputMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of output names to outputs")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<OutputMap, A::Error> {
                let mut entries = Vec::with_capacity(access.size_hint().unwrap_or(0).min(64));
                while let Some((name, value)) = access.next_entry::<String, OutputValue>()? {
                    entries.push((name.into_boxed_str(), value));
                }
                Ok(OutputMap::from_entries(entries))
            }
        }
        d.deserialize_map(OutputMapVisitor)
    }
}

/// The named outputs of a step, ordered by name; serialised as a JSON object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Outputs(pub OutputMap);

impl Outputs {
    /// No outputs.
    pub fn new() -> Self {
        Outputs::default()
    }

    /// Adds a plain output.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.0.insert(name, OutputValue::Plain(value.into()));
        self
    }

    /// Adds a sensitive output.
    pub fn with_sensitive(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.0.insert(name, OutputValue::sensitive(value.into()));
        self
    }

    /// Sets output `name`; returns the value it replaces, if any.
    pub fn insert(&mut self, name: impl Into<String>, value: OutputValue) -> Option<OutputValue> {
        self.0.insert(name, value)
    }

    /// One output.
    pub fn get(&self, name: &str) -> Option<&OutputValue> {
        self.0.get(name)
    }

    /// A string output's value (plain or sensitive, when known), if present and a string.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.get(name)
            .and_then(|v| v.value())
            .and_then(Value::as_str)
    }

    /// Every output as `(name, value)`, ordered by name.
    pub fn iter(&self) -> OutputIter<'_> {
        self.0.iter()
    }

    /// How many outputs there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The outputs with every secret's value dropped.
    pub fn redacted(&self) -> Self {
        Outputs(self.0.redacted())
    }

    /// Whether some secret's value is missing (it was loaded from state).
    pub fn has_redacted_secret(&self) -> bool {
        self.0.values().any(|v| v.value().is_none())
    }
}

impl<K: Into<String>> FromIterator<(K, OutputValue)> for Outputs {
    fn from_iter<I: IntoIterator<Item = (K, OutputValue)>>(iter: I) -> Self {
        Outputs(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a Outputs {
    type Item = (&'a str, &'a OutputValue);
    type IntoIter = OutputIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// A step's inputs resolved from upstream outputs, by input name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inputs(pub BTreeMap<String, OutputValue>);

impl Inputs {
    /// One input.
    pub fn get(&self, name: &str) -> Option<&OutputValue> {
        self.0.get(name)
    }

    /// A string input's value (plain or sensitive), if present and a string.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.get(name)
            .and_then(|v| v.value())
            .and_then(Value::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outputs_stay_small() {
        // Kept per finished step for the whole run; see the module docs.
        assert!(std::mem::size_of::<OutputValue>() <= std::mem::size_of::<Value>());
        assert_eq!(std::mem::size_of::<Outputs>(), 16);
    }

    #[test]
    fn outputs_serialise_exactly_as_a_sorted_map() {
        let o = Outputs::new()
            .with("zone", "b")
            .with("arn", "arn:x")
            .with_sensitive("token", "hunter2")
            .with("count", 3);
        let mut map = BTreeMap::new();
        for (k, v) in o.iter() {
            map.insert(k.to_owned(), v.clone());
        }
        assert_eq!(
            serde_json::to_string(&o).unwrap(),
            serde_json::to_string(&map).unwrap()
        );
        let text = serde_json::to_string(&o).unwrap();
        assert!(
            text.starts_with(
                r#"{"arn":{"value":"arn:x"},"count":{"value":3},"token":{"sensitive":""#
            ),
            "{text}"
        );
        assert_eq!(
            o.0.keys().collect::<Vec<_>>(),
            ["arn", "count", "token", "zone"]
        );
        let back: Outputs = serde_json::from_str(&text).unwrap();
        assert_eq!(back, o.redacted());
        assert_eq!(serde_json::to_string(&back).unwrap(), text);
    }

    #[test]
    fn insert_replaces_and_keeps_order() {
        let mut o = Outputs::new().with("b", 1).with("a", 2);
        assert_eq!(
            o.insert("b", OutputValue::Plain(json!(5))),
            Some(OutputValue::Plain(json!(1)))
        );
        assert_eq!(o.insert("c", OutputValue::Plain(json!(6))), None);
        assert_eq!(o.len(), 3);
        assert_eq!(o.get("b"), Some(&OutputValue::Plain(json!(5))));
        assert!(o.0.contains_key("c") && !o.0.contains_key("d"));
        let pairs: Vec<(&str, String)> = o.iter().map(|(k, v)| (k, v.to_string())).collect();
        assert_eq!(
            pairs,
            [("a", "2".into()), ("b", "5".into()), ("c", "6".into())]
        );
    }

    #[test]
    fn duplicate_names_keep_the_last_value() {
        let o: Outputs =
            serde_json::from_str(r#"{"a":{"value":1},"b":{"value":2},"a":{"value":3}}"#).unwrap();
        assert_eq!(o.len(), 2);
        assert_eq!(o.get("a"), Some(&OutputValue::Plain(json!(3))));
        let collected: Outputs = [
            ("x", OutputValue::Plain(json!(1))),
            ("x", OutputValue::Plain(json!(2))),
        ]
        .into_iter()
        .collect();
        assert_eq!(collected.get("x"), Some(&OutputValue::Plain(json!(2))));
    }

    #[test]
    fn malformed_outputs_are_errors_not_panics() {
        for bad in [r#"[1]"#, r#"{"a":1}"#, r#"{"a":{"sensitive":"nothex"}}"#] {
            assert!(
                serde_json::from_str::<Outputs>(bad).is_err(),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn debug_prints_like_the_map_and_hides_secrets() {
        let o = Outputs::new().with("a", "x").with_sensitive("t", "hunter2");
        assert_eq!(format!("{o:?}"), r#"Outputs({"a": "x", "t": (sensitive)})"#);
        let OutputValue::Sensitive(secret) = o.get("t").unwrap().clone() else {
            panic!("not a secret")
        };
        assert_eq!(format!("{secret:?}"), "(sensitive)");
        assert_eq!(secret.value(), Some(&json!("hunter2")));
        assert_eq!(secret.digest(), Fingerprint::of_value(&json!("hunter2")));
    }
}
