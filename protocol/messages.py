"""Message types: requests a client sends, events the broker pushes, room events.

Every type validates itself on construction, so an invalid message cannot exist
on either side. Field types come from the annotations; `parse_fields` turns a
decoded msgpack map into an instance or raises `InvalidRequest` naming the field.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any, ClassVar, TypeVar

from .errors import InvalidRange, InvalidRequest
from .limits import KEY_BYTES, MAX_HISTORY_PAGE, MAX_KID, MAX_NAME_CHARS, MAX_SEQ, MAX_TOKEN_CHARS
from .validation import (
    check_msg_id,
    check_name,
    check_new_name,
    check_password,
    check_seq_range,
    check_text,
)

T = TypeVar("T")

_WIRE_TYPES: dict[object, tuple[type, ...]] = {
    str: (str,),
    int: (int,),
    bytes: (bytes,),
    bool: (bool,),
    list: (list,),
}


@cache
def _field_types(cls: type) -> tuple[tuple[str, tuple[type, ...], bool], ...]:
    """(name, accepted wire types, required) for each field of a message class."""
    hints = typing.get_type_hints(cls)
    spec = []
    for field in dataclasses.fields(cls):
        required = (
            field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        )
        hint = hints[field.name]
        spec.append((field.name, _WIRE_TYPES[typing.get_origin(hint) or hint], required))
    return tuple(spec)


def parse_fields(cls: type[T], args: object, what: str) -> T:
    """Build ``cls`` from a decoded map, checking presence and type of each field.

    Unknown keys are ignored, so a newer peer may add optional fields.
    """
    if not isinstance(args, dict):
        raise InvalidRequest(f"{what}: args must be a map")
    values: dict[str, Any] = {}
    for name, accepted, required in _field_types(cls):  # type: ignore[arg-type]
        if name not in args:
            if required:
                raise InvalidRequest(f"{what}: missing field {name!r}")
            continue
        value = args[name]
        # bool is an int in Python but not on the wire: refuse True where a number belongs.
        if not isinstance(value, accepted) or (isinstance(value, bool) and bool not in accepted):
            raise InvalidRequest(f"{what}: field {name!r} must be {accepted[0].__name__}")
        values[name] = value
    return cls(**values)


def fields_of(message: object) -> dict[str, Any]:
    """A message's fields as the map that goes on the wire; optional fields left at their
    default are left out (the receiver fills them in), so older peers never see them."""
    wire = {}
    for field in dataclasses.fields(message):  # type: ignore[arg-type]
        value = getattr(message, field.name)
        if field.default is dataclasses.MISSING or value != field.default:
            wire[field.name] = value
    return wire


# --- requests (client -> broker, over DEALER/ROUTER) ---------------------------------


class Request:
    """Base of every request; ``OP`` is its wire name."""

    OP: ClassVar[str]
    NEEDS_SESSION: ClassVar[bool] = True
    """Whether the dispatcher refuses it on a connection without a session."""


@dataclass(frozen=True, slots=True)
class Hello(Request):
    """Ask for the broker's parameters (publisher port, limits, timings)."""

    OP: ClassVar[str] = "hello"
    NEEDS_SESSION: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class ServerKey(Request):
    """Ask for the broker's public CurveZMQ key; the one request the key service answers."""

    OP: ClassVar[str] = "server_key"
    NEEDS_SESSION: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class Register(Request):
    """Create an account; does not log in."""

    OP: ClassVar[str] = "register"
    NEEDS_SESSION: ClassVar[bool] = False
    user: str
    password: str = dataclasses.field(repr=False)

    def __post_init__(self) -> None:
        check_new_name("user", self.user)
        check_password(self.password)


@dataclass(frozen=True, slots=True)
class Login(Request):
    """Start a session on this connection."""

    OP: ClassVar[str] = "login"
    NEEDS_SESSION: ClassVar[bool] = False
    user: str
    password: str = dataclasses.field(repr=False)

    def __post_init__(self) -> None:
        check_name("user", self.user)
        if not self.password:
            raise InvalidRequest("login: password must not be empty")


@dataclass(frozen=True, slots=True)
class Logout(Request):
    """Leave every room and end this connection's session."""

    OP: ClassVar[str] = "logout"


@dataclass(frozen=True, slots=True)
class ListRooms(Request):
    """One page of the rooms, by name, with their number of members: those after ``after``
    (a room name; "" for the first page)."""

    OP: ClassVar[str] = "rooms"
    after: str = ""

    def __post_init__(self) -> None:
        if len(self.after) > MAX_NAME_CHARS:
            raise InvalidRequest(f"rooms: after must be at most {MAX_NAME_CHARS} characters")


@dataclass(frozen=True, slots=True)
class Join(Request):
    """Join a room, creating it if it does not exist."""

    OP: ClassVar[str] = "join"
    room: str
    history: int = 0
    """How many of the room's latest events to return with the reply (a snapshot)."""

    def __post_init__(self) -> None:
        check_name("room", self.room)
        if not 0 <= self.history <= MAX_HISTORY_PAGE:
            raise InvalidRange(f"history must be 0 to {MAX_HISTORY_PAGE}")


@dataclass(frozen=True, slots=True)
class Leave(Request):
    """Leave a room."""

    OP: ClassVar[str] = "leave"
    room: str

    def __post_init__(self) -> None:
        check_name("room", self.room)


@dataclass(frozen=True, slots=True)
class Members(Request):
    """Who is in a room the session has joined."""

    OP: ClassVar[str] = "members"
    room: str

    def __post_init__(self) -> None:
        check_name("room", self.room)


@dataclass(frozen=True, slots=True)
class Send(Request):
    """Post a message to a room the session has joined."""

    OP: ClassVar[str] = "send"
    room: str
    text: str
    msg_id: str = ""
    """The client's id for this message; a retried send with the same id is stored once."""

    def __post_init__(self) -> None:
        check_name("room", self.room)
        check_text(self.text)
        check_msg_id(self.msg_id)


@dataclass(frozen=True, slots=True)
class History(Request):
    """Stored events of a room the session is in, by an inclusive range of seq."""

    OP: ClassVar[str] = "history"
    room: str
    from_seq: int
    to_seq: int

    def __post_init__(self) -> None:
        check_name("room", self.room)
        check_seq_range(self.from_seq, self.to_seq)


@dataclass(frozen=True, slots=True)
class Resume(Request):
    """Take up a session again with the token from `login`, without the password."""

    OP: ClassVar[str] = "resume"
    NEEDS_SESSION: ClassVar[bool] = False
    token: str = dataclasses.field(repr=False)

    def __post_init__(self) -> None:
        if not 1 <= len(self.token) <= MAX_TOKEN_CHARS:
            raise InvalidRequest(f"resume: token must be 1 to {MAX_TOKEN_CHARS} characters")


@dataclass(frozen=True, slots=True)
class DirectMessage(Request):
    """Send a private message to every session of ``user``, stored for when they are away."""

    OP: ClassVar[str] = "dm"
    user: str
    text: str
    msg_id: str = ""

    def __post_init__(self) -> None:
        check_name("user", self.user)
        check_text(self.text)
        check_msg_id(self.msg_id)


@dataclass(frozen=True, slots=True)
class Inbox(Request):
    """One page of the direct messages not yet delivered to this user, those with an id
    over ``after``; they stay undelivered until acknowledged with `DmAck`.

    Without ``after`` (an older client) the page counts as delivered as it is sent."""

    OP: ClassVar[str] = "inbox"
    after: int = -1
    """-1 (the default, never sent) asks for the older behaviour."""

    def __post_init__(self) -> None:
        if not -1 <= self.after <= MAX_SEQ:
            raise InvalidRange(f"inbox: after must be 0 to {MAX_SEQ}")


@dataclass(frozen=True, slots=True)
class DmAck(Request):
    """This session has the direct messages ``ids`` (shown or queued to show): only now do
    they count as delivered, so a message to a client that died in between is not lost."""

    OP: ClassVar[str] = "dm_ack"
    ids: list[int]

    def __post_init__(self) -> None:
        if not 1 <= len(self.ids) <= MAX_HISTORY_PAGE:
            raise InvalidRequest(f"dm_ack: ids must hold 1 to {MAX_HISTORY_PAGE} ids")
        if not all(type(i) is int and 0 <= i <= MAX_SEQ for i in self.ids):
            raise InvalidRequest("dm_ack: each id must be an unsigned integer")


@dataclass(frozen=True, slots=True)
class Ping(Request):
    """Renew the session's lease; any request does, this one does nothing else."""

    OP: ClassVar[str] = "ping"


REQUEST_TYPES: dict[str, type[Request]] = {
    cls.OP: cls
    for cls in (
        Hello,
        ServerKey,
        Register,
        Login,
        Logout,
        ListRooms,
        Join,
        Leave,
        Members,
        Send,
        History,
        Resume,
        DirectMessage,
        Inbox,
        DmAck,
        Ping,
    )
}


# --- events (broker -> one client, over ROUTER/DEALER) ---------------------------------


class Event:
    """Base of the messages the broker pushes to one connection unasked."""

    NAME: ClassVar[str]


@dataclass(frozen=True, slots=True)
class RoomKey(Event):
    """The room's key changed; messages sealed with key ``kid`` need ``key``."""

    NAME: ClassVar[str] = "room_key"
    room: str
    kid: int
    key: bytes = dataclasses.field(repr=False)

    def __post_init__(self) -> None:
        check_name("room", self.room)
        if len(self.key) != KEY_BYTES:
            raise InvalidRequest(f"room_key: key must be {KEY_BYTES} bytes")
        if not 0 <= self.kid <= MAX_KID:
            raise InvalidRequest(f"room_key: kid must be 0 to {MAX_KID}")


@dataclass(frozen=True, slots=True)
class SessionEnded(Event):
    """The broker ended this connection's session (``reason``: expired, replaced...)."""

    NAME: ClassVar[str] = "session_ended"
    reason: str


@dataclass(frozen=True, slots=True)
class Direct(Event):
    """A direct message, to each session of its recipient (and the sender's other sessions)."""

    NAME: ClassVar[str] = "direct"
    id: int
    sender: str
    recipient: str
    ts_ms: int
    text: str


EVENT_TYPES: dict[str, type[Event]] = {cls.NAME: cls for cls in (RoomKey, SessionEnded, Direct)}


# --- room events (broker -> room members, over PUB/SUB, sealed) ------------------------


class RoomEventKind(StrEnum):
    MESSAGE = "msg"
    JOINED = "join"
    LEFT = "leave"


@dataclass(frozen=True, slots=True)
class RoomEvent:
    """One numbered entry of a room's stream: a message, or a member joining or leaving."""

    room: str
    seq: int
    kind: RoomEventKind
    user: str
    ts_ms: int
    text: str = ""
