"""Password hashing with Argon2id (argon2-cffi's RFC 9106 low-memory profile).

Hashing is deliberately slow, so the shell runs these functions on worker
threads (argon2-cffi releases the GIL), never on the event loop.
"""

from __future__ import annotations

import base64
import os

import argon2
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.low_level import ARGON2_VERSION


def dummy_hash(hasher: argon2.PasswordHasher) -> str:
    """An encoded hash with ``hasher``'s parameters that no password matches.

    Verifying against it costs what verifying a real hash costs, but making it costs
    nothing: its salt and digest are random bytes, not the result of hashing.
    """

    def b64(size: int) -> str:
        return base64.b64encode(os.urandom(size)).decode("ascii").rstrip("=")

    return (
        f"$argon2{hasher.type.name.lower()}$v={ARGON2_VERSION}"
        f"$m={hasher.memory_cost},t={hasher.time_cost},p={hasher.parallelism}"
        f"${b64(hasher.salt_len)}${b64(hasher.hash_len)}"
    )


class PasswordHasher:
    """Hashes new passwords and checks login attempts against stored hashes."""

    def __init__(self) -> None:
        self._argon2 = argon2.PasswordHasher()
        # Checked when the user does not exist, so the reply takes as long either way.
        self._dummy_hash = dummy_hash(self._argon2)

    def hash(self, password: str) -> str:
        """An encoded Argon2id hash with its own salt and parameters."""
        return self._argon2.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches; with no stored hash, spends the same time and says no."""
        try:
            return self._argon2.verify(stored_hash or self._dummy_hash, password) and (
                stored_hash is not None
            )
        except (VerificationError, InvalidHashError):
            return False
