"""An acknowledged message survives the broker being killed, and a retry is not stored twice."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import zmq

from tests.processes import UNGATED, start_broker
from tests.wire import WireClient
from zchat.protocol import History, Join, Login, Send


def test_acknowledged_messages_survive_kill_9_and_retries_are_not_duplicated(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    data = tmp_path / "data"
    fast = ("--message-rate", "100000", "--message-burst", "100000", *UNGATED)
    first = start_broker(data, *fast)
    client = WireClient(context, first)
    acknowledged: dict[str, int] = {}
    try:
        client.sign_up("alice", "a good password")
        client.ok(Join(room="room1"))
        for n in range(200):
            reply = client.ok(Send(room="room1", text=f"message {n}", msg_id=f"id-{n}"))
            acknowledged[f"message {n}"] = reply["seq"]
    finally:
        client.close()
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL  # no chance to flush anything

    second = start_broker(data, *fast)
    client = WireClient(context, second)
    try:
        client.ok(Login(user="alice", password="a good password"))
        client.ok(Join(room="room1"))
        retried = client.ok(Send(room="room1", text="message 199", msg_id="id-199"))
        assert retried == {**retried, "seq": acknowledged["message 199"], "duplicate": True}
        stored = client.ok(History(room="room1", from_seq=1, to_seq=10_000))["events"]
        texts = {row[4]: row[0] for row in stored if row[1] == "msg"}
        assert texts == acknowledged, "every acknowledged message, once, under its own seq"
    finally:
        client.close()
        assert second.stop() == 0


def test_retention_prunes_old_history_when_the_broker_starts(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    data = tmp_path / "data"
    first = start_broker(data)
    client = WireClient(context, first)
    try:
        client.sign_up("alice", "a good password")
        client.ok(Join(room="room1"))
        for n in range(20):
            client.ok(Send(room="room1", text=f"message {n}"))
    finally:
        client.close()
        assert first.stop() == 0

    second = start_broker(data, "--history-max", "5")
    client = WireClient(context, second)
    try:
        client.ok(Login(user="alice", password="a good password"))
        client.ok(Join(room="room1"))
        deadline = time.monotonic() + 10
        while True:  # pruning runs in the background, a batch at a time
            kept = client.ok(History(room="room1", from_seq=1, to_seq=100))["events"]
            if kept and kept[0][0] == 17:  # the last 5 of 21 stayed; the rejoin made 22
                break
            assert time.monotonic() < deadline, f"{len(kept)} events kept"
            client.dealer.poll(100)  # a pause between polls of the broker's state
        assert [row[0] for row in kept] == list(range(17, 23))
    finally:
        client.close()
        assert second.stop() == 0
