"""One joined room's key ring, with no I/O.

Publications and keys travel on different sockets, so a publication sealed
with a key the client has not received yet is held until that key arrives.
Everything the ring cannot open is dropped: a former member's or a stranger's
view of a room is boxes it cannot open. Announcements (``[seq]``) need no key
and pass straight through. Order and repeats are the `Sequencer`'s business.
"""

from __future__ import annotations

import logging
from collections import deque

from zchat.protocol import (
    Announcement,
    CannotOpen,
    RoomCipher,
    RoomEvent,
    SealedBatch,
    parse_publication,
)

log = logging.getLogger(__name__)

MAX_HELD = 256
"""Publications (batches) held while waiting for a key; beyond this the oldest are dropped."""

MAX_KEYS = 8
"""Old keys kept per room, for publications that arrive late."""


class RoomStream:
    """Turns a room's publication bodies into `RoomEvent`s and `Announcement`s.

    Created when the client subscribes, and holds publications until `activate`
    gives it the key.
    """

    def __init__(self, topic: bytes, room: str) -> None:
        self.topic = topic
        self.room = room
        self._keys: dict[int, RoomCipher] = {}
        self._held: deque[SealedBatch] = deque(maxlen=MAX_HELD)
        self._active = False

    @property
    def active(self) -> bool:
        """Whether the join reply has arrived (so events can be delivered)."""
        return self._active

    @property
    def newest_kid(self) -> int | None:
        return max(self._keys, default=None)

    def activate(self, kid: int, key: bytes) -> list[RoomEvent]:
        """Apply a join reply; returns held events that are now open."""
        self._active = True
        return self.add_key(kid, key)

    def replace_keys(self, kid: int, key: bytes) -> list[RoomEvent]:
        """Forget every key and start again from a join reply: after a reconnect the old
        keys open nothing new (and a broker that lost its database may have reused ids)."""
        self._keys.clear()
        return self.activate(kid, key)

    def add_key(self, kid: int, key: bytes) -> list[RoomEvent]:
        """Keep a room key; returns the held events it (or an older key) opens."""
        self._keys[kid] = RoomCipher(kid, key)
        while len(self._keys) > MAX_KEYS:
            del self._keys[min(self._keys)]
        if not self.active:
            return []
        held, self._held = self._held, deque(maxlen=MAX_HELD)
        events: list[RoomEvent] = []
        for sealed in held:
            events.extend(self._deliver(sealed))
        return events

    def feed(self, body: bytes) -> list[RoomEvent | Announcement]:
        """One publication body in: an announcement, or the events it lets out (none
        while it is held for a key)."""
        try:
            publication = parse_publication(body)
        except CannotOpen as exc:
            log.debug("dropping a publication on %r: %s", self.topic, exc)
            return []
        if isinstance(publication, Announcement):
            return [publication]
        return list(self._deliver(publication))

    def _deliver(self, sealed: SealedBatch) -> list[RoomEvent]:
        newest = self.newest_kid
        if not self.active or newest is None or sealed.kid > newest:
            if len(self._held) == self._held.maxlen:
                log.debug("too many held publications on %r; dropping the oldest", self.topic)
            self._held.append(sealed)
            return []
        cipher = self._keys.get(sealed.kid)
        if cipher is None:
            log.debug("dropping seq %d on %r: no key %d", sealed.seq, self.topic, sealed.kid)
            return []
        try:
            return cipher.open(self.topic, sealed, self.room)
        except CannotOpen as exc:
            log.debug("dropping seq %d on %r: %s", sealed.seq, self.topic, exc)
            return []
