"""The zchat wire protocol, sans I/O: message types, codec, validation, error codes.

Nothing in this package opens a socket or touches an event loop; `README.md`
beside it is the specification these modules implement.
"""

from .codec import (
    Reply,
    RequestEnvelope,
    decode_envelope,
    decode_incoming,
    encode_error,
    encode_event,
    encode_request,
    encode_result,
    parse_request,
)
from .errors import ErrorCode, ZchatError
from .messages import (
    Event,
    Hello,
    Join,
    Leave,
    ListRooms,
    Login,
    Logout,
    Members,
    Ping,
    Register,
    Request,
    RoomEvent,
    RoomEventKind,
    RoomKey,
    Send,
    ServerKey,
    SessionEnded,
)
from .sealing import CannotOpen, RoomCipher, SealedEvent, new_room_key, room_topic

__all__ = [
    "CannotOpen",
    "ErrorCode",
    "Event",
    "Hello",
    "Join",
    "Leave",
    "ListRooms",
    "Login",
    "Logout",
    "Members",
    "Ping",
    "Register",
    "Reply",
    "Request",
    "RequestEnvelope",
    "RoomCipher",
    "RoomEvent",
    "RoomEventKind",
    "RoomKey",
    "SealedEvent",
    "Send",
    "ServerKey",
    "SessionEnded",
    "ZchatError",
    "decode_envelope",
    "decode_incoming",
    "encode_error",
    "encode_event",
    "encode_request",
    "encode_result",
    "new_room_key",
    "parse_request",
    "room_topic",
]
