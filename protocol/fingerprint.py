"""The short fingerprint people compare to check a broker's public key."""

from __future__ import annotations

import base64
import hashlib

FINGERPRINT_BYTES = 10


def key_fingerprint(public_key_z85: str) -> str:
    """``ABCD-EFGH-IJKL-MNOP``: SHA-256 of the Z85 key text, first 80 bits, base32.

    Short enough to read aloud over the phone; 80 bits is far beyond what a
    forger could match by trying keys.
    """
    digest = hashlib.sha256(public_key_z85.encode("ascii")).digest()[:FINGERPRINT_BYTES]
    text = base64.b32encode(digest).decode("ascii")
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))
