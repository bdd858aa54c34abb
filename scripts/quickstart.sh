#!/usr/bin/env bash
# Quickstart: installs what is missing, starts a local "on-prem" and "AWS" broker, writes demo
# Jaeger spans to the on-prem one (strait-demo), runs strait, and shows the spans arriving on the
# AWS one.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SPANS="${STRAIT_DEMO_SPANS:-20000}"
TOPIC=jaeger-spans
SOURCE=127.0.0.1:${STRAIT_DEMO_SOURCE_PORT:-19092}
TARGET=127.0.0.1:${STRAIT_DEMO_TARGET_PORT:-19093}

log() { printf '\n==> %s\n' "$*"; }

bash scripts/install-deps.sh
# Rust installed by scripts/install-deps.sh (rustup) lives in ~/.cargo/bin.
export PATH="$HOME/.cargo/bin:$PATH"
log "building strait and strait-demo"
cargo build --quiet --locked --workspace --bins
STRAIT="$ROOT/target/debug/strait"
DEMO="$ROOT/target/debug/strait-demo"

strait_pid=""
cleanup() {
  [ -n "$strait_pid" ] && kill "$strait_pid" 2>/dev/null || true
  bash scripts/brokers.sh stop
}
trap cleanup EXIT

log "starting the local brokers (on-prem $SOURCE, AWS $TARGET)"
bash scripts/brokers.sh stop >/dev/null 2>&1 || true
rm -rf .strait-run
bash scripts/brokers.sh start

log "writing $SPANS Jaeger spans to $TOPIC on the on-prem broker"
"$DEMO" produce --bootstrap "$SOURCE" --topic "$TOPIC" --count "$SPANS"

log "running strait: $SOURCE -> $TARGET"
STRAIT_SOURCE__BOOTSTRAP_SERVERS="$SOURCE" \
STRAIT_TARGET__BOOTSTRAP_SERVERS="$TARGET" \
STRAIT_TOPICS__INCLUDE="$TOPIC" \
STRAIT_HTTP__LISTEN=127.0.0.1:0 \
STRAIT_LOG_FORMAT=text \
  "$STRAIT" run >.strait-run/strait.log 2>&1 &
strait_pid=$!

log "waiting for the spans on the AWS broker"
for _ in $(seq 1 120); do
  if ! kill -0 "$strait_pid" 2>/dev/null; then
    echo "strait exited early; its log:"; cat .strait-run/strait.log; exit 1
  fi
  line=$("$DEMO" count --bootstrap "$TARGET" --topic "$TOPIC" 2>/dev/null || true)
  got=$(sed -n 's/.*: \([0-9]*\) records.*/\1/p' <<<"$line")
  [ -n "$got" ] && printf '   %s\n' "$line"
  if [ "${got:-0}" -ge "$SPANS" ]; then
    kill -TERM "$strait_pid"; wait "$strait_pid" || true; strait_pid=""
    log "replicated $got of $SPANS spans from on-prem to AWS"
    tail -n 3 .strait-run/strait.log
    exit 0
  fi
  sleep 1
done
echo "timed out; strait's log:"; tail -n 50 .strait-run/strait.log
exit 1
