//! Times Kappa's CEL evaluator against the `cel` crate's interpreter on the same records:
//! `cargo run --release --example cel_bench`.
//!
//! cel is measured twice: with one `Context` per record built before timing (pure interpretation,
//! its best case) and with the variables bound per record in a child scope of a shared context
//! (what evaluating a stream of records costs). Each figure is the best of a few rounds, as a
//! shared machine adds noise only upwards.

use std::borrow::Cow;
use std::hint::black_box;
use std::time::Instant;

use kappa_engine::cel as kcel;
use kappa_engine::fields::FieldTable;
use kappa_engine::value::Value;

const EVALS: usize = 10_000_000;
const ROUNDS: usize = 3;
const RECORDS: usize = 1024;
const STATUSES: [&str; 4] = ["ok", "fail", "test", "pending"];

/// Status and amount of record `k`, varied so branches are not trivially predicted.
fn fields_of(k: usize) -> (&'static str, f64) {
    (STATUSES[(k * 7 + k / 3) % 4], ((k * 37) % 500) as f64)
}

/// Best ns per evaluation over `ROUNDS` rounds of `EVALS` calls of `eval(n)`, which returns
/// whether evaluation `n` was a hit; also the hits of one round.
fn time(mut eval: impl FnMut(usize) -> bool) -> (f64, u64) {
    let mut best = f64::MAX;
    let mut hits = 0;
    for _ in 0..ROUNDS {
        hits = 0;
        let start = Instant::now();
        for n in 0..EVALS {
            hits += u64::from(eval(black_box(n)));
        }
        best = best.min(start.elapsed().as_nanos() as f64 / EVALS as f64);
    }
    (best, hits)
}

fn cel_hit(v: &cel::Value) -> bool {
    match v {
        cel::Value::Bool(b) => *b,
        cel::Value::String(s) => s.as_str() == "big",
        _ => false,
    }
}

fn main() {
    println!(
        "{EVALS} evaluations per round, best of {ROUNDS}, {RECORDS} distinct records; ns/eval"
    );
    println!(
        "{:<36} {:>8} {:>16} {:>17}",
        "expression", "kappa", "cel (ctx ready)", "cel (ctx/record)"
    );
    for src in [
        "status != 'test'",
        "status == 'fail' && amount > 100.0",
        "amount > 100.0 ? 'big' : 'small'",
    ] {
        let mut fields = FieldTable::new();
        let program = kcel::compile(src, &mut fields).expect("valid expression");
        let status = fields.slot_for_path("status");
        let amount = fields.slot_for_path("amount");
        let records: Vec<Vec<Value<'static>>> = (0..RECORDS)
            .map(|k| {
                let (s, a) = fields_of(k);
                let mut r = vec![Value::Missing; fields.len()];
                r[status] = Value::Str(Cow::Borrowed(s));
                r[amount] = Value::Float(a);
                r
            })
            .collect();

        // Filters go through `eval_bool`, derived fields through `eval`, as in the engine.
        let (ours, ours_hits) = if src.contains('?') {
            time(|n| {
                let v = program.eval(&records[n % RECORDS]).expect("evaluates");
                matches!(v, Value::Str(s) if s == "big")
            })
        } else {
            time(|n| program.eval_bool(&records[n % RECORDS]).expect("evaluates"))
        };

        let cel_program = cel::Program::compile(src).expect("valid expression");
        let contexts: Vec<cel::Context> = (0..RECORDS)
            .map(|k| {
                let (s, a) = fields_of(k);
                let mut ctx = cel::Context::default();
                ctx.add_variable_from_value("status", s);
                ctx.add_variable_from_value("amount", a);
                ctx
            })
            .collect();
        let (cel_ready, cel_hits) =
            time(|n| cel_hit(&cel_program.execute(&contexts[n % RECORDS]).expect("evaluates")));

        let base = cel::Context::default();
        let (cel_per_record, _) = time(|n| {
            let (s, a) = fields_of(n % RECORDS);
            let mut ctx = base.new_inner_scope();
            ctx.add_variable_from_value("status", s);
            ctx.add_variable_from_value("amount", a);
            cel_hit(&cel_program.execute(&ctx).expect("evaluates"))
        });

        assert_eq!(ours_hits, cel_hits, "{src}: evaluators disagree");
        println!("{src:<36} {ours:>8.1} {cel_ready:>16.1} {cel_per_record:>17.1}");
    }
}
