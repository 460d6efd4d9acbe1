"""One joined room's key ring and stream position, with no I/O.

Publications and keys travel on different sockets, so a publication sealed
with a key the client has not received yet is held until that key arrives.
Everything the ring cannot open is dropped: a former member's or a stranger's
view of a room is boxes it cannot open.
"""

from __future__ import annotations

import logging
from collections import deque

from zchat.protocol import CannotOpen, RoomCipher, RoomEvent, SealedEvent

log = logging.getLogger(__name__)

MAX_HELD = 256
"""Publications held while waiting for a key; beyond this the oldest are dropped."""

MAX_KEYS = 8
"""Old keys kept per room, for publications that arrive late."""


class RoomStream:
    """Turns a room's publication bodies into `RoomEvent`s, in order, each once.

    Created when the client subscribes (before it sends ``join``), so it holds
    publications until `activate` gives it the key and the join's ``seq``.
    """

    def __init__(self, topic: bytes) -> None:
        self.topic = topic
        self._keys: dict[int, RoomCipher] = {}
        self._held: deque[SealedEvent] = deque(maxlen=MAX_HELD)
        self._last_seq: int | None = None

    @property
    def active(self) -> bool:
        """Whether the join reply has arrived (so events can be delivered)."""
        return self._last_seq is not None

    @property
    def newest_kid(self) -> int | None:
        return max(self._keys, default=None)

    def activate(self, kid: int, key: bytes, seq: int) -> list[RoomEvent]:
        """Apply a join reply; returns held events that are now open and live."""
        self._last_seq = seq if self._last_seq is None else max(self._last_seq, seq)
        return self.add_key(kid, key)

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

    def feed(self, body: bytes) -> list[RoomEvent]:
        """One publication body in, zero or one live event out."""
        try:
            sealed = SealedEvent.parse(body)
        except CannotOpen as exc:
            log.debug("dropping a publication on %r: %s", self.topic, exc)
            return []
        return self._deliver(sealed)

    def _deliver(self, sealed: SealedEvent) -> list[RoomEvent]:
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
        assert self._last_seq is not None
        if sealed.seq <= self._last_seq:
            return []
        try:
            event = cipher.open(self.topic, sealed)
        except CannotOpen as exc:
            log.debug("dropping seq %d on %r: %s", sealed.seq, self.topic, exc)
            return []
        self._last_seq = sealed.seq
        return [event]
