"""Errors the client raises on its own, beside the broker's typed error replies.

The tree (all are `zchat.protocol.ZchatError`, so one ``except`` covers a run)::

    ZchatError
    └── ClientError             something went wrong on this side of the wire
        ├── BrokerUnreachable   the broker did not answer ``hello`` in time
        ├── RequestTimedOut     a request got no reply in time
        ├── ConnectionLost      the connection broke while a request was waiting
        └── ClientClosed        the client was closed while a request was waiting
"""

from __future__ import annotations

from zchat.protocol import ZchatError


class ClientError(ZchatError):
    """A failure detected by the client rather than reported by the broker."""


class BrokerUnreachable(ClientError):
    """No broker answered at the address given."""


class RequestTimedOut(ClientError):
    """The broker did not reply to a request within the timeout."""


class ConnectionLost(ClientError):
    """The connection to the broker broke (or was replaced) before the reply came.

    The client reconnects on its own; `ChatClient.send` and `ChatClient.dm` retry
    across this, other requests may be made again once `Reconnected` arrives.
    """


class ClientClosed(ClientError):
    """The client was closed; pending and later requests fail with this."""
