"""Room traffic on the publisher: topics, and the sealed (encrypted) event body.

A plain PUB socket delivers to any subscriber, so secrecy comes from here, not
from subscriptions: each room event is sealed with the room's current key
(ChaCha20-Poly1305), which the broker hands only to members and replaces when
anyone leaves. The sequence number and key id stay readable so a receiver can
spot gaps and pick the key; both are authenticated with the topic.

Publication = two frames::

    topic  = room name (UTF-8) + b"\\x00"
    body   = msgpack [seq: int, kid: int, nonce: bin(12), box: bin]
    box    = ChaCha20-Poly1305(key[kid], nonce, plaintext, aad)
    aad    = topic + seq (8 bytes, big-endian) + kid (4 bytes, big-endian)
    plaintext = msgpack [kind: str, user: str, ts_ms: int, text: str]
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .errors import MalformedFrame
from .limits import KEY_BYTES, MAX_FRAME_BYTES, MAX_KID, MAX_SEQ, NONCE_BYTES
from .messages import RoomEvent, RoomEventKind

TOPIC_END = b"\x00"


def room_topic(room: str) -> bytes:
    """The publisher topic of a room; the terminator stops ``ab`` matching ``abc``."""
    return room.encode("utf-8") + TOPIC_END


def _aad(topic: bytes, seq: int, kid: int) -> bytes:
    return topic + seq.to_bytes(8, "big") + kid.to_bytes(4, "big")


def new_room_key() -> bytes:
    """A fresh random room key."""
    return ChaCha20Poly1305.generate_key()


class CannotOpen(MalformedFrame):
    """A publication that is not well formed, or fails authentication with its key."""


@dataclass(frozen=True, slots=True)
class SealedEvent:
    """A publication body whose header is read but whose box is still closed."""

    seq: int
    kid: int
    nonce: bytes
    box: bytes

    @classmethod
    def parse(cls, body: bytes) -> SealedEvent:
        """Read the header of a publication body; raises `CannotOpen`."""
        if len(body) > MAX_FRAME_BYTES:
            raise CannotOpen("publication too large")
        try:
            seq, kid, nonce, box = msgpack.unpackb(body, raw=False)
        except Exception as exc:  # msgpack raises many types for bad input
            raise CannotOpen("publication is not [seq, kid, nonce, box]") from exc
        if not (
            type(seq) is int
            and type(kid) is int
            and isinstance(nonce, bytes)
            and isinstance(box, bytes)
            and len(nonce) == NONCE_BYTES
            and 0 <= seq <= MAX_SEQ
            and 0 <= kid <= MAX_KID
        ):
            raise CannotOpen("publication header has the wrong types")
        return cls(seq, kid, nonce, box)


@dataclass(frozen=True, slots=True)
class Announcement:
    """``[seq]``: the room's latest sequence number, so a member can see it missed the tail."""

    seq: int


def parse_publication(body: bytes) -> SealedEvent | Announcement:
    """Read a publication body: a sealed event, or an announcement of the latest seq."""
    if len(body) <= 10:  # a one-element array holding an int is at most 10 bytes
        try:
            value = msgpack.unpackb(body, raw=False)
        except Exception as exc:  # msgpack raises many types for bad input
            raise CannotOpen("publication is not msgpack") from exc
        if isinstance(value, list) and len(value) == 1 and type(value[0]) is int:
            if not 0 <= value[0] <= MAX_SEQ:
                raise CannotOpen("announced seq out of range")
            return Announcement(value[0])
    return SealedEvent.parse(body)


def announcement(seq: int) -> bytes:
    """The publication body announcing a room's latest seq."""
    return msgpack.packb([seq])  # type: ignore[no-any-return]


class RoomCipher:
    """One room key: seals events on the broker, opens them on members."""

    __slots__ = ("_aead", "key", "kid")

    def __init__(self, kid: int, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"room keys are {KEY_BYTES} bytes")
        if not 0 <= kid <= MAX_KID:
            raise ValueError(f"key ids are 0 to {MAX_KID}")
        self.kid = kid
        self.key = key
        self._aead = ChaCha20Poly1305(key)

    def seal(
        self, topic: bytes, seq: int, kind: RoomEventKind, user: str, ts_ms: int, text: str
    ) -> bytes:
        """The publication body for one room event."""
        nonce = os.urandom(NONCE_BYTES)
        plaintext = msgpack.packb([kind.value, user, ts_ms, text], use_bin_type=True)
        box = self._aead.encrypt(nonce, plaintext, _aad(topic, seq, self.kid))
        return msgpack.packb([seq, self.kid, nonce, box], use_bin_type=True)  # type: ignore[no-any-return]

    def open(self, topic: bytes, sealed: SealedEvent) -> RoomEvent:
        """Decrypt and check a sealed event; raises `CannotOpen` if anything is off."""
        if sealed.kid != self.kid:
            raise CannotOpen(f"sealed with key {sealed.kid}, not {self.kid}")
        try:
            plaintext = self._aead.decrypt(
                sealed.nonce, sealed.box, _aad(topic, sealed.seq, sealed.kid)
            )
            kind, user, ts_ms, text = msgpack.unpackb(plaintext, raw=False)
            event = RoomEvent(
                room=topic[: -len(TOPIC_END)].decode("utf-8"),
                seq=sealed.seq,
                kind=RoomEventKind(kind),
                user=user,
                ts_ms=ts_ms,
                text=text,
            )
        except InvalidTag as exc:
            raise CannotOpen("publication failed authentication") from exc
        except Exception as exc:  # a sealed box with a bad plaintext
            raise CannotOpen("publication plaintext is malformed") from exc
        if not (isinstance(event.user, str) and type(ts_ms) is int and isinstance(text, str)):
            raise CannotOpen("publication plaintext has the wrong types")
        return event
