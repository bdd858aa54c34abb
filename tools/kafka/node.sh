#!/usr/bin/env bash
# Runs one Apache Kafka KRaft node (broker and controller) from the jars that
# scripts/install-deps.sh resolved. Used by the tests (tests/common/kafka.rs), the quickstart
# (scripts/brokers.sh) and the bench.
#
#   tools/kafka/node.sh DIR [WATCH_PID]
#
# DIR holds:
#   server.properties  the node's config; its log.dirs must be DIR/data
#   cluster-id         the KRaft cluster id (22 characters, base64url), the same on every node
#   format-args        optional: extra arguments for the storage format, one per line
#                      (e.g. --add-scram then SCRAM-SHA-512=[name=u,password=p])
# The data directory is formatted on first start only. The node's output goes to stdout (the
# callers send it to DIR/broker.log). With WATCH_PID the node is killed when that process
# ends, so a test binary that exits without cleaning up leaves no broker behind. The node's
# heap is KAFKA_HEAP (default 512m); KAFKA_JVM_EXTRA adds JVM flags.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

dir=${1:?usage: node.sh DIR [WATCH_PID]}
watch=${2:-}
if ! kafka_installed; then
  echo "Apache Kafka $KAFKA_VERSION is not installed in $KAFKA_HOME: run scripts/install-deps.sh" >&2
  exit 69
fi
[ -f "$dir/server.properties" ] || { echo "no $dir/server.properties" >&2; exit 64; }
cluster_id=$(cat "$dir/cluster-id")

if [ ! -f "$dir/data/meta.properties" ]; then
  format_args=()
  if [ -f "$dir/format-args" ]; then mapfile -t format_args <"$dir/format-args"; fi
  kafka_class kafka.tools.StorageTool format --ignore-formatted -t "$cluster_id" \
    -c "$dir/server.properties" "${format_args[@]}" >/dev/null
fi

heap=${KAFKA_HEAP:-512m}
# shellcheck disable=SC2086
java -Xms"$heap" -Xmx"$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
  -Djava.awt.headless=true -Dlog4j2.configurationFile="$KAFKA_TOOLS_DIR/log4j2.properties" \
  ${KAFKA_JVM_EXTRA:-} -cp "$KAFKA_CP" kafka.Kafka "$dir/server.properties" &
node=$!
if [ -z "$watch" ]; then
  wait "$node"
  exit $?
fi
trap 'kill -9 "$node" 2>/dev/null; exit 143' TERM INT
while kill -0 "$watch" 2>/dev/null && kill -0 "$node" 2>/dev/null; do sleep 1; done
if kill -0 "$node" 2>/dev/null; then
  kill -9 "$node" 2>/dev/null || true
  exit 0
fi
wait "$node"
