"""What a `ChatClient` returns and yields, besides the protocol's own types.

Room traffic arrives as `zchat.protocol.RoomEvent`, in seq order and each event
once; the scrollback shown on joining is the subclass `HistoryEvent`, after the
`JoinedRoom` that starts it. Direct
messages arrive as `DirectReceived`. The broker ending a session arrives as
`zchat.protocol.SessionEnded`; `Disconnected` and `Reconnected` bracket an
outage the client is repairing on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from zchat.protocol import Direct, RoomEvent, SessionEnded


@dataclass(frozen=True, slots=True)
class HistoryEvent(RoomEvent):
    """A room event from before the live stream: the join snapshot, or a page of history.

    It is still a `RoomEvent`; a UI marks it as history.
    """

    @classmethod
    def of(cls, event: RoomEvent) -> HistoryEvent:
        return cls(event.room, event.seq, event.kind, event.user, event.ts_ms, event.text)


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """One line of the room list: a room and how many users are in it."""

    name: str
    members: int


@dataclass(frozen=True, slots=True)
class JoinedRoom:
    """The broker's answer to ``join``: the room as it is right after joining.

    `ChatClient.join` returns it, and `ChatClient.events` yields it before the
    room's history, so a UI can say "joined" in the right place.
    """

    name: str
    created: bool
    members: tuple[str, ...]
    seq: int


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Events before the earliest one shown (oldest first), from `ChatClient.earlier`.

    ``at_start`` is true when nothing older exists; ``pruned`` when older events
    existed but the broker no longer keeps them.
    """

    room: str
    events: tuple[HistoryEvent, ...]
    at_start: bool
    pruned: bool


@dataclass(frozen=True, slots=True)
class DirectReceived:
    """A direct message: to this user, or from this user in another of its sessions.

    ``unread`` is true when it waited in the inbox for this user to come back.
    """

    id: int
    sender: str
    recipient: str
    ts_ms: int
    text: str
    unread: bool = False

    @classmethod
    def of(cls, event: Direct, unread: bool = False) -> DirectReceived:
        return cls(event.id, event.sender, event.recipient, event.ts_ms, event.text, unread)


@dataclass(frozen=True, slots=True)
class DirectSent:
    """The broker stored a direct message; ``duplicate`` when a retry found it already there."""

    id: int
    user: str
    ts_ms: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection to the broker is lost; the client is reconnecting on its own."""

    reason: str


@dataclass(frozen=True, slots=True)
class Reconnected:
    """The session is back (resumed, rooms rejoined); missed events follow in order."""

    rooms: tuple[str, ...]
    unread: int


ClientEvent = JoinedRoom | RoomEvent | DirectReceived | SessionEnded | Disconnected | Reconnected
"""Everything `ChatClient.events` yields."""
