"""The queue between the client's readers and the application: ordered, and bounded by
stopping the readers rather than by refusing events.

Events are put without waiting, so whatever order the readers produce them in
is the order the application sees. The bound works upstream: a reader calls
`EventFeed.wait_for_room` before it reads more from the network, so an
application that stops consuming stops the reading. ZeroMQ then drops room
traffic past its high-water mark, and the sequencer fetches it again later.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

from .errors import ClientClosed

T = TypeVar("T")

DEFAULT_LIMIT = 1_000
"""Events waiting for the application before the readers pause."""


class EventFeed(Generic[T]):
    """A FIFO of events with a soft limit that readers respect."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        if limit < 1:
            raise ValueError("the event limit must be at least 1")
        self.limit = limit
        self._items: deque[T] = deque()
        self._readable = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def has_room(self) -> bool:
        return len(self._items) < self.limit or self._closed

    def put(self, item: T) -> None:
        """Queue an event; never waits, so order is the order of calls."""
        if self._closed:
            return
        self._items.append(item)
        self._readable.set()
        if len(self._items) >= self.limit:
            self._room.clear()

    async def wait_for_room(self) -> None:
        """Wait until the application has taken enough to go below the limit."""
        while not self.has_room():
            self._room.clear()
            await self._room.wait()

    async def get(self) -> T:
        """The oldest event; `ClientClosed` once the feed is closed and empty."""
        while not self._items:
            if self._closed:
                raise ClientClosed("the client was closed")
            self._readable.clear()
            await self._readable.wait()
        item = self._items.popleft()
        if len(self._items) < self.limit:
            self._room.set()
        return item

    def close(self) -> None:
        """Accept nothing more; readers waiting for an event or for room wake up."""
        self._closed = True
        self._readable.set()
        self._room.set()
