"""Room traffic on the publisher: topics, and the sealed (encrypted) body of a batch of events.

A plain PUB socket delivers to any subscriber, so secrecy comes from here, not
from subscriptions: room events are sealed with the room's current key
(ChaCha20-Poly1305), which the broker hands only to members and replaces when
anyone leaves. The sequence numbers and key id stay readable so a receiver can
spot gaps and pick the key; all three are authenticated with the topic.

A publication carries a batch: the ``count`` consecutive events of one room,
from ``seq``, that the broker accepted together (one event when the room is
quiet). One message and one seal per batch instead of per event is what keeps
fan-out cheap for ZeroMQ (framing and CURVE per subscriber) and for Python.

Anyone can subscribe to everything, so nothing outside the box may say more
than it must: the topic is a keyed hash of the room's name that only the broker
can compute (members get it in the ``join`` reply), and the plaintext is padded
so a box's length tells only a size class, not the length of a message.

Publication = two frames::

    topic  = HMAC-SHA256(topic key, name_key(room) as UTF-8)[:16]
    body   = msgpack [seq: int, count: int, kid: int, nonce: bin(12), box: bin]
    box    = ChaCha20-Poly1305(key[kid], nonce, plaintext, aad)
    aad    = topic + seq (8 bytes) + count (4 bytes) + kid (4 bytes), big-endian
    plaintext = msgpack [[kind: str, user: str, ts_ms: int, text: str], ...]  # count of them
                (the last row has a fifth element, zero bytes that pad the box to a bucket)
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .errors import MalformedFrame
from .limits import (
    KEY_BYTES,
    MAX_BATCH_EVENTS,
    MAX_FRAME_BYTES,
    MAX_KID,
    MAX_SEQ,
    MIN_BOX_BYTES,
    NONCE_BYTES,
    TOPIC_BYTES,
)
from .messages import RoomEvent, RoomEventKind
from .validation import name_key

TAG_BYTES = 16
"""The Poly1305 tag at the end of every box."""
_PAD_HEADER = b"\xc5"
"""msgpack ``bin 16``: the padding is always written with a 2-byte length, so its cost is known."""
_EMPTY_BIN = b"\xc4\x00"

PlainEvent = tuple[RoomEventKind, str, int, str]
"""One event as the broker seals it: ``(kind, user, ts_ms, text)``; its seq is its place."""


def new_topic_key() -> bytes:
    """A fresh random topic key (a broker derives its own with `topic_key`)."""
    return os.urandom(KEY_BYTES)


def topic_key(broker_secret: bytes) -> bytes:
    """The key a broker derives its room topics from, out of its long-term secret key,
    so topics stay the same across restarts without another secret to keep."""
    return hmac.digest(broker_secret, b"zchat room topics v1", hashlib.sha256)


def room_topic(key: bytes, room: str) -> bytes:
    """The publisher topic of a room: 16 bytes that tell nothing of its name to whoever
    lacks ``key``. All topics have one length, so none is a prefix of another, and
    every spelling of a name (ignoring case) has one topic."""
    return hmac.digest(key, name_key(room).encode("utf-8"), hashlib.sha256)[:TOPIC_BYTES]


def bucket(size: int) -> int:
    """The padded length of a box of ``size`` bytes: the next power of two, at least
    `MIN_BOX_BYTES`; a box is at most twice what it holds, and its length tells only
    which of nine size classes (64 bytes to 16 KiB, the largest publication) it is in."""
    return max(MIN_BOX_BYTES, 1 << (size - 1).bit_length())


def _padded(rows: list[tuple[str, str, int, str] | tuple[str, str, int, str, bytes]]) -> bytes:
    """The plaintext of ``rows``, the last one given a fifth element of zero bytes so the
    box is exactly a `bucket` long (or as long as a frame allows, for the very largest)."""
    rows[-1] = (*rows[-1][:4], b"")
    packed: bytes = msgpack.packb(rows, use_bin_type=True)
    assert packed.endswith(_EMPTY_BIN)
    bare = len(packed) - len(_EMPTY_BIN) + len(_PAD_HEADER) + 2  # with an empty bin 16
    size = min(bucket(bare + TAG_BYTES), max(MAX_FRAME_BYTES // 2, bare + TAG_BYTES))
    padding = size - TAG_BYTES - bare
    return b"".join(
        (packed[: -len(_EMPTY_BIN)], _PAD_HEADER, padding.to_bytes(2, "big"), bytes(padding))
    )


def _aad(topic: bytes, seq: int, count: int, kid: int) -> bytes:
    return topic + seq.to_bytes(8, "big") + count.to_bytes(4, "big") + kid.to_bytes(4, "big")


def new_room_key() -> bytes:
    """A fresh random room key."""
    return ChaCha20Poly1305.generate_key()


class CannotOpen(MalformedFrame):
    """A publication that is not well formed, or fails authentication with its key."""


@dataclass(frozen=True, slots=True)
class SealedBatch:
    """A publication body whose header is read but whose box is still closed.

    It holds events ``seq`` to ``last_seq`` of its room, in order.
    """

    seq: int
    count: int
    kid: int
    nonce: bytes
    box: bytes

    @property
    def last_seq(self) -> int:
        return self.seq + self.count - 1

    @classmethod
    def parse(cls, body: bytes) -> SealedBatch:
        """Read the header of a publication body; raises `CannotOpen`."""
        if len(body) > MAX_FRAME_BYTES:
            raise CannotOpen("publication too large")
        try:
            seq, count, kid, nonce, box = msgpack.unpackb(body, raw=False)
        except Exception as exc:  # msgpack raises many types for bad input
            raise CannotOpen("publication is not [seq, count, kid, nonce, box]") from exc
        if not (
            type(seq) is int
            and type(count) is int
            and type(kid) is int
            and isinstance(nonce, bytes)
            and isinstance(box, bytes)
            and len(nonce) == NONCE_BYTES
            and 1 <= count <= MAX_BATCH_EVENTS
            and 1 <= seq <= MAX_SEQ - count + 1
            and 0 <= kid <= MAX_KID
        ):
            raise CannotOpen("publication header has the wrong types or ranges")
        return cls(seq, count, kid, nonce, box)


@dataclass(frozen=True, slots=True)
class Announcement:
    """``[seq]``: the room's latest sequence number, so a member can see it missed the tail."""

    seq: int


def parse_publication(body: bytes) -> SealedBatch | Announcement:
    """Read a publication body: a sealed batch, or an announcement of the latest seq."""
    if len(body) <= 10:  # a one-element array holding an int is at most 10 bytes
        try:
            value = msgpack.unpackb(body, raw=False)
        except Exception as exc:  # msgpack raises many types for bad input
            raise CannotOpen("publication is not msgpack") from exc
        if isinstance(value, list) and len(value) == 1 and type(value[0]) is int:
            if not 0 <= value[0] <= MAX_SEQ:
                raise CannotOpen("announced seq out of range")
            return Announcement(value[0])
    return SealedBatch.parse(body)


def announcement(seq: int) -> bytes:
    """The publication body announcing a room's latest seq."""
    return msgpack.packb([seq])  # type: ignore[no-any-return]


class RoomCipher:
    """One room key: seals batches of events on the broker, opens them on members."""

    __slots__ = ("_aead", "key", "kid")

    def __init__(self, kid: int, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"room keys are {KEY_BYTES} bytes")
        if not 0 <= kid <= MAX_KID:
            raise ValueError(f"key ids are 0 to {MAX_KID}")
        self.kid = kid
        self.key = key
        self._aead = ChaCha20Poly1305(key)

    def seal(self, topic: bytes, seq: int, events: Sequence[PlainEvent]) -> bytes:
        """The publication body for ``events``, numbered from ``seq``."""
        count = len(events)
        if not 1 <= count <= MAX_BATCH_EVENTS:
            raise ValueError(f"a batch holds 1 to {MAX_BATCH_EVENTS} events")
        nonce = os.urandom(NONCE_BYTES)
        plaintext = _padded([(kind.value, user, ts_ms, text) for kind, user, ts_ms, text in events])
        box = self._aead.encrypt(nonce, plaintext, _aad(topic, seq, count, self.kid))
        return msgpack.packb([seq, count, self.kid, nonce, box], use_bin_type=True)  # type: ignore[no-any-return]

    def open(self, topic: bytes, sealed: SealedBatch, room: str) -> list[RoomEvent]:
        """Decrypt and check a sealed batch of ``room`` (published on ``topic``); raises
        `CannotOpen` if anything is off. Elements of a row after its fourth (the
        padding) are ignored."""
        if sealed.kid != self.kid:
            raise CannotOpen(f"sealed with key {sealed.kid}, not {self.kid}")
        try:
            plaintext = self._aead.decrypt(
                sealed.nonce, sealed.box, _aad(topic, sealed.seq, sealed.count, sealed.kid)
            )
        except InvalidTag as exc:
            raise CannotOpen("publication failed authentication") from exc
        try:
            rows = msgpack.unpackb(plaintext, raw=False)
            if not isinstance(rows, list) or len(rows) != sealed.count:
                raise CannotOpen(f"publication does not hold {sealed.count} events")
            return [_event(room, sealed.seq + index, row) for index, row in enumerate(rows)]
        except CannotOpen:
            raise
        except Exception as exc:  # a sealed box with a bad plaintext
            raise CannotOpen("publication plaintext is malformed") from exc


def _event(room: str, seq: int, row: object) -> RoomEvent:
    if not isinstance(row, list) or len(row) < 4:
        raise CannotOpen("a sealed event is not [kind, user, ts_ms, text, ...]")
    kind, user, ts_ms, text = row[:4]
    if not (isinstance(user, str) and type(ts_ms) is int and isinstance(text, str)):
        raise CannotOpen("publication plaintext has the wrong types")
    return RoomEvent(
        room=room, seq=seq, kind=RoomEventKind(kind), user=user, ts_ms=ts_ms, text=text
    )
