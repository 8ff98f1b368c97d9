#!/usr/bin/env bash
# The engine benchmark protocol (issue: engine core). Generates the reference workload
# (default 10M records, ~1.87 GB), then on the same file and in the same run:
#   - `kappa run` with the reference job, 2 threads: wall time, records/s, peak RSS;
#   - DuckDB (pip) with the same filter, lateness rule, windows and aggregates, 2 and 1 threads.
# Medians of 3. Usage: engine/benches/run-bench.sh [RECORDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
records=${1:-10000000}
dir=${KAPPA_BENCH_DIR:-target/bench-data}
mkdir -p "$dir"
cargo build --release -q -p kappa-cli
kappa=target/release/kappa
data="$dir/tx-$records"
if [ ! -f "$data/part-0.ndjson" ]; then
  "$kappa" gen --records "$records" --out-dir "$data" >/dev/null
fi
file="$data/part-0.ndjson"
cat "$file" >/dev/null  # page cache, as the peer figures assume

median() { sort -n | sed -n 2p; }

echo "== kappa run (reference job, 2 threads)"
for i in 1 2 3; do
  /usr/bin/time -f "%e %M" -o "$dir/time.$i" "$kappa" run -f crds/fixtures/valid/tx-stats.yaml \
    --input "$file" --output /dev/null --threads 2 2>"$dir/run.$i.log"
done
secs=$(for i in 1 2 3; do cut -d' ' -f1 "$dir/time.$i"; done | median)
rss=$(for i in 1 2 3; do cut -d' ' -f2 "$dir/time.$i"; done | sort -n | tail -1)
tail -n 1 "$dir/run.1.log"
echo "kappa: median ${secs}s, $(python3 -c "print(f'{$records/$secs/1e6:.2f}')") M records/s, peak RSS $((rss / 1024)) MiB"

echo "== DuckDB (same file, same query)"
python3 -m venv "$dir/venv" >/dev/null 2>&1 || true
"$dir/venv/bin/pip" install -q "duckdb==2.0.0" >/dev/null
"$dir/venv/bin/python" engine/benches/duckdb_reference.py "$file" "$records"
