"""The broker core without sockets: sessions, rooms, membership, keys and leases."""

from __future__ import annotations

import pytest

from tests.broker.core import CoreHarness, error_code, key_events, open_publication, publications
from zchat.broker.handlers import CheckedLogin, NewAccount
from zchat.broker.outgoing import Result, Unicast
from zchat.protocol import (
    CannotOpen,
    ErrorCode,
    Hello,
    Join,
    Leave,
    ListRooms,
    Logout,
    Members,
    Ping,
    RoomEventKind,
    Send,
    SessionEnded,
)
from zchat.protocol.sealing import RoomCipher, room_topic


def cipher_of(join_result: dict[str, object]) -> RoomCipher:
    kid, key = join_result["kid"], join_result["key"]
    assert isinstance(kid, int) and isinstance(key, bytes)
    return RoomCipher(kid, key)


def test_hello_needs_no_session_and_names_the_publisher(core: CoreHarness) -> None:
    result = core.ok(core.connection("c"), Hello())
    assert result["pub_port"] == 5001
    assert result["protocol"] == 1
    assert result["lease_ms"] == 15_000


def test_default_room_exists_from_the_start(core: CoreHarness) -> None:
    alice = core.login("alice")
    assert core.ok(alice, ListRooms()) == {
        "rooms": [{"name": "default", "members": 0}],
        "more": False,
    }


def test_register_refuses_a_taken_name_ignoring_case(core: CoreHarness) -> None:
    conn = core.connection("c")
    core.ok(conn, NewAccount("alice", "hash"))
    assert error_code(core.call(conn, NewAccount("ALICE", "hash"))) == ErrorCode.NAME_TAKEN


def test_login_failure_and_double_login(core: CoreHarness) -> None:
    conn = core.connection("c")
    assert error_code(core.call(conn, CheckedLogin("alice", None))) == ErrorCode.BAD_CREDENTIALS
    core.ok(conn, NewAccount("alice", "hash"))
    assert core.ok(conn, CheckedLogin("alice", "alice"))["user"] == "alice"
    again = core.call(conn, CheckedLogin("alice", "alice"))
    assert error_code(again) == ErrorCode.ALREADY_LOGGED_IN


@pytest.mark.parametrize(
    "request_",
    [ListRooms(), Join(room="r"), Leave(room="r"), Members(room="r"), Send(room="r", text="x")],
)
def test_session_requests_are_refused_before_login(core: CoreHarness, request_: object) -> None:
    reply = core.call(core.connection("c"), request_)  # type: ignore[arg-type]
    assert error_code(reply) == ErrorCode.NOT_LOGGED_IN


def test_join_creates_then_joins_and_announces(core: CoreHarness) -> None:
    alice, bob = core.login("alice"), core.login("bob")
    first = core.send(alice, Join(room="room1"))
    created = first[0].message.data  # type: ignore[union-attr]
    assert created["created"] is True and created["members"] == ["alice"]
    assert created["topic"] == room_topic(core.state.topic_key, "room1")
    [announce] = publications(first)
    event = open_publication(announce, cipher_of(created))
    assert (event.kind, event.user, event.seq) == (RoomEventKind.JOINED, "alice", 1)
    assert created["seq"] == 1

    joined = core.ok(bob, Join(room="ROOM1"))
    assert joined["created"] is False
    assert joined["room"] == "room1", "the first spelling of a room name is kept"
    assert joined["members"] == ["alice", "bob"]
    assert joined["seq"] == 2
    rooms = core.ok(bob, ListRooms())["rooms"]
    assert {"name": "room1", "members": 2} in rooms  # type: ignore[operator]


def test_send_stores_and_publishes_once_whatever_the_room_size(core: CoreHarness) -> None:
    members = [core.login(f"user{n}") for n in range(20)]
    for conn in members:
        core.ok(conn, Join(room="big"))
    out = core.send(members[0], Send(room="big", text="hello all"))
    assert len(out) == 2, "one reply and exactly one publication: ZeroMQ does the fan-out"
    [publication] = publications(out)
    reply = out[0].message
    assert isinstance(reply, Result) and reply.data["seq"] == 21
    cipher = cipher_of(core.ok(members[1], Join(room="big")))
    event = open_publication(publication, cipher)
    assert (event.kind, event.user, event.text) == (RoomEventKind.MESSAGE, "user0", "hello all")
    stored = core.storage.events("big", from_seq=21, to_seq=30, limit=10)
    assert [(e.seq, e.text) for e in stored] == [(21, "hello all")]


def test_send_and_members_need_membership(core: CoreHarness) -> None:
    alice, bob = core.login("alice"), core.login("bob")
    core.ok(alice, Join(room="room1"))
    assert error_code(core.call(bob, Send(room="room1", text="hi"))) == ErrorCode.NOT_MEMBER
    assert error_code(core.call(bob, Members(room="room1"))) == ErrorCode.NOT_MEMBER
    assert error_code(core.call(bob, Leave(room="room1"))) == ErrorCode.NOT_MEMBER
    assert core.ok(alice, Members(room="room1")) == {"room": "room1", "members": ["alice"]}


def test_leave_rekeys_for_the_remaining_members_only(core: CoreHarness) -> None:
    alice, bob, carol = core.login("alice"), core.login("bob"), core.login("carol")
    for conn in (alice, bob, carol):
        joined = core.ok(conn, Join(room="room1"))
    old = cipher_of(joined)

    out = core.send(carol, Leave(room="room1"))
    keys = key_events(out)
    assert set(keys) == {alice.routing_id, bob.routing_id}, "the leaver gets no new key"
    new = RoomCipher(keys[alice.routing_id].kid, keys[alice.routing_id].key)
    assert new.kid == old.kid + 1 and new.key != old.key

    [left] = publications(out)
    assert open_publication(left, new).kind == RoomEventKind.LEFT
    with pytest.raises(CannotOpen):
        open_publication(left, old)

    [message] = publications(core.send(alice, Send(room="room1", text="secret")))
    assert open_publication(message, new).text == "secret"
    with pytest.raises(CannotOpen):
        open_publication(message, old)


def test_same_user_twice_is_one_member_announced_once(core: CoreHarness) -> None:
    laptop, phone = core.login("laptop", "alice"), core.login("phone", "alice")
    assert len(publications(core.send(laptop, Join(room="room1")))) == 1
    assert publications(core.send(phone, Join(room="room1"))) == []
    assert core.ok(phone, Members(room="room1"))["members"] == ["alice"]

    out = core.send(laptop, Logout())
    assert publications(out) == [], "alice is still in the room on her phone"
    assert set(key_events(out)) == {phone.routing_id}
    assert core.ok(phone, Members(room="room1"))["members"] == ["alice"]
    assert error_code(core.call(laptop, ListRooms())) == ErrorCode.NOT_LOGGED_IN


def test_logout_leaves_every_room(core: CoreHarness) -> None:
    alice, bob = core.login("alice"), core.login("bob")
    for room in ("a", "b"):
        core.ok(alice, Join(room=room))
        core.ok(bob, Join(room=room))
    out = core.send(alice, Logout())
    assert out[0].message.data == {"rooms": ["a", "b"]}  # type: ignore[union-attr]
    assert len(publications(out)) == 2
    assert core.ok(bob, Members(room="a"))["members"] == ["bob"]
    assert core.ok(bob, Members(room="b"))["members"] == ["bob"]


def test_lease_expires_silent_sessions_and_tells_them(core: CoreHarness) -> None:
    alice, bob = core.login("alice"), core.login("bob")
    core.ok(alice, Join(room="room1"))
    core.ok(bob, Join(room="room1"))
    core.now_ms += 10_000
    core.ok(bob, Ping())
    assert core.expire() == []
    core.now_ms += 6_000  # alice: 16 s silent; bob: 6 s
    out = core.expire()
    ended = [i for i in out if isinstance(i, Unicast) and isinstance(i.message, SessionEnded)]
    assert [i.routing_id for i in ended] == [alice.routing_id]
    assert core.ok(bob, Members(room="room1"))["members"] == ["bob"]
    assert len(publications(out)) == 1
    assert error_code(core.call(alice, ListRooms())) == ErrorCode.SESSION_EXPIRED
    core.ok(alice, CheckedLogin("alice", "alice"))
    assert core.ok(alice, ListRooms())


def test_a_failing_handler_costs_one_request_not_the_core(
    core: CoreHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = core.login("alice")
    core.ok(alice, Join(room="room1"))

    def broken(event: object) -> None:
        raise AttributeError("a bug")

    monkeypatch.setattr(core.storage, "append_event", broken)
    assert error_code(core.call(alice, Send(room="room1", text="x"))) == ErrorCode.INTERNAL_ERROR
    monkeypatch.undo()
    assert core.ok(alice, ListRooms())
