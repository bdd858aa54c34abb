#!/usr/bin/env python3
"""A packet delay line between two TUN devices: strait's stand-in for netem, which this kernel
lacks. Packets read from one device are written to the other after a fixed one-way delay;
while the link is "cut" every packet is dropped; a share of packets can be dropped for loss.

  delayline.py --dev-a swa0 --dev-b swb0 --delay-ms 25 [--loss 0.0] --control FILE

Creates both TUN devices (IFF_TUN | IFF_NO_PI) in the current network namespace and prints
"ready" on stdout; the caller then moves one into another namespace and addresses them. While
FILE exists and contains "cut", the link is cut; anything else (or no file) restores it. Rate
limits are set by the caller with `tc ... tbf` on the devices. Test tool only.
"""
import argparse
import fcntl
import heapq
import os
import random
import select
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--dev-a", required=True)
    p.add_argument("--dev-b", required=True)
    p.add_argument("--delay-ms", type=float, default=25.0)
    p.add_argument("--loss", type=float, default=0.0)
    p.add_argument("--control", required=True)
    p.add_argument("--max-seconds", type=float, default=3600.0, help="stop by itself after this long")
    args = p.parse_args()

    a, b = open_tun(args.dev_a), open_tun(args.dev_b)
    peer = {a: b, b: a}
    delay = args.delay_ms / 1000.0
    queue = []  # (due, seq, fd, packet)
    seq = 0
    cut = False
    last_check = 0.0
    deadline = time.monotonic() + args.max_seconds
    print("ready", flush=True)
    while time.monotonic() < deadline:
        now = time.monotonic()
        if now - last_check > 0.05:
            last_check = now
            try:
                with open(args.control) as f:
                    cut = f.read().strip() == "cut"
            except FileNotFoundError:
                cut = False
        timeout = 0.05
        if queue:
            timeout = max(0.0, min(timeout, queue[0][0] - now))
        readable, _, _ = select.select([a, b], [], [], timeout)
        now = time.monotonic()
        for fd in readable:
            while True:
                try:
                    packet = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if cut or (args.loss > 0 and random.random() < args.loss):
                    continue
                seq += 1
                heapq.heappush(queue, (now + delay, seq, peer[fd], packet))
        while queue and queue[0][0] <= time.monotonic():
            _, _, fd, packet = heapq.heappop(queue)
            if cut:
                continue
            try:
                os.write(fd, packet)
            except (BlockingIOError, OSError):
                pass  # the device queue is full or down: the packet is lost, as on a wire
    return 0


if __name__ == "__main__":
    sys.exit(main())
