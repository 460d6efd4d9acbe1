"""Password hashing with Argon2id (argon2-cffi's RFC 9106 low-memory profile).

Hashing is deliberately slow, so the shell runs these functions on worker
threads (argon2-cffi releases the GIL), never on the event loop.
"""

from __future__ import annotations

import argon2
from argon2.exceptions import InvalidHashError, VerificationError


class PasswordHasher:
    """Hashes new passwords and checks login attempts against stored hashes."""

    def __init__(self) -> None:
        self._argon2 = argon2.PasswordHasher()
        # Checked when the user does not exist, so the reply takes as long either way.
        self._dummy_hash = self._argon2.hash("not a real password")

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
