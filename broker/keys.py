"""The broker's CurveZMQ key pair, made on first start and kept in the data directory.

The secret key file is created with mode 0600 and never read into a log line;
the public key and its fingerprint are what the broker shows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from zchat.protocol.fingerprint import key_fingerprint

PUBLIC_KEY_FILE = "broker.key"
SECRET_KEY_FILE = "broker.key_secret"  # noqa: S105 - a file name


class KeyFileError(Exception):
    """The key files are unreadable, malformed, or readable by others."""


@dataclass(frozen=True, slots=True)
class BrokerKeys:
    """Z85-encoded (40 characters) Curve25519 keys."""

    public: str
    secret: str = field(repr=False)

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.public)


def load_or_create_keys(data_dir: Path) -> BrokerKeys:
    """The keys in ``data_dir``, creating them (secret file 0600) if there are none."""
    public_path, secret_path = data_dir / PUBLIC_KEY_FILE, data_dir / SECRET_KEY_FILE
    if not secret_path.exists():
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        public, secret = zmq.curve_keypair()
        _write_new(secret_path, secret, 0o600)
        _write_new(public_path, public, 0o644)
    mode = secret_path.stat().st_mode & 0o777
    if mode & 0o077:
        raise KeyFileError(f"{secret_path} is readable by others (mode {mode:o}); chmod 600 it")
    try:
        secret_text = secret_path.read_text("ascii").strip()
        public_text = zmq.curve_public(secret_text.encode("ascii")).decode("ascii")
    except (OSError, UnicodeError, ValueError, zmq.ZMQError) as exc:
        raise KeyFileError(f"cannot read the broker key from {secret_path}: {exc}") from exc
    if not public_path.exists() or public_path.read_text("ascii").strip() != public_text:
        public_path.write_text(public_text + "\n", "ascii")
    return BrokerKeys(public_text, secret_text)


def _write_new(path: Path, key: bytes, mode: int) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "wb") as file:
        file.write(key + b"\n")
