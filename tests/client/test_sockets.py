"""Socket options every client socket gets: how each notices a dead broker."""

from __future__ import annotations

import zmq
import zmq.asyncio

from zchat.client.sockets import HEARTBEAT_IVL_MS, CurveKeys, open_socket

BROKER_KEY = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"


def test_a_socket_the_application_always_reads_uses_zmtp_heartbeats() -> None:
    context = zmq.asyncio.Context()
    socket = open_socket(context, zmq.DEALER, CurveKeys.for_broker(BROKER_KEY))
    try:
        assert socket.getsockopt(zmq.HEARTBEAT_IVL) == HEARTBEAT_IVL_MS
        assert socket.getsockopt(zmq.MECHANISM) == zmq.CURVE
    finally:
        socket.close(0)
        context.term()


def test_a_socket_that_may_stop_reading_uses_tcp_keepalive_instead() -> None:
    """A full SUB queue hides ZMTP pings; libzmq 4.3 then drops the connection and can
    abort on the reconnect, so the SUB leaves dead-peer detection to the kernel."""
    context = zmq.asyncio.Context()
    socket = open_socket(context, zmq.SUB, CurveKeys.for_broker(BROKER_KEY), heartbeats=False)
    try:
        assert socket.getsockopt(zmq.HEARTBEAT_IVL) == 0
        assert socket.getsockopt(zmq.TCP_KEEPALIVE) == 1
        assert 0 < socket.getsockopt(zmq.TCP_KEEPALIVE_IDLE) <= 30
    finally:
        socket.close(0)
        context.term()
