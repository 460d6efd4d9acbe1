"""The plaintext key service: `server_key` for first contact, on its own thread and context.

Anyone may ask it, without an account, so it is built to cost the chat nothing
under a flood: it runs on a thread of its own with its own ZeroMQ context (so
its I/O thread is not the chat's), does a bounded amount of work per second
(then sleeps, and the flood waits in the kernel's TCP buffers), answers from a
small table of precomputed replies, and checks every limit before parsing:

- at most `max_connections` open at once, `connections_per_address` per
  address, and new connections per address at `address_rate`;
- requests per address at `address_rate` and `requests_per_connection` per
  connection; every connection is closed `connection_lifetime_s` after it opened.

Over a limit the connection is closed without an answer (an honest client
asks once per broker and retries). It speaks ZMTP itself over a STREAM socket
(`zmtp_null`), which libzmq 4.3.5 cannot be made to abort through.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import zmq

from zchat.protocol import (
    ServerKey,
    ZchatError,
    decode_envelope,
    encode_error,
    encode_result,
    parse_request,
)
from zchat.protocol.errors import UnknownOperation

from .keys import BrokerKeys
from .throttle import BucketTable, TokenBucket
from .zmtp_null import HANDSHAKE, NullServer, ZmtpError, message

logger = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 1024
CLOSED_REMEMBERED = 4_096
POLL_MS = 500
"""How often deadlines are checked (and a stop request noticed) while nothing arrives;
rarely, so an idle service seldom takes the interpreter from the chat."""


@dataclass(frozen=True, slots=True)
class KeyServiceLimits:
    """What one peer, and all of them, may make the key service do."""

    max_connections: int = 256
    connections_per_address: int = 8
    address_rate: float = 20.0
    """New connections and requests per address per second (each), sustained."""
    address_burst: int = 40
    requests_per_connection: int = 8
    connection_lifetime_s: float = 5.0
    work_per_s: float = 4_000.0
    """Messages (connects, data, hang-ups) handled per second, at most, by the service."""
    work_burst: int = 1_000
    tracked_addresses: int = 10_000


@dataclass(slots=True)
class _Peer:
    address: str
    opened: float
    parser: NullServer
    requests: int = 0


@dataclass(slots=True)
class _AddressTable:
    """Per-address connection and request buckets and open-connection counts, bounded."""

    connects: BucketTable
    requests: BucketTable
    open: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, limits: KeyServiceLimits) -> _AddressTable:
        rate, burst, kept = limits.address_rate, limits.address_burst, limits.tracked_addresses
        return cls(BucketTable(rate, burst, kept), BucketTable(rate, burst, kept))


def _ms(now: float) -> int:
    """The monotonic clock's seconds as the throttle's milliseconds."""
    return int(now * 1000)


class KeyService:
    """Serves `server_key` on ``host:port`` until `stop`; `start` runs it on its thread."""

    def __init__(
        self, host: str, port: int, keys: BrokerKeys, limits: KeyServiceLimits | None = None
    ) -> None:
        self.limits = limits or KeyServiceLimits()
        self._answer = {"key": keys.public, "fingerprint": keys.fingerprint}
        self._replies: dict[bytes, bytes] = {}
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context(io_threads=1)
        self._stream = self._context.socket(zmq.STREAM)
        self._stream.setsockopt(zmq.LINGER, 0)
        self._stream.setsockopt(zmq.IPV6, 1)
        self._stream.setsockopt(zmq.MAXMSGSIZE, 2 * MAX_REQUEST_BYTES)
        address = f"[{host}]" if ":" in host else host
        try:
            self._stream.bind(f"tcp://{address}:{port or '*'}")
        except zmq.ZMQError:
            self._close()
            raise
        endpoint = self._stream.get_string(zmq.LAST_ENDPOINT)
        self.port = int(endpoint.rsplit(":", 1)[1])
        self._peers: dict[bytes, _Peer] = {}
        self._closed: OrderedDict[bytes, None] = OrderedDict()
        """Connections this side closed: their hang-up notice is not a new connection."""
        self._addresses = _AddressTable.of(self.limits)
        self._work = TokenBucket.full(
            self.limits.work_per_s, self.limits.work_burst, _ms(time.monotonic())
        )
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zchat-key-service", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket and context (waits for the thread)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        self._close()

    def _close(self) -> None:
        self._stream.close(linger=0)
        self._context.term()

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                if self._stream.poll(POLL_MS):
                    self._drain()
                self._expire(time.monotonic())
        except zmq.ZMQError:  # pragma: no cover - the context went away under us
            logger.exception("the key service stopped")

    def _drain(self) -> None:
        """Handle what is waiting, within the work budget; sleep when it is spent."""
        stream = self._stream
        for _ in range(self.limits.work_burst):
            now = time.monotonic()
            if not self._work.take(_ms(now)):
                # Spent: let the flood wait in TCP buffers (a STREAM socket may pause input safely).
                time.sleep(1 / self.limits.work_per_s)
                return
            try:
                routing_id = stream.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            data = stream.recv(copy=False)
            peer = self._peers.get(routing_id)
            if not data.bytes:
                if peer is not None:
                    self._forget(routing_id)  # the peer hung up
                elif self._closed.pop(routing_id, False) is False:
                    self._open(routing_id, data, now)
            elif peer is not None:
                self._serve(routing_id, peer, data.bytes, now)

    def _open(self, routing_id: bytes, frame: zmq.Frame, now: float) -> None:
        try:
            address = str(frame.get("Peer-Address"))
        except zmq.ZMQError:
            address = "unknown"
        table = self._addresses
        if (
            len(self._peers) >= self.limits.max_connections
            or table.open.get(address, 0) >= self.limits.connections_per_address
            or table.connects.take(address, _ms(now)) is not None
        ):
            self._hang_up(routing_id)
            return
        parser = NullServer(max_frame=MAX_REQUEST_BYTES, max_buffer=2 * MAX_REQUEST_BYTES)
        self._peers[routing_id] = _Peer(address, now, parser)
        table.open[address] = table.open.get(address, 0) + 1
        self._send(routing_id, HANDSHAKE)

    def _serve(self, routing_id: bytes, peer: _Peer, data: bytes, now: float) -> None:
        try:
            requests = peer.parser.feed(data)
        except ZmtpError:
            self._close_peer(routing_id)
            return
        for body in requests:
            peer.requests += 1
            if (
                peer.requests > self.limits.requests_per_connection
                or self._addresses.requests.take(peer.address, _ms(now)) is not None
            ):
                self._close_peer(routing_id)
                return
            self._send(routing_id, self._reply(body))

    def _reply(self, body: bytes) -> bytes:
        """The framed reply to one request, from the table of those already made."""
        reply = self._replies.get(body)
        if reply is None:
            reply = message(self._encode_reply(body))
            if len(self._replies) < 64:
                self._replies[body] = reply
        return reply

    def _encode_reply(self, body: bytes) -> bytes:
        request_id: int | None = None
        try:
            envelope = decode_envelope(body)
            request_id = envelope.request_id
            request = parse_request(envelope)
            if not isinstance(request, ServerKey) or request_id is None:
                raise UnknownOperation("the key service answers only server_key")
            return encode_result(request_id, self._answer)
        except ZchatError as error:
            return encode_error(request_id, error)

    def _expire(self, now: float) -> None:
        lifetime = self.limits.connection_lifetime_s
        for routing_id, peer in list(self._peers.items()):
            if now - peer.opened < lifetime:
                break  # dicts keep insertion order: the rest opened later
            self._close_peer(routing_id)

    def _send(self, routing_id: bytes, data: bytes) -> None:
        try:
            self._stream.send(routing_id, zmq.SNDMORE | zmq.NOBLOCK)
            self._stream.send(data, zmq.NOBLOCK)
        except zmq.Again:
            self._close_peer(routing_id)

    def _close_peer(self, routing_id: bytes) -> None:
        self._forget(routing_id)
        self._hang_up(routing_id)

    def _forget(self, routing_id: bytes) -> None:
        peer = self._peers.pop(routing_id, None)
        if peer is None:
            return
        remaining = self._addresses.open.pop(peer.address, 1) - 1
        if remaining > 0:
            self._addresses.open[peer.address] = remaining

    def _hang_up(self, routing_id: bytes) -> None:
        """Close a connection: a STREAM socket closes on an empty frame."""
        self._closed[routing_id] = None
        while len(self._closed) > CLOSED_REMEMBERED:
            self._closed.popitem(last=False)
        try:
            self._stream.send(routing_id, zmq.SNDMORE | zmq.NOBLOCK)
            self._stream.send(b"", zmq.NOBLOCK)
        except zmq.Again:
            pass
