//! Field values taken from a record: what filters, derived fields, group keys and aggregates see.

use std::borrow::Cow;

/// One field of one record, borrowed from the input line where possible.
///
/// `Missing` (the path does not exist) differs from `Null` (the record says `null`): CEL's
/// `has()` is false only for `Missing`; aggregates skip both, like SQL skips NULL.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Value<'a> {
    /// The path does not exist in the record.
    #[default]
    Missing,
    /// JSON `null`.
    Null,
    /// JSON boolean.
    Bool(bool),
    /// JSON number without fraction or exponent that fits an `i64`.
    Int(i64),
    /// Any other JSON number.
    Float(f64),
    /// JSON string (unescaped).
    Str(Cow<'a, str>),
    /// A JSON array or object (present, but not a scalar).
    Composite,
}

impl Value<'_> {
    /// The value as a number, if it is one.
    #[inline]
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Whether the record has no usable value here (missing or null).
    #[inline]
    pub fn is_absent(&self) -> bool {
        matches!(self, Value::Missing | Value::Null)
    }

    /// A short name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Missing => "missing",
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "double",
            Value::Str(_) => "string",
            Value::Composite => "object or array",
        }
    }

    /// Detaches the value from the input buffer.
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Missing => Value::Missing,
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(b),
            Value::Int(i) => Value::Int(i),
            Value::Float(f) => Value::Float(f),
            Value::Str(s) => Value::Str(Cow::Owned(s.into_owned())),
            Value::Composite => Value::Composite,
        }
    }
}
