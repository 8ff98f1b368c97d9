#!/usr/bin/env bash
# The engine benchmark protocol (issue: engine core). Generates two workloads (default 10M
# records each, ~1.87 GB): the reference one and many small windows (`kappa gen
# --small-windows`). Then, for each, on the same file and in the same run:
#   - `kappa run` with the reference job, 2 threads: wall time, records/s, peak RSS, and the open
#     windows at their highest with their bytes each (states and index, every worker counted);
#   - DuckDB (pip) with the same filter, lateness rule, windows and aggregates, 2 threads,
#     each DuckDB run right after a `kappa run`, so that both see the same machine (its speed
#     drifts by 2x within minutes here): the ratio of each pair is the figure to compare;
#   - DuckDB at 1 thread.
# Medians of ROUNDS (default 3). Usage: engine/benches/run-bench.sh [RECORDS [ROUNDS]]
set -euo pipefail
cd "$(dirname "$0")/../.."
records=${1:-10000000}
rounds=${2:-3}
dir=${KAPPA_BENCH_DIR:-target/bench-data}
mkdir -p "$dir"
cargo build --release -q -p kappa-cli
kappa=target/release/kappa
python3 -m venv "$dir/venv" >/dev/null 2>&1 || true
"$dir/venv/bin/pip" install -q "duckdb==2.0.0" >/dev/null

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
rate() { python3 -c "print(f'{$records / $1 / 1e6:.2f}')"; }

# bench NAME [GEN ARGS...]: one workload, kappa interleaved with DuckDB.
bench() {
  local name=$1
  shift
  local data="$dir/$name-$records"
  if [ ! -f "$data/part-0.ndjson" ]; then
    "$kappa" gen --records "$records" --out-dir "$data" "$@" >/dev/null
  fi
  local file="$data/part-0.ndjson"
  cat "$file" >/dev/null  # page cache, as the peer figures assume
  duckdb() { "$dir/venv/bin/python" engine/benches/duckdb_reference.py "$file" "$records" "$@"; }

  echo "== $name: kappa run (reference job, 2 threads) interleaved with DuckDB (same query, 2 threads)"
  : >"$dir/pairs"
  for i in $(seq 1 "$rounds"); do
    /usr/bin/time -f "%e %M" -o "$dir/time.$i" "$kappa" run -f crds/fixtures/valid/tx-stats.yaml \
      --input "$file" --output /dev/null --threads 2 2>"$dir/run.$i.log"
    k=$(cut -d' ' -f1 "$dir/time.$i")
    d=$(duckdb 2 1)
    echo "$k $d" >>"$dir/pairs"
    echo "round $i: kappa ${k}s, duckdb ${d}s, kappa/duckdb $(python3 -c "print(f'{$k / $d:.2f}')")"
  done
  tail -n 1 "$dir/run.1.log"
  secs=$(cut -d' ' -f1 "$dir/pairs" | median)
  dsecs=$(cut -d' ' -f2 "$dir/pairs" | median)
  ratio=$(awk '{ print $1 / $2 }' "$dir/pairs" | median)
  rss=$(for i in $(seq 1 "$rounds"); do cut -d' ' -f2 "$dir/time.$i"; done | sort -n | tail -1)
  # "at most N open windows held, B bytes each": the open windows at their highest.
  held=$(grep -o 'at most [0-9]* open windows held, [0-9]* bytes each' "$dir/run.1.log" || true)
  echo "$name kappa: median ${secs}s, $(rate "$secs") M records/s, peak RSS $((rss / 1024)) MiB; $held"
  echo "$name duckdb 2 threads: median ${dsecs}s, $(rate "$dsecs") M records/s"
  echo "$name kappa's time / DuckDB's time, median of the pairs: $ratio"

  echo "== $name: DuckDB, 1 thread"
  d1=$(duckdb 1 "$rounds" | median)
  echo "$name duckdb 1 thread: median ${d1}s, $(rate "$d1") M records/s"
}

# The reference workload: ~65k windows of hundreds of records (3 servers, 200 records/s).
bench reference
# Many small windows (issue 23): 5 days of log time, 32 keys a minute, ~150k windows open at
# once under the 3-day lateness, a few dozen records each.
bench small-windows --small-windows
