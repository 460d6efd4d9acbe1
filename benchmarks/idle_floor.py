"""The floor of broker memory per idle client: bare pyzmq sockets, no broker logic.

A server process holds a ROUTER and a PUB configured like the broker's (IPv6,
linger, ZMTP heartbeats 2 s / 6 s / 6 s, CurveZMQ server, 1 MiB MAXMSGSIZE on
the ROUTER, SNDHWM 10,000 on the PUB). Client processes open ``--clients``
DEALER + SUB pairs with CurveZMQ client keys, as a connected zchat client
does. Each DEALER says hello until it is welcomed; each SUB subscribes to its
room (``--topics 2``: two rooms) and receives ``--events`` publications, each
acknowledged on the DEALER and answered by the server, so the buffers real
traffic touches are counted. Once the server has every acknowledgement it
reads its own /proc status:

    KiB per client = (VmRSS after - VmRSS before connecting) / clients

    python benchmarks/idle_floor.py                      # baseline, 2,000 clients, 3 runs
    python benchmarks/idle_floor.py --no-zero-copy       # decoder copies messages out
    python benchmarks/idle_floor.py --only router        # room traffic over the ROUTER too
    python benchmarks/idle_floor.py --arena-max 1 --trim
    python benchmarks/idle_floor.py --events 300 --batch 10   # past libzmq's 256-message
                                                              # pipe chunks: a long-lived client

Levers: ``--no-curve``, ``--no-heartbeat`` (both sides), ``--no-zero-copy``
(context option ZMQ_ZERO_COPY_RECV=0), ``--sndbuf`` / ``--rcvbuf`` (kernel
socket buffers), ``--hwm`` (SNDHWM and RCVHWM), ``--only router|pub`` (one
connection per client), ``--io-threads``, ``--sockopt NAME=VALUE`` (any
integer socket option on both server sockets, e.g. ``TCP_KEEPALIVE=1``), and
for the server's allocator ``--arena-max`` (MALLOC_ARENA_MAX),
``--mmap-threshold`` (mallopt M_MMAP_THRESHOLD), ``--trim`` (malloc_trim(0)
after measuring, reported separately) and ``--preload LIB`` (another malloc,
e.g. jemalloc). Besides resident memory the table shows what glibc malloc
reports in use (mallinfo2), so allocated and resident memory can be told
apart: libzmq allocates per connection two pipe chunks of 256 messages x 64
bytes, an 8 KiB encoder buffer and an 8 KiB decoder buffer with its message
headers, but only the pages written to are resident.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import zmq

HEARTBEAT_IVL_MS = 2_000
HEARTBEAT_TIMEOUT_MS = 6_000
ROUTER_MAXMSGSIZE = 1024 * 1024
PUB_SNDHWM = 10_000
SERVER_LINGER_MS = 1_000
HELLO_REPEAT_S = 1.0
"""A client repeats its hello this often until the server's welcome arrives."""
STALL_S = 1.0
"""With no acknowledgement for this long, the server sends another round."""
PUB_ROUND_INTERVAL_S = 0.5
"""With ``--only pub`` nothing is acknowledged to the server: a round every this often."""

M_MMAP_THRESHOLD = -3
ZMQ_ZERO_COPY_RECV = 10
"""A context option libzmq 4.3 accepts although pyzmq does not name it: 0 makes the TCP
decoder copy each message out instead of keeping its 8 KiB read buffer referenced."""
STATUS_FIELDS = ("VmRSS", "RssAnon", "RssFile")


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def status_kib() -> dict[str, int]:
    """VmRSS, RssAnon and RssFile of this process, in KiB."""
    fields: dict[str, int] = {}
    with open(f"/proc/{os.getpid()}/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in STATUS_FIELDS:
                fields[name] = int(value.split()[0])
    return fields


def malloc_in_use() -> int | None:
    """Bytes glibc malloc has handed out and not taken back (heap + mmapped chunks)."""
    libc = _libc()
    if not hasattr(libc, "mallinfo2"):
        return None  # another allocator, or an old glibc
    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


def room_topic(room: int) -> bytes:
    return f"room{room:05d}\x00".encode()


def rooms_of(client: int, clients: int, members: int, topics: int) -> list[int]:
    """The rooms client ``client`` is in: its own block of ``members``, and with two topics
    also the room half-way round."""
    count = max(1, -(-clients // members))
    first = client // members
    rooms = [first]
    if topics > 1:
        rooms.append((first + max(1, count // 2)) % count)
    return rooms


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def read_line(fd: int) -> str:
    """One line from a pipe, unbuffered (so polling the descriptor stays truthful); "" at end."""
    line = bytearray()
    while not line.endswith(b"\n"):
        chunk = os.read(fd, 1)
        if not chunk:
            break
        line += chunk
    return line.decode()


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def heartbeat(socket: zmq.Socket[bytes]) -> None:
    socket.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
    socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    socket.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TIMEOUT_MS)


# --- server ---------------------------------------------------------------------------------


def configure_server(
    socket: zmq.Socket[bytes], config: dict[str, Any], public: bytes, secret: bytes
) -> None:
    socket.setsockopt(zmq.IPV6, 1)
    socket.setsockopt(zmq.LINGER, SERVER_LINGER_MS)
    if config["heartbeat"]:
        heartbeat(socket)
    if config["curve"]:
        socket.setsockopt(zmq.CURVE_SERVER, 1)
        socket.setsockopt(zmq.CURVE_SECRETKEY, secret)
        socket.setsockopt(zmq.CURVE_PUBLICKEY, public)
    if config["sndbuf"] is not None:
        socket.setsockopt(zmq.SNDBUF, config["sndbuf"])
    if config["rcvbuf"] is not None:
        socket.setsockopt(zmq.RCVBUF, config["rcvbuf"])
    if config["hwm"] is not None:
        socket.setsockopt(zmq.SNDHWM, config["hwm"])
        socket.setsockopt(zmq.RCVHWM, config["hwm"])
    for name, value in config["sockopt"]:
        socket.setsockopt(getattr(zmq, name), value)


class Server:
    """The server process: a ROUTER and a PUB like the broker's, and the traffic of joining."""

    def __init__(self, config: dict[str, Any], control: int) -> None:
        self.config = config
        self.control = control
        self.clients: int = config["clients"]
        self.events: int = config["events"]
        self.mode: str = config["only"]
        self.payload = b"e" * config["size"]
        rooms = max(1, -(-self.clients // config["members"]))
        self.topics = [room_topic(room) for room in range(rooms)]
        self.public, self.secret = zmq.curve_keypair()
        self.context = zmq.Context(io_threads=config["io_threads"])
        if config["no_zero_copy"]:  # before any socket: each socket copies it at creation
            self.context.set(ZMQ_ZERO_COPY_RECV, 0)
        self.router = self.context.socket(zmq.ROUTER)
        self.publisher = self.context.socket(zmq.PUB)
        self.peer_of: list[bytes] = [b""] * self.clients
        """The latest routing id of each client ("" until its hello)."""
        self.routing_ids: set[bytes] = set()
        self.welcomed: set[int] = set()
        self.hellos = 0
        self.batch: int = config["batch"]
        self.sent = 0
        """Events each client has been sent so far (rounds x batch)."""
        self.acked = [0] * self.clients
        self.caught_up = self.clients
        """Clients that acknowledged every event sent so far (up to ``events``)."""
        self.progress_at = time.monotonic()
        self.done = 0
        self.measure = False
        self.started = time.monotonic()
        self.hello_all: float | None = None

    def close(self) -> None:
        self.router.close(linger=0)
        self.publisher.close(linger=0)
        self.context.term()

    def bind(self) -> None:
        for socket in (self.router, self.publisher):
            configure_server(socket, self.config, self.public, self.secret)
        self.router.setsockopt(zmq.MAXMSGSIZE, ROUTER_MAXMSGSIZE)
        if self.config["hwm"] is None:
            self.publisher.setsockopt(zmq.SNDHWM, PUB_SNDHWM)
        self.router.bind("tcp://127.0.0.1:0")
        self.publisher.bind("tcp://127.0.0.1:0")

    def finished(self) -> bool:
        if self.mode == "pub":
            return self.measure
        return self.done == self.clients

    def run(self) -> None:
        """Report readiness, serve until every client is through, measure, wait for "stop"."""
        emit(
            {
                "event": "ready",
                "router": self.router.get_string(zmq.LAST_ENDPOINT),
                "publisher": self.publisher.get_string(zmq.LAST_ENDPOINT),
                "server_key": self.public.decode("ascii"),
                "before": status_kib(),
                "malloc_before": malloc_in_use(),
            }
        )
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.control, zmq.POLLIN)
        self.started = time.monotonic()
        deadline = self.started + self.config["timeout"]
        next_round = self.started
        while not self.finished():
            now = time.monotonic()
            if now > deadline:
                emit({"event": "failed", "hellos": self.hellos, "done": self.done})
                return
            if self.mode == "pub":  # nobody acknowledges: rounds on a clock
                if now >= next_round:
                    self.send_round()
                    next_round = now + PUB_ROUND_INTERVAL_S
            elif self.hellos == self.clients and self.round_due(now):
                self.send_round()
            for item, _ in poller.poll(100):
                if item is self.router:
                    self.drain_router()
                else:
                    line = read_line(self.control)
                    if not line:  # the driver is gone
                        return
                    self.measure = line.strip() == "measure"
        after, malloc_after = status_kib(), malloc_in_use()
        trimmed = None
        if self.config["trim"]:
            _libc().malloc_trim(0)
            trimmed = status_kib()
        emit(
            {
                "event": "measured",
                "after": after,
                "malloc_after": malloc_after,
                "trimmed": trimmed,
                "hello_all_s": self.hello_all,
                "reconnects": len(self.routing_ids) - self.hellos,
                "ready_s": time.monotonic() - self.started,
            }
        )
        read_line(self.control)  # "stop", or end of input

    def drain_router(self) -> None:
        while True:
            try:
                peer, body = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            kind, index = body[:1], int(body[1:9])
            self.routing_ids.add(peer)
            self.peer_of[index] = peer
            if kind == b"H":  # a client repeats its hello until it is welcomed
                self.router.send_multipart([peer, b"W" + self.payload])
                if index not in self.welcomed:
                    self.welcomed.add(index)
                    self.hellos += 1
                    if self.hellos == self.clients:
                        self.hello_all = time.monotonic() - self.started
            elif kind == b"A":  # how many events the client has had so far; answered
                self.router.send_multipart([peer, b"R"])
                self.acknowledged(index, min(int(body[9:]), self.events))

    def acknowledged(self, index: int, count: int) -> None:
        old = self.acked[index]
        if count <= old:
            return
        self.acked[index] = count
        self.progress_at = time.monotonic()
        wanted = min(self.sent, self.events)
        self.caught_up += old < wanted <= count
        self.done += count == self.events

    def round_due(self, now: float) -> bool:
        """The next round goes out once every client has had the last one, or when progress
        stalls (an event or an acknowledgement lost with a dropped connection)."""
        if self.sent < self.events and self.caught_up == self.clients:
            return True
        return now - self.progress_at > STALL_S

    def send_round(self) -> None:
        """``batch`` events to every room, or over the ROUTER to every client short of events."""
        for _ in range(self.batch):
            if self.mode != "router":
                for topic in self.topics:
                    self.publisher.send_multipart([topic, self.payload])
            else:
                for index, peer in enumerate(self.peer_of):
                    if peer and self.acked[index] < self.events:
                        self.router.send_multipart([peer, b"E" + self.payload])
        self.sent += self.batch
        wanted = min(self.sent, self.events)
        self.caught_up = sum(count >= wanted for count in self.acked)
        self.progress_at = time.monotonic()


def serve(config: dict[str, Any], control: int) -> None:
    threshold = config["mmap_threshold"]
    if threshold is not None and not _libc().mallopt(M_MMAP_THRESHOLD, threshold):
        raise SystemExit("mallopt(M_MMAP_THRESHOLD) refused the value")
    server = Server(config, control)
    try:
        server.bind()
        server.run()
    finally:
        server.close()


# --- clients --------------------------------------------------------------------------------


def configure_client(socket: zmq.Socket[bytes], config: dict[str, Any]) -> None:
    socket.setsockopt(zmq.IPV6, 1)
    socket.setsockopt(zmq.LINGER, 0)
    # No high-water marks on the client side: a client process that falls behind a burst
    # never stops reading, which with heartbeats can trip libzmq's `_input_stopped` assertion.
    socket.setsockopt(zmq.RCVHWM, 0)
    socket.setsockopt(zmq.SNDHWM, 0)
    if config["heartbeat"]:
        heartbeat(socket)
    if config["server_key"] is not None:
        public, secret = zmq.curve_keypair()
        socket.setsockopt(zmq.CURVE_SERVERKEY, config["server_key"].encode("ascii"))
        socket.setsockopt(zmq.CURVE_PUBLICKEY, public)
        socket.setsockopt(zmq.CURVE_SECRETKEY, secret)


class Clients:
    """A client process: clients ``first`` to ``last - 1``, each a DEALER and a SUB."""

    def __init__(self, config: dict[str, Any], control: int) -> None:
        self.config = config
        self.control = control
        self.first: int = config["first"]
        self.last: int = config["last"]
        self.events: int = config["events"]
        self.mode: str = config["only"]
        self.context = zmq.Context()
        self.context.set(zmq.MAX_SOCKETS, 2 * (self.last - self.first) + 64)
        self.dealers: dict[zmq.Socket[bytes], int] = {}
        self.subscribers: dict[zmq.Socket[bytes], int] = {}
        self.dealer_of: dict[int, zmq.Socket[bytes]] = {}
        self.poller = zmq.Poller()
        self.poller.register(control, zmq.POLLIN)
        self.received = dict.fromkeys(range(self.first, self.last), 0)
        self.unwelcomed: set[int] = set()
        self.complete = 0

    def close(self) -> None:
        for socket in (*self.dealers, *self.subscribers):
            socket.close(linger=0)
        self.context.term()

    def connect(self) -> None:
        config = self.config
        for index in range(self.first, self.last):
            if self.mode != "pub":
                dealer = self.context.socket(zmq.DEALER)
                configure_client(dealer, config)
                dealer.connect(config["router"])
                self.hello(dealer, index)
                self.unwelcomed.add(index)
                self.dealers[dealer] = index
                self.dealer_of[index] = dealer
                self.poller.register(dealer, zmq.POLLIN)
            if self.mode != "router":
                subscriber = self.context.socket(zmq.SUB)
                configure_client(subscriber, config)
                for room in rooms_of(index, config["clients"], config["members"], config["topics"]):
                    subscriber.setsockopt(zmq.SUBSCRIBE, room_topic(room))
                subscriber.connect(config["publisher"])
                self.subscribers[subscriber] = index
                self.poller.register(subscriber, zmq.POLLIN)

    def run(self) -> None:
        """Receive and acknowledge until the driver says "stop" (or goes away)."""
        next_hello = time.monotonic() + HELLO_REPEAT_S
        while True:
            if self.unwelcomed and time.monotonic() >= next_hello:
                for index in self.unwelcomed:
                    self.hello(self.dealer_of[index], index)
                next_hello = time.monotonic() + HELLO_REPEAT_S
            for item, _ in self.poller.poll(int(HELLO_REPEAT_S * 1000)):
                if isinstance(item, int):
                    line = read_line(self.control)
                    if not line or line.strip() == "stop":
                        return
                else:
                    self.drain(item)

    def hello(self, dealer: zmq.Socket[bytes], index: int) -> None:
        dealer.send(b"H%08d" % index + b"h" * self.config["size"])

    def drain(self, socket: zmq.Socket[bytes]) -> None:
        subscriber = socket in self.subscribers
        index = self.subscribers[socket] if subscriber else self.dealers[socket]
        while True:
            try:
                frames = socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if not subscriber and frames[0][:1] != b"E":
                if frames[0][:1] == b"W":
                    self.unwelcomed.discard(index)
                continue  # a welcome, or the answer to an acknowledgement
            self.received[index] += 1
            if self.mode != "pub":  # every event is acknowledged with the count so far
                self.dealer_of[index].send(b"A%08d%d" % (index, self.received[index]))
            if self.received[index] == self.events:
                self.complete += 1
                if self.complete == self.last - self.first:
                    emit({"event": "done"})


def run_clients(config: dict[str, Any], control: int) -> None:
    raise_fd_limit()
    clients = Clients(config, control)
    try:
        clients.connect()
        clients.run()
    finally:
        clients.close()


# --- driver ---------------------------------------------------------------------------------


def read_event(process: subprocess.Popen[str], *wanted: str) -> dict[str, Any]:
    assert process.stdout is not None
    while True:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"a helper process ended before sending {' or '.join(wanted)}")
        event: dict[str, Any] = json.loads(line)
        if event["event"] in wanted:
            return event


def spawn(role: str, config: dict[str, Any], env: dict[str, str]) -> subprocess.Popen[str]:
    process = subprocess.Popen(  # noqa: S603 (our own interpreter and script)
        [sys.executable, __file__, "--role", role],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    tell(process, json.dumps(config))
    return process


def tell(process: subprocess.Popen[str], line: str) -> None:
    assert process.stdin is not None
    with contextlib.suppress(BrokenPipeError):
        process.stdin.write(line + "\n")
        process.stdin.flush()


def finish(process: subprocess.Popen[str]) -> None:
    tell(process, "stop")
    assert process.stdin is not None
    with contextlib.suppress(BrokenPipeError):
        process.stdin.close()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def server_env(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    if args.arena_max is not None:
        env["MALLOC_ARENA_MAX"] = str(args.arena_max)
    if args.preload is not None:
        env["LD_PRELOAD"] = args.preload
    return env


def run_once(args: argparse.Namespace) -> dict[str, Any]:
    """One measurement with fresh processes."""
    config = {
        "clients": args.clients,
        "members": args.members,
        "topics": args.topics,
        "events": args.events,
        "batch": args.batch,
        "size": args.size,
        "only": args.only,
        "heartbeat": not args.no_heartbeat,
        "curve": not args.no_curve,
        "timeout": args.timeout,
    }
    server_config = {
        **config,
        "sndbuf": args.sndbuf,
        "rcvbuf": args.rcvbuf,
        "hwm": args.hwm,
        "sockopt": args.sockopt,
        "io_threads": args.io_threads,
        "no_zero_copy": args.no_zero_copy,
        "mmap_threshold": args.mmap_threshold,
        "trim": args.trim,
    }
    server = spawn("server", server_config, server_env(args))
    workers: list[subprocess.Popen[str]] = []
    try:
        ready = read_event(server, "ready")
        share = -(-args.clients // args.processes)
        for first in range(0, args.clients, share):
            worker_config = {
                **config,
                "first": first,
                "last": min(args.clients, first + share),
                "router": ready["router"],
                "publisher": ready["publisher"],
                "server_key": ready["server_key"] if config["curve"] else None,
            }
            workers.append(spawn("clients", worker_config, dict(os.environ)))
        if args.only == "pub":  # no DEALER to acknowledge on: the client processes say so
            for worker in workers:
                read_event(worker, "done")
            tell(server, "measure")
        measured = read_event(server, "measured", "failed")
    finally:
        for worker in workers:
            finish(worker)
        finish(server)
    if measured["event"] == "failed":
        raise RuntimeError(f"not every client was served in time: {measured}")
    before: dict[str, int] = ready["before"]
    after: dict[str, int] = measured["after"]
    trimmed: dict[str, int] | None = measured["trimmed"]
    clients: int = args.clients

    def per_client(late: dict[str, int], field: str = "VmRSS") -> float:
        return (late[field] - before[field]) / clients

    malloc = None  # glibc's figures say nothing about a preloaded allocator
    have_malloc = ready["malloc_before"] is not None and measured["malloc_after"] is not None
    if have_malloc and args.preload is None:
        malloc = (measured["malloc_after"] - ready["malloc_before"]) / 1024 / args.clients
    return {
        "kib_per_client": per_client(after),
        "anon_kib_per_client": per_client(after, "RssAnon"),
        "malloc_kib_per_client": malloc,
        "trimmed_kib_per_client": per_client(trimmed) if trimmed else None,
        "rss_before_mib": before["VmRSS"] / 1024,
        "rss_after_mib": after["VmRSS"] / 1024,
        "hello_all_s": measured["hello_all_s"],
        "reconnects": measured["reconnects"],
        "ready_s": measured["ready_s"],
    }


COLUMNS = (
    ("kib_per_client", "KiB/client"),
    ("anon_kib_per_client", "anon KiB"),
    ("malloc_kib_per_client", "malloc KiB"),
    ("trimmed_kib_per_client", "trimmed KiB"),
    ("rss_before_mib", "RSS before MiB"),
    ("rss_after_mib", "RSS after MiB"),
    ("ready_s", "ready s"),
    ("reconnects", "reconnects"),
)


def cell(value: float | None) -> str:
    if value is None:
        return "-"
    return str(value) if isinstance(value, int) else f"{value:.1f}"


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [run[key] for run in runs if run[key] is not None]
    return statistics.median(values) if values else None


def print_table(label: str, runs: list[dict[str, Any]]) -> dict[str, float | None]:
    medians = {key: median_of(runs, key) for key, _ in COLUMNS}
    rows = [
        [f"run {number}"] + [cell(run[key]) for key, _ in COLUMNS]
        for number, run in enumerate(runs, 1)
    ]
    rows.append(["median"] + [cell(medians[key]) for key, _ in COLUMNS])
    header = ["", *(title for _, title in COLUMNS)]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print(label)
    for row in [header, *rows]:
        print("  ".join(text.rjust(width) for text, width in zip(row, widths, strict=True)))
    return medians


def sockopt(text: str) -> tuple[str, int]:
    name, _, value = text.partition("=")
    name = name.strip().upper()
    if not hasattr(zmq, name) or not value:
        raise argparse.ArgumentTypeError(f"{text!r}: want NAME=INTEGER with NAME a zmq option")
    return name, int(value, 0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--members", type=int, default=50, help="clients per room")
    parser.add_argument("--topics", type=int, choices=(1, 2), default=1, help="rooms per client")
    parser.add_argument("--events", type=int, default=3, help="events each client receives")
    parser.add_argument("--batch", type=int, default=1, help="events per room per round")
    parser.add_argument("--size", type=int, default=200, help="bytes per message body")
    parser.add_argument("--only", choices=("both", "router", "pub"), default="both")
    parser.add_argument("--no-curve", action="store_true")
    parser.add_argument("--no-heartbeat", action="store_true", help="on both sides")
    parser.add_argument("--sndbuf", type=int, help="ZMQ_SNDBUF on the server sockets")
    parser.add_argument("--rcvbuf", type=int, help="ZMQ_RCVBUF on the server sockets")
    parser.add_argument("--hwm", type=int, help="SNDHWM and RCVHWM on the server sockets")
    parser.add_argument("--io-threads", type=int, default=1, help="server ZMQ_IO_THREADS")
    parser.add_argument(
        "--no-zero-copy", action="store_true", help="server context ZMQ_ZERO_COPY_RECV=0"
    )
    parser.add_argument(
        "--sockopt",
        type=sockopt,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an integer zmq socket option for both server sockets (repeatable)",
    )
    parser.add_argument("--arena-max", type=int, help="MALLOC_ARENA_MAX for the server")
    parser.add_argument("--mmap-threshold", type=int, help="mallopt(M_MMAP_THRESHOLD) in bytes")
    parser.add_argument("--trim", action="store_true", help="malloc_trim(0) before measuring")
    parser.add_argument("--preload", help="LD_PRELOAD for the server (another malloc)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for one run")
    parser.add_argument("--label", help="title of the table (default: the options given)")
    parser.add_argument("--json", type=Path, help="write runs and medians here")
    parser.add_argument("--role", choices=("server", "clients"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role is not None:
        control = sys.stdin.fileno()
        config = json.loads(read_line(control))
        (serve if args.role == "server" else run_clients)(config, control)
        return 0
    label = args.label or " ".join(sys.argv[1:]) or "baseline"
    runs = [run_once(args) for _ in range(args.runs)]
    medians = print_table(f"{label}: {args.clients} clients, {args.runs} runs", runs)
    if args.json is not None:
        options = {key: value for key, value in vars(args).items() if key not in {"json", "role"}}
        document = {"label": label, "options": options, "runs": runs, "median": medians}
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
