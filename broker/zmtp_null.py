"""The server side of a ZMTP 3 connection without security (the NULL mechanism), as bytes.

The key service speaks ZMTP itself over a raw TCP socket (ZeroMQ's STREAM type)
instead of using a ROUTER: libzmq 4.3.5's ZMTP engine aborts the whole process
(``!_io_error``, stream_engine_base.cpp:310) when a peer whose input was paused
behind a full receive queue resets the connection and a heartbeat, the broker's
or one the peer sent, is then handled. A raw socket has no such engine, so a
flood can pause it and hang up at will. Any ZeroMQ DEALER (or REQ) still talks to
it as to a ROUTER.

No I/O here: `NullServer` takes the bytes a peer sent and answers what to send
back and which requests arrived, or raises `ZmtpError` for a peer that does not
speak ZMTP 3 with NULL or breaks a bound.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

SIGNATURE = b"\xff" + b"\x00" * 7 + b"\x01\x7f"
GREETING_SIZE = 64
MECHANISM = b"NULL".ljust(20, b"\x00")
GREETING = SIGNATURE + b"\x03\x00" + MECHANISM + b"\x00" + b"\x00" * 31
"""ZMTP 3.0, NULL, not as-server (NULL has no roles)."""

FLAG_MORE = 0x01
FLAG_LONG = 0x02
FLAG_COMMAND = 0x04


class ZmtpError(Exception):
    """The peer does not speak ZMTP 3 with NULL, or sent more than the service accepts."""


def _command(name: bytes, body: bytes) -> bytes:
    payload = bytes([len(name)]) + name + body
    return _frame(payload, FLAG_COMMAND)


def _frame(payload: bytes, flags: int = 0) -> bytes:
    if len(payload) <= 255:
        return bytes([flags, len(payload)]) + payload
    return bytes([flags | FLAG_LONG]) + struct.pack(">Q", len(payload)) + payload


def _property(name: bytes, value: bytes) -> bytes:
    return bytes([len(name)]) + name + struct.pack(">I", len(value)) + value


HANDSHAKE = GREETING + _command(b"READY", _property(b"Socket-Type", b"ROUTER"))
"""What the server sends as soon as a peer connects: its greeting and READY."""


def message(payload: bytes) -> bytes:
    """One single-frame message, as the wire carries it."""
    return _frame(payload)


@dataclass(slots=True)
class NullServer:
    """One connection's parser: greeting, then frames; `feed` returns finished requests.

    ``max_frame`` bounds one frame and ``max_buffer`` what is kept between calls, so a
    peer can never make the service hold more than a few KiB for it.
    """

    max_frame: int
    max_buffer: int
    _buffer: bytearray = field(default_factory=bytearray)
    _greeted: bool = False
    _parts: list[bytes] = field(default_factory=list)

    def feed(self, data: bytes) -> list[bytes]:
        """The messages completed by ``data`` (the last frame of each; a DEALER sends one)."""
        self._buffer += data
        if len(self._buffer) > self.max_buffer:
            raise ZmtpError("the peer sent more than the service keeps")
        if not self._greeted and not self._check_greeting():
            return []
        requests: list[bytes] = []
        while True:
            frame = self._next_frame()
            if frame is None:
                return requests
            flags, payload = frame
            if flags & FLAG_COMMAND:
                continue  # READY, PING and the like need no answer here
            self._parts.append(payload)
            if len(self._parts) > 4:
                raise ZmtpError("too many frames in one message")
            if not flags & FLAG_MORE:
                requests.append(self._parts[-1])
                self._parts.clear()

    def _check_greeting(self) -> bool:
        have = len(self._buffer)
        if have >= 1 and self._buffer[0] != 0xFF:
            raise ZmtpError("not a ZMTP peer")
        if have >= 10 and not self._buffer[9] == 0x7F:
            raise ZmtpError("not a ZMTP 3 peer")
        if have >= 11 and self._buffer[10] < 3:
            raise ZmtpError("ZMTP before version 3 is not spoken here")
        if have < GREETING_SIZE:
            return False
        if bytes(self._buffer[12:32]) != MECHANISM:
            raise ZmtpError("only the NULL mechanism is spoken here")
        del self._buffer[:GREETING_SIZE]
        self._greeted = True
        return True

    def _next_frame(self) -> tuple[int, bytes] | None:
        buffer = self._buffer
        if len(buffer) < 2:
            return None
        flags = buffer[0]
        if flags & ~(FLAG_MORE | FLAG_LONG | FLAG_COMMAND):
            raise ZmtpError("bad frame flags")
        if flags & FLAG_LONG:
            if len(buffer) < 9:
                return None
            size, start = struct.unpack_from(">Q", buffer, 1)[0], 9
        else:
            size, start = buffer[1], 2
        if size > self.max_frame:
            raise ZmtpError("frame too large")
        end = start + size
        if len(buffer) < end:
            return None
        payload = bytes(buffer[start:end])
        del buffer[:end]
        return flags, payload
