"""The floor of a request and its reply: bare pyzmq ROUTER <- DEALER, CurveZMQ, no broker logic.

Every accepted zchat message is a request on the broker's ROUTER and a reply
to it (the acknowledgement that it is stored). This measures what that round
trip alone costs the server process on this machine: CPU seconds of its Python
thread and of ZeroMQ's I/O thread per round trip, at a given total rate over
``--clients`` connections (or as fast as a window of requests in flight
allows). The server drains and replies in batches, as the broker does.

    python benchmarks/roundtrip.py --clients 500 --rate 4000
    python benchmarks/roundtrip.py --clients 500 --window 8
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from multiprocessing.synchronize import Event
from pathlib import Path
from queue import Queue

import zmq

REQUEST = b"q" * 150
"""About the size of an encoded `send` of a 100-byte text."""
REPLY = b"r" * 60
BATCH = 512


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) per thread name of process ``pid``."""
    ticks = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        used[name] = used.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return used


def server(ports: Queue[int], public: bytes, secret: bytes, stop: Event) -> None:
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.curve_server = True
    router.curve_publickey = public
    router.curve_secretkey = secret
    ports.put(router.bind_to_random_port("tcp://127.0.0.1"))
    poller = zmq.Poller()
    poller.register(router, zmq.POLLIN)
    while not stop.is_set():
        if not poller.poll(100):
            continue
        batch = []
        for _ in range(BATCH):
            try:
                routing_id = router.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            router.recv()
            batch.append(routing_id)
        for routing_id in batch:
            router.send(routing_id, zmq.SNDMORE)
            router.send(REPLY)
    router.close(0)
    context.term()


def clients(
    port: int,
    public: bytes,
    count: int,
    rate: float | None,
    window: int,
    duration: float,
    results: Queue[int],
) -> None:
    context = zmq.Context()
    context.set(zmq.MAX_SOCKETS, count + 64)
    poller = zmq.Poller()
    dealers = []
    for _ in range(count):
        dealer = context.socket(zmq.DEALER)
        client_public, client_secret = zmq.curve_keypair()
        dealer.curve_serverkey = public
        dealer.curve_publickey = client_public
        dealer.curve_secretkey = client_secret
        dealer.connect(f"tcp://127.0.0.1:{port}")
        poller.register(dealer, zmq.POLLIN)
        dealers.append(dealer)
    replies = 0
    end = time.monotonic() + duration
    sent = 0
    due = time.monotonic()
    if rate is None:
        for dealer in dealers:
            for _ in range(window):
                dealer.send(REQUEST)
    while time.monotonic() < end:
        if rate is not None:
            now = time.monotonic()
            while due <= now:
                dealers[sent % count].send(REQUEST)
                sent += 1
                due += 1 / rate
            timeout_ms = max(0, int((due - time.monotonic()) * 1000))
        else:
            timeout_ms = 50
        for socket, _ in poller.poll(timeout_ms):
            while True:
                try:
                    socket.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                replies += 1
                if rate is None:
                    socket.send(REQUEST)
    results.put(replies)
    for dealer in dealers:
        dealer.close(0)
    context.term()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--rate", type=float, default=None, help="total requests/s offered")
    parser.add_argument("--window", type=int, default=8, help="without --rate: in flight each")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    public, secret = zmq.curve_keypair()
    ports: Queue[int] = multiprocessing.Queue()  # type: ignore[assignment]
    results: Queue[int] = multiprocessing.Queue()  # type: ignore[assignment]
    stop = multiprocessing.Event()
    serving = multiprocessing.Process(target=server, args=(ports, public, secret, stop))
    serving.start()
    port = ports.get(timeout=30)
    per_process = args.clients // args.processes
    rate = args.rate / args.processes if args.rate else None
    warmup = 2.0
    senders = [
        multiprocessing.Process(
            target=clients,
            args=(port, public, per_process, rate, args.window, args.duration + warmup, results),
        )
        for _ in range(args.processes)
    ]
    for sender in senders:
        sender.start()
    assert serving.pid is not None
    time.sleep(warmup)  # connections and CURVE handshakes settle before the window opens
    before, started = thread_cpu(serving.pid), time.monotonic()
    time.sleep(args.duration)
    after, window = thread_cpu(serving.pid), time.monotonic() - started
    replies = sum(results.get(timeout=60) for _ in senders)
    for sender in senders:
        sender.join()
    stop.set()
    serving.join()

    per_s = replies / (args.duration + warmup)
    round_trips = per_s * window
    figures = {
        "clients": per_process * args.processes,
        "rate": args.rate,
        "round_trips_per_s": per_s,
        "cpu_us_per_round_trip": {
            name: (after[name] - before.get(name, 0.0)) * 1e6 / round_trips
            for name in after
            if after[name] - before.get(name, 0.0) > 0
        },
    }
    print(f"{figures['clients']} clients, {per_s:,.0f} round trips/s")
    for name, micros in figures["cpu_us_per_round_trip"].items():  # type: ignore[attr-defined]
        print(f"  {name:<12} {micros:6.1f} us per round trip")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
