"""What a `ChatClient` returns and yields, besides the protocol's own types.

Room traffic arrives as `zchat.protocol.RoomEvent`; the broker ending a session
arrives as `zchat.protocol.SessionEnded`; `Disconnected` is the client's own
notice that the broker stopped answering.
"""

from __future__ import annotations

from dataclasses import dataclass

from zchat.protocol import RoomEvent, SessionEnded


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """One line of the room list: a room and how many users are in it."""

    name: str
    members: int


@dataclass(frozen=True, slots=True)
class JoinedRoom:
    """The broker's answer to ``join``: the room as it is right after joining."""

    name: str
    created: bool
    members: tuple[str, ...]
    seq: int


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The broker stopped answering pings; the session may be gone."""

    reason: str


ClientEvent = RoomEvent | SessionEnded | Disconnected
"""Everything `ChatClient.events` yields."""
