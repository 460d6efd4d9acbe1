"""Floods without an account, against a real broker: the chat keeps flowing and nobody expires.

The scenario is the flood benchmark's (`benchmarks/flood.py`), shortened: 3
flooder processes for 3 s while two members chat at 10 messages a second each,
with a 2 s lease so that a broker too busy to read pings would expire them.
"""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import zmq

from tests.processes import RunningBroker, start_broker
from tests.wire import WireClient
from zchat.protocol import Hello, ServerKey, SessionEnded, decode_incoming, encode_request
from zchat.protocol.codec import Reply

FLOOD_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "flood.py"


def flood_scenario(target: str, tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / "flood.json"
    subprocess.run(
        [
            sys.executable,
            str(FLOOD_SCRIPT),
            *("--target", target, "--runs", "1", "--duration", "3", "--lease", "2"),
            *("--json", str(out)),
        ],
        check=True,
        timeout=90,
        capture_output=True,
    )
    [figures] = json.loads(out.read_text())[target]
    return dict(figures)


@pytest.mark.parametrize("target", ["key", "router"])
def test_a_flood_without_an_account_does_not_silence_the_room(target: str, tmp_path: Path) -> None:
    figures = flood_scenario(target, tmp_path)
    assert figures["flood_requests"] > 10_000, "the flood was too small to prove anything"
    assert figures["exit_code"] == 0, figures.get("broker_output")
    assert figures["broker_alive"]
    assert figures["expired"] == 0, "a session expired during the flood"
    assert figures["lost"] == 0, f"{figures['lost']} of {figures['sent']} messages not delivered"
    assert figures["delivery_ms"]["max"] < 1_500, figures["delivery_ms"]
    assert figures["after_flood_ok"]


def zmtp_null_peer(port: int) -> socket.socket:
    """A raw TCP connection that has done the ZMTP 3.0 NULL handshake as a DEALER."""
    peer = socket.create_connection(("127.0.0.1", port), timeout=5)
    greeting = b"\xff" + b"\x00" * 7 + b"\x01\x7f\x03\x00" + b"NULL".ljust(20, b"\x00")
    ready = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER"
    peer.sendall(greeting + b"\x00" * 32 + bytes([0x04, len(ready)]) + ready)
    return peer


def test_a_paused_flood_that_hangs_up_does_not_abort_the_broker(
    broker: RunningBroker, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    """Requests and ZMTP PINGs as fast as TCP takes them, then a reset: the attack that made
    libzmq 4.3.5 abort (`!_io_error`) once the service had paused reading the peer."""
    body = encode_request(1, ServerKey())
    ping = b"\x04PING\x00\x00"
    chunk = (bytes([0x00, len(body)]) + body + bytes([0x04, len(ping)]) + ping) * 500
    for _ in range(3):  # each round is one more chance for the abort
        peers = [zmtp_null_peer(broker.key_port) for _ in range(3)]
        for peer in peers:
            peer.setblocking(False)
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            for peer in peers:
                with contextlib.suppress(BlockingIOError, ConnectionError):
                    peer.send(chunk)
        for peer in peers:  # linger 0: close with a reset
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            peer.close()

    dealer = context.socket(zmq.DEALER)  # the key service still answers an honest client
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(f"tcp://127.0.0.1:{broker.key_port}")
    dealer.send(encode_request(1, ServerKey()))
    assert dealer.poll(10_000), "the key service stopped answering"
    reply = decode_incoming(dealer.recv())
    dealer.close()
    assert isinstance(reply, Reply) and reply.result is not None
    assert reply.result["key"] == broker.server_key

    chat = WireClient(context, broker)  # and the chat still works
    try:
        chat.sign_up("alice")
    finally:
        chat.close()
    assert broker.process.poll() is None, broker.output.text()


def test_connections_that_never_speak_give_their_file_descriptors_back(
    broker: RunningBroker, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    """More silent connections than the broker may open files: it closes them once their
    handshake is overdue, so a client that comes next is answered within seconds."""
    resource.prlimit(broker.process.pid, resource.RLIMIT_NOFILE, (256, 256))
    silent: list[socket.socket] = []
    try:
        for _ in range(300):
            try:
                silent.append(socket.create_connection(("127.0.0.1", broker.port), timeout=2))
            except OSError:
                break  # the broker's backlog is full too
        assert len(silent) > 256, "the broker's file limit was never reached"
        honest = WireClient(context, broker)
        try:
            started = time.monotonic()
            assert honest.ok(Hello())["protocol"] == 1  # WireClient waits up to 10 s
            assert time.monotonic() - started < 10
        finally:
            honest.close()
    finally:
        for connection in silent:
            connection.close()
    assert broker.process.poll() is None, broker.output.text()


def test_a_silent_client_is_still_dropped_when_nobody_else_talks(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    """Leases count silence up to when the broker last caught up; an idle broker is
    caught up all the time, so a vanished client's lease still runs out."""
    broker = start_broker(tmp_path / "data", "--lease", "1.5")
    alice = WireClient(context, broker)
    try:
        alice.sign_up("alice")
        assert alice.dealer.poll(8_000), "alice's session was never ended"
        assert isinstance(alice.receive(), SessionEnded)
        broker.output.wait_for(r"alice timed out from <127\.0\.0\.1>")
    finally:
        alice.close()
        assert broker.stop() == 0
