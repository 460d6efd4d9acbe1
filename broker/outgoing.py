"""What the core asks the shell to send: replies and events to one connection, publications."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zchat.protocol import Event, ZchatError


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
class Publish:
    """A sealed room event, published once on the publisher socket."""

    topic: bytes
    body: bytes


Outgoing = Unicast | Publish
