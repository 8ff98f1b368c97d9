use std::borrow::Cow;

use proptest::prelude::*;

use super::eval::{CmpOp, Node};
use super::*;

/// The record most tests evaluate against.
fn sample() -> Vec<(&'static str, Value<'static>)> {
    vec![
        ("status", Value::Str("fail".into())),
        ("amount", Value::Float(250.5)),
        ("count", Value::Int(3)),
        ("flag", Value::Bool(true)),
        ("note", Value::Null),
        ("user.name", Value::Str("ana".into())),
        ("user.tags", Value::Composite),
    ]
}

/// A record with `set` in the slots of `fields` (declaring them if needed), the rest missing.
fn record(fields: &mut FieldTable, set: &[(&str, Value<'static>)]) -> Vec<Value<'static>> {
    let slots: Vec<usize> = set.iter().map(|(p, _)| fields.slot_for_path(p)).collect();
    let mut rec = vec![Value::Missing; fields.len()];
    for (slot, (_, v)) in slots.into_iter().zip(set) {
        rec[slot] = v.clone();
    }
    rec
}

fn program(src: &str) -> (Program, FieldTable) {
    let mut fields = FieldTable::new();
    let p = compile(src, &mut fields).unwrap_or_else(|e| panic!("{src}: {e}"));
    (p, fields)
}

fn eval_with(src: &str, set: &[(&str, Value<'static>)]) -> Result<Value<'static>, EvalError> {
    let (p, mut fields) = program(src);
    let rec = record(&mut fields, set);
    p.eval(&rec).map(Value::into_owned)
}

fn ok(src: &str) -> Value<'static> {
    eval_with(src, &sample()).unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn err(src: &str) -> EvalError {
    match eval_with(src, &sample()) {
        Ok(v) => panic!("{src}: expected an error, got {v:?}"),
        Err(e) => e,
    }
}

fn truth(src: &str) -> bool {
    let (p, mut fields) = program(src);
    let rec = record(&mut fields, &sample());
    p.eval_bool(&rec).unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn compile_err(src: &str) -> CelError {
    match compile(src, &mut FieldTable::new()) {
        Ok(p) => panic!("{src}: expected a compile error, got {p:?}"),
        Err(e) => e,
    }
}

fn s(text: &str) -> Value<'static> {
    Value::Str(Cow::Owned(text.to_string()))
}

#[test]
fn fields_resolve_to_slots_of_nested_paths_and_derived_names() {
    let mut fields = FieldTable::new();
    let big = fields.declare_derived("big");
    let p = compile("user.name == 'ana' && big && has(user.age)", &mut fields).unwrap();
    assert_eq!(
        fields.slots()[1],
        crate::fields::SlotSource::Path(vec!["user".into(), "name".into()])
    );
    assert_eq!(
        fields.slots()[2],
        crate::fields::SlotSource::Path(vec!["user".into(), "age".into()])
    );
    let mut rec = vec![Value::Missing; fields.len()];
    rec[1] = Value::Str("ana".into());
    rec[big] = Value::Bool(true);
    assert!(!p.eval_bool(&rec).unwrap());
    rec[2] = Value::Int(40);
    assert!(p.eval_bool(&rec).unwrap());
    assert_eq!(ok("user.name"), s("ana"));
    assert_eq!(p.source(), "user.name == 'ana' && big && has(user.age)");
}

#[test]
fn literals_have_their_types_and_uint_is_int() {
    assert_eq!(ok("7"), Value::Int(7));
    assert_eq!(ok("7u"), Value::Int(7));
    assert_eq!(ok("-7"), Value::Int(-7));
    assert_eq!(ok("2.5"), Value::Float(2.5));
    assert_eq!(ok("'x'"), s("x"));
    assert_eq!(ok("\"y\""), s("y"));
    assert_eq!(ok("true"), Value::Bool(true));
    assert_eq!(ok("null"), Value::Null);
    assert!(matches!(compile_err("18446744073709551615u"), CelError::Unsupported { .. }));
}

#[test]
fn comparisons_follow_cel_with_numbers_mixing() {
    for (src, want) in [
        ("count == 3", true),
        ("count == 3.0", true),
        ("3.0 == count", true),
        ("count != 3", false),
        ("count < 3.5", true),
        ("count <= 3", true),
        ("count > 2", true),
        ("count >= 4", false),
        ("amount > 250", true),
        ("amount >= 250.5", true),
        ("amount < count", false),
        ("status == 'fail'", true),
        ("'fail' == status", true),
        ("status != 'test'", true),
        ("status < 'g'", true),
        ("'b' <= 'a'", false),
        ("user.name >= 'ana'", true),
        ("false < true", true),
        ("flag == true", true),
        ("flag > false", true),
        ("status == 1", false),
        ("status != 1", true),
        ("count == '3'", false),
        ("note == null", true),
        ("null == null", true),
        ("note != 0", true),
        ("user.tags == 'x'", false),
    ] {
        assert_eq!(truth(src), want, "{src}");
    }
}

#[test]
fn ordering_across_types_is_a_type_mismatch() {
    assert_eq!(
        err("status < 1"),
        EvalError::TypeMismatch { op: "<", left: "string", right: "int" }
    );
    assert_eq!(
        err("note >= 1.5"),
        EvalError::TypeMismatch { op: ">=", left: "null", right: "double" }
    );
    assert!(matches!(err("flag <= 1"), EvalError::TypeMismatch { .. }));
    assert!(matches!(err("null < null"), EvalError::TypeMismatch { .. }));
    assert!(matches!(err("user.tags == user.tags"), EvalError::TypeMismatch { .. }));
    assert_eq!(err("0.0 / 0.0 < 1.0"), EvalError::NanComparison { op: "<" });
    assert_eq!(err("status > 'a' + 1").to_string(), "`+` is not defined for string and int");
}

#[test]
fn logic_short_circuits_and_absorbs_errors_like_cel() {
    assert!(!truth("false && missing == 1"));
    assert!(!truth("missing == 1 && false"));
    assert!(truth("true || missing == 1"));
    assert!(truth("missing == 1 || true"));
    assert!(!truth("count > 5 && status == 1"));
    assert!(truth("!(count > 5) || 1 / 0 == 1"));
    assert!(!truth("!flag"));
    assert_eq!(err("missing == 1 && true"), EvalError::NoSuchField { field: "missing".into() });
    assert!(matches!(err("false || missing == 1"), EvalError::NoSuchField { .. }));
    assert_eq!(
        err("1 && true"),
        EvalError::NotBool { context: "as an operand of `&&`", got: "int" }
    );
    assert!(!truth("1 && false"));
    assert!(matches!(err("!count"), EvalError::NotBool { .. }));
    // A non-bool operand is an error, absorbed like any other.
    assert!(truth("status || true"));
}

#[test]
fn in_tests_membership_in_list_literals() {
    assert!(truth("status in ['ok', 'fail']"));
    assert!(!truth("status in ['ok']"));
    assert!(!truth("status in []"));
    assert!(truth("count in [1, 2, 3]"));
    assert!(truth("count in [3.0]"));
    assert!(truth("status in [1, 'fail']"));
    assert!(!truth("count in ['3']"));
    assert!(truth("'ana' in [status, user.name]"));
    assert!(truth("status + '!' in ['fail!']"));
    let many = (0..20).map(|i| format!("'s{i}'")).collect::<Vec<_>>().join(", ");
    assert!(!truth(&format!("status in [{many}]")));
    assert!(truth(&format!("status in [{many}, 'fail']")));
    assert_eq!(err("missing in ['a']"), EvalError::NoSuchField { field: "missing".into() });
    assert!(matches!(err("status in [missing]"), EvalError::NoSuchField { .. }));
    assert!(matches!(compile_err("status in user.tags"), CelError::Unsupported { .. }));
}

#[test]
fn arithmetic_keeps_ints_checked_and_mixes_into_doubles() {
    assert_eq!(ok("count + 2"), Value::Int(5));
    assert_eq!(ok("count - 5"), Value::Int(-2));
    assert_eq!(ok("count * 2.0"), Value::Float(6.0));
    assert_eq!(ok("count / 2"), Value::Int(1));
    assert_eq!(ok("-7 / 2"), Value::Int(-3));
    assert_eq!(ok("count % 2"), Value::Int(1));
    assert_eq!(ok("-7 % 3"), Value::Int(-1));
    assert_eq!(ok("amount - 0.5"), Value::Float(250.0));
    assert_eq!(ok("amount / 0.0"), Value::Float(f64::INFINITY));
    assert_eq!(ok("-count"), Value::Int(-3));
    assert_eq!(ok("-amount"), Value::Float(-250.5));
    assert_eq!(ok("status + '!'"), s("fail!"));
    assert_eq!(err("9223372036854775807 + count"), EvalError::IntegerOverflow { op: "+" });
    assert_eq!(err("-(-9223372036854775808)"), EvalError::IntegerOverflow { op: "-" });
    assert_eq!(err("-9223372036854775808 / -1"), EvalError::IntegerOverflow { op: "/" });
    assert_eq!(err("count / 0"), EvalError::DivisionByZero { op: "/" });
    assert_eq!(err("count % 0"), EvalError::DivisionByZero { op: "%" });
    assert_eq!(
        err("amount % 2"),
        EvalError::TypeMismatch { op: "%", left: "double", right: "int" }
    );
    assert!(matches!(err("status - 'a'"), EvalError::TypeMismatch { .. }));
    assert!(matches!(err("flag + 1"), EvalError::TypeMismatch { .. }));
    assert!(matches!(err("user.tags * 2"), EvalError::TypeMismatch { .. }));
    assert_eq!(err("-status"), EvalError::UnaryTypeMismatch { op: "-", operand: "string" });
}

#[test]
fn ternary_evaluates_only_the_chosen_branch() {
    assert_eq!(ok("count > 2 ? 'big' : 'small'"), s("big"));
    assert_eq!(ok("has(user.age) ? user.age : 0"), Value::Int(0));
    assert_eq!(ok("flag ? 1 : 1 / 0"), Value::Int(1));
    assert!(truth("count > 2 ? flag : missing"));
    assert_eq!(
        err("count ? 1 : 2"),
        EvalError::NotBool { context: "as the condition of `? :`", got: "int" }
    );
}

#[test]
fn has_is_false_only_for_missing_fields() {
    assert!(truth("has(user.name)"));
    assert!(!truth("has(user.age)"));
    assert!(truth("has(user.tags)"));
    assert!(!truth("has(a.b.c)"));
    let (p, mut fields) = program("has(meta.note)");
    let rec = record(&mut fields, &[("meta.note", Value::Null)]);
    assert!(p.eval_bool(&rec).unwrap());
    // `has` needs a field selection; CEL rejects `has(a)` when parsing.
    assert!(matches!(compile_err("has(status)"), CelError::Parse { .. }));
}

#[test]
fn functions_of_the_subset() {
    assert_eq!(ok("size('héllo')"), Value::Int(5));
    assert_eq!(ok("status.size()"), Value::Int(4));
    assert_eq!(err("size(count)"), EvalError::UnaryTypeMismatch { op: "size", operand: "int" });
    assert!(truth("status.startsWith('fa')"));
    assert!(truth("status.endsWith('il')"));
    assert!(truth("user.name.contains('n')"));
    assert!(!truth("status.contains('x')"));
    assert_eq!(
        err("status.startsWith(1)"),
        EvalError::TypeMismatch { op: "startsWith", left: "string", right: "int" }
    );
    assert_eq!(ok("int('42')"), Value::Int(42));
    assert_eq!(ok("int(2.9)"), Value::Int(2));
    assert_eq!(ok("int(-2.9)"), Value::Int(-2));
    assert_eq!(ok("int(count)"), Value::Int(3));
    assert_eq!(
        err("int('4x')"),
        EvalError::InvalidConversion { target: "int", value: "\"4x\"".into() }
    );
    assert!(matches!(err("int(1e19)"), EvalError::InvalidConversion { .. }));
    assert!(matches!(err("int(0.0 / 0.0)"), EvalError::InvalidConversion { .. }));
    assert!(matches!(err("int(flag)"), EvalError::UnaryTypeMismatch { .. }));
    assert_eq!(ok("double('1.5')"), Value::Float(1.5));
    assert_eq!(ok("double(count)"), Value::Float(3.0));
    assert!(matches!(err("double('x')"), EvalError::InvalidConversion { .. }));
    assert_eq!(ok("string(count)"), s("3"));
    assert_eq!(ok("string(amount)"), s("250.5"));
    assert_eq!(ok("string(flag)"), s("true"));
    assert_eq!(ok("string(status)"), s("fail"));
    assert!(matches!(err("string(note)"), EvalError::UnaryTypeMismatch { .. }));
}

#[test]
fn constructs_outside_the_subset_are_named_at_compile_time() {
    assert_eq!(
        compile_err("items.map(x, x * 2)").to_string(),
        "macro `map` is not supported in kappa expressions; a record's lists and objects cannot \
         be iterated or indexed; read scalar fields by dotted path (`a.b.c`), test presence with \
         `has(a.b)`, and test a value against several with `x in ['a', 'b']`"
    );
    for (src, construct) in [
        ("items.exists(x, x > 1)", "macro `exists`"),
        ("items.all(x, x > 1)", "macro `all`"),
        ("items.exists_one(x, x > 1)", "macro `exists_one`"),
        ("items.filter(x, x > 1)", "macro `filter`"),
        ("getHours(ts) > 3", "function `getHours`"),
        ("items[0] == 1", "indexing with `[...]`"),
        ("{'a': 1}", "a map literal"),
        ("b'x'", "a bytes literal"),
    ] {
        match compile_err(src) {
            CelError::Unsupported { construct: found, instead } => {
                assert_eq!(found, construct, "{src}");
                assert!(!instead.is_empty(), "{src}: no alternative offered");
            }
            other => panic!("{src}: {other:?}"),
        }
    }
    // A CEL function outside the subset and an unknown one both list what there is instead.
    for src in ["type(status) == string", "frobnicate(status)"] {
        let message = compile_err(src).to_string();
        assert!(
            message.contains(
                "size, startsWith, endsWith, contains, matches, int, double, string, timestamp, \
                 duration and the macro has"
            ),
            "{src}: {message}"
        );
    }
    assert!(matches!(compile_err("[1] == [1]"), CelError::Unsupported { .. }));
    assert!(matches!(compile_err("(a + b).c"), CelError::Unsupported { .. }));
    assert_eq!(
        compile_err("frobnicate(status)"),
        CelError::UnknownFunction { name: "frobnicate".into() }
    );
    assert_eq!(
        compile_err("status.startsWith()"),
        CelError::Usage { function: "startsWith", usage: "`text.startsWith(prefix)`" }
    );
    assert!(matches!(compile_err("int(1, 2)"), CelError::Usage { .. }));
    let parse = compile_err("status ==");
    assert!(matches!(parse, CelError::Parse { .. }));
    assert!(parse.to_string().contains("status =="), "{parse}");
}

#[test]
fn matches_searches_with_re2_syntax_in_both_call_forms() {
    assert!(truth("status.matches('^fa')"));
    assert!(truth("matches(status, 'ai')"), "a search, not a whole-string match, as in CEL");
    assert!(!truth("status.matches('^ai')"));
    assert!(truth("user.name.matches('^[a-z]{3}$')"));
    assert!(truth(r"'ab12'.matches(r'\d+$')"));
    assert!(truth("'héllo'.matches('^h.llo$')"), "`.` is one code point");
    assert!(truth("status.matches('(?i)FAIL')"));
    assert!(truth("!(status.matches('x')) && status.matches('f')"));
    assert_eq!(
        err("count.matches('1')"),
        EvalError::UnaryTypeMismatch { op: "matches", operand: "int" }
    );
    assert_eq!(err("missing.matches('1')"), EvalError::NoSuchField { field: "missing".into() });
    // The pattern is compiled with the job: a constant, folded or written out.
    assert!(truth("status.matches('^f' + 'a')"));
    assert!(!truth("'fail'.matches('x')"));
    let (p, _) = program("'fail'.matches('^f')");
    assert!(matches!(p.root, Node::Const(Value::Bool(true))), "{:?}", p.root);
    for src in ["status.matches(status)", "matches(status)", "status.matches('a', 'b')"] {
        assert!(matches!(compile_err(src), CelError::Usage { function: "matches", .. }), "{src}");
    }
    let bad = compile_err("status.matches('(unclosed')");
    assert!(matches!(bad, CelError::InvalidArgument { function: "matches", .. }), "{bad:?}");
    assert!(bad.to_string().contains("\"(unclosed\" is not an RE2 regular expression"), "{bad}");
    // RE2 has no backreferences or lookaround, and neither has the regex crate.
    assert!(matches!(compile_err(r"status.matches(r'(a)\1')"), CelError::InvalidArgument { .. }));
    assert!(matches!(compile_err("status.matches('(?=a)')"), CelError::InvalidArgument { .. }));
}

/// A record with RFC 3339 strings `a` and `b` (`b` 90 seconds after `a`) and a duration string.
fn times() -> Vec<(&'static str, Value<'static>)> {
    vec![
        ("a", s("2026-03-01T12:00:00Z")),
        ("b", s("2026-03-01T13:01:30.25+01:00")),
        ("epoch", Value::Int(1_772_366_400)),
        ("timeout", s("1m30s")),
        ("status", s("fail")),
    ]
}

fn time_truth(src: &str) -> bool {
    let (p, mut fields) = program(src);
    let rec = record(&mut fields, &times());
    p.eval_bool(&rec).unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn time_err(src: &str) -> EvalError {
    let (p, mut fields) = program(src);
    let rec = record(&mut fields, &times());
    match p.eval(&rec) {
        Ok(v) => panic!("{src}: expected an error, got {v:?}"),
        Err(e) => e,
    }
}

#[test]
fn timestamps_and_durations_compare_and_combine() {
    assert!(time_truth("timestamp(a) > timestamp('2026-01-01T00:00:00Z')"));
    assert!(time_truth("timestamp(a) == timestamp('2026-03-01T13:00:00+01:00')"));
    assert!(time_truth("timestamp(a) != timestamp(b)"));
    assert!(time_truth("timestamp(b) - timestamp(a) > duration('90s')"));
    assert!(time_truth("timestamp(b) - timestamp(a) == duration('1m30s250ms')"));
    assert!(time_truth("timestamp(b) - timestamp(a) < duration('1.5m') + duration('1s')"));
    assert!(time_truth("timestamp(a) - timestamp(b) == duration('-90.25s')"));
    assert!(time_truth("timestamp(a) + duration('1h') > timestamp(b)"));
    assert!(time_truth("duration('1h') + timestamp(a) - duration('2h') < timestamp(a)"));
    assert!(time_truth("timestamp(epoch) == timestamp(a)"), "an int is epoch seconds");
    assert!(time_truth("duration(timeout) == duration('90s')"));
    assert!(time_truth("timestamp(timestamp(a)) == timestamp(a)"));
    assert!(time_truth("status == 'fail' && timestamp(b) - timestamp(a) >= duration('1m')"));
    assert!(time_truth(
        "timestamp('2026-01-01T00:00:00.000000001Z') > timestamp('2026-01-01T00:00:00Z')"
    ));
    assert!(time_truth(
        "duration('1us') == duration('1000ns') && duration('1µs') == duration('1us')"
    ));
    assert_eq!(eval_with("int(timestamp(a))", &times()), Ok(Value::Int(1_772_366_400)));
    assert_eq!(ok("int(timestamp('1969-12-31T23:59:59.5Z'))"), Value::Int(-1), "rounded down");
    // Literals are parsed once, with the job; whole constant comparisons fold.
    let (p, _) = program("timestamp('2026-01-01T00:00:00Z') < timestamp('2026-01-02T00:00:00Z')");
    assert!(matches!(p.root, Node::Const(Value::Bool(true))), "{:?}", p.root);
    let (p, _) = program("timestamp(a) > timestamp('2026-01-01T00:00:00Z') + duration('1h')");
    let Node::TimeCmp { rhs, .. } = &p.root else { panic!("{:?}", p.root) };
    assert!(rhs.is_const(), "{rhs:?}");
}

#[test]
fn timestamp_and_duration_errors() {
    assert_eq!(
        time_err("timestamp(status) > timestamp(a)"),
        EvalError::InvalidConversion { target: "timestamp", value: "\"fail\"".into() }
    );
    assert_eq!(
        time_err("duration(status) > duration('1s')"),
        EvalError::InvalidConversion { target: "duration", value: "\"fail\"".into() }
    );
    assert_eq!(
        time_err("timestamp(missing) > timestamp(a)"),
        EvalError::NoSuchField { field: "missing".into() }
    );
    assert_eq!(
        time_err("timestamp(a) + duration('87600000h') > timestamp(a)"),
        EvalError::TimeOutOfRange { op: "+" }
    );
    // Literals that do not parse, and kinds that do not mix, are compile errors.
    for (src, function) in [
        ("timestamp(a) > timestamp('2026-01-01')", "timestamp"),
        ("timestamp(a) > timestamp('2026-02-30T00:00:00Z')", "timestamp"),
        ("timestamp(a) > timestamp('2026-01-01T00:00:00')", "timestamp"),
        ("timestamp(a) > timestamp(1.5)", "timestamp"),
        ("duration(d) > duration('5')", "duration"),
        ("duration(d) > duration('1d')", "duration"),
        ("duration(d) > duration(5)", "duration"),
    ] {
        match compile_err(src) {
            CelError::InvalidArgument { function: f, reason } => {
                assert_eq!(f, function, "{src}: {reason}")
            }
            other => panic!("{src}: {other:?}"),
        }
    }
    for (src, construct) in [
        ("timestamp(a) > 0", "comparing a timestamp with a value that is not one"),
        ("timestamp(a) > duration('1s')", "comparing a timestamp with a duration"),
        ("timestamp(a) + timestamp(b) > timestamp(a)", "`+` of a timestamp and a timestamp"),
        (
            "timestamp(a) + 60 > timestamp(b)",
            "`+` of a timestamp and a value that is not a timestamp or duration",
        ),
        ("timestamp(b) - timestamp(a)", "a duration used as a value"),
        ("timestamp(a)", "a timestamp used as a value"),
        ("string(timestamp(a))", "a timestamp used as a value"),
        ("timestamp(a) in [timestamp(b)]", "a timestamp used as a value"),
        ("int(duration('1s')) > 0", "`int()` of a duration"),
        ("duration(timestamp(a)) > duration('1s')", "`duration()` of a timestamp"),
    ] {
        match compile_err(src) {
            CelError::Unsupported { construct: found, .. } => assert_eq!(found, construct, "{src}"),
            other => panic!("{src}: {other:?}"),
        }
    }
    assert!(matches!(compile_err("timestamp()"), CelError::Usage { function: "timestamp", .. }));
    assert!(matches!(compile_err("a.duration()"), CelError::Usage { function: "duration", .. }));
}

#[test]
fn timestamp_and_duration_literals_parse_like_cel() {
    use super::temporal::{parse_duration, parse_timestamp};
    let secs = |n: i128| n * 1_000_000_000;
    assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Ok(0));
    assert_eq!(parse_timestamp("1970-01-01t01:00:00.5z"), Ok(secs(3_600) + 500_000_000));
    assert_eq!(parse_timestamp("1970-01-01T01:00:00+01:00"), Ok(0));
    assert_eq!(parse_timestamp("1969-12-31T19:00:00-05:00"), Ok(0));
    assert_eq!(parse_timestamp("0001-01-01T00:00:00Z"), Ok(secs(-62_135_596_800)));
    assert_eq!(parse_timestamp("9999-12-31T23:59:59.999999999Z"), Ok(secs(253_402_300_800) - 1));
    assert_eq!(parse_timestamp("2024-02-29T00:00:00Z"), Ok(secs(1_709_164_800)));
    for bad in [
        "",
        "2024-02-30T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "0000-01-01T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T00:00:60Z",
        "2024-01-01T00:00:00",
        "2024-01-01 00:00:00Z",
        "2024-01-01T00:00:00.Z",
        "2024-01-01T00:00:00.1234567891Z",
        "2024-01-01T00:00:00+0100",
        "2024-01-01T00:00:00+24:00",
        "0001-01-01T00:00:00+01:00",
        "2024-01-01T00:00:00Zjunk",
    ] {
        assert!(parse_timestamp(bad).is_err(), "{bad:?} was accepted");
    }
    assert_eq!(parse_duration("0"), Ok(0));
    assert_eq!(parse_duration("1h30m"), Ok(secs(5_400)));
    assert_eq!(parse_duration("1.5h"), Ok(secs(5_400)));
    assert_eq!(parse_duration("-1.5s"), Ok(-1_500_000_000));
    assert_eq!(parse_duration("+.5ms"), Ok(500_000));
    assert_eq!(parse_duration("1s1ms1us1ns"), Ok(1_001_001_001));
    assert_eq!(parse_duration("315576000000s"), Ok(secs(315_576_000_000)));
    for bad in ["", "-", "5", "1d", "1 h", "h", ".s", "1h-5m", "315576000001s", "1e3s"] {
        assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn filter_results_must_be_bool() {
    let (p, mut fields) = program("count + 1");
    let rec = record(&mut fields, &sample());
    assert_eq!(
        p.eval_bool(&rec),
        Err(EvalError::NotBool { context: "as the result of the expression", got: "int" })
    );
}

#[test]
fn missing_fields_fail_operations_but_pass_through_bare() {
    assert_eq!(err("missing == 'x'"), EvalError::NoSuchField { field: "missing".into() });
    assert_eq!(err("user.age > 1"), EvalError::NoSuchField { field: "user.age".into() });
    assert_eq!(err("user.age + 1").to_string(), "the record has no field `user.age`");
    assert_eq!(ok("user.age"), Value::Missing);
    // A record shorter than the field table reads as missing.
    let (p, _) = program("status != 'x'");
    assert!(matches!(p.eval_bool(&[]), Err(EvalError::NoSuchField { .. })));
}

#[test]
fn strings_from_the_record_stay_borrowed() {
    let line = String::from("fail");
    let (p, mut fields) = program("status");
    let slot = fields.slot_for_path("status");
    let rec = vec![Value::Str(Cow::Borrowed(line.as_str()))];
    assert_eq!(slot, 0);
    assert!(matches!(p.eval(&rec), Ok(Value::Str(Cow::Borrowed(_)))));
    let p = compile("flag ? string(status) : 'x'", &mut fields).unwrap();
    let rec = vec![Value::Str(Cow::Borrowed(line.as_str())), Value::Bool(true)];
    assert!(matches!(p.eval(&rec), Ok(Value::Str(Cow::Borrowed(_)))));
    let p = compile("status + '!'", &mut fields).unwrap();
    assert!(matches!(p.eval(&rec), Ok(Value::Str(Cow::Owned(ref o))) if o == "fail!"));
}

#[test]
fn common_filter_shapes_compile_to_fused_nodes() {
    let root = |src: &str| program(src).0.root;
    assert!(matches!(root("status != 'test'"), Node::FieldEqStr { negate: true, .. }));
    assert!(matches!(root("'x' == status"), Node::FieldEqStr { negate: false, .. }));
    assert!(matches!(root("code == 500"), Node::FieldEqNum { .. }));
    assert!(matches!(root("100 < amount"), Node::FieldCmpNum { op: CmpOp::Gt, .. }));
    assert!(matches!(root("tx in ['a', 'b']"), Node::FieldInStrs { .. }));
    assert!(matches!(root("tx in ['a', 1]"), Node::InConsts { .. }));
}

#[test]
fn fused_nodes_agree_with_the_general_operators() {
    let values = [
        Value::Missing,
        Value::Null,
        Value::Bool(true),
        Value::Int(100),
        Value::Int(101),
        Value::Float(100.0),
        Value::Float(f64::NAN),
        Value::Str("100".into()),
        Value::Str("x".into()),
        Value::Composite,
    ];
    // `(true ? v : v)` is the same field, but not a shape the compiler fuses.
    for fused in [
        "v == 'x'",
        "'x' != v",
        "v > 100",
        "100.0 >= v",
        "v < 100.5",
        "v == 100",
        "v != 100.0",
        "v in ['x', 'y']",
        "v in [100, 'x']",
    ] {
        let general = fused.replace('v', "(true ? v : v)");
        let mut fields = FieldTable::new();
        let f = compile(fused, &mut fields).unwrap();
        let g = compile(&general, &mut fields).unwrap();
        assert!(
            !matches!(
                g.root,
                Node::FieldEqStr { .. }
                    | Node::FieldEqNum { .. }
                    | Node::FieldCmpNum { .. }
                    | Node::FieldInStrs { .. }
            ),
            "{general}"
        );
        for v in &values {
            let rec = record(&mut fields, &[("v", v.clone())]);
            assert_eq!(f.eval_bool(&rec), g.eval_bool(&rec), "{fused} vs {general} on {v:?}");
        }
    }
}

#[test]
fn constant_subexpressions_are_folded() {
    let root = |src: &str| program(src).0.root;
    assert!(matches!(root("1 + 2 * 3 == 7"), Node::Const(Value::Bool(true))));
    assert!(matches!(root("'a' + 'b'"), Node::Const(Value::Str(ref s)) if s == "ab"));
    assert!(matches!(root("size('abc') > 2 ? 1 : 2"), Node::Const(Value::Int(1))));
    // A failing constant stays, to fail only if it is reached.
    assert!(matches!(root("1 / 0"), Node::Arith { .. }));
    assert!(!truth("false && 1 / 0 == 1"));
}

#[test]
fn programs_are_shareable_between_workers() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Program>();
}

// ---- Agreement with cel's own interpreter on random expressions --------------------------------

/// A generated expression, rendered fully parenthesised for both evaluators.
#[derive(Clone, Debug)]
enum Gen {
    Var(&'static str),
    Int(i64),
    Dbl(f64),
    Str(&'static str),
    Bool(bool),
    Null,
    Unary(&'static str, Box<Gen>),
    Binary(&'static str, Box<Gen>, Box<Gen>),
    Cond(Box<Gen>, Box<Gen>, Box<Gen>),
    In(Box<Gen>, Vec<Gen>),
    Call(&'static str, Box<Gen>),
    Method(&'static str, Box<Gen>, Box<Gen>),
}

const INT: u8 = 1;
const DBL: u8 = 2;
const STR: u8 = 4;
const BOOL: u8 = 8;
const NULL: u8 = 16;

const VARS: [(&str, u8); 7] =
    [("i", INT), ("j", INT), ("d", DBL), ("e", DBL), ("s", STR), ("t", STR), ("b", BOOL)];

impl Gen {
    fn render(&self) -> String {
        match self {
            Gen::Var(v) => (*v).to_string(),
            Gen::Int(i) => format!("({i})"),
            Gen::Dbl(d) => format!("({d:?})"),
            Gen::Str(s) => format!("'{s}'"),
            Gen::Bool(b) => b.to_string(),
            Gen::Null => "null".into(),
            Gen::Unary(op, x) => format!("{op}({})", x.render()),
            Gen::Binary(op, l, r) => format!("({} {op} {})", l.render(), r.render()),
            Gen::Cond(c, a, b) => format!("({} ? {} : {})", c.render(), a.render(), b.render()),
            Gen::In(x, list) => {
                let items: Vec<String> = list.iter().map(Gen::render).collect();
                format!("({} in [{}])", x.render(), items.join(", "))
            }
            Gen::Call(f, x) => format!("{f}({})", x.render()),
            Gen::Method(m, t, a) => format!("{}.{m}({})", t.render(), a.render()),
        }
    }

    /// The types the expression may have when it succeeds (a static over-approximation).
    fn types(&self) -> u8 {
        let numeric = |l: u8, r: u8| {
            let mut t = 0;
            if l & INT != 0 && r & INT != 0 {
                t |= INT;
            }
            if (l | r) & DBL != 0 && l & (INT | DBL) != 0 && r & (INT | DBL) != 0 {
                t |= DBL;
            }
            t
        };
        match self {
            Gen::Var(v) => VARS.iter().find(|(n, _)| n == v).map_or(0, |(_, t)| *t),
            Gen::Int(_) => INT,
            Gen::Dbl(_) => DBL,
            Gen::Str(_) => STR,
            Gen::Bool(_) => BOOL,
            Gen::Null => NULL,
            Gen::Unary("-", x) => x.types() & (INT | DBL),
            Gen::Binary("+", l, r) => numeric(l.types(), r.types()) | (l.types() & r.types() & STR),
            Gen::Binary("-" | "*" | "/", l, r) => numeric(l.types(), r.types()),
            Gen::Binary("%", l, r) => l.types() & r.types() & INT,
            Gen::Cond(_, a, b) => a.types() | b.types(),
            Gen::Call("size" | "int", _) => INT,
            Gen::Call("double", _) => DBL,
            Gen::Call("string", _) => STR,
            _ => BOOL,
        }
    }

    /// Whether Kappa's documented leniency may apply: int and double meeting in equality,
    /// membership or arithmetic (cel 0.13 says unequal or errors), or `string(bool)`.
    fn lenient(&self) -> bool {
        let mixed = |l: u8, r: u8| (l & INT != 0 && r & DBL != 0) || (l & DBL != 0 && r & INT != 0);
        match self {
            Gen::Binary(op, l, r) => {
                (["==", "!=", "+", "-", "*", "/"].contains(op) && mixed(l.types(), r.types()))
                    || l.lenient()
                    || r.lenient()
            }
            Gen::Unary(_, x) => x.lenient(),
            Gen::Cond(c, a, b) => c.lenient() || a.lenient() || b.lenient(),
            Gen::In(x, list) => {
                x.lenient() || list.iter().any(|i| i.lenient() || mixed(x.types(), i.types()))
            }
            Gen::Call(f, x) => (*f == "string" && x.types() & BOOL != 0) || x.lenient(),
            Gen::Method(_, t, a) => t.lenient() || a.lenient(),
            _ => false,
        }
    }

    /// Whether cel 0.13 may succeed where Kappa rightly fails: it negates bools with unary `-`.
    fn cel_quirk(&self) -> bool {
        match self {
            Gen::Unary(op, x) => (*op == "-" && x.types() & BOOL != 0) || x.cel_quirk(),
            Gen::Binary(_, l, r) => l.cel_quirk() || r.cel_quirk(),
            Gen::Cond(c, a, b) => c.cel_quirk() || a.cel_quirk() || b.cel_quirk(),
            Gen::In(x, list) => x.cel_quirk() || list.iter().any(Gen::cel_quirk),
            Gen::Call(_, x) => x.cel_quirk(),
            Gen::Method(_, t, a) => t.cel_quirk() || a.cel_quirk(),
            _ => false,
        }
    }
}

fn leaf() -> impl Strategy<Value = Gen> {
    prop_oneof![
        3 => prop::sample::select(VARS.map(|(n, _)| n).to_vec()).prop_map(Gen::Var),
        1 => (-10i64..10).prop_map(Gen::Int),
        1 => prop::sample::select(vec![-2.5, 0.0, 0.5, 1.0, 3.0, 10.0]).prop_map(Gen::Dbl),
        1 => prop::sample::select(vec!["", "a", "ab", "b", "12", "1.5"]).prop_map(Gen::Str),
        1 => any::<bool>().prop_map(Gen::Bool),
        1 => Just(Gen::Null),
    ]
}

fn string_leaf() -> impl Strategy<Value = Gen> {
    prop_oneof![
        prop::sample::select(vec!["s", "t"]).prop_map(Gen::Var),
        prop::sample::select(vec!["", "a", "ab", "b"]).prop_map(Gen::Str),
    ]
}

fn expression() -> impl Strategy<Value = Gen> {
    const BINARY: [&str; 13] =
        ["&&", "||", "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%"];
    leaf().prop_recursive(4, 40, 3, |inner| {
        prop_oneof![
            4 => (prop::sample::select(BINARY.to_vec()), inner.clone(), inner.clone())
                .prop_map(|(op, l, r)| Gen::Binary(op, Box::new(l), Box::new(r))),
            1 => (prop::sample::select(vec!["!", "-"]), inner.clone())
                .prop_map(|(op, x)| Gen::Unary(op, Box::new(x))),
            1 => (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(c, a, b)| Gen::Cond(Box::new(c), Box::new(a), Box::new(b))),
            1 => (inner.clone(), prop::collection::vec(leaf(), 0..4))
                .prop_map(|(x, list)| Gen::In(Box::new(x), list)),
            // Conversions take leaves only: cel 0.13 turns int(NaN) into 0 where Kappa fails.
            1 => (prop::sample::select(vec!["size", "int", "double", "string"]), leaf())
                .prop_map(|(f, x)| Gen::Call(f, Box::new(x))),
            1 => (
                prop::sample::select(vec!["startsWith", "endsWith", "contains"]),
                string_leaf(),
                string_leaf(),
            )
                .prop_map(|(m, t, a)| Gen::Method(m, Box::new(t), Box::new(a))),
        ]
    })
}

/// Well-typed expressions (ints with ints, doubles with doubles, strings with strings), so most
/// evaluate successfully and none relies on Kappa's leniency.
fn well_typed() -> impl Strategy<Value = Gen> {
    fn bin(op: &'static str, l: Gen, r: Gen) -> Gen {
        Gen::Binary(op, Box::new(l), Box::new(r))
    }
    let int_leaf = || {
        prop_oneof![
            prop::sample::select(vec!["i", "j"]).prop_map(Gen::Var),
            (-10i64..10).prop_map(Gen::Int),
        ]
    };
    let dbl_leaf = || {
        prop_oneof![
            prop::sample::select(vec!["d", "e"]).prop_map(Gen::Var),
            prop::sample::select(vec![-2.5, 0.0, 0.5, 3.0]).prop_map(Gen::Dbl),
        ]
    };
    let ints = int_leaf()
        .prop_recursive(3, 12, 2, move |inner| {
            prop_oneof![
                3 => (prop::sample::select(vec!["+", "-", "*", "/", "%"]), inner.clone(), inner.clone())
                    .prop_map(|(op, l, r)| bin(op, l, r)),
                1 => inner.prop_map(|x| Gen::Unary("-", Box::new(x))),
                1 => string_leaf().prop_map(|x| Gen::Call("size", Box::new(x))),
                1 => prop_oneof![dbl_leaf(), string_leaf()].prop_map(|x| Gen::Call("int", Box::new(x))),
            ]
        })
        .boxed();
    let dbls = dbl_leaf()
        .prop_recursive(3, 12, 2, move |inner| {
            prop_oneof![
                3 => (prop::sample::select(vec!["+", "-", "*", "/"]), inner.clone(), inner.clone())
                    .prop_map(|(op, l, r)| bin(op, l, r)),
                1 => inner.prop_map(|x| Gen::Unary("-", Box::new(x))),
                1 => prop_oneof![int_leaf(), string_leaf()].prop_map(|x| Gen::Call("double", Box::new(x))),
            ]
        })
        .boxed();
    let strs = string_leaf()
        .prop_recursive(2, 6, 2, move |inner| {
            prop_oneof![
                2 => (inner.clone(), inner).prop_map(|(l, r)| bin("+", l, r)),
                1 => prop_oneof![int_leaf(), dbl_leaf()].prop_map(|x| Gen::Call("string", Box::new(x))),
            ]
        })
        .boxed();
    let eq = || prop::sample::select(vec!["==", "!="]);
    let ord = || prop::sample::select(vec!["<", "<=", ">", ">=", "==", "!="]);
    let cross = || prop::sample::select(vec!["<", "<=", ">", ">="]);
    let tests = prop_oneof![
        (ord(), ints.clone(), ints.clone()).prop_map(|(op, l, r)| bin(op, l, r)),
        (ord(), dbls.clone(), dbls.clone()).prop_map(|(op, l, r)| bin(op, l, r)),
        (ord(), strs.clone(), strs.clone()).prop_map(|(op, l, r)| bin(op, l, r)),
        (cross(), ints.clone(), dbls.clone()).prop_map(|(op, l, r)| bin(op, l, r)),
        (
            eq(),
            prop::sample::select(vec!["b"]).prop_map(Gen::Var),
            any::<bool>().prop_map(Gen::Bool)
        )
            .prop_map(|(op, l, r)| bin(op, l, r)),
        (ints.clone(), prop::collection::vec(int_leaf(), 0..4))
            .prop_map(|(x, list)| Gen::In(Box::new(x), list)),
        (strs.clone(), prop::collection::vec(string_leaf(), 0..4))
            .prop_map(|(x, list)| Gen::In(Box::new(x), list)),
        (
            prop::sample::select(vec!["startsWith", "endsWith", "contains"]),
            string_leaf(),
            string_leaf(),
        )
            .prop_map(|(m, t, a)| Gen::Method(m, Box::new(t), Box::new(a))),
    ];
    let bools = tests
        .prop_recursive(3, 16, 3, |inner| {
            prop_oneof![
                2 => (prop::sample::select(vec!["&&", "||"]), inner.clone(), inner.clone())
                    .prop_map(|(op, l, r)| bin(op, l, r)),
                1 => inner.clone().prop_map(|x| Gen::Unary("!", Box::new(x))),
                1 => (inner.clone(), inner.clone(), inner)
                    .prop_map(|(c, a, b)| Gen::Cond(Box::new(c), Box::new(a), Box::new(b))),
            ]
        })
        .boxed();
    prop_oneof![
        3 => bools.clone(),
        1 => (bools.clone(), ints.clone(), ints.clone())
            .prop_map(|(c, a, b)| Gen::Cond(Box::new(c), Box::new(a), Box::new(b))),
        1 => (bools, strs.clone(), strs.clone())
            .prop_map(|(c, a, b)| Gen::Cond(Box::new(c), Box::new(a), Box::new(b))),
        1 => ints,
        1 => dbls,
        1 => strs,
    ]
}

#[derive(Clone, Debug)]
struct Vars {
    i: i64,
    j: i64,
    d: f64,
    e: f64,
    s: &'static str,
    t: &'static str,
    b: bool,
}

fn vars() -> impl Strategy<Value = Vars> {
    let dbl = || prop::sample::select(vec![-2.5, 0.0, 0.5, 1.0, 3.0, 7.25]);
    let text = || prop::sample::select(vec!["", "a", "ab", "b", "12", "1.5"]);
    (-10i64..10, -10i64..10, dbl(), dbl(), text(), text(), any::<bool>())
        .prop_map(|(i, j, d, e, s, t, b)| Vars { i, j, d, e, s, t, b })
}

fn same_value(ours: &Value<'_>, theirs: &cel::Value) -> bool {
    match (ours, theirs) {
        (Value::Int(a), cel::Value::Int(b)) => a == b,
        (Value::Float(a), cel::Value::Float(b)) => a == b || (a.is_nan() && b.is_nan()),
        (Value::Str(a), cel::Value::String(b)) => **a == **b,
        (Value::Bool(a), cel::Value::Bool(b)) => a == b,
        (Value::Null, cel::Value::Null) => true,
        _ => false,
    }
}

/// Evaluates `expr` with both evaluators and checks they agree, allowing only the documented
/// differences when `allow_differences` is set.
fn check_against_cel(expr: &Gen, v: &Vars, allow_differences: bool) -> Result<(), TestCaseError> {
    let src = expr.render();
    let mut fields = FieldTable::new();
    let program = compile(&src, &mut fields).unwrap_or_else(|e| panic!("{src}: {e}"));
    let rec = record(
        &mut fields,
        &[
            ("i", Value::Int(v.i)),
            ("j", Value::Int(v.j)),
            ("d", Value::Float(v.d)),
            ("e", Value::Float(v.e)),
            ("s", Value::Str(v.s.into())),
            ("t", Value::Str(v.t.into())),
            ("b", Value::Bool(v.b)),
        ],
    );
    let ours = program.eval(&rec);

    let mut ctx = cel::Context::default();
    ctx.add_variable_from_value("i", v.i);
    ctx.add_variable_from_value("j", v.j);
    ctx.add_variable_from_value("d", v.d);
    ctx.add_variable_from_value("e", v.e);
    ctx.add_variable_from_value("s", v.s);
    ctx.add_variable_from_value("t", v.t);
    ctx.add_variable_from_value("b", v.b);
    let theirs = cel::Program::compile(&src).unwrap().execute(&ctx);

    // A lenient subexpression can steer a condition, so then any disagreement is allowed.
    let lenient = allow_differences && expr.lenient();
    let quirk = allow_differences && expr.cel_quirk();
    match (&ours, &theirs) {
        (Ok(a), Ok(b)) => prop_assert!(
            same_value(a, b) || lenient || quirk,
            "{src} with {v:?}: kappa {a:?}, cel {b:?}"
        ),
        (Err(_), Err(_)) => {}
        (Ok(a), Err(b)) => {
            prop_assert!(lenient || quirk, "{src} with {v:?}: kappa {a:?}, cel error {b}")
        }
        (Err(a), Ok(b)) => {
            prop_assert!(lenient || quirk, "{src} with {v:?}: kappa error {a}, cel {b:?}")
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn agrees_with_cel_on_random_expressions(expr in expression(), v in vars()) {
        check_against_cel(&expr, &v, true)?;
    }

    #[test]
    fn agrees_with_cel_exactly_on_well_typed_expressions(expr in well_typed(), v in vars()) {
        prop_assert!(!expr.lenient(), "generator produced a lenient case: {}", expr.render());
        check_against_cel(&expr, &v, false)?;
    }
}
