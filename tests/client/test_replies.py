"""The broker's results are checked field by field before the client uses them."""

from __future__ import annotations

import pytest

from zchat.client.events import JoinedRoom, RoomInfo
from zchat.client.replies import parse_hello, parse_join, parse_rooms
from zchat.protocol.errors import MalformedFrame

HELLO = {
    "protocol": 1,
    "server": "zchat",
    "pub_port": 5001,
    "ping_interval_ms": 5000,
    "lease_ms": 15000,
    "max_text_bytes": 4096,
    "max_name_chars": 32,
}


def test_hello() -> None:
    info = parse_hello(HELLO)
    assert (info.pub_port, info.ping_interval_ms, info.lease_ms) == (5001, 5000, 15000)


@pytest.mark.parametrize("pub_port", [0, 70000, "5001", True, None])
def test_hello_needs_a_real_pub_port(pub_port: object) -> None:
    with pytest.raises(MalformedFrame):
        parse_hello({**HELLO, "pub_port": pub_port})


def test_join() -> None:
    result = parse_join(
        {
            "room": "room1",
            "created": False,
            "topic": b"room1\x00",
            "kid": 4,
            "key": bytes(32),
            "seq": 17,
            "members": ["alice", "bob"],
        }
    )
    assert result.room == JoinedRoom("room1", False, ("alice", "bob"), 17)
    assert (result.topic, result.kid) == (b"room1\x00", 4)


@pytest.mark.parametrize(
    "change", [{"key": bytes(31)}, {"members": ["alice", 3]}, {"seq": "17"}, {"created": 1}]
)
def test_join_refuses_a_broken_reply(change: dict[str, object]) -> None:
    good = {
        "room": "room1",
        "created": False,
        "topic": b"room1\x00",
        "kid": 4,
        "key": bytes(32),
        "seq": 17,
        "members": ["alice"],
    }
    with pytest.raises(MalformedFrame):
        parse_join({**good, **change})


def test_rooms() -> None:
    assert parse_rooms({"rooms": [{"name": "default", "members": 0}]}) == (
        [RoomInfo("default", 0)],
        False,
    )
    assert parse_rooms({"rooms": [], "more": True}) == ([], True)
    with pytest.raises(MalformedFrame):
        parse_rooms({"rooms": ["default"]})
