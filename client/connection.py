"""Request/reply correlation over the DEALER socket.

Each request gets a fresh id and a future; one reader task decodes whatever
the broker sends, resolves the future its id names, and hands unasked events
(`room_key`, `session_ended`, `direct`) to a callback. So any number of requests
can be in flight, and none waits forever: each has a timeout.

A monitor on the socket reports a broken TCP connection at once (a killed broker
is noticed without waiting for pings); `Connection.replace` swaps in a fresh
socket for a reconnect, failing what was waiting with `ConnectionLost`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import msgpack
import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from zchat.protocol import Event, Reply, Request, ZchatError, decode_incoming, encode_request
from zchat.protocol.errors import FrameTooLarge

from .errors import ClientClosed, ConnectionLost, RequestTimedOut

log = logging.getLogger(__name__)

T = TypeVar("T")
Result = dict[str, Any]

DEFAULT_TIMEOUT = 10.0
"""Seconds a request may wait for its reply."""


class Connection:
    """One DEALER connection to the broker's ROUTER; owns the socket once started."""

    def __init__(
        self,
        dealer: zmq.asyncio.Socket,
        on_event: Callable[[Event], None],
        timeout: float = DEFAULT_TIMEOUT,
        on_disconnect: Callable[[], None] = lambda: None,
    ) -> None:
        self._dealer = dealer
        self._on_event = on_event
        self._on_disconnect = on_disconnect
        self._timeout = timeout
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[Any], Callable[[Result], Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._monitor: zmq.asyncio.Socket | None = None
        self._endpoint: str | None = None
        self._closed = False

    def connect(self, endpoint: str) -> None:
        """Connect the DEALER; requests queue until the broker is there."""
        self._endpoint = endpoint
        self._dealer.connect(endpoint)

    def start(self) -> None:
        """Start reading replies and watching for disconnects; from inside the event loop."""
        self._reader = asyncio.create_task(self._read(), name="zchat-dealer-reader")
        self._monitor = self._dealer.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self._watcher = asyncio.create_task(self._watch(self._monitor), name="zchat-dealer-monitor")

    async def replace(self, dealer: zmq.asyncio.Socket) -> None:
        """Drop the current socket for ``dealer`` (connected to the same endpoint).

        Requests still waiting fail with `ConnectionLost`; a fresh socket is a new
        connection to the broker, with no session and nothing stale queued.
        """
        if self._closed:
            dealer.close(linger=0)
            raise ClientClosed("the client is closed")
        self._fail_pending(ConnectionLost("the connection to the broker was lost"))
        await self._stop_tasks()
        self._dealer.close(linger=0)
        self._dealer = dealer
        if self._endpoint is not None:
            self._dealer.connect(self._endpoint)
        self.start()

    async def request(self, request: Request, timeout: float | None = None) -> Result:
        """Send ``request`` and return the ``ok`` map of its reply.

        Raises the typed `ZchatError` of an error reply, `RequestTimedOut`, or
        `ClientClosed`.
        """
        return await self.call(request, _unchanged, timeout)

    async def call(
        self, request: Request, apply: Callable[[Result], T], timeout: float | None = None
    ) -> T:
        """Like `request`, but ``apply`` turns the result into the return value.

        ``apply`` runs in the reader as the reply arrives, before any later frame
        is read, so state it updates (keys, subscriptions) is in place before the
        events that follow the reply are handled. An error it raises is raised here.
        """
        if self._closed:
            raise ClientClosed(f"cannot send {request.OP}: the client is closed")
        request_id = next(self._ids)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (future, apply)
        limit = self._timeout if timeout is None else timeout
        try:
            await self._dealer.send(encode_request(request_id, request))
            async with asyncio.timeout(limit):
                return await future
        except TimeoutError as exc:
            raise RequestTimedOut(
                f"the broker did not answer {request.OP} within {limit:g} s"
            ) from exc
        except zmq.ZMQError as exc:
            if self._closed:
                raise ClientClosed(f"cannot send {request.OP}: {exc}") from exc
            raise ConnectionLost(f"cannot send {request.OP}: {exc}") from exc
        finally:
            self._pending.pop(request_id, None)

    async def _read(self) -> None:
        while True:
            try:
                frame = await self._dealer.recv()
            except zmq.ZMQError as exc:  # the socket was closed under us
                log.debug("dealer reader stops: %s", exc)
                return
            try:
                incoming = decode_incoming(frame)
            except FrameTooLarge as exc:
                self._too_large(frame, exc)
                continue
            except ZchatError as exc:
                log.warning("ignoring a frame from the broker: %s", exc)
                continue
            if isinstance(incoming, Reply):
                self._resolve(incoming)
            else:
                self._on_event(incoming)

    async def _watch(self, monitor: zmq.asyncio.Socket) -> None:
        """Report each disconnect of the TCP connection (ZeroMQ reconnects on its own)."""
        while True:
            try:
                frames = await monitor.recv_multipart()
            except zmq.ZMQError as exc:
                log.debug("monitor stops: %s", exc)
                return
            if parse_monitor_message(frames)["event"] == zmq.EVENT_DISCONNECTED:
                log.debug("the connection to the broker dropped")
                self._on_disconnect()

    def _too_large(self, frame: bytes, error: FrameTooLarge) -> None:
        """A reply over the frame limit fails the request it answers (which can then ask
        for less), instead of leaving it to time out."""
        request_id = reply_id(frame)
        pending = self._pending.get(request_id) if request_id is not None else None
        if pending is None or pending[0].done():
            log.warning("ignoring a frame from the broker: %s", error)
            return
        pending[0].set_exception(error)

    def _resolve(self, reply: Reply) -> None:
        pending = self._pending.get(reply.request_id) if reply.request_id is not None else None
        if pending is None or pending[0].done():
            # A reply to a request that timed out, or an error with no id to route by.
            log.debug("unmatched reply id=%s error=%s", reply.request_id, reply.error)
            return
        future, apply = pending
        if reply.error is not None:
            future.set_exception(reply.error)
            return
        try:
            future.set_result(apply(reply.result or {}))
        except ZchatError as exc:
            future.set_exception(exc)

    async def aclose(self) -> None:
        """Fail pending requests, stop the reader and close the socket."""
        if self._closed:
            return
        self._closed = True
        self._fail_pending(ClientClosed("the client was closed"))
        await self._stop_tasks()
        self._dealer.close()

    def _fail_pending(self, error: Exception) -> None:
        for future, _ in self._pending.values():
            if not future.done():
                future.set_exception(error)

    async def _stop_tasks(self) -> None:
        tasks = [task for task in (self._reader, self._watcher) if task is not None]
        self._reader = self._watcher = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._monitor is not None:
            with contextlib.suppress(zmq.ZMQError):
                self._dealer.disable_monitor()
            self._monitor.close(linger=0)
            self._monitor = None


def _unchanged(result: Result) -> Result:
    return result


def reply_id(frame: bytes) -> int | None:
    """The ``id`` of a reply frame, read without decoding the rest; None if it has none."""
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(frame)
    try:
        for _ in range(unpacker.read_map_header()):
            if unpacker.unpack() == "id":
                value = unpacker.unpack()
                return value if type(value) is int else None
            unpacker.skip()
    except Exception:  # msgpack raises many types for bad input; then there is no id
        return None
    return None
