"""Typed views of the broker's ``ok`` maps; a reply of the wrong shape is `MalformedFrame`.

The codec only knows a result is a map; these check each field the client
uses, so a broken broker surfaces as one typed error, not a ``KeyError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from zchat.protocol.errors import MalformedFrame
from zchat.protocol.limits import KEY_BYTES, LEASE_MS, MAX_NAME_CHARS, MAX_TEXT_BYTES

from .events import JoinedRoom, RoomInfo

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
    """A ``join`` reply: what the caller sees, and the topic and key it needs."""

    room: JoinedRoom
    topic: bytes
    kid: int
    key: bytes


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
    return JoinResult(room, field(result, "topic", bytes), field(result, "kid", int), key)


def parse_rooms(result: dict[str, Any]) -> list[RoomInfo]:
    rooms = []
    for entry in field(result, "rooms", list):
        if not isinstance(entry, dict):
            raise MalformedFrame("each room must be a map")
        rooms.append(RoomInfo(field(entry, "name", str), field(entry, "members", int)))
    return rooms
