"""The broker's ZAP handler: admits every CURVE client and names it by its public key.

With a ZAP handler bound in the context, libzmq attaches the ``User-Id`` it answers
to every message of the connection; this one answers the client's public key (Z85).
A peer may choose its routing id, but not a key it has no secret for, so the core
binds each session to that key (`Connection.client_key`). Accounts, not keys, say
who a user is: any key is admitted, as before.

It runs on a thread of its own (ZAP requests come in during handshakes, which a
flood of connections makes many of) and answers from the request alone.
"""

from __future__ import annotations

import logging
import threading

import zmq
from zmq.utils import z85

logger = logging.getLogger(__name__)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_VERSION = b"1.0"
CURVE_KEY_BYTES = 32


def zap_reply(request: list[bytes]) -> list[bytes]:
    """The ZAP reply (RFC 27) to one request, routing envelope included.

    Request frames after the envelope: version, request id, domain, address, identity,
    mechanism, credentials...; a CURVE request's one credential is the 32-byte key.
    """
    split = request.index(b"") + 1
    envelope, body = request[:split], request[split:]
    if len(body) < 6 or body[0] != ZAP_VERSION:
        return [*envelope, ZAP_VERSION, body[1] if len(body) > 1 else b"", b"400", b"", b"", b""]
    request_id, mechanism, credentials = body[1], body[5], body[6:]
    if mechanism != b"CURVE" or len(credentials) != 1 or len(credentials[0]) != CURVE_KEY_BYTES:
        return [*envelope, ZAP_VERSION, request_id, b"400", b"CURVE only", b"", b""]
    user_id = z85.encode(credentials[0])
    return [*envelope, ZAP_VERSION, request_id, b"200", b"OK", user_id, b""]


class ZapHandler:
    """A thread answering ZAP requests for every CURVE socket of ``context``.

    Start it before any CURVE server socket binds, stop it after they are closed.
    """

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]]) -> None:
        self._handler = context.socket(zmq.ROUTER)
        self._handler.setsockopt(zmq.LINGER, 0)
        self._handler.bind(ZAP_ENDPOINT)
        self._stop = context.socket(zmq.PAIR)
        self._stop.setsockopt(zmq.LINGER, 0)
        self._stop_endpoint = f"inproc://zchat-zap-stop-{id(self)}"
        self._stop.bind(self._stop_endpoint)
        self._context = context
        self._thread = threading.Thread(target=self._run, name="zchat-zap", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        stopped = self._context.socket(zmq.PAIR)
        stopped.setsockopt(zmq.LINGER, 0)
        stopped.connect(self._stop_endpoint)
        poller = zmq.Poller()
        poller.register(self._handler, zmq.POLLIN)
        poller.register(stopped, zmq.POLLIN)
        try:
            while True:
                ready = dict(poller.poll())
                if stopped in ready:
                    return
                request = self._handler.recv_multipart()
                try:
                    reply = zap_reply(request)
                except (ValueError, IndexError):  # no envelope: not a ZAP request at all
                    logger.warning("ignored a malformed ZAP request")
                    continue
                self._handler.send_multipart(reply)
        finally:
            stopped.close()
            self._handler.close()

    def stop(self) -> None:
        """Stop the thread and close its sockets."""
        if self._thread.is_alive():
            self._stop.send(b"")
            self._thread.join()
        else:
            self._handler.close()
        self._stop.close()
