#!/usr/bin/env bash
# Starts or stops two local one-node Apache Kafka clusters (KRaft): "on-prem" (source) and
# "aws" (target), from the jars scripts/install-deps.sh resolved, with tools/kafka/node.sh.
#   scripts/brokers.sh start   # source 127.0.0.1:19092, target 127.0.0.1:19093
#   scripts/brokers.sh stop
# State and logs live in .strait-run/ of the repository. Ports can be changed with
# STRAIT_DEMO_SOURCE_PORT / STRAIT_DEMO_TARGET_PORT (each node also uses the next port up for
# its controller).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN="$ROOT/.strait-run"
SOURCE_PORT="${STRAIT_DEMO_SOURCE_PORT:-19092}"
TARGET_PORT="${STRAIT_DEMO_TARGET_PORT:-19093}"
. "$ROOT/tools/kafka/env.sh"

log() { printf '[brokers] %s\n' "$*" >&2; }

# Ready when the broker has logged its start and accepts connections; gives up after 120 s
# with the log's last lines.
wait_ready() {
  local port=$1 name=$2 pid=$3
  for _ in $(seq 1 1200); do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name broker exited; last lines of $RUN/$name.log:"; tail -n 20 "$RUN/$name.log" >&2; exit 1
    fi
    if grep -q "Kafka Server started" "$RUN/$name.log" 2>/dev/null \
       && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  log "$name broker not ready on port $port after 120 s; last lines of $RUN/$name.log:"
  tail -n 20 "$RUN/$name.log" >&2
  exit 1
}

start_one() {
  local name=$1 port=$2 dir="$RUN/$1"
  local controller=$((port + 1000))
  if [ -f "$RUN/$name.pid" ] && kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then
    log "$name broker already running on $port"
    return
  fi
  mkdir -p "$dir"
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
  [ -f "$dir/cluster-id" ] || kafka_class kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1 >"$dir/cluster-id"
  setsid bash "$KAFKA_TOOLS_DIR/node.sh" "$dir" >"$RUN/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
  wait_ready "$port" "$name" "$!"
  log "$name: Apache Kafka $KAFKA_VERSION listening on 127.0.0.1:$port (log $RUN/$name.log)"
}

stop_one() {
  local name=$1
  if [ -f "$RUN/$name.pid" ]; then
    # node.sh runs in a session of its own: end the whole group (the JVM with it).
    kill -TERM -- "-$(cat "$RUN/$name.pid")" 2>/dev/null || true
    rm -f "$RUN/$name.pid"
  fi
}

case "${1:-}" in
  start)
    kafka_installed || { log "Apache Kafka $KAFKA_VERSION is not installed: run scripts/install-deps.sh"; exit 69; }
    mkdir -p "$RUN"
    # Both start at once (a JVM start is mostly CPU on one core); either failing fails start.
    start_one onprem "$SOURCE_PORT" & onprem=$!
    start_one aws "$TARGET_PORT" & aws=$!
    wait "$onprem"; wait "$aws" ;;
  stop) stop_one onprem; stop_one aws; log "stopped" ;;
  *) echo "usage: $0 start|stop" >&2; exit 64 ;;
esac
