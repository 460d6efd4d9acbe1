"""The real `zchat-broker` over loopback, spoken to with raw ZeroMQ sockets."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
import zmq

from tests.processes import RunningBroker, start_broker
from tests.wire import Pipeline, WireClient, subscriber
from zchat.protocol import (
    Announcement,
    CannotOpen,
    ErrorCode,
    Join,
    Leave,
    ListRooms,
    Login,
    Members,
    Ping,
    Register,
    RoomCipher,
    RoomEvent,
    RoomEventKind,
    RoomKey,
    SealedBatch,
    Send,
    SessionEnded,
    parse_publication,
)


@pytest.fixture
def clients(
    context: zmq.Context[zmq.Socket[bytes]], broker: RunningBroker
) -> Iterator[list[WireClient]]:
    opened: list[WireClient] = []
    yield opened
    for client in opened:
        client.close()


def connect(clients: list[WireClient], context: zmq.Context, broker: RunningBroker) -> WireClient:  # type: ignore[type-arg]
    client = WireClient(context, broker)
    clients.append(client)
    return client


def cipher(join_result: dict[str, object]) -> RoomCipher:
    return RoomCipher(join_result["kid"], join_result["key"])  # type: ignore[arg-type]


def receive_until(
    sub: zmq.Socket[bytes], sender: WireClient, room: str, wanted: str, timeout: float = 10.0
) -> list[tuple[bytes, SealedBatch]]:
    """Send probe messages until ``wanted``'s publication arrives (the SUB may still be joining).

    Returns every publication received, in order.
    """
    deadline = time.monotonic() + timeout
    received: list[tuple[bytes, SealedBatch]] = []
    sender.ok(Send(room=room, text=wanted))
    wanted_seq: int | None = None
    while time.monotonic() < deadline:
        if sub.poll(200):
            topic, body = sub.recv_multipart()
            publication = parse_publication(body)
            if isinstance(publication, Announcement):
                continue
            received.append((topic, publication))
            if wanted_seq is not None and received[-1][1].last_seq >= wanted_seq:
                return received
        else:
            wanted_seq = sender.ok(Send(room=room, text=wanted))["seq"]
    raise TimeoutError(f"no publication of {wanted!r} arrived")


def open_all(
    topic_events: list[tuple[bytes, SealedBatch]], key: RoomCipher, room: str = "room1"
) -> list[RoomEvent]:
    return [event for topic, sealed in topic_events for event in key.open(topic, sealed, room)]


def test_two_users_talk_and_the_server_logs_joins_with_addresses(
    context: zmq.Context,
    broker: RunningBroker,
    clients: list[WireClient],  # type: ignore[type-arg]
) -> None:
    alice, bob = connect(clients, context, broker), connect(clients, context, broker)
    alice.sign_up("alice")
    bob.sign_up("bob")
    joined = alice.ok(Join(room="room1"))
    sub = subscriber(context, broker, joined["topic"])  # only a member learns the topic
    assert joined["created"] is True
    assert bob.ok(Join(room="room1"))["members"] == ["alice", "bob"]
    rooms = bob.ok(ListRooms())["rooms"]
    assert {"name": "room1", "members": 2} in rooms
    assert {"name": "default", "members": 0} in rooms

    events = open_all(receive_until(sub, bob, "room1", "hi alice"), cipher(joined))
    assert events[-1].kind == RoomEventKind.MESSAGE
    assert (events[-1].user, events[-1].text) == ("bob", "hi alice")
    seqs = [event.seq for event in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "sequence numbers go up by one"

    broker.output.wait_for(r"alice joined room \[room1\] from <127\.0\.0\.1>")
    broker.output.wait_for(r"bob joined room \[room1\] from <127\.0\.0\.1>")
    bob.ok(Leave(room="room1"))
    broker.output.wait_for(r"bob left room \[room1\] from <127\.0\.0\.1>")
    sub.close()


def test_a_stranger_and_a_former_member_cannot_read_the_room(
    context: zmq.Context,
    broker: RunningBroker,
    clients: list[WireClient],  # type: ignore[type-arg]
) -> None:
    alice, bob = connect(clients, context, broker), connect(clients, context, broker)
    alice.sign_up("alice")
    bob.sign_up("bob")
    topic = alice.ok(Join(room="secret"))["topic"]
    bob_joined = bob.ok(Join(room="secret"))
    bob_key = cipher(bob_joined)
    hostile = subscriber(context, broker, b"")  # subscribes to every topic

    bob.ok(Leave(room="secret"))
    received = receive_until(hostile, alice, "secret", "after bob left")
    # Only what follows bob's membership: his own join may reach a SUB that subscribed
    # quickly, sealed under the key he rightly holds.
    messages = [
        (seen, sealed)
        for seen, sealed in received
        if seen == topic and sealed.seq > bob_joined["seq"]
    ]
    assert messages, "the hostile subscriber does receive the room's traffic..."
    for seen, sealed in messages:
        with pytest.raises(CannotOpen):  # ...but neither bob's old key nor anything else opens it
            bob_key.open(seen, sealed, "secret")
        with pytest.raises(CannotOpen):
            RoomCipher(sealed.kid, bytes(32)).open(seen, sealed, "secret")
        assert b"after bob left" not in sealed.box

    new_keys = [event for event in alice.events if isinstance(event, RoomKey)]
    assert new_keys and new_keys[-1].kid > bob_key.kid
    assert not any(isinstance(event, RoomKey) for event in bob.events)
    alice_key = RoomCipher(new_keys[-1].kid, new_keys[-1].key)
    assert alice_key.open(*messages[-1], "secret")[-1].text == "after bob left"
    hostile.close()


def _random_msgpack(rng: random.Random, depth: int = 0) -> object:
    choices: list[object] = [
        None,
        rng.random() < 0.5,
        rng.randint(-(2**63), 2**64 - 1),
        rng.random() * 1e9,
        "".join(chr(rng.randint(0, 0x2FFF)) for _ in range(rng.randint(0, 40))),
        rng.randbytes(rng.randint(0, 40)),
        "login",
        "join",
        "send",
        1,
    ]
    if depth < 3:
        choices.append([_random_msgpack(rng, depth + 1) for _ in range(rng.randint(0, 4))])
        choices.append(
            {
                rng.choice(
                    ["v", "id", "op", "args", "room", "user", "text", "password"]
                ): _random_msgpack(rng, depth + 1)
                for _ in range(rng.randint(0, 5))
            }
        )
    return rng.choice(choices)


def test_garbage_gets_error_replies_and_everyone_else_keeps_talking(
    context: zmq.Context,
    broker: RunningBroker,
    clients: list[WireClient],  # type: ignore[type-arg]
) -> None:
    rng = random.Random(20261124)
    fuzzer = connect(clients, context, broker)
    frames: list[list[bytes]] = [[rng.randbytes(rng.randint(0, 300))] for _ in range(300)]
    frames += [[msgpack.packb(_random_msgpack(rng))] for _ in range(500)]
    frames += [
        [msgpack.packb({"v": 1, "id": n, "op": "send", "args": _random_msgpack(rng)})]
        for n in range(200)
    ]
    frames += [[b""], [b"a", b"b"], [b"", b"", b""], [b"\x81" * 70_000]]
    fuzzing = Pipeline(fuzzer)
    for parts in frames:
        fuzzing.send_raw(*parts)
    replies = fuzzing.drain()
    assert all(reply.error is not None for reply in replies), "all garbage or before login"

    oversized = connect(clients, context, broker)
    oversized.send_raw(b"\x00" * (2 * 1024 * 1024))  # past ZMQ_MAXMSGSIZE: dropped by ZeroMQ

    alice, bob = connect(clients, context, broker), connect(clients, context, broker)
    alice.sign_up("alice")
    bob.sign_up("bob")
    joined = alice.ok(Join(room="room1"))
    key, sub = cipher(joined), subscriber(context, broker, joined["topic"])
    bob.ok(Join(room="room1"))
    events = open_all(receive_until(sub, bob, "room1", "still here"), key)
    assert events[-1].text == "still here"
    assert broker.process.poll() is None
    sub.close()


def request(op: str, args: dict[str, object]) -> bytes:
    return msgpack.packb({"v": 1, "id": 1, "op": op, "args": args})  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\xc1", ErrorCode.MALFORMED_FRAME),
        (msgpack.packb([1, 2]), ErrorCode.MALFORMED_FRAME),
        (msgpack.packb({"v": 2, "id": 1, "op": "ping"}), ErrorCode.UNSUPPORTED_VERSION),
        (msgpack.packb({"v": 1, "id": 1, "op": "dance"}), ErrorCode.UNKNOWN_OPERATION),
        (msgpack.packb({"v": 1, "id": 1, "op": "join"}), ErrorCode.INVALID_REQUEST),
        (request("join", {"room": 7}), ErrorCode.INVALID_REQUEST),
        (request("join", {"room": "a b"}), ErrorCode.INVALID_NAME),
        (request("join", {"room": "x" * 33}), ErrorCode.INVALID_NAME),
        (request("send", {"room": "r", "text": "x" * 4097}), ErrorCode.TEXT_TOO_LONG),
        (request("send", {"room": "r", "text": "\x1b[2J"}), ErrorCode.INVALID_TEXT),
        (request("register", {"user": "u", "password": "short"}), ErrorCode.INVALID_PASSWORD),
        (msgpack.packb({"v": 1, "id": 1, "op": "rooms"}), ErrorCode.NOT_LOGGED_IN),
        (b"\x00" * 70_000, ErrorCode.FRAME_TOO_LARGE),
    ],
)
def test_each_bad_request_gets_its_stable_code(
    context: zmq.Context,  # type: ignore[type-arg]
    broker: RunningBroker,
    clients: list[WireClient],
    frame: bytes,
    code: ErrorCode,
) -> None:
    client = connect(clients, context, broker)
    client.send_raw(frame)
    reply = client.reply()
    assert reply.error is not None and reply.error.code == code
    assert reply.request_id in (None, 1)


def test_restart_keeps_accounts_rooms_and_the_sequence(
    tmp_path: Path,
    context: zmq.Context,  # type: ignore[type-arg]
) -> None:
    data = tmp_path / "data"
    first = start_broker(data)
    client = WireClient(context, first)
    try:
        client.sign_up("alice", "first password")
        client.ok(Join(room="Lobby"))
        before = client.ok(Send(room="lobby", text="remember me"))["seq"]
    finally:
        client.close()
        assert first.stop() == 0

    second = start_broker(data)
    client = WireClient(context, second)
    try:
        wrong = client.call(Login(user="alice", password="another password"))
        assert wrong.error is not None and wrong.error.code == ErrorCode.BAD_CREDENTIALS
        client.ok(Login(user="alice", password="first password"))
        assert {"name": "Lobby", "members": 0} in client.ok(ListRooms())["rooms"]
        joined = client.ok(Join(room="lobby"))
        assert joined["created"] is False
        assert joined["seq"] == before + 1, "the join continues the stored sequence"
    finally:
        client.close()
        assert second.stop() == 0


PASSWORD = "correct horse"


def test_a_silent_client_is_dropped_and_the_room_told(
    tmp_path: Path,
    context: zmq.Context,  # type: ignore[type-arg]
) -> None:
    broker = start_broker(tmp_path / "data", "--lease", "1.5")
    alice, bob = WireClient(context, broker), WireClient(context, broker)
    try:
        pairs = ((alice, "alice"), (bob, "bob"))
        for client, user in pairs:
            client.ok(Register(user=user, password=PASSWORD))
        # Both log in at once: neither lease runs out while the other's password is checked.
        logins = [(c, c.send(Login(user=user, password=PASSWORD))) for c, user in pairs]
        for client, request_id in logins:
            reply = client.reply()
            assert (reply.request_id, reply.error) == (request_id, None)
        alice.ok(Join(room="room1"))
        bob.ok(Join(room="room1"))
        # alice goes silent; bob pings while we wait for alice's session_ended event.
        deadline = time.monotonic() + 10
        while not alice.dealer.poll(300):
            assert time.monotonic() < deadline, "alice was never dropped"
            bob.ok(Ping())
        assert isinstance(alice.receive(), SessionEnded)
        assert bob.ok(Members(room="room1"))["members"] == ["bob"]
        broker.output.wait_for(r"alice timed out from <127\.0\.0\.1>")
        expired = alice.call(ListRooms())
        assert expired.error is not None and expired.error.code == ErrorCode.SESSION_EXPIRED
    finally:
        alice.close()
        bob.close()
        assert broker.stop() == 0


def test_sigint_stops_the_broker_cleanly(broker: RunningBroker) -> None:
    assert broker.stop(signal.SIGINT) == 0
    assert "Broker stopped." in broker.output.text()
