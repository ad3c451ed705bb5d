//! The step model: what one unit of a build is, and how we tell whether it changed.
//!
//! A [`Step`] is an id ([`StepId`], a readable dotted path such as
//! `payments.node_pool.system`), a [`Kind`] (which provider serves it and which config fields
//! force a replacement), a typed desired config stored as canonical JSON, explicit
//! dependencies, and named *inputs* — references ([`Ref`]) to other steps' outputs. Both
//! explicit dependencies and input references are edges of the plan graph.
//!
//! Inputs are resolved when the step runs, from the outputs of the steps it references (the
//! cluster endpoint, a CA, a role ARN …). A step's [`Fingerprint`] is a stable SHA-256 of its
//! kind, canonical config and *resolved* input values; it is what the journal records and what
//! decides, on a re-run, whether the step has anything to do. The planner, which runs before
//! inputs are known, compares kinds and configs instead; a [`Config`] carries the digest of its
//! canonical encoding, made once with the config, so that comparison reads 32 bytes.
//!
//! Sensitive outputs (tokens, passwords) are [`OutputValue::Sensitive`]: they print as
//! `(sensitive)`, and they are never serialised in clear — state keeps only their digest. A
//! secret that a later run needs again is re-read from the provider by `observe`. Fingerprints
//! always hash the digest, never the value, so they can be computed from state alone.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use sha2::{Digest, Sha256};

mod config;
mod ids;
mod outputs;

pub use config::Config;
pub use ids::StepIds;
pub use outputs::{Inputs, OutputIter, OutputMap, OutputValue, Outputs, Secret};

/// Why a string is not a valid [`StepId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid step id `{id}`: {reason}")]
pub struct InvalidStepId {
    /// The rejected text.
    pub id: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// The identity of a step: a dotted path of segments made of `[A-Za-z0-9_-]`,
/// e.g. `cluster`, `node_pool.system`, `payments.namespace.payments`.
///
/// Cheap to clone (one `Arc`), ordered and hashed as its text.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StepId(Arc<str>);

impl StepId {
    /// Parses and validates a step id.
    pub fn new(id: impl AsRef<str>) -> Result<Self, InvalidStepId> {
        let id = id.as_ref();
        let fail = |reason| {
            Err(InvalidStepId {
                id: id.to_owned(),
                reason,
            })
        };
        if id.is_empty() {
            return fail("it is empty");
        }
        for segment in id.split('.') {
            if segment.is_empty() {
                return fail("a segment between dots is empty");
            }
            if !segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return fail("segments may contain only letters, digits, `_` and `-`");
            }
        }
        Ok(StepId(Arc::from(id)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The dot-separated segments of the id.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }

    /// A child id: `self` + `.` + `segment`.
    pub fn child(&self, segment: &str) -> Result<Self, InvalidStepId> {
        StepId::new(format!("{}.{segment}", self.0))
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StepId({})", self.0)
    }
}

impl Borrow<str> for StepId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for StepId {
    type Err = InvalidStepId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StepId::new(s)
    }
}

impl Serialize for StepId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for StepId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        StepId::new(&*s).map_err(serde::de::Error::custom)
    }
}

/// A step kind: the name providers are routed by (`cluster`, `node_pool`, `kyverno_policy`…),
/// and the config fields whose change forces the resource to be replaced rather than updated.
///
/// Replacement fields are JSON pointers into the config (`/region`, `/disk/type`). They matter
/// only while planning; a kind read back from a saved plan or state carries its name alone.
#[derive(Clone)]
pub struct Kind(Arc<KindDef>);

struct KindDef {
    name: Box<str>,
    replace_on: Box<[Box<str>]>,
}

impl Kind {
    /// A kind whose every config change is an in-place update.
    pub fn new(name: impl Into<String>) -> Self {
        Kind::with_replace_on(name, std::iter::empty::<&str>())
    }

    /// A kind whose listed config fields (JSON pointers such as `/region`) force replacement.
    pub fn with_replace_on<I, S>(name: impl Into<String>, replace_on: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Kind(Arc::new(KindDef {
            name: name.into().into_boxed_str(),
            replace_on: replace_on
                .into_iter()
                .map(|p| Box::from(p.as_ref()))
                .collect(),
        }))
    }

    /// The kind's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Config fields (JSON pointers) whose change forces replacement.
    pub fn replace_on(&self) -> impl Iterator<Item = &str> {
        self.0.replace_on.iter().map(|s| &**s)
    }
}

impl PartialEq for Kind {
    /// Kinds are equal by name; clones of one kind (every step a catalogue entry makes) are
    /// equal without reading it.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.name() == other.name()
    }
}
impl Eq for Kind {}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kind({})", self.name())
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Kind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Kind::new(String::deserialize(d)?))
    }
}

/// A reference to an output of another step; resolving it is an edge of the graph.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ref {
    /// The step that produces the output.
    pub step: StepId,
    /// The output's name.
    pub output: String,
}

impl Ref {
    /// A reference to `output` of `step`.
    pub fn new(step: StepId, output: impl Into<String>) -> Self {
        Ref {
            step,
            output: output.into(),
        }
    }
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.outputs.{}", self.step, self.output)
    }
}

/// One unit of the build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The step's identity.
    pub id: StepId,
    /// What kind of thing it is; providers are routed by kind.
    pub kind: Kind,
    /// The desired configuration, as canonical JSON (object keys sorted), with its digest.
    pub config: Config,
    /// Explicit dependencies (`depends_on`), each once; inline when there is one.
    #[serde(default, skip_serializing_if = "StepIds::is_empty")]
    pub deps: StepIds,
    /// Named inputs taken from other steps' outputs at run time.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, Ref>,
}

impl Step {
    /// A step with a config serialised from any serde type.
    pub fn new<C: Serialize + ?Sized>(
        id: StepId,
        kind: Kind,
        config: &C,
    ) -> Result<Self, serde_json::Error> {
        Ok(Step {
            id,
            kind,
            config: Config::new(serde_json::to_value(config)?),
            deps: StepIds::new(),
            inputs: BTreeMap::new(),
        })
    }

    /// Adds an explicit dependency.
    pub fn depends_on(mut self, dep: StepId) -> Self {
        if !self.deps.contains(&dep) {
            self.deps.push(dep);
        }
        self
    }

    /// Adds a named input referencing another step's output.
    pub fn input(mut self, name: impl Into<String>, from: Ref) -> Self {
        self.inputs.insert(name.into(), from);
        self
    }

    /// Deserialises the config into the provider's typed view of it.
    pub fn config_as<C: DeserializeOwned>(&self) -> Result<C, serde_json::Error> {
        C::deserialize(self.config.value())
    }

    /// Every step this one depends on — explicit deps and input sources — each once, in a
    /// stable order.
    pub fn dependencies(&self) -> impl Iterator<Item = &StepId> {
        let mut seen: Vec<&StepId> = Vec::with_capacity(self.deps.len() + self.inputs.len());
        for id in self
            .deps
            .iter()
            .chain(self.inputs.values().map(|r| &r.step))
        {
            if !seen.contains(&id) {
                seen.push(id);
            }
        }
        seen.into_iter()
    }

    /// Fingerprint of kind + config, known at plan time.
    pub fn config_fingerprint(&self) -> Fingerprint {
        let mut h = Sha256::new();
        h.update(b"bmac.config.v1\0");
        h.update(self.kind.name().as_bytes());
        h.update(b"\0");
        hash_value(&mut h, &self.config);
        Fingerprint(h.finalize().into())
    }

    /// Fingerprint of kind + config + resolved input values: what the journal records.
    pub fn fingerprint(&self, inputs: &Inputs) -> Fingerprint {
        let mut h = Sha256::new();
        h.update(b"bmac.step.v1\0");
        h.update(self.config_fingerprint().0);
        for (name, value) in &inputs.0 {
            h.update(name.as_bytes());
            h.update(b"\0");
            h.update(value.digest().0);
        }
        Fingerprint(h.finalize().into())
    }
}

/// Feeds a JSON value to a hasher in a canonical, unambiguous encoding (object keys sorted,
/// every item length-prefixed). Fingerprints are stored in state, so this encoding never
/// changes; it also allocates nothing in the usual case (numbers are formatted on the stack,
/// already-sorted objects are not collected), since the executor fingerprints every step it
/// starts.
fn hash_value(h: &mut Sha256, v: &Value) {
    match v {
        Value::Null => h.update(b"n"),
        Value::Bool(b) => h.update(if *b { b"t" } else { b"f" }),
        Value::Number(n) => {
            let mut text = NumberText::default();
            let s = if fmt::Write::write_fmt(&mut text, format_args!("{n}")).is_ok() {
                text.as_bytes()
            } else {
                // Longer than any number serde_json prints; kept for completeness.
                return hash_str(h, b"#", n.to_string().as_bytes());
            };
            hash_str(h, b"#", s);
        }
        Value::String(s) => hash_str(h, b"s", s.as_bytes()),
        Value::Array(items) => {
            h.update(b"[");
            h.update((items.len() as u64).to_le_bytes());
            items.iter().for_each(|i| hash_value(h, i));
        }
        Value::Object(map) => {
            h.update(b"{");
            h.update((map.len() as u64).to_le_bytes());
            let mut entry = |k: &String, v: &Value| {
                h.update((k.len() as u64).to_le_bytes());
                h.update(k.as_bytes());
                hash_value(h, v);
            };
            // serde_json's map is sorted unless another crate in a user's build turns on its
            // `preserve_order`; the fingerprint must not depend on that, so sort if need be.
            if map.keys().zip(map.keys().skip(1)).all(|(a, b)| a < b) {
                map.iter().for_each(|(k, v)| entry(k, v));
            } else {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                entries.into_iter().for_each(|(k, v)| entry(k, v));
            }
        }
    }
}

/// A tag, the length, then the bytes.
fn hash_str(h: &mut Sha256, tag: &[u8], bytes: &[u8]) {
    h.update(tag);
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// A number's text, formatted on the stack (serde_json prints at most 24 bytes).
struct NumberText {
    buf: [u8; 40],
    len: usize,
}

impl Default for NumberText {
    fn default() -> Self {
        NumberText {
            buf: [0; 40],
            len: 0,
        }
    }
}

impl NumberText {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Write for NumberText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let slot = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// A SHA-256 digest, shown and serialised as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The digest of a JSON value in the canonical encoding.
    pub fn of_value(v: &Value) -> Self {
        let mut h = Sha256::new();
        hash_value(&mut h, v);
        Fingerprint(h.finalize().into())
    }

    /// The first 12 hex digits, for display.
    pub fn short(&self) -> String {
        self.to_string()[..12].to_owned()
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.short())
    }
}

impl std::str::FromStr for Fingerprint {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err("a fingerprint is 64 hex digits");
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hex = std::str::from_utf8(pair).map_err(|_| "not hex")?;
            out[i] = u8::from_str_radix(hex, 16).map_err(|_| "not hex")?;
        }
        Ok(Fingerprint(out))
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(s: &str) -> StepId {
        StepId::new(s).unwrap()
    }

    #[test]
    fn step_ids_are_validated() {
        assert!(StepId::new("payments.node_pool.system").is_ok());
        assert!(StepId::new("a-b.c_d.e1").is_ok());
        for bad in ["", ".", "a..b", "a.", ".a", "a b", "a/b", "ü"] {
            assert!(StepId::new(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(id("a.b").child("c").unwrap().as_str(), "a.b.c");
        assert_eq!(id("a.b.c").segments().collect::<Vec<_>>(), ["a", "b", "c"]);
    }

    #[test]
    fn step_id_deserialisation_validates() {
        assert!(serde_json::from_str::<StepId>("\"a..b\"").is_err());
        assert_eq!(
            serde_json::from_str::<StepId>("\"a.b\"").unwrap(),
            id("a.b")
        );
    }

    #[test]
    fn config_fingerprint_ignores_key_order_but_not_values() {
        let k = Kind::new("node_pool");
        let a = Step::new(id("a"), k.clone(), &json!({"min": 1, "max": 3})).unwrap();
        let b = Step::new(id("a"), k.clone(), &json!({"max": 3, "min": 1})).unwrap();
        let c = Step::new(id("a"), k.clone(), &json!({"max": 4, "min": 1})).unwrap();
        let d = Step::new(id("a"), Kind::new("other"), &json!({"max": 3, "min": 1})).unwrap();
        assert_eq!(a.config_fingerprint(), b.config_fingerprint());
        assert_ne!(a.config_fingerprint(), c.config_fingerprint());
        assert_ne!(a.config_fingerprint(), d.config_fingerprint());
        // "1" and 1 must not collide.
        let e = Step::new(id("a"), k, &json!({"max": "3", "min": 1})).unwrap();
        assert_ne!(a.config_fingerprint(), e.config_fingerprint());
    }

    #[test]
    fn fingerprints_are_stable_across_releases() {
        // State files store these digests: the encoding must never change.
        let config = json!({
            "z": [1, -2.5, 1e300, null, true, false],
            "a": {"y": "text", "b": {}},
            "n": 18446744073709551615u64,
            "m": -9223372036854775808i64,
        });
        let s = Step::new(id("a.b"), Kind::new("k"), &config).unwrap();
        let inputs = Inputs(
            std::iter::once(("x".to_owned(), OutputValue::Plain(json!({"q": 1})))).collect(),
        );
        assert_eq!(
            s.config_fingerprint().to_string(),
            "d498c89d21b36e822634f94f561361d62a765a03fd3ad8d1bb90acc4f41b7fc8"
        );
        assert_eq!(
            s.fingerprint(&inputs).to_string(),
            "07a8e5490c55fdb8c79f178da761b54b7f8df439bd286687127bcd0c5de02af0"
        );
        assert_eq!(
            Fingerprint::of_value(&json!(0.1)).to_string(),
            "5cbd5947a0c637dd191f5cd3c27b433757f941ffcb225b5a39102edd2c18db65"
        );
    }

    #[test]
    fn fingerprint_depends_on_resolved_inputs() {
        let s = Step::new(id("sa"), Kind::new("sa"), &json!({})).unwrap();
        let mut i1 = Inputs::default();
        i1.0.insert("role".into(), OutputValue::Plain(json!("arn:1")));
        let mut i2 = Inputs::default();
        i2.0.insert("role".into(), OutputValue::Plain(json!("arn:2")));
        assert_ne!(s.fingerprint(&i1), s.fingerprint(&i2));
        assert_eq!(s.fingerprint(&i1), s.fingerprint(&i1.clone()));
    }

    #[test]
    fn secrets_never_print_nor_serialise_in_clear() {
        let o = Outputs::new()
            .with("endpoint", "https://k")
            .with_sensitive("token", "hunter2");
        let shown = format!("{o:?} {}", o.get("token").unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("(sensitive)"));
        let json = serde_json::to_string(&o).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        let back: Outputs = serde_json::from_str(&json).unwrap();
        assert!(back.has_redacted_secret());
        // The digest survives the round trip, so fingerprints agree with or without the value.
        assert_eq!(
            back.get("token").unwrap().digest(),
            o.get("token").unwrap().digest()
        );
        assert_eq!(back.get("endpoint"), o.get("endpoint"));
    }

    #[test]
    fn dependencies_merge_deps_and_inputs_once() {
        let s = Step::new(id("x"), Kind::new("k"), &json!({}))
            .unwrap()
            .depends_on(id("a"))
            .depends_on(id("a"))
            .input("e", Ref::new(id("a"), "endpoint"))
            .input("r", Ref::new(id("b"), "arn"));
        let deps: Vec<_> = s.dependencies().map(StepId::as_str).collect();
        assert_eq!(deps, ["a", "b"]);
    }
}
