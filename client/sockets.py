"""Socket options every client socket gets, in one place."""

from __future__ import annotations

import zmq
import zmq.asyncio

HEARTBEAT_IVL_MS = 2_000
HEARTBEAT_TIMEOUT_MS = 6_000
HEARTBEAT_TTL_MS = 6_000
LINGER_MS = 200
"""Long enough to flush a last request on close, short enough never to hang an exit."""


def open_socket(context: zmq.asyncio.Context, socket_type: int) -> zmq.asyncio.Socket:
    """A socket with ZMTP heartbeats (dead TCP peers are noticed) and a short linger."""
    socket = context.socket(socket_type)
    socket.setsockopt(zmq.LINGER, LINGER_MS)
    socket.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
    socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    socket.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TTL_MS)
    return socket
