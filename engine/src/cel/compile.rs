//! From cel's parsed AST to the [`Node`] tree: resolves field paths to slots, rejects what
//! Kappa does not evaluate, folds constant subexpressions and fuses the common filter shapes.

use std::borrow::Cow;

use cel::common::ast::{operators, CallExpr, ComprehensionExpr, Expr, IdedExpr, LiteralValue};

use super::error::{CelError, INSTEAD_OF_FUNCTION};
use super::eval::{self, ArithOp, CmpOp, Conversion, Field, Node, Number, StrOp, StrSet};
use super::temporal::{Temporal, TimeCmpOp, TimeNode};
use crate::fields::FieldTable;
use crate::value::Value;

/// CEL standard functions outside Kappa's subset: named as unsupported rather than unknown.
const CEL_STANDARD_FUNCTIONS: &[&str] = &[
    "uint",
    "bytes",
    "dyn",
    "type",
    "max",
    "min",
    "getFullYear",
    "getMonth",
    "getDayOfYear",
    "getDayOfMonth",
    "getDate",
    "getDayOfWeek",
    "getHours",
    "getMinutes",
    "getSeconds",
    "getMilliseconds",
    "value",
    "hasValue",
    "or",
    "orValue",
    "of",
    "none",
    "ofNonZeroValue",
];

/// Why macros and indexing have no place: the decoder keeps no contents of lists and objects.
const INSTEAD_OF_ITERATION: &str = "a record's lists and objects cannot be iterated or indexed; \
    read scalar fields by dotted path (`a.b.c`), test presence with `has(a.b)`, and test a value \
    against several with `x in ['a', 'b']`";
/// The literals and operands there are.
const INSTEAD_OF_LITERAL: &str = "write int, double, string, bool or null literals, or a list \
    literal after `in`";
/// Where a timestamp or duration may appear.
const TIME_USES: &str = "a timestamp or duration can be compared with one of its kind \
    (`timestamp(b) - timestamp(a) > duration('5m')`), added or subtracted, and a timestamp \
    turned into epoch seconds with `int(...)`";

/// Compiles one parsed expression, registering every field it reads in `fields`.
pub(super) fn compile(expr: &IdedExpr, fields: &mut FieldTable) -> Result<Node, CelError> {
    Compiler { fields }.node(expr)
}

struct Compiler<'f> {
    fields: &'f mut FieldTable,
}

impl Compiler<'_> {
    fn node(&mut self, expr: &IdedExpr) -> Result<Node, CelError> {
        match &expr.expr {
            Expr::Literal(lit) => literal(lit).map(Node::Const),
            Expr::Ident(name) => Ok(Node::Field(self.field(vec![name.clone()]))),
            Expr::Select(select) => {
                let mut segments = vec![select.field.clone()];
                let mut operand = &select.operand.expr;
                loop {
                    match operand {
                        Expr::Select(inner) if !inner.test => {
                            segments.push(inner.field.clone());
                            operand = &inner.operand.expr;
                        }
                        Expr::Ident(root) => {
                            segments.push(root.clone());
                            break;
                        }
                        _ => {
                            return Err(unsupported(
                                "selecting a field of a computed value",
                                "only record paths like `a.b.c` can be selected",
                            ))
                        }
                    }
                }
                segments.reverse();
                let field = self.field(segments);
                Ok(if select.test { Node::Has(field) } else { Node::Field(field) })
            }
            Expr::Call(call) => {
                if let Some((kind, _)) = self.temporal(expr)? {
                    return Err(unsupported(
                        format!("a {} used as a value", kind.name()),
                        TIME_USES,
                    ));
                }
                self.call(call)
            }
            Expr::List(_) => Err(unsupported(
                "a list literal outside of `in` (lists may only follow `in`, as in \
                 `x in ['a', 'b']`)",
                INSTEAD_OF_LITERAL,
            )),
            Expr::Map(_) => Err(unsupported("a map literal", INSTEAD_OF_LITERAL)),
            Expr::Struct(s) => Err(unsupported(
                format!("message construction `{}{{...}}`", s.type_name),
                INSTEAD_OF_LITERAL,
            )),
            Expr::Comprehension(c) => {
                Err(unsupported(format!("macro `{}`", macro_name(c)), INSTEAD_OF_ITERATION))
            }
            Expr::Unspecified => Err(unsupported("an empty expression", INSTEAD_OF_LITERAL)),
        }
    }

    fn field(&mut self, segments: Vec<String>) -> Field {
        let name = segments.join(".");
        let slot = match self.fields.derived(&name) {
            Some(slot) => slot,
            None => self.fields.slot_for_segments(segments),
        };
        Field { slot, name: name.into_boxed_str() }
    }

    fn boxed(&mut self, expr: &IdedExpr) -> Result<Box<Node>, CelError> {
        self.node(expr).map(Box::new)
    }

    fn call(&mut self, call: &CallExpr) -> Result<Node, CelError> {
        let name = call.func_name.as_str();
        let args = call.args.as_slice();
        if call.target.is_none() {
            if let Some(node) = self.operator(name, args)? {
                return Ok(node);
            }
        }
        let target = call.target.as_deref();
        if let ("int", None, [x]) = (name, target, args) {
            match self.temporal(x)? {
                Some((Temporal::Timestamp, t)) => return Ok(fold(Node::EpochSeconds(Box::new(t)))),
                Some((Temporal::Duration, _)) => {
                    return Err(unsupported(
                        "`int()` of a duration",
                        "compare durations with each other, e.g. `d > duration('90s')`",
                    ))
                }
                None => {}
            }
        }
        let node = match (name, target, args) {
            ("size", None, [x]) | ("size", Some(x), []) => Node::Size(self.boxed(x)?),
            ("size", ..) => return Err(usage("size", "`size(text)` or `text.size()`")),
            ("startsWith" | "endsWith" | "contains", Some(t), [a]) => Node::StrTest {
                op: match name {
                    "startsWith" => StrOp::StartsWith,
                    "endsWith" => StrOp::EndsWith,
                    _ => StrOp::Contains,
                },
                target: self.boxed(t)?,
                arg: self.boxed(a)?,
            },
            ("startsWith", ..) => return Err(usage("startsWith", "`text.startsWith(prefix)`")),
            ("endsWith", ..) => return Err(usage("endsWith", "`text.endsWith(suffix)`")),
            ("contains", ..) => return Err(usage("contains", "`text.contains(part)`")),
            ("matches", Some(text), [pattern]) | ("matches", None, [text, pattern]) => {
                Node::Matches { target: self.boxed(text)?, regex: self.regex(pattern)? }
            }
            ("matches", ..) => return Err(usage("matches", MATCHES_USAGE)),
            ("int" | "double" | "string", None, [x]) => Node::Convert {
                to: match name {
                    "int" => Conversion::Int,
                    "double" => Conversion::Double,
                    _ => Conversion::String,
                },
                arg: self.boxed(x)?,
            },
            ("int", ..) => return Err(usage("int", "`int(x)`")),
            ("double", ..) => return Err(usage("double", "`double(x)`")),
            ("string", ..) => return Err(usage("string", "`string(x)`")),
            ("has", ..) => return Err(usage("has", "`has(a.b)` with a dotted field path")),
            _ if name.starts_with(['_', '@', '!', '-']) => {
                return Err(unsupported(
                    format!("operator `{name}`"),
                    "operators: == != < <= > >= && || ! in + - * / % and `? :`",
                ))
            }
            _ if CEL_STANDARD_FUNCTIONS.contains(&name) => {
                return Err(unsupported(format!("function `{name}`"), INSTEAD_OF_FUNCTION))
            }
            _ => return Err(CelError::UnknownFunction { name: name.to_string() }),
        };
        Ok(fold(node))
    }

    /// Operators (`_&&_`, `@in`, ...); `None` if `name` is not one Kappa supports.
    fn operator(&mut self, name: &str, args: &[IdedExpr]) -> Result<Option<Node>, CelError> {
        if let Some(op) = time_comparison(name) {
            if let [l, r] = args {
                if let Some(node) = self.time_comparison(op, l, r)? {
                    return Ok(Some(fold(node)));
                }
            }
        }
        let node = match (name, args) {
            (operators::LOGICAL_AND, [l, r]) => Node::And(self.boxed(l)?, self.boxed(r)?),
            (operators::LOGICAL_OR, [l, r]) => Node::Or(self.boxed(l)?, self.boxed(r)?),
            (operators::LOGICAL_NOT, [x]) => Node::Not(self.boxed(x)?),
            (operators::NEGATE, [x]) => Node::Neg(self.boxed(x)?),
            (operators::CONDITIONAL, [c, a, b]) => {
                Node::Cond(self.boxed(c)?, self.boxed(a)?, self.boxed(b)?)
            }
            (operators::EQUALS, [l, r]) => equality(self.node(l)?, self.node(r)?, false),
            (operators::NOT_EQUALS, [l, r]) => equality(self.node(l)?, self.node(r)?, true),
            (operators::LESS, [l, r]) => ordering(CmpOp::Lt, self.node(l)?, self.node(r)?),
            (operators::LESS_EQUALS, [l, r]) => ordering(CmpOp::Le, self.node(l)?, self.node(r)?),
            (operators::GREATER, [l, r]) => ordering(CmpOp::Gt, self.node(l)?, self.node(r)?),
            (operators::GREATER_EQUALS, [l, r]) => {
                ordering(CmpOp::Ge, self.node(l)?, self.node(r)?)
            }
            (operators::ADD, [l, r]) => self.arith(ArithOp::Add, l, r)?,
            (operators::SUBSTRACT, [l, r]) => self.arith(ArithOp::Sub, l, r)?,
            (operators::MULTIPLY, [l, r]) => self.arith(ArithOp::Mul, l, r)?,
            (operators::DIVIDE, [l, r]) => self.arith(ArithOp::Div, l, r)?,
            (operators::MODULO, [l, r]) => self.arith(ArithOp::Rem, l, r)?,
            (operators::IN, [needle, haystack]) => {
                let Expr::List(list) = &haystack.expr else {
                    return Err(unsupported(
                        "`in` with something other than a list literal on the right",
                        "write the list out, as in `x in ['a', 'b']`",
                    ));
                };
                let needle = self.node(needle)?;
                let items =
                    list.elements.iter().map(|e| self.node(e)).collect::<Result<Vec<_>, _>>()?;
                membership(needle, items)
            }
            (operators::INDEX | operators::OPT_INDEX, _) => {
                return Err(unsupported("indexing with `[...]`", INSTEAD_OF_ITERATION))
            }
            (operators::OPT_SELECT, _) => {
                return Err(unsupported(
                    "optional selection `.?`",
                    "test presence with `has(a.b)`, e.g. `has(a.b) ? a.b : 0`",
                ))
            }
            _ => return Ok(None),
        };
        Ok(Some(fold(node)))
    }

    fn arith(&mut self, op: ArithOp, l: &IdedExpr, r: &IdedExpr) -> Result<Node, CelError> {
        Ok(Node::Arith { op, lhs: self.boxed(l)?, rhs: self.boxed(r)? })
    }

    /// The pattern of `matches`, compiled now: it must be a constant string and RE2 syntax.
    fn regex(&mut self, pattern: &IdedExpr) -> Result<regex::Regex, CelError> {
        let Node::Const(Value::Str(pattern)) = self.node(pattern)? else {
            return Err(usage("matches", MATCHES_USAGE));
        };
        regex::Regex::new(&pattern).map_err(|e| CelError::InvalidArgument {
            function: "matches",
            reason: format!("{pattern:?} is not an RE2 regular expression: {e}"),
        })
    }

    /// `expr` as a timestamp or duration, if it is one: `timestamp(...)`, `duration(...)`, or
    /// `+`/`-` with such an operand. `None` (having compiled nothing) for any other expression.
    fn temporal(&mut self, expr: &IdedExpr) -> Result<Option<(Temporal, TimeNode)>, CelError> {
        let Expr::Call(call) = &expr.expr else { return Ok(None) };
        let (name, target, args) =
            (call.func_name.as_str(), call.target.as_deref(), &call.args[..]);
        let (kind, node) = match (name, target, args) {
            ("timestamp" | "duration", None, [arg]) => {
                let kind =
                    if name == "timestamp" { Temporal::Timestamp } else { Temporal::Duration };
                if let Some((inner, node)) = self.temporal(arg)? {
                    // `timestamp(t)` of a timestamp is the timestamp itself, as in CEL.
                    if inner == kind {
                        return Ok(Some((kind, node)));
                    }
                    return Err(unsupported(
                        format!("`{}()` of a {}", kind.name(), inner.name()),
                        TIME_USES,
                    ));
                }
                let node = match self.node(arg)? {
                    Node::Const(v) => TimeNode::Const(kind.of(&v).map_err(|reason| {
                        CelError::InvalidArgument { function: kind.name(), reason }
                    })?),
                    arg => TimeNode::Of(kind, Box::new(arg)),
                };
                (kind, node)
            }
            ("timestamp", ..) => return Err(usage("timestamp", TIMESTAMP_USAGE)),
            ("duration", ..) => return Err(usage("duration", DURATION_USAGE)),
            (operators::ADD | operators::SUBSTRACT, None, [l, r]) => {
                let subtract = name == operators::SUBSTRACT;
                let symbol = if subtract { "-" } else { "+" };
                match (self.temporal(l)?, self.temporal(r)?) {
                    (None, None) => return Ok(None),
                    (Some((a, lhs)), Some((b, rhs))) => {
                        let kind = Temporal::combine(a, b, subtract).ok_or_else(|| {
                            unsupported(
                                format!("`{symbol}` of a {} and a {}", a.name(), b.name()),
                                TIME_USES,
                            )
                        })?;
                        let (lhs, rhs) = (Box::new(lhs), Box::new(rhs));
                        (kind, TimeNode::Arith { subtract, kind, lhs, rhs })
                    }
                    (Some((kind, _)), None) | (None, Some((kind, _))) => {
                        return Err(unsupported(
                            format!(
                                "`{symbol}` of a {} and a value that is not a timestamp or \
                                 duration",
                                kind.name()
                            ),
                            "wrap the other operand, e.g. `timestamp(ts) + duration('5m')` or \
                             `timestamp(b) - timestamp(a)`",
                        ))
                    }
                }
            }
            _ => return Ok(None),
        };
        Ok(Some((kind, node.folded())))
    }

    /// `l op r` between timestamps or durations; `None` when neither side is one.
    fn time_comparison(
        &mut self,
        op: TimeCmpOp,
        l: &IdedExpr,
        r: &IdedExpr,
    ) -> Result<Option<Node>, CelError> {
        match (self.temporal(l)?, self.temporal(r)?) {
            (None, None) => Ok(None),
            (Some((a, lhs)), Some((b, rhs))) if a == b => {
                Ok(Some(Node::TimeCmp { op, lhs: Box::new(lhs), rhs: Box::new(rhs) }))
            }
            (Some((a, _)), Some((b, _))) => Err(unsupported(
                format!("comparing a {} with a {}", a.name(), b.name()),
                "compare timestamps with timestamps and durations with durations",
            )),
            (Some((kind, _)), None) | (None, Some((kind, _))) => Err(unsupported(
                format!("comparing a {} with a value that is not one", kind.name()),
                "convert the other side too, e.g. \
                 `timestamp(ts) > timestamp('2026-01-01T00:00:00Z')` or \
                 `duration(d) < duration('1m')`",
            )),
        }
    }
}

const MATCHES_USAGE: &str = "`text.matches('regex')` or `matches(text, 'regex')`, the pattern \
    a string literal in RE2 syntax (it is compiled once, with the job)";
const TIMESTAMP_USAGE: &str = "`timestamp(field)` or `timestamp('2026-01-01T00:00:00Z')`";
const DURATION_USAGE: &str = "`duration(field)` or `duration('1h30m')`";

/// The comparison operator `name` is, as one between timestamps or durations.
fn time_comparison(name: &str) -> Option<TimeCmpOp> {
    Some(match name {
        operators::EQUALS => TimeCmpOp::Eq,
        operators::NOT_EQUALS => TimeCmpOp::Ne,
        operators::LESS => TimeCmpOp::Order(CmpOp::Lt),
        operators::LESS_EQUALS => TimeCmpOp::Order(CmpOp::Le),
        operators::GREATER => TimeCmpOp::Order(CmpOp::Gt),
        operators::GREATER_EQUALS => TimeCmpOp::Order(CmpOp::Ge),
        _ => return None,
    })
}

/// `==` / `!=`, fused with a constant operand when the other side is a field.
fn equality(lhs: Node, rhs: Node, negate: bool) -> Node {
    match (lhs, rhs) {
        (Node::Field(field), Node::Const(c)) | (Node::Const(c), Node::Field(field)) => match c {
            Value::Str(s) => {
                Node::FieldEqStr { field, value: s.into_owned().into_boxed_str(), negate }
            }
            Value::Int(i) => Node::FieldEqNum { field, value: Number::Int(i), negate },
            Value::Float(f) => Node::FieldEqNum { field, value: Number::Float(f), negate },
            c => Node::Eq {
                lhs: Box::new(Node::Field(field)),
                rhs: Box::new(Node::Const(c)),
                negate,
            },
        },
        (lhs, rhs) => Node::Eq { lhs: Box::new(lhs), rhs: Box::new(rhs), negate },
    }
}

/// `<`, `<=`, `>`, `>=`, fused with a numeric constant when the other side is a field.
fn ordering(op: CmpOp, lhs: Node, rhs: Node) -> Node {
    let number = |c: &Value<'_>| match c {
        Value::Int(i) => Some(Number::Int(*i)),
        Value::Float(f) => Some(Number::Float(*f)),
        _ => None,
    };
    match (lhs, rhs) {
        (Node::Field(field), Node::Const(c)) if number(&c).is_some() => Node::FieldCmpNum {
            field,
            op,
            value: number(&c).expect("checked by the guard"),
            swapped: false,
        },
        (Node::Const(c), Node::Field(field)) if number(&c).is_some() => Node::FieldCmpNum {
            field,
            op: op.flipped(),
            value: number(&c).expect("checked by the guard"),
            swapped: true,
        },
        (lhs, rhs) => Node::Cmp { op, lhs: Box::new(lhs), rhs: Box::new(rhs) },
    }
}

/// `x in [...]`: a string set for a field against string constants, a constant list, or a list
/// evaluated per record.
fn membership(needle: Node, items: Vec<Node>) -> Node {
    if !items.iter().all(|n| matches!(n, Node::Const(_))) {
        return Node::InList { lhs: Box::new(needle), list: items.into_boxed_slice() };
    }
    let consts: Vec<Value<'static>> = items
        .into_iter()
        .map(|n| match n {
            Node::Const(v) => v,
            _ => unreachable!("all items are constants"),
        })
        .collect();
    match needle {
        Node::Field(field) if consts.iter().all(|c| matches!(c, Value::Str(_))) => {
            let strings = consts
                .into_iter()
                .map(|c| match c {
                    Value::Str(s) => s.into_owned().into_boxed_str(),
                    _ => unreachable!("all items are strings"),
                })
                .collect();
            Node::FieldInStrs { field, set: StrSet::new(strings) }
        }
        needle => Node::InConsts { lhs: Box::new(needle), list: consts.into_boxed_slice() },
    }
}

/// Replaces a node whose operands are all constants by its value, when it has one; a constant
/// expression that fails (`1 / 0`) stays, to fail at run time only if it is reached.
fn fold(node: Node) -> Node {
    let is_const = |n: &Node| matches!(n, Node::Const(_));
    let constant = match &node {
        Node::Not(x)
        | Node::Neg(x)
        | Node::Size(x)
        | Node::Convert { arg: x, .. }
        | Node::Matches { target: x, .. } => is_const(x),
        Node::TimeCmp { lhs, rhs, .. } => lhs.is_const() && rhs.is_const(),
        Node::EpochSeconds(t) => t.is_const(),
        Node::And(l, r)
        | Node::Or(l, r)
        | Node::Eq { lhs: l, rhs: r, .. }
        | Node::Cmp { lhs: l, rhs: r, .. }
        | Node::Arith { lhs: l, rhs: r, .. }
        | Node::StrTest { target: l, arg: r, .. } => is_const(l) && is_const(r),
        Node::Cond(c, a, b) => is_const(c) && is_const(a) && is_const(b),
        Node::InConsts { lhs, .. } => is_const(lhs),
        _ => false,
    };
    if !constant {
        return node;
    }
    match eval::value(&node, &[]) {
        Ok(v) => Node::Const(v.into_owned().into_owned()),
        Err(_) => node,
    }
}

fn literal(lit: &LiteralValue) -> Result<Value<'static>, CelError> {
    Ok(match lit {
        LiteralValue::Boolean(b) => Value::Bool(*b.inner()),
        LiteralValue::Int(i) => Value::Int(*i.inner()),
        LiteralValue::UInt(u) => Value::Int(i64::try_from(*u.inner()).map_err(|_| {
            unsupported(
                format!("uint literal `{}u` beyond the int range", u.inner()),
                "uint literals are read as ints, up to 9223372036854775807",
            )
        })?),
        LiteralValue::Double(d) => Value::Float(*d.inner()),
        LiteralValue::String(s) => Value::Str(Cow::Owned(s.inner().to_string())),
        LiteralValue::Null => Value::Null,
        LiteralValue::Bytes(_) => return Err(unsupported("a bytes literal", INSTEAD_OF_LITERAL)),
    })
}

/// Which macro the parser expanded into `c`, recognised by the accumulator it starts from.
fn macro_name(c: &ComprehensionExpr) -> &'static str {
    match &c.accu_init.expr {
        Expr::Literal(LiteralValue::Boolean(b)) if *b.inner() => "all",
        Expr::Literal(LiteralValue::Boolean(_)) => "exists",
        Expr::Literal(LiteralValue::Int(_)) => "exists_one",
        Expr::List(_) => match &c.loop_step.expr {
            Expr::Call(step) if step.func_name == operators::CONDITIONAL => "filter",
            _ => "map",
        },
        _ => "comprehension",
    }
}

fn unsupported(construct: impl Into<String>, instead: &'static str) -> CelError {
    CelError::Unsupported { construct: construct.into(), instead }
}

fn usage(function: &'static str, usage: &'static str) -> CelError {
    CelError::Usage { function, usage }
}
