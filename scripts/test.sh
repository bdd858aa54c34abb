#!/usr/bin/env bash
# The whole test suite: lints, then unit, property and integration tests against real local
# brokers (started by the tests themselves). With CI set, a missing broker fails the run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo fmt --check
bash scripts/validate-deploy.sh
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked -- --test-threads=2
