#!/usr/bin/env bash
# An emulated WAN link from this network namespace to a new one, for strait's tests and benches.
#   tools/wan/link.sh up NAME RATE DELAY_MS   # e.g. up swan1 8mbit 25: namespace NAME, link up
#   tools/wan/link.sh cut NAME | heal NAME    # drop every packet / restore
#   tools/wan/link.sh down NAME               # remove everything
# The far side is 10.203.N.2 inside namespace NAME, this side 10.203.N.1 (N from the name's
# checksum), joined by two TUN devices and tools/wan/delayline.py (one-way DELAY_MS each way);
# tbf limits the rate in both directions. Needs root, ip(8) and tc(8). Test tool only: the
# addresses exist only inside namespaces this script creates.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cmd=${1:-}; name=${2:-}
[ -n "$cmd" ] && [ -n "$name" ] || { echo "usage: $0 up|cut|heal|down NAME [RATE DELAY_MS]" >&2; exit 64; }
state="/tmp/strait-wan-$name"
n=$(( $(printf '%s' "$name" | cksum | cut -d' ' -f1) % 200 + 20 ))
near=10.203.$n.1; far=10.203.$n.2
dev_a="${name:0:10}a"; dev_b="${name:0:10}b"

case "$cmd" in
  up)
    rate=${3:-10mbit}; delay=${4:-25}
    mkdir -p "$state"; : > "$state/control"
    ip netns add "$name"
    python3 "$HERE/delayline.py" --dev-a "$dev_a" --dev-b "$dev_b" --delay-ms "$delay" \
      --control "$state/control" >"$state/delayline.out" 2>"$state/delayline.err" &
    echo $! > "$state/pid"
    for _ in $(seq 1 100); do grep -q ready "$state/delayline.out" 2>/dev/null && break; sleep 0.05; done
    grep -q ready "$state/delayline.out" || { cat "$state/delayline.err" >&2; exit 1; }
    ip link set "$dev_b" netns "$name"
    ip addr add "$near" peer "$far" dev "$dev_a"
    ip link set "$dev_a" up
    ip netns exec "$name" ip addr add "$far" peer "$near" dev "$dev_b"
    ip netns exec "$name" ip link set "$dev_b" up
    ip netns exec "$name" ip link set lo up
    tc qdisc replace dev "$dev_a" root tbf rate "$rate" burst 32kbit latency 400ms
    ip netns exec "$name" tc qdisc replace dev "$dev_b" root tbf rate "$rate" burst 32kbit latency 400ms
    echo "$far"
    ;;
  cut) echo cut > "$state/control" ;;
  heal) : > "$state/control" ;;
  down)
    [ -f "$state/pid" ] && kill "$(cat "$state/pid")" 2>/dev/null || true
    ip netns pids "$name" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$name" 2>/dev/null || true
    ip link del "$dev_a" 2>/dev/null || true
    rm -rf "$state"
    ;;
  *) echo "usage: $0 up|cut|heal|down NAME [RATE DELAY_MS]" >&2; exit 64 ;;
esac
