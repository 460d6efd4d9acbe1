"""The ZAP handler's answers (RFC 27), without sockets: every CURVE key admitted by name."""

from __future__ import annotations

import zmq
from zmq.utils import z85

from zchat.broker.zap import zap_reply

ENVELOPE = [b"peer", b""]


def request(mechanism: bytes, *credentials: bytes, version: bytes = b"1.0") -> list[bytes]:
    return [*ENVELOPE, version, b"7", b"", b"192.0.2.1", b"", mechanism, *credentials]


def test_a_curve_client_is_admitted_and_named_by_its_public_key() -> None:
    public, _ = zmq.curve_keypair()
    reply = zap_reply(request(b"CURVE", z85.decode(public)))
    assert reply == [*ENVELOPE, b"1.0", b"7", b"200", b"OK", public, b""]


def test_anything_but_curve_with_one_key_is_refused() -> None:
    for refused in (
        request(b"NULL"),
        request(b"PLAIN", b"user", b"password"),
        request(b"CURVE", b"short"),
        request(b"CURVE", b"k" * 32, b"k" * 32),
    ):
        assert zap_reply(refused)[len(ENVELOPE) + 2] == b"400", refused


def test_another_zap_version_is_refused() -> None:
    assert zap_reply(request(b"CURVE", b"k" * 32, version=b"2.0"))[len(ENVELOPE) + 2] == b"400"
