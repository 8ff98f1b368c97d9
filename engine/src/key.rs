//! Group keys: the groupBy values of a record, canonicalised so that equal values group together
//! (`5` and `5.0` are one key), interned to small ids, and ordered for sorted output.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use xxhash_rust::xxh3::xxh3_64_with_seed;

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

    /// Whether the record value `v` has this canonical key value.
    #[inline]
    fn is(&self, v: &Value<'_>) -> bool {
        match (self, v) {
            (KeyValue::Str(a), Value::Str(b)) => same_bytes(a.as_bytes(), b.as_bytes()),
            (KeyValue::Null, Value::Missing | Value::Null) => true,
            (KeyValue::Bool(a), Value::Bool(b)) => a == b,
            (KeyValue::Int(a), Value::Int(b)) => a == b,
            (KeyValue::Int(a), Value::Float(f)) => integral(*f) == Some(*a),
            // A stored double is not integral, so neither is a value with its bits.
            (KeyValue::Float(a), Value::Float(f)) => a.to_bits() == f.to_bits(),
            _ => false,
        }
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

/// Hash seeds that keep values of different canonical types apart.
const SEED_STR: u64 = 0x0073_7472;
const SEED_INT: u64 = 0x0069_6e74;
const SEED_FLOAT: u64 = 0x0066_6c6f_6174;
const SEED_BOOL: u64 = 0x626f_6f6c;
const SEED_NULL: u64 = 0x6e75_6c6c;
/// Multiplier of [`mix`] (the golden ratio, odd).
const MIX: u64 = 0x9E37_79B9_7F4A_7C15;

/// Folds a 128-bit product: every input bit reaches every output bit.
#[inline(always)]
fn mix(x: u64) -> u64 {
    let p = u128::from(x) * u128::from(MIX);
    (p as u64) ^ ((p >> 64) as u64)
}

/// The hash of one canonical value (`5` and `5.0` alike); `None` for objects and arrays.
#[inline]
fn value_hash(v: &Value<'_>) -> Option<u64> {
    Some(match v {
        Value::Str(s) => match short_words(s.as_bytes()) {
            Some((w0, w1)) => mix(mix(SEED_STR ^ w0 ^ s.len() as u64) ^ w1),
            None => xxh3_64_with_seed(s.as_bytes(), SEED_STR),
        },
        Value::Missing | Value::Null => SEED_NULL,
        Value::Bool(b) => mix(SEED_BOOL ^ u64::from(*b)),
        Value::Int(i) => mix(SEED_INT ^ *i as u64),
        Value::Float(f) => match integral(*f) {
            Some(i) => mix(SEED_INT ^ i as u64),
            None => mix(SEED_FLOAT ^ f.to_bits()),
        },
        Value::Composite => return None,
    })
}

/// The bytes of a string of at most 16 bytes in two words, read as overlapping loads (group-by
/// values are short: server names, types, codes). With the length they determine the string.
/// `None` for a longer string.
///
/// Hand-written rather than hashing and comparing through `xxh3` and `memcmp`, which cost a
/// call each per string: two short strings per record made that 5% of a replay.
#[inline(always)]
fn short_words(b: &[u8]) -> Option<(u64, u64)> {
    let n = b.len();
    let at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let at32 = |i: usize| u64::from(u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes")));
    Some(match n {
        17.. => return None,
        8.. => (at(0), at(n - 8)),
        4.. => (at32(0), at32(n - 4)),
        1.. => (u64::from(b[0]) | u64::from(b[n / 2]) << 8 | u64::from(b[n - 1]) << 16, 0),
        0 => (0, 0),
    })
}

/// `a == b`, without a `memcmp` call for short strings.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && match (short_words(a), short_words(b)) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        }
}

/// Heap bytes of a boxed key: its values and their strings.
pub fn key_heap_bytes(key: &[KeyValue]) -> usize {
    let strings: usize =
        key.iter().map(|v| if let KeyValue::Str(s) = v { s.len() } else { 0 }).sum();
    std::mem::size_of_val(key) + strings
}

/// Interns group keys to dense ids.
///
/// A key is looked up by the record's values where they lie: a hash of each canonical value
/// (see [`short_words`]), then a comparison with the stored key's values. An earlier version
/// encoded the values into a buffer and hashed and compared that; with two short strings per key
/// the encoding, the buffer hash and its `memcmp` were 9% of a replay's instructions.
#[derive(Debug, Default)]
pub struct KeyInterner {
    ids: hashbrown::HashTable<u32>,
    keys: Vec<Box<[KeyValue]>>,
    hashes: Vec<u64>,
}

impl KeyInterner {
    /// Approximate bytes held: the lookup table, the keys and their hashes.
    pub fn memory_bytes(&self) -> usize {
        self.ids.capacity() * (std::mem::size_of::<u32>() + 1)
            + self.keys.capacity() * std::mem::size_of::<Box<[KeyValue]>>()
            + self.keys.iter().map(|k| key_heap_bytes(k)).sum::<usize>()
            + self.hashes.capacity() * 8
    }

    /// The hash of the key made of `values` (the groupBy values in order); `Err(i)` if the
    /// `i`-th value is an object or array, which cannot be a key.
    #[inline]
    pub fn hash<'a, 'v: 'a>(values: impl IntoIterator<Item = &'a Value<'v>>) -> Result<u64, usize> {
        let mut hash = 0;
        for (i, v) in values.into_iter().enumerate() {
            hash = mix(hash ^ value_hash(v).ok_or(i)?);
        }
        Ok(hash)
    }

    /// The id of the key made of `values`, whose [`KeyInterner::hash`] is `hash`; created if
    /// new.
    #[inline]
    pub fn intern<'a, 'v: 'a, I>(&mut self, hash: u64, values: I) -> u32
    where
        I: IntoIterator<Item = &'a Value<'v>>,
        I::IntoIter: ExactSizeIterator + Clone,
    {
        let values = values.into_iter();
        let keys = &self.keys;
        let same = |&id: &u32| {
            let key = &keys[id as usize];
            key.len() == values.len() && key.iter().zip(values.clone()).all(|(k, v)| k.is(v))
        };
        if let Some(&id) = self.ids.find(hash, same) {
            return id;
        }
        let id = u32::try_from(self.keys.len()).expect("fewer than 2^32 group keys");
        let key = values.map(|v| KeyValue::from_value(v).expect("checked by hash")).collect();
        self.keys.push(key);
        self.hashes.push(hash);
        let hashes = &self.hashes;
        self.ids.insert_unique(hash, id, |&id| hashes[id as usize]);
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
    fn short_strings_are_equal_exactly_when_their_bytes_are() {
        let strings: Vec<String> = (0..=20)
            .flat_map(|n| {
                let base = "abcdefghijklmnopqrstu"[..n].to_string();
                // The same length, one byte changed at each position.
                let changed = (0..n).map(move |i| {
                    let mut b = base.clone().into_bytes();
                    b[i] = b'Z';
                    String::from_utf8(b).unwrap()
                });
                std::iter::once("abcdefghijklmnopqrstu"[..n].to_string()).chain(changed)
            })
            .collect();
        for a in &strings {
            for b in &strings {
                assert_eq!(same_bytes(a.as_bytes(), b.as_bytes()), a == b, "{a:?} {b:?}");
                if a == b {
                    let (va, vb) = (Value::Str(a.as_str().into()), Value::Str(b.as_str().into()));
                    assert_eq!(value_hash(&va), value_hash(&vb));
                }
            }
        }
    }

    #[test]
    fn equal_numbers_share_a_key_and_order_is_numeric() {
        let mut interner = KeyInterner::default();
        let mut intern = |values: &[Value<'_>]| {
            let hash = KeyInterner::hash(values)?;
            Ok::<_, usize>(interner.intern(hash, values))
        };
        assert_eq!(intern(&[Value::Int(5)]), intern(&[Value::Float(5.0)]));
        assert_eq!(intern(&[Value::Null, Value::Composite]), Err(1));
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
