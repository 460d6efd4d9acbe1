"""A bare protocol client on raw sockets, for testing the broker apart from the client library."""

from __future__ import annotations

import itertools
from typing import Any

import zmq

from tests.processes import RunningBroker
from zchat.client.sockets import CurveKeys, make_curve_client
from zchat.protocol import Login, Register, Reply, Request, decode_incoming, encode_request
from zchat.protocol.messages import Event

TIMEOUT_MS = 10_000

WINDOW = 500
"""Unanswered requests one pipelining client keeps at most. Past its high-water mark (1,000
per peer) the broker's ROUTER drops replies, and on a busy machine that many can pile up
before its I/O thread sends them: a client that wants every reply keeps fewer in flight."""


def secure(
    socket: zmq.Socket[bytes], server_key: str, keys: CurveKeys | None = None
) -> zmq.Socket[bytes]:
    """Make ``socket`` a CurveZMQ client of the broker, with ``keys`` or a fresh key pair."""
    make_curve_client(socket, keys or CurveKeys.for_broker(server_key))
    return socket


class WireClient:
    """One DEALER connection speaking the protocol synchronously."""

    def __init__(
        self,
        context: zmq.Context[zmq.Socket[bytes]],
        broker: RunningBroker,
        server_key: str | None = None,
        *,
        routing_id: bytes | None = None,
        keys: CurveKeys | None = None,
        source: str | None = None,
    ) -> None:
        """A CURVE client with the broker's key (or ``server_key``; "" for no CURVE at all).

        A hostile test may choose the connection's ``routing_id`` (any peer can) and its
        CURVE ``keys`` (to reuse a key pair on a second connection), and connect from
        another loopback ``source`` address (such as 127.0.0.2: another machine, to the
        broker)."""
        self.dealer = context.socket(zmq.DEALER)
        key = broker.server_key if server_key is None else server_key
        if key:
            secure(self.dealer, key, keys)
        if routing_id is not None:
            self.dealer.setsockopt(zmq.ROUTING_ID, routing_id)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.setsockopt(zmq.RCVTIMEO, TIMEOUT_MS)
        endpoint = broker.endpoint
        if source is not None:
            endpoint = endpoint.replace("tcp://", f"tcp://{source}:0;", 1)
        self.dealer.connect(endpoint)
        self._ids = itertools.count(1)
        self.events: list[Event] = []

    def send_raw(self, *frames: bytes) -> None:
        self.dealer.send_multipart(frames)

    def receive(self) -> Reply | Event:
        return decode_incoming(self.dealer.recv())

    def reply(self) -> Reply:
        """The next reply, keeping any events that arrive before it."""
        while True:
            message = self.receive()
            if isinstance(message, Reply):
                return message
            self.events.append(message)

    def send(self, request: Request) -> int:
        """Send ``request`` without waiting for its reply; returns its request id."""
        request_id = next(self._ids)
        self.dealer.send(encode_request(request_id, request))
        return request_id

    def call(self, request: Request) -> Reply:
        request_id = self.send(request)
        reply = self.reply()
        assert reply.request_id == request_id
        return reply

    def ok(self, request: Request) -> dict[str, Any]:
        reply = self.call(request)
        assert reply.error is None, reply.error
        assert reply.result is not None
        return reply.result

    def sign_up(self, user: str, password: str = "correct horse") -> None:
        self.ok(Register(user=user, password=password))
        self.ok(Login(user=user, password=password))

    def close(self) -> None:
        self.dealer.close(0)


def subscriber(
    context: zmq.Context[zmq.Socket[bytes]], broker: RunningBroker, topic: bytes
) -> zmq.Socket[bytes]:
    sub = secure(context.socket(zmq.SUB), broker.server_key)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVTIMEO, TIMEOUT_MS)
    sub.setsockopt(zmq.SUBSCRIBE, topic)
    sub.connect(f"tcp://{broker.host}:{broker.pub_port}")
    return sub


class Pipeline:
    """Sends without waiting, never more than `WINDOW` unanswered, and keeps the replies."""

    def __init__(self, client: WireClient) -> None:
        self.client = client
        self.sent = 0
        self.replies: list[Reply] = []

    def send(self, request: Request) -> None:
        self._make_room()
        self.client.send(request)
        self.sent += 1

    def send_raw(self, *frames: bytes) -> None:
        """Frames that must each get one reply (an error, for garbage)."""
        self._make_room()
        self.client.send_raw(*frames)
        self.sent += 1

    def _make_room(self) -> None:
        while self.sent - len(self.replies) >= WINDOW:
            self.replies.append(self.client.reply())

    def drain(self) -> list[Reply]:
        while len(self.replies) < self.sent:
            self.replies.append(self.client.reply())
        return self.replies
