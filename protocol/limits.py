"""Protocol constants: version, sizes and timings every peer must agree on."""

from __future__ import annotations

PROTOCOL_VERSION = 1
"""Sent as ``v`` in every request, reply and event."""

MAX_NAME_CHARS = 32
"""Longest user or room name, in characters."""

MAX_TEXT_BYTES = 4096
"""Longest message text, in UTF-8 bytes."""

MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024

MAX_FRAME_BYTES = 64 * 1024
"""Largest frame a peer accepts; anything bigger is refused before decoding."""

PING_INTERVAL_MS = 5_000
"""How often a logged-in client pings over its DEALER socket."""

LEASE_MS = 15_000
"""A session not heard from for this long is expired (three missed pings)."""

MAX_SEQ = 2**63 - 1
"""Sequence numbers and message ids are signed 64-bit on the wire and in storage."""

MAX_HISTORY_PAGE = 500
"""Most events one `history` reply or `join` snapshot carries."""

MAX_MSG_ID_CHARS = 64
"""A client's message id (for deduplicating retried sends): 1-64 printable ASCII characters."""

MAX_TOKEN_CHARS = 128

ANNOUNCE_INTERVAL_MS = 200
"""How often the broker announces the latest seq of each room that had traffic lately."""

KEY_BYTES = 32
"""Room keys are ChaCha20-Poly1305 keys."""

NONCE_BYTES = 12

TOPIC_BYTES = 16
"""Every room topic is this long (a truncated HMAC), so no topic is a prefix of another."""

MIN_BOX_BYTES = 64
"""The smallest padded box; boxes are padded to powers of two from here."""

MAX_BATCH_EVENTS = 256
"""Most events one publication carries (a batch of one room's consecutive events)."""

MAX_KID = 2**32 - 1
"""Key ids are sealed into the associated data as 4 bytes."""

KEY_PORT_OFFSET = 2
"""The key service listens on the request port + 2 unless told otherwise (5000 -> 5002)."""

DEFAULT_ROOM = "default"
"""A room that always exists."""
