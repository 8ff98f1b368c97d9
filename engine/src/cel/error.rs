//! What can go wrong compiling an expression (a job definition error) or evaluating it against
//! one record (a data error the caller counts or logs per record).

use thiserror::Error;

/// The functions of the subset (documented in `subset.md`), as error messages list them.
macro_rules! supported_functions {
    () => {
        "size, startsWith, endsWith, contains, matches, int, double, string, timestamp, duration \
         and the macro has"
    };
}
/// The functions of the subset, listed.
pub(super) const SUPPORTED_FUNCTIONS: &str = supported_functions!();
/// The alternative an error offers to a function outside the subset.
pub(super) const INSTEAD_OF_FUNCTION: &str =
    concat!("supported functions: ", supported_functions!());

/// An expression that cannot become a [`Program`](super::Program); the job definition must change.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CelError {
    /// The text is not valid CEL.
    #[error("cannot parse CEL expression `{expression}`: {message}")]
    Parse {
        /// The expression as written.
        expression: String,
        /// The parser's explanation, with line and column.
        message: String,
    },
    /// Valid CEL, but outside the subset Kappa compiles.
    #[error("{construct} is not supported in kappa expressions; {instead}")]
    Unsupported {
        /// What was found, e.g. "macro `map`" or "a map literal".
        construct: String,
        /// What the subset offers instead.
        instead: &'static str,
    },
    /// A function that is neither in Kappa's subset nor a CEL standard function.
    #[error("unknown function `{name}`; kappa expressions support {SUPPORTED_FUNCTIONS}")]
    UnknownFunction {
        /// The function name as written.
        name: String,
    },
    /// A supported function called with the wrong number of arguments or as the wrong kind of call.
    #[error("wrong use of `{function}`: write it as {usage}")]
    Usage {
        /// The function name.
        function: &'static str,
        /// How the function is called, e.g. "`text.startsWith(prefix)`".
        usage: &'static str,
    },
    /// A literal argument that the function refuses: a regular expression that does not compile,
    /// a timestamp or duration that does not parse.
    #[error("invalid argument to `{function}`: {reason}")]
    InvalidArgument {
        /// The function name.
        function: &'static str,
        /// What is wrong with the argument, quoting it.
        reason: String,
    },
}

/// Why one record could not be evaluated; the expression itself is fine.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum EvalError {
    /// The record lacks a field the expression uses outside of `has()`.
    #[error("the record has no field `{field}`")]
    NoSuchField {
        /// The dotted field path.
        field: String,
    },
    /// A binary operator or function got operand types it is not defined for.
    #[error("`{op}` is not defined for {left} and {right}")]
    TypeMismatch {
        /// The operator or function, e.g. `<` or `startsWith`.
        op: &'static str,
        /// Type of the left operand (or the receiver).
        left: &'static str,
        /// Type of the right operand (or the argument).
        right: &'static str,
    },
    /// A unary operator or one-argument function got an operand type it is not defined for.
    #[error("`{op}` is not defined for {operand}")]
    UnaryTypeMismatch {
        /// The operator or function, e.g. `-` or `size`.
        op: &'static str,
        /// Type of the operand.
        operand: &'static str,
    },
    /// A logical operator, a condition or a filter got something other than a bool.
    #[error("expected a bool {context}, got {got}")]
    NotBool {
        /// Where the bool was expected, e.g. "as an operand of `&&`".
        context: &'static str,
        /// Type of the value found.
        got: &'static str,
    },
    /// Integer `/` or `%` by zero.
    #[error("division by zero in `{op}`")]
    DivisionByZero {
        /// `/` or `%`.
        op: &'static str,
    },
    /// Integer arithmetic left the 64-bit range.
    #[error("integer overflow in `{op}`")]
    IntegerOverflow {
        /// The operator or function.
        op: &'static str,
    },
    /// An ordering comparison with NaN (CEL has no order for NaN).
    #[error("NaN cannot be compared with `{op}`")]
    NanComparison {
        /// The comparison operator.
        op: &'static str,
    },
    /// `int()`, `double()`, `timestamp()` or `duration()` of a value that is not one (a string
    /// that is not a number, an RFC 3339 timestamp or a duration; a double out of range).
    #[error("cannot convert {value} to {target}")]
    InvalidConversion {
        /// `int`, `double`, `timestamp` or `duration`.
        target: &'static str,
        /// The value, quoted if it is a string.
        value: String,
    },
    /// Timestamp or duration arithmetic left CEL's range (years 1 to 9999, ±10000 years).
    #[error("`{op}` leaves the range of timestamps (years 1 to 9999) or durations (±10000 years)")]
    TimeOutOfRange {
        /// `+` or `-`.
        op: &'static str,
    },
}
