"""One load worker process: many simulated members on one ``zmq.Poller`` loop.

Each member is a real protocol client: its own DEALER and SUB over CurveZMQ,
``hello``, ``login`` (``register`` first if the account is new), ``join``
(subscribed before), pings to keep its lease, and ``send``. A member counts a
delivery only when its own SUB socket received the room event and its seq
was the next one; a sample is opened with the room key for latency and
integrity. Gaps are fetched with ``history`` at the end.

The loop is plain ``zmq.Poller`` rather than asyncio: with hundreds of sockets
per process it costs a fraction as much per message, which keeps the load
generator off the critical path.

The coordinator drives the phases over a pipe (see `cli`): log in and join,
wait for the common start time, run, settle the sends in flight, learn each
room's final seq, drain, repair gaps, report.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import secrets
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, ClassVar

import msgpack
import zmq

from zchat.client.sockets import (
    HEARTBEAT_IVL_MS,
    HEARTBEAT_TIMEOUT_MS,
    CurveKeys,
    make_curve_client,
    random_routing_id,
)
from zchat.protocol import (
    CannotOpen,
    Event,
    Hello,
    Join,
    Login,
    Logout,
    Ping,
    Register,
    RoomCipher,
    RoomEventKind,
    RoomKey,
    SealedBatch,
    ZchatError,
    decode_incoming,
    encode_request,
)
from zchat.protocol.codec import Reply
from zchat.protocol.limits import PING_INTERVAL_MS

from .config import LoadConfig, MemberSpec
from .stats import Tally, WorkerResult, record_us

log = logging.getLogger(__name__)

RETRY_CODES = frozenset({"limit_reached", "rate_limited", "internal_error"})
"""Errors after which a login or send is tried again a little later (and counted);
``too_many_attempts`` lasts minutes, so it fails the member instead."""
RETRY_DELAY_S = 0.25
PROGRESS_EVERY_S = 0.25
SETTLE_TIMEOUT_S = 10.0
LOGOUT_TIMEOUT_S = 3.0
HISTORY_IN_FLIGHT = 32
HISTORY_MAX_REQUESTS = 2_000
DRAIN_BATCH = 256
"""Most messages taken from one socket per poll, so one busy socket cannot starve the rest."""
ANNOUNCEMENT_MAX_BYTES = 10


class Phase:
    NEW = 0
    HELLO = 1
    LOGIN = 2
    REGISTER = 3
    JOIN = 4
    READY = 5
    FAILED = 6
    STORM_WAIT = 7
    """A login-storm client, connected, waiting for the storm."""
    LOGGED_OUT = 8


class Member:
    """One simulated client's sockets and stream position."""

    __slots__ = (
        "awaiting_echo",
        "ciphers",
        "dealer",
        "decrypt_countdown",
        "early",
        "gaps",
        "in_flight",
        "join_seq",
        "last_request",
        "last_seq",
        "login_started",
        "max_acked",
        "next_id",
        "pending",
        "phase",
        "received",
        "recovered",
        "retry_at",
        "room",
        "spec",
        "sub",
        "topic",
    )

    def __init__(self, spec: MemberSpec, dealer: zmq.Socket[bytes], sub: zmq.Socket[bytes]) -> None:
        self.spec = spec
        self.dealer = dealer
        self.sub = sub
        self.room = spec.room
        self.topic = b""
        """The room's topic, from the join reply (only members learn it)."""
        self.phase = Phase.NEW
        self.next_id = 1
        self.pending: dict[int, str] = {}
        self.ciphers: dict[int, RoomCipher] = {}
        self.join_seq: int | None = None
        self.last_seq = 0
        self.received = 0
        self.recovered = 0
        self.gaps: list[tuple[int, int]] = []
        self.early: list[SealedBatch] = []
        self.in_flight = 0
        self.max_acked = 0
        self.awaiting_echo: deque[int] = deque()
        """With an echo window: seqs of own acked messages not yet seen on the SUB."""
        self.last_request = 0.0
        self.login_started = 0.0
        self.retry_at = 0.0
        self.decrypt_countdown = 1


@dataclass(slots=True)
class Schedule:
    """The run's common start and end, on this process's monotonic clock."""

    start: float
    end: float


def raise_fd_limit() -> None:
    """Lift the soft open-files limit to the hard one (each member holds several fds)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def message_text(sent_us: int, index: int, size: int) -> str:
    """A message of exactly ``size`` ASCII bytes that carries its send time and sender."""
    head = f"{sent_us} {index} "
    return head + "." * (size - len(head))


def read_text(text: str, size: int) -> tuple[int, int] | None:
    """(send time in microseconds, sender index) from a `message_text`, or None if altered."""
    parts = text.split(" ", 2)
    if len(parts) != 3 or len(text) != size or parts[2].strip(".") != "":
        return None
    try:
        return int(parts[0]), int(parts[1])
    except ValueError:
        return None


class Worker:
    """Runs the members of one process through the phases the coordinator calls."""

    def __init__(
        self,
        control: Connection,
        config: LoadConfig,
        specs: list[MemberSpec],
        host: str,
        port: int,
        server_key: str,
        total_chatters: int,
        login_slots: int,
    ) -> None:
        self.control = control
        self.config = config
        self.host = host
        self.endpoint = f"tcp://{host}:{port}"
        self.tally = Tally()
        self.context = zmq.Context(io_threads=1)
        self.context.set(zmq.MAX_SOCKETS, max(1024, 2 * len(specs) + 64))
        self.poller = zmq.Poller()
        self.by_socket: dict[zmq.Socket[bytes], Member] = {}
        self.members: list[Member] = []
        for spec in specs:
            keys = CurveKeys.for_broker(server_key)
            dealer = self._socket(zmq.DEALER, keys)
            sub = self._socket(zmq.SUB, keys)
            member = Member(spec, dealer, sub)
            self.members.append(member)
            self.by_socket[dealer] = member
            self.by_socket[sub] = member
            self.poller.register(dealer, zmq.POLLIN)
            self.poller.register(sub, zmq.POLLIN)
        self.poller.register(control.fileno(), zmq.POLLIN)
        self.chatters = [m for m in self.members if m.room is not None]
        self.storm = [m for m in self.members if m.room is None]
        self.rate = (
            (config.rate or 0.0) * len(self.chatters) / total_chatters if total_chatters else 0.0
        )
        self.login_slots = max(1, login_slots)
        self.login_queue: deque[Member] = deque()
        self.logins_waiting = 0
        self.retries: list[Member] = []
        self.ping_interval_s = PING_INTERVAL_MS / 1000
        self.history_queue: deque[tuple[Member, int, int]] = deque()
        self.history_in_flight = 0
        self.stopping = False
        self.storm_started = False
        self.sending = False
        self.schedule: Schedule | None = None
        self.final_seqs: dict[str, int] | None = None
        self.snap_start: tuple[int, int, int] | None = None
        self.snap_end: tuple[int, int, int] | None = None
        self.phase_name = "login"
        self._last_progress = 0.0
        self._last_ping_sweep = 0.0
        self._decrypt_every = config.decrypt_interval
        self._run_tag = secrets.token_hex(4)
        """Makes this run's msg_ids new to a broker that kept an earlier run's messages."""
        self._size = config.size

    def _socket(self, kind: int, keys: CurveKeys) -> zmq.Socket[bytes]:
        socket: zmq.Socket[bytes] = self.context.socket(kind)
        make_curve_client(socket, keys)
        if kind == zmq.DEALER:
            socket.setsockopt(zmq.ROUTING_ID, random_routing_id())
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        if kind == zmq.SUB:
            socket.setsockopt(zmq.RCVHWM, 0)
        return socket

    # --- requests ------------------------------------------------------------------

    def _request(self, member: Member, op: str, frame_for: Callable[[int], bytes]) -> None:
        request_id = member.next_id
        member.next_id += 1
        member.pending[request_id] = op
        member.last_request = time.monotonic()
        member.dealer.send(frame_for(request_id), zmq.NOBLOCK)

    def _send_message(self, member: Member) -> None:
        request_id = member.next_id
        member.next_id += 1
        member.pending[request_id] = "send"
        text = message_text(time.time_ns() // 1000, member.spec.index, self._size)
        # A msg_id like the real client's, so the broker does its deduplication work too.
        msg_id = f"{self._run_tag}.{member.spec.index:x}.{request_id:x}"
        args = {"room": member.room, "text": text, "msg_id": msg_id}
        frame = msgpack.packb({"v": 1, "id": request_id, "op": "send", "args": args})
        member.last_request = time.monotonic()
        member.in_flight += 1
        self.tally.sent += 1
        member.dealer.send(frame, zmq.NOBLOCK)

    def _start_login(self, member: Member) -> None:
        member.phase = Phase.LOGIN
        if not member.login_started:
            member.login_started = time.monotonic()
        self.logins_waiting += 1
        login = Login(user=member.spec.user, password=self.config.password)
        self._request(member, "login", lambda rid: encode_request(rid, login))

    def _pump_logins(self) -> None:
        while self.login_queue and self.logins_waiting < self.login_slots:
            self._start_login(self.login_queue.popleft())

    # --- replies -------------------------------------------------------------------

    def _on_dealer(self, member: Member) -> None:
        for _ in range(DRAIN_BATCH):
            try:
                frame = member.dealer.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                incoming = decode_incoming(frame)
            except ZchatError:
                # An event this version does not know (the protocol grows), or garbage.
                continue
            if isinstance(incoming, Reply):
                self._on_reply(member, incoming)
            else:
                self._on_event(member, incoming)

    def _on_event(self, member: Member, event: Event) -> None:
        if isinstance(event, RoomKey) and member.room is not None:
            member.ciphers[event.kid] = RoomCipher(event.kid, event.key)

    def _on_reply(self, member: Member, reply: Reply) -> None:
        op = member.pending.pop(reply.request_id, None) if reply.request_id is not None else None
        if op is None:
            return
        error = reply.error
        code = str(error.code) if error is not None else ""
        result = reply.result or {}
        if op == "send":
            member.in_flight -= 1
            if error is None:
                self.tally.accepted += 1
                seq = result.get("seq", 0)
                member.max_acked = max(member.max_acked, seq)
                if self.config.echo_window:
                    if seq > member.last_seq:
                        member.awaiting_echo.append(seq)
                    elif self.sending:
                        self._send_message(member)
                elif self.config.saturate and self.sending:
                    self._send_message(member)
            else:
                self.tally.send_errors[code] += 1
                if self.config.saturate and self.sending:
                    member.retry_at = time.monotonic() + RETRY_DELAY_S
                    self.retries.append(member)
            return
        handler = self._REPLY_HANDLERS.get(op)
        if handler is not None:
            handler(self, member, result, code)

    def _on_hello(self, member: Member, result: dict[str, Any], code: str) -> None:
        if code:
            self._fail(member, "hello:" + code)
            return
        self.ping_interval_s = result.get("ping_interval_ms", PING_INTERVAL_MS) / 1000
        member.sub.connect(f"tcp://{self.host}:{result['pub_port']}")
        self.login_queue.append(member)

    def _on_login(self, member: Member, result: dict[str, Any], code: str) -> None:
        self.logins_waiting -= 1
        if not code:
            if member.room is None:
                if not self.storm_started:
                    # Before the run: the account exists now; log out and wait for the storm.
                    self._request(member, "logout", lambda rid: encode_request(rid, Logout()))
                    member.phase = Phase.STORM_WAIT
                    member.login_started = 0.0
                    return
                self.tally.logged_in += 1
                record_us(
                    self.tally.storm_latency, int((time.monotonic() - member.login_started) * 1e6)
                )
                member.phase = Phase.READY
                return
            self.tally.logged_in += 1
            member.phase = Phase.JOIN
            join = Join(room=member.room)
            self._request(member, "join", lambda rid: encode_request(rid, join))
            return
        if code == "bad_credentials" and self.config.register and member.phase == Phase.LOGIN:
            member.phase = Phase.REGISTER
            self.logins_waiting += 1
            register = Register(user=member.spec.user, password=self.config.password)
            self._request(member, "register", lambda rid: encode_request(rid, register))
        elif code in RETRY_CODES:
            self.tally.login_errors[code] += 1
            member.retry_at = time.monotonic() + RETRY_DELAY_S
            self.retries.append(member)
        else:
            self._fail(member, code)

    def _on_register(self, member: Member, result: dict[str, Any], code: str) -> None:
        self.logins_waiting -= 1
        if code in RETRY_CODES:
            self.tally.login_errors["register:" + code] += 1
            member.phase = Phase.LOGIN
            member.retry_at = time.monotonic() + RETRY_DELAY_S
            self.retries.append(member)
            return
        if code and code != "name_taken":
            self._fail(member, "register:" + code)
            return
        # Registered (or someone else did meanwhile): log in, this time for good.
        if not code:
            self.tally.registered += 1
        self.logins_waiting += 1
        member.phase = Phase.REGISTER  # a second bad_credentials fails instead of looping
        login = Login(user=member.spec.user, password=self.config.password)
        self._request(member, "login", lambda rid: encode_request(rid, login))

    def _on_join(self, member: Member, result: dict[str, Any], code: str) -> None:
        if code:
            self._fail(member, "join:" + code)
            return
        member.topic = result["topic"]
        member.sub.setsockopt(zmq.SUBSCRIBE, member.topic)  # what it misses shows as a gap
        member.ciphers[result["kid"]] = RoomCipher(result["kid"], result["key"])
        member.join_seq = member.last_seq = result["seq"]
        member.phase = Phase.READY
        self.tally.joined += 1
        early, member.early = member.early, []
        for sealed in early:
            if sealed.last_seq > member.last_seq:
                self._accept(member, sealed)

    def _on_history(self, member: Member, result: dict[str, Any], code: str) -> None:
        self.history_in_flight -= 1
        if code:
            if code == "unknown_op":
                self.tally.history_unavailable = True
            else:
                self.tally.send_errors["history:" + code] += 1
            return
        low, high = member.gaps[0] if member.gaps else (0, -1)
        newest = low - 1
        for event in result.get("events", []):
            seq = event[0]
            if low <= seq <= high:
                member.recovered += 1
                newest = max(newest, seq)
        if member.gaps:
            member.gaps.pop(0)
        if result.get("more") and newest < high:
            member.gaps.insert(0, (newest + 1, high))
        if member.gaps:
            self.history_queue.append((member, *member.gaps[0]))

    def _on_other(self, member: Member, result: dict[str, Any], code: str) -> None:
        if member.phase == Phase.LOGGED_OUT:
            return

    def _on_logout(self, member: Member, result: dict[str, Any], code: str) -> None:
        if member.phase != Phase.STORM_WAIT:
            member.phase = Phase.LOGGED_OUT

    _REPLY_HANDLERS: ClassVar[dict[str, Callable[[Worker, Member, dict[str, Any], str], None]]] = {
        "hello": _on_hello,
        "login": _on_login,
        "register": _on_register,
        "join": _on_join,
        "history": _on_history,
        "ping": _on_other,
        "logout": _on_logout,
    }

    def _fail(self, member: Member, code: str) -> None:
        if code:
            self.tally.login_errors[code] += 1
        member.phase = Phase.FAILED

    # --- publications --------------------------------------------------------------

    def _on_sub(self, member: Member) -> None:
        sub = member.sub
        for _ in range(DRAIN_BATCH):
            # Frame by frame: recv_multipart costs twice as much, and this loop is the
            # generator's hottest (every member receives every publication of its room).
            try:
                topic = sub.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if not topic.more:
                continue
            frame = sub.recv(copy=False)
            if frame.more:  # not a publication: skip the rest of the message
                while sub.recv(copy=False).more:
                    pass
                continue
            if topic.bytes != member.topic:
                continue
            body = frame.bytes
            if len(body) <= ANNOUNCEMENT_MAX_BYTES:
                continue  # a latest-seq announcement: the tail is checked at the end instead
            try:
                sealed = SealedBatch.parse(body)
            except CannotOpen:
                self.tally.corrupt += 1
                continue
            if member.join_seq is None:
                member.early.append(sealed)
            elif sealed.last_seq > member.last_seq:
                self._accept(member, sealed)
            elif sealed.last_seq > member.join_seq:
                self.tally.duplicates += 1

    def _accept(self, member: Member, sealed: SealedBatch) -> None:
        """Count the batch's events after the member's last seq, and open a sample of them."""
        if sealed.seq > member.last_seq + 1:
            member.gaps.append((member.last_seq + 1, sealed.seq - 1))
            self.tally.gaps += 1
        first = max(sealed.seq, member.last_seq + 1)
        last = sealed.last_seq
        new = last - first + 1
        member.last_seq = last
        member.received += new
        self.tally.deliveries += new
        self.tally.publications += 1
        awaiting = member.awaiting_echo
        if awaiting and awaiting[0] <= last:
            while awaiting and awaiting[0] <= last:
                awaiting.popleft()
                if self.sending:
                    self._send_message(member)
        member.decrypt_countdown -= new
        if member.decrypt_countdown > 0:
            return
        member.decrypt_countdown = self._decrypt_every
        cipher = member.ciphers.get(sealed.kid)
        if cipher is None:
            self.tally.unopened += 1
            return
        try:
            events = cipher.open(member.topic, sealed, member.room or "")
        except CannotOpen:
            self.tally.corrupt += 1
            return
        self.tally.decrypted += 1
        now_us = time.time_ns() // 1000
        for event in events:
            if event.seq < first or event.kind is not RoomEventKind.MESSAGE:
                continue
            header = read_text(event.text, self._size)
            if header is None:
                self.tally.corrupt += 1
                continue
            record_us(self.tally.latency, now_us - header[0])

    # --- the loop ------------------------------------------------------------------

    def poll(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for anything, handle it, and run due timers."""
        ready = self.poller.poll(max(0, int(timeout_s * 1000)))
        for socket, _ in ready:
            member = self.by_socket.get(socket)
            if member is None:
                self._on_control()
            elif socket is member.sub:
                self._on_sub(member)
            else:
                self._on_dealer(member)
        now = time.monotonic()
        if self.retries:
            self._run_retries(now)
        if now - self._last_ping_sweep >= 1.0:
            self._last_ping_sweep = now
            self._ping_idle(now)
        if now - self._last_progress >= PROGRESS_EVERY_S:
            self._last_progress = now
            self.report_progress()

    def _run_retries(self, now: float) -> None:
        due = [m for m in self.retries if m.retry_at <= now]
        if not due:
            return
        self.retries = [m for m in self.retries if m.retry_at > now]
        for member in due:
            if member.phase in (Phase.LOGIN, Phase.REGISTER):
                if member.room is None:
                    self._start_login(member)  # the storm does not queue
                else:
                    self.login_queue.appendleft(member)
            elif member.phase == Phase.READY and self.sending:
                self._send_message(member)
        self._pump_logins()

    def _ping_idle(self, now: float) -> None:
        due = now - self.ping_interval_s * 0.8
        for member in self.members:
            if member.phase in (Phase.READY, Phase.JOIN) and member.last_request < due:
                self._request(member, "ping", lambda rid: encode_request(rid, Ping()))

    def _on_control(self) -> None:
        while self.control.poll():
            message = self.control.recv()
            kind = message[0]
            if kind == "stop":
                self.stopping = True
            elif kind == "start":
                offset = time.monotonic() - time.time()
                self.schedule = Schedule(message[1] + offset, message[2] + offset)
            elif kind == "final":
                self.final_seqs = message[1]

    def report_progress(self) -> None:
        self.control.send(
            (
                "progress",
                {
                    "phase": self.phase_name,
                    "logged_in": self.tally.logged_in,
                    "joined": self.tally.joined,
                    "sent": self.tally.sent,
                    "accepted": self.tally.accepted,
                    "deliveries": self.tally.deliveries,
                    "errors": sum(self.tally.send_errors.values())
                    + sum(self.tally.login_errors.values()),
                    "caught_up": self._caught_up_count(),
                },
            )
        )

    def _caught_up_count(self) -> int:
        if self.final_seqs is None:
            return 0
        finals = self.final_seqs
        return sum(
            1
            for m in self.chatters
            if m.phase != Phase.READY or m.last_seq >= finals.get(m.room or "", 0)
        )

    def _wait(self, done: Callable[[], bool], timeout_s: float) -> bool:
        """Run the loop until ``done()`` or the timeout or a stop; True if done."""
        deadline = time.monotonic() + timeout_s
        while not done():
            if self.stopping:
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.poll(min(remaining, 0.1))
        return True

    # --- phases --------------------------------------------------------------------

    def log_in_all(self, timeout_s: float) -> bool:
        for member in self.members:
            member.dealer.connect(self.endpoint)
            member.phase = Phase.HELLO
            self._request(member, "hello", lambda rid: encode_request(rid, Hello()))

        def settled() -> bool:
            self._pump_logins()
            return all(
                m.phase in (Phase.READY, Phase.FAILED, Phase.STORM_WAIT) for m in self.members
            )

        return self._wait(settled, timeout_s)

    def wait_for_start(self) -> bool:
        self.phase_name = "ready"
        return self._wait(lambda: self.schedule is not None, 3600.0)

    def run(self) -> None:
        """Send from the common start to the common end; log the storm in at a third."""
        assert self.schedule is not None
        schedule = self.schedule
        self.phase_name = "run"
        self._wait(
            lambda: time.monotonic() >= schedule.start, schedule.start - time.monotonic() + 1
        )
        self.snap_start = self.tally.snapshot()
        ready = [m for m in self.chatters if m.phase == Phase.READY]
        self.sending = bool(ready) and not self.config.idle
        storm_at = schedule.start + (schedule.end - schedule.start) / 6
        storm_pending = bool(self.storm)
        if self.sending and self.config.saturate:
            for member in ready:
                for _ in range(self.config.window):
                    self._send_message(member)
        interval = 1.0 / self.rate if self.rate else 0.0
        next_send = schedule.start
        turn = 0
        while not self.stopping:
            now = time.monotonic()
            if now >= schedule.end:
                break
            if storm_pending and now >= storm_at:
                storm_pending = False
                self.storm_started = True
                for member in self.storm:
                    if member.phase == Phase.STORM_WAIT:
                        self._start_login(member)
            timeout = schedule.end - now
            if self.sending and interval:
                while next_send <= now:
                    self._send_message(ready[turn])
                    turn = (turn + 1) % len(ready)
                    next_send += interval
                if now - next_send > 1.0:  # far behind: the generator is overloaded
                    next_send = now
                timeout = min(timeout, next_send - now)
            if storm_pending:
                timeout = min(timeout, max(storm_at - now, 0))
            self.poll(min(timeout, 0.1))
        self.snap_end = self.tally.snapshot()
        self.sending = False

    def settle(self) -> dict[str, int]:
        """Wait for the sends in flight; return the newest seq seen or acked per room."""
        self.phase_name = "settle"
        self._wait(lambda: all(m.in_flight <= 0 for m in self.chatters), SETTLE_TIMEOUT_S)
        newest: dict[str, int] = {}
        for member in self.chatters:
            if member.room is not None and member.join_seq is not None:
                newest[member.room] = max(
                    newest.get(member.room, 0), member.max_acked, member.last_seq
                )
        return newest

    def drain(self) -> None:
        """Receive until every member has its room's final seq (or the drain timeout)."""
        self.phase_name = "drain"
        self._wait(lambda: self.final_seqs is not None, 3600.0)
        finals = self.final_seqs or {}
        joined = [m for m in self.chatters if m.join_seq is not None]
        self._wait(
            lambda: all(m.last_seq >= finals.get(m.room or "", 0) for m in joined),
            self.config.drain_timeout_s,
        )

    def repair(self) -> None:
        """Fetch every gap (and missing tail) with ``history``, unless the broker lacks it."""
        self.phase_name = "repair"
        finals = self.final_seqs or {}
        for member in self.chatters:
            if member.join_seq is None:
                continue
            final = finals.get(member.room or "", 0)
            if member.last_seq < final:
                member.gaps.append((member.last_seq + 1, final))
                self.tally.gaps += 1
            if member.gaps:
                self.history_queue.append((member, *member.gaps[0]))

        def done() -> bool:
            while (
                self.history_queue
                and self.history_in_flight < HISTORY_IN_FLIGHT
                and not self.tally.history_unavailable
                and self.tally.history_requests < HISTORY_MAX_REQUESTS
            ):
                member, low, high = self.history_queue.popleft()
                self._request_history(member, low, high)
            return self.history_in_flight == 0 and (
                not self.history_queue
                or self.tally.history_unavailable
                or self.tally.history_requests >= HISTORY_MAX_REQUESTS
            )

        self._wait(done, self.config.drain_timeout_s)

    def _request_history(self, member: Member, low: int, high: int) -> None:
        self.history_in_flight += 1
        self.tally.history_requests += 1
        args = {"room": member.room, "from_seq": low, "to_seq": high}
        self._request(
            member,
            "history",
            lambda rid: msgpack.packb({"v": 1, "id": rid, "op": "history", "args": args}),
        )

    def log_out_all(self) -> None:
        self.phase_name = "logout"
        active = [m for m in self.members if m.phase == Phase.READY]
        for member in active:
            self._request(member, "logout", lambda rid: encode_request(rid, Logout()))
        self._wait(lambda: all(m.phase != Phase.READY for m in active), LOGOUT_TIMEOUT_S)

    def result(self, complete: bool) -> WorkerResult:
        finals = self.final_seqs or {}
        tally = self.tally
        start = self.snap_start or tally.snapshot()
        end = self.snap_end or tally.snapshot()
        expected = received = recovered = 0
        for member in self.chatters:
            if member.join_seq is None:
                continue
            final = finals.get(member.room or "", member.last_seq)
            expected += max(final - member.join_seq, 0)
            received += min(member.received, max(final - member.join_seq, 0))
            recovered += member.recovered
        return WorkerResult(
            members=len(self.members),
            joined=tally.joined,
            logged_in=tally.logged_in,
            registered=tally.registered,
            sent=tally.sent,
            accepted=tally.accepted,
            accepted_in_window=end[1] - start[1],
            deliveries=tally.deliveries,
            deliveries_in_window=end[2] - start[2],
            publications=tally.publications,
            expected=expected,
            received=received,
            recovered=recovered,
            duplicates=tally.duplicates,
            gaps=tally.gaps,
            corrupt=tally.corrupt,
            unopened=tally.unopened,
            decrypted=tally.decrypted,
            history_requests=tally.history_requests,
            history_unavailable=tally.history_unavailable,
            send_errors=dict(tally.send_errors),
            login_errors=dict(tally.login_errors),
            latency=tally.latency.encode() if tally.latency.get_total_count() else b"",
            storm_latency=(
                tally.storm_latency.encode() if tally.storm_latency.get_total_count() else b""
            ),
            complete=complete,
        )

    def close(self) -> None:
        for member in self.members:
            member.dealer.close(linger=0)
            member.sub.close(linger=0)
        self.context.term()


def worker_main(
    control: Connection,
    config: LoadConfig,
    specs: list[MemberSpec],
    host: str,
    port: int,
    server_key: str,
    total_chatters: int,
    login_slots: int,
    log_out: bool,
) -> None:
    """Entry point of a worker process: the phases, each answered over ``control``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator handles Ctrl-C and says stop
    raise_fd_limit()
    worker = None
    try:
        worker = Worker(control, config, specs, host, port, server_key, total_chatters, login_slots)
        complete = worker.log_in_all(config.join_deadline_s)
        worker.report_progress()
        control.send(("joined", complete))
        if complete and worker.wait_for_start():
            worker.run()
        complete = complete and not worker.stopping
        control.send(("settled", worker.settle()))
        worker.drain()
        worker.repair()
        if log_out:
            worker.log_out_all()
        worker.report_progress()
        control.send(("result", worker.result(complete and not worker.stopping)))
    except Exception as exc:
        log.exception("load worker failed")
        with contextlib.suppress(OSError):
            control.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        if worker is not None:
            worker.close()
        control.close()
