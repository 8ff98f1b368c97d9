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

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> tests"
cargo nextest run --workspace --locked --no-fail-fast
echo "==> doc tests"
cargo test --workspace --doc --locked
