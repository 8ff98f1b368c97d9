//! The compiled expression tree and its evaluation over one record.
//!
//! Two mutually recursive walkers share the tree: [`truth`] for nodes that yield a bool (the
//! filter path, never materialising a `Value`) and [`value`] for everything else. Each handles its
//! own kind of node explicitly and defers to the other for the rest, so neither loops.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashSet;

use super::error::EvalError;
use super::temporal::{self, TimeCmpOp, TimeNode};
use crate::value::Value;

/// Read when a slot lies beyond the record, so a short record behaves like missing fields.
static MISSING: Value<'static> = Value::Missing;

/// Above this many strings an `in` list is hashed; below, a linear scan is faster.
const LINEAR_SET_MAX: usize = 8;

/// A record field the expression reads: its slot, and its path for error messages.
#[derive(Clone, Debug)]
pub(super) struct Field {
    pub(super) slot: usize,
    pub(super) name: Box<str>,
}

impl Field {
    /// The slot's value, `Missing` included.
    #[inline]
    pub(super) fn get<'r, 'a>(&self, record: &'r [Value<'a>]) -> &'r Value<'a> {
        record.get(self.slot).unwrap_or(&MISSING)
    }

    /// The slot's value for use in an operation, where a missing field is an error.
    #[inline]
    fn present<'r, 'a>(&self, record: &'r [Value<'a>]) -> Result<&'r Value<'a>, EvalError> {
        match self.get(record) {
            Value::Missing => Err(self.missing()),
            v => Ok(v),
        }
    }

    #[cold]
    fn missing(&self) -> EvalError {
        EvalError::NoSuchField { field: self.name.to_string() }
    }
}

/// A numeric constant in a specialised comparison.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    /// The constant as a `Value`, for the generic comparison helpers.
    fn value(self) -> Value<'static> {
        match self {
            Number::Int(i) => Value::Int(i),
            Number::Float(f) => Value::Float(f),
        }
    }
}

/// The string constants of `field in [...]`.
#[derive(Clone, Debug)]
pub(super) enum StrSet {
    Small(Box<[Box<str>]>),
    Hashed(HashSet<Box<str>>),
}

impl StrSet {
    pub(super) fn new(items: Vec<Box<str>>) -> Self {
        if items.len() <= LINEAR_SET_MAX {
            StrSet::Small(items.into_boxed_slice())
        } else {
            StrSet::Hashed(items.into_iter().collect())
        }
    }

    #[inline]
    fn contains(&self, s: &str) -> bool {
        match self {
            StrSet::Small(items) => items.iter().any(|i| **i == *s),
            StrSet::Hashed(set) => set.contains(s),
        }
    }
}

/// `<`, `<=`, `>`, `>=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    #[inline]
    fn holds_f64(self, l: f64, r: f64) -> bool {
        match self {
            CmpOp::Lt => l < r,
            CmpOp::Le => l <= r,
            CmpOp::Gt => l > r,
            CmpOp::Ge => l >= r,
        }
    }

    #[inline]
    pub(super) fn holds(self, ord: Ordering) -> bool {
        match self {
            CmpOp::Lt => ord == Ordering::Less,
            CmpOp::Le => ord != Ordering::Greater,
            CmpOp::Gt => ord == Ordering::Greater,
            CmpOp::Ge => ord != Ordering::Less,
        }
    }

    /// The operator with its operands swapped: `c < x` is `x > c`.
    pub(super) fn flipped(self) -> Self {
        match self {
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// `+`, `-`, `*`, `/`, `%`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl ArithOp {
    fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
            ArithOp::Rem => "%",
        }
    }
}

/// The string predicates `startsWith`, `endsWith`, `contains`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StrOp {
    StartsWith,
    EndsWith,
    Contains,
}

impl StrOp {
    fn name(self) -> &'static str {
        match self {
            StrOp::StartsWith => "startsWith",
            StrOp::EndsWith => "endsWith",
            StrOp::Contains => "contains",
        }
    }
}

/// The conversion functions `int()`, `double()`, `string()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Conversion {
    Int,
    Double,
    String,
}

/// One node of a compiled expression. The `Field*` variants are the common filter shapes
/// (`field == 'x'`, `field > 100`, `field in ['a', 'b']`) fused into one node each.
#[derive(Clone, Debug)]
pub(super) enum Node {
    Const(Value<'static>),
    Field(Field),
    Has(Field),
    FieldEqStr {
        field: Field,
        value: Box<str>,
        negate: bool,
    },
    FieldEqNum {
        field: Field,
        value: Number,
        negate: bool,
    },
    /// `op` is applied as `field op value`; `swapped` records that it was written
    /// `value op' field`, so errors quote the operands in the order the user wrote them.
    FieldCmpNum {
        field: Field,
        op: CmpOp,
        value: Number,
        swapped: bool,
    },
    FieldInStrs {
        field: Field,
        set: StrSet,
    },
    Not(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Cond(Box<Node>, Box<Node>, Box<Node>),
    Eq {
        lhs: Box<Node>,
        rhs: Box<Node>,
        negate: bool,
    },
    Cmp {
        op: CmpOp,
        lhs: Box<Node>,
        rhs: Box<Node>,
    },
    InConsts {
        lhs: Box<Node>,
        list: Box<[Value<'static>]>,
    },
    InList {
        lhs: Box<Node>,
        list: Box<[Node]>,
    },
    Arith {
        op: ArithOp,
        lhs: Box<Node>,
        rhs: Box<Node>,
    },
    Neg(Box<Node>),
    Size(Box<Node>),
    StrTest {
        op: StrOp,
        target: Box<Node>,
        arg: Box<Node>,
    },
    Convert {
        to: Conversion,
        arg: Box<Node>,
    },
    /// `text.matches(re)` with the pattern compiled once, with the job.
    Matches {
        target: Box<Node>,
        regex: regex::Regex,
    },
    /// A comparison of two timestamps or two durations (the compiler checked the kinds).
    TimeCmp {
        op: TimeCmpOp,
        lhs: Box<TimeNode>,
        rhs: Box<TimeNode>,
    },
    /// `int(timestamp)`: seconds since the epoch.
    EpochSeconds(Box<TimeNode>),
}

const AND: &str = "as an operand of `&&`";
const OR: &str = "as an operand of `||`";
const NOT: &str = "as the operand of `!`";
const CONDITION: &str = "as the condition of `? :`";

/// Evaluates a node that must yield a bool; `context` says where, for the error message.
///
/// The fused filter shapes are decided here, inlined into the caller; everything else goes to
/// [`truth_general`], whose larger stack frame the common filters then never pay for.
#[inline]
pub(super) fn truth(
    node: &Node,
    record: &[Value<'_>],
    context: &'static str,
) -> Result<bool, EvalError> {
    match node {
        Node::FieldEqStr { field, value, negate } => match field.get(record) {
            Value::Str(s) => Ok((**s == **value) != *negate),
            Value::Missing => Err(field.missing()),
            _ => Ok(*negate),
        },
        Node::FieldCmpNum { field, op, value, swapped: _ } => match (field.get(record), value) {
            (Value::Int(l), Number::Int(r)) => Ok(op.holds(l.cmp(r))),
            (Value::Float(l), Number::Float(r)) if !l.is_nan() && !r.is_nan() => {
                Ok(op.holds_f64(*l, *r))
            }
            _ => truth_general(node, record, context),
        },
        Node::FieldInStrs { field, set } => match field.get(record) {
            Value::Str(s) => Ok(set.contains(s)),
            Value::Missing => Err(field.missing()),
            _ => Ok(false),
        },
        Node::Has(field) => Ok(!matches!(field.get(record), Value::Missing)),
        _ => truth_general(node, record, context),
    }
}

#[inline(never)]
fn truth_general(
    node: &Node,
    record: &[Value<'_>],
    context: &'static str,
) -> Result<bool, EvalError> {
    match node {
        // Decided in `truth`, which never sends them here.
        Node::Has(_) | Node::FieldEqStr { .. } | Node::FieldInStrs { .. } => {
            truth(node, record, context)
        }
        Node::FieldEqNum { field, value, negate } => {
            let op = if *negate { "!=" } else { "==" };
            Ok(equal(field.present(record)?, &value.value(), op)? != *negate)
        }
        // The cases `truth` left: mixed int and double, NaN, other types (errors).
        Node::FieldCmpNum { field, op, value, swapped } => {
            let lhs = field.present(record)?;
            if *swapped {
                compare(op.flipped(), &value.value(), lhs)
            } else {
                compare(*op, lhs, &value.value())
            }
        }
        Node::Not(x) => truth(x, record, NOT).map(|b| !b),
        // CEL's commutative logic: an error on one side is absorbed when the other side alone
        // decides the result (`false && error` and `error && false` are both false).
        Node::And(l, r) => match truth(l, record, AND) {
            Ok(false) => Ok(false),
            Ok(true) => truth(r, record, AND),
            Err(e) => match truth(r, record, AND) {
                Ok(false) => Ok(false),
                _ => Err(e),
            },
        },
        Node::Or(l, r) => match truth(l, record, OR) {
            Ok(true) => Ok(true),
            Ok(false) => truth(r, record, OR),
            Err(e) => match truth(r, record, OR) {
                Ok(true) => Ok(true),
                _ => Err(e),
            },
        },
        Node::Cond(c, a, b) => {
            if truth(c, record, CONDITION)? {
                truth(a, record, context)
            } else {
                truth(b, record, context)
            }
        }
        Node::Eq { lhs, rhs, negate } => {
            let op = if *negate { "!=" } else { "==" };
            Ok(equal(&*value(lhs, record)?, &*value(rhs, record)?, op)? != *negate)
        }
        Node::Cmp { op, lhs, rhs } => compare(*op, &*value(lhs, record)?, &*value(rhs, record)?),
        Node::InConsts { lhs, list } => {
            let needle = value(lhs, record)?;
            for item in list.iter() {
                if equal(&needle, item, "in")? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Node::InList { lhs, list } => {
            let needle = value(lhs, record)?;
            // Like CEL, the whole list is evaluated (and may fail) before membership is decided.
            let mut found = false;
            for item in list.iter() {
                let item = value(item, record)?;
                found = found || equal(&needle, &item, "in")?;
            }
            Ok(found)
        }
        Node::StrTest { op, target, arg } => {
            let target = value(target, record)?;
            let arg = value(arg, record)?;
            match (&*target, &*arg) {
                (Value::Str(t), Value::Str(a)) => Ok(match op {
                    StrOp::StartsWith => t.starts_with(&**a),
                    StrOp::EndsWith => t.ends_with(&**a),
                    StrOp::Contains => t.contains(&**a),
                }),
                (t, a) => Err(EvalError::TypeMismatch {
                    op: op.name(),
                    left: t.type_name(),
                    right: a.type_name(),
                }),
            }
        }
        Node::Matches { target, regex } => match &*value(target, record)? {
            Value::Str(s) => Ok(regex.is_match(s)),
            other => {
                Err(EvalError::UnaryTypeMismatch { op: "matches", operand: other.type_name() })
            }
        },
        Node::TimeCmp { op, lhs, rhs } => temporal::compare(*op, lhs, rhs, record),
        Node::Const(_)
        | Node::Field(_)
        | Node::Arith { .. }
        | Node::Neg(_)
        | Node::Size(_)
        | Node::Convert { .. }
        | Node::EpochSeconds(_) => match &*value(node, record)? {
            Value::Bool(b) => Ok(*b),
            other => Err(EvalError::NotBool { context, got: other.type_name() }),
        },
    }
}

/// Evaluates a node to a value, borrowing from the record or the tree where it can.
///
/// Never yields `Missing`: a missing field used here is an error.
pub(super) fn value<'r, 'a>(
    node: &'r Node,
    record: &'r [Value<'a>],
) -> Result<Cow<'r, Value<'a>>, EvalError> {
    Ok(match node {
        Node::Const(v) => Cow::Borrowed(v),
        Node::Field(field) => Cow::Borrowed(field.present(record)?),
        Node::Cond(c, a, b) => {
            return if truth(c, record, CONDITION)? {
                value(a, record)
            } else {
                value(b, record)
            };
        }
        Node::Arith { op, lhs, rhs } => {
            Cow::Owned(arith(*op, &*value(lhs, record)?, &*value(rhs, record)?)?)
        }
        Node::Neg(x) => Cow::Owned(match &*value(x, record)? {
            Value::Int(i) => Value::Int(
                i.checked_neg()
                    .ok_or(EvalError::IntegerOverflow { op: "-" })?,
            ),
            Value::Float(f) => Value::Float(-f),
            other => {
                return Err(EvalError::UnaryTypeMismatch {
                    op: "-",
                    operand: other.type_name(),
                })
            }
        }),
        Node::Size(x) => Cow::Owned(match &*value(x, record)? {
            // CEL's size of a string counts code points, not bytes.
            Value::Str(s) => Value::Int(s.chars().count() as i64),
            other => {
                return Err(EvalError::UnaryTypeMismatch {
                    op: "size",
                    operand: other.type_name(),
                })
            }
        }),
        Node::Convert { to, arg } => return convert(*to, value(arg, record)?),
        Node::EpochSeconds(t) => Cow::Owned(Value::Int(temporal::epoch_seconds(t, record)?)),
        Node::Has(_)
        | Node::FieldEqStr { .. }
        | Node::FieldEqNum { .. }
        | Node::FieldCmpNum { .. }
        | Node::FieldInStrs { .. }
        | Node::Not(_)
        | Node::And(..)
        | Node::Or(..)
        | Node::Eq { .. }
        | Node::Cmp { .. }
        | Node::InConsts { .. }
        | Node::InList { .. }
        | Node::Matches { .. }
        | Node::TimeCmp { .. }
        // Bool nodes use no context of their own (only `Cond` passes one on, handled above).
        | Node::StrTest { .. } => Cow::Owned(Value::Bool(truth(node, record, "")?)),
    })
}

/// CEL equality: numbers compare by value across int and double; different types are unequal.
fn equal(a: &Value<'_>, b: &Value<'_>, op: &'static str) -> Result<bool, EvalError> {
    Ok(match (a, b) {
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Int(i), Value::Float(f)) | (Value::Float(f), Value::Int(i)) => *i as f64 == *f,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Null, Value::Null) => true,
        // The decoder keeps no contents for objects and arrays, so two cannot be compared.
        (Value::Composite, Value::Composite) => {
            return Err(EvalError::TypeMismatch { op, left: a.type_name(), right: b.type_name() })
        }
        _ => false,
    })
}

/// CEL ordering: numbers across int and double, strings by code point, bools `false < true`.
fn compare(op: CmpOp, a: &Value<'_>, b: &Value<'_>) -> Result<bool, EvalError> {
    let ord = match (a, b) {
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Str(x), Value::Str(y)) => x.as_ref().cmp(y.as_ref()),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => {
                x.partial_cmp(&y).ok_or(EvalError::NanComparison { op: op.symbol() })?
            }
            _ => {
                return Err(EvalError::TypeMismatch {
                    op: op.symbol(),
                    left: a.type_name(),
                    right: b.type_name(),
                })
            }
        },
    };
    Ok(op.holds(ord))
}

/// Arithmetic: int with int stays int (checked), any double makes a double, `+` joins strings.
fn arith(op: ArithOp, a: &Value<'_>, b: &Value<'_>) -> Result<Value<'static>, EvalError> {
    let overflow = || EvalError::IntegerOverflow { op: op.symbol() };
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => {
            let (x, y) = (*x, *y);
            let r = match op {
                ArithOp::Add => x.checked_add(y),
                ArithOp::Sub => x.checked_sub(y),
                ArithOp::Mul => x.checked_mul(y),
                ArithOp::Div | ArithOp::Rem if y == 0 => {
                    return Err(EvalError::DivisionByZero { op: op.symbol() })
                }
                ArithOp::Div => x.checked_div(y),
                ArithOp::Rem => x.checked_rem(y),
            };
            r.map(Value::Int).ok_or_else(overflow)
        }
        (Value::Str(x), Value::Str(y)) if op == ArithOp::Add => {
            let mut s = String::with_capacity(x.len() + y.len());
            s.push_str(x);
            s.push_str(y);
            Ok(Value::Str(Cow::Owned(s)))
        }
        _ => match (a.as_f64(), b.as_f64(), op) {
            // CEL defines `%` for integers only.
            (Some(x), Some(y), ArithOp::Add) => Ok(Value::Float(x + y)),
            (Some(x), Some(y), ArithOp::Sub) => Ok(Value::Float(x - y)),
            (Some(x), Some(y), ArithOp::Mul) => Ok(Value::Float(x * y)),
            (Some(x), Some(y), ArithOp::Div) => Ok(Value::Float(x / y)),
            _ => Err(EvalError::TypeMismatch {
                op: op.symbol(),
                left: a.type_name(),
                right: b.type_name(),
            }),
        },
    }
}

/// `int()`, `double()`, `string()`; a string kept as a string stays borrowed.
fn convert<'r, 'a>(to: Conversion, v: Cow<'r, Value<'a>>) -> Result<Cow<'r, Value<'a>>, EvalError> {
    let converted = match (to, &*v) {
        (Conversion::Int, Value::Int(_))
        | (Conversion::Double, Value::Float(_))
        | (Conversion::String, Value::Str(_)) => return Ok(v),
        (Conversion::Int, Value::Float(f)) => {
            // Truncates toward zero like CEL; the range check also rejects NaN.
            const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63
            if !(-LIMIT..LIMIT).contains(f) {
                return Err(EvalError::InvalidConversion { target: "int", value: f.to_string() });
            }
            Value::Int(*f as i64)
        }
        (Conversion::Int, Value::Str(s)) => Value::Int(s.parse().map_err(|_| {
            EvalError::InvalidConversion { target: "int", value: format!("{s:?}") }
        })?),
        (Conversion::Double, Value::Int(i)) => Value::Float(*i as f64),
        (Conversion::Double, Value::Str(s)) => Value::Float(s.parse().map_err(|_| {
            EvalError::InvalidConversion { target: "double", value: format!("{s:?}") }
        })?),
        (Conversion::String, Value::Int(i)) => Value::Str(Cow::Owned(i.to_string())),
        (Conversion::String, Value::Float(f)) => Value::Str(Cow::Owned(f.to_string())),
        (Conversion::String, Value::Bool(b)) => Value::Str(Cow::Owned(b.to_string())),
        (to, other) => {
            return Err(EvalError::UnaryTypeMismatch {
                op: match to {
                    Conversion::Int => "int",
                    Conversion::Double => "double",
                    Conversion::String => "string",
                },
                operand: other.type_name(),
            })
        }
    };
    Ok(Cow::Owned(converted))
}
