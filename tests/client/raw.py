"""A bare DEALER/SUB pair speaking the wire protocol, for tests that play a stranger."""

from __future__ import annotations

import itertools
from typing import Any

import zmq
import zmq.asyncio

from zchat.client.sockets import CurveKeys, make_curve_client
from zchat.protocol import Reply, Request, decode_incoming, encode_request


def curve_client(socket: zmq.asyncio.Socket, server_key: str) -> zmq.asyncio.Socket:
    """Encrypt ``socket`` to the broker: every stranger can do this much, CURVE admits anyone."""
    make_curve_client(socket, CurveKeys.for_broker(server_key))
    return socket


class RawPeer:
    """Requests without the client library, so a test holds the keys it is given."""

    def __init__(self, context: zmq.asyncio.Context, endpoint: str, server_key: str) -> None:
        self.dealer = curve_client(context.socket(zmq.DEALER), server_key)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.connect(endpoint)
        self._ids = itertools.count(1)

    async def request(self, request: Request) -> dict[str, Any]:
        """Send and wait for the matching reply (events on the way are skipped)."""
        request_id = next(self._ids)
        await self.dealer.send(encode_request(request_id, request))
        while True:
            incoming = decode_incoming(await self.dealer.recv())
            if isinstance(incoming, Reply) and incoming.request_id == request_id:
                if incoming.error is not None:
                    raise incoming.error
                assert incoming.result is not None
                return incoming.result

    def close(self) -> None:
        self.dealer.close()


def spy(context: zmq.asyncio.Context, endpoint: str, server_key: str) -> zmq.asyncio.Socket:
    """A SUB socket subscribed to everything the publisher sends."""
    subscriber = curve_client(context.socket(zmq.SUB), server_key)
    subscriber.setsockopt(zmq.LINGER, 0)
    subscriber.setsockopt(zmq.SUBSCRIBE, b"")
    subscriber.connect(endpoint)
    return subscriber
