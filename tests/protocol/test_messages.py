"""Message types validate themselves, keep secrets out of reprs, and match the spec tables."""

from __future__ import annotations

import ast
import dataclasses
import typing
from collections.abc import Callable

import pytest

from tests.protocol.spec import spec_section, table_rows
from zchat.protocol import (
    Direct,
    DmAck,
    Hello,
    Inbox,
    Join,
    Leave,
    ListRooms,
    Login,
    Members,
    Ping,
    Register,
    Resume,
    RoomEventKind,
    RoomKey,
    Send,
    SessionEnded,
    decode_incoming,
    encode_event,
)
from zchat.protocol.errors import (
    InvalidName,
    InvalidPassword,
    InvalidRange,
    InvalidRequest,
    InvalidText,
    TextTooLong,
    ZchatError,
)
from zchat.protocol.limits import MAX_HISTORY_PAGE
from zchat.protocol.messages import EVENT_TYPES, REQUEST_TYPES, fields_of, parse_fields

SPEC_TYPES = {"str": str, "int": int, "bin": bytes, "bin(32)": bytes, "[int]": list[int]}
"""Wire types as the spec spells them, mapped to the Python types that carry them."""


def documented_fields(cell: str) -> dict[str, tuple[type, object]]:
    """A spec cell such as ``user: str, history: int = 0`` (an en dash: none) as
    name -> (type, default or MISSING)."""
    cell = cell.strip("`")
    if cell == "\u2013":
        return {}
    fields: dict[str, tuple[type, object]] = {}
    for part in cell.split(", "):
        name, wire_type = part.split(": ")
        default: object = dataclasses.MISSING
        if " = " in wire_type:
            wire_type, literal = wire_type.split(" = ")
            default = ast.literal_eval(literal)
        fields[name] = (SPEC_TYPES[wire_type], default)
    return fields


def declared_fields(cls: type) -> dict[str, tuple[type, object]]:
    hints = typing.get_type_hints(cls)
    return {field.name: (hints[field.name], field.default) for field in dataclasses.fields(cls)}


# --- construction validates --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "error_type"),
    [
        (lambda: Join(room=""), InvalidName),
        (lambda: Join(room="room one"), InvalidName),
        (lambda: Join(room="x" * 33), InvalidName),
        (lambda: Leave(room=""), InvalidName),
        (lambda: Leave(room="room\u200b1"), InvalidName),
        (lambda: Members(room="\x1b[31m"), InvalidName),
        (lambda: Members(room="e\u0301"), InvalidName),
        (lambda: Send(room="", text="hi"), InvalidName),
        (lambda: Send(room="room1", text=""), InvalidText),
        (lambda: Send(room="room1", text=" \n "), InvalidText),
        (lambda: Send(room="room1", text="\x1b[2J"), InvalidText),
        (lambda: Send(room="room1", text="x" * 4097), TextTooLong),
        (lambda: Register(user="", password="correct horse"), InvalidName),
        (lambda: Register(user="al ice", password="correct horse"), InvalidName),
        (lambda: Register(user="alice", password="short"), InvalidPassword),
        (lambda: Register(user="alice", password="x" * 1025), InvalidPassword),
        (lambda: Login(user="", password="correct horse"), InvalidName),
        (lambda: Login(user="alice\u00a0", password="correct horse"), InvalidName),
        (lambda: Login(user="alice", password=""), InvalidRequest),
        (lambda: RoomKey(room="", kid=1, key=bytes(32)), InvalidName),
        (lambda: RoomKey(room="room1", kid=1, key=bytes(31)), InvalidRequest),
        (lambda: RoomKey(room="room1", kid=1, key=bytes(33)), InvalidRequest),
    ],
    ids=lambda value: "" if callable(value) else value.__name__,
)
def test_an_invalid_message_cannot_be_built(
    build: Callable[[], object], error_type: type[ZchatError]
) -> None:
    with pytest.raises(error_type) as caught:
        build()
    assert type(caught.value) is error_type


@pytest.mark.parametrize(
    "message",
    [
        Join(room="房间"),
        Leave(room="Ñandú"),
        Members(room="prachi"),
        Send(room="room1", text="hi\tbob\n"),
        Register(user="alice", password="x" * 8),
        Login(user="alice", password="x"),
        RoomKey(room="room1", kid=0, key=bytes(32)),
        SessionEnded(reason="expired"),
    ],
    ids=repr,
)
def test_messages_are_frozen(message: object) -> None:
    for field in dataclasses.fields(message):  # type: ignore[arg-type]
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(message, field.name, "")


def test_a_frozen_message_cannot_be_edited_into_an_invalid_one() -> None:
    join = Join(room="room1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        join.room = ""  # type: ignore[misc]
    assert join.room == "room1"


@pytest.mark.parametrize("kid", [-1, 2**32])
def test_room_key_refuses_a_kid_outside_four_bytes(kid: int) -> None:
    with pytest.raises(InvalidRequest):
        RoomKey(room="room1", kid=kid, key=bytes(32))


# --- secrets stay out of reprs -----------------------------------------------------------------


@pytest.mark.parametrize("request_type", [Register, Login])
def test_repr_never_shows_the_password(request_type: type[Register | Login]) -> None:
    secret = "hunter2-is-my-password"
    request = request_type(user="alice", password=secret)
    assert secret not in repr(request)
    assert secret not in str(request)
    assert secret not in f"{request!r} {request}"
    assert "alice" in repr(request)


def test_repr_never_shows_the_room_key() -> None:
    key = bytes(range(32))
    event = RoomKey(room="room1", kid=3, key=key)
    assert repr(key) not in repr(event)
    assert key.hex() not in repr(event)
    assert "room1" in repr(event)


# --- fields on the wire ------------------------------------------------------------------------


def test_fields_of_is_the_wire_map() -> None:
    assert fields_of(Send(room="room1", text="hi")) == {"room": "room1", "text": "hi"}
    assert fields_of(Register(user="alice", password="x" * 8)) == {
        "user": "alice",
        "password": "x" * 8,
    }
    assert fields_of(Ping()) == {}


@pytest.mark.parametrize(
    "message",
    [
        Join(room="room1"),
        Send(room="房间", text="hi"),
        Login(user="alice", password="pw"),
        RoomKey(room="room1", kid=7, key=bytes(32)),
        SessionEnded(reason="expired"),
        Hello(),
    ],
    ids=repr,
)
def test_parse_fields_inverts_fields_of(message: object) -> None:
    assert parse_fields(type(message), fields_of(message), "test") == message


def test_parse_fields_names_the_missing_field() -> None:
    with pytest.raises(InvalidRequest, match="'text'"):
        parse_fields(Send, {"room": "room1"}, "send")


def test_parse_fields_names_the_field_of_the_wrong_type() -> None:
    with pytest.raises(InvalidRequest, match="'kid'"):
        parse_fields(RoomKey, {"room": "room1", "kid": True, "key": bytes(32)}, "room_key")


# --- agreement with the spec -------------------------------------------------------------------


def test_each_request_type_is_registered_under_its_op() -> None:
    for op, request_type in REQUEST_TYPES.items():
        assert op == request_type.OP


def test_each_event_type_is_registered_under_its_name() -> None:
    for name, event_type in EVENT_TYPES.items():
        assert name == event_type.NAME


def test_operations_match_the_spec_table() -> None:
    rows = table_rows(spec_section("### Operations"))
    documented = {row[0].strip("`"): row for row in rows}
    assert set(documented) == set(REQUEST_TYPES)
    for op, (_, session, args, _) in documented.items():
        request_type = REQUEST_TYPES[op]
        assert request_type.NEEDS_SESSION is {"yes": True, "no": False}[session], op
        assert declared_fields(request_type) == documented_fields(args), op


def test_events_match_the_spec_table() -> None:
    rows = table_rows(spec_section("### Events (ROUTER → DEALER, unasked)"))
    documented = {row[0].strip("`"): row for row in rows}
    assert set(documented) == set(EVENT_TYPES)
    for name, (_, args, _) in documented.items():
        assert declared_fields(EVENT_TYPES[name]) == documented_fields(args), name


def test_room_event_kinds_are_the_documented_strings() -> None:
    assert {kind.value for kind in RoomEventKind} == {"msg", "join", "leave"}
    assert RoomEventKind.MESSAGE.value == "msg"
    assert RoomEventKind.JOINED.value == "join"
    assert RoomEventKind.LEFT.value == "leave"


@pytest.mark.parametrize("history", [-1, MAX_HISTORY_PAGE + 1])
def test_join_history_is_bounded(history: int) -> None:
    with pytest.raises(InvalidRange):
        Join(room="room1", history=history)


def test_optional_fields_at_their_default_stay_off_the_wire() -> None:
    assert fields_of(Send(room="r", text="hi")) == {"room": "r", "text": "hi"}
    assert fields_of(Send(room="r", text="hi", msg_id="m1"))["msg_id"] == "m1"
    assert fields_of(Join(room="r", history=50)) == {"room": "r", "history": 50}


def test_resume_repr_hides_the_token() -> None:
    assert "secret-token" not in repr(Resume(token="secret-token"))


def test_dm_ack_takes_a_bounded_list_of_ids() -> None:
    assert parse_fields(DmAck, {"ids": [1, 2]}, "dm_ack") == DmAck(ids=[1, 2])
    for ids in ([], list(range(MAX_HISTORY_PAGE + 1)), [-1], ["1"], [True]):
        with pytest.raises(InvalidRequest):
            parse_fields(DmAck, {"ids": ids}, "dm_ack")
    with pytest.raises(InvalidRequest, match="'ids'"):
        parse_fields(DmAck, {"ids": 5}, "dm_ack")


def test_rooms_and_inbox_take_an_optional_cursor() -> None:
    assert fields_of(ListRooms()) == {} and fields_of(Inbox()) == {}, "older peers see nothing new"
    assert fields_of(ListRooms(after="lobby")) == {"after": "lobby"}
    assert fields_of(Inbox(after=0)) == {"after": 0}
    with pytest.raises(InvalidRequest):
        ListRooms(after="x" * 33)
    with pytest.raises(InvalidRange):
        Inbox(after=-2)


def test_direct_event_round_trips() -> None:
    event = Direct(id=7, sender="alice", recipient="bob", ts_ms=5, text="psst")
    assert decode_incoming(encode_event(event)) == event
