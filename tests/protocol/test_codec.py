"""The DEALER/ROUTER codec: request frames in, typed requests out; replies and events back."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from zchat.protocol import (
    DirectMessage,
    DmAck,
    Hello,
    History,
    Inbox,
    Join,
    Leave,
    ListRooms,
    Login,
    Logout,
    Members,
    Ping,
    Register,
    Reply,
    Request,
    Resume,
    RoomKey,
    Send,
    ServerKey,
    SessionEnded,
    decode_envelope,
    decode_incoming,
    encode_error,
    encode_event,
    encode_request,
    encode_result,
    parse_request,
)
from zchat.protocol.codec import pack
from zchat.protocol.errors import (
    ERROR_TYPES,
    BadCredentials,
    ErrorCode,
    FrameTooLarge,
    InvalidName,
    InvalidPassword,
    InvalidRequest,
    InvalidText,
    MalformedFrame,
    NotMember,
    RateLimited,
    TextTooLong,
    UnknownOperation,
    UnsupportedVersion,
    ZchatError,
)
from zchat.protocol.limits import MAX_FRAME_BYTES, MAX_TEXT_BYTES
from zchat.protocol.messages import REQUEST_TYPES

SAMPLES: dict[str, Request] = {
    "hello": Hello(),
    "server_key": ServerKey(),
    "register": Register(user="alice", password="correct horse"),
    "login": Login(user="Alice", password="x"),
    "logout": Logout(),
    "rooms": ListRooms(),
    "join": Join(room="room1"),
    "leave": Leave(room="房间"),
    "members": Members(room="Ñandú"),
    "send": Send(room="room1", text="hi\tthere\nbob, 5€ 🎉", msg_id="c0ffee"),
    "history": History(room="room1", from_seq=1, to_seq=50),
    "resume": Resume(token="ab" * 32),
    "dm": DirectMessage(user="bob", text="psst"),
    "inbox": Inbox(),
    "dm_ack": DmAck(ids=[3, 4]),
    "ping": Ping(),
}
"""One valid request of every operation."""


class Missing:
    """Marks a key to drop from a frame built by `request_frame`."""

    def __repr__(self) -> str:
        return "MISSING"  # a stable test id: parallel workers must collect the same names


MISSING = Missing()


def request_frame(**changes: object) -> bytes:
    """A valid ``join`` request frame with some keys replaced or (with MISSING) removed."""
    body: dict[str, object] = {"v": 1, "id": 7, "op": "join", "args": {"room": "room1"}}
    body.update(changes)
    return pack({key: value for key, value in body.items() if value is not MISSING})


def refused_envelope(frame: bytes, error_type: type[ZchatError]) -> int | None:
    """Decode a frame that passes the envelope step and fails parsing; returns its reply id."""
    envelope = decode_envelope(frame)
    with pytest.raises(error_type) as caught:
        parse_request(envelope)
    assert type(caught.value) is error_type
    assert caught.value.code is error_type.code
    return envelope.request_id


# --- requests: round trips ------------------------------------------------------------------


def test_samples_cover_every_operation() -> None:
    assert set(SAMPLES) == set(REQUEST_TYPES)
    for op, request in SAMPLES.items():
        assert type(request) is REQUEST_TYPES[op]


@pytest.mark.parametrize("op", sorted(SAMPLES))
@pytest.mark.parametrize("request_id", [0, 7, 2**64 - 1])
def test_request_round_trip(op: str, request_id: int) -> None:
    request = SAMPLES[op]
    envelope = decode_envelope(encode_request(request_id, request))
    assert (envelope.request_id, envelope.op, envelope.version) == (request_id, op, 1)
    assert parse_request(envelope) == request


def test_encoded_request_has_the_documented_shape() -> None:
    frame = encode_request(3, Send(room="room1", text="hi bob"))
    assert msgpack.unpackb(frame, raw=False) == {
        "v": 1,
        "id": 3,
        "op": "send",
        "args": {"room": "room1", "text": "hi bob"},
    }


def test_register_frame_carries_the_password_as_a_string() -> None:
    body = msgpack.unpackb(encode_request(1, SAMPLES["register"]), raw=False)
    assert body["args"] == {"user": "alice", "password": "correct horse"}


@pytest.mark.parametrize("op", ["hello", "server_key", "logout", "rooms", "inbox", "ping"])
def test_args_may_be_omitted_when_the_operation_has_no_fields(op: str) -> None:
    assert parse_request(decode_envelope(request_frame(op=op, args=MISSING))) == SAMPLES[op]


def test_unknown_args_are_ignored() -> None:
    frame = request_frame(args={"room": "room1", "colour": "blue", "since": 4})
    assert parse_request(decode_envelope(frame)) == Join(room="room1")


def test_unknown_args_are_ignored_for_an_operation_without_fields() -> None:
    frame = request_frame(op="ping", args={"future": [1, 2, 3]})
    assert parse_request(decode_envelope(frame)) == Ping()


def test_unknown_top_level_keys_are_ignored() -> None:
    frame = request_frame(trace="abc", priority=3)
    assert parse_request(decode_envelope(frame)) == Join(room="room1")


# --- requests: frames that cannot be read at all ----------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\xc1", id="never-used-byte"),
        pytest.param(b"\x82\xa1v\x01\xa2id", id="truncated"),
        pytest.param(b"\x81\xa2op\xa2\xff\xfe", id="invalid-utf8-str"),
        pytest.param(request_frame() + b"\x00", id="trailing-bytes"),
        pytest.param(b"\x81\x01\x01", id="int-map-key"),
        pytest.param(b"\x81\xa4args\x81\x01\x01", id="nested-int-map-key"),
        pytest.param(b"{'v': 1, 'id': 1, 'op': 'hello'}", id="python-text"),
        pytest.param(b'{"v": 1, "id": 1, "op": "hello"}', id="json"),
    ],
)
def test_a_frame_that_is_not_msgpack_is_malformed(frame: bytes) -> None:
    with pytest.raises(MalformedFrame) as caught:
        decode_envelope(frame)
    assert type(caught.value) is MalformedFrame
    assert caught.value.code is ErrorCode.MALFORMED_FRAME


@pytest.mark.parametrize(
    "value",
    [[1, 2], ["v", 1, "id", 1], 5, -1, "hello", b"hello", None, True, 1.5],
    ids=repr,
)
def test_msgpack_that_is_not_a_map_is_malformed(value: object) -> None:
    with pytest.raises(MalformedFrame) as caught:
        decode_envelope(pack(value))
    assert type(caught.value) is MalformedFrame
    assert caught.value.code is ErrorCode.MALFORMED_FRAME


def padded_frame(size: int) -> bytes:
    """A valid ``ping`` request of exactly ``size`` bytes (an unknown arg pads it)."""
    padding = size
    while True:
        frame = request_frame(op="ping", args={"pad": "x" * padding})
        if len(frame) == size:
            return frame
        padding -= len(frame) - size


def test_a_frame_of_exactly_the_limit_is_read() -> None:
    frame = padded_frame(MAX_FRAME_BYTES)
    assert len(frame) == MAX_FRAME_BYTES
    assert parse_request(decode_envelope(frame)) == Ping()


def test_a_frame_over_the_limit_is_too_large() -> None:
    frame = padded_frame(MAX_FRAME_BYTES + 1)
    with pytest.raises(FrameTooLarge) as caught:
        decode_envelope(frame)
    assert caught.value.code is ErrorCode.FRAME_TOO_LARGE


def test_the_size_limit_is_checked_before_decoding() -> None:
    with pytest.raises(FrameTooLarge):
        decode_envelope(b"\xc1" * (MAX_FRAME_BYTES + 1))


def test_the_frame_limit_is_the_documented_64_kib() -> None:
    assert MAX_FRAME_BYTES == 65_536


# --- requests: readable envelopes that are refused -------------------------------------------


@pytest.mark.parametrize("version", [MISSING, 0, 2, -1, "1", b"\x01", None, [1]], ids=repr)
def test_wrong_or_missing_version_is_unsupported(version: object) -> None:
    assert refused_envelope(request_frame(v=version, id=9), UnsupportedVersion) == 9


@pytest.mark.parametrize("version", [True, 1.0], ids=repr)
def test_version_that_only_equals_one_in_python_is_unsupported(version: object) -> None:
    refused_envelope(request_frame(v=version), UnsupportedVersion)


@pytest.mark.parametrize(
    "request_id", [MISSING, -1, -(2**63), True, False, "1", 1.0, None, [1], b"\x01"], ids=repr
)
def test_an_id_that_is_not_an_unsigned_integer_is_invalid(request_id: object) -> None:
    assert refused_envelope(request_frame(id=request_id), InvalidRequest) is None


@pytest.mark.parametrize("op", ["nope", "HELLO", "Join", "", "join ", "hello\x00"], ids=repr)
def test_an_unknown_op_is_refused(op: str) -> None:
    assert refused_envelope(request_frame(op=op), UnknownOperation) == 7


def test_an_unknown_op_is_quoted_briefly_in_the_message() -> None:
    envelope = decode_envelope(request_frame(op="x" * 10_000))
    with pytest.raises(UnknownOperation) as caught:
        parse_request(envelope)
    assert len(caught.value.message) < 200


@pytest.mark.parametrize(
    "op", [MISSING, None, 5, True, b"join", ["join"], {"op": "join"}], ids=repr
)
def test_an_op_that_is_not_a_string_is_invalid(op: object) -> None:
    assert refused_envelope(request_frame(op=op), InvalidRequest) == 7


@pytest.mark.parametrize(
    ("op", "args"),
    [
        ("join", {}),
        ("join", {"name": "room1"}),
        ("leave", {}),
        ("members", {}),
        ("send", {"room": "room1"}),
        ("send", {"text": "hi"}),
        ("register", {"user": "alice"}),
        ("register", {"password": "correct horse"}),
        ("login", {"user": "alice"}),
    ],
)
def test_a_missing_field_is_invalid(op: str, args: dict[str, object]) -> None:
    assert refused_envelope(request_frame(op=op, args=args), InvalidRequest) == 7


def test_a_missing_args_map_means_every_field_is_missing() -> None:
    assert refused_envelope(request_frame(args=MISSING), InvalidRequest) == 7


@pytest.mark.parametrize(
    ("op", "args"),
    [
        ("join", {"room": 5}),
        ("join", {"room": True}),
        ("join", {"room": None}),
        ("join", {"room": b"room1"}),
        ("join", {"room": ["room1"]}),
        ("send", {"room": "room1", "text": 42}),
        ("send", {"room": "room1", "text": b"hi"}),
        ("register", {"user": "alice", "password": 12345678}),
        ("login", {"user": 1, "password": "correct horse"}),
    ],
    ids=repr,
)
def test_a_field_of_the_wrong_type_is_invalid(op: str, args: dict[str, object]) -> None:
    assert refused_envelope(request_frame(op=op, args=args), InvalidRequest) == 7


@pytest.mark.parametrize("op", ["join", "hello"])
@pytest.mark.parametrize("args", [["room1"], "room1", 5, None, True, b"room1"], ids=repr)
def test_args_that_are_not_a_map_are_invalid(op: str, args: object) -> None:
    assert refused_envelope(request_frame(op=op, args=args), InvalidRequest) == 7


@pytest.mark.parametrize(
    ("op", "args", "error_type"),
    [
        ("join", {"room": ""}, InvalidName),
        ("join", {"room": "two words"}, InvalidName),
        ("members", {"room": "x" * 33}, InvalidName),
        ("send", {"room": "room1", "text": "\x1b[2J"}, InvalidText),
        ("send", {"room": "room1", "text": "   "}, InvalidText),
        ("send", {"room": "room1", "text": "x" * (MAX_TEXT_BYTES + 1)}, TextTooLong),
        ("register", {"user": "alice", "password": "short"}, InvalidPassword),
        ("register", {"user": "al ice", "password": "correct horse"}, InvalidName),
        ("login", {"user": "alice", "password": ""}, InvalidRequest),
    ],
    ids=repr,
)
def test_field_rules_reach_the_wire_as_their_own_codes(
    op: str, args: dict[str, object], error_type: type[ZchatError]
) -> None:
    assert refused_envelope(request_frame(op=op, args=args, id=41), error_type) == 41


def test_the_envelope_keeps_a_readable_id_whatever_else_is_wrong() -> None:
    envelope = decode_envelope(pack({"id": 12, "op": 5, "args": []}))
    assert envelope.request_id == 12
    assert (envelope.op, envelope.args, envelope.version) == (5, [], None)


# --- replies and events ------------------------------------------------------------------------


def test_result_round_trip() -> None:
    result: dict[str, Any] = {
        "room": "room1",
        "created": True,
        "topic": b"room1\x00",
        "kid": 4,
        "key": bytes(range(32)),
        "seq": 17,
        "members": ["alice", "bob"],
    }
    reply = decode_incoming(encode_result(3, result))
    assert reply == Reply(request_id=3, result=result, error=None)


def test_an_empty_result_round_trips() -> None:
    assert decode_incoming(encode_result(0, {})) == Reply(0, {}, None)


def test_encoded_result_has_the_documented_shape() -> None:
    assert msgpack.unpackb(encode_result(5, {"rooms": []}), raw=False) == {
        "v": 1,
        "id": 5,
        "ok": {"rooms": []},
    }


@pytest.mark.parametrize("code", list(ErrorCode), ids=str)
@pytest.mark.parametrize("request_id", [None, 0, 9])
def test_error_round_trip_rebuilds_the_typed_error(code: ErrorCode, request_id: int | None) -> None:
    sent = ERROR_TYPES[code](f"something about {code}")
    reply = decode_incoming(encode_error(request_id, sent))
    assert isinstance(reply, Reply)
    assert (reply.request_id, reply.result) == (request_id, None)
    assert type(reply.error) is type(sent)
    assert reply.error.code is code
    assert reply.error.message == sent.message


def test_encoded_error_has_the_documented_shape() -> None:
    frame = encode_error(None, NotMember("you are not in room1"))
    assert msgpack.unpackb(frame, raw=False) == {
        "v": 1,
        "id": None,
        "error": {"code": "not_member", "message": "you are not in room1"},
    }


def test_a_refusal_that_passes_with_time_says_how_long_to_wait() -> None:
    frame = encode_error(4, RateLimited("slow down", retry_ms=250))
    assert msgpack.unpackb(frame, raw=False)["error"] == {
        "code": "rate_limited",
        "message": "slow down",
        "retry_ms": 250,
    }
    reply = decode_incoming(frame)
    assert isinstance(reply.error, RateLimited) and reply.error.retry_ms == 250
    for nonsense in (-1, "soon", True, 1.5):
        bad = pack({"v": 1, "id": 2, "error": {"code": "rate_limited", "message": "x",
                                                "retry_ms": nonsense}})  # fmt: skip
        decoded = decode_incoming(bad)
        assert isinstance(decoded, Reply) and decoded.error is not None
        assert decoded.error.retry_ms is None


def test_an_unknown_error_code_becomes_a_plain_zchat_error() -> None:
    frame = pack({"v": 1, "id": 2, "error": {"code": "quota_exceeded", "message": "too much"}})
    reply = decode_incoming(frame)
    assert isinstance(reply, Reply)
    assert type(reply.error) is ZchatError
    assert "quota_exceeded" in reply.error.message
    assert "too much" in reply.error.message


def test_an_unknown_field_in_an_error_reply_is_ignored() -> None:
    frame = pack(
        {"v": 1, "id": 2, "error": {"code": "bad_credentials", "message": "no", "retry": 1}}
    )
    reply = decode_incoming(frame)
    assert isinstance(reply, Reply)
    assert type(reply.error) is BadCredentials


def test_room_key_event_round_trip() -> None:
    event = RoomKey(room="room1", kid=5, key=bytes(range(32)))
    assert decode_incoming(encode_event(event)) == event


def test_session_ended_event_round_trip() -> None:
    event = SessionEnded(reason="expired")
    assert decode_incoming(encode_event(event)) == event


def test_encoded_event_has_the_documented_shape() -> None:
    frame = encode_event(RoomKey(room="room1", kid=2, key=bytes(32)))
    assert msgpack.unpackb(frame, raw=False) == {
        "v": 1,
        "event": "room_key",
        "args": {"room": "room1", "kid": 2, "key": bytes(32)},
    }


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"v": 1, "id": 1}, id="neither-ok-nor-error"),
        pytest.param({"v": 1, "id": 1, "ok": []}, id="ok-list"),
        pytest.param({"v": 1, "id": 1, "ok": None}, id="ok-nil"),
        pytest.param({"v": 1, "id": 1, "ok": "fine"}, id="ok-str"),
        pytest.param({"v": 1, "id": 1, "error": "boom"}, id="error-str"),
        pytest.param({"v": 1, "id": 1, "error": None}, id="error-nil"),
        pytest.param({"v": 1, "id": 1, "error": {"message": "m"}}, id="no-code"),
        pytest.param({"v": 1, "id": 1, "error": {"code": "name_taken"}}, id="no-message"),
        pytest.param({"v": 1, "id": 1, "error": {"code": 5, "message": "m"}}, id="int-code"),
        pytest.param(
            {"v": 1, "id": 1, "error": {"code": b"name_taken", "message": "m"}}, id="bin-code"
        ),
        pytest.param(
            {"v": 1, "id": 1, "error": {"code": "name_taken", "message": None}}, id="nil-message"
        ),
        pytest.param({"v": 1, "id": "1", "ok": {}}, id="str-id"),
        pytest.param({"v": 1, "id": True, "ok": {}}, id="bool-id"),
        pytest.param({"v": 1, "id": 1.0, "ok": {}}, id="float-id"),
        pytest.param({"v": 1, "id": [1], "ok": {}}, id="list-id"),
    ],
)
def test_a_malformed_reply_is_refused(body: dict[str, object]) -> None:
    with pytest.raises(MalformedFrame) as caught:
        decode_incoming(pack(body))
    assert type(caught.value) is MalformedFrame


def test_a_reply_with_a_negative_id_is_malformed() -> None:
    with pytest.raises(MalformedFrame):
        decode_incoming(pack({"v": 1, "id": -1, "ok": {}}))


@pytest.mark.parametrize(
    "frame", [b"", b"\xc1", pack([1, "ok"]), pack("ok"), pack(3), b"\x81\x01\x01"], ids=repr
)
def test_an_unreadable_incoming_frame_is_malformed(frame: bytes) -> None:
    with pytest.raises(MalformedFrame):
        decode_incoming(frame)


def test_an_incoming_frame_over_the_limit_is_too_large() -> None:
    frame = encode_result(1, {"pad": "x" * MAX_FRAME_BYTES})
    with pytest.raises(FrameTooLarge):
        decode_incoming(frame)


@pytest.mark.parametrize("version", [MISSING, 2, 0, "1", None], ids=repr)
def test_an_incoming_frame_of_another_version_is_unsupported(version: object) -> None:
    body = {"v": version, "id": 1, "ok": {}}
    with pytest.raises(UnsupportedVersion):
        decode_incoming(pack({key: value for key, value in body.items() if value is not MISSING}))


@pytest.mark.parametrize("version", [True, 1.0], ids=repr)
def test_an_incoming_version_that_only_equals_one_in_python_is_unsupported(
    version: object,
) -> None:
    with pytest.raises(UnsupportedVersion):
        decode_incoming(pack({"v": version, "id": 1, "ok": {}}))


@pytest.mark.parametrize(
    ("body", "error_type"),
    [
        ({"event": "room_created", "args": {}}, UnknownOperation),
        ({"event": "", "args": {}}, UnknownOperation),
        ({"event": 5, "args": {}}, UnknownOperation),
        ({"event": None, "args": {}}, UnknownOperation),
        ({"event": ["room_key"], "args": {}}, UnknownOperation),
        ({"event": "room_key", "args": {"room": "r", "kid": 1}}, InvalidRequest),
        (
            {"event": "room_key", "args": {"room": "r", "kid": True, "key": bytes(32)}},
            InvalidRequest,
        ),
        (
            {"event": "room_key", "args": {"room": "r", "kid": "1", "key": bytes(32)}},
            InvalidRequest,
        ),
        (
            {"event": "room_key", "args": {"room": "r", "kid": 1.0, "key": bytes(32)}},
            InvalidRequest,
        ),
        ({"event": "room_key", "args": {"room": "r", "kid": 1, "key": "k" * 32}}, InvalidRequest),
        ({"event": "room_key", "args": {"room": "r", "kid": 1, "key": bytes(31)}}, InvalidRequest),
        ({"event": "room_key", "args": {"room": "r", "kid": 1, "key": bytes(33)}}, InvalidRequest),
        ({"event": "room_key", "args": {"room": "a b", "kid": 1, "key": bytes(32)}}, InvalidName),
        ({"event": "room_key", "args": []}, InvalidRequest),
        ({"event": "room_key"}, InvalidRequest),
        ({"event": "session_ended", "args": {}}, InvalidRequest),
        ({"event": "session_ended", "args": {"reason": 1}}, InvalidRequest),
    ],
    ids=repr,
)
def test_a_broken_event_is_refused_with_its_code(
    body: dict[str, object], error_type: type[ZchatError]
) -> None:
    with pytest.raises(error_type) as caught:
        decode_incoming(pack({"v": 1, **body}))
    assert type(caught.value) is error_type


def test_unknown_event_args_are_ignored() -> None:
    frame = pack({"v": 1, "event": "session_ended", "args": {"reason": "expired", "at": 5}})
    assert decode_incoming(frame) == SessionEnded(reason="expired")
