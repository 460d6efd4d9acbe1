"""What the core asks the shell to send: replies and events to one connection, room events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zchat.protocol import Event, PlainEvent, RoomCipher, ZchatError


@dataclass(frozen=True, slots=True)
class Result:
    """A successful reply to request ``request_id``."""

    request_id: int
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Failure:
    """An error reply; ``request_id`` is None when the request had no readable id."""

    request_id: int | None
    error: ZchatError


@dataclass(frozen=True, slots=True)
class Unicast:
    """A reply or event for one connection, sent over the ROUTER only."""

    routing_id: bytes
    message: Result | Failure | Event


@dataclass(frozen=True, slots=True)
class RoomPost:
    """A stored room event to publish, sealed with ``cipher`` (the room's key when it
    happened); `seal_batches` turns a batch's posts into as few publications as it can."""

    topic: bytes
    cipher: RoomCipher
    seq: int
    event: PlainEvent


@dataclass(frozen=True, slots=True)
class Publish:
    """A publication body (a sealed batch, or an announcement), sent once on the publisher."""

    topic: bytes
    body: bytes


Outgoing = Unicast | RoomPost | Publish
