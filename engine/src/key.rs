//! Group keys: the groupBy values of a record, canonicalised so that equal values group together
//! (`5` and `5.0` are one key), interned to small ids, and ordered for sorted output.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::value::Value;

/// One owned, canonical groupBy value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum KeyValue {
    /// Missing or `null`.
    Null,
    /// Boolean.
    Bool(bool),
    /// Integer (also integral doubles within ±2^53).
    Int(i64),
    /// Non-integral double.
    Float(f64),
    /// String.
    Str(Box<str>),
}

impl Eq for KeyValue {}

impl KeyValue {
    fn rank(&self) -> u8 {
        match self {
            KeyValue::Null => 0,
            KeyValue::Bool(_) => 1,
            KeyValue::Int(_) | KeyValue::Float(_) => 2,
            KeyValue::Str(_) => 3,
        }
    }

    /// The value as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            KeyValue::Null => serde_json::Value::Null,
            KeyValue::Bool(b) => (*b).into(),
            KeyValue::Int(i) => (*i).into(),
            KeyValue::Float(f) => (*f).into(),
            KeyValue::Str(s) => s.as_ref().into(),
        }
    }

    /// Appends the value as JSON, byte for byte what serializing [`KeyValue::to_json`] writes,
    /// without building it (documents and ids are written once per window).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            KeyValue::Null => out.extend_from_slice(b"null"),
            KeyValue::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            KeyValue::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
            KeyValue::Float(f) => serde_json::to_writer(out, f).expect("writes to a Vec"),
            KeyValue::Str(s) => serde_json::to_writer(out, s).expect("writes to a Vec"),
        }
    }

    /// The canonical key value of a record value; `None` for objects and arrays.
    pub fn from_value(v: &Value<'_>) -> Option<KeyValue> {
        let mut buf = Vec::new();
        encode_one(v, &mut buf)?;
        Some(match v {
            Value::Missing | Value::Null => KeyValue::Null,
            Value::Bool(b) => KeyValue::Bool(*b),
            Value::Int(i) => KeyValue::Int(*i),
            Value::Float(f) => match integral(*f) {
                Some(i) => KeyValue::Int(i),
                None => KeyValue::Float(*f),
            },
            Value::Str(s) => KeyValue::Str(s.as_ref().into()),
            Value::Composite => return None,
        })
    }
}

impl Ord for KeyValue {
    /// Null < booleans < numbers (numerically) < strings (bytewise).
    fn cmp(&self, other: &Self) -> Ordering {
        use KeyValue::*;
        match (self, other) {
            (Bool(a), Bool(b)) => a.cmp(b),
            (Int(a), Int(b)) => a.cmp(b),
            (Str(a), Str(b)) => a.cmp(b),
            (Int(a), Float(b)) => (*a as f64).total_cmp(b),
            (Float(a), Int(b)) => a.total_cmp(&(*b as f64)),
            (Float(a), Float(b)) => a.total_cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for KeyValue {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[inline]
fn integral(f: f64) -> Option<i64> {
    (f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0).then_some(f as i64)
}

/// Appends the canonical encoding of one value; `None` for objects and arrays.
#[inline]
fn encode_one(v: &Value<'_>, out: &mut Vec<u8>) -> Option<()> {
    match v {
        Value::Missing | Value::Null => out.push(0),
        Value::Bool(b) => out.extend_from_slice(&[1, u8::from(*b)]),
        Value::Int(i) => {
            out.push(2);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Float(f) => match integral(*f) {
            Some(i) => {
                out.push(2);
                out.extend_from_slice(&i.to_le_bytes());
            }
            None => {
                out.push(3);
                out.extend_from_slice(&f.to_bits().to_le_bytes());
            }
        },
        Value::Str(s) => {
            out.push(4);
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        Value::Composite => return None,
    }
    Some(())
}

/// Writes the canonical encoding of a whole key (the groupBy values in order) into `out`.
/// On error returns the position of the first value that is an object or array.
#[inline]
pub fn encode_key<'a, 'v: 'a>(
    values: impl IntoIterator<Item = &'a Value<'v>>,
    out: &mut Vec<u8>,
) -> Result<(), usize> {
    out.clear();
    for (i, v) in values.into_iter().enumerate() {
        encode_one(v, out).ok_or(i)?;
    }
    Ok(())
}

/// Interns encoded keys to dense ids.
#[derive(Debug, Default)]
pub struct KeyInterner {
    ids: hashbrown::HashMap<Box<[u8]>, u32>,
    keys: Vec<Box<[KeyValue]>>,
}

impl KeyInterner {
    /// The id of an encoded key, creating it from `values` if new.
    #[inline]
    pub fn intern(&mut self, encoded: &[u8], values: impl FnOnce() -> Box<[KeyValue]>) -> u32 {
        if let Some(&id) = self.ids.get(encoded) {
            return id;
        }
        let id = u32::try_from(self.keys.len()).expect("fewer than 2^32 group keys");
        self.keys.push(values());
        self.ids.insert(encoded.into(), id);
        id
    }

    /// The values of key `id`.
    pub fn key(&self, id: u32) -> &[KeyValue] {
        &self.keys[id as usize]
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key was interned.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_written_as_serde_json_writes_it() {
        let values = [
            KeyValue::Null,
            KeyValue::Bool(true),
            KeyValue::Bool(false),
            KeyValue::Int(i64::MIN),
            KeyValue::Int(42),
            KeyValue::Float(0.1),
            KeyValue::Float(-1.5e300),
            KeyValue::Float(f64::NAN),
            KeyValue::Str("plain".into()),
            KeyValue::Str("quote \" backslash \\ control \u{1} é 😀".into()),
        ];
        for v in &values {
            let mut out = Vec::new();
            v.write_json(&mut out);
            assert_eq!(out, serde_json::to_vec(&v.to_json()).unwrap(), "{v:?}");
        }
    }

    #[test]
    fn equal_numbers_share_a_key_and_order_is_numeric() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        encode_key([&Value::Int(5)], &mut a).unwrap();
        encode_key([&Value::Float(5.0)], &mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(encode_key([&Value::Null, &Value::Composite], &mut a), Err(1));
        let mut keys = vec![
            KeyValue::Str("b".into()),
            KeyValue::Float(1.5),
            KeyValue::Int(2),
            KeyValue::Null,
            KeyValue::Int(1),
        ];
        keys.sort();
        assert_eq!(
            keys,
            vec![
                KeyValue::Null,
                KeyValue::Int(1),
                KeyValue::Float(1.5),
                KeyValue::Int(2),
                KeyValue::Str("b".into())
            ]
        );
    }
}
