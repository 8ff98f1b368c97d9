//! CEL expressions of a job (the filter, derived fields, aggregate `where` clauses), compiled once
//! per job into a tree that evaluates directly over a decoded record (`&[Value]` indexed by slot).
//!
//! The `cel` crate parses, so the syntax is CEL's; evaluation is ours. cel's interpreter needs a
//! `Context` holding every variable as a boxed value, per record, and walks the parse tree looking
//! functions up by name. `examples/cel_bench.rs` measured `status != 'test'` at ~90 ns per record
//! through it with the contexts built beforehand and ~270 ns binding the variables per record,
//! against ~7 ns here (`status == 'fail' && amount > 100.0`: ~160 / ~350 vs ~13 ns), while the
//! engine's whole budget per record is 300–500 ns (2–3 M records/s per core).
//!
//! ```
//! use kappa_engine::cel;
//! use kappa_engine::fields::FieldTable;
//! use kappa_engine::value::Value;
//!
//! let mut fields = FieldTable::new();
//! let filter = cel::compile("status == 'fail' && amount > 100.0", &mut fields)?;
//! let mut record = vec![Value::Missing; fields.len()];
//! record[fields.slot_for_path("status")] = Value::Str("fail".into());
//! record[fields.slot_for_path("amount")] = Value::Int(250);
//! assert!(filter.eval_bool(&record)?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The subset
//!
#![doc = include_str!("subset.md")]
//!
//! Where Kappa differs from cel 0.13's interpreter, on purpose: numbers mix freely, as JSON does
//! not tell `100` from `100.0` (`1 == 1.0` is true and `1 + 0.5` is `1.5`; cel says false and
//! rejects the sum); uint literals are ints; `string(true)` is `"true"`; `size` counts code points
//! as the CEL spec says (cel 0.13 counts bytes); `-true` and `int(NaN)` are errors. `%` stays
//! integer-only as in CEL. An expression that is only a field path yields the field's value,
//! `Value::Missing` included, while any operation on a missing field is
//! [`EvalError::NoSuchField`].
//!
//! # Timestamps, durations and regular expressions
//!
//! Timestamps and durations are typed when the expression is compiled (`temporal.rs`): they
//! never become a [`Value`], evaluate to nanoseconds in an `i128`, and meet only what CEL
//! defines for them, so `timestamp(ts) > 0` is refused with the job rather than failing on
//! every record. `matches` compiles its pattern with the job; the `regex` crate gives RE2's
//! syntax and its linear-time matching. Neither allocates per record (regex keeps its match
//! caches per thread).

mod compile;
mod error;
mod eval;
mod temporal;

#[cfg(test)]
mod tests;

pub use error::{CelError, EvalError};

use crate::fields::FieldTable;
use crate::value::Value;

/// A compiled expression; cheap to share between workers (`Send + Sync`; the only interior
/// state is the match caches inside `matches`' compiled regex, which are per thread).
#[derive(Clone, Debug)]
pub struct Program {
    source: String,
    root: eval::Node,
}

/// Compiles `source`, giving every field it reads a slot in `fields`.
///
/// Declare derived fields in `fields` before compiling expressions that read them, so that their
/// names resolve to the derived slot rather than to a record path.
pub fn compile(source: &str, fields: &mut FieldTable) -> Result<Program, CelError> {
    let parsed = cel::parser::Parser::new()
        .parse(source)
        .map_err(|e| CelError::Parse { expression: source.to_string(), message: e.to_string() })?;
    Ok(Program { source: source.to_string(), root: compile::compile(&parsed, fields)? })
}

impl Program {
    /// Evaluates the expression over `record`, indexed by the slots of the compile-time
    /// [`FieldTable`]; slots beyond the record's end read as missing.
    ///
    /// A field or string from the record is returned borrowed; computed and constant strings
    /// are owned (an allocation, only when the result itself is such a string).
    pub fn eval<'a>(&self, record: &[Value<'a>]) -> Result<Value<'a>, EvalError> {
        if let eval::Node::Field(field) = &self.root {
            return Ok(field.get(record).clone());
        }
        eval::value(&self.root, record).map(std::borrow::Cow::into_owned)
    }

    /// Evaluates a filter or `where` clause; a result that is not a bool is an error.
    pub fn eval_bool(&self, record: &[Value<'_>]) -> Result<bool, EvalError> {
        eval::truth(&self.root, record, "as the result of the expression")
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }
}
