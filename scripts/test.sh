#!/usr/bin/env bash
# The whole test suite, every package of the workspace (strait and crates/strait-spans): lints,
# then unit, property and integration tests against real local brokers (started by the tests
# themselves). With CI set, a missing broker fails the run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Rust installed by scripts/install-deps.sh (rustup) lives in ~/.cargo/bin.
export PATH="$HOME/.cargo/bin:$PATH"
cargo fmt --all --check
bash scripts/validate-deploy.sh
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked -- --test-threads=2
