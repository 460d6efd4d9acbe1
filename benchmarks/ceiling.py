"""The ceiling of the stack: bare pyzmq PUB -> SUB fan-out, no broker logic at all.

One PUB socket publishes ``--size``-byte bodies (plus the 70 bytes a sealed
zchat event adds) round-robin to ``--rooms`` topics; ``--rooms`` x
``--members`` SUB sockets, spread over ``--processes`` receiver processes
polled like the load generator's, count what they receive. CurveZMQ is on by
default, as on the broker. The result is the deliveries per second the
receivers took in the measured window: no broker can deliver more than this
on the same machine with the same receivers.

    python benchmarks/ceiling.py --rooms 10 --members 50 --size 100 --duration 5
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

import zmq

SEALING_OVERHEAD = 70
"""What sealing adds to a text: msgpack framing, 12-byte nonce, 16-byte tag, seq, count, kid."""


def topic(room: int) -> bytes:
    return f"load-room{room:04d}\x00".encode()


def receiver(
    control: Connection, port: int, server_key: bytes | None, rooms: list[int], start: float
) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    context = zmq.Context()
    context.set(zmq.MAX_SOCKETS, len(rooms) + 64)
    poller = zmq.Poller()
    subscribers = []
    for room in rooms:
        subscriber = context.socket(zmq.SUB)
        if server_key is not None:
            public, secret = zmq.curve_keypair()
            subscriber.setsockopt(zmq.CURVE_SERVERKEY, server_key)
            subscriber.setsockopt(zmq.CURVE_PUBLICKEY, public)
            subscriber.setsockopt(zmq.CURVE_SECRETKEY, secret)
        subscriber.setsockopt(zmq.RCVHWM, 0)
        subscriber.setsockopt(zmq.LINGER, 0)
        subscriber.setsockopt(zmq.SUBSCRIBE, topic(room))
        subscriber.connect(f"tcp://127.0.0.1:{port}")
        poller.register(subscriber, zmq.POLLIN)
        subscribers.append(subscriber)
    seen = set()
    count = 0
    counts: dict[str, int] = {}
    window = control.recv()  # (start, end) wall clock, sent once the publisher is ready
    offset = time.monotonic() - time.time()
    t0, t1 = window[0] + offset, window[1] + offset
    warm_deadline = time.monotonic() + 30
    while len(seen) < len(subscribers) and time.monotonic() < warm_deadline:
        for socket, _ in poller.poll(100):
            socket.recv_multipart()
            seen.add(socket)
    control.send(("warm", len(seen)))
    started = False
    while True:
        now = time.monotonic()
        if not started and now >= t0:
            counts["start"] = count
            started = True
        if now >= t1:
            counts["end"] = count
            break
        for socket, _ in poller.poll(10):
            for _ in range(256):
                try:  # frame by frame, as the load generator receives
                    topic_frame = socket.recv(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                if topic_frame.more:
                    socket.recv()
                count += 1
    control.send(("done", counts["end"] - counts.get("start", 0)))
    for subscriber in subscribers:
        subscriber.close(0)
    context.term()


def _threads_cpu() -> dict[str, float]:
    """CPU seconds of this process per thread name (Python's thread, ZeroMQ's I/O thread)."""
    spent: dict[str, float] = {}
    ticks = os.sysconf("SC_CLK_TCK")
    for task in Path("/proc/self/task").glob("*"):
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        name = (task / "comm").read_text().strip()
        spent[name] = spent.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return spent


def main() -> int:  # noqa: PLR0915 (one straight script: set up, publish, collect)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rate", type=float, default=0.0, help="messages/s; 0 = flat out")
    parser.add_argument("--hwm", type=int, default=10_000)
    parser.add_argument("--no-curve", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    context = zmq.Context()
    publisher = context.socket(zmq.PUB)
    publisher.setsockopt(zmq.SNDHWM, args.hwm)
    publisher.setsockopt(zmq.LINGER, 0)
    server_key = None
    if not args.no_curve:
        public, secret = zmq.curve_keypair()
        publisher.setsockopt(zmq.CURVE_SERVER, 1)
        publisher.setsockopt(zmq.CURVE_PUBLICKEY, public)
        publisher.setsockopt(zmq.CURVE_SECRETKEY, secret)
        server_key = public
    publisher.bind("tcp://127.0.0.1:*")
    port = int(publisher.get_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1])

    members = [room for room in range(args.rooms) for _ in range(args.members)]
    shares = [members[index :: args.processes] for index in range(args.processes)]
    spawn = multiprocessing.get_context("spawn")
    controls, processes = [], []
    for share in shares:
        parent, child = spawn.Pipe()
        process = spawn.Process(target=receiver, args=(child, port, server_key, share, 0.0))
        process.start()
        controls.append(parent)
        processes.append(process)

    body = os.urandom(args.size + SEALING_OVERHEAD)
    topics = [topic(room) for room in range(args.rooms)]
    warmup = 3.0 + len(members) / 500
    start = time.time() + warmup
    end = start + args.duration
    for control in controls:
        control.send((start, end))
    interval = 1.0 / args.rate if args.rate else 0.0
    sent = 0
    stop = time.monotonic() + warmup + args.duration + 0.5
    # Until the window: a trickle, so every subscriber is seen to be connected.
    while time.time() < start:
        for name in topics:
            publisher.send_multipart((name, body))
        time.sleep(0.01)
    cpu_start = _threads_cpu()
    cpu_window: dict[str, float] = {}
    next_send = time.monotonic()
    while time.monotonic() < stop:
        if not cpu_window and time.time() >= end:
            now = _threads_cpu()
            cpu_window = {name: spent - cpu_start.get(name, 0.0) for name, spent in now.items()}
        for name in topics:
            publisher.send_multipart((name, body))
            sent += 1
        if interval:
            next_send += interval * len(topics)
            delay = next_send - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    publisher_cpu = cpu_window
    warm = done = 0
    for control in controls:
        for _ in range(2):
            kind, value = control.recv()
            if kind == "warm":
                warm += value
            else:
                done += value
    for process in processes:
        process.join(10)
    publisher.close(0)
    context.term()
    figures = {
        "rooms": args.rooms,
        "members": args.members,
        "size": args.size,
        "curve": not args.no_curve,
        "rate": args.rate,
        "processes": args.processes,
        "published_per_s": sent / (args.duration + 0.5),
        "deliveries_per_s": done / args.duration,
        "subscribers_connected": warm,
        "publisher_cpu_s": publisher_cpu,
        "publisher_cpu_us_per_delivery": {
            name: spent * 1e6 / done for name, spent in publisher_cpu.items()
        }
        if done
        else {},
    }
    print(
        f"bare pyzmq PUB->SUB {args.rooms}x{args.members}, {args.size} B, "
        f"{'CURVE' if not args.no_curve else 'plain'}, rate {args.rate or 'flat out'}: "
        f"{figures['deliveries_per_s']:,.0f} deliveries/s "
        f"({warm}/{len(members)} subscribers connected); publisher CPU "
        + ", ".join(f"{name} {spent:.2f} s" for name, spent in publisher_cpu.items())
    )
    if args.json:
        with open(args.json, "w") as out:
            json.dump(figures, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
