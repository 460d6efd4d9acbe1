"""Socket options every client socket gets, in one place."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import zmq
import zmq.asyncio

from zchat.protocol.fingerprint import is_z85_key

HEARTBEAT_IVL_MS = 2_000
HEARTBEAT_TIMEOUT_MS = 6_000
HEARTBEAT_TTL_MS = 6_000
LINGER_MS = 200
"""Long enough to flush a last request on close, short enough never to hang an exit."""
TCP_KEEPALIVE_IDLE_S = 10
TCP_KEEPALIVE_INTVL_S = 5
TCP_KEEPALIVE_CNT = 3
"""A dead connection without ZMTP heartbeats is noticed by the kernel in about 25 s."""
ROUTING_ID_BYTES = 16


def random_routing_id() -> bytes:
    """A routing id nobody can guess, for one DEALER connection.

    The broker's ROUTER addresses replies and private events by routing id; one that
    libzmq assigns is a counter, which a stranger could claim once this connection is
    gone and so receive what was still on its way to it. Never starts with a zero
    byte (libzmq keeps those for the ids it assigns).
    """
    return b"z" + secrets.token_bytes(ROUTING_ID_BYTES - 1)


@dataclass(frozen=True, slots=True)
class CurveKeys:
    """What a CurveZMQ client socket needs: the broker's public key and a key pair of its own."""

    server_key: str
    public: bytes
    secret: bytes = field(repr=False)

    @classmethod
    def for_broker(cls, server_key: str) -> CurveKeys:
        """A fresh client key pair for talking to the broker with ``server_key`` (Z85)."""
        if not is_z85_key(server_key):
            raise ValueError("a broker key is 40 characters of Z85")
        public, secret = zmq.curve_keypair()
        return cls(server_key, public, secret)


def make_curve_client(socket: zmq.Socket[Any], keys: CurveKeys) -> None:
    """Make ``socket`` (plain or asyncio) a CurveZMQ client of the broker ``keys`` name."""
    socket.setsockopt(zmq.CURVE_SERVERKEY, keys.server_key.encode("ascii"))
    socket.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
    socket.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)


def open_socket(
    context: zmq.asyncio.Context,
    socket_type: int,
    keys: CurveKeys | None = None,
    *,
    heartbeats: bool = True,
) -> zmq.asyncio.Socket:
    """A socket that notices a dead broker, with a short linger and CurveZMQ encryption
    when ``keys`` are given (the broker's sockets require it); a DEALER gets a
    `random_routing_id`.

    With ``heartbeats`` it uses ZMTP heartbeats; without, TCP keepalive. A socket the
    application may stop reading (the SUB, when the event feed is full) must not use
    ZMTP heartbeats: libzmq 4.3 cannot read pings behind a full receive queue, drops
    the connection after the timeout, and can abort on the reconnect (libzmq #3937).
    """
    socket = context.socket(socket_type)
    if socket_type == zmq.DEALER:
        socket.setsockopt(zmq.ROUTING_ID, random_routing_id())
    socket.setsockopt(zmq.IPV6, 1)  # dual stack: a broker at an IPv6 address is reachable too
    if keys is not None:
        make_curve_client(socket, keys)
    socket.setsockopt(zmq.LINGER, LINGER_MS)
    if heartbeats:
        socket.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        socket.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TTL_MS)
    else:
        socket.setsockopt(zmq.TCP_KEEPALIVE, 1)
        socket.setsockopt(zmq.TCP_KEEPALIVE_IDLE, TCP_KEEPALIVE_IDLE_S)
        socket.setsockopt(zmq.TCP_KEEPALIVE_INTVL, TCP_KEEPALIVE_INTVL_S)
        socket.setsockopt(zmq.TCP_KEEPALIVE_CNT, TCP_KEEPALIVE_CNT)
    return socket
