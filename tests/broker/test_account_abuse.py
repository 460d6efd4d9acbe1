"""One logged-in account against the real broker: writes past its limits, join/leave churn,
direct messages to a client that just died, re-logins, and strangers locking an owner out."""

from __future__ import annotations

import time
from pathlib import Path

import zmq

from tests.processes import start_broker
from tests.wire import WireClient
from zchat.protocol import (
    DirectMessage,
    DmAck,
    ErrorCode,
    Inbox,
    Join,
    Leave,
    Login,
    Ping,
    Register,
    RoomKey,
    Send,
    encode_request,
)
from zchat.protocol.codec import Reply

PASSWORD = "correct horse"


def refused(replies: list[Reply], *codes: ErrorCode) -> list[Reply]:
    """The replies refused (with one of ``codes``, each); every other one must succeed."""
    failed = [r for r in replies if r.error is not None]
    assert all(r.error is not None and r.error.code in codes for r in failed), failed
    return failed


def test_direct_messages_count_against_one_budget_per_account_however_many_sessions(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    broker = start_broker(tmp_path / "data", "--message-rate", "0.1", "--message-burst", "5")
    sessions = [WireClient(context, broker) for _ in range(3)]
    bob = WireClient(context, broker)
    try:
        bob.sign_up("bob")
        sessions[0].sign_up("alice", PASSWORD)
        for session in sessions[1:]:
            session.ok(Login(user="alice", password=PASSWORD))
        sessions[0].ok(Join(room="room1"))
        replies = [
            session.call(DirectMessage(user="bob", text="x" * 4000))
            for _ in range(5)
            for session in sessions
        ]
        limited = refused(replies, ErrorCode.RATE_LIMITED)
        assert len(replies) - len(limited) <= 6, "three sessions get one account's budget"
        assert all(r.error and r.error.retry_ms and r.error.retry_ms > 0 for r in limited)
        room = sessions[0].call(Send(room="room1", text="and a room message?"))
        assert room.error is not None and room.error.code == ErrorCode.RATE_LIMITED
    finally:
        for client in (*sessions, bob):
            client.close()
        assert broker.stop() == 0


def test_room_creation_is_limited_per_account_and_per_broker(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    broker = start_broker(
        tmp_path / "data", "--rooms-per-hour", "0.01", "--room-burst", "3", "--max-rooms", "6"
    )
    alice, alice_too, bob = (WireClient(context, broker) for _ in range(3))
    try:
        alice.sign_up("alice", PASSWORD)
        alice_too.ok(Login(user="alice", password=PASSWORD))
        bob.sign_up("bob")
        replies = [alice.call(Join(room=f"r{n}")) for n in range(5)]
        replies += [alice_too.call(Join(room="r9"))]
        limited = refused(replies, ErrorCode.RATE_LIMITED)
        assert len(limited) == 3 and all(r.error and r.error.retry_ms for r in limited)
        assert alice_too.ok(Join(room="R1"))["room"] == "r1", "joining is not creating"
        bob.ok(Join(room="b1"))
        bob.ok(Join(room="b2"))  # default, r0-r2, b1, b2: six rooms
        full = bob.call(Join(room="b3"))
        assert full.error is not None and full.error.code == ErrorCode.LIMIT_REACHED
    finally:
        for client in (alice, alice_too, bob):
            client.close()
        assert broker.stop() == 0


def test_join_leave_churn_is_limited_and_costs_members_few_keys(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    broker = start_broker(tmp_path / "data", "--membership-rate", "0.1", "--membership-burst", "10")
    watcher = WireClient(context, broker)
    churners = [WireClient(context, broker) for _ in range(4)]
    try:
        watcher.sign_up("watcher")
        watcher.ok(Join(room="room1"))
        churners[0].sign_up("churner", PASSWORD)
        for churner in churners[1:]:
            churner.ok(Login(user="churner", password=PASSWORD))
        replies = []
        for _ in range(5):
            for churner in churners:
                replies.append(churner.call(Join(room="room1")))
                replies.append(churner.call(Leave(room="room1")))
        # A leave after a refused join is not_member: that session is not in the room.
        limited = refused(replies, ErrorCode.RATE_LIMITED, ErrorCode.NOT_MEMBER)
        assert len(replies) - len(limited) <= 11, "four sessions get one account's budget"
        watcher.ok(Ping())  # keys sent before this reply have arrived
        keys = [e for e in watcher.events if isinstance(e, RoomKey)]
        leaves = sum(1 for r in replies[1::2] if r.error is None)
        assert 0 < len(keys) <= leaves, "at most one key per accepted leave"
    finally:
        for client in (watcher, *churners):
            client.close()
        assert broker.stop() == 0


def test_a_direct_message_to_a_client_that_just_died_waits_in_the_inbox(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    broker = start_broker(tmp_path / "data")
    alice, bob = WireClient(context, broker), WireClient(context, broker)
    clients = [alice, bob]
    try:
        alice.sign_up("alice")
        bob.sign_up("bob", PASSWORD)
        bob.close()  # the client dies; its session lives on until the lease ends
        sent = alice.ok(DirectMessage(user="bob", text="are you there?"))
        back = WireClient(context, broker)
        clients.append(back)
        assert back.ok(Login(user="bob", password=PASSWORD))["unread"] == 1, "not lost"
        inbox = back.ok(Inbox(after=0))
        assert [m["text"] for m in inbox["messages"]] == ["are you there?"]
        assert back.ok(Inbox(after=0))["messages"], "still undelivered until acknowledged"
        back.ok(DmAck(ids=[sent["id"]]))
        third = WireClient(context, broker)
        clients.append(third)
        assert third.ok(Login(user="bob", password=PASSWORD))["unread"] == 0
    finally:
        for client in clients:
            client.close()
        assert broker.stop() == 0


def test_a_logged_in_connection_resending_login_is_refused_before_any_hashing(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    broker = start_broker(tmp_path / "data")
    alice = WireClient(context, broker)
    try:
        alice.sign_up("alice", PASSWORD)
        started = time.monotonic()
        for n in range(8):
            alice.dealer.send(encode_request(100 + n, Login(user="alice", password=PASSWORD)))
        replies = [alice.reply() for _ in range(8)]
        assert all(r.error and r.error.code == ErrorCode.ALREADY_LOGGED_IN for r in replies)
        assert sorted(r.request_id or 0 for r in replies) == list(range(100, 108))
        assert time.monotonic() - started < 5.0
    finally:
        alice.close()
        assert broker.stop() == 0


def test_registering_a_taken_or_look_alike_name_is_refused_before_any_hashing(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    # One hash at a time per address: a refusal that hashed would hold the slot.
    broker = start_broker(tmp_path / "data", "--pending-auth-per-address", "1")
    squatter = WireClient(context, broker)
    try:
        squatter.ok(Register(user="alice", password=PASSWORD))
        names = ["alice", "ALICE", "a1ice", "aIice"] * 2
        for n, name in enumerate(names):
            squatter.dealer.send(encode_request(100 + n, Register(user=name, password=PASSWORD)))
        replies = [squatter.reply() for _ in names]
        assert [r.error.code if r.error else None for r in replies] == (
            [ErrorCode.NAME_TAKEN] * len(names)
        )
    finally:
        squatter.close()
        assert broker.stop() == 0


def test_strangers_failing_an_owners_logins_cannot_lock_the_owner_out(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    broker = start_broker(
        tmp_path / "data",
        "--login-free-failures", "1",
        "--login-max-failures", "3",
        "--login-delay-ms", "50",
        "--login-max-delay-ms", "200",
    )  # fmt: skip
    owner = WireClient(context, broker)
    stranger = WireClient(context, broker, source="127.0.0.2")  # another machine, to the broker
    try:
        owner.ok(Register(user="alice", password=PASSWORD))
        codes = [
            reply.error.code
            for n in range(5)
            if (reply := stranger.call(Login(user="alice", password=f"guess {n}"))).error
        ]
        assert codes == [ErrorCode.BAD_CREDENTIALS] * 3 + [ErrorCode.TOO_MANY_ATTEMPTS] * 2
        other = stranger.call(Login(user="bob", password="guess"))
        assert other.error is not None and other.error.code == ErrorCode.TOO_MANY_ATTEMPTS
        assert owner.ok(Login(user="alice", password=PASSWORD))["user"] == "alice"
    finally:
        owner.close()
        stranger.close()
        assert broker.stop() == 0
