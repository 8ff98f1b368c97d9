//! JSON decoding: one pass over a record that validates the whole document and copies out only
//! the fields the job reads, into slots (see [`crate::fields`]).
//!
//! A scanner written for this one job rather than a general parser driven through serde: a
//! record is one short object whose every byte has to be checked anyway, and the `decode` bench
//! measured sonic-rs through a serde seed at well over the cost of this loop (visitor dispatch,
//! key comparisons, per-token overhead on short tokens). Needed keys are matched on the raw
//! bytes before the key is scanned; needed strings are borrowed from the input when they have no
//! escapes.
//!
//! A [`RecordDecoder`] reads the records of one source faster: records written by one
//! serializer repeat their members in one order, so it compares each member's key and
//! punctuation with the record before as raw words and reads the values directly; a record that
//! differs takes the general path (the result is the same either way).
//!
//! The grammar is strict RFC 8259, as serde_json reads it (the parser of the batch reference in
//! `tests/replay_equals_batch.rs`): the whole line must be valid UTF-8, every string escape must
//! be valid and surrogates paired, also in fields nobody reads; nothing but whitespace may follow
//! the object; nesting deeper than [`MAX_DEPTH`] is refused (it also bounds the recursion).
//! Numbers read as sonic-rs read them: an integer that fits an `i64` is `Int`, anything else a
//! correctly rounded `Float`.
//!
//! The bench also runs sonic-rs's `get_many`; it stops reading once every path is found, so it
//! would accept a record truncated after its last needed field, which a batch query would
//! reject.

use std::borrow::Cow;
use std::fmt;
use std::num::NonZeroU64;
use std::ops::Range;

use crate::fields::{FieldTable, SlotSource};
use crate::value::Value;

/// Why a record could not be decoded. Every variant names what the user has to look at.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// Not valid JSON (truncated, garbage, invalid UTF-8, trailing characters), with where:
    /// one line, e.g. `EOF while parsing at line 1 column 15`.
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

/// Deepest nesting of objects and arrays a record may have, itself included (serde_json's
/// limit, so the batch reference refuses the same records).
pub const MAX_DEPTH: usize = 127;

/// A tree of the record paths a job reads; leaves name slots.
#[derive(Debug, Clone)]
pub struct PathTree {
    /// The slot filled by the value at this node ([`NO_SLOT`] if none).
    slot: usize,
    /// Further slots filled by the same value. A field table declares each path once, so this
    /// stays empty; it is here so that a table that did not would still decode correctly.
    more_slots: Vec<usize>,
    /// Children by key. A short vector beats a hash map for the handful of keys a job reads.
    children: Vec<(Box<str>, PathTree)>,
    /// `patterns[i]` matches the key of `children[i]`; kept apart so a lookup scans 40-byte
    /// entries.
    patterns: Vec<KeyPattern>,
}

/// [`PathTree::slot`] of a node that fills no slot.
const NO_SLOT: usize = usize::MAX;

impl Default for PathTree {
    fn default() -> Self {
        Self { slot: NO_SLOT, more_slots: Vec::new(), children: Vec::new(), patterns: Vec::new() }
    }
}

/// A byte string's first 16 bytes as two little-endian words, with the masks that cut a word
/// read from the record down to the string's length: two loads and compares settle the usual
/// short string, no `memcmp`.
#[derive(Debug, Clone, Copy)]
struct Words {
    len: usize,
    head: u64,
    head_mask: u64,
    tail: u64,
    tail_mask: u64,
}

impl Words {
    fn of(bytes: &[u8]) -> Self {
        let mut buf = [0u8; 16];
        let n = bytes.len().min(16);
        buf[..n].copy_from_slice(&bytes[..n]);
        let mask = |n: usize| if n >= 8 { u64::MAX } else { (1u64 << (8 * n)) - 1 };
        Self {
            len: bytes.len(),
            head: word(&buf, 0),
            head_mask: mask(bytes.len()),
            tail: word(&buf, 8),
            tail_mask: mask(bytes.len().saturating_sub(8)),
        }
    }

    /// Whether `w0` and `w1` (16 bytes of a record) start with the string's first 16 bytes.
    #[inline(always)]
    fn starts(&self, w0: u64, w1: u64) -> bool {
        w0 & self.head_mask == self.head && w1 & self.tail_mask == self.tail
    }
}

/// A key of a [`PathTree`] node, matched against the raw bytes of a record.
#[derive(Debug, Clone, Copy)]
struct KeyPattern(Words);

impl KeyPattern {
    fn of(key: &[u8]) -> Self {
        if key.iter().any(|&c| c == b'"' || c == b'\\' || c < 0x20) {
            // JSON can only write such a key with escapes, which the slow path reads: a
            // pattern that matches nothing.
            let never = Words { len: key.len(), head: 1, head_mask: 0, tail: 0, tail_mask: 0 };
            return Self(never);
        }
        Self(Words::of(key))
    }
}

/// The 8 bytes at `b[at..]` as a little-endian word (the caller checked they exist).
#[inline(always)]
fn word(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
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
                            node.patterns.push(KeyPattern::of(seg.as_bytes()));
                            node.children.len() - 1
                        }
                    };
                    node = &mut node.children[pos].1;
                }
                if node.slot == NO_SLOT {
                    node.slot = slot;
                } else {
                    node.more_slots.push(slot);
                }
            }
        }
        root
    }

    /// The index of the child whose key is the JSON string starting at `b[start..]` (just after
    /// its opening quote), with the index of the closing quote, matched on the raw bytes.
    /// Patterns are tried from `guess` on (records of one source repeat their key order, so the
    /// key after the last one matched comes first), and `guess` moves past the match. `None`
    /// means the string has to be scanned: it is no child, or one written with escapes, or too
    /// close to the end of the line to read two words.
    #[inline]
    fn child_in_place(&self, b: &[u8], start: usize, guess: &mut usize) -> Option<(usize, usize)> {
        let n = self.patterns.len();
        if start + 16 > b.len() || n == 0 {
            return None;
        }
        let (w0, w1) = (word(b, start), word(b, start + 8));
        let mut i = *guess;
        for _ in 0..n {
            if i >= n {
                i = 0;
            }
            let KeyPattern(p) = &self.patterns[i];
            if p.starts(w0, w1) {
                let end = start + p.len;
                if b.get(end) == Some(&b'"')
                    && (p.len <= 16 || b[start + 16..end] == self.children[i].0.as_bytes()[16..])
                {
                    *guess = i + 1;
                    return Some((i, end));
                }
            }
            i += 1;
        }
        None
    }

    /// The index of the child whose key is `key`.
    fn child(&self, key: &[u8]) -> Option<usize> {
        self.children.iter().position(|(k, _)| k.as_bytes() == key)
    }

    /// Stores `v` in the node's slots, if it has any.
    #[inline(always)]
    fn put<'de>(&self, slots: &mut [Value<'de>], v: Value<'de>) {
        for &s in &self.more_slots {
            slots[s] = v.clone();
        }
        if let Some(slot) = slots.get_mut(self.slot) {
            *slot = v;
        }
    }
}

/// Decodes `line` into `slots` (resized to `n_slots`, every slot reset to `Missing` first).
///
/// Stateless; a caller decoding many records of one source should keep a [`RecordDecoder`].
pub fn decode_into<'de>(
    tree: &PathTree,
    line: &'de [u8],
    slots: &mut Vec<Value<'de>>,
    n_slots: usize,
) -> Result<(), DecodeError> {
    decode_text_into(tree, utf8(line)?, slots, n_slots)
}

/// [`decode_into`] for a line already known to be UTF-8 (a file replay checks a whole chunk
/// at once, which is cheaper than line by line).
pub fn decode_text_into<'de>(
    tree: &PathTree,
    text: &'de str,
    slots: &mut Vec<Value<'de>>,
    n_slots: usize,
) -> Result<(), DecodeError> {
    reset(slots, n_slots);
    Scanner::new(text).record(tree, slots, &mut NoLog).map_err(|f| f.into_error(text.as_bytes()))
}

/// The line as text: checked once for the whole line, so strings are sliced out of it without
/// another check, and invalid UTF-8 is refused wherever it is.
fn utf8(line: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(line)
        .map_err(|e| Fail::new(Syntax::InvalidUtf8, e.valid_up_to()).into_error(line))
}

/// Resizes `slots` to `n_slots`, every slot `Missing`.
fn reset(slots: &mut Vec<Value<'_>>, n_slots: usize) {
    slots.truncate(n_slots);
    slots.iter_mut().for_each(|slot| *slot = Value::Missing);
    if slots.len() < n_slots {
        slots.resize(n_slots, Value::Missing);
    }
}

/// Decodes the records of one source, reading each along the layout of the one before.
///
/// Records of one source are written by one serializer, so they nearly always repeat the same
/// members in the same order with the same spacing: `{"event_time":` then a value, then
/// `,"logged_time":` and so on. The decoder keeps those leads (the raw bytes from the end of one
/// value up to the next value, key and punctuation included) and reads a record by comparing
/// each lead as two words, instead of tokenizing the punctuation and matching the key; the
/// values are read and validated exactly as [`decode_into`] reads them. A record whose bytes
/// leave the layout is read again from the start by the general path, which also learns its
/// layout for the records after it. The result, error or not, is always what [`decode_into`]
/// gives: a lead that matches byte for byte is parsed into the same tokens, keys included.
///
/// A source whose layouts keep changing would pay for failed attempts; after each consecutive
/// miss the decoder waits twice as many records (up to [`MAX_LAYOUT_BACKOFF`]) before trying a
/// layout again.
#[derive(Debug, Default, Clone)]
pub struct RecordDecoder {
    /// The members of the last record the general path read; empty if none was an object.
    layout: Vec<LayoutMember>,
    /// The general path's log of members, turned into `layout`.
    log: Vec<(Range<usize>, Option<usize>)>,
    /// Consecutive records that left the layout.
    misses: u32,
    /// Records still to read by the general path before the layout is tried again.
    backoff: u32,
    /// Records read along the layout.
    layout_reads: u64,
}

/// Most records a [`RecordDecoder`] reads by the general path after consecutive misses, the
/// missed one included.
pub const MAX_LAYOUT_BACKOFF: u32 = 1024;

impl RecordDecoder {
    /// A decoder that has seen no record yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records were read along the layout of the records before.
    pub fn layout_reads(&self) -> u64 {
        self.layout_reads
    }

    /// [`decode_into`], along the layout of the records before.
    pub fn decode_into<'de>(
        &mut self,
        tree: &PathTree,
        line: &'de [u8],
        slots: &mut Vec<Value<'de>>,
        n_slots: usize,
    ) -> Result<(), DecodeError> {
        self.decode_text_into(tree, utf8(line)?, slots, n_slots)
    }

    /// [`decode_text_into`], along the layout of the records before.
    pub fn decode_text_into<'de>(
        &mut self,
        tree: &PathTree,
        text: &'de str,
        slots: &mut Vec<Value<'de>>,
        n_slots: usize,
    ) -> Result<(), DecodeError> {
        reset(slots, n_slots);
        let tried = !self.layout.is_empty() && self.backoff == 0;
        if tried {
            if let Ok(true) = Scanner::new(text).record_in_layout(tree, slots, &self.layout) {
                self.misses = 0;
                self.layout_reads += 1;
                return Ok(());
            }
            reset(slots, n_slots);
            self.misses += 1;
            self.backoff = (1u32 << (self.misses - 1).min(31)).min(MAX_LAYOUT_BACKOFF) - 1;
        } else if self.backoff > 0 {
            self.backoff -= 1;
            return decode_text_into(tree, text, slots, n_slots);
        }
        self.log.clear();
        let decoded = Scanner::new(text).record(tree, slots, &mut self.log);
        if decoded.is_ok() && !self.log.is_empty() {
            let line = text.as_bytes();
            self.layout.clear();
            self.layout.extend(self.log.iter().map(|(lead, child)| LayoutMember {
                lead: Literal::of(&line[lead.clone()]),
                child: child.unwrap_or(NO_CHILD),
            }));
        }
        decoded.map_err(|f| f.into_error(text.as_bytes()))
    }
}

/// One member of a [`RecordDecoder`]'s layout.
#[derive(Debug, Clone)]
struct LayoutMember {
    /// The bytes from the end of the value before (or from the start of the line) through the
    /// `:` after the key.
    lead: Literal,
    /// The root's child the key names, or [`NO_CHILD`] for a member nobody reads.
    child: usize,
}

/// [`LayoutMember::child`] of a member nobody reads.
const NO_CHILD: usize = usize::MAX;

/// A byte string compared against a record in place.
#[derive(Debug, Clone)]
struct Literal {
    words: Words,
    bytes: Box<[u8]>,
}

impl Literal {
    fn of(bytes: &[u8]) -> Self {
        Self { words: Words::of(bytes), bytes: bytes.into() }
    }

    /// Whether `b[at..]` starts with the literal.
    #[inline(always)]
    fn matches_at(&self, b: &[u8], at: usize) -> bool {
        let len = self.words.len;
        if at + 16 <= b.len() && len <= 16 {
            self.words.starts(word(b, at), word(b, at + 8))
        } else {
            b.get(at..at + len) == Some(&self.bytes)
        }
    }
}

/// Where the general path tells the members of an object it read: the range of the bytes that
/// lead to each value, and the child its key names.
trait MemberLog {
    fn member(&mut self, lead: Range<usize>, child: Option<usize>);
}

/// Logs nothing (every object but a [`RecordDecoder`]'s top level).
struct NoLog;

impl MemberLog for NoLog {
    #[inline(always)]
    fn member(&mut self, _: Range<usize>, _: Option<usize>) {}
}

impl MemberLog for Vec<(Range<usize>, Option<usize>)> {
    fn member(&mut self, lead: Range<usize>, child: Option<usize>) {
        self.push((lead, child));
    }
}

/// What went wrong inside the scanner: a [`Syntax`] code and a byte position packed in one
/// word, so every `Result` on the hot path stays small (a two-word error measured 5-10 % slower
/// in the bench). It becomes a [`DecodeError`] (with line and column) only when it escapes.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Fail(NonZeroU64);

impl Fail {
    const POSITION_BITS: u32 = 56;

    #[cold]
    fn new(what: Syntax, at: usize) -> Self {
        let at = (at as u64).min((1 << Self::POSITION_BITS) - 1);
        let code = what as u64 + 1;
        Fail(NonZeroU64::new(code << Self::POSITION_BITS | at).expect("codes start at 1"))
    }

    #[cold]
    fn into_error(self, line: &[u8]) -> DecodeError {
        let what = Syntax::ALL[(self.0.get() >> Self::POSITION_BITS) as usize - 1];
        if what == Syntax::NotAnObject {
            return DecodeError::NotAnObject;
        }
        let at = ((self.0.get() & ((1 << Self::POSITION_BITS) - 1)) as usize).min(line.len());
        let before = &line[..at];
        let row = 1 + before.iter().filter(|&&c| c == b'\n').count();
        let column = 1 + at - before.iter().rposition(|&c| c == b'\n').map_or(0, |p| p + 1);
        DecodeError::MalformedJson(format!("{what} at line {row} column {column}"))
    }
}

/// The kinds of malformation, worded as sonic-rs worded them in dead-letter messages until
/// this scanner replaced it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Syntax {
    Eof,
    ExpectedColon,
    ExpectedArrayCommaOrEnd,
    ExpectedObjectCommaOrEnd,
    ExpectedKeyOrEnd,
    TrailingComma,
    InvalidLiteral,
    InvalidValue,
    InvalidEscape,
    InvalidSurrogate,
    InvalidNumber,
    InfiniteNumber,
    InvalidUtf8,
    ControlCharacter,
    TrailingCharacters,
    TooDeep,
    /// Not malformed: valid JSON that is not an object.
    NotAnObject,
}

impl Syntax {
    /// Every variant, in declaration order (indexed by discriminant).
    const ALL: [Syntax; 17] = [
        Syntax::Eof,
        Syntax::ExpectedColon,
        Syntax::ExpectedArrayCommaOrEnd,
        Syntax::ExpectedObjectCommaOrEnd,
        Syntax::ExpectedKeyOrEnd,
        Syntax::TrailingComma,
        Syntax::InvalidLiteral,
        Syntax::InvalidValue,
        Syntax::InvalidEscape,
        Syntax::InvalidSurrogate,
        Syntax::InvalidNumber,
        Syntax::InfiniteNumber,
        Syntax::InvalidUtf8,
        Syntax::ControlCharacter,
        Syntax::TrailingCharacters,
        Syntax::TooDeep,
        Syntax::NotAnObject,
    ];
}

impl fmt::Display for Syntax {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Syntax::Eof => "EOF while parsing",
            Syntax::ExpectedColon => "Expected this character to be a ':' while parsing",
            Syntax::ExpectedArrayCommaOrEnd => {
                "Expected this character to be either a ',' or a ']' while parsing"
            }
            Syntax::ExpectedObjectCommaOrEnd => {
                "Expected this character to be either a ',' or a '}' while parsing"
            }
            Syntax::ExpectedKeyOrEnd => "Expected this character to be '\"' or '}'",
            Syntax::TrailingComma => "JSON has a comma after the last value in an array or object",
            Syntax::InvalidLiteral => {
                "Invalid literal (`true`, `false`, or a `null`) while parsing"
            }
            Syntax::InvalidValue => "Invalid JSON value",
            Syntax::InvalidEscape => "Invalid escape chars",
            Syntax::InvalidSurrogate => "Invalid surrogate Unicode code point",
            Syntax::InvalidNumber => "Invalid number",
            Syntax::InfiniteNumber => "Float number must be finite, not be Infinity or NaN",
            Syntax::InvalidUtf8 => "Invalid UTF-8 characters in json",
            Syntax::ControlCharacter => "Control character found while parsing a string",
            Syntax::TrailingCharacters => {
                "JSON has non-whitespace trailing characters after the value"
            }
            Syntax::TooDeep => "Objects and arrays nested more than 127 deep",
            Syntax::NotAnObject => "record is not a JSON object",
        })
    }
}

/// A cursor over one record; `text` and `b` are the same bytes.
struct Scanner<'de> {
    text: &'de str,
    b: &'de [u8],
    pos: usize,
}

impl<'de> Scanner<'de> {
    fn new(text: &'de str) -> Self {
        Self { text, b: text.as_bytes(), pos: 0 }
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Flags (high bit of each byte) the bytes of `x` that end a plain run of string: `"`, `\` and
/// control characters. A byte above a flagged one may be flagged wrongly (a borrow), so only
/// the lowest flag is exact.
#[inline(always)]
fn string_stops(x: u64) -> u64 {
    let zero_bytes = |v: u64| v.wrapping_sub(ONES) & !v;
    let quotes = zero_bytes(x ^ (ONES * u64::from(b'"')));
    let backslashes = zero_bytes(x ^ (ONES * u64::from(b'\\')));
    let controls = x.wrapping_sub(ONES * 0x20) & !x;
    (quotes | backslashes | controls) & HIGHS
}

/// Powers of ten that are exact doubles.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

impl<'de> Scanner<'de> {
    #[cold]
    fn fail<T>(&self, what: Syntax, at: usize) -> Result<T, Fail> {
        Err(Fail::new(what, at))
    }

    /// The next byte that is not whitespace, consumed; `None` at the end.
    #[inline(always)]
    fn next_token(&mut self) -> Option<u8> {
        let c = *self.b.get(self.pos)?;
        self.pos += 1;
        // Every JSON whitespace byte is at most a space: one compare settles the usual case
        // of compact records (32 calls a record in the reference workload).
        if c > b' ' {
            return Some(c);
        }
        self.token_after(c)
    }

    /// [`Self::next_token`] once the byte `c`, at most a space, was consumed.
    #[cold]
    fn token_after(&mut self, mut c: u8) -> Option<u8> {
        while matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
            c = *self.b.get(self.pos)?;
            self.pos += 1;
        }
        Some(c)
    }

    /// [`Self::next_token`], where the end of the line is an error.
    #[inline(always)]
    fn expect_token(&mut self) -> Result<u8, Fail> {
        match self.next_token() {
            Some(c) => Ok(c),
            None => self.fail(Syntax::Eof, self.pos),
        }
    }

    fn record(
        &mut self,
        tree: &PathTree,
        slots: &mut [Value<'de>],
        log: &mut impl MemberLog,
    ) -> Result<(), Fail> {
        match self.expect_token()? {
            b'{' => self.object(tree, slots, 1, log)?,
            // Valid JSON that is not an object is `NotAnObject`; anything else (a log line that
            // starts with a number, say `2024-01-01 WARN ...`) is malformed JSON.
            b'[' => {
                self.skip_array(1)?;
                self.end()?;
                return self.fail(Syntax::NotAnObject, 0);
            }
            c => {
                self.scalar(c)?;
                self.end()?;
                return self.fail(Syntax::NotAnObject, 0);
            }
        }
        self.end()
    }

    /// A record read along `layout` (see [`RecordDecoder`]): each member's lead compared as
    /// raw bytes, then its value read as [`Self::object`] reads it. `Ok(false)` as soon as the
    /// record's bytes leave the layout; the slots then hold a partial record and the caller
    /// reads it again from the start. An error is the error [`Self::record`] would give.
    fn record_in_layout(
        &mut self,
        tree: &PathTree,
        slots: &mut [Value<'de>],
        layout: &[LayoutMember],
    ) -> Result<bool, Fail> {
        tree.put(slots, Value::Composite);
        for member in layout {
            if !member.lead.matches_at(self.b, self.pos) {
                return Ok(false);
            }
            self.pos += member.lead.words.len;
            let Some((_, child)) = tree.children.get(member.child) else {
                self.skip(1)?;
                continue;
            };
            // Strings and numbers right after the colon, read here as `value` reads them,
            // without its dispatch and call: they are what records of a source are made of.
            let v = match self.b.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    Value::Str(self.string()?)
                }
                Some(&c @ (b'-' | b'0'..=b'9')) => {
                    self.pos += 1;
                    self.number(c)?
                }
                _ => {
                    self.value(child, slots, 1)?;
                    continue;
                }
            };
            child.put(slots, v);
        }
        if self.next_token() != Some(b'}') {
            return Ok(false);
        }
        self.end().map(|()| true)
    }

    /// Only whitespace may follow the top-level value.
    fn end(&mut self) -> Result<(), Fail> {
        match self.next_token() {
            None => Ok(()),
            Some(_) => self.fail(Syntax::TrailingCharacters, self.pos - 1),
        }
    }

    /// An object whose `{` (at nesting `depth`) was just consumed, read into `node`'s paths;
    /// its members are told to `log`.
    fn object(
        &mut self,
        node: &PathTree,
        slots: &mut [Value<'de>],
        depth: usize,
        log: &mut impl MemberLog,
    ) -> Result<(), Fail> {
        node.put(slots, Value::Composite);
        let mut c = self.expect_token()?;
        if c == b'}' {
            return Ok(());
        }
        let mut guess = 0;
        let mut lead_start = 0;
        loop {
            if c != b'"' {
                return self.fail(Syntax::ExpectedKeyOrEnd, self.pos - 1);
            }
            let start = self.pos;
            let child = match node.child_in_place(self.b, start, &mut guess) {
                Some((child, end)) => {
                    self.pos = end + 1;
                    Some(child)
                }
                None => match self.string()? {
                    // Matching in place is exact for escape-free keys two words from the end.
                    Cow::Borrowed(_) if start + 16 <= self.b.len() => None,
                    key => node.child(key.as_bytes()),
                },
            };
            if self.expect_token()? != b':' {
                return self.fail(Syntax::ExpectedColon, self.pos - 1);
            }
            log.member(lead_start..self.pos, child);
            match child {
                Some(child) => self.value(&node.children[child].1, slots, depth)?,
                None => self.skip(depth)?,
            }
            lead_start = self.pos;
            match self.expect_token()? {
                b',' => {
                    c = self.expect_token()?;
                    if c == b'}' {
                        return self.fail(Syntax::TrailingComma, self.pos - 1);
                    }
                }
                b'}' => return Ok(()),
                _ => return self.fail(Syntax::ExpectedObjectCommaOrEnd, self.pos - 1),
            }
        }
    }

    /// The value of a needed path, inside a container at nesting `depth`.
    #[inline]
    fn value(
        &mut self,
        node: &PathTree,
        slots: &mut [Value<'de>],
        depth: usize,
    ) -> Result<(), Fail> {
        let v = match self.expect_token()? {
            b'{' | b'[' if depth >= MAX_DEPTH => return self.fail(Syntax::TooDeep, self.pos - 1),
            b'{' if !node.children.is_empty() => {
                return self.object(node, slots, depth + 1, &mut NoLog);
            }
            b'{' => {
                self.skip_object(depth + 1)?;
                Value::Composite
            }
            b'[' => {
                self.skip_array(depth + 1)?;
                Value::Composite
            }
            // Strings first: most needed values are, and this skips the dispatch of `scalar`.
            b'"' => Value::Str(self.string()?),
            // A scalar where the job expected an object leaves the nested paths `Missing`.
            c => self.scalar(c)?,
        };
        node.put(slots, v);
        Ok(())
    }

    /// A string, number or literal whose first byte `c` was just consumed.
    #[inline]
    fn scalar(&mut self, c: u8) -> Result<Value<'de>, Fail> {
        Ok(match c {
            b'"' => Value::Str(self.string()?),
            b'-' | b'0'..=b'9' => self.number(c)?,
            b't' => {
                self.literal(b"rue")?;
                Value::Bool(true)
            }
            b'f' => {
                self.literal(b"alse")?;
                Value::Bool(false)
            }
            b'n' => {
                self.literal(b"ull")?;
                Value::Null
            }
            _ => return self.fail(Syntax::InvalidValue, self.pos - 1),
        })
    }

    /// Validates and skips a value nobody reads, inside a container at nesting `depth`.
    fn skip(&mut self, depth: usize) -> Result<(), Fail> {
        match self.expect_token()? {
            b'{' | b'[' if depth >= MAX_DEPTH => self.fail(Syntax::TooDeep, self.pos - 1),
            b'{' => self.skip_object(depth + 1),
            b'[' => self.skip_array(depth + 1),
            b'"' => self.skip_string(),
            c => self.scalar(c).map(drop),
        }
    }

    fn skip_object(&mut self, depth: usize) -> Result<(), Fail> {
        let mut c = self.expect_token()?;
        if c == b'}' {
            return Ok(());
        }
        loop {
            if c != b'"' {
                return self.fail(Syntax::ExpectedKeyOrEnd, self.pos - 1);
            }
            self.skip_string()?;
            if self.expect_token()? != b':' {
                return self.fail(Syntax::ExpectedColon, self.pos - 1);
            }
            self.skip(depth)?;
            match self.expect_token()? {
                b',' => {
                    c = self.expect_token()?;
                    if c == b'}' {
                        return self.fail(Syntax::TrailingComma, self.pos - 1);
                    }
                }
                b'}' => return Ok(()),
                _ => return self.fail(Syntax::ExpectedObjectCommaOrEnd, self.pos - 1),
            }
        }
    }

    fn skip_array(&mut self, depth: usize) -> Result<(), Fail> {
        let first = self.pos;
        if self.next_token() == Some(b']') {
            return Ok(());
        }
        self.pos = first;
        loop {
            self.skip(depth)?;
            match self.expect_token()? {
                b',' => {}
                b']' => return Ok(()),
                _ => return self.fail(Syntax::ExpectedArrayCommaOrEnd, self.pos - 1),
            }
        }
    }

    /// The rest of a literal whose first byte was consumed.
    #[inline]
    fn literal(&mut self, rest: &[u8]) -> Result<(), Fail> {
        let end = self.pos + rest.len();
        match self.b.get(self.pos..end) {
            Some(s) if s == rest => {
                self.pos = end;
                Ok(())
            }
            Some(_) => self.fail(Syntax::InvalidLiteral, self.pos),
            None => self.fail(Syntax::Eof, self.b.len()),
        }
    }

    /// The index of the first `"` or `\` at or after `from`, inside a string; an error if the
    /// line ends first or a control character comes first.
    #[inline(always)]
    fn string_stop(&self, from: usize) -> Result<usize, Fail> {
        let b = self.b;
        let mut i = from;
        while i + 8 <= b.len() {
            let stops = string_stops(word(b, i));
            if stops != 0 {
                i += (stops.trailing_zeros() / 8) as usize;
                return self.stop(i);
            }
            i += 8;
        }
        while i < b.len() {
            let c = b[i];
            if c == b'"' || c == b'\\' || c < 0x20 {
                return self.stop(i);
            }
            i += 1;
        }
        self.fail(Syntax::Eof, b.len())
    }

    #[inline(always)]
    fn stop(&self, i: usize) -> Result<usize, Fail> {
        if self.b[i] < 0x20 {
            return self.fail(Syntax::ControlCharacter, i);
        }
        Ok(i)
    }

    /// A string whose opening quote was consumed: borrowed unless it has escapes.
    #[inline(always)]
    fn string(&mut self) -> Result<Cow<'de, str>, Fail> {
        let start = self.pos;
        let stop = self.string_stop(start)?;
        if self.b[stop] == b'"' {
            self.pos = stop + 1;
            return Ok(Cow::Borrowed(&self.text[start..stop]));
        }
        let mut out = String::with_capacity(stop - start + 16);
        out.push_str(&self.text[start..stop]);
        self.escaped_rest(stop, Some(&mut out))?;
        Ok(Cow::Owned(out))
    }

    /// Validates and skips a string whose opening quote was consumed.
    #[inline]
    fn skip_string(&mut self) -> Result<(), Fail> {
        let stop = self.string_stop(self.pos)?;
        if self.b[stop] == b'"' {
            self.pos = stop + 1;
            return Ok(());
        }
        self.escaped_rest(stop, None)
    }

    /// The rest of a string from its first backslash at `i`, unescaped into `out` if given.
    #[cold]
    fn escaped_rest(&mut self, mut i: usize, mut out: Option<&mut String>) -> Result<(), Fail> {
        loop {
            let (c, next) = self.escape(i + 1)?;
            let stop = self.string_stop(next)?;
            if let Some(out) = out.as_deref_mut() {
                out.push(c);
                out.push_str(&self.text[next..stop]);
            }
            if self.b[stop] == b'"' {
                self.pos = stop + 1;
                return Ok(());
            }
            i = stop;
        }
    }

    /// The character escaped at `b[at..]` (just after a backslash) and the index after it.
    fn escape(&self, at: usize) -> Result<(char, usize), Fail> {
        let Some(&c) = self.b.get(at) else {
            return self.fail(Syntax::Eof, self.b.len());
        };
        let plain = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => return self.unicode_escape(at + 1),
            _ => return self.fail(Syntax::InvalidEscape, at),
        };
        Ok((plain, at + 1))
    }

    /// A `\uXXXX` escape, or a surrogate pair of two, whose hex digits start at `at`.
    fn unicode_escape(&self, at: usize) -> Result<(char, usize), Fail> {
        let first = self.hex4(at)?;
        let (code, next) = match first {
            0xD800..=0xDBFF => {
                if self.b.get(at + 4..at + 6) != Some(b"\\u") {
                    return match self.b.len() < at + 6 {
                        true => self.fail(Syntax::Eof, self.b.len()),
                        false => self.fail(Syntax::InvalidSurrogate, at + 4),
                    };
                }
                let low = self.hex4(at + 6)?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return self.fail(Syntax::InvalidSurrogate, at + 6);
                }
                (0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00), at + 10)
            }
            0xDC00..=0xDFFF => return self.fail(Syntax::InvalidSurrogate, at),
            code => (code, at + 4),
        };
        match char::from_u32(code) {
            Some(c) => Ok((c, next)),
            None => self.fail(Syntax::InvalidSurrogate, at),
        }
    }

    fn hex4(&self, at: usize) -> Result<u32, Fail> {
        let Some(digits) = self.b.get(at..at + 4) else {
            return self.fail(Syntax::Eof, self.b.len());
        };
        let mut v = 0;
        for (i, &d) in digits.iter().enumerate() {
            let Some(h) = char::from(d).to_digit(16) else {
                return self.fail(Syntax::InvalidEscape, at + i);
            };
            v = v * 16 + h;
        }
        Ok(v)
    }

    /// A number whose first byte `first` (`-` or a digit) was just consumed.
    #[inline]
    fn number(&mut self, first: u8) -> Result<Value<'de>, Fail> {
        if let Some(v) = self.plain_number(first) {
            return Ok(v);
        }
        let b = self.b;
        let start = self.pos - 1;
        let negative = first == b'-';
        // The digits (of the significand and exponent), without the sign.
        let digits_start = if negative { self.pos } else { start };
        let mut i = digits_start;
        // Every significand digit, wrapping past 19 digits (then only the slow path reads it).
        let mut mantissa: u64 = 0;
        let push = |mantissa: &mut u64, c: u8| {
            *mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
        };
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while let Some(&c @ b'0'..=b'9') = b.get(i) {
                    push(&mut mantissa, c);
                    i += 1;
                }
            }
            _ => return self.digit_expected(i),
        }
        let int_digits = i - digits_start;
        let mut digits = int_digits;
        let mut exponent: i64 = 0;
        let mut is_float = false;
        if b.get(i) == Some(&b'.') {
            is_float = true;
            i += 1;
            let frac_start = i;
            while let Some(&c @ b'0'..=b'9') = b.get(i) {
                push(&mut mantissa, c);
                i += 1;
            }
            if i == frac_start {
                return self.digit_expected(i);
            }
            digits += i - frac_start;
            exponent = -((i - frac_start) as i64);
        }
        if let Some(b'e' | b'E') = b.get(i) {
            is_float = true;
            i += 1;
            let exp_negative = b.get(i) == Some(&b'-');
            if matches!(b.get(i), Some(b'-' | b'+')) {
                i += 1;
            }
            let exp_start = i;
            let mut e: i64 = 0;
            while let Some(&c @ b'0'..=b'9') = b.get(i) {
                e = (e * 10 + i64::from(c - b'0')).min(1 << 20);
                i += 1;
            }
            if i == exp_start {
                return self.digit_expected(i);
            }
            exponent += if exp_negative { -e } else { e };
        }
        self.pos = i;
        // Up to 19 digits, an integer is exact in `mantissa`; longer ones read as floats.
        if !is_float && int_digits <= 19 {
            return Ok(match (negative, mantissa) {
                // As sonic-rs did.
                (true, 0) => Value::Float(0.0),
                (true, m) if m <= 1 << 63 => Value::Int((m as i64).wrapping_neg()),
                (true, m) => Value::Float(-(m as f64)),
                (false, m) => i64::try_from(m).map_or(Value::Float(m as f64), Value::Int),
            });
        }
        let (magnitude, zero_digits) =
            if digits <= 19 && mantissa < 1 << 53 && (-22..=22).contains(&exponent) {
                // Both operands are exact doubles, so one IEEE operation rounds correctly
                // (Clinger's fast path).
                let m = mantissa as f64;
                let v = if exponent < 0 {
                    m / POW10[exponent.unsigned_abs() as usize]
                } else {
                    m * POW10[exponent as usize]
                };
                (v, mantissa == 0)
            } else {
                // Correctly rounded for any length.
                let text = &self.text[digits_start..i];
                let v = match text.parse::<f64>() {
                    Ok(v) if v.is_finite() => v,
                    _ => return self.fail(Syntax::InfiniteNumber, start),
                };
                let significand = text.split(['e', 'E']).next().unwrap_or_default();
                (v, !significand.bytes().any(|c| matches!(c, b'1'..=b'9')))
            };
        // As sonic-rs did: a negative number written with only zero digits (`-0.0`, `-0e5`)
        // reads as `0.0`, one that underflows (`-1e-400`) as `-0.0`.
        Ok(Value::Float(if negative && !zero_digits { -magnitude } else { magnitude }))
    }

    /// The common case of [`Self::number`] in one short loop: a positive number without
    /// exponent, `[1-9][0-9]*(\.[0-9]+)?`, of at most 15 significant digits (so the
    /// significand is an exact double). `None` leaves the position alone for the general path.
    /// The result is the general path's: an `Int`, or one correctly rounded division.
    #[inline(always)]
    fn plain_number(&mut self, first: u8) -> Option<Value<'de>> {
        const MAX_DIGITS: usize = 15;
        let b = self.b;
        if !matches!(first, b'1'..=b'9') {
            return None;
        }
        let mut mantissa = u64::from(first - b'0');
        let mut i = self.pos;
        // Positions, not digits: the first digit is behind `self.pos`, the point takes one.
        let end = b.len().min(self.pos + MAX_DIGITS - 1);
        while i < end && b[i].is_ascii_digit() {
            mantissa = mantissa * 10 + u64::from(b[i] - b'0');
            i += 1;
        }
        let int_end = i;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let end = b.len().min(self.pos + MAX_DIGITS);
            while i < end && b[i].is_ascii_digit() {
                mantissa = mantissa * 10 + u64::from(b[i] - b'0');
                i += 1;
            }
        }
        // More digits than read, an exponent, or a `.` without digits: the general path.
        if matches!(b.get(i), Some(b'0'..=b'9' | b'e' | b'E' | b'.')) || i == int_end + 1 {
            return None;
        }
        self.pos = i;
        Some(match i - int_end {
            0 => Value::Int(mantissa as i64),
            point_and_digits => Value::Float(mantissa as f64 / POW10[point_and_digits - 1]),
        })
    }

    #[cold]
    fn digit_expected<T>(&self, i: usize) -> Result<T, Fail> {
        match i < self.b.len() {
            true => self.fail(Syntax::InvalidNumber, i),
            false => self.fail(Syntax::Eof, i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn table(paths: &[&str]) -> (FieldTable, PathTree) {
        let mut t = FieldTable::new();
        for p in paths {
            t.slot_for_path(p);
        }
        let tree = PathTree::from_fields(&t);
        (t, tree)
    }

    fn decode<'a>(tree: &PathTree, n: usize, line: &'a [u8]) -> Result<Vec<Value<'a>>, String> {
        let mut slots = Vec::new();
        decode_into(tree, line, &mut slots, n).map(|()| slots).map_err(|e| e.to_string())
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

    proptest! {
        /// Keys matched in place, at lengths on both sides of the two pattern words, with or
        /// without whitespace before the colon, next to keys one byte longer or shorter: each
        /// value lands in its own slot, as serde_json reads the record.
        #[test]
        fn keys_match_in_place_at_any_length(
            len in 1usize..22,
            gaps in prop::collection::vec(prop::sample::select(vec!["", " ", "\t", "\n "]), 3),
            order in 0usize..3,
        ) {
            let key = "abcdefghijklmnopqrstuvwxyz"[..len].to_string();
            let longer = format!("{key}z");
            let shorter = key[..len - 1].to_string();
            let mut fields = [
                format!("\"{key}\"{}:\"v\"", gaps[0]),
                format!("\"{longer}\"{}:1", gaps[1]),
                format!("\"{shorter}\"{}:2", gaps[2]),
            ];
            fields.rotate_left(order);
            // Padding at the end, so that every key is read in place.
            let line = format!("{{{},\"pad\":\"{}\"}}", fields.join(","), "p".repeat(20));
            let paths = [key.as_str(), longer.as_str(), shorter.as_str()];
            let paths: Vec<&str> = paths.into_iter().filter(|p| !p.is_empty()).collect();
            let (t, tree) = table(&paths);
            let slots = decode(&tree, t.len(), line.as_bytes()).unwrap();
            let json: serde_json::Value = serde_json::from_str(&line).unwrap();
            for (i, p) in paths.iter().enumerate() {
                let expected = match &json[*p] {
                    serde_json::Value::String(s) => Value::Str(Cow::Owned(s.clone())),
                    serde_json::Value::Number(n) => Value::Int(n.as_i64().unwrap()),
                    other => panic!("unexpected {other}"),
                };
                prop_assert_eq!(&slots[i], &expected, "{} in {}", p, line);
            }
        }
    }

    #[test]
    fn unescapes_strings_and_keys() {
        let (t, tree) = table(&["k\"ey", "s", "long_key_of_twenty_bytes", "u"]);
        let line =
            br#"{"k\"ey":"a\nb","s":"\u00e9","long_key_of_twenty_bytes":1,"u":"\ud83d\ude00"}"#;
        let mut slots = Vec::new();
        decode_into(&tree, line, &mut slots, t.len()).unwrap();
        assert_eq!(slots[0], Value::Str("a\nb".into()));
        assert_eq!(slots[1], Value::Str("é".into()));
        assert_eq!(slots[2], Value::Int(1));
        assert_eq!(slots[3], Value::Str("😀".into()));
        // A needed key written with escapes, and keys too close to the end to read in place.
        let slots = decode(&tree, t.len(), br#"{"\u0073":"x","u":2}"#).unwrap();
        assert_eq!(slots[1], Value::Str("x".into()));
        assert_eq!(slots[3], Value::Int(2));
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
        assert_eq!(
            decode(b"2024-01-01 00:00:53,775 WARN upstream timed out"),
            Err("malformed_json")
        );
        assert_eq!(decode(b"[1,2] x"), Err("malformed_json"));
        assert_eq!(decode(br#"{"a":1}"#), Ok(()));
        assert_eq!(decode(b"  {\"a\":1}\r"), Ok(()));
    }

    #[test]
    fn fields_nobody_reads_are_validated_too() {
        let (t, tree) = table(&["a"]);
        for bad in [
            &b"{\"a\":1,\"b\":\"\xff\"}"[..],
            br#"{"a":1,"b":"\uzzzz"}"#,
            br#"{"a":1,"b":"\ud800"}"#,
            br#"{"a":1,"b":"\q"}"#,
            br#"{"a":1,"b":[1,]}"#,
            br#"{"a":1,"b":01}"#,
            br#"{"a":1,"b":1e999}"#,
            br#"{"a":1,"b":{"c":tru}}"#,
        ] {
            let text = String::from_utf8_lossy(bad);
            assert!(decode(&tree, t.len(), bad).unwrap_err().starts_with("malformed"), "{text}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_exhausting_the_stack() {
        let (t, tree) = table(&["a"]);
        let nested = |depth: usize| {
            format!(r#"{{"a":1,"b":{}{}}}"#, "[".repeat(depth - 1), "]".repeat(depth - 1))
        };
        assert!(decode(&tree, t.len(), nested(MAX_DEPTH).as_bytes()).is_ok());
        let err = decode(&tree, t.len(), nested(MAX_DEPTH + 1).as_bytes()).unwrap_err();
        assert!(err.contains("nested more than 127 deep"), "{err}");
        assert!(decode(&tree, t.len(), nested(1_000_000).as_bytes()).is_err());
    }

    #[test]
    fn malformed_json_is_reported_on_one_line_with_its_position() {
        let (t, tree) = table(&["a"]);
        let err = decode(&tree, t.len(), br#"{"a":1,"b":"x"#).unwrap_err();
        assert_eq!(err, "malformed JSON: EOF while parsing at line 1 column 14");
        let err = decode(&tree, t.len(), b"{\"a\":1,\n\"b\":x}").unwrap_err();
        assert_eq!(err, "malformed JSON: Invalid JSON value at line 2 column 5");
    }

    #[test]
    fn a_scalar_where_an_object_was_expected_leaves_nested_paths_missing() {
        let (t, tree) = table(&["m.x", "m"]);
        let mut slots = Vec::new();
        decode_into(&tree, br#"{"m":7}"#, &mut slots, t.len()).unwrap();
        assert_eq!(slots, vec![Value::Missing, Value::Int(7)]);
    }

    /// Values for the members of [`layout_record`]: plain and escaped strings, numbers,
    /// literals, nested values, whitespace before a value, and malformed ones.
    const LAYOUT_VALUES: [&str; 18] = [
        r#""plain""#,
        r#""esc\"aped\u00e9""#,
        r#""""#,
        "0",
        "-12.5e3",
        "123456789012345678901",
        "true",
        "null",
        r#"{"x":[1,{"y":2}],"z":"q"}"#,
        "[]",
        " 7",
        "\t\"t\"",
        "01",
        r#""ctl\u{1}""#,
        "tru",
        r#""unterminated"#,
        "1.",
        "{\"x\":}",
    ];

    /// A record of the members `a`, `m`, `skip`, `s` in the given order, with the given values
    /// and the given spacing after each comma.
    fn layout_record(order: &[usize], values: &[usize], gaps: &[&str]) -> String {
        let keys = ["a", "m", "skip", "s"];
        let members: Vec<String> = order
            .iter()
            .zip(values)
            .zip(gaps)
            .map(|((&k, &v), gap)| format!("{gap}\"{}\":{}", keys[k], LAYOUT_VALUES[v]))
            .collect();
        format!("{{{}}}", members.join(","))
    }

    proptest! {
        /// A decoder that reads records along the layout of the ones before gives, record by
        /// record, exactly what the stateless decoder gives: the same slots, or the same error.
        #[test]
        fn reading_along_a_layout_equals_reading_from_scratch(
            records in prop::collection::vec(
                (
                    prop::sample::select(vec![vec![0, 1, 2, 3], vec![0, 1, 2, 3], vec![3, 2, 1, 0], vec![0, 2], vec![0, 1, 2, 3, 0]]),
                    prop::collection::vec(0..LAYOUT_VALUES.len(), 5),
                    prop::collection::vec(prop::sample::select(vec!["", "", "", " ", "\n"]), 5),
                    prop::sample::select(vec!["", "", " ", "x", "}"]),
                ),
                1..40,
            ),
        ) {
            let (t, tree) = table(&["a", "m.x", "m.z", "s"]);
            let mut decoder = RecordDecoder::new();
            for (order, values, gaps, tail) in &records {
                let line = format!("{}{tail}", layout_record(order, values, gaps));
                let mut slots = Vec::new();
                let ours = decoder
                    .decode_into(&tree, line.as_bytes(), &mut slots, t.len())
                    .map(|()| slots)
                    .map_err(|e| e.to_string());
                prop_assert_eq!(ours, decode(&tree, t.len(), line.as_bytes()), "{}", line);
            }
        }
    }

    #[test]
    fn records_of_one_layout_are_read_along_it() {
        let (t, tree) = table(&["a", "m.x", "s"]);
        let mut decoder = RecordDecoder::new();
        for i in 0..100 {
            let mut slots = Vec::new();
            let line = format!(r#"{{"a":"v{i}","m":{{"x":{i}}},"skip":[{i}],"s":{i}.5}}"#);
            decoder.decode_into(&tree, line.as_bytes(), &mut slots, t.len()).unwrap();
            assert_eq!(slots[0], Value::Str(format!("v{i}").into()));
            assert_eq!(slots[1], Value::Int(i));
            assert_eq!(slots[2], Value::Float(i as f64 + 0.5));
        }
        // The first record teaches the layout; every other is read along it.
        assert_eq!(decoder.layout_reads(), 99);
        // A record that leaves the layout is read from scratch, and teaches its own.
        let other = br#"{"s":1,"a":"x"}"#;
        let mut slots = Vec::new();
        decoder.decode_into(&tree, other, &mut slots, t.len()).unwrap();
        assert_eq!((slots[0].clone(), slots[2].clone()), (Value::Str("x".into()), Value::Int(1)));
        decoder.decode_into(&tree, other, &mut slots, t.len()).unwrap();
        assert_eq!(decoder.layout_reads(), 100);
    }

    #[test]
    fn a_source_whose_layout_keeps_changing_backs_off() {
        let (t, tree) = table(&["a"]);
        let mut decoder = RecordDecoder::new();
        // Every record has a key the one before did not have: every attempt misses.
        for i in 0..5000 {
            let mut slots = Vec::new();
            let line = format!(r#"{{"k{i}":1,"a":{i}}}"#);
            decoder.decode_into(&tree, line.as_bytes(), &mut slots, t.len()).unwrap();
            assert_eq!(slots[0], Value::Int(i));
        }
        assert_eq!(decoder.layout_reads(), 0);
        // Attempts after 1, 2, 4, ... records read from scratch, then every 1024: about a dozen
        // attempts, not 5000.
        assert!(decoder.misses <= 16, "{} attempts", decoder.misses);
    }

    /// How the serde-driven sonic-rs decoder this scanner replaced typed a number.
    fn as_sonic_read_it(text: &str) -> Option<Value<'static>> {
        use sonic_rs::JsonNumberTrait;
        let n: sonic_rs::Number = sonic_rs::from_str(text).ok()?;
        Some(match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::Float(u as f64),
            (None, None) => Value::Float(n.as_f64()?),
        })
    }

    fn number_text() -> impl Strategy<Value = String> {
        let exponent = (prop::sample::select(vec!["e", "E-", "e+"]), 0u32..400);
        (
            any::<bool>(),
            "0|[1-9][0-9]{0,24}",
            prop::option::of("[0-9]{1,20}"),
            prop::option::of(exponent),
        )
            .prop_map(|(negative, int, frac, exp)| {
                let sign = if negative { "-" } else { "" };
                let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
                let exp = exp.map(|(e, n)| format!("{e}{n}")).unwrap_or_default();
                format!("{sign}{int}{frac}{exp}")
            })
    }

    #[test]
    fn plain_numbers_at_the_edges_of_the_short_loop_read_as_sonic_rs_read_them() {
        let (t, tree) = table(&["n"]);
        let texts = [
            "7",
            "945.39",
            "945.10",
            "123456789012345",
            "1234567890123456",
            "9007199254740993",
            "12345678901234.5",
            "1234567890123.45",
            "123456789012345.5",
            "1.000000000000001",
            "1.0000000000000001",
            "99999999999999999999",
            "1e5",
            "1.5e3",
            "1.5E-3",
            "10",
            "1.",
            "1.e5",
            "1..5",
            "1.5.",
            "2.0",
        ];
        for text in texts {
            for tail in ["}", ",\"x\":1}"] {
                let line = format!(r#"{{"n":{text}{tail}"#);
                let ours = decode(&tree, t.len(), line.as_bytes()).ok().map(|s| s[0].clone());
                let theirs = as_sonic_read_it(text);
                let same = match (&ours, &theirs) {
                    (Some(Value::Float(a)), Some(Value::Float(b))) => a.to_bits() == b.to_bits(),
                    (a, b) => a == b,
                };
                assert!(same, "{text}: {ours:?} vs {theirs:?}");
            }
        }
    }

    proptest! {
        #[test]
        fn numbers_read_as_sonic_rs_read_them(text in number_text(), f in any::<f64>(), i in any::<i64>()) {
            let (t, tree) = table(&["n"]);
            for text in [text, f.to_string(), format!("{f:e}"), i.to_string()] {
                let line = format!(r#"{{"n":{text}}}"#);
                let ours = decode(&tree, t.len(), line.as_bytes()).ok().map(|s| s[0].clone());
                let same = match (&ours, as_sonic_read_it(&text)) {
                    (Some(Value::Float(a)), Some(Value::Float(b))) => a.to_bits() == b.to_bits(),
                    (a, b) => *a == b,
                };
                prop_assert!(same, "{}: {:?} vs {:?}", text, ours, as_sonic_read_it(&text));
            }
        }

        #[test]
        fn accepts_exactly_what_serde_json_accepts(
            pos in 0usize..RECORD.len(),
            cut in 0usize..4,
            insert in prop::collection::vec(prop::sample::select(PIECES.to_vec()), 0..5),
        ) {
            let mut line = RECORD.as_bytes().to_vec();
            line.splice(pos..(pos + cut).min(line.len()), insert.concat());
            let (t, tree) = table(&["a", "m.x", "s", "k\"ey", "long_key_of_twenty_bytes"]);
            let ours = decode(&tree, t.len(), &line);
            let theirs = serde_json::from_slice::<serde_json::Value>(&line);
            prop_assert_eq!(
                ours.is_ok(),
                theirs.as_ref().is_ok_and(|v| v.is_object()),
                "{}: {:?} / {:?}", String::from_utf8_lossy(&line), ours, theirs
            );
        }
    }

    /// A record touching every part of the grammar, mutated by the property above.
    const RECORD: &str = r#"{"a":"x\n\u00e9\ud83d\ude00","m":{"x":[1,-2.5e3,{"q":null}],"y":true},"skip":["a\"b",false,-0.0,1E-5,{}],"k\"ey":0,"long_key_of_twenty_bytes":"s","s":"t"}"#;
    const PIECES: [&[u8]; 30] = [
        b"\"",
        b"\\",
        b"\\u",
        b"\\ud800",
        b"\\udc00",
        b"\\uzz",
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b" ",
        b"\n",
        // Whitespace and the bytes below a space that are not: `next_token`'s slow path.
        b"\t",
        b"\r",
        b"\x0b",
        b"\x0c",
        b"0",
        b"-",
        b".",
        b"e",
        b"+",
        b"null",
        b"fals",
        b"\xff",
        b"\xc3\xa9",
        b"\x01",
        b"\\x",
        b"1e400",
    ];
}
