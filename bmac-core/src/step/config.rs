//! [`Config`]: a step's desired configuration, canonical JSON that knows its own digest.
//!
//! Planning compares every desired step's config with the one state recorded for it. Walking
//! two JSON trees per step costs a few cache misses each once 100k configs no longer fit in
//! cache, so a config carries the SHA-256 of its canonical encoding, computed once where the
//! config is made (built from a spec, read back from state), and two configs are equal when
//! their digests are. Any mutable access drops the digest; comparisons of an edited config fall
//! back to comparing values until it is rebuilt.

use std::fmt;
use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::Fingerprint;

/// A step's desired configuration: a JSON value and the digest of its canonical encoding.
///
/// Reads go through `Deref<Target = Value>` (`config.pointer("/a")`, `config["a"]`); writes
/// through `DerefMut`, which forgets the digest. Equality is equality of the canonical
/// encoding: object key order never matters, `1` and `1.0` differ (as they do for
/// `serde_json::Value`), and so do `0.0` and `-0.0`. Serialised as the bare value.
#[derive(Clone)]
pub struct Config {
    value: Value,
    /// [`Fingerprint::of_value`] of `value`; `None` after a mutable borrow.
    digest: Option<Fingerprint>,
}

impl Config {
    /// A config and its digest.
    pub fn new(value: Value) -> Self {
        let digest = Some(Fingerprint::of_value(&value));
        Config { value, digest }
    }

    /// The digest of the canonical encoding ([`Fingerprint::of_value`]); computed now if a
    /// mutable borrow dropped it.
    pub fn digest(&self) -> Fingerprint {
        self.digest
            .unwrap_or_else(|| Fingerprint::of_value(&self.value))
    }

    /// The JSON value.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The JSON value, by move.
    pub fn into_value(self) -> Value {
        self.value
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::new(Value::Null)
    }
}

impl Deref for Config {
    type Target = Value;
    fn deref(&self) -> &Value {
        &self.value
    }
}

impl DerefMut for Config {
    /// The value, for editing: the digest is dropped, since the value may change.
    fn deref_mut(&mut self) -> &mut Value {
        self.digest = None;
        &mut self.value
    }
}

impl PartialEq for Config {
    fn eq(&self, other: &Self) -> bool {
        self.digest() == other.digest()
    }
}

impl Eq for Config {}

impl PartialEq<Value> for Config {
    fn eq(&self, other: &Value) -> bool {
        self.value == *other
    }
}

impl PartialEq<Config> for Value {
    fn eq(&self, other: &Config) -> bool {
        *self == other.value
    }
}

impl From<Value> for Config {
    fn from(value: Value) -> Self {
        Config::new(value)
    }
}

impl From<Config> for Value {
    fn from(config: Config) -> Self {
        config.value
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.value, f)
    }
}

impl Serialize for Config {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Config {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(Config::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_when_the_canonical_encoding_is() {
        let a = Config::new(json!({"a": 1, "b": [true, null, "x"]}));
        let b: Config = serde_json::from_str(r#"{"b": [true, null, "x"], "a": 1}"#).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.digest(), Fingerprint::of_value(a.value()));
        assert_ne!(a, Config::new(json!({"a": 2, "b": [true, null, "x"]})));
        assert_ne!(Config::new(json!(1)), Config::new(json!(1.0)));
        assert_ne!(Config::new(json!("1")), Config::new(json!(1)));
    }

    #[test]
    fn an_edit_drops_the_digest_and_equality_follows_the_value() {
        let before = Config::new(json!({"scaling": {"max": 3}}));
        let mut after = before.clone();
        after["scaling"]["max"] = json!(5);
        assert_ne!(
            before, after,
            "an edited config must not keep the old digest"
        );
        assert_eq!(
            after.digest(),
            Config::new(json!({"scaling": {"max": 5}})).digest()
        );
        after["scaling"]["max"] = json!(3);
        assert_eq!(before, after);
    }

    #[test]
    fn serialises_as_the_bare_value() {
        let c = Config::new(json!({"a": [1, 2]}));
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(text, r#"{"a":[1,2]}"#);
        let back: Config = serde_json::from_str(&text).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.into_value(), json!({"a": [1, 2]}));
    }
}
