#!/usr/bin/env bash
# The project's test command (README: "Run the tests"). Idempotent: installs what is missing,
# then checks formatting and lints and runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> toolchain"
if command -v rustup >/dev/null 2>&1; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi
cargo --version
cargo nextest --version | head -n 1

echo "==> test peers"
# osmem-server: the Elasticsearch-API peer of the sink and end-to-end tests (pinned; a Go
# binary inside the PyPI wheel). Kafka needs nothing installed: librdkafka's MockCluster is
# built into the rdkafka crate.
OSMEM_VERSION=0.1.6
venv=target/test-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/pip" show osmem-server 2>/dev/null | grep -qx "Version: $OSMEM_VERSION"; then
  "$venv/bin/pip" install -q "osmem-server==$OSMEM_VERSION"
fi
# DuckDB: the SQL batch query users check the engine with (engine/cli/tests/sql_batch.rs runs
# tests/support/duckdb_batch.py with this venv's Python; the same version as the bench).
DUCKDB_VERSION=2.0.0
if ! "$venv/bin/pip" show duckdb 2>/dev/null | grep -qx "Version: $DUCKDB_VERSION"; then
  "$venv/bin/pip" install -q "duckdb==$DUCKDB_VERSION"
fi
KAPPA_TEST_PYTHON="$PWD/$venv/bin/python"
export KAPPA_TEST_PYTHON
"$KAPPA_TEST_PYTHON" -c 'import duckdb; print("duckdb", duckdb.__version__)'
KAPPA_OSMEM_BIN=$(ls "$PWD"/$venv/lib/python3*/site-packages/osmem_server/bin/osmem-server)
export KAPPA_OSMEM_BIN
"$KAPPA_OSMEM_BIN" -version

echo "==> OpenSearch peer"
# A real OpenSearch node for the tests that need a real one (documents searchable only after a
# refresh): tests/peers/opensearch.sh fetches the pinned integ-test zip from Maven Central with
# mvn into ${XDG_CACHE_HOME:-~/.cache}/kappa once, and runs each node as the system user
# kappa-peer (OpenSearch refuses root). OpenSearch 2.x needs Java 11 to 23; Debian's is 17.
java_packages=()
command -v java >/dev/null 2>&1 || java_packages+=(default-jre-headless)
command -v mvn >/dev/null 2>&1 || java_packages+=(maven)
if [ ${#java_packages[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends "${java_packages[@]}"; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${java_packages[@]}"
  fi
fi
java -version 2>&1 | head -n 1
bash tests/peers/opensearch.sh install

echo "==> chart renderer"
# tests/helm-render renders the Helm chart for operator/tests/chart.rs as `helm template` does.
# No Helm binary is packaged; Go and the libraries Helm renders with are (Debian).
GO_PACKAGES=(golang-go golang-github-masterminds-sprig-dev golang-github-ghodss-yaml-dev
  golang-github-xeipuuv-gojsonschema-dev)
missing=()
for package in "${GO_PACKAGES[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ] || ! command -v go >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  # The package lists are refreshed only when the install cannot find something.
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi
unformatted=$(gofmt -l tests/helm-render)
[ -z "$unformatted" ] || { echo "gofmt -w $unformatted"; exit 1; }
GO111MODULE=off GOPATH=/usr/share/gocode go build -o target/helm-render/helm-render ./tests/helm-render
go version

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> tests"
cargo nextest run --workspace --locked --no-fail-fast
echo "==> doc tests"
cargo test --workspace --doc --locked
