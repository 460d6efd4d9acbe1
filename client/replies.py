"""Typed views of the broker's ``ok`` maps; a reply of the wrong shape is `MalformedFrame`.

The codec only knows a result is a map; these check each field the client
uses, so a broken broker surfaces as one typed error, not a ``KeyError``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

from zchat.protocol import RoomEvent, RoomEventKind
from zchat.protocol.errors import MalformedFrame
from zchat.protocol.limits import KEY_BYTES, LEASE_MS, MAX_NAME_CHARS, MAX_TEXT_BYTES

from .events import DirectReceived, DirectSent, JoinedRoom, RoomInfo

T = TypeVar("T")


def field(result: dict[str, Any], name: str, kind: type[T]) -> T:
    """``result[name]``, which must be a ``kind`` (and not a bool posing as an int)."""
    value = result.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise MalformedFrame(f"reply field {name!r} must be {kind.__name__}")
    return value


def strings(result: dict[str, Any], name: str) -> tuple[str, ...]:
    """A list-of-strings field."""
    values = field(result, name, list)
    if not all(isinstance(value, str) for value in values):
        raise MalformedFrame(f"reply field {name!r} must hold strings")
    return tuple(values)


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What ``hello`` says about the broker."""

    server: str
    pub_port: int
    ping_interval_ms: int
    lease_ms: int
    max_text_bytes: int
    max_name_chars: int


def optional(result: dict[str, Any], name: str, default: T) -> T:
    """A field the client can do without: its default when missing or mistyped."""
    value = result.get(name)
    return value if type(value) is type(default) else default


def parse_hello(result: dict[str, Any]) -> ServerInfo:
    """Only ``pub_port`` and ``ping_interval_ms`` are needed; the rest informs."""
    pub_port = field(result, "pub_port", int)
    if not 0 < pub_port < 65536:
        raise MalformedFrame(f"hello names an impossible pub_port {pub_port}")
    return ServerInfo(
        server=optional(result, "server", ""),
        pub_port=pub_port,
        ping_interval_ms=max(100, field(result, "ping_interval_ms", int)),
        lease_ms=optional(result, "lease_ms", LEASE_MS),
        max_text_bytes=optional(result, "max_text_bytes", MAX_TEXT_BYTES),
        max_name_chars=optional(result, "max_name_chars", MAX_NAME_CHARS),
    )


@dataclass(frozen=True, slots=True)
class JoinResult:
    """A ``join`` reply: what the caller sees, and the topic, key and snapshot it needs."""

    room: JoinedRoom
    topic: bytes
    kid: int
    key: bytes
    events: tuple[RoomEvent, ...] = ()


def room_events(room: str, rows: object) -> tuple[RoomEvent, ...]:
    """``[[seq, kind, user, ts_ms, text]]`` rows (join snapshots, history pages) as events."""
    if not isinstance(rows, list):
        raise MalformedFrame("events must be a list")
    events = []
    for row in rows:
        if not (isinstance(row, list) and len(row) == 5):
            raise MalformedFrame("each event must be [seq, kind, user, ts_ms, text]")
        seq, kind, user, ts_ms, text = row
        if not (
            type(seq) is int
            and type(ts_ms) is int
            and isinstance(user, str)
            and isinstance(text, str)
            and kind in set(RoomEventKind)
        ):
            raise MalformedFrame("an event row has the wrong types")
        events.append(RoomEvent(room, seq, RoomEventKind(kind), user, ts_ms, text))
    return tuple(events)


def parse_join(result: dict[str, Any]) -> JoinResult:
    key = field(result, "key", bytes)
    if len(key) != KEY_BYTES:
        raise MalformedFrame(f"join key must be {KEY_BYTES} bytes")
    room = JoinedRoom(
        name=field(result, "room", str),
        created=field(result, "created", bool),
        members=strings(result, "members"),
        seq=field(result, "seq", int),
    )
    events = room_events(room.name, result.get("events", []))
    return JoinResult(room, field(result, "topic", bytes), field(result, "kid", int), key, events)


@dataclass(frozen=True, slots=True)
class HistoryResult:
    """A ``history`` page: events oldest first, whether more follow, the room's latest seq."""

    room: str
    events: tuple[RoomEvent, ...]
    more: bool
    last_seq: int


def parse_history(result: dict[str, Any]) -> HistoryResult:
    room = field(result, "room", str)
    return HistoryResult(
        room,
        room_events(room, field(result, "events", list)),
        field(result, "more", bool),
        field(result, "last_seq", int),
    )


@dataclass(frozen=True, slots=True)
class SessionResult:
    """A ``login`` or ``resume`` reply. The token is never shown."""

    user: str
    token: str = dataclasses.field(repr=False)
    unread: int = 0


def parse_session(result: dict[str, Any]) -> SessionResult:
    return SessionResult(
        field(result, "user", str),
        optional(result, "resume", ""),
        max(0, optional(result, "unread", 0)),
    )


def parse_dm(result: dict[str, Any]) -> DirectSent:
    return DirectSent(
        field(result, "id", int),
        field(result, "user", str),
        field(result, "ts_ms", int),
        optional(result, "duplicate", False),
    )


def parse_inbox(result: dict[str, Any]) -> tuple[list[DirectReceived], bool]:
    """The messages of an ``inbox`` page, and whether more are waiting."""
    messages = []
    for entry in field(result, "messages", list):
        if not isinstance(entry, dict):
            raise MalformedFrame("each message must be a map")
        messages.append(
            DirectReceived(
                field(entry, "id", int),
                field(entry, "sender", str),
                field(entry, "recipient", str),
                field(entry, "ts_ms", int),
                field(entry, "text", str),
                unread=True,
            )
        )
    return messages, field(result, "more", bool)


def parse_rooms(result: dict[str, Any]) -> tuple[list[RoomInfo], bool]:
    """The rooms of a ``rooms`` page, and whether more follow (a broker that does not
    page says nothing: that is all of them)."""
    rooms = []
    for entry in field(result, "rooms", list):
        if not isinstance(entry, dict):
            raise MalformedFrame("each room must be a map")
        rooms.append(RoomInfo(field(entry, "name", str), field(entry, "members", int)))
    return rooms, optional(result, "more", False)
