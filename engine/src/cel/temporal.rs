//! CEL's `timestamp()` and `duration()`: their values, parsing, arithmetic and comparison.
//!
//! A timestamp or duration never becomes a [`Value`]: the compiler types them statically (the
//! result of `timestamp(...)`, `duration(...)` and `+`/`-` between them), so they only occur
//! where CEL lets them be used (compared with one of their kind, added or subtracted, or turned
//! into epoch seconds by `int()`), and evaluate to a plain integer of nanoseconds. Nothing on
//! the per-record path allocates, and `Value`, which the whole engine matches on, stays as is.

use std::cmp::Ordering;

use super::error::EvalError;
use super::eval::{self, CmpOp, Node};
use crate::time::{days_from_civil, days_in_month};
use crate::value::Value;

const NANOS_PER_SECOND: i128 = 1_000_000_000;
/// 0001-01-01T00:00:00Z, CEL's earliest timestamp, in nanoseconds since the epoch.
const MIN_TIMESTAMP: i128 = -62_135_596_800 * NANOS_PER_SECOND;
/// 9999-12-31T23:59:59.999999999Z, CEL's latest timestamp.
const MAX_TIMESTAMP: i128 = 253_402_300_800 * NANOS_PER_SECOND - 1;
/// CEL's duration range: ±10000 years of 365.25 days.
const MAX_DURATION: i128 = 315_576_000_000 * NANOS_PER_SECOND + 999_999_999;

/// The two kinds of time value, known at compile time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Temporal {
    Timestamp,
    Duration,
}

impl Temporal {
    pub(super) fn name(self) -> &'static str {
        match self {
            Temporal::Timestamp => "timestamp",
            Temporal::Duration => "duration",
        }
    }

    fn in_range(self, nanos: i128) -> bool {
        match self {
            Temporal::Timestamp => (MIN_TIMESTAMP..=MAX_TIMESTAMP).contains(&nanos),
            Temporal::Duration => (-MAX_DURATION..=MAX_DURATION).contains(&nanos),
        }
    }

    /// The kind `lhs op rhs` yields, if CEL defines it: timestamp − timestamp is a duration,
    /// timestamp ± duration a timestamp, duration ± duration a duration.
    pub(super) fn combine(lhs: Self, rhs: Self, subtract: bool) -> Option<Self> {
        use Temporal::{Duration as D, Timestamp as T};
        match (lhs, rhs, subtract) {
            (T, T, true) => Some(D),
            (T, D, _) => Some(T),
            (D, T, false) => Some(T),
            (D, D, _) => Some(D),
            (T, T, false) | (D, T, true) => None,
        }
    }

    /// The value of `timestamp(v)` / `duration(v)` for a string or, for timestamps, an int of
    /// epoch seconds (CEL's two overloads); `Err` says why `v` is not one.
    pub(super) fn of(self, v: &Value<'_>) -> Result<i128, String> {
        match (self, v) {
            (Temporal::Timestamp, Value::Str(s)) => parse_timestamp(s),
            (Temporal::Timestamp, Value::Int(secs)) => Some(i128::from(*secs) * NANOS_PER_SECOND)
                .filter(|n| self.in_range(*n))
                .ok_or_else(|| format!("{secs} seconds since 1970 is outside the years 1 to 9999")),
            (Temporal::Duration, Value::Str(s)) => parse_duration(s),
            (Temporal::Timestamp, other) => Err(format!(
                "timestamp() takes an RFC 3339 string or an int of epoch seconds, not {}",
                other.type_name()
            )),
            (Temporal::Duration, other) => {
                Err(format!("duration() takes a string such as '1h30m', not {}", other.type_name()))
            }
        }
    }
}

/// `==`, `!=`, `<`, `<=`, `>`, `>=` between two timestamps or two durations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TimeCmpOp {
    Eq,
    Ne,
    Order(CmpOp),
}

impl TimeCmpOp {
    fn holds(self, ord: Ordering) -> bool {
        match self {
            TimeCmpOp::Eq => ord == Ordering::Equal,
            TimeCmpOp::Ne => ord != Ordering::Equal,
            TimeCmpOp::Order(op) => op.holds(ord),
        }
    }
}

/// An expression whose value is a timestamp or a duration, in nanoseconds.
#[derive(Clone, Debug)]
pub(super) enum TimeNode {
    /// A literal, parsed when the job is compiled.
    Const(i128),
    /// `timestamp(x)` of a value read per record.
    Of(Temporal, Box<Node>),
    /// `+` or `-`; `kind` is the result's, whose range the result must stay in.
    Arith { subtract: bool, kind: Temporal, lhs: Box<TimeNode>, rhs: Box<TimeNode> },
}

impl TimeNode {
    pub(super) fn is_const(&self) -> bool {
        matches!(self, TimeNode::Const(_))
    }

    /// Folds an operation on constants into a constant; one out of range stays, to fail only
    /// if it is evaluated (as `1 / 0` does).
    pub(super) fn folded(self) -> Self {
        match &self {
            TimeNode::Arith { lhs, rhs, .. } if lhs.is_const() && rhs.is_const() => {
                match nanos(&self, &[]) {
                    Ok(n) => TimeNode::Const(n),
                    Err(_) => self,
                }
            }
            _ => self,
        }
    }
}

/// Evaluates a time expression to nanoseconds (since the epoch, for a timestamp).
pub(super) fn nanos(node: &TimeNode, record: &[Value<'_>]) -> Result<i128, EvalError> {
    match node {
        TimeNode::Const(n) => Ok(*n),
        TimeNode::Of(kind, arg) => {
            let v = eval::value(arg, record)?;
            kind.of(&v).map_err(|_| match &*v {
                Value::Str(s) => {
                    EvalError::InvalidConversion { target: kind.name(), value: format!("{s:?}") }
                }
                Value::Int(i) => {
                    EvalError::InvalidConversion { target: kind.name(), value: i.to_string() }
                }
                other => {
                    EvalError::UnaryTypeMismatch { op: kind.name(), operand: other.type_name() }
                }
            })
        }
        TimeNode::Arith { subtract, kind, lhs, rhs } => {
            let (l, r) = (nanos(lhs, record)?, nanos(rhs, record)?);
            let n = if *subtract { l - r } else { l + r };
            if kind.in_range(n) {
                Ok(n)
            } else {
                Err(EvalError::TimeOutOfRange { op: if *subtract { "-" } else { "+" } })
            }
        }
    }
}

/// `lhs op rhs` for two time values of the same kind.
#[inline]
pub(super) fn compare(
    op: TimeCmpOp,
    lhs: &TimeNode,
    rhs: &TimeNode,
    record: &[Value<'_>],
) -> Result<bool, EvalError> {
    Ok(op.holds(nanos(lhs, record)?.cmp(&nanos(rhs, record)?)))
}

/// `int(t)`: whole seconds since the epoch, rounded down as CEL does.
pub(super) fn epoch_seconds(t: &TimeNode, record: &[Value<'_>]) -> Result<i64, EvalError> {
    let seconds = nanos(t, record)?.div_euclid(NANOS_PER_SECOND);
    Ok(i64::try_from(seconds).expect("timestamps lie within years 1 to 9999"))
}

/// An RFC 3339 timestamp as CEL reads it: `YYYY-MM-DDTHH:MM:SS`, an optional fraction of up to
/// nine digits, and `Z` or `±HH:MM` (`t` and `z` in lower case too); years 1 to 9999.
pub(super) fn parse_timestamp(text: &str) -> Result<i128, String> {
    const LAYOUT: &str = "is not an RFC 3339 timestamp (e.g. 2026-01-01T00:00:00Z, \
                          2026-01-01T02:00:00.5+02:00)";
    let b = text.as_bytes();
    let num = |at: usize, n: usize| -> Option<i128> {
        let digits = b.get(at..at + n)?;
        digits
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| digits.iter().fold(0i128, |v, d| v * 10 + i128::from(d - b'0')))
    };
    let sep = |at: usize, c: &[u8]| b.get(at).is_some_and(|x| c.contains(x));
    let layout = || format!("{text:?} {LAYOUT}");
    let fields = (|| {
        let ok = sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt") && sep(13, b":") && sep(16, b":");
        ok.then_some(())?;
        Some((num(0, 4)?, num(5, 2)?, num(8, 2)?, num(11, 2)?, num(14, 2)?, num(17, 2)?))
    })();
    let (year, month, day, hour, minute, second) = fields.ok_or_else(layout)?;
    let mut at = 19;
    let mut fraction = 0i128;
    if sep(at, b".") {
        at += 1;
        let digits = b[at..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return Err(format!("{text:?} needs 1 to 9 digits of fraction after the '.'"));
        }
        fraction = num(at, digits).expect("digits") * 10i128.pow(9 - digits as u32);
        at += digits;
    }
    let offset_seconds = match b.get(at..) {
        Some([b'Z' | b'z']) => 0,
        Some([sign @ (b'+' | b'-'), _, _, b':', _, _]) => {
            let (h, m) = (num(at + 1, 2).ok_or_else(layout)?, num(at + 4, 2).ok_or_else(layout)?);
            if h > 23 || m > 59 {
                return Err(format!("{text:?} has an out-of-range offset"));
            }
            let seconds = h * 3_600 + m * 60;
            if *sign == b'-' {
                -seconds
            } else {
                seconds
            }
        }
        _ => return Err(layout()),
    };
    let valid_date = (1..=12).contains(&month)
        && day >= 1
        && day <= i128::from(days_in_month(year as i64, month as i64));
    if year == 0 || !valid_date || hour > 23 || minute > 59 || second > 59 {
        return Err(format!("{text:?} has an out-of-range date or time (years 1 to 9999)"));
    }
    let days = i128::from(days_from_civil(year as i64, month as i64, day as i64));
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_seconds;
    let n = seconds * NANOS_PER_SECOND + fraction;
    if !Temporal::Timestamp.in_range(n) {
        return Err(format!("{text:?} falls outside the years 1 to 9999 in UTC"));
    }
    Ok(n)
}

/// A duration as CEL (and Go) writes it: an optional sign, then numbers with units, e.g.
/// `1h30m`, `1.5s`, `-300ms`; units `h`, `m`, `s`, `ms`, `us` (or `µs`), `ns`; `0` alone too.
pub(super) fn parse_duration(text: &str) -> Result<i128, String> {
    let bad = || {
        format!(
            "{text:?} is not a duration: write numbers with units h, m, s, ms, us, ns, \
             e.g. '1h30m', '1.5s' or '-300ms'"
        )
    };
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let whole_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (whole, after) = rest.split_at(whole_len);
        let (fraction, after) = match after.strip_prefix('.') {
            Some(f) => f.split_at(f.bytes().take_while(u8::is_ascii_digit).count()),
            None => ("", after),
        };
        if whole.is_empty() && fraction.is_empty() {
            return Err(bad());
        }
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => NANOS_PER_SECOND,
            "m" => 60 * NANOS_PER_SECOND,
            "h" => 3_600 * NANOS_PER_SECOND,
            _ => return Err(bad()),
        };
        // Digits beyond what can matter are cut, so the arithmetic cannot overflow.
        let too_long = || format!("{text:?} is outside CEL's duration range (±10000 years)");
        if whole.len() > 20 {
            return Err(too_long());
        }
        let whole: i128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| bad())? };
        let fraction = &fraction[..fraction.len().min(18)];
        let frac_nanos = if fraction.is_empty() {
            0
        } else {
            fraction.parse::<i128>().map_err(|_| bad())? * scale / 10i128.pow(fraction.len() as u32)
        };
        total += whole * scale + frac_nanos;
        if total > MAX_DURATION {
            return Err(too_long());
        }
        rest = after;
    }
    Ok(if negative { -total } else { total })
}
