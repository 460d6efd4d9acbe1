"""Property tests: hostile input only ever raises zchat errors; valid input round trips."""

from __future__ import annotations

import contextlib
import unicodedata
from typing import Final

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zchat.protocol import (
    CannotOpen,
    Join,
    PlainEvent,
    RoomCipher,
    RoomEvent,
    RoomEventKind,
    SealedBatch,
    Send,
    decode_envelope,
    decode_incoming,
    encode_request,
    parse_request,
    room_topic,
)
from zchat.protocol.errors import InvalidName, InvalidText, TextTooLong, ZchatError
from zchat.protocol.limits import MAX_BATCH_EVENTS, MAX_NAME_CHARS, MAX_TEXT_BYTES
from zchat.protocol.messages import EVENT_TYPES, REQUEST_TYPES
from zchat.protocol.validation import check_name, check_text

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FORBIDDEN_IN_NAMES: Final = ("Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp")

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.binary(max_size=20),
)
map_keys = st.one_of(st.text(max_size=8), st.integers(-5, 5), st.binary(max_size=4))
msgpack_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(map_keys, children, max_size=5),
    ),
    max_leaves=12,
)
"""Anything msgpack can encode: nil, bool, int, float, str, bin, arrays and maps."""

field_names = st.sampled_from(["room", "text", "user", "password", "kid", "key", "reason", "x"])
field_values = st.one_of(
    msgpack_values,
    st.sampled_from(["room1", "alice", "correct horse", "hi", "", "a b", "\x1b[2J"]),
    st.just(bytes(32)),
    st.integers(0, 2**32),
)
near_args = st.one_of(st.dictionaries(field_names, field_values, max_size=4), msgpack_values)
"""Args maps with the field names the protocol uses and values that may or may not fit."""

near_requests = st.fixed_dictionaries(
    {},
    optional={
        "v": st.one_of(st.just(1), msgpack_values),
        "id": st.one_of(st.integers(-3, 2**64 - 1), msgpack_values),
        "op": st.one_of(st.sampled_from(sorted(REQUEST_TYPES)), msgpack_values),
        "args": near_args,
    },
)
near_incoming = st.fixed_dictionaries(
    {},
    optional={
        "v": st.one_of(st.just(1), msgpack_values),
        "id": st.one_of(st.none(), st.integers(-3, 2**64 - 1), msgpack_values),
        "ok": st.one_of(st.dictionaries(st.text(max_size=8), msgpack_values), msgpack_values),
        "error": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "code": st.one_of(st.sampled_from(["not_member", "nope"]), msgpack_values),
                    "message": st.one_of(st.text(max_size=20), msgpack_values),
                },
            ),
            msgpack_values,
        ),
        "event": st.one_of(st.sampled_from(sorted(EVENT_TYPES)), msgpack_values),
        "args": near_args,
    },
)
near_sealed = st.lists(
    st.one_of(
        st.integers(-3, 2**64 - 1),
        st.binary(min_size=11, max_size=13),
        msgpack_values,
    ),
    min_size=4,
    max_size=6,
)


BLANK_LOOKING = frozenset("\u115f\u1160\u2800\u3164\uffa0")


def valid_name_chars() -> st.SearchStrategy[str]:
    return st.characters(codec="utf-8", exclude_categories=FORBIDDEN_IN_NAMES)


valid_names = (
    st.text(valid_name_chars(), min_size=1, max_size=MAX_NAME_CHARS)
    .map(lambda name: unicodedata.normalize("NFC", name))
    .filter(lambda name: 1 <= len(name) <= MAX_NAME_CHARS)
    .filter(lambda name: not any(char.isspace() or char in BLANK_LOOKING for char in name))
    .filter(lambda name: not unicodedata.category(name[0]).startswith("M"))
)
"""Names the spec allows: NFC, 1-32 characters, none of the forbidden categories or blank
look-alikes, not starting with a combining mark."""

valid_texts = (
    st.text(
        st.one_of(
            st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")),
            st.sampled_from("\t\n"),
        ),
        min_size=1,
        max_size=200,
    )
    .filter(lambda text: any(visible(char) for char in text))
    .filter(lambda text: len(text.encode()) <= MAX_TEXT_BYTES)
)
"""Texts the spec allows: something visible, no controls but tab and newline, 4 KiB."""


def visible(char: str) -> bool:
    """The spec's visible character: not whitespace, format, mark or a blank look-alike."""
    return not (
        char.isspace()
        or char in BLANK_LOOKING
        or unicodedata.category(char) in {"Cc", "Cf", "Cs", "Zs", "Zl", "Zp", "Mn", "Me"}
    )


def decode_request(frame: bytes) -> object:
    return parse_request(decode_envelope(frame))


def packed(value: object) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


# --- hostile input raises only zchat errors ------------------------------------------------------


@FAST
@given(st.binary(max_size=200))
def test_request_decoding_of_any_bytes_raises_only_zchat_errors(frame: bytes) -> None:
    with contextlib.suppress(ZchatError):
        decode_request(frame)


@FAST
@given(msgpack_values)
def test_request_decoding_of_any_msgpack_raises_only_zchat_errors(value: object) -> None:
    with contextlib.suppress(ZchatError):
        decode_request(packed(value))


@FAST
@given(near_requests)
def test_request_decoding_of_near_requests_raises_only_zchat_errors(
    body: dict[str, object],
) -> None:
    try:
        request = decode_request(packed(body))
    except ZchatError:
        return
    assert isinstance(request, REQUEST_TYPES[str(body["op"])])
    assert decode_request(encode_request(0, request)) == request


@FAST
@given(st.binary(max_size=200))
def test_incoming_decoding_of_any_bytes_raises_only_zchat_errors(frame: bytes) -> None:
    with contextlib.suppress(ZchatError):
        decode_incoming(frame)


@FAST
@given(msgpack_values)
def test_incoming_decoding_of_any_msgpack_raises_only_zchat_errors(value: object) -> None:
    with contextlib.suppress(ZchatError):
        decode_incoming(packed(value))


@FAST
@given(near_incoming)
def test_incoming_decoding_of_near_replies_raises_only_zchat_errors(
    body: dict[str, object],
) -> None:
    with contextlib.suppress(ZchatError):
        decode_incoming(packed(body))


@FAST
@given(st.binary(max_size=200))
def test_header_parsing_of_any_bytes_raises_only_cannot_open(body: bytes) -> None:
    with contextlib.suppress(CannotOpen):
        SealedBatch.parse(body)


@FAST
@given(st.one_of(msgpack_values, near_sealed))
def test_header_parsing_of_any_msgpack_raises_only_cannot_open(value: object) -> None:
    try:
        sealed = SealedBatch.parse(packed(value))
    except CannotOpen:
        return
    assert 1 <= sealed.seq <= sealed.last_seq < 2**63
    assert 1 <= sealed.count <= MAX_BATCH_EVENTS
    assert 0 <= sealed.kid < 2**32
    assert len(sealed.nonce) == 12


@FAST
@given(
    st.integers(1, 2**62),
    st.integers(1, MAX_BATCH_EVENTS),
    st.binary(min_size=12, max_size=12),
    st.binary(max_size=80),
    st.binary(min_size=1, max_size=20),
)
def test_opening_a_forged_box_raises_only_cannot_open(
    seq: int, count: int, nonce: bytes, box: bytes, topic: bytes
) -> None:
    with pytest.raises(CannotOpen):
        RoomCipher(4, bytes(32)).open(topic, SealedBatch(seq, count, 4, nonce, box), "r")


# --- valid input round trips ---------------------------------------------------------------------


@FAST
@given(valid_names)
def test_valid_names_pass_and_round_trip_through_join(name: str) -> None:
    check_name("room", name)
    request = Join(room=name)
    decoded = decode_request(encode_request(1, request))
    assert decoded == request
    assert isinstance(decoded, Join)
    assert decoded.room == name


@FAST
@given(st.text(max_size=40))
def test_check_name_raises_only_invalid_name(name: str) -> None:
    try:
        check_name("user", name)
    except InvalidName:
        return
    assert 1 <= len(name) <= MAX_NAME_CHARS
    assert unicodedata.normalize("NFC", name) == name
    assert all(unicodedata.category(char) not in FORBIDDEN_IN_NAMES for char in name)
    assert not any(char.isspace() for char in name)


@FAST
@given(valid_texts, valid_names)
def test_valid_texts_pass_and_round_trip_through_send(text: str, room: str) -> None:
    check_text(text)
    request = Send(room=room, text=text)
    assert decode_request(encode_request(2, request)) == request


@FAST
@given(st.text(max_size=60))
def test_check_text_raises_only_text_errors(text: str) -> None:
    try:
        check_text(text)
    except (InvalidText, TextTooLong):
        return
    assert text.strip()
    assert len(text.encode()) <= MAX_TEXT_BYTES
    assert all(char in "\t\n" or unicodedata.category(char) != "Cc" for char in text)


@FAST
@given(
    valid_names,
    st.integers(1, 2**63 - 1 - MAX_BATCH_EVENTS),
    st.integers(0, 2**32 - 1),
    st.lists(
        st.tuples(
            st.sampled_from(list(RoomEventKind)),
            valid_names,
            st.integers(0, 2**63 - 1),
            valid_texts,
        ),
        min_size=1,
        max_size=8,
    ),
)
def test_any_batch_of_events_seals_and_opens(
    room: str, seq: int, kid: int, events: list[PlainEvent]
) -> None:
    cipher = RoomCipher(kid, bytes(range(32)))
    topic = room_topic(bytes(32), room)
    body = cipher.seal(topic, seq, events)
    assert cipher.open(topic, SealedBatch.parse(body), room) == [
        RoomEvent(room, seq + index, kind, user, ts_ms, text)
        for index, (kind, user, ts_ms, text) in enumerate(events)
    ]
