"""The SUB side: one socket, one `RoomStream` per subscribed room topic.

The reader task routes each publication to the stream of its topic and hands
the events that come out to a callback. Topics nobody here joined are
ignored (a subscription may still be draining after a leave).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import zmq
import zmq.asyncio

from zchat.protocol import RoomEvent

from .rooms import RoomStream

log = logging.getLogger(__name__)


class Subscriber:
    """Owns the SUB socket and the streams of the rooms it is subscribed to."""

    def __init__(
        self, subscriber: zmq.asyncio.Socket, on_event: Callable[[RoomEvent], None]
    ) -> None:
        self._subscriber = subscriber
        self._on_event = on_event
        self._streams: dict[bytes, RoomStream] = {}
        self._reader: asyncio.Task[None] | None = None

    def connect(self, endpoint: str) -> None:
        """Connect the SUB socket to the broker's publisher."""
        self._subscriber.connect(endpoint)

    def start(self) -> None:
        """Start reading publications; call once, from inside the event loop."""
        self._reader = asyncio.create_task(self._read(), name="zchat-sub-reader")

    def subscribe(self, topic: bytes) -> RoomStream:
        """Subscribe to a room topic (again is fine) and return its stream."""
        stream = self._streams.get(topic)
        if stream is None:
            stream = self._streams[topic] = RoomStream(topic)
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

    def deliver(self, events: list[RoomEvent]) -> None:
        """Hand events released outside the reader (by a key or a join reply) on."""
        for event in events:
            self._on_event(event)

    async def _read(self) -> None:
        while True:
            try:
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
                self.deliver(stream.feed(body))

    async def aclose(self) -> None:
        """Stop the reader and close the socket."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        self._streams.clear()
        self._subscriber.close()
