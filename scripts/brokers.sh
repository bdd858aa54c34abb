#!/usr/bin/env bash
# Starts or stops two local brokers: "on-prem" (source) and "aws" (target).
#   scripts/brokers.sh start   # source 127.0.0.1:19092, target 127.0.0.1:19093
#   scripts/brokers.sh stop
# State lives in .strait-run/ of the repository. Ports can be changed with
# STRAIT_DEMO_SOURCE_PORT / STRAIT_DEMO_TARGET_PORT.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN="$ROOT/.strait-run"
SOURCE_PORT="${STRAIT_DEMO_SOURCE_PORT:-19092}"
TARGET_PORT="${STRAIT_DEMO_TARGET_PORT:-19093}"
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"

log() { printf '[brokers] %s\n' "$*" >&2; }

broker_bin() {
  if [ -x "$CARGO_BIN/nisshi" ]; then echo "$CARGO_BIN/nisshi"
  elif [ -x "$CARGO_BIN/tansu" ]; then echo "$CARGO_BIN/tansu"
  else log "no broker installed: run scripts/install-deps.sh"; exit 1; fi
}

wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  log "$name broker did not open port $port; see $RUN/$name.log"
  exit 1
}

start_one() {
  local name=$1 port=$2 bin dir
  bin=$(broker_bin)
  dir="$RUN/$name"
  mkdir -p "$dir"
  if [ -f "$RUN/$name.pid" ] && kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then
    log "$name broker already running on $port"
    return
  fi
  local storage="memory://$name/"
  [ "$(basename "$bin")" = tansu ] && storage="sqlite://$dir/tansu.db"
  (cd "$dir" && exec "$bin" broker --cluster-id "strait-$name" \
      --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
      --storage-engine "$storage" >"$RUN/$name.log" 2>&1) &
  echo $! >"$RUN/$name.pid"
  wait_port "$port" "$name"
  log "$name broker ($(basename "$bin")) listening on 127.0.0.1:$port"
}

stop_one() {
  local name=$1
  if [ -f "$RUN/$name.pid" ]; then
    kill "$(cat "$RUN/$name.pid")" 2>/dev/null || true
    rm -f "$RUN/$name.pid"
  fi
}

case "${1:-}" in
  start) mkdir -p "$RUN"; start_one onprem "$SOURCE_PORT"; start_one aws "$TARGET_PORT" ;;
  stop) stop_one onprem; stop_one aws; log "stopped" ;;
  *) echo "usage: $0 start|stop" >&2; exit 64 ;;
esac
