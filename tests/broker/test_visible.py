"""What a stranger sees of a real broker: no room names, only bucketed sizes; no look-alikes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
import zmq

from tests.processes import RunningBroker, start_broker
from tests.wire import WireClient, subscriber
from zchat.protocol import (
    Announcement,
    ErrorCode,
    Join,
    Login,
    Register,
    RoomCipher,
    SealedBatch,
    Send,
    parse_publication,
)
from zchat.protocol.limits import MIN_BOX_BYTES

ROOM = "payroll-2026"
LENGTHS = range(1, 241, 3)
"""Message lengths: 80 different ones."""


@pytest.fixture
def chatty_broker(tmp_path: Path) -> Iterator[RunningBroker]:
    """A broker that lets one member send as fast as it likes."""
    running = start_broker(tmp_path / "data", "--message-rate", "1000", "--message-burst", "1000")
    yield running
    assert running.stop() == 0


def test_a_stranger_subscribed_to_everything_sees_no_room_name_and_only_bucketed_sizes(
    context: zmq.Context[zmq.Socket[bytes]], chatty_broker: RunningBroker
) -> None:
    broker = chatty_broker
    stranger = subscriber(context, broker, b"")  # the broker's public key is all it needs
    alice = WireClient(context, broker)
    try:
        alice.sign_up("alice")
        joined = alice.ok(Join(room=ROOM))
        topic, key = joined["topic"], RoomCipher(joined["kid"], joined["key"])
        deadline = time.monotonic() + 10
        while not stranger.poll(100):  # its subscription takes effect some time after it is made
            assert time.monotonic() < deadline, "the stranger never received anything"
            alice.ok(Send(room=ROOM, text="is anyone listening"))
        last = 0
        for length in LENGTHS:
            last = alice.ok(Send(room=ROOM, text="x" * length))["seq"]

        seen: list[tuple[bytes, bytes]] = []
        newest = 0
        while newest < last:
            assert stranger.poll(10_000), f"publications stopped at seq {newest} of {last}"
            frame_topic, body = stranger.recv_multipart()
            seen.append((frame_topic, body))
            publication = parse_publication(body)
            if isinstance(publication, SealedBatch) and frame_topic == topic:
                newest = publication.last_seq
                assert key.open(frame_topic, publication, ROOM), "members still read it"
    finally:
        stranger.close()
        alice.close()

    for frame_topic, body in seen:
        assert len(frame_topic) == 16 and ROOM.encode() not in frame_topic
        assert ROOM.encode() not in body
    boxes = [
        publication.box
        for _, body in seen
        if isinstance(publication := parse_publication(body), SealedBatch)
    ]
    assert len(boxes) >= len(LENGTHS) // 8
    sizes = {len(box) for box in boxes}
    assert all(size >= MIN_BOX_BYTES and size & (size - 1) == 0 for size in sizes), sizes
    assert len(sizes) <= 5, f"80 message lengths showed as {len(sizes)} box sizes"
    announcements = [
        parse_publication(body) for _, body in seen if len(body) <= 10
    ]  # unsealed: they say how far the room has got, and nothing else
    assert all(isinstance(item, Announcement) for item in announcements)


def test_registering_a_look_alike_of_an_existing_user_is_refused(
    context: zmq.Context[zmq.Socket[bytes]], broker: RunningBroker
) -> None:
    client = WireClient(context, broker)
    try:
        client.ok(Register(user="prashant", password="a-good-password"))
        client.ok(Register(user="cop", password="a-good-password"))
        for request_id, (user, code) in enumerate(
            [
                ("pr\u0430shant", ErrorCode.INVALID_NAME),  # Latin with a Cyrillic a
                ("\u0441\u043e\u0440", ErrorCode.NAME_TAKEN),  # all Cyrillic, looks like "cop"
                ("PRASHANT", ErrorCode.NAME_TAKEN),
                ("(history)", ErrorCode.INVALID_NAME),
            ],
            start=100,
        ):
            request = {
                "v": 1,
                "id": request_id,
                "op": "register",
                "args": {"user": user, "password": "a-good-password"},
            }
            client.send_raw(msgpack.packb(request))  # raw: the client library refuses some first
            reply = client.reply()
            assert reply.error is not None and reply.error.code == code, (user, reply)
    finally:
        client.close()


def test_a_rooms_topic_stays_the_same_when_the_broker_restarts(
    context: zmq.Context[zmq.Socket[bytes]], tmp_path: Path
) -> None:
    topics = []
    for _ in range(2):
        broker = start_broker(tmp_path / "data")
        client = WireClient(context, broker)
        try:
            if not topics:
                client.ok(Register(user="alice", password="a-good-password"))
            client.ok(Login(user="alice", password="a-good-password"))
            topics.append(client.ok(Join(room=ROOM))["topic"])
        finally:
            client.close()
            assert broker.stop() == 0
    assert topics[0] == topics[1]
