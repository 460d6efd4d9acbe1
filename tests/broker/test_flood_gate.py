"""The request gate and the key service's ZMTP parser, without sockets."""

from __future__ import annotations

import struct

import pytest

from zchat.broker.gate import RequestGate
from zchat.broker.zmtp_null import GREETING, HANDSHAKE, NullServer, ZmtpError, message


def gate() -> RequestGate:
    return RequestGate(connection_rate=10, connection_burst=5, address_rate=100, address_burst=8)


def test_a_connection_over_its_burst_is_refused_until_tokens_come_back() -> None:
    requests = gate()
    assert all(requests.admit(b"a", "10.0.0.1", 0) for _ in range(5))
    assert not requests.admit(b"a", "10.0.0.1", 0)
    assert requests.dropped == 1
    assert requests.admit(b"a", "10.0.0.1", 100), "10/s: one token after 100 ms"


def test_many_connections_of_one_address_share_its_bucket() -> None:
    requests = gate()
    admitted = [requests.admit(bytes([n]), "10.0.0.1", 0) for n in range(12)]
    assert admitted.count(True) == 8
    assert requests.admit(b"other", "10.0.0.2", 0), "another address is not affected"


def test_refilled_buckets_are_forgotten_and_the_address_is_read_again() -> None:
    requests = gate()
    requests.remember(b"a", "10.0.0.1", 0)
    assert requests.address(b"a", 10) == "10.0.0.1"
    assert requests.address(b"a", 1_000) is None, "a routing id may change hands"
    requests.admit(b"a", "10.0.0.1", 0)
    requests.sweep(10_000)
    assert requests.tracked() == (0, 0)


def client_greeting(mechanism: bytes = b"NULL", major: int = 3) -> bytes:
    return (
        b"\xff" + b"\x00" * 7 + b"\x01\x7f" + bytes([major, 0]) + mechanism.ljust(20, b"\x00")
    ) + b"\x00" * 32


def ready() -> bytes:
    body = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER"
    return bytes([0x04, len(body)]) + body


def test_requests_come_out_of_any_split_of_the_stream() -> None:
    stream = client_greeting() + ready() + message(b"first") + b"\x04\x07\x04PING\x00\x00"
    stream += message(b"second") + b"\x02" + struct.pack(">Q", 300) + b"x" * 300
    whole = NullServer(max_frame=1024, max_buffer=2048).feed(stream)
    assert whole == [b"first", b"second", b"x" * 300]
    parser = NullServer(max_frame=1024, max_buffer=2048)
    trickled = [
        request for byte in range(len(stream)) for request in parser.feed(stream[byte : byte + 1])
    ]
    assert trickled == whole


def test_the_server_greets_as_zmtp_3_null_and_says_it_is_a_router() -> None:
    assert HANDSHAKE.startswith(GREETING) and len(GREETING) == 64
    assert b"Socket-Type" in HANDSHAKE and HANDSHAKE.endswith(b"ROUTER")


@pytest.mark.parametrize(
    "stream",
    [
        b"GET / HTTP/1.1\r\n",  # not ZMTP
        client_greeting(major=2),  # too old
        client_greeting(mechanism=b"CURVE"),  # not the plaintext service
        client_greeting() + b"\x00\xff" + b"x" * 255,  # a frame over the bound
        client_greeting() + b"\x08\x01x",  # flags no ZMTP 3 frame has
        client_greeting() + b"\x00\x01x" * 2000,  # more than is kept
    ],
)
def test_a_peer_breaking_the_rules_or_the_bounds_is_refused(stream: bytes) -> None:
    with pytest.raises(ZmtpError):
        NullServer(max_frame=100, max_buffer=2048).feed(stream)
