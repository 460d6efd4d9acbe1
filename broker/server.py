"""The thin asyncio + ZeroMQ shell around the core: receive, decode, dispatch, commit, send.

Requests are taken in batches: everything waiting on the ROUTER is dispatched,
the storage commits once, and only then do replies and publications leave, so
an acknowledged message is always on disk and commits are grouped under load.
A batch's events in one room leave as one sealed publication (`seal_batches`),
so the busier the broker, the less each delivery costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import zmq
import zmq.asyncio

from zchat.protocol import (
    Event,
    Login,
    Register,
    Request,
    ZchatError,
    decode_envelope,
    encode_error,
    encode_event,
    encode_result,
    parse_request,
)
from zchat.protocol.errors import (
    AlreadyLoggedIn,
    InternalError,
    LimitReached,
    MalformedFrame,
    RateLimited,
)
from zchat.protocol.limits import ANNOUNCE_INTERVAL_MS
from zchat.protocol.sealing import topic_key

from .admission import admit_login, admit_registration
from .config import BrokerConfig, Retention
from .gate import RequestGate
from .handlers import (
    CheckedLogin,
    NewAccount,
    check_name_free,
    dispatch,
    expire_sessions,
    load_state,
)
from .key_service import KeyService
from .keys import BrokerKeys, load_or_create_keys
from .membership import announce_rooms, rotate_keys
from .outgoing import Failure, Outgoing, Publish, Result, Unicast
from .passwords import PasswordHasher
from .publishing import seal_batches
from .sqlite_storage import SqliteStorage, StorageError
from .state import BrokerSettings, BrokerState, Connection
from .zap import ZapHandler

logger = logging.getLogger(__name__)

BATCH_LIMIT = 512
"""Most requests dispatched before one commit and flush."""
DRAIN_LIMIT = 4 * BATCH_LIMIT
"""Most frames read in one pass, dropped ones included, before the other tasks get a turn."""
REFUSED_REPLY = encode_error(
    None, RateLimited("too many requests from this connection or address; not read")
)
"""The answer to a request over the gate's limits: without its id, since it is not decoded."""

LEASE_CHECK_S = 1.0
DROP_LOG_S = 10.0
HANDSHAKE_IVL_MS = 5_000
"""A connection that has not finished its CurveZMQ handshake by then is closed (libzmq's
default is 30 s), so connections that never speak give their file descriptors back soon."""
TCP_KEEPALIVE_IDLE_S = 10
TCP_KEEPALIVE_INTVL_S = 5
TCP_KEEPALIVE_CNT = 3
"""A dead peer is noticed by the kernel in about 25 s (the lease ends its session sooner)."""
SOCKET_MAXMSGSIZE = 1024 * 1024
"""ZeroMQ drops the connection of a peer sending more; up to it, a reply explains the limit."""
PRUNE_BATCH = 1_000
"""Events deleted per step of pruning; each step is a short pause for the event loop."""
PRUNE_INTERVAL_S = 300
ZMQ_ZERO_COPY_RECV = 10
"""libzmq's context option for zero-copy receive (pyzmq has no name for it). Off, each
message is copied out of its connection's read buffer; on, a CURVE message keeps that
~18 KiB buffer alive while it waits and the next read allocates another, which was a
quarter of an idle client's memory on the broker (benchmarks/idle_floor.py)."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where the broker actually listens (ports resolved when 0 was asked for), and its key."""

    host: str
    port: int
    pub_port: int
    key_port: int
    keys: BrokerKeys


def _bound_port(socket: zmq.asyncio.Socket) -> int:
    endpoint = socket.get_string(zmq.LAST_ENDPOINT)
    return int(endpoint.rsplit(":", 1)[1])


def _bind(socket: zmq.asyncio.Socket, host: str, port: int) -> None:
    """Bind to ``host`` (a name, IPv4 or IPv6 address) on ``port`` (0: any free port)."""
    address = f"[{host}]" if ":" in host else host
    socket.bind(f"tcp://{address}:{port or '*'}")


def _configure(socket: zmq.asyncio.Socket) -> None:
    socket.setsockopt(zmq.IPV6, 1)  # dual stack: IPv6 and IPv4 addresses both work
    socket.setsockopt(zmq.LINGER, 1000)
    # No ZMTP heartbeats of the broker's own: libzmq 4.3.5 aborts when its heartbeat timer
    # fires on a connection that was reset while its input was paused (stream_engine_base.cpp
    # :310). TCP keepalive finds dead peers instead; peers' own heartbeats are still answered.
    socket.setsockopt(zmq.TCP_KEEPALIVE, 1)
    socket.setsockopt(zmq.TCP_KEEPALIVE_IDLE, TCP_KEEPALIVE_IDLE_S)
    socket.setsockopt(zmq.TCP_KEEPALIVE_INTVL, TCP_KEEPALIVE_INTVL_S)
    socket.setsockopt(zmq.TCP_KEEPALIVE_CNT, TCP_KEEPALIVE_CNT)
    socket.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_IVL_MS)


def _make_curve_server(socket: zmq.asyncio.Socket, keys: BrokerKeys) -> None:
    socket.setsockopt(zmq.CURVE_SERVER, 1)
    socket.setsockopt(zmq.CURVE_SECRETKEY, keys.secret.encode("ascii"))
    socket.setsockopt(zmq.CURVE_PUBLICKEY, keys.public.encode("ascii"))


def encode_outgoing(message: Result | Failure | Event) -> bytes:
    if isinstance(message, Result):
        return encode_result(message.request_id, message.data)
    if isinstance(message, Failure):
        return encode_error(message.request_id, message.error)
    return encode_event(message)


class BrokerShell:
    """Owns the two sockets and moves frames between them and the core."""

    def __init__(
        self,
        state: BrokerState,
        router: zmq.asyncio.Socket,
        publisher: zmq.asyncio.Socket,
        hasher: PasswordHasher,
        hash_pool: ThreadPoolExecutor,
    ) -> None:
        self.state = state
        self.router = router
        # Blocking-free twins of the asyncio sockets, for draining and sending in a batch.
        self._router_now: zmq.Socket[bytes] = zmq.Socket.shadow(router.underlying)
        self._publisher: zmq.Socket[bytes] = zmq.Socket.shadow(publisher.underlying)
        self.hasher = hasher
        self.hash_pool = hash_pool
        self._auth_tasks: set[asyncio.Task[None]] = set()
        self._pending_auth: dict[str, int] = {}
        """Logins and registrations waiting for the hasher, per peer address."""
        self._storage_failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        """Set when a login or registration finds the storage failed (see `watch`)."""
        limits = state.settings.limits
        self.gate = RequestGate(
            limits.connection_request_rate,
            limits.connection_request_burst,
            limits.address_request_rate,
            limits.address_request_burst,
        )
        self._dropped_logged = -DROP_LOG_S
        self.caught_up_ms = now_ms()
        """When `serve` last found the ROUTER empty: every ping sent before then is read."""
        self._waiting = False
        """`serve` is waiting for the next request (so it is caught up now)."""

    async def serve(self) -> None:
        """Handle requests until cancelled.

        Each pass reads at most `DRAIN_LIMIT` frames and dispatches at most `BATCH_LIMIT`
        of them; `gate` refuses a flood's frames before they are decoded. A pass that
        empties the ROUTER marks the broker as caught up (see `expire_leases`).
        """
        gate = self.gate
        while True:
            self._waiting = True  # nothing left unread: caught up for as long as this lasts
            await self.router.poll()  # POLLIN
            self._waiting = False
            outbox: list[Outgoing] = []
            refused: list[bytes] = []
            router = self._router_now
            now = now_ms()
            dispatched = 0
            for _ in range(DRAIN_LIMIT):
                # Frame by frame: recv_multipart costs more than the rest of a small request.
                try:
                    routing_id = router.recv(zmq.NOBLOCK)
                except zmq.Again:
                    self.caught_up_ms = now
                    break
                body = router.recv(copy=False)  # a Frame: it knows the peer's address
                extra = 0
                more = body.more
                while more:
                    more = router.recv(copy=False).more
                    extra += 1
                address = gate.address(routing_id, now)
                if address is None:
                    address = _peer_address(body)
                    gate.remember(routing_id, address, now)
                if not gate.admit(routing_id, address, now):
                    refused.append(routing_id)
                    continue
                outbox.extend(self.handle_request(routing_id, body, extra, address))
                dispatched += 1
                if dispatched >= BATCH_LIMIT:
                    break
            else:
                dispatched = BATCH_LIMIT  # read the most a pass may: let the other tasks run
            self.commit_and_send(outbox)
            for routing_id in refused:  # one precomputed answer each, never decoded
                router.send(routing_id, zmq.SNDMORE)
                router.send(REFUSED_REPLY)
            if dispatched >= BATCH_LIMIT:
                await asyncio.sleep(0)

    async def announce(self) -> None:
        """Announce the latest seq of rooms with recent traffic, a few times a second."""
        while True:
            await asyncio.sleep(ANNOUNCE_INTERVAL_MS / 1000)
            self.commit_and_send(announce_rooms(self.state, now_ms()))

    async def prune_history(self, retention: Retention) -> None:
        """Delete events past the retention limits, a batch at a time, every few minutes."""
        while True:
            for room in list(self.state.rooms.values()):
                while True:
                    cutoff = now_ms() - retention.max_age_ms
                    deleted = self.state.storage.prune_events(
                        room.name, cutoff, retention.max_per_room, PRUNE_BATCH
                    )
                    self.state.storage.commit()
                    await asyncio.sleep(0)  # let requests in between batches
                    if deleted < PRUNE_BATCH:
                        break
            await asyncio.sleep(PRUNE_INTERVAL_S)

    async def expire_leases(self) -> None:
        """End sessions whose lease ran out, once a second, until cancelled.

        Silence is measured up to when the broker last caught up with its ROUTER, not up
        to now: a ping waiting unread behind a flood is not the client's silence."""
        while True:
            await asyncio.sleep(LEASE_CHECK_S)
            now = now_ms()
            if self._waiting:
                self.caught_up_ms = now
            self.gate.sweep(now)
            self._report_dropped()
            self.commit_and_send(expire_sessions(self.state, min(now, self.caught_up_ms)))

    def _report_dropped(self) -> None:
        """Log the requests the gate refused, one line at most every `DROP_LOG_S`."""
        gate = self.gate
        now = time.monotonic()
        if gate.dropped and now - self._dropped_logged >= DROP_LOG_S:
            logger.warning("refused %d requests over the request limits", gate.dropped)
            gate.dropped = 0
            self._dropped_logged = now

    def handle_request(
        self, routing_id: bytes, body: zmq.Frame, extra: int, address: str
    ) -> list[Outgoing]:
        """Decode one ROUTER message (``extra`` frames after the first are an error) from
        the peer at ``address`` and dispatch it (register and login go to a thread)."""
        if extra:
            error = MalformedFrame(f"expected one frame, got {extra + 1}")
            return [Unicast(routing_id, Failure(None, error))]
        try:
            envelope = decode_envelope(body.bytes)
        except ZchatError as error:
            return [Unicast(routing_id, Failure(None, error))]
        try:
            request = parse_request(envelope)
        except ZchatError as error:
            return [Unicast(routing_id, Failure(envelope.request_id, error))]
        assert envelope.request_id is not None
        client_key = _client_key(body)
        session = self.state.session_held(routing_id, client_key)
        # Without one, the core's `session_of` decides what a routing id with another key means.
        connection = session.connection if session else Connection(routing_id, address, client_key)
        if isinstance(request, Register | Login):
            return self.start_authentication(connection, envelope.request_id, request)
        return dispatch(self.state, connection, envelope.request_id, request, now_ms())

    def start_authentication(
        self, connection: Connection, request_id: int, request: Register | Login
    ) -> list[Outgoing]:
        """Admit a login or registration (cheaply), then hash on a worker thread."""
        limits = self.state.settings.limits
        peer = connection.peer
        held = self.state.session_held(connection.routing_id, connection.client_key)
        try:
            if isinstance(request, Login) and held is not None:
                raise AlreadyLoggedIn("this connection is already logged in")  # before hashing
            if isinstance(request, Register):
                check_name_free(self.state.storage, request.user)  # before hashing, too
            if (
                len(self._auth_tasks) >= limits.pending_auth_total
                or self._pending_auth.get(peer, 0) >= limits.pending_auth_per_address
            ):
                raise LimitReached("too many logins waiting; try again shortly")
            if isinstance(request, Register):
                admit_registration(self.state, peer, now_ms())
                delay_ms = 0
            else:
                delay_ms = admit_login(self.state, request.user, peer, now_ms())
        except ZchatError as error:
            return [Unicast(connection.routing_id, Failure(request_id, error))]
        task = asyncio.create_task(self.authenticate(connection, request_id, request, delay_ms))
        self._auth_tasks.add(task)
        self._pending_auth[peer] = self._pending_auth.get(peer, 0) + 1
        task.add_done_callback(lambda done: self._finish_authentication(done, peer))
        return []

    def _finish_authentication(self, task: asyncio.Task[None], peer: str) -> None:
        self._auth_tasks.discard(task)
        remaining = self._pending_auth.pop(peer) - 1
        if remaining:
            self._pending_auth[peer] = remaining

    async def authenticate(
        self, connection: Connection, request_id: int, request: Register | Login, delay_ms: int
    ) -> None:
        """Hash or verify the password off the event loop, then let the core decide.

        A check that fails (the hasher throws, the account cannot be read) is answered
        with internal_error, never left to the client's timeout."""
        outbox: list[Outgoing]
        try:
            checked = await self._check_password(request, delay_ms)
        except Exception as error:
            kind = f"{request.OP} check: {type(error).__name__}"
            self.state.failures.report_exception(kind, now_ms(), "%s check failed", request.OP)
            failed = InternalError(f"{request.OP} failed; try again")
            outbox = [Unicast(connection.routing_id, Failure(request_id, failed))]
        else:
            outbox = dispatch(self.state, connection, request_id, checked, now_ms())
        try:
            self.commit_and_send(outbox)
        except StorageError as error:
            if not self._storage_failed.done():
                self._storage_failed.set_exception(error)

    async def watch(self) -> None:
        """Raise the storage failure a login or registration ran into, so the broker stops
        as it does when serving fails."""
        await self._storage_failed

    async def _check_password(self, request: Register | Login, delay_ms: int) -> Request:
        """The request as the core takes it: the new password hashed, or the login checked."""
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        loop = asyncio.get_running_loop()
        if isinstance(request, Register):
            password_hash = await loop.run_in_executor(
                self.hash_pool, self.hasher.hash, request.password
            )
            return NewAccount(request.user, password_hash)
        account = self.state.storage.account(request.user)
        ok = await loop.run_in_executor(
            self.hash_pool,
            self.hasher.verify,
            account.password_hash if account else None,
            request.password,
        )
        return CheckedLogin(request.user, account.name if ok and account else None)

    def commit_and_send(self, outbox: list[Outgoing]) -> None:
        """Commit what the batch stored, then send its replies, new room keys and publications.

        If the commit fails, every request of the batch is answered internal_error
        instead, nothing else is sent, and the `StorageError` goes on: the broker stops
        rather than go on with what it can no longer store."""
        outbox.extend(rotate_keys(self.state))  # once per room a session left in the batch
        if not outbox:
            return
        try:
            self.state.storage.commit()
        except StorageError:
            self._send(refusals(outbox))
            raise
        self._send(seal_batches(outbox))

    def _send(self, items: list[Unicast | Publish]) -> None:
        publisher, router = self._publisher, self._router_now
        for item in items:
            # Two sends, not send_multipart: for small messages its overhead is most of the cost.
            if isinstance(item, Publish):
                publisher.send(item.topic, zmq.SNDMORE)
                publisher.send(item.body)
            else:
                # ROUTER drops a message for a peer that is gone or past its HWM; never blocks.
                router.send(item.routing_id, zmq.SNDMORE)
                router.send(encode_outgoing(item.message))

    async def aclose(self) -> None:
        """Cancel login and register work in flight; log the failures not yet counted."""
        for task in list(self._auth_tasks):
            task.cancel()
        await asyncio.gather(*self._auth_tasks, return_exceptions=True)
        self.state.failures.flush(now_ms())


def refusals(outbox: list[Outgoing]) -> list[Unicast | Publish]:
    """The replies of ``outbox`` with every result turned into internal_error."""
    failed = InternalError("the broker could not store this; try again shortly")
    replies: list[Unicast | Publish] = []
    for item in outbox:
        if isinstance(item, Unicast) and isinstance(item.message, Result):
            replies.append(Unicast(item.routing_id, Failure(item.message.request_id, failed)))
        elif isinstance(item, Unicast) and isinstance(item.message, Failure):
            replies.append(item)
    return replies


HASHING_NICENESS = 10


def _yield_to_the_loop() -> None:
    """Run this password-hashing thread at a lower priority than the event loop.

    On Linux the nice value belongs to each thread (and to the threads it starts), so a
    burst of logins takes only the CPU the chat leaves over; elsewhere this does nothing.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)


def _client_key(frame: zmq.Frame) -> str:
    """The CURVE public key (Z85) the ZAP handler vouched for on this frame's connection."""
    return str(frame.get("User-Id"))


def unpredictable_routing_ids() -> None:
    """Seed the C library's ``rand``, from which libzmq picks where a ROUTER starts numbering
    the peers that choose no routing id of their own.

    Unseeded, that start is the same in every process (``0x6b8b4567``), so a stranger
    could claim the ids the next honest peers will get; libzmq 4.3.5 aborts the process
    when it hands out an id a peer already claimed. Call before creating the ROUTER.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).srand(ctypes.c_uint(secrets.randbits(32)))


def _peer_address(frame: zmq.Frame) -> str:
    """The peer's IP address; IPv4 peers of a dual-stack socket read as plain IPv4."""
    try:
        address = str(frame.get("Peer-Address"))
    except zmq.ZMQError:
        return "unknown"
    try:
        mapped = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(mapped, ipaddress.IPv6Address) and mapped.ipv4_mapped is not None:
        return str(mapped.ipv4_mapped)
    return address


async def run_broker(
    config: BrokerConfig,
    stop: asyncio.Event,
    on_ready: Callable[[Endpoints], None] = lambda endpoints: None,
) -> None:
    """Run a broker until ``stop`` is set; closes sockets, context and database on the way out."""
    keys = load_or_create_keys(config.resolved_data_dir)
    context = zmq.asyncio.Context()
    with contextlib.suppress(zmq.ZMQError):  # a libzmq without the option keeps its default
        context.set(ZMQ_ZERO_COPY_RECV, 0)
    zap = ZapHandler(zmq.Context.shadow(context.underlying))
    zap.start()
    unpredictable_routing_ids()
    router = context.socket(zmq.ROUTER)
    publisher = context.socket(zmq.PUB)
    key_service: KeyService | None = None
    storage = None
    hash_pool = ThreadPoolExecutor(
        config.hash_workers, thread_name_prefix="zchat-hash", initializer=_yield_to_the_loop
    )
    try:
        for socket in (router, publisher):
            _configure(socket)
        for socket in (router, publisher):
            _make_curve_server(socket, keys)
        router.setsockopt(zmq.MAXMSGSIZE, SOCKET_MAXMSGSIZE)
        publisher.setsockopt(zmq.SNDHWM, config.pub_hwm)
        _bind(router, config.host, config.port)
        _bind(publisher, config.host, config.pub_port)
        key_service = KeyService(config.host, config.key_port, keys)
        endpoints = Endpoints(
            config.host,
            _bound_port(router),
            _bound_port(publisher),
            key_service.port,
            keys,
        )

        storage = SqliteStorage(config.database_path)
        settings = BrokerSettings(
            pub_port=endpoints.pub_port,
            lease_ms=config.lease_ms,
            ping_interval_ms=config.lease_ms // 3,
            limits=config.limits,
        )
        topics = topic_key(keys.secret.encode("ascii"))  # the same topics after a restart
        state = load_state(BrokerState(storage, settings, topic_key=topics))
        shell = BrokerShell(state, router, publisher, PasswordHasher(), hash_pool)
        key_service.start()
        on_ready(endpoints)
        async with asyncio.TaskGroup() as tasks:
            serving = tasks.create_task(shell.serve())
            background = [
                tasks.create_task(shell.expire_leases()),
                tasks.create_task(shell.watch()),
                tasks.create_task(shell.announce()),
                tasks.create_task(shell.prune_history(config.retention)),
            ]
            await stop.wait()
            serving.cancel()
            for task in background:
                task.cancel()
        await shell.aclose()
    finally:
        hash_pool.shutdown(wait=True, cancel_futures=True)
        router.close(linger=1000)
        publisher.close(linger=1000)
        zap.stop()
        context.term()
        if key_service is not None:
            key_service.stop()
        if storage is not None:
            storage.close()
