#!/usr/bin/env bash
# The local blue/green demo (README: "Run the demo"). On one machine, with no cluster:
#   1. builds kappa and installs the pinned local peers: the tansu Kafka-protocol broker
#      (SQLite storage) and osmem-server (an Elasticsearch-API server);
#   2. generates transaction logs with late and malformed records and loads them into the
#      broker as the retained log;
#   3. `kappa up` runs v1 of the transaction-statistics job until it is live behind the alias;
#   4. v2 (a new aggregate) replays the same log into its own index while v1 serves, with the
#      replay progress shown, then the alias swaps atomically;
#   5. `kappa rollback` puts the alias back on v1.
# Queries through the alias show what readers see at each step.
#
# Settings (environment): DEMO_RECORDS (default 50000), DEMO_DIR (target/demo),
# DEMO_KAFKA_PORT (19092), DEMO_ES_PORT (19200), DEMO_KEEP=1 leaves everything running.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
records=${DEMO_RECORDS:-50000}
work=${DEMO_DIR:-target/demo}
mkdir -p "$work"
work=$(cd "$work" && pwd)
tools=$work/tools
run=$work/run
kafka_port=${DEMO_KAFKA_PORT:-19092}
es_port=${DEMO_ES_PORT:-19200}
es=http://127.0.0.1:$es_port
# Pinned peers. tansu: a Kafka-protocol broker from crates.io; its SQLite storage keeps the
# log on disk (its memory:// storage loses records when a consumer resumes). osmem-server: an
# OpenSearch-compatible server from PyPI, with mappings, _bulk, external versions and atomic
# _aliases.
TANSU_VERSION=0.6.0
OSMEM_VERSION=0.1.6

bold=$(tput bold 2>/dev/null || true)
plain=$(tput sgr0 2>/dev/null || true)
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }
fail() {
  echo "demo failed: $*" >&2
  [ -f "$run/up.log" ] && { echo "--- last lines of $run/up.log ---" >&2; tail -n 30 "$run/up.log" >&2; }
  exit 1
}
# wait_for SECONDS WHAT COMMAND...: polls COMMAND every second until it succeeds.
wait_for() {
  local limit=$1 what=$2
  shift 2
  for _ in $(seq "$limit"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 1
  done
  fail "timed out after ${limit}s waiting for $what"
}

step "building kappa (release)"
cargo build --release -q -p kappa-cli
kappa=$root/target/release/kappa

step "installing the local peers, pinned (cached in $tools)"
if ! "$tools/bin/tansu" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
  echo "tansu $TANSU_VERSION: compiled once from crates.io (about 15-25 minutes on 2 cores; later runs reuse it)"
  cargo install --locked --quiet tansu --version "$TANSU_VERSION" \
    --no-default-features --features libsql --root "$tools"
fi
venv=$tools/venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if ! "$venv/bin/pip" show osmem-server 2>/dev/null | grep -qx "Version: $OSMEM_VERSION"; then
  "$venv/bin/pip" install -q "osmem-server==$OSMEM_VERSION"
fi
osmem=$(ls "$venv"/lib/python3*/site-packages/osmem_server/bin/osmem-server)
echo "tansu $("$tools/bin/tansu" --version | awk '{print $2}'), osmem-server $OSMEM_VERSION"

pids=()
cleanup() {
  if [ "${DEMO_KEEP:-0}" = 1 ]; then
    echo "DEMO_KEEP=1: left running (pids ${pids[*]}); stop with: kill ${pids[*]}"
    return
  fi
  # kappa up first (SIGTERM: its engines take a final checkpoint), then the peers.
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

step "starting the peers on loopback (broker :$kafka_port, Elasticsearch API :$es_port)"
rm -rf "$run"
mkdir -p "$run"
(cd "$run" && exec "$tools/bin/tansu" broker \
  --listener-url "tcp://127.0.0.1:$kafka_port" \
  --advertised-listener-url "tcp://127.0.0.1:$kafka_port" \
  --storage-engine sqlite://tansu.db >"$run/tansu.log" 2>&1) &
pids=("$!" "${pids[@]}")
"$osmem" -addr "127.0.0.1:$es_port" -no-stdin-watch >"$run/osmem.log" 2>&1 &
pids=("$!" "${pids[@]}")
wait_for 30 "the broker" bash -c "exec 3<>/dev/tcp/127.0.0.1/$kafka_port"
wait_for 30 "the Elasticsearch API" curl -sf "$es/"

# The job: the example with the local peers, and a short stableFor so the demo moves on.
job=$run/tx-stats.yaml
sed -e "s|bootstrapServers: .*|bootstrapServers: \"127.0.0.1:$kafka_port\"|" \
  -e "s|url: \"http://elasticsearch:9200\"|url: \"$es\"|" \
  -e "s|stableFor: 60s|stableFor: 5s|" \
  -e "s|warmFor: 1h|warmFor: 10m|" \
  examples/tx-stats.yaml >"$job"

step "kappa gen: $records transaction-log lines over 3 partitions (late and malformed included)"
"$kappa" gen --records "$records" --partitions 3 --seed 7 --out-dir "$run/logs"

step "kappa produce: loading them into topic tx-logs as the retained log"
"$kappa" produce -f "$job" --input "$run"/logs/part-*.ndjson --create-topic
# tansu creates no topic on first use; each version's engine writes its dead letters to
# kappa.<namespace>.<job>.<version>.dead-letters.
for v in v1 v2; do
  "$tools/bin/tansu" topic create "kappa.payments.tx-stats.$v.dead-letters" --partitions 1 \
    --broker "tcp://127.0.0.1:$kafka_port" >/dev/null
done

state=$run/state
local_cli=(--local --state-dir "$state")
alias_on() { curl -sf "$es/_alias/tx-stats" | grep -q "\"tx-stats-$1\""; }

# query TITLE: what a reader of the alias sees.
query() {
  echo "$bold$1$plain"
  python3 - "$es" "$run/query-key.json" <<'PY'
import json, sys, urllib.request
es = sys.argv[1]
def get(path, body=None):
    req = urllib.request.Request(es + path, data=json.dumps(body).encode() if body else None,
                                 headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))
aliases = sorted(get("/_alias/tx-stats"))
count = get("/tx-stats/_count")["count"]
# The same window and key every time: the first document seen, remembered in a file.
import os
key_file = sys.argv[2]
if not os.path.exists(key_file):
    first = get("/tx-stats/_search", {"size": 1})["hits"]["hits"][0]["_source"]
    json.dump({k: first[k] for k in ("window_start", "server", "tx_type")}, open(key_file, "w"))
key = json.load(open(key_file))
hit = get("/tx-stats/_search", {"size": 1, "query": {"bool": {"filter": [
    {"term": {k: v}} for k, v in key.items()]}}})["hits"]["hits"]
print(f"  alias tx-stats -> {', '.join(aliases)}; {count} window documents")
if hit:
    doc = hit[0]["_source"]
    keys = ["window_start", "server", "tx_type", "tx_count", "amount_sum", "failures", "latency_p95", "latency_p99"]
    print("  " + json.dumps({k: doc[k] for k in keys if k in doc}))
PY
}

step "kappa up: v1 replays the log into index tx-stats-v1 (log: $run/up.log)"
"$kappa" up -f "$job" --state-dir "$state" >"$run/up.log" 2>&1 &
pids=("$!" "${pids[@]}")
wait_for 30 "kappa up" "$kappa" status tx-stats "${local_cli[@]}"
"$kappa" status tx-stats "${local_cli[@]}" --watch --interval 2s || true
wait_for 300 "v1 behind the alias" alias_on v1
"$kappa" status tx-stats "${local_cli[@]}"
query "a reader of the alias, v1 live:"

step "v2: new logic (a p99 latency aggregate); only spec.version and the pipeline change in the file"
sed -i -e "s|^  version: v1|  version: v2|" \
  -e "s|\(.*\)- {name: latency_p95,\(.*\)percentile: 0.95}|&\n\1- {name: latency_p99,\2percentile: 0.99}|" "$job"
grep -n "version: v2\|latency_p99" "$job"
wait_for 30 "v2 to start" bash -c "'$kappa' status tx-stats ${local_cli[*]} | grep -q '^v2 '"
query "while v2 replays from offset 0, readers still see v1:"
"$kappa" status tx-stats "${local_cli[@]}" --watch --interval 2s || true
wait_for 300 "the alias swap to v2" alias_on v2
"$kappa" status tx-stats "${local_cli[@]}"
query "after the atomic alias swap, readers see v2 (note latency_p99):"

step "kappa rollback: the alias goes back to v1 (its index was kept, its engine kept warm)"
"$kappa" rollback tx-stats "${local_cli[@]}"
wait_for 60 "the alias back on v1" alias_on v1
"$kappa" status tx-stats "${local_cli[@]}"
query "after the rollback, readers see v1 again:"

step "what kappa up printed (the operator's Events)"
grep -E "Promoted|RolledBack|CaughtUp|ReplayStarted|Retiring" "$run/up.log" | sed 's/^/  /' | tail -n 12 || true

step "done"
cat <<EOF
Everything lives in $run: the broker's SQLite log, each engine's log and checkpoints under
$state/pods, and the local API (kubeconfig: $state/kubeconfig).
Run it yourself:  $kappa up -f $job --state-dir $state
Then:             $kappa status tx-stats --local --state-dir $state
EOF
