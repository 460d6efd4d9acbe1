"""Sealed batches of room events on the publisher: topics, the body header, authenticated boxes."""

from __future__ import annotations

import hashlib
import hmac

import msgpack
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from zchat.broker.publishing import BATCH_PLAINTEXT_BYTES, EVENT_FRAMING_BYTES
from zchat.protocol import (
    Announcement,
    CannotOpen,
    PlainEvent,
    RoomCipher,
    RoomEvent,
    RoomEventKind,
    SealedBatch,
    announcement,
    new_room_key,
    parse_publication,
    room_topic,
)
from zchat.protocol.errors import MalformedFrame, ProtocolViolation
from zchat.protocol.limits import MAX_BATCH_EVENTS, MAX_FRAME_BYTES
from zchat.protocol.sealing import bucket, topic_key

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
TOPIC_KEY = bytes(range(100, 132))
TOPIC = room_topic(TOPIC_KEY, "room1")
TS = 1_764_000_001_000


def spec_aad(topic: bytes, seq: int, count: int, kid: int) -> bytes:
    """The additional data exactly as the spec writes it."""
    return topic + seq.to_bytes(8, "big") + count.to_bytes(4, "big") + kid.to_bytes(4, "big")


def spec_seal(
    key: bytes,
    topic: bytes,
    seq: int,
    kid: int,
    plaintext: object,
    nonce: bytes = bytes(12),
    count: int = 1,
) -> bytes:
    """A publication body built from the spec alone, with any plaintext value."""
    packed = msgpack.packb(plaintext, use_bin_type=True)
    box = ChaCha20Poly1305(key).encrypt(nonce, packed, spec_aad(topic, seq, count, kid))
    return msgpack.packb([seq, count, kid, nonce, box], use_bin_type=True)  # type: ignore[no-any-return]


def message(text: str = "hi bob", user: str = "alice") -> PlainEvent:
    return (RoomEventKind.MESSAGE, user, TS, text)


def sealed_message(cipher: RoomCipher, seq: int = 18, text: str = "hi bob") -> SealedBatch:
    return SealedBatch.parse(cipher.seal(TOPIC, seq, [message(text)]))


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


# --- topics and keys ---------------------------------------------------------------------------


def test_a_topic_is_16_bytes_of_hmac_sha256_of_the_name_key() -> None:
    for room in ("room1", "Room1", "房间"):
        expected = hmac.digest(TOPIC_KEY, room.casefold().encode(), hashlib.sha256)[:16]
        assert room_topic(TOPIC_KEY, room) == expected
    assert room_topic(TOPIC_KEY, "ROOM1") == TOPIC  # one room, one topic, whatever the case


def test_a_topic_says_nothing_of_the_room_without_the_key() -> None:
    assert b"room1" not in TOPIC
    assert room_topic(bytes(32), "room1") != TOPIC
    assert room_topic(TOPIC_KEY, "room2") != TOPIC


@pytest.mark.parametrize(("short", "long"), [("ab", "abc"), ("room", "room1"), ("a", "a\u00e9")])
def test_a_topic_is_not_a_prefix_of_a_longer_rooms_topic(short: str, long: str) -> None:
    assert long.startswith(short)
    assert not room_topic(TOPIC_KEY, long).startswith(room_topic(TOPIC_KEY, short))
    assert len(room_topic(TOPIC_KEY, long)) == len(room_topic(TOPIC_KEY, short)) == 16


def test_a_brokers_topic_key_depends_only_on_its_secret() -> None:
    assert topic_key(b"secret one") == topic_key(b"secret one") != topic_key(b"secret two")
    assert len(topic_key(b"secret one")) == 32


def test_new_room_keys_are_32_random_bytes() -> None:
    keys = {new_room_key() for _ in range(8)}
    assert len(keys) == 8
    assert all(isinstance(key, bytes) and len(key) == 32 for key in keys)


@pytest.mark.parametrize("key", [b"", bytes(16), bytes(31), bytes(33)])
def test_a_cipher_needs_a_32_byte_key(key: bytes) -> None:
    with pytest.raises(ValueError):
        RoomCipher(1, key)


# --- seal and open -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        (RoomEventKind.MESSAGE, "hi bob"),
        (RoomEventKind.MESSAGE, "5€ 🎉\n\tsecond line"),
        (RoomEventKind.JOINED, ""),
        (RoomEventKind.LEFT, ""),
    ],
)
def test_seal_then_open_gives_the_event_back(kind: RoomEventKind, text: str) -> None:
    cipher = RoomCipher(4, KEY)
    body = cipher.seal(TOPIC, 17, [(kind, "alice", TS, text)])
    sealed = SealedBatch.parse(body)
    assert (sealed.seq, sealed.count, sealed.last_seq, sealed.kid) == (17, 1, 17, 4)
    assert RoomCipher(4, KEY).open(TOPIC, sealed, "room1") == [
        RoomEvent(room="room1", seq=17, kind=kind, user="alice", ts_ms=TS, text=text)
    ]


def test_a_batch_opens_as_consecutive_events_in_order() -> None:
    cipher = RoomCipher(4, KEY)
    events = [
        (RoomEventKind.JOINED, "carol", TS, ""),
        message("first"),
        message("second", user="carol"),
    ]
    sealed = SealedBatch.parse(cipher.seal(TOPIC, 40, events))
    assert (sealed.seq, sealed.count, sealed.last_seq) == (40, 3, 42)
    assert cipher.open(TOPIC, sealed, "room1") == [
        RoomEvent("room1", 40, RoomEventKind.JOINED, "carol", TS, ""),
        RoomEvent("room1", 41, RoomEventKind.MESSAGE, "alice", TS, "first"),
        RoomEvent("room1", 42, RoomEventKind.MESSAGE, "carol", TS, "second"),
    ]


def test_the_largest_batch_round_trips() -> None:
    cipher = RoomCipher(4, KEY)
    events = [message(str(n)) for n in range(MAX_BATCH_EVENTS)]
    opened = cipher.open(TOPIC, SealedBatch.parse(cipher.seal(TOPIC, 1, events)), "room1")
    assert [(event.seq, event.text) for event in opened] == [
        (n + 1, str(n)) for n in range(MAX_BATCH_EVENTS)
    ]


@pytest.mark.parametrize("count", [0, MAX_BATCH_EVENTS + 1])
def test_seal_refuses_an_empty_or_oversized_batch(count: int) -> None:
    with pytest.raises(ValueError):
        RoomCipher(4, KEY).seal(TOPIC, 1, [message()] * count)


def test_the_room_is_the_one_the_member_joined() -> None:
    topic = room_topic(TOPIC_KEY, "房间")
    cipher = RoomCipher(1, KEY)
    sealed = SealedBatch.parse(cipher.seal(topic, 1, [(RoomEventKind.JOINED, "bob", TS, "")]))
    [event] = cipher.open(topic, sealed, "房间")
    assert event.room == "房间"


def test_the_largest_seq_and_kid_round_trip() -> None:
    cipher = RoomCipher(2**32 - 1, KEY)
    sealed = SealedBatch.parse(
        cipher.seal(TOPIC, 2**63 - 1, [(RoomEventKind.MESSAGE, "a", TS, "x")])
    )
    assert cipher.open(TOPIC, sealed, "room1")[0].seq == 2**63 - 1


def test_a_sealed_body_follows_the_spec() -> None:
    body = RoomCipher(4, KEY).seal(TOPIC, 18, [(RoomEventKind.MESSAGE, "alice", TS, "hi bob")])
    seq, count, kid, nonce, box = msgpack.unpackb(body, raw=False)
    assert (seq, count, kid, len(nonce)) == (18, 1, 4, 12)
    plaintext = ChaCha20Poly1305(KEY).decrypt(nonce, box, spec_aad(TOPIC, 18, 1, 4))
    [[kind, user, ts_ms, text, padding]] = msgpack.unpackb(plaintext, raw=False)
    assert (kind, user, ts_ms, text) == ("msg", "alice", TS, "hi bob")
    assert padding == bytes(len(padding))  # zero bytes, up to the bucket
    assert len(box) == len(plaintext) + 16 == 64


def test_a_body_sealed_from_the_spec_opens() -> None:
    plaintext = [["leave", "bob", TS, ""], ["msg", "alice", TS + 1, "bye"]]
    body = spec_seal(KEY, TOPIC, 18, 4, plaintext, nonce=b"n" * 12, count=2)
    assert RoomCipher(4, KEY).open(TOPIC, SealedBatch.parse(body), "room1") == [
        RoomEvent("room1", 18, RoomEventKind.LEFT, "bob", TS, ""),
        RoomEvent("room1", 19, RoomEventKind.MESSAGE, "alice", TS + 1, "bye"),
    ]


def test_every_seal_uses_a_fresh_nonce() -> None:
    cipher = RoomCipher(4, KEY)
    first, second = (sealed_message(cipher) for _ in range(2))
    assert first.nonce != second.nonce
    assert first.box != second.box


def test_a_sealed_body_does_not_contain_the_plaintext() -> None:
    text = "the secret plan is at noon"
    body = RoomCipher(4, KEY).seal(TOPIC, 1, [(RoomEventKind.MESSAGE, "mallory", TS, text)])
    assert text.encode() not in body
    assert b"secret" not in body
    assert b"mallory" not in body


# --- tampering ---------------------------------------------------------------------------------


def assert_fails_authentication(cipher: RoomCipher, topic: bytes, sealed: SealedBatch) -> None:
    with pytest.raises(CannotOpen) as caught:
        cipher.open(topic, sealed, "room1")
    assert isinstance(caught.value.__cause__, InvalidTag)


def test_another_rooms_topic_fails() -> None:
    cipher = RoomCipher(4, KEY)
    sealed = sealed_message(cipher)
    assert_fails_authentication(cipher, room_topic(TOPIC_KEY, "room2"), sealed)
    assert_fails_authentication(cipher, room_topic(OTHER_KEY, "room1"), sealed)
    assert_fails_authentication(cipher, b"room1\x00", sealed)


def test_a_changed_seq_fails() -> None:
    cipher = RoomCipher(4, KEY)
    sealed = sealed_message(cipher, seq=18)
    for seq in (17, 19, 1, 18 + 2**32):
        changed = SealedBatch(seq, 1, sealed.kid, sealed.nonce, sealed.box)
        assert_fails_authentication(cipher, TOPIC, changed)


def test_a_changed_count_fails() -> None:
    cipher = RoomCipher(4, KEY)
    sealed = SealedBatch.parse(cipher.seal(TOPIC, 5, [message("a"), message("b")]))
    for count in (1, 3, 2 + 2**16):
        changed = SealedBatch(sealed.seq, count, sealed.kid, sealed.nonce, sealed.box)
        assert_fails_authentication(cipher, TOPIC, changed)


def test_a_changed_kid_fails_even_with_the_same_key() -> None:
    sealed = sealed_message(RoomCipher(4, KEY))
    changed = SealedBatch(sealed.seq, 1, 5, sealed.nonce, sealed.box)
    assert_fails_authentication(RoomCipher(5, KEY), TOPIC, changed)


@pytest.mark.parametrize("index", [0, 5, 11])
def test_a_changed_nonce_fails(index: int) -> None:
    cipher = RoomCipher(4, KEY)
    sealed = sealed_message(cipher)
    changed = SealedBatch(sealed.seq, 1, sealed.kid, flip(sealed.nonce, index), sealed.box)
    assert_fails_authentication(cipher, TOPIC, changed)


@pytest.mark.parametrize("index", [0, 3, -17, -16, -1], ids=lambda index: f"byte{index}")
def test_a_changed_box_fails(index: int) -> None:
    cipher = RoomCipher(4, KEY)
    sealed = sealed_message(cipher)
    changed = SealedBatch(sealed.seq, 1, sealed.kid, sealed.nonce, flip(sealed.box, index))
    assert_fails_authentication(cipher, TOPIC, changed)


@pytest.mark.parametrize("cut", [1, 16, 10_000])
def test_a_truncated_box_fails(cut: int) -> None:
    cipher = RoomCipher(4, KEY)
    sealed = sealed_message(cipher)
    changed = SealedBatch(sealed.seq, 1, sealed.kid, sealed.nonce, sealed.box[:-cut])
    with pytest.raises(CannotOpen):
        cipher.open(TOPIC, changed, "room1")


def test_an_extended_box_fails() -> None:
    cipher = RoomCipher(4, KEY)
    sealed = sealed_message(cipher)
    changed = SealedBatch(sealed.seq, 1, sealed.kid, sealed.nonce, sealed.box + b"\x00")
    assert_fails_authentication(cipher, TOPIC, changed)


def test_the_wrong_key_fails() -> None:
    sealed = sealed_message(RoomCipher(4, KEY))
    assert_fails_authentication(RoomCipher(4, OTHER_KEY), TOPIC, sealed)


def test_a_kid_mismatch_fails_before_decrypting() -> None:
    sealed = sealed_message(RoomCipher(4, KEY))
    with pytest.raises(CannotOpen) as caught:
        RoomCipher(3, KEY).open(TOPIC, sealed, "room1")
    assert caught.value.__cause__ is None


def test_cannot_open_is_a_malformed_frame() -> None:
    assert issubclass(CannotOpen, MalformedFrame)
    assert issubclass(CannotOpen, ProtocolViolation)


@pytest.mark.parametrize(
    "plaintext",
    [
        ["shout", "alice", TS, "hi"],
        ["MSG", "alice", TS, "hi"],
        [None, "alice", TS, "hi"],
        ["msg", 5, TS, "hi"],
        ["msg", b"alice", TS, "hi"],
        ["msg", "alice", True, "hi"],
        ["msg", "alice", "1764000001000", "hi"],
        ["msg", "alice", 1.5, "hi"],
        ["msg", "alice", TS, b"hi"],
        ["msg", "alice", TS, None],
        ["msg", "alice", TS],
        {"kind": "msg"},
        "msg alice hi",
        42,
    ],
    ids=repr,
)
def test_an_authentic_box_with_a_bad_event_cannot_open(plaintext: object) -> None:
    body = spec_seal(KEY, TOPIC, 1, 4, [plaintext])
    with pytest.raises(CannotOpen):
        RoomCipher(4, KEY).open(TOPIC, SealedBatch.parse(body), "room1")


EVENT = ["msg", "alice", TS, "hi"]


@pytest.mark.parametrize(
    ("plaintext", "count"),
    [
        (EVENT, 1),
        ({"events": [EVENT]}, 1),
        ([], 1),
        ([EVENT, EVENT], 1),
        ([EVENT], 2),
        ([EVENT, EVENT, "msg"], 3),
        (None, 1),
    ],
    ids=repr,
)
def test_an_authentic_box_that_does_not_hold_count_events_cannot_open(
    plaintext: object, count: int
) -> None:
    body = spec_seal(KEY, TOPIC, 1, 4, plaintext, count=count)
    with pytest.raises(CannotOpen):
        RoomCipher(4, KEY).open(TOPIC, SealedBatch.parse(body), "room1")


def test_an_authentic_box_that_is_not_msgpack_cannot_open() -> None:
    nonce = bytes(12)
    box = ChaCha20Poly1305(KEY).encrypt(nonce, b"\xc1\xc1", spec_aad(TOPIC, 1, 1, 4))
    with pytest.raises(CannotOpen):
        RoomCipher(4, KEY).open(TOPIC, SealedBatch(1, 1, 4, nonce, box), "room1")


# --- the readable header -----------------------------------------------------------------------


def test_parse_reads_the_header() -> None:
    body = msgpack.packb([3, 2, 9, b"n" * 12, b"box"], use_bin_type=True)
    assert SealedBatch.parse(body) == SealedBatch(3, 2, 9, b"n" * 12, b"box")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\xc1", id="never-used-byte"),
        pytest.param(b"garbage that is not msgpack", id="garbage"),
        pytest.param(msgpack.packb([1, 1, 2, b"n" * 12, b"b"])[:-1], id="truncated"),
        pytest.param(msgpack.packb([1, 1, 2, b"n" * 12, b"b"]) + b"\x00", id="trailing"),
    ],
)
def test_parse_refuses_what_is_not_msgpack(body: bytes) -> None:
    with pytest.raises(CannotOpen):
        SealedBatch.parse(body)


NONCE = b"n" * 12


@pytest.mark.parametrize(
    "value",
    [
        None,
        7,
        "five",
        b"five",
        {"seq": 1, "count": 1, "kid": 1, "nonce": NONCE, "box": b""},
        {1: 1, 2: 2, 3: 3, 4: 4, 5: 5},
        [],
        [1, 1, 2, NONCE],
        [1, 2, NONCE, b"box"],
        [1, 1, 2, NONCE, b"box", b"extra"],
        ["1", 1, 2, NONCE, b"box"],
        [1, "1", 2, NONCE, b"box"],
        [1, 1, "2", NONCE, b"box"],
        [1.0, 1, 2, NONCE, b"box"],
        [1, 1.0, 2, NONCE, b"box"],
        [1, 1, 2.0, NONCE, b"box"],
        [None, 1, 2, NONCE, b"box"],
        [True, 1, 2, NONCE, b"box"],
        [1, True, 2, NONCE, b"box"],
        [1, 1, False, NONCE, b"box"],
        [1, 1, True, NONCE, b"box"],
        [0, 1, 2, NONCE, b"box"],
        [-1, 1, 2, NONCE, b"box"],
        [1, 0, 2, NONCE, b"box"],
        [1, -1, 2, NONCE, b"box"],
        [1, MAX_BATCH_EVENTS + 1, 2, NONCE, b"box"],
        [1, 1, -1, NONCE, b"box"],
        [2**63, 1, 2, NONCE, b"box"],
        [2**63 - 1, 2, 2, NONCE, b"box"],
        [1, 1, 2**32, NONCE, b"box"],
        [1, 1, 2, "n" * 12, b"box"],
        [1, 1, 2, NONCE, "box"],
        [1, 1, 2, NONCE, None],
        [1, 1, 2, [NONCE], b"box"],
        [1, 1, 2, b"", b"box"],
        [1, 1, 2, b"n" * 11, b"box"],
        [1, 1, 2, b"n" * 13, b"box"],
        [1, 1, 2, b"n" * 24, b"box"],
    ],
    ids=repr,
)
def test_parse_refuses_a_header_of_the_wrong_shape(value: object) -> None:
    with pytest.raises(CannotOpen) as caught:
        SealedBatch.parse(msgpack.packb(value, use_bin_type=True))
    assert type(caught.value) is CannotOpen


@pytest.mark.parametrize(
    ("seq", "count", "kid"),
    [(1, 1, 0), (1, MAX_BATCH_EVENTS, 0), (2**63 - 1, 1, 2**32 - 1), (2**63 - 2, 2, 1)],
)
def test_parse_accepts_the_ends_of_the_ranges(seq: int, count: int, kid: int) -> None:
    body = msgpack.packb([seq, count, kid, NONCE, b"box"], use_bin_type=True)
    assert SealedBatch.parse(body) == SealedBatch(seq, count, kid, NONCE, b"box")


def test_parse_refuses_a_body_over_the_frame_limit() -> None:
    body = msgpack.packb([1, 1, 2, NONCE, bytes(MAX_FRAME_BYTES)], use_bin_type=True)
    with pytest.raises(CannotOpen):
        SealedBatch.parse(body)


def test_parse_accepts_a_body_of_exactly_the_frame_limit() -> None:
    overhead = len(msgpack.packb([1, 1, 2, NONCE, bytes(MAX_FRAME_BYTES - 100)], use_bin_type=True))
    box = bytes(MAX_FRAME_BYTES - 100 + MAX_FRAME_BYTES - overhead)
    body = msgpack.packb([1, 1, 2, NONCE, box], use_bin_type=True)
    assert len(body) == MAX_FRAME_BYTES
    assert SealedBatch.parse(body).box == box


@pytest.mark.parametrize("seq", [0, 1, 2**63 - 1])
def test_announcements_round_trip_and_are_told_apart_from_sealed_events(seq: int) -> None:
    assert parse_publication(announcement(seq)) == Announcement(seq)


def test_a_sealed_batch_of_one_is_not_taken_for_an_announcement() -> None:
    cipher = RoomCipher(3, bytes(range(32)))
    body = cipher.seal(TOPIC, 9, [(RoomEventKind.MESSAGE, "alice", 1, "hi")])
    parsed = parse_publication(body)
    assert isinstance(parsed, SealedBatch) and (parsed.seq, parsed.count) == (9, 1)


@pytest.mark.parametrize(
    "body", [msgpack.packb([-1]), msgpack.packb([True]), msgpack.packb(["7"]), b"\xc1", b""]
)
def test_bad_announcements_cannot_be_opened(body: bytes) -> None:
    with pytest.raises(CannotOpen):
        parse_publication(body)


# --- padding -----------------------------------------------------------------------------------


def test_buckets_are_powers_of_two_from_64() -> None:
    assert [bucket(n) for n in (1, 64, 65, 128, 129, 1000, 4096, 4097)] == [
        64, 64, 128, 128, 256, 1024, 4096, 8192,
    ]  # fmt: skip


@pytest.mark.parametrize("count", [1, 3, 40, MAX_BATCH_EVENTS])
def test_every_box_is_exactly_a_bucket_whatever_it_holds(count: int) -> None:
    cipher = RoomCipher(4, KEY)
    sizes = set()
    for length in range(0, 600, 7):
        if count * (length + len("alice") + EVENT_FRAMING_BYTES) > BATCH_PLAINTEXT_BYTES:
            break  # more than the broker puts in one publication
        events = [message("x" * length)] * count
        sealed = SealedBatch.parse(cipher.seal(TOPIC, 1, events))
        assert len(sealed.box) == bucket(len(sealed.box)), len(sealed.box)
        opened = cipher.open(TOPIC, sealed, "room1")
        assert [event.text for event in opened] == ["x" * length] * count
        sizes.add(len(sealed.box))
    assert len(sizes) <= 14  # a few size classes, not one length per message


def test_messages_of_different_lengths_in_one_bucket_look_the_same() -> None:
    cipher = RoomCipher(4, KEY)
    lengths = {
        len(SealedBatch.parse(cipher.seal(TOPIC, 1, [message("x" * n)])).box) for n in range(1, 80)
    }
    assert lengths == {128} or lengths <= {64, 128}
    assert len(SealedBatch.parse(cipher.seal(TOPIC, 1, [message("hi")])).box) == 64


def test_a_full_publication_is_padded_to_16_kib_not_32() -> None:
    text = "x" * (BATCH_PLAINTEXT_BYTES // 4 - EVENT_FRAMING_BYTES - len("alice"))
    sealed = SealedBatch.parse(RoomCipher(4, KEY).seal(TOPIC, 1, [message(text)] * 4))
    assert len(sealed.box) == 16 * 1024


def test_a_padded_body_still_fits_in_a_frame() -> None:
    sealed = RoomCipher(4, KEY).seal(TOPIC, 1, [message("y" * 4096)] * 3)
    assert len(sealed) <= MAX_FRAME_BYTES
