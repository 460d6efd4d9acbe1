"""The msgpack codec for the DEALER/ROUTER channel: bytes in, typed messages out.

Every failure to decode becomes a `ProtocolViolation`; nothing here raises a
msgpack or Python type error at its caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

from .errors import (
    FrameTooLarge,
    InvalidRequest,
    MalformedFrame,
    UnknownOperation,
    UnsupportedVersion,
    ZchatError,
    error_from_wire,
)
from .limits import MAX_FRAME_BYTES, PROTOCOL_VERSION
from .messages import EVENT_TYPES, REQUEST_TYPES, Event, Request, fields_of, parse_fields


def unpack_map(frame: bytes) -> dict[str, Any]:
    """Decode one frame that must hold a msgpack map with string keys."""
    if len(frame) > MAX_FRAME_BYTES:
        raise FrameTooLarge(f"frame is {len(frame)} bytes; the limit is {MAX_FRAME_BYTES}")
    try:
        value = msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises many unrelated types for bad input
        raise MalformedFrame(f"frame is not valid msgpack: {type(exc).__name__}") from exc
    if not isinstance(value, dict):
        raise MalformedFrame("frame must hold a msgpack map")
    if not all(isinstance(key, str) for key in value):
        raise MalformedFrame("map keys must be strings")
    return value


def is_version(value: object) -> bool:
    """Whether ``value`` is exactly the integer version (``true`` and ``1.0`` are not)."""
    return type(value) is int and value == PROTOCOL_VERSION


def pack(value: object) -> bytes:
    """Encode with the options both ends use (bin type for bytes, UTF-8 str)."""
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


# --- requests ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestEnvelope:
    """A request frame decoded far enough to address a reply to it."""

    request_id: int | None
    op: object
    args: object = field(repr=False)  # may hold a password
    version: object


def encode_request(request_id: int, request: Request) -> bytes:
    """``{"v": 1, "id": request_id, "op": request.OP, "args": {...}}``."""
    return pack(
        {"v": PROTOCOL_VERSION, "id": request_id, "op": request.OP, "args": fields_of(request)}
    )


def decode_envelope(frame: bytes) -> RequestEnvelope:
    """First step of decoding a request: enough to know which id to reply to."""
    body = unpack_map(frame)
    request_id = body.get("id")
    if not isinstance(request_id, int) or isinstance(request_id, bool) or request_id < 0:
        request_id = None
    return RequestEnvelope(request_id, body.get("op"), body.get("args", {}), body.get("v"))


def parse_request(envelope: RequestEnvelope) -> Request:
    """Second step: check version, id and op, then build and validate the request."""
    if not is_version(envelope.version):
        raise UnsupportedVersion(
            f"protocol version {envelope.version!r} is not supported; use {PROTOCOL_VERSION}"
        )
    if envelope.request_id is None:
        raise InvalidRequest("id must be a non-negative integer")
    if not isinstance(envelope.op, str):
        raise InvalidRequest("op must be a string")
    request_type = REQUEST_TYPES.get(envelope.op)
    if request_type is None:
        raise UnknownOperation(f"unknown operation {envelope.op[:40]!r}")
    return parse_fields(request_type, envelope.args, envelope.op)


# --- replies and events -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """The broker's answer to one request: a result map, or an error."""

    request_id: int | None
    result: dict[str, Any] | None
    error: ZchatError | None


def encode_result(request_id: int, result: dict[str, Any]) -> bytes:
    """``{"v": 1, "id": request_id, "ok": result}``."""
    return pack({"v": PROTOCOL_VERSION, "id": request_id, "ok": result})


def encode_error(request_id: int | None, error: ZchatError) -> bytes:
    """``{"v": 1, "id": request_id or nil, "error": {"code": ..., "message": ...}}``, and
    ``retry_ms`` in the error when the refusal passes with time."""
    body: dict[str, Any] = {"code": str(error.code), "message": error.message}
    if error.retry_ms is not None:
        body["retry_ms"] = error.retry_ms
    return pack({"v": PROTOCOL_VERSION, "id": request_id, "error": body})


def encode_event(event: Event) -> bytes:
    """``{"v": 1, "event": event.NAME, "args": {...}}``."""
    return pack({"v": PROTOCOL_VERSION, "event": event.NAME, "args": fields_of(event)})


def decode_incoming(frame: bytes) -> Reply | Event:
    """Decode what a client's DEALER receives: a reply or an event."""
    body = unpack_map(frame)
    if not is_version(body.get("v")):
        raise UnsupportedVersion(f"broker speaks protocol version {body.get('v')!r}")
    if "event" in body:
        event_type = EVENT_TYPES.get(body["event"]) if isinstance(body["event"], str) else None
        if event_type is None:
            raise UnknownOperation(f"unknown event {body['event']!r}")
        return parse_fields(event_type, body.get("args", {}), str(body["event"]))
    request_id = body.get("id")
    if request_id is not None and (type(request_id) is not int or request_id < 0):
        raise MalformedFrame("reply id must be an unsigned integer or nil")
    if "ok" in body:
        if not isinstance(body["ok"], dict):
            raise MalformedFrame("reply result must be a map")
        return Reply(request_id, body["ok"], None)
    error = body.get("error")
    if not isinstance(error, dict):
        raise MalformedFrame("reply has neither ok nor error")
    code, message = error.get("code"), error.get("message")
    if not isinstance(code, str) or not isinstance(message, str):
        raise MalformedFrame("error must hold string code and message")
    retry_ms = error.get("retry_ms")
    if type(retry_ms) is not int or retry_ms < 0:
        retry_ms = None  # optional: a broker that does not say, or says nonsense
    return Reply(request_id, None, error_from_wire(code, message, retry_ms))
