"""The SUB side: one socket, one `RoomStream` per subscribed room topic.

The reader task routes each publication to the stream of its topic and hands
what comes out (events, announcements) to a callback. Topics nobody here
joined are ignored (a subscription may still be draining after a leave).

Before each read it waits for room in the application's event feed, so a
consumer that falls behind stops the reading; after such a pause, once the
socket has nothing more waiting, it says so (`on_drained`), since the end of
what was sent meanwhile may be lost without a trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import zmq
import zmq.asyncio

from zchat.protocol import Announcement, RoomEvent

from .rooms import RoomStream

log = logging.getLogger(__name__)

Publication = RoomEvent | Announcement


class Subscriber:
    """Owns the SUB socket and the streams of the rooms it is subscribed to."""

    def __init__(
        self,
        subscriber: zmq.asyncio.Socket,
        on_publication: Callable[[bytes, list[Publication]], None],
        *,
        has_room: Callable[[], bool] = lambda: True,
        wait_for_room: Callable[[], Awaitable[None]] | None = None,
        on_drained: Callable[[], None] = lambda: None,
    ) -> None:
        self._subscriber = subscriber
        self._on_publication = on_publication
        self._has_room = has_room
        self._wait_for_room = wait_for_room
        self._on_drained = on_drained
        self._streams: dict[bytes, RoomStream] = {}
        self._reader: asyncio.Task[None] | None = None

    def connect(self, endpoint: str) -> None:
        """Connect the SUB socket to the broker's publisher."""
        self._subscriber.connect(endpoint)

    def start(self) -> None:
        """Start reading publications; call once, from inside the event loop."""
        self._reader = asyncio.create_task(self._read(), name="zchat-sub-reader")

    def subscribe(self, topic: bytes, room: str) -> RoomStream:
        """Subscribe to the topic of ``room`` (again is fine) and return its stream."""
        stream = self._streams.get(topic)
        if stream is None:
            stream = self._streams[topic] = RoomStream(topic, room)
            self._subscriber.setsockopt(zmq.SUBSCRIBE, topic)
        return stream

    def unsubscribe(self, topic: bytes) -> None:
        """Stop receiving a topic and forget its keys."""
        if self._streams.pop(topic, None) is not None:
            self._subscriber.setsockopt(zmq.UNSUBSCRIBE, topic)

    def unsubscribe_all(self) -> None:
        for topic in list(self._streams):
            self.unsubscribe(topic)

    def stream(self, topic: bytes) -> RoomStream | None:
        return self._streams.get(topic)

    async def _read(self) -> None:
        paused = False
        while True:
            if not self._has_room() and self._wait_for_room is not None:
                paused = True
                await self._wait_for_room()
            try:
                if paused and not await self._subscriber.poll(0):
                    paused = False
                    self._on_drained()
                frames = await self._subscriber.recv_multipart()
            except zmq.ZMQError as exc:
                log.debug("sub reader stops: %s", exc)
                return
            if len(frames) != 2:
                log.debug("dropping a publication of %d frames", len(frames))
                continue
            topic, body = frames
            stream = self._streams.get(topic)
            if stream is not None:
                self._on_publication(topic, stream.feed(body))

    async def aclose(self) -> None:
        """Stop the reader and close the socket."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        self._streams.clear()
        self._subscriber.close()
