#!/usr/bin/env bash
# The local demo (README: "Run the demo"). Today it shows the engine core on one machine:
# generate a day of transaction logs with late and malformed records, validate the reference
# job, replay the logs as a 3-partition retained log, and look at the window documents and the
# dead letters. The blue/green demo (Kafka-protocol broker, ES-API server, alias swap, rollback)
# arrives with `kappa up` (issue 6).
set -euo pipefail
cd "$(dirname "$0")/.."
records=${DEMO_RECORDS:-2000000}
work=${DEMO_DIR:-target/demo}
mkdir -p "$work"

echo "==> building kappa (release)"
cargo build --release -q -p kappa-cli
kappa=target/release/kappa
job=examples/tx-stats.yaml

echo "==> kappa validate -f $job"
"$kappa" validate -f "$job"

echo "==> kappa gen: $records transaction-log lines over 3 partitions (late and malformed included)"
"$kappa" gen --records "$records" --partitions 3 --seed 7 --out-dir "$work/logs"

echo "==> kappa run: replaying the logs as the retained log"
"$kappa" run -f "$job" --input "$work"/logs/part-*.ndjson \
  --output "$work/windows.ndjson" --dead-letter "$work/dead-letters.ndjson"

echo "==> first window documents ($work/windows.ndjson)"
head -n 3 "$work/windows.ndjson"
echo "==> dead letters by reason ($work/dead-letters.ndjson)"
python3 - "$work/dead-letters.ndjson" <<'PY'
import collections, json, sys
reasons = collections.Counter(json.loads(l)["reason"] for l in open(sys.argv[1]))
for reason, n in reasons.most_common():
    print(f"  {reason:<16} {n}")
PY
