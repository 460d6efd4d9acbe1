"""Typed errors and their stable wire codes, in one table.

The tree, split by who is at fault::

    ZchatError                      base of everything zchat raises
    ├── ProtocolViolation           the peer sent something invalid (its fault)
    │   ├── MalformedFrame          not msgpack, not a map, wrong frame count
    │   ├── FrameTooLarge           over the frame size limit
    │   ├── UnsupportedVersion      protocol version the receiver does not speak
    │   ├── UnknownOperation        op is not in the request table
    │   ├── InvalidRequest          a field is missing, unexpected or of the wrong type
    │   ├── InvalidName             user or room name breaks the naming rules
    │   ├── InvalidText             empty text or forbidden control characters
    │   ├── InvalidRange            a history range that is negative, reversed or out of bounds
    │   ├── TextTooLong             text over the size limit
    │   └── InvalidPassword         password breaks the password rules
    ├── RequestRefused              a well-formed request the broker will not carry out
    │   ├── NotLoggedIn             the operation needs a session on this connection
    │   ├── SessionExpired          the session's lease ran out; log in again
    │   ├── AlreadyLoggedIn         this connection already holds a session
    │   ├── NameTaken               the username is registered already
    │   ├── BadCredentials          unknown user or wrong password (never says which)
    │   ├── NotMember               the session is not in that room
    │   ├── NoSuchUser              a direct message to a user who does not exist
    │   ├── BadResumeToken          the resume token is unknown, revoked or expired
    │   ├── TooManyAttempts         login or register throttled; wait and retry
    │   ├── RateLimited             sending faster than the session's message rate
    │   └── LimitReached            a cap is reached (sessions per address, rooms...)
    └── InternalError               the broker failed; the request may be retried

`ErrorCode` values are part of the wire protocol: they never change once shipped.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class ErrorCode(StrEnum):
    """Stable wire codes carried in an error reply's ``code`` field."""

    MALFORMED_FRAME = "malformed_frame"
    FRAME_TOO_LARGE = "frame_too_large"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_OPERATION = "unknown_op"
    INVALID_REQUEST = "invalid_request"
    INVALID_NAME = "invalid_name"
    INVALID_TEXT = "invalid_text"
    INVALID_RANGE = "invalid_range"
    TEXT_TOO_LONG = "text_too_long"
    INVALID_PASSWORD = "invalid_password"  # noqa: S105 - an error code, not a secret
    NOT_LOGGED_IN = "not_logged_in"
    SESSION_EXPIRED = "session_expired"
    ALREADY_LOGGED_IN = "already_logged_in"
    NAME_TAKEN = "name_taken"
    BAD_CREDENTIALS = "bad_credentials"
    NOT_MEMBER = "not_member"
    NO_SUCH_USER = "no_such_user"
    BAD_RESUME_TOKEN = "bad_resume_token"  # noqa: S105 - an error code, not a secret
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    RATE_LIMITED = "rate_limited"
    LIMIT_REACHED = "limit_reached"
    INTERNAL_ERROR = "internal_error"


class ZchatError(Exception):
    """Base of every zchat error; ``code`` is what goes on the wire."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_ERROR

    def __init__(self, message: str, *, retry_ms: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_ms = retry_ms
        """For a refusal that passes with time (`rate_limited`, `too_many_attempts`): how many
        milliseconds to wait before trying again; sent as the error's ``retry_ms``."""


class ProtocolViolation(ZchatError):
    """The peer sent something the protocol does not allow."""


class MalformedFrame(ProtocolViolation):
    code = ErrorCode.MALFORMED_FRAME


class FrameTooLarge(ProtocolViolation):
    code = ErrorCode.FRAME_TOO_LARGE


class UnsupportedVersion(ProtocolViolation):
    code = ErrorCode.UNSUPPORTED_VERSION


class UnknownOperation(ProtocolViolation):
    code = ErrorCode.UNKNOWN_OPERATION


class InvalidRequest(ProtocolViolation):
    code = ErrorCode.INVALID_REQUEST


class InvalidName(ProtocolViolation):
    code = ErrorCode.INVALID_NAME


class InvalidText(ProtocolViolation):
    code = ErrorCode.INVALID_TEXT


class InvalidRange(ProtocolViolation):
    code = ErrorCode.INVALID_RANGE


class TextTooLong(ProtocolViolation):
    code = ErrorCode.TEXT_TOO_LONG


class InvalidPassword(ProtocolViolation):
    code = ErrorCode.INVALID_PASSWORD


class RequestRefused(ZchatError):
    """A valid request that the broker will not carry out."""


class NotLoggedIn(RequestRefused):
    code = ErrorCode.NOT_LOGGED_IN


class SessionExpired(RequestRefused):
    code = ErrorCode.SESSION_EXPIRED


class AlreadyLoggedIn(RequestRefused):
    code = ErrorCode.ALREADY_LOGGED_IN


class NameTaken(RequestRefused):
    code = ErrorCode.NAME_TAKEN


class BadCredentials(RequestRefused):
    code = ErrorCode.BAD_CREDENTIALS


class NotMember(RequestRefused):
    code = ErrorCode.NOT_MEMBER


class NoSuchUser(RequestRefused):
    code = ErrorCode.NO_SUCH_USER


class BadResumeToken(RequestRefused):
    code = ErrorCode.BAD_RESUME_TOKEN


class TooManyAttempts(RequestRefused):
    code = ErrorCode.TOO_MANY_ATTEMPTS


class RateLimited(RequestRefused):
    code = ErrorCode.RATE_LIMITED


class LimitReached(RequestRefused):
    code = ErrorCode.LIMIT_REACHED


class InternalError(ZchatError):
    code = ErrorCode.INTERNAL_ERROR


ERROR_TYPES: dict[ErrorCode, type[ZchatError]] = {
    ErrorCode.MALFORMED_FRAME: MalformedFrame,
    ErrorCode.FRAME_TOO_LARGE: FrameTooLarge,
    ErrorCode.UNSUPPORTED_VERSION: UnsupportedVersion,
    ErrorCode.UNKNOWN_OPERATION: UnknownOperation,
    ErrorCode.INVALID_REQUEST: InvalidRequest,
    ErrorCode.INVALID_NAME: InvalidName,
    ErrorCode.INVALID_TEXT: InvalidText,
    ErrorCode.INVALID_RANGE: InvalidRange,
    ErrorCode.TEXT_TOO_LONG: TextTooLong,
    ErrorCode.INVALID_PASSWORD: InvalidPassword,
    ErrorCode.NOT_LOGGED_IN: NotLoggedIn,
    ErrorCode.SESSION_EXPIRED: SessionExpired,
    ErrorCode.ALREADY_LOGGED_IN: AlreadyLoggedIn,
    ErrorCode.NAME_TAKEN: NameTaken,
    ErrorCode.BAD_CREDENTIALS: BadCredentials,
    ErrorCode.NOT_MEMBER: NotMember,
    ErrorCode.NO_SUCH_USER: NoSuchUser,
    ErrorCode.BAD_RESUME_TOKEN: BadResumeToken,
    ErrorCode.TOO_MANY_ATTEMPTS: TooManyAttempts,
    ErrorCode.RATE_LIMITED: RateLimited,
    ErrorCode.LIMIT_REACHED: LimitReached,
    ErrorCode.INTERNAL_ERROR: InternalError,
}
"""The one table from wire code to exception type (each type's ``code`` is the reverse)."""


def error_from_wire(code: str, message: str, retry_ms: int | None = None) -> ZchatError:
    """Rebuild the typed error a peer reported; unknown codes become `ZchatError`."""
    try:
        error_type = ERROR_TYPES[ErrorCode(code)]
    except ValueError:
        return ZchatError(f"{code}: {message}", retry_ms=retry_ms)
    return error_type(message, retry_ms=retry_ms)
