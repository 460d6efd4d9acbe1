"""The event feed's order and bound, the reconnect backoff, and reading an id from a reply
too large to decode: no sockets."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest

from zchat.client.backoff import delays
from zchat.client.connection import reply_id
from zchat.client.errors import ClientClosed
from zchat.client.feed import EventFeed
from zchat.protocol import encode_result


async def test_the_feed_keeps_order_and_pauses_readers_at_its_limit() -> None:
    feed: EventFeed[int] = EventFeed(limit=3)
    for n in range(5):
        feed.put(n)  # never refused: order is the order of calls
    assert not feed.has_room()
    waiting = asyncio.ensure_future(feed.wait_for_room())
    await asyncio.sleep(0)
    assert not waiting.done()
    assert [await feed.get() for _ in range(3)] == [0, 1, 2]
    await asyncio.wait_for(waiting, 5)
    assert feed.has_room()
    feed.close()
    assert [await feed.get(), await feed.get()] == [3, 4]  # what came before closing
    with pytest.raises(ClientClosed):
        await feed.get()


def test_backoff_doubles_to_ten_seconds_with_jitter() -> None:
    first = list(itertools.islice(delays(jitter=0), 8))
    assert first == [0.5, 1, 2, 4, 8, 10, 10, 10]
    jittered = list(itertools.islice(delays(rng=random.Random(1)), 100))
    assert all(0.375 <= d <= 12.5 for d in jittered)
    assert len(set(jittered)) > 90


def test_the_id_of_an_oversized_reply_can_be_read() -> None:
    frame = encode_result(42, {"events": [[n, "msg", "alice", 1, "x" * 4000] for n in range(20)]})
    assert len(frame) > 65_536
    assert reply_id(frame) == 42
    assert reply_id(b"\x93not a map") is None
