//! JSON decoding: one pass over a record that validates the whole document and copies out only
//! the fields the job reads, into slots (see [`crate::fields`]).
//!
//! The parser is sonic-rs driven through serde with a seed that knows the needed paths: fields
//! nobody reads are skipped (still validated), needed strings are borrowed from the input when
//! they have no escapes. The `decode` bench compares this with serde_json and with sonic-rs's
//! `get_many`; the latter stops reading once every path is found, so it would accept a record
//! truncated after its last needed field, which a batch query would reject.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::fields::{FieldTable, SlotSource};
use crate::value::Value;

/// Why a record could not be decoded. Every variant names what the user has to look at.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// Not valid JSON (truncated, garbage, invalid UTF-8, trailing characters).
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// Valid JSON, but not an object.
    #[error("record is not a JSON object")]
    NotAnObject,
    /// A required field (event time, log time) is absent.
    #[error("missing field `{0}`")]
    MissingField(String),
    /// A field has a type the job cannot use.
    #[error("field `{field}` has the wrong type: expected {expected}, found {found}")]
    WrongType {
        /// Dotted path.
        field: String,
        /// What the job needs.
        expected: &'static str,
        /// What the record holds.
        found: &'static str,
    },
    /// A timestamp field does not parse in its configured format.
    #[error("field `{field}` is not a valid {format} timestamp: {value:?}")]
    BadTimestamp {
        /// Dotted path.
        field: String,
        /// The configured format.
        format: &'static str,
        /// The offending text (truncated to 64 bytes).
        value: String,
    },
}

impl DecodeError {
    /// A stable machine-readable reason code (used in dead-letter headers and metrics).
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::MalformedJson(_) => "malformed_json",
            DecodeError::NotAnObject => "not_an_object",
            DecodeError::MissingField(_) => "missing_field",
            DecodeError::WrongType { .. } => "wrong_type",
            DecodeError::BadTimestamp { .. } => "bad_timestamp",
        }
    }
}

/// A tree of the record paths a job reads; leaves name slots.
#[derive(Debug, Default, Clone)]
pub struct PathTree {
    /// Slots filled by the value at this node.
    slots: Vec<usize>,
    /// Children by key. A short vector beats a hash map for the handful of keys a job reads.
    children: Vec<(Box<str>, PathTree)>,
}

impl PathTree {
    /// The tree of every record path in `fields` (derived slots are computed later).
    pub fn from_fields(fields: &FieldTable) -> Self {
        let mut root = PathTree::default();
        for (slot, source) in fields.slots().iter().enumerate() {
            if let SlotSource::Path(segments) = source {
                let mut node = &mut root;
                for seg in segments {
                    let pos = match node.children.iter().position(|(k, _)| **k == **seg) {
                        Some(p) => p,
                        None => {
                            node.children.push((seg.as_str().into(), PathTree::default()));
                            node.children.len() - 1
                        }
                    };
                    node = &mut node.children[pos].1;
                }
                node.slots.push(slot);
            }
        }
        root
    }

    #[inline]
    fn child(&self, key: &str) -> Option<&PathTree> {
        self.children.iter().find(|(k, _)| **k == *key).map(|(_, c)| c)
    }
}

/// Decodes `line` into `slots` (resized to `n_slots`, every slot reset to `Missing` first).
pub fn decode_into<'de>(
    tree: &PathTree,
    line: &'de [u8],
    slots: &mut Vec<Value<'de>>,
    n_slots: usize,
) -> Result<(), DecodeError> {
    slots.clear();
    slots.resize(n_slots, Value::Missing);
    let mut de = sonic_rs::Deserializer::from_slice(line);
    let seed = NodeSeed { node: tree, slots, root: true };
    match seed.deserialize(&mut de) {
        Ok(()) => {}
        Err(e) if e.to_string().contains(NOT_OBJECT) => return Err(DecodeError::NotAnObject),
        Err(e) => return Err(DecodeError::MalformedJson(e.to_string())),
    }
    de.end().map_err(|e| DecodeError::MalformedJson(e.to_string()))
}

const NOT_OBJECT: &str = "kappa: record is not a JSON object";

struct NodeSeed<'a, 'de> {
    node: &'a PathTree,
    slots: &'a mut Vec<Value<'de>>,
    root: bool,
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.node.children.is_empty() {
            // A leaf: the whole value goes to its slots.
            let v = d.deserialize_any(ScalarVisitor)?;
            for &s in &self.node.slots {
                self.slots[s] = v.clone();
            }
            return Ok(());
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        for &s in &self.node.slots {
            self.slots[s] = Value::Composite;
        }
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match self.node.child(&key.0) {
                Some(child) => map.next_value_seed(NodeSeed {
                    node: child,
                    slots: &mut *self.slots,
                    root: false,
                })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.root {
            return Err(serde::de::Error::custom(NOT_OBJECT));
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.mark(Value::Composite);
        Ok(())
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        self.scalar(Value::Bool(v))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.scalar(Value::Int(v))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.scalar(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        self.scalar(Value::Float(v))
    }
    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<(), E> {
        self.scalar(Value::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.scalar(Value::Str(Cow::Owned(v.to_string())))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.scalar(Value::Null)
    }
}

impl<'de> NodeSeed<'_, 'de> {
    /// A scalar where the job expected an object to descend into: its nested paths stay
    /// `Missing`, and the node's own slots (if any) get the scalar.
    fn scalar<E: serde::de::Error>(self, v: Value<'de>) -> Result<(), E> {
        if self.root {
            return Err(E::custom(NOT_OBJECT));
        }
        self.mark(v);
        Ok(())
    }

    fn mark(self, v: Value<'de>) {
        for &s in &self.node.slots {
            self.slots[s] = v.clone();
        }
    }
}

/// An object key, borrowed when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Value<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value<'de>, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value<'de>, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value<'de>, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value<'de>, E> {
        Ok(Value::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Owned(v.to_string())))
    }
    fn visit_unit<E>(self) -> Result<Value<'de>, E> {
        Ok(Value::Null)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Value::Composite)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Composite)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(paths: &[&str]) -> (FieldTable, PathTree) {
        let mut t = FieldTable::new();
        for p in paths {
            t.slot_for_path(p);
        }
        let tree = PathTree::from_fields(&t);
        (t, tree)
    }

    #[test]
    fn reads_nested_fields_and_borrows_plain_strings() {
        let (t, tree) = table(&["a", "m.x", "m.y.z", "gone", "m.y"]);
        let line = br#"{"a":"plain","skip":[1,{"q":2}],"m":{"x":1.5,"y":{"z":-3}},"b":null}"#;
        let mut slots = Vec::new();
        decode_into(&tree, line, &mut slots, t.len()).unwrap();
        assert!(matches!(&slots[0], Value::Str(Cow::Borrowed("plain"))));
        assert_eq!(slots[1], Value::Float(1.5));
        assert_eq!(slots[2], Value::Int(-3));
        assert_eq!(slots[3], Value::Missing);
        assert_eq!(slots[4], Value::Composite);
    }

    #[test]
    fn unescapes_strings_and_keys() {
        let (t, tree) = table(&["k\"ey", "s"]);
        let line = br#"{"k\"ey":"a\nb","s":"\u00e9"}"#;
        let mut slots = Vec::new();
        decode_into(&tree, line, &mut slots, t.len()).unwrap();
        assert_eq!(slots[0], Value::Str("a\nb".into()));
        assert_eq!(slots[1], Value::Str("é".into()));
    }

    #[test]
    fn every_malformation_is_a_typed_error() {
        let (t, tree) = table(&["a"]);
        let decode = |line: &[u8]| {
            let mut slots = Vec::new();
            decode_into(&tree, line, &mut slots, t.len()).map(|_| ()).map_err(|e| e.code())
        };
        assert_eq!(decode(br#"{"a":1,"b":"trunc"#), Err("malformed_json"));
        assert_eq!(decode(br#"{"a":1} trailing"#), Err("malformed_json"));
        assert_eq!(decode(b"not json"), Err("malformed_json"));
        assert_eq!(decode(b""), Err("malformed_json"));
        assert_eq!(decode(b"{\"a\":\"\xff\"}"), Err("malformed_json"));
        assert_eq!(decode(b"[1,2]"), Err("not_an_object"));
        assert_eq!(decode(b"42"), Err("not_an_object"));
        assert_eq!(decode(br#"{"a":1}"#), Ok(()));
        assert_eq!(decode(b"  {\"a\":1}\r"), Ok(()));
    }

    #[test]
    fn a_scalar_where_an_object_was_expected_leaves_nested_paths_missing() {
        let (t, tree) = table(&["m.x", "m"]);
        let mut slots = Vec::new();
        decode_into(&tree, br#"{"m":7}"#, &mut slots, t.len()).unwrap();
        assert_eq!(slots, vec![Value::Missing, Value::Int(7)]);
    }
}
