"""Clean failures: every request gets one reply with a stable code, and the log stays small."""

from __future__ import annotations

import asyncio
import logging
import signal
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgpack
import pytest
import zmq
import zmq.asyncio

from tests.broker.core import CoreHarness
from tests.processes import RunningBroker, start_broker
from tests.wire import WireClient
from zchat.broker.handlers import load_state
from zchat.broker.outgoing import Failure, Unicast
from zchat.broker.passwords import PasswordHasher
from zchat.broker.repeated_log import RepeatedLog
from zchat.broker.server import BrokerShell
from zchat.broker.state import BrokerSettings, BrokerState, Connection
from zchat.broker.storage import MemoryStorage, StorageError, StoredEvent
from zchat.protocol import (
    ErrorCode,
    Join,
    Leave,
    Login,
    Logout,
    Members,
    Ping,
    Register,
    Reply,
    RoomKey,
    Send,
    decode_incoming,
)


def test_server_key_on_the_request_port_is_unknown_op_and_logs_nothing(
    context: zmq.Context[zmq.Socket[bytes]], broker: RunningBroker
) -> None:
    client = WireClient(context, broker)
    try:
        for n in range(200):
            client.send_raw(msgpack.packb({"v": 1, "id": n, "op": "server_key"}))
        for n in range(200):
            reply = client.reply()
            assert reply.request_id == n
            assert reply.error is not None and reply.error.code == ErrorCode.UNKNOWN_OPERATION
            assert "key service" in reply.error.message
        client.call(Ping())  # a marker: everything before it was handled
    finally:
        client.close()
    assert "Traceback" not in broker.output.text()
    assert " failed" not in broker.output.text()


def test_a_repeated_failure_is_logged_once_then_counted(caplog: pytest.LogCaptureFixture) -> None:
    log = RepeatedLog(logging.getLogger("test.repeated"), interval_ms=60_000)
    with caplog.at_level(logging.WARNING, "test.repeated"):
        for n in range(1000):
            try:
                raise ValueError(n)
            except ValueError:
                log.report_exception("send: ValueError", 1_000 + n, "send failed")
        log.report("other", 2_000, "another kind is logged at once")
        log.report_exception("send: ValueError", 61_000, "send failed")
        log.report_exception("send: ValueError", 61_001, "send failed")
        log.flush(70_000)
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "send failed",
        "another kind is logged at once",
        "999 more like this in the last 60 s: send: ValueError",
        "send failed",
        "1 more like this in the last 9 s: send: ValueError",
    ]
    assert caplog.records[0].exc_info is not None


def test_a_login_whose_check_throws_is_answered_and_frees_its_slot(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    data = tmp_path / "data"
    first = start_broker(data)
    client = WireClient(context, first)
    client.ok(Register(user="alice", password="a good password"))
    client.close()
    assert first.stop() == 0
    with sqlite3.connect(data / "zchat.sqlite3") as db:  # a hash the hasher cannot even read
        db.execute("UPDATE accounts SET password_hash = '$argon2id$v=19$m=65536,t=3,p=4$é'")
    db.close()

    broker = start_broker(data, "--pending-auth-per-address", "1")
    client = WireClient(context, broker)
    try:
        for _ in range(3):  # each answered at once; the one waiting slot is free again
            reply = client.call(Login(user="alice", password="a good password"))
            assert reply.error is not None and reply.error.code == ErrorCode.INTERNAL_ERROR
    finally:
        client.close()
        assert broker.stop() == 0
    assert broker.output.text().count("Traceback") == 1


def test_a_storage_failure_while_serving_stops_the_broker_with_one_line(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    data = tmp_path / "data"
    assert start_broker(data).stop() == 0
    with sqlite3.connect(data / "zchat.sqlite3") as db:  # the disk fails on one message
        db.execute(
            "CREATE TRIGGER fail BEFORE INSERT ON events WHEN NEW.text = 'boom'"
            " BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )
    db.close()
    broker = start_broker(data)
    client = WireClient(context, broker)
    try:
        client.sign_up("alice")
        client.ok(Join(room="room1"))
        reply = client.call(Send(room="room1", text="boom"))
        assert reply.error is not None and reply.error.code == ErrorCode.INTERNAL_ERROR
        assert broker.process.wait(10) == 1
    finally:
        client.close()
        broker.stop()
    output = broker.output.text()
    assert "Traceback" not in output and "ExceptionGroup" not in output, output
    [line] = [line for line in output.splitlines() if line.startswith("Error:")]
    assert "the database failed" in line and "disk on fire" in line


def test_a_storage_failure_in_the_background_is_one_line_not_a_task_group_traceback(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    data = tmp_path / "data"
    broker = start_broker(data)
    client = WireClient(context, broker)
    client.sign_up("alice")
    client.ok(Join(room="room1"))
    client.ok(Send(room="room1", text="old news"))
    client.close()
    assert broker.stop() == 0
    with sqlite3.connect(data / "zchat.sqlite3") as db:  # pruning history will fail
        db.execute(
            "CREATE TRIGGER fail BEFORE DELETE ON events"
            " BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )
    db.close()
    broker = start_broker(data, "--history-max", "1")
    assert broker.process.wait(10) == 1
    output = broker.output.text()
    assert "Traceback" not in output and "ExceptionGroup" not in output, output
    [line] = [line for line in output.splitlines() if line.startswith("Error:")]
    assert "the database failed, so the broker stopped" in line and "disk on fire" in line


def failing_on(storage: MemoryStorage, kind: str, after: int = 0) -> None:
    """Make storing the room event of ``kind`` fail, after ``after`` such events stored."""
    append = storage.append_event
    seen = [0]

    def append_event(event: StoredEvent) -> None:
        if event.kind == kind:
            seen[0] += 1
            if seen[0] > after:
                raise StorageError("disk on fire")
        append(event)

    storage.append_event = append_event  # type: ignore[method-assign]


def test_a_logout_that_fails_half_way_changes_nothing() -> None:
    core = CoreHarness()
    alice, bob = core.login("alice"), core.login("bob")
    for room in ("room1", "room2"):
        core.ok(alice, Join(room=room))
        core.ok(bob, Join(room=room))
    keys = {r.name: r.cipher for r in core.state.rooms.values()}
    failing_on(core.storage, "leave", after=1)  # room1's leave is stored, room2's fails

    [reply] = core.send(alice, Logout())  # nothing else: no keys, no publications
    assert isinstance(reply, Unicast) and isinstance(reply.message, Failure)
    assert reply.message.error.code == ErrorCode.INTERNAL_ERROR
    for name in ("room1", "room2"):
        room = core.state.rooms[name]
        assert room.cipher == keys[name] and sorted(room.user_sessions) == ["alice", "bob"]
        assert [e.seq for e in core.storage.events(name, 1, 99, 99)] == [1, 2]
        assert room.seq == 2
    assert core.ok(alice, Members(room="room1"))["members"] == ["alice", "bob"]


def test_a_join_that_fails_creates_no_room() -> None:
    core = CoreHarness()
    alice = core.login("alice")
    failing_on(core.storage, "join")
    reply = core.call(alice, Join(room="new"))
    assert isinstance(reply, Failure) and reply.error.code == ErrorCode.INTERNAL_ERROR
    assert "new" not in core.state.rooms and "new" not in [r.name for r in core.storage.rooms()]
    assert not core.state.sessions[alice.routing_id].rooms


def test_a_key_id_never_names_two_keys_across_restarts(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    data = tmp_path / "data"
    first = start_broker(data)
    alice, bob = WireClient(context, first), WireClient(context, first)
    try:
        alice.sign_up("alice")
        bob.sign_up("bob")
        kids = {alice.ok(Join(room="room1"))["kid"], bob.ok(Join(room="room1"))["kid"]}
        bob.ok(Leave(room="room1"))  # a new key for alice
        alice.ok(Ping())
        kids |= {event.kid for event in alice.events if isinstance(event, RoomKey)}
    finally:
        alice.close()
        bob.close()
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    assert len(kids) == 2

    second = start_broker(data)
    alice = WireClient(context, second)
    try:
        alice.ok(Login(user="alice", password="correct horse"))
        assert alice.ok(Join(room="room1"))["kid"] > max(kids)
    finally:
        alice.close()
        assert second.stop() == 0


class AccountsOnFire(MemoryStorage):
    """A store whose account lookups fail, and which then refuses to commit."""

    def account(self, name: str) -> None:
        self.failed = True
        raise StorageError("disk on fire")

    def commit(self) -> None:
        if getattr(self, "failed", False):
            raise StorageError("disk on fire")
        super().commit()


def test_a_login_whose_account_cannot_be_read_is_answered_then_the_broker_stops() -> None:
    async def scenario() -> None:
        context = zmq.asyncio.Context()
        router, publisher = context.socket(zmq.ROUTER), context.socket(zmq.PUB)
        port = router.bind_to_random_port("tcp://127.0.0.1")
        dealer = context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.ROUTING_ID, b"alice")
        dealer.connect(f"tcp://127.0.0.1:{port}")
        await dealer.send(b"hi")  # the ROUTER now knows the peer
        await router.recv_multipart()
        state = load_state(BrokerState(AccountsOnFire(), BrokerSettings(pub_port=0)))
        with ThreadPoolExecutor(1) as pool:
            shell = BrokerShell(state, router, publisher, PasswordHasher(), pool)
            login = Login(user="alice", password="a good password")
            assert shell.start_authentication(Connection(b"alice", "127.0.0.1"), 7, login) == []
            with pytest.raises(StorageError, match="disk on fire"):
                await asyncio.wait_for(shell.watch(), 10)
            reply = decode_incoming(await asyncio.wait_for(dealer.recv(), 10))
            assert isinstance(reply, Reply) and reply.request_id == 7
            assert reply.error is not None and reply.error.code == ErrorCode.INTERNAL_ERROR
            await shell.aclose()
        for socket in (router, publisher, dealer):
            socket.close(0)
        context.term()

    asyncio.run(scenario())
