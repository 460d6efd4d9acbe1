"""Flood the broker from 3 processes while two members chat, and measure what the members see.

    python benchmarks/flood.py                        # key, then router: 3 runs of 30 s each
    python benchmarks/flood.py --target key --runs 1 --duration 10 --json out.json

Each run starts a fresh `zchat-broker` on free loopback ports. Two members
(alice and bob, raw DEALER + SUB over CurveZMQ, in this process) join one room
and each send 10 messages a second; meanwhile 3 flooder processes, with no
account, send as fast as their connection takes:

- ``key``: `server_key` requests to the plaintext key service (port + 2);
- ``router``: garbage frames and `server_key` requests to the ROUTER, over
  CurveZMQ (any key pair is admitted).

A flooder never reads and ends with a reset (linger 0), the pattern that
aborted libzmq 4.3.5. With ``--flooder-heartbeats`` the flooders also send ZMTP
PINGs every millisecond: libzmq 4.3.5 aborts (stream_engine_base.cpp:310) when
it decodes a PING from a connection that was reset while its input was paused
behind a full queue, on any socket with the ZMTP engine, so the ROUTER is still
exposed to that until the broker runs on a libzmq that returns there instead.

Reported per run: each member's deliveries of the other's messages (latency
from send to the other's SUB: p50, p99, max), lost messages, sessions expired,
the members' reply p99, the flood's size, and whether the broker was still
running and exited 0 on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from zchat.protocol import (
    ErrorCode,
    Join,
    Login,
    Ping,
    Register,
    Reply,
    Send,
    ServerKey,
    decode_incoming,
    encode_request,
)
from zchat.protocol.messages import SessionEnded
from zchat.protocol.sealing import Announcement, RoomCipher, parse_publication

FLOODERS = 3
RATE_PER_MEMBER = 10.0
GRACE_S = 5.0
"""How long deliveries are awaited after the last message is sent."""
ROOM = "flood-room"
PASSWORD = "correct horse battery"  # noqa: S105 (a throwaway account of a throwaway broker)
LINES = {
    "port": re.compile(r"Running chat server at [^:\s]+:(\d+)"),
    "pub_port": re.compile(r"Publishing rooms at [^:\s]+:(\d+)"),
    "key_port": re.compile(r"Key service at [^:\s]+:(\d+)"),
    "key": re.compile(r"Broker key: (\S{40})$"),
}
EXPIRED = {ErrorCode.NOT_LOGGED_IN, ErrorCode.SESSION_EXPIRED}


# --- the flooders -----------------------------------------------------------------------


def flood(target: str, port: int, seconds: float, server_key: str, heartbeats: bool) -> None:
    """Send as fast as the connection takes for ``seconds``, never read, then reset."""
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    if target == "router":
        public, secret = zmq.curve_keypair()
        dealer.setsockopt(zmq.CURVE_SERVERKEY, server_key.encode("ascii"))
        dealer.setsockopt(zmq.CURVE_PUBLICKEY, public)
        dealer.setsockopt(zmq.CURVE_SECRETKEY, secret)
    if heartbeats:
        dealer.setsockopt(zmq.HEARTBEAT_IVL, 1)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(f"tcp://127.0.0.1:{port}")
    frames = [encode_request(1, ServerKey())]
    if target == "router":
        frames.append(b"\xc1 not msgpack")
    print("flooding", flush=True)
    sent = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(100):
            try:
                dealer.send(frames[sent % len(frames)], zmq.NOBLOCK)
            except zmq.Again:
                dealer.poll(10, zmq.POLLOUT)
                break
            sent += 1
    dealer.close(linger=0)
    context.term()
    print(f"sent {sent}", flush=True)


# --- the broker ---------------------------------------------------------------------------


@dataclass
class Broker:
    process: subprocess.Popen[str]
    ports: dict[str, Any]
    output: list[str] = field(default_factory=list)

    log_lines: int = 0

    def follow(self) -> None:
        """Read the broker's output to the end (a full pipe would block its logging)."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.log_lines += 1
            self.output.append(line.rstrip("\n"))
            del self.output[:-20]

    @property
    def key(self) -> str:
        return str(self.ports["key"])

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def start_broker(data_dir: Path, lease_s: float) -> Broker:
    command = [
        str(Path(sys.executable).parent / "zchat-broker"),
        *("--host", "127.0.0.1", "--port", "0", "--pub-port", "0", "--key-port", "0"),
        *("--data-dir", str(data_dir), "--lease", str(lease_s), "--log-level", "WARNING"),
    ]
    process = subprocess.Popen(  # noqa: S603 (our own broker command)
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    broker = Broker(process, {})
    assert process.stdout is not None
    for line in process.stdout:
        broker.output.append(line.rstrip("\n"))
        for name, pattern in LINES.items():
            match = pattern.search(line)
            if match:
                broker.ports[name] = match[1] if name == "key" else int(match[1])
        if len(broker.ports) == len(LINES):
            threading.Thread(target=broker.follow, daemon=True).start()
            return broker
    raise RuntimeError("the broker did not start:\n" + "\n".join(broker.output))


# --- the members --------------------------------------------------------------------------


@dataclass
class Member:
    name: str
    dealer: zmq.Socket[bytes]
    sub: zmq.Socket[bytes]
    cipher: RoomCipher | None = None
    topic: bytes = b""
    ids: int = 0
    pending: dict[int, float] = field(default_factory=dict)
    reply_ms: list[float] = field(default_factory=list)
    expired: bool = False

    def request(self, request: Any) -> int:
        self.ids += 1
        self.dealer.send(encode_request(self.ids, request))
        self.pending[self.ids] = time.monotonic()
        return self.ids

    def call(self, request: Any, timeout_ms: int = 30_000) -> dict[str, Any]:
        request_id = self.request(request)
        while self.dealer.poll(timeout_ms):
            reply = self.handle(self.dealer.recv())
            if reply is not None and reply.request_id == request_id:
                if reply.error is not None:
                    raise RuntimeError(f"{self.name}: {reply.error}")
                return reply.result or {}
        raise TimeoutError(f"{self.name}: no reply to {request}")

    def handle(self, frame: bytes) -> Reply | None:
        incoming = decode_incoming(frame)
        if isinstance(incoming, SessionEnded):
            self.expired = True
            return None
        if not isinstance(incoming, Reply):
            return None
        sent = self.pending.pop(incoming.request_id or -1, None)
        if sent is not None:
            self.reply_ms.append((time.monotonic() - sent) * 1000)
        if incoming.error is not None and incoming.error.code in EXPIRED:
            self.expired = True
        return incoming


def member(context: zmq.Context[zmq.Socket[bytes]], broker: Broker, name: str) -> Member:
    keys = zmq.curve_keypair()
    sockets = []
    for kind in (zmq.DEALER, zmq.SUB):
        socket = context.socket(kind)
        socket.setsockopt(zmq.CURVE_SERVERKEY, broker.key.encode("ascii"))
        socket.setsockopt(zmq.CURVE_PUBLICKEY, keys[0])
        socket.setsockopt(zmq.CURVE_SECRETKEY, keys[1])
        socket.setsockopt(zmq.LINGER, 0)
        sockets.append(socket)
    dealer, sub = sockets
    dealer.setsockopt(zmq.HEARTBEAT_IVL, 2_000)
    dealer.setsockopt(zmq.HEARTBEAT_TIMEOUT, 6_000)
    dealer.connect(f"tcp://127.0.0.1:{broker.ports['port']}")
    sub.connect(f"tcp://127.0.0.1:{broker.ports['pub_port']}")
    chatter = Member(name, dealer, sub)
    chatter.call(Register(user=name, password=PASSWORD))
    chatter.call(Login(user=name, password=PASSWORD))
    return chatter


def join(chatter: Member) -> None:
    probe = chatter.call(Join(room=ROOM))
    chatter.topic = probe["topic"]
    chatter.sub.setsockopt(zmq.SUBSCRIBE, chatter.topic)
    joined = chatter.call(Join(room=ROOM))  # again, now that the SUB is subscribed
    chatter.cipher = RoomCipher(joined["kid"], joined["key"])


def wait_subscribed(members: list[Member]) -> None:
    """Send until every member's SUB sees a publication (subscriptions take a moment)."""
    seen: set[str] = set()
    deadline = time.monotonic() + 10
    while len(seen) < len(members) and time.monotonic() < deadline:
        members[0].call(Send(room=ROOM, text="warming up"))
        for chatter in members:
            if chatter.sub.poll(100):
                while chatter.sub.poll(0):
                    chatter.sub.recv_multipart()
                seen.add(chatter.name)
    if len(seen) < len(members):
        raise TimeoutError("the members' subscriptions never took effect")


def chat(members: list[Member], seconds: float) -> dict[str, Any]:
    """Both members send at `RATE_PER_MEMBER` for ``seconds``; each counts the other's."""
    poller = zmq.Poller()
    for chatter in members:
        poller.register(chatter.dealer, zmq.POLLIN)
        poller.register(chatter.sub, zmq.POLLIN)
    sent_at: dict[str, float] = {}
    delivered: dict[str, float] = {}
    interval = 1 / (RATE_PER_MEMBER * len(members))
    start = time.monotonic()
    next_send, count, last_ping = start, 0, start
    stop_sending = start + seconds
    deadline = stop_sending + GRACE_S
    expected = 0
    while True:
        now = time.monotonic()
        if now >= stop_sending and len(delivered) == expected:
            break
        if now >= deadline:
            break
        if now >= next_send and now < stop_sending:
            sender = members[count % len(members)]
            text = f"{sender.name} {count}"
            sender.request(Send(room=ROOM, text=text))
            sent_at[text] = now
            expected += len(members) - 1
            count += 1
            next_send += interval
        if now - last_ping >= 1.0:
            for chatter in members:
                chatter.request(Ping())
            last_ping = now
        timeout = max(0.0, min(next_send, deadline) - time.monotonic()) * 1000
        for socket, _ in poller.poll(timeout):
            for chatter in members:
                if socket is chatter.dealer:
                    while chatter.dealer.poll(0):
                        chatter.handle(chatter.dealer.recv())
                elif socket is chatter.sub:
                    while chatter.sub.poll(0):
                        receive(chatter, sent_at, delivered)
    latencies = sorted(delivered.values())
    replies = sorted(ms for chatter in members for ms in chatter.reply_ms)
    return {
        "sent": len(sent_at),
        "delivered": len(delivered),
        "lost": expected - len(delivered),
        "expired": sum(chatter.expired for chatter in members),
        "delivery_ms": percentiles(latencies),
        "reply_ms": percentiles(replies),
        "unanswered": sum(len(chatter.pending) for chatter in members),
    }


def receive(chatter: Member, sent_at: dict[str, float], delivered: dict[str, float]) -> None:
    topic, body = chatter.sub.recv_multipart()
    publication = parse_publication(body)
    if isinstance(publication, Announcement) or chatter.cipher is None:
        return
    arrived = time.monotonic()
    for event in chatter.cipher.open(topic, publication, ROOM):
        sent = sent_at.get(event.text)
        if sent is not None and event.user != chatter.name:
            delivered[f"{chatter.name}<-{event.text}"] = (arrived - sent) * 1000


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    return {
        "p50": values[len(values) // 2],
        "p99": values[min(len(values) - 1, int(len(values) * 0.99))],
        "max": values[-1],
    }


# --- one run --------------------------------------------------------------------------------


def run(target: str, seconds: float, lease_s: float, heartbeats: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="zchat-flood-") as data_dir:
        broker = start_broker(Path(data_dir), lease_s)
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        flooders: list[subprocess.Popen[str]] = []
        try:
            members = [member(context, broker, name) for name in ("alice", "bob")]
            for chatter in members:
                join(chatter)
            wait_subscribed(members)
            for chatter in members:
                chatter.reply_ms.clear()  # only the replies during the flood count
            port = broker.ports["key_port" if target == "key" else "port"]
            for _ in range(FLOODERS):
                flooders.append(
                    subprocess.Popen(  # noqa: S603 (this script)
                        [sys.executable, __file__, "--flooder", target, str(port), str(seconds)]
                        + (["--flooder-heartbeats"] if heartbeats else []),
                        stdout=subprocess.PIPE,
                        text=True,
                        env=dict(os.environ, ZCHAT_FLOOD_KEY=broker.key),
                    )
                )
            for process in flooders:  # wait until each one floods, then chat
                assert process.stdout is not None
                process.stdout.readline()
            figures = chat(members, seconds)
            requests = 0
            for process in flooders:
                out, _ = process.communicate(timeout=seconds + 30)
                match = re.search(r"sent (\d+)", out)
                requests += int(match[1]) if match else 0
            try:  # still served, still logged in
                figures["after_flood_ok"] = members[0].call(Ping(), timeout_ms=10_000) == {}
            except (TimeoutError, RuntimeError):
                figures["after_flood_ok"] = False
            figures["flood_requests"] = requests
        finally:
            for process in flooders:
                if process.poll() is None:
                    process.kill()
            context.destroy(linger=0)
            figures_alive = broker.process.poll() is None
            code = broker.stop()
        figures.update(
            target=target,
            seconds=seconds,
            broker_alive=figures_alive,
            exit_code=code,
            broker_log_lines=broker.log_lines,
        )
        if code != 0:
            figures["broker_output"] = broker.output[-5:]
        return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=("key", "router", "both"), default="both")
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--lease", type=float, default=15.0, help="the broker's --lease")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--flooder", nargs=3, metavar=("TARGET", "PORT", "SECONDS"))
    parser.add_argument(
        "--flooder-heartbeats",
        action="store_true",
        help="flooders also send ZMTP heartbeats every millisecond (see the docstring)",
    )
    args = parser.parse_args()
    if args.flooder:
        target, port, seconds = args.flooder
        key = os.environ.get("ZCHAT_FLOOD_KEY", "")
        flood(target, int(port), float(seconds), key, args.flooder_heartbeats)
        return 0
    targets = ("key", "router") if args.target == "both" else (args.target,)
    results: dict[str, list[dict[str, Any]]] = {}
    for target in targets:
        for n in range(1, args.runs + 1):
            print(f"{target} run {n}/{args.runs}: {args.duration:g} s", file=sys.stderr)
            figures = run(target, args.duration, args.lease, args.flooder_heartbeats)
            print(json.dumps(figures), file=sys.stderr)
            results.setdefault(target, []).append(figures)
    for target, runs in results.items():
        print(f"\n{target}: median of {len(runs)} runs [min - max]")
        for label, pick in (
            ("delivery p50 ms", lambda r: r["delivery_ms"]["p50"]),
            ("delivery p99 ms", lambda r: r["delivery_ms"]["p99"]),
            ("delivery max ms", lambda r: r["delivery_ms"]["max"]),
            ("reply p99 ms", lambda r: r["reply_ms"]["p99"]),
            ("lost", lambda r: r["lost"]),
            ("sessions expired", lambda r: r["expired"]),
            ("flood requests sent", lambda r: r["flood_requests"]),
            ("broker exit code", lambda r: r["exit_code"]),
        ):
            values = [v for v in (pick(r) for r in runs) if v is not None]
            if values:
                print(
                    f"  {label:<22} {statistics.median(values):>12,.1f}"
                    f"  [{min(values):,.1f} - {max(values):,.1f}]"
                )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
