#!/usr/bin/env bash
# A real OpenSearch node as a test peer (tests/support/src/opensearch.rs wraps it).
#
#   opensearch.sh install          fetch the pinned version from Maven Central into the cache
#                                  (once) and create the peer user; idempotent.
#   opensearch.sh start RUN_DIR    start a fresh single node whose config, data, logs and pid are
#                                  under RUN_DIR; prints its URL (also in RUN_DIR/url) once the
#                                  cluster is yellow. Installs first if needed.
#   opensearch.sh stop RUN_DIR     stop that node (SIGTERM, then SIGKILL); idempotent.
#
# The distribution is the integ-test zip: core OpenSearch with only the transport-netty4 module
# (no JDK, no security plugin, no painless, reindex or mapper-extras modules). OpenSearch refuses
# to run as root, so when this script runs as root the node runs as the system user $PEER_USER
# (created on install); otherwise it runs as the calling user.
#
# Environment:
#   XDG_CACHE_HOME                   cache root (default ~/.cache); the node is unpacked into
#                                    $XDG_CACHE_HOME/kappa/opensearch-$OPENSEARCH_VERSION
#   KAPPA_OPENSEARCH_JAVA_HOME       the JDK to run the node with (default: the `java` on PATH);
#                                    2.19 needs Java 11 to 23 (it uses the security manager)
#   KAPPA_OPENSEARCH_HEAP            heap size (default 512m)
#   KAPPA_OPENSEARCH_START_TIMEOUT   seconds to wait for yellow health (default 120)
#   KAPPA_PEER_PARENT_PID            if set, a watchdog stops the node once that process is gone
set -euo pipefail

OPENSEARCH_VERSION=2.19.6
ARTIFACT="org.opensearch.distribution.integ-test-zip:opensearch:${OPENSEARCH_VERSION}:zip"
PEER_USER=kappa-peer
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/kappa"
INSTALL_DIR="$CACHE_ROOT/opensearch-$OPENSEARCH_VERSION"
HEAP="${KAPPA_OPENSEARCH_HEAP:-512m}"
START_TIMEOUT="${KAPPA_OPENSEARCH_START_TIMEOUT:-120}"
LOG_TAIL_LINES=60

log() { echo "opensearch peer: $*" >&2; }
die() {
  log "$*"
  exit 1
}

is_root() { [ "$(id -u)" -eq 0 ]; }

ensure_peer_user() {
  getent passwd "$PEER_USER" >/dev/null && return 0
  # A concurrent install may create it between the check and useradd.
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
    --user-group "$PEER_USER" 2>/dev/null || getent passwd "$PEER_USER" >/dev/null ||
    die "could not create user $PEER_USER"
}

install() {
  if [ -x "$INSTALL_DIR/bin/opensearch" ] && { ! is_root || getent passwd "$PEER_USER" >/dev/null; }
  then
    return 0
  fi
  mkdir -p "$CACHE_ROOT"
  exec 9>"$CACHE_ROOT/.opensearch-install.lock"
  flock 9
  ! is_root || ensure_peer_user
  if [ ! -x "$INSTALL_DIR/bin/opensearch" ]; then
    command -v mvn >/dev/null || die "mvn (Maven) is needed to fetch $ARTIFACT"
    command -v unzip >/dev/null || die "unzip is needed to unpack $ARTIFACT"
    local tmp
    tmp=$(mktemp -d "$CACHE_ROOT/.opensearch-$OPENSEARCH_VERSION.XXXXXX")
    log "fetching $ARTIFACT"
    # -C: fail on a checksum mismatch. Maven's cwd is the empty temp dir: no project pom. Its
    # output (only colour resets when quiet) is shown only if it fails.
    if ! (cd "$tmp" && mvn -q -B -C dependency:copy -Dartifact="$ARTIFACT" \
      -DoutputDirectory="$tmp" >"$tmp/mvn.log" 2>&1); then
      sed 's/\x1b\[[0-9;]*m//g' "$tmp/mvn.log" >&2
      rm -rf "$tmp"
      die "could not fetch $ARTIFACT from Maven Central"
    fi
    unzip -q "$tmp/opensearch-$OPENSEARCH_VERSION.zip" -d "$tmp/unpacked"
    # Readable (not writable) by everyone, the peer user included; start gives each node its own
    # writable config, data and logs.
    chmod -R a+rX,go-w "$tmp/unpacked/opensearch-$OPENSEARCH_VERSION"
    rm -rf "$INSTALL_DIR"
    mv "$tmp/unpacked/opensearch-$OPENSEARCH_VERSION" "$INSTALL_DIR"
    rm -rf "$tmp"
    log "installed OpenSearch $OPENSEARCH_VERSION in $INSTALL_DIR"
  fi
  exec 9>&-
}

java_home() {
  local home="${KAPPA_OPENSEARCH_JAVA_HOME:-}"
  if [ -z "$home" ]; then
    local java
    java=$(command -v java) || die "java is not installed (Java 11 to 23 runs OpenSearch 2.x)"
    java=$(readlink -f "$java")
    home=$(dirname "$(dirname "$java")")
  fi
  [ -x "$home/bin/java" ] || die "no java at $home/bin/java"
  echo "$home"
}

# As the peer user (root only: others run the node as themselves).
as_peer() {
  if is_root; then
    setpriv --reuid="$PEER_USER" --regid="$PEER_USER" --init-groups --inh-caps=-all -- "$@"
  else
    "$@"
  fi
}

# The pid in RUN_DIR/pid if that process is still this run's node (a reused pid is not).
node_pid() {
  local run_dir=$1 pid
  [ -f "$run_dir/pid" ] || return 1
  pid=$(cat "$run_dir/pid")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  grep -qaF "$run_dir/" "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

# Whether a process runs: exists and is not a zombie (its parent has not reaped it yet; init may
# take a while to).
ALIVE='alive() { local s; s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; s=${s##*) }; [ "${s%% *}" != Z ]; }'
eval "$ALIVE"

stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  kill -CONT "$pid" 2>/dev/null || true # a paused node handles SIGTERM only once resumed
  for ((i = 0; i < 100; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

stop() {
  local run_dir=$1 pid
  [ -d "$run_dir" ] || return 0
  run_dir=$(cd "$run_dir" && pwd -P)
  if pid=$(node_pid "$run_dir"); then
    stop_pid "$pid"
  fi
  if [ -f "$run_dir/watchdog.pid" ]; then
    pid=$(cat "$run_dir/watchdog.pid")
    if grep -qaF "opensearch-peer-watchdog" "/proc/$pid/cmdline" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
    fi
    rm -f "$run_dir/watchdog.pid"
  fi
  rm -f "$run_dir/pid"
}

fail_start() {
  local run_dir=$1 reason=$2
  {
    echo "opensearch failed to start: $reason"
    echo "--- last $LOG_TAIL_LINES lines of $run_dir/opensearch.log ---"
    tail -n "$LOG_TAIL_LINES" "$run_dir/opensearch.log" 2>/dev/null || echo "(no log)"
    echo "---"
  } >&2
  stop "$run_dir"
  exit 1
}

start() {
  local run_dir=$1
  install
  command -v curl >/dev/null || die "curl is needed to wait for the node's health"
  local java
  java=$(java_home)
  mkdir -p "$run_dir"
  run_dir=$(cd "$run_dir" && pwd -P)
  if node_pid "$run_dir" >/dev/null; then
    die "a node is already running for $run_dir (stop it first)"
  fi
  rm -rf "$run_dir/home" "$run_dir/config" "$run_dir/data" "$run_dir/logs" "$run_dir/tmp"
  rm -f "$run_dir/url" "$run_dir/pid" "$run_dir/opensearch.log"

  # The node's home: the cached tree hard-linked (copied across file systems), because the cache
  # usually lives under root's home, which the peer user cannot enter. bin/opensearch cds into
  # it, and jvm.options' relative paths (logs/gc.log, data) resolve there.
  mkdir -p "$run_dir/home"
  local entry
  for entry in "$INSTALL_DIR"/*; do
    [ "$(basename "$entry")" = config ] && continue
    cp -al "$entry" "$run_dir/home/" 2>/dev/null || cp -a "$entry" "$run_dir/home/"
  done
  # Config is copied, never linked: it is edited here and the node writes its keystore into it.
  cp -R "$INSTALL_DIR/config" "$run_dir/config"
  mkdir -p "$run_dir/home/logs" "$run_dir/home/data" "$run_dir/data" "$run_dir/logs" \
    "$run_dir/tmp"
  cat >>"$run_dir/config/opensearch.yml" <<EOF

# --- kappa test peer (tests/peers/opensearch.sh) ---
cluster.name: kappa-test
node.name: kappa-peer
discovery.type: single-node
network.host: 127.0.0.1
# Ephemeral ports, written to path.logs/{http,transport}.ports once bound: no port races.
http.port: 0
transport.port: 0
node.portsfile: true
path.data: $run_dir/data
path.logs: $run_dir/logs
cluster.routing.allocation.disk.threshold_enabled: false
EOF
  if is_root; then
    chown -R "$PEER_USER:" "$run_dir/config" "$run_dir/data" "$run_dir/logs" "$run_dir/tmp" \
      "$run_dir/home/logs" "$run_dir/home/data"
    chown "$PEER_USER:" "$run_dir"
  fi
  local user
  user=$(as_peer id -un)
  as_peer test -r "$run_dir/home/lib/opensearch-$OPENSEARCH_VERSION.jar" -a -w "$run_dir/data" ||
    die "user $user cannot use $run_dir (is a parent directory closed to it? use one under /tmp)"
  as_peer test -x "$java/bin/java" || die "user $user cannot run $java/bin/java"

  # A simple command (not a function) in the background: bash execs it in the forked child, and
  # setpriv, env and bin/opensearch exec in turn, so $! is the node's JVM (after a few short
  # helper JVMs of bin/opensearch).
  local as_user=()
  if is_root; then
    as_user=(setpriv --reuid="$PEER_USER" --regid="$PEER_USER" --init-groups --inh-caps=-all --)
  fi
  "${as_user[@]}" env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$run_dir/tmp" LANG=C.UTF-8 \
    JAVA_HOME="$java" OPENSEARCH_PATH_CONF="$run_dir/config" OPENSEARCH_TMPDIR="$run_dir/tmp" \
    OPENSEARCH_JAVA_OPTS="-Xms$HEAP -Xmx$HEAP -XX:-AlwaysPreTouch" \
    "$run_dir/home/bin/opensearch" </dev/null >"$run_dir/opensearch.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$run_dir/pid"

  if [ -n "${KAPPA_PEER_PARENT_PID:-}" ]; then
    # Stops the node if whoever started it goes away without calling stop (killed test process).
    # Its own stdio is /dev/null, so callers that read this script's output are not held open.
    nohup setsid bash -c "$ALIVE"'
      parent=$1 node=$2 run_dir=$3 script=$4
      while alive "$parent" && alive "$node"; do sleep 1; done
      ! alive "$node" || exec bash "$script" stop "$run_dir"
    ' opensearch-peer-watchdog "$KAPPA_PEER_PARENT_PID" "$pid" "$run_dir" \
      "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/$(basename "${BASH_SOURCE[0]}")" \
      </dev/null >/dev/null 2>&1 &
    echo "$!" >"$run_dir/watchdog.pid"
  fi

  local deadline=$((SECONDS + START_TIMEOUT)) port="" url="" status
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" && status=0 || status=$?
      fail_start "$run_dir" "the process exited with status $status"
    fi
    if [ -z "$port" ] && [ -s "$run_dir/logs/http.ports" ]; then
      port=$(head -n 1 "$run_dir/logs/http.ports")
      port=${port##*:}
      url="http://127.0.0.1:$port"
    fi
    if [ -n "$url" ] && curl -fsS -m 5 -o /dev/null \
      "$url/_cluster/health?wait_for_status=yellow&timeout=2s" 2>/dev/null; then
      break
    fi
    ((SECONDS < deadline)) || fail_start "$run_dir" "not healthy (yellow) within ${START_TIMEOUT}s"
    sleep 0.5
  done
  echo "$url" >"$run_dir/url"
  echo "$url"
}

usage() {
  echo "usage: $0 install | start RUN_DIR | stop RUN_DIR" >&2
  exit 2
}

case "${1:-}" in
  install)
    [ $# -eq 1 ] || usage
    install
    ;;
  start)
    [ $# -eq 2 ] || usage
    start "$2"
    ;;
  stop)
    [ $# -eq 2 ] || usage
    stop "$2"
    ;;
  *) usage ;;
esac
