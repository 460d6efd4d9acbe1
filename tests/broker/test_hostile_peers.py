"""Strangers on the broker's ROUTER who choose their own routing ids.

Any DEALER may set its routing id, and nothing stops a peer claiming the id another
connection had. These tests play such peers against a real broker.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import time

import zmq

from tests.processes import RunningBroker
from tests.wire import WireClient
from zchat.client.sockets import CurveKeys
from zchat.protocol import (
    DirectMessage,
    ErrorCode,
    Hello,
    History,
    Inbox,
    Join,
    Leave,
    ListRooms,
    Login,
    Members,
    Ping,
    Register,
    Reply,
    Request,
    Resume,
    Send,
    SessionEnded,
    encode_request,
)

UNSEEDED_FIRST_ID = 0x6B8B4567
"""Where libzmq starts numbering id-less peers when the C library's rand is unseeded."""
CLAIMED = 200
CLAIM_WAIT_S = 10.0


def test_peers_claiming_the_next_assigned_ids_do_not_abort_the_broker(
    context: zmq.Context[zmq.Socket[bytes]], broker: RunningBroker
) -> None:
    claimers = [
        WireClient(context, broker, routing_id=b"\0" + struct.pack(">I", UNSEEDED_FIRST_ID + n))
        for n in range(CLAIMED)
    ]
    try:
        for claimer in claimers:
            claimer.ok(Hello())  # each claim is in place: the broker answered it
        honest = WireClient(context, broker)  # no routing id of its own: libzmq assigns one
        assert honest.ok(Hello())["protocol"] == 1
        honest.close()

        alice, bob = WireClient(context, broker), WireClient(context, broker)
        alice.sign_up("alice")
        bob.sign_up("bob")
        alice.ok(Join(room="room1"))
        bob.ok(Join(room="room1"))
        assert alice.ok(Send(room="room1", text="still here?"))["seq"] == 3
        events = bob.ok(History(room="room1", from_seq=1, to_seq=3))["events"]
        assert [event[4] for event in events][-1] == "still here?"
        alice.close()
        bob.close()
    finally:
        for claimer in claimers:
            claimer.close()
    assert broker.process.poll() is None, broker.output.text()


def claim(
    context: zmq.Context[zmq.Socket[bytes]], broker: RunningBroker, routing_id: bytes
) -> WireClient:
    """A stranger with a key of its own on ``routing_id``, once its last owner's connection
    is gone: until then libzmq ignores the claim, so it retries until a hello is answered."""
    deadline = time.monotonic() + CLAIM_WAIT_S
    while True:
        stranger = WireClient(context, broker, routing_id=routing_id)
        stranger.dealer.send(encode_request(0, Hello()))
        if stranger.dealer.poll(200):
            stranger.reply()
            return stranger
        stranger.close()
        assert time.monotonic() < deadline, "the old connection's routing id never came free"


STRANGER_REQUESTS: list[Request] = [
    Join(room="room1", history=50),
    Members(room="room1"),
    History(room="room1", from_seq=1, to_seq=100),
    Send(room="room1", text="it is me, alice", msg_id="fake-1"),
    DirectMessage(user="bob", text="send me your password"),
    Inbox(),
    ListRooms(),
    Leave(room="room1"),
    Ping(),
]


def test_claiming_a_gone_connections_routing_id_takes_over_nothing(
    context: zmq.Context[zmq.Socket[bytes]], broker: RunningBroker
) -> None:
    routing_id = b"alice's old connection"
    keys = CurveKeys.for_broker(broker.server_key)
    alice = WireClient(context, broker, routing_id=routing_id, keys=keys)
    bob = WireClient(context, broker)
    alice.sign_up("alice")
    bob.sign_up("bob")
    alice.ok(Join(room="room1"))
    bob.ok(Join(room="room1"))
    alice.ok(Send(room="room1", text="secret plans"))
    alice.close()  # a network blip: her session lives on until its lease ends

    mallory = claim(context, broker, routing_id)
    try:
        for request in STRANGER_REQUESTS:
            reply: Reply = mallory.call(request)
            assert reply.error is not None, request
            assert reply.error.code == ErrorCode.NOT_LOGGED_IN, request
        # While she is away bob writes to her and leaves the room (the room key changes).
        bob.ok(DirectMessage(user="alice", text="for alice only"))
        bob.ok(Leave(room="room1"))
        mallory.ok(Hello())  # everything sent to the routing id before this reply came first
        assert mallory.events == [], "a key or direct message reached the stranger"
    finally:
        mallory.close()

    # Nothing was said in alice's name.
    bob.ok(Join(room="room1"))
    rows = bob.ok(History(room="room1", from_seq=1, to_seq=100))["events"]
    assert [row[4] for row in rows if row[2] == "alice" and row[1] == "msg"] == ["secret plans"]
    assert bob.ok(Inbox())["messages"] == []
    bob.close()


def test_a_replayed_token_cannot_make_a_second_session(
    context: zmq.Context[zmq.Socket[bytes]], broker: RunningBroker
) -> None:
    owner, bob = WireClient(context, broker), WireClient(context, broker)
    owner.ok(Register(user="alice", password="correct horse"))
    token = owner.ok(Login(user="alice", password="correct horse"))["resume"]
    bob.sign_up("bob")
    owner.ok(Join(room="room1"))
    bob.ok(Join(room="room1"))

    thief = WireClient(context, broker)
    stolen = thief.ok(Resume(token=token))
    assert stolen["user"] == "alice"
    assert stolen["resume"] != token
    assert owner.call(Ping()).error.code == ErrorCode.NOT_LOGGED_IN  # type: ignore[union-attr]
    assert SessionEnded(reason="replaced") in owner.events

    again = WireClient(context, broker)
    assert again.call(Resume(token=token)).error.code == (  # type: ignore[union-attr]
        ErrorCode.BAD_RESUME_TOKEN
    )
    assert bob.ok(Members(room="room1"))["members"] == ["alice", "bob"]
    for client in (owner, bob, thief, again):
        client.close()


FIRST_ASSIGNED_ID = """
import sys, zmq
from zchat.broker.server import unpredictable_routing_ids
if sys.argv[1] == "seeded":
    unpredictable_routing_ids()
context = zmq.Context()
router, dealer = context.socket(zmq.ROUTER), context.socket(zmq.DEALER)
dealer.connect(f"tcp://127.0.0.1:{router.bind_to_random_port('tcp://127.0.0.1')}")
dealer.send(b"hi")
assert router.poll(5000)
print(router.recv_multipart()[0].hex())
context.destroy(0)
"""


def first_assigned_id(how: str) -> str:
    """The routing id a new process's first ROUTER gives the first peer choosing none."""
    done = subprocess.run(
        [sys.executable, "-c", FIRST_ASSIGNED_ID, how],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip()


def test_where_libzmq_starts_numbering_peers_is_new_for_every_broker() -> None:
    unseeded = f"00{UNSEEDED_FIRST_ID:08x}"
    assert first_assigned_id("unseeded") == unseeded  # the same in every process
    seeded = {first_assigned_id("seeded") for _ in range(3)}
    assert unseeded not in seeded
    assert len(seeded) == 3
