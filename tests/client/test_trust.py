"""Trusting the broker's key: the known-brokers file, loopback, and every branch of the decision.

All pure except the last tests, which ask a real key service over a socket.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import struct
import sys
import time
from pathlib import Path

import click
import pytest
import zmq
import zmq.asyncio
from zmq.utils import z85

from tests.processes import RunningBroker
from zchat.client import cli, trust
from zchat.client.trust import (
    BadKeyReply,
    BrokerAddress,
    BrokerKeyChanged,
    KeyServiceUnreachable,
    KeyUnavailable,
    KnownBrokersError,
    Trusted,
    UntrustedBroker,
    decide_trust,
    default_known_brokers,
    fetch_server_key,
    key_from_reply,
    loopback_address,
    parse_address,
    parse_known_brokers,
    read_known_brokers,
    remember_key,
    with_pin,
)
from zchat.protocol import RoomKey, encode_error, encode_event, encode_result
from zchat.protocol.errors import NotLoggedIn
from zchat.protocol.fingerprint import is_z85_key, key_fingerprint

# Fixed keys, not fresh ones: they appear in test ids, which parallel workers must agree on.
KEY_A = "v!R>hIy1.yvn?YnJ#lkRRCpzv4dHQ2AvakRCj{}C"
KEY_B = "=4pY+HY.bq15bIjEqRF$v!3cDqa$ZvujEH]a-[2#"
HERE = BrokerAddress.of("chat.example", 5000)
FILE = Path("known_brokers")


# --- keys and addresses -------------------------------------------------------------------


def test_a_z85_key_is_40_characters_that_decode_to_32_bytes() -> None:
    assert is_z85_key(KEY_A)
    assert len(z85.decode(KEY_A)) == 32
    assert not is_z85_key(KEY_A[:-1])
    assert not is_z85_key(KEY_A + "0")
    assert not is_z85_key(KEY_A[:-1] + " ")
    assert not is_z85_key(KEY_A[:-1] + "~")
    assert is_z85_key("0" * 40)
    overflowing = "%nSc1" + "0" * 35  # the first group is 2**32, one past four bytes
    assert not is_z85_key(overflowing)
    assert is_z85_key("%nSc0" + "0" * 35)
    with pytest.raises(struct.error):  # what zmq's own decoder thinks of it
        z85.decode(overflowing)


@pytest.mark.parametrize(
    ("typed", "host", "shown"),
    [
        ("Chat.Example", "chat.example", "chat.example:5000"),
        ("127.0.0.1", "127.0.0.1", "127.0.0.1:5000"),
        ("::1", "::1", "[::1]:5000"),
        ("[::1]", "::1", "[::1]:5000"),
        ("FE80::1", "fe80::1", "[fe80::1]:5000"),
    ],
)
def test_an_address_is_the_host_as_typed_lower_cased(typed: str, host: str, shown: str) -> None:
    address = BrokerAddress.of(typed, 5000)
    assert address.host == host
    assert str(address) == shown
    assert parse_address(shown) == address


@pytest.mark.parametrize("host", ["", "two words", "#host", "a[b", "tab\there", "null\x00"])
def test_a_host_that_cannot_be_one_field_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="not a host"):
        BrokerAddress.of(host, 5000)


@pytest.mark.parametrize("text", ["host", "host:", "host:port", "::1:5000", "[::1]5000", "h:0"])
def test_a_malformed_address_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


# --- the file -----------------------------------------------------------------------------


def test_the_file_skips_comments_and_blank_lines_and_reads_ipv6() -> None:
    text = (
        f"# my brokers\n\n   \nchat.example:5000 {KEY_A}\n"
        f"  # indented comment\n[::1]:7000 {KEY_B}\n"
    )
    assert parse_known_brokers(text) == {
        HERE: KEY_A,
        BrokerAddress.of("::1", 7000): KEY_B,
    }


def test_the_same_pin_twice_is_harmless() -> None:
    text = f"chat.example:5000 {KEY_A}\nCHAT.example:5000 {KEY_A}\n"
    assert parse_known_brokers(text) == {HERE: KEY_A}


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("chat.example:5000", "expected 'host:port KEY'"),
        (f"chat.example:5000 {KEY_A} extra", "expected 'host:port KEY'"),
        ("chat.example:5000 not-a-key", "not a 40-character Z85 key"),
        (f"chat.example {KEY_A}", "expected host:port"),
        (f"chat.example:99999 {KEY_A}", "not a port"),
        (f"chat.example:5000 {KEY_B}", "another key for chat.example:5000"),
    ],
)
def test_a_bad_line_is_an_error_naming_the_file_and_line(line: str, problem: str) -> None:
    text = f"# header\nchat.example:5000 {KEY_A}\n{line}\n"
    with pytest.raises(KnownBrokersError, match=f"^brokers line 3: {re.escape(problem)}"):
        parse_known_brokers(text, "brokers")


def test_pinning_adds_a_line_and_keeps_everything_else() -> None:
    text = f"# mine\nother.example:5000 {KEY_B}"
    updated = with_pin(text, HERE, KEY_A)
    assert updated == f"# mine\nother.example:5000 {KEY_B}\nchat.example:5000 {KEY_A}\n"


def test_pinning_again_replaces_the_line_in_place() -> None:
    text = f"# first\nCHAT.example:5000 {KEY_B}\n# second\nchat.example:5000 {KEY_B}\nz:1 {KEY_B}\n"
    updated = with_pin(text, HERE, KEY_A)
    assert updated == f"# first\nchat.example:5000 {KEY_A}\n# second\nz:1 {KEY_B}\n"
    assert parse_known_brokers(updated)[HERE] == KEY_A


def test_pinning_an_ipv6_broker_writes_brackets() -> None:
    updated = with_pin("", BrokerAddress.of("::1", 5000), KEY_A)
    assert updated == f"[::1]:5000 {KEY_A}\n"


def test_a_missing_file_pins_nothing(tmp_path: Path) -> None:
    assert read_known_brokers(tmp_path / "nothing-here") == {}


def test_remembering_creates_the_directory_and_a_commented_file(tmp_path: Path) -> None:
    path = tmp_path / "config" / "zchat" / "known_brokers"
    remember_key(path, HERE, KEY_A)
    text = path.read_text()
    assert text.startswith("# ")
    assert text.endswith(f"\nchat.example:5000 {KEY_A}\n")
    assert read_known_brokers(path) == {HERE: KEY_A}
    assert os.listdir(path.parent) == ["known_brokers"]


def test_remembering_replaces_the_file_by_rename(tmp_path: Path) -> None:
    """A reader holding the old file sees it whole: the new one is renamed over it."""
    path = tmp_path / "known_brokers"
    path.write_text(f"# keep me\nother.example:5000 {KEY_B}\n")
    path.chmod(0o640)
    with path.open() as old:
        remember_key(path, HERE, KEY_A)
        assert old.read() == f"# keep me\nother.example:5000 {KEY_B}\n"
    assert path.read_text() == f"# keep me\nother.example:5000 {KEY_B}\nchat.example:5000 {KEY_A}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["known_brokers"]


def test_a_failed_write_leaves_the_file_and_no_litter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "known_brokers"
    path.write_text(f"other.example:5000 {KEY_B}\n")

    def refuse(source: str, target: str) -> None:
        raise PermissionError("read-only")

    monkeypatch.setattr(trust.os, "replace", refuse)
    with pytest.raises(KnownBrokersError, match=r"cannot write .*read-only"):
        remember_key(path, HERE, KEY_A)
    assert path.read_text() == f"other.example:5000 {KEY_B}\n"
    assert os.listdir(tmp_path) == ["known_brokers"]


def test_remembering_through_a_symlink_keeps_the_link(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "known_brokers"
    real.parent.mkdir()
    real.write_text("")
    link = tmp_path / "known_brokers"
    link.symlink_to(real)
    remember_key(link, HERE, KEY_A)
    assert link.is_symlink()
    assert read_known_brokers(real) == {HERE: KEY_A}


def test_remembering_refuses_to_rewrite_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "known_brokers"
    path.write_text("garbage\n")
    with pytest.raises(KnownBrokersError, match="line 1"):
        remember_key(path, HERE, KEY_A)
    assert path.read_text() == "garbage\n"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG applies on Linux")
def test_the_default_file_follows_xdg_config_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert default_known_brokers() == tmp_path / "zchat" / "known_brokers"


# --- loopback -----------------------------------------------------------------------------


class FakeResolver:
    def __init__(self, *addresses: str, error: OSError | None = None) -> None:
        self.addresses = list(addresses)
        self.error = error
        self.asked: list[str] = []

    async def __call__(self, host: str) -> list[str]:
        self.asked.append(host)
        if self.error is not None:
            raise self.error
        return self.addresses


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.4.5.6", "127.4.5.6"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("::ffff:127.0.0.1", "::ffff:127.0.0.1"),
        ("10.0.0.1", None),
        ("::2", None),
        ("0.0.0.0", None),
    ],
)
async def test_an_address_literal_is_loopback_without_resolving(
    host: str, expected: str | None
) -> None:
    resolver = FakeResolver(error=OSError("must not resolve"))
    assert await loopback_address(host, resolver) == expected
    assert resolver.asked == []


async def test_a_name_is_loopback_when_every_address_is_and_ipv4_is_preferred() -> None:
    assert await loopback_address("LocalHost", FakeResolver("::1", "127.0.0.1")) == "127.0.0.1"
    assert await loopback_address("v6only", FakeResolver("::1")) == "::1"


@pytest.mark.parametrize(
    "resolver",
    [
        FakeResolver("127.0.0.1", "192.0.2.7"),
        FakeResolver("192.0.2.7"),
        FakeResolver(),
        FakeResolver(error=socket.gaierror("no such host")),
    ],
)
async def test_a_name_that_may_be_elsewhere_is_not_loopback(resolver: FakeResolver) -> None:
    assert await loopback_address("chat.example", resolver) is None


async def test_localhost_really_resolves_to_loopback() -> None:
    assert await loopback_address("localhost") in ("127.0.0.1", "::1")


# --- the key service's reply --------------------------------------------------------------


def test_the_key_is_taken_from_the_reply_and_its_fingerprint_ignored() -> None:
    frame = encode_result(1, {"key": KEY_A, "fingerprint": "AAAA-AAAA-AAAA-AAAA"})
    assert key_from_reply(frame, "h:5002") == KEY_A


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        (b"\xc1not msgpack", "sent a malformed reply"),
        (encode_result(2, {"key": KEY_A}), "did not answer the key request"),
        (encode_event(RoomKey("r", 1, bytes(32))), "did not answer the key request"),
        (encode_error(1, NotLoggedIn("nope")), "refused: nope"),
        (encode_result(1, {}), "did not send a valid key"),
        (encode_result(1, {"key": KEY_A.encode()}), "did not send a valid key"),
        (encode_result(1, {"key": KEY_A[:39]}), "did not send a valid key"),
    ],
)
def test_a_reply_without_a_valid_key_is_refused(frame: bytes, problem: str) -> None:
    with pytest.raises(BadKeyReply, match=f"^the key service at h:5002 {problem}"):
        key_from_reply(frame, "h:5002")


# --- the decision -------------------------------------------------------------------------


class FakeFetch:
    """The key service: offers a key, or fails; counts how often it was asked."""

    def __init__(self, key: str | None = None, error: KeyUnavailable | None = None) -> None:
        self.key = key
        self.error = error or KeyServiceUnreachable("cannot fetch the broker's key from h:5002")
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.key is None:
            raise self.error
        return self.key


class FakePerson:
    """Someone at the terminal who answers every question the same way."""

    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.questions: list[str] = []

    async def __call__(self, question: str) -> bool:
        self.questions.append(question)
        return self.answer


async def decide(
    *,
    pinned: str | None = None,
    given: str | None = None,
    trust_new: bool = False,
    loopback: bool = False,
    fetch: FakeFetch | None = None,
    ask: FakePerson | None = None,
) -> Trusted:
    return await decide_trust(
        HERE,
        pinned=pinned,
        given=given,
        trust_new=trust_new,
        loopback=loopback,
        fetch=fetch or FakeFetch(KEY_A),
        ask=ask,
        known_brokers=FILE,
    )


async def test_a_given_key_that_is_pinned_is_used_without_asking_anyone() -> None:
    fetch = FakeFetch(KEY_B)
    trusted = await decide(pinned=KEY_A, given=KEY_A, fetch=fetch)
    assert trusted == Trusted(KEY_A)
    assert fetch.calls == 0


async def test_a_given_key_for_a_new_broker_is_remembered_once_it_works() -> None:
    fetch = FakeFetch(KEY_B)
    trusted = await decide(given=KEY_A, fetch=fetch)
    assert trusted.key == KEY_A
    assert trusted.remember
    assert trusted.note is not None
    assert key_fingerprint(KEY_A) in trusted.note
    assert str(FILE) in trusted.note
    assert trusted.unconfirmed is not None
    assert "--server-key" in trusted.unconfirmed
    assert fetch.calls == 0


async def test_a_given_key_that_differs_from_the_pinned_one_is_refused_loudly() -> None:
    fetch = FakeFetch(KEY_B)
    with pytest.raises(BrokerKeyChanged) as refused:
        await decide(pinned=KEY_A, given=KEY_B, fetch=fetch, trust_new=True, loopback=True)
    banner = refused.value.message
    assert "WARNING: THE BROKER'S KEY HAS CHANGED" in banner
    assert "given with --server-key for chat.example:5000" in banner
    assert f"Remembered key fingerprint: {key_fingerprint(KEY_A)}" in banner
    assert f"Given key fingerprint:      {key_fingerprint(KEY_B)}" in banner
    assert f"remove\nthe line for chat.example:5000 from {FILE}" in banner
    assert fetch.calls == 0


async def test_the_pinned_key_the_broker_still_offers_is_used() -> None:
    assert await decide(pinned=KEY_A, fetch=FakeFetch(KEY_A)) == Trusted(KEY_A)


@pytest.mark.parametrize("loopback", [False, True])
async def test_a_changed_key_is_refused_loudly_whatever_else_would_trust_it(
    loopback: bool,
) -> None:
    person = FakePerson(answer=True)
    with pytest.raises(BrokerKeyChanged) as refused:
        await decide(
            pinned=KEY_A, fetch=FakeFetch(KEY_B), trust_new=True, loopback=loopback, ask=person
        )
    lines = refused.value.message.splitlines()
    assert lines[0] == lines[2] == "@" * 64
    assert lines[1].strip("@ ") == "WARNING: THE BROKER'S KEY HAS CHANGED"
    assert "the broker offers for chat.example:5000" in lines[3]
    assert lines[4] == (
        "Someone may be intercepting your connection, or the broker's key was replaced."
    )
    assert f"Remembered key fingerprint: {key_fingerprint(KEY_A)}" in lines
    assert f"Offered key fingerprint:    {key_fingerprint(KEY_B)}" in lines
    assert lines[-1] == "Not connecting."
    assert person.questions == []


@pytest.mark.parametrize(
    "error", [KeyServiceUnreachable("no answer"), BadKeyReply("not a key")], ids=type
)
async def test_without_the_key_service_the_pinned_key_is_tried(error: KeyUnavailable) -> None:
    trusted = await decide(pinned=KEY_A, fetch=FakeFetch(error=error))
    assert trusted.key == KEY_A
    assert not trusted.remember
    assert trusted.unconfirmed is not None
    assert key_fingerprint(KEY_A) in trusted.unconfirmed


@pytest.mark.parametrize(
    "error", [KeyServiceUnreachable("no answer"), BadKeyReply("not a key")], ids=type
)
async def test_without_the_key_service_or_a_pin_the_error_says_what_to_do(
    error: KeyUnavailable,
) -> None:
    with pytest.raises(type(error)) as failed:
        await decide(fetch=FakeFetch(error=error), loopback=True, trust_new=True)
    assert failed.value.message == (
        f"{error.message}; pass --server-key KEY (zchat-broker --show-key prints it)"
    )


async def test_a_new_broker_on_loopback_is_trusted_and_remembered() -> None:
    person = FakePerson(answer=False)
    trusted = await decide(fetch=FakeFetch(KEY_A), loopback=True, ask=person)
    assert trusted.key == KEY_A
    assert trusted.remember
    assert trusted.note == (
        "Trusting the new broker at chat.example:5000 (it is on this machine): "
        f"key fingerprint {key_fingerprint(KEY_A)}, remembered in {FILE}."
    )
    assert trusted.unconfirmed is None
    assert person.questions == []


async def test_a_new_broker_is_trusted_with_trust_new_broker() -> None:
    person = FakePerson(answer=False)
    trusted = await decide(fetch=FakeFetch(KEY_A), trust_new=True, ask=person)
    assert trusted.key == KEY_A
    assert trusted.remember
    assert trusted.note is not None
    assert "(--trust-new-broker)" in trusted.note
    assert key_fingerprint(KEY_A) in trusted.note
    assert person.questions == []


async def test_a_new_broker_with_nobody_to_ask_is_refused() -> None:
    with pytest.raises(UntrustedBroker) as refused:
        await decide(fetch=FakeFetch(KEY_A))
    assert refused.value.message == (
        f"unknown broker key for chat.example:5000 (fingerprint {key_fingerprint(KEY_A)}); "
        "pass --server-key KEY or --trust-new-broker"
    )


async def test_a_new_broker_is_shown_and_trusted_when_the_person_says_yes() -> None:
    person = FakePerson(answer=True)
    trusted = await decide(fetch=FakeFetch(KEY_A), ask=person)
    assert trusted.key == KEY_A
    assert trusted.remember
    [question] = person.questions
    lines = question.splitlines()
    assert lines[0] == "The broker at chat.example:5000 is new to this client."
    assert lines[1] == f"Its key fingerprint is {key_fingerprint(KEY_A)}."
    assert lines[-1] == "Trust it and remember it? [y/N] "


async def test_a_new_broker_is_refused_when_the_person_says_no() -> None:
    person = FakePerson(answer=False)
    with pytest.raises(UntrustedBroker, match=r"not trusting the broker at chat\.example:5000"):
        await decide(fetch=FakeFetch(KEY_A), ask=person)
    assert len(person.questions) == 1


# --- the key service over a socket ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_an_absent_key_service_is_unreachable_quickly(
    context: zmq.asyncio.Context,
) -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(KeyServiceUnreachable, match=f"from 127.0.0.1:{port}$"):
        await fetch_server_key("127.0.0.1", port, context, timeout=0.3)
    assert time.monotonic() - started < 3


async def test_the_real_key_service_offers_the_broker_key(
    broker: RunningBroker, context: zmq.asyncio.Context
) -> None:
    key = await fetch_server_key(broker.host, broker.key_port, context, timeout=5)
    assert key == broker.server_key
    assert key_fingerprint(key) == broker.fingerprint


# --- the command line's part ---------------------------------------------------------------


def test_the_key_port_defaults_to_the_request_port_plus_two(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    options = cli.trust_options(5000, None, None, None, False)
    assert options.key_port == 5002
    assert options.known_brokers == default_known_brokers()
    chosen = cli.trust_options(5000, 7000, tmp_path / "mine", KEY_A, True)
    assert chosen == trust.TrustOptions(7000, tmp_path / "mine", KEY_A, True)


def test_a_request_port_without_room_for_a_key_port_asks_for_one() -> None:
    with pytest.raises(click.UsageError, match="pass --key-port"):
        cli.trust_options(65534, None, None, None, False)


def test_a_server_key_must_be_z85() -> None:
    command = click.Command("zchat-client")
    context = click.Context(command)
    parameter = click.Option(["--server-key"])
    assert cli.check_server_key(context, parameter, f"  {KEY_A}\n") == KEY_A
    assert cli.check_server_key(context, parameter, None) is None
    with pytest.raises(click.BadParameter, match="40 characters of Z85"):
        cli.check_server_key(context, parameter, KEY_A[:-1])
