"""Broker public keys as people handle them: checking their Z85 text, and the short
fingerprint they compare."""

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


Z85_ALPHABET = (
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
)
_Z85_VALUE = {char: value for value, char in enumerate(Z85_ALPHABET)}
Z85_KEY_CHARS = 40


def is_z85_key(text: str) -> bool:
    """True for 40 Z85 characters that decode to a 32-byte Curve25519 key.

    Each group of five characters is a base-85 number that must fit in four bytes.
    """
    if len(text) != Z85_KEY_CHARS or any(char not in _Z85_VALUE for char in text):
        return False
    for start in range(0, Z85_KEY_CHARS, 5):
        value = 0
        for char in text[start : start + 5]:
            value = value * 85 + _Z85_VALUE[char]
        if value >= 2**32:
            return False
    return True
