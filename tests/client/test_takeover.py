"""A network blip, and a stranger who claims the routing id the client had before it.

The real client loses its connection (a relay between it and the broker is cut); while
it cannot get back, another program takes the client's old routing id with a CURVE key
of its own. It must get no data, no key and no direct message, and say nothing in the
user's name; the client then comes back and has everything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine

import zmq
import zmq.asyncio

from tests.broker.test_hostile_peers import STRANGER_REQUESTS, claim
from tests.client.test_library import WAIT, account, next_matching
from tests.processes import RunningBroker
from tests.relay import Relay
from zchat.client import ChatClient
from zchat.client.events import DirectReceived, Disconnected, Reconnected
from zchat.protocol import ErrorCode, Hello, RoomEventKind


def play_the_stranger(
    broker: RunningBroker,
    routing_id: bytes,
    bob_acts: Callable[[], Coroutine[None, None, None]],
    loop: asyncio.AbstractEventLoop,
) -> list[object]:
    """Claim ``routing_id``, try every request, let bob act (on ``loop``), and return what
    arrived unasked. Runs on a thread: the stranger is a plain blocking program."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        stranger = claim(context, broker, routing_id)
        try:
            for request in STRANGER_REQUESTS:
                reply = stranger.call(request)
                assert reply.error is not None, (request, reply.result)
                assert reply.error.code == ErrorCode.NOT_LOGGED_IN, request
            asyncio.run_coroutine_threadsafe(bob_acts(), loop).result(WAIT)
            stranger.ok(Hello())  # anything sent to this routing id earlier came before this reply
            return list(stranger.events)
        finally:
            stranger.close()
    finally:
        context.destroy(linger=0)


async def test_a_stranger_on_the_old_routing_id_gets_nothing_and_the_client_loses_nothing(
    context: zmq.asyncio.Context, broker: RunningBroker
) -> None:
    relay = Relay(broker.host, broker.port)
    await relay.start()
    alice = await ChatClient.connect("127.0.0.1", relay.port, context, server_key=broker.server_key)
    bob = await account(context, broker, "bob")
    try:
        await alice.register("alice", "password-alice")
        await alice.login("alice", "password-alice")
        await alice.join("room1")
        await bob.join("room1")
        await alice.send("room1", "before the blip")
        old_id = alice._connection._dealer.getsockopt(zmq.ROUTING_ID)  # only a test knows it

        relay.holding = True
        relay.cut()
        await next_matching(alice, lambda event: isinstance(event, Disconnected))

        async def bob_acts() -> None:
            await bob.dm("alice", "for alice only")
            await bob.leave("room1")  # the room key changes for whoever is still in it

        unasked = await asyncio.to_thread(
            play_the_stranger, broker, old_id, bob_acts, asyncio.get_running_loop()
        )
        assert unasked == [], "a key or a direct message reached the stranger"

        relay.holding = False
        await next_matching(alice, lambda event: isinstance(event, Reconnected), timeout=20)
        direct = await next_matching(alice, lambda event: isinstance(event, DirectReceived))
        assert isinstance(direct, DirectReceived) and direct.text == "for alice only"

        await alice.send("room1", "after the blip")
        await bob.join("room1")
        history = await bob.history("room1", 1, 100)
        texts = [
            e.text for e in history.events if e.kind is RoomEventKind.MESSAGE and e.user == "alice"
        ]
        assert texts == ["before the blip", "after the blip"]
    finally:
        await alice.aclose()
        await bob.aclose()
        await relay.aclose()
