"""Requests never hang: an absent broker and a silent broker both fail with typed errors."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest
import zmq
import zmq.asyncio

from zchat.client import BrokerUnreachable, ChatClient, ClientClosed, RequestTimedOut
from zchat.protocol import encode_result
from zchat.protocol.codec import unpack_map

FAKE_PUBLIC, FAKE_SECRET = zmq.curve_keypair()
FAKE_KEY = FAKE_PUBLIC.decode("ascii")
"""The fake broker's CurveZMQ key pair."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_nobody_listening_is_reported_as_unreachable(context: zmq.asyncio.Context) -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(BrokerUnreachable, match=f"cannot reach the broker at 127.0.0.1:{port}"):
        await ChatClient.connect(
            "127.0.0.1", port, context, server_key=FAKE_KEY, connect_timeout=0.3
        )
    assert time.monotonic() - started < 3


@pytest.fixture
async def hello_only(context: zmq.asyncio.Context) -> AsyncIterator[int]:
    """A fake broker that answers ``hello`` and then never answers anything."""
    router = context.socket(zmq.ROUTER)
    publisher = context.socket(zmq.PUB)
    for sock in (router, publisher):
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_SECRETKEY, FAKE_SECRET)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    pub_port = publisher.bind_to_random_port("tcp://127.0.0.1")

    async def serve() -> None:
        while True:
            routing_id, frame = await router.recv_multipart()
            request = unpack_map(frame)
            if request["op"] == "hello":
                result = {"protocol": 1, "pub_port": pub_port, "ping_interval_ms": 5000}
                await router.send_multipart([routing_id, encode_result(request["id"], result)])

    server = asyncio.create_task(serve())
    yield port
    server.cancel()
    await asyncio.gather(server, return_exceptions=True)
    router.close()
    publisher.close()


async def test_a_request_without_reply_times_out(
    context: zmq.asyncio.Context, hello_only: int
) -> None:
    client = await ChatClient.connect(
        "127.0.0.1", hello_only, context, server_key=FAKE_KEY, timeout=0.2
    )
    try:
        assert client.server.pub_port > 0
        with pytest.raises(RequestTimedOut, match="did not answer rooms"):
            await client.rooms()
    finally:
        await client.aclose()


async def test_closing_fails_waiting_requests_and_later_ones(
    context: zmq.asyncio.Context, hello_only: int
) -> None:
    client = await ChatClient.connect(
        "127.0.0.1", hello_only, context, server_key=FAKE_KEY, timeout=30
    )
    waiting = asyncio.create_task(client.rooms())
    await asyncio.sleep(0)  # let the request start, so it is pending when the client closes
    await client.aclose()
    with pytest.raises(ClientClosed):
        await waiting
    with pytest.raises(ClientClosed):
        await client.rooms()


async def test_the_wrong_broker_key_never_gets_an_answer(
    context: zmq.asyncio.Context, hello_only: int
) -> None:
    impostor_key = zmq.curve_keypair()[0].decode("ascii")
    with pytest.raises(BrokerUnreachable):
        await ChatClient.connect(
            "127.0.0.1", hello_only, context, server_key=impostor_key, connect_timeout=0.5
        )


async def test_a_broker_key_that_is_not_z85_is_refused_before_any_socket(
    context: zmq.asyncio.Context,
) -> None:
    with pytest.raises(ValueError, match="Z85"):
        await ChatClient.connect("127.0.0.1", free_port(), context, server_key="~" * 40)
