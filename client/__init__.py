"""The zchat client: an asyncio library over ZeroMQ, and the `zchat-client` terminal app.

`ChatClient` is the entry point for programs (the terminal app, bots, load
testers); everything it raises is a `zchat.protocol.ZchatError`.
"""

from .errors import BrokerUnreachable, ClientClosed, ClientError, RequestTimedOut
from .events import ClientEvent, Disconnected, JoinedRoom, RoomInfo
from .replies import ServerInfo
from .session import ChatClient

__all__ = [
    "BrokerUnreachable",
    "ChatClient",
    "ClientClosed",
    "ClientError",
    "ClientEvent",
    "Disconnected",
    "JoinedRoom",
    "RequestTimedOut",
    "RoomInfo",
    "ServerInfo",
]
