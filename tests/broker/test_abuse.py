"""Hostile and buggy clients against the real broker: guessing, flooding, huge frames, stalls."""

from __future__ import annotations

import time
from pathlib import Path

import zmq

from tests.processes import UNGATED, RunningBroker, start_broker
from tests.wire import Pipeline, WireClient, subscriber
from zchat.protocol import ErrorCode, Join, Login, Send


def rss_kb(broker: RunningBroker) -> int:
    for line in Path(f"/proc/{broker.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_password_guessing_hits_the_throttle(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    broker = start_broker(
        tmp_path / "data",
        "--login-free-failures", "1",
        "--login-max-failures", "4",
        "--login-delay-ms", "50",
    )  # fmt: skip
    victim, guesser = WireClient(context, broker), WireClient(context, broker)
    try:
        victim.sign_up("alice", "the real password")
        codes = []
        started = time.monotonic()
        for attempt in range(8):
            reply = guesser.call(Login(user="alice", password=f"guess number {attempt}"))
            assert reply.error is not None
            codes.append(reply.error.code)
        assert codes == [ErrorCode.BAD_CREDENTIALS] * 4 + [ErrorCode.TOO_MANY_ATTEMPTS] * 4
        assert time.monotonic() - started >= 0.05 + 0.1 + 0.2, "delays grow before the lockout"
        assert "try again in" in (reply.error.message if reply.error else "")
        assert "guess number" not in broker.output.text(), "passwords never reach the log"
    finally:
        victim.close()
        guesser.close()
        assert broker.stop() == 0


def test_a_flooder_is_limited_while_others_chat_normally(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    broker = start_broker(tmp_path / "data")
    flooder, alice, bob = (WireClient(context, broker) for _ in range(3))
    try:
        for client, name in ((flooder, "flood"), (alice, "alice"), (bob, "bob")):
            client.sign_up(name)
            client.ok(Join(room="room1"))
        flood, rounds = 3000, 20
        flooding = Pipeline(flooder)
        round_trips = []
        for n in range(rounds):  # the flood goes on while alice and bob talk
            for _ in range(flood // rounds):
                flooding.send(Send(room="room1", text="spam " * 50))
            sent = time.monotonic()
            alice.ok(Send(room="room1", text=f"normal message {n}"))
            round_trips.append(time.monotonic() - sent)
            bob.ok(Send(room="room1", text=f"reply {n}"))
        replies = flooding.drain()
        limited = [r for r in replies if r.error and r.error.code == ErrorCode.RATE_LIMITED]
        accepted = [r for r in replies if r.error is None]
        assert len(accepted) + len(limited) == flood, "every flooded send got an answer"
        assert len(limited) > flood * 0.9
        assert max(round_trips) < 1.0, f"chat stalled during the flood: {max(round_trips):.3f}s"
    finally:
        for client in (flooder, alice, bob):
            client.close()
        assert broker.stop() == 0


def test_huge_frames_and_a_stalled_reader_do_not_grow_the_broker(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    broker = start_broker(
        tmp_path / "data",
        "--message-rate", "1000000",
        "--message-burst", "1000000",
        *UNGATED,
        "--pub-hwm", "1000",
    )  # fmt: skip
    sender = WireClient(context, broker)
    stalled = subscriber(context, broker, b"")  # subscribes to everything, never reads
    stalled.setsockopt(zmq.RCVHWM, 100)
    try:
        sender.sign_up("sender")
        sender.ok(Join(room="room1"))
        baseline = rss_kb(broker)

        for _ in range(3):  # ZeroMQ refuses each before the broker ever buffers it
            big = WireClient(context, broker)
            big.send_raw(b"\x00" * (100 * 1024 * 1024))
            big.close()

        def burst(count: int) -> None:
            sending = Pipeline(sender)
            for _ in range(count):
                sending.send(Send(room="room1", text="x" * 1000))
            assert all(reply.error is None for reply in sending.drain())

        burst(3_000)  # fills the stalled subscriber's queue up to the high-water mark
        filled = rss_kb(broker)
        burst(6_000)  # everything past the mark is dropped for that subscriber
        after = rss_kb(broker)
        assert filled - baseline < 48 * 1024, f"grew {filled - baseline} KiB"
        assert after - filled < 8 * 1024, f"kept growing: +{after - filled} KiB past the HWM"
        assert sender.ok(Send(room="room1", text="still serving"))["seq"] > 9_000
    finally:
        stalled.close()
        sender.close()
        assert broker.stop() == 0
