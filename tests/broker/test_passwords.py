"""The password hasher: a login for a name that does not exist costs a full Argon2 check."""

from __future__ import annotations

import argon2

from zchat.broker.passwords import PasswordHasher, dummy_hash


def test_the_dummy_hash_has_the_real_parameters_and_matches_nothing() -> None:
    hasher = argon2.PasswordHasher()
    dummy = dummy_hash(hasher)
    assert argon2.extract_parameters(dummy) == argon2.extract_parameters(hasher.hash("x" * 8))
    assert dummy != dummy_hash(hasher), "its salt is random"
    assert not PasswordHasher().verify(None, "not a real password")


def test_a_stored_hash_checks_its_password() -> None:
    hasher = PasswordHasher()
    stored = hasher.hash("correct horse")
    assert hasher.verify(stored, "correct horse")
    assert not hasher.verify(stored, "wrong horse")
