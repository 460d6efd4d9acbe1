"""Which broker key to trust: one pinned key per ``host:port``, the way SSH pins host keys.

The broker's ROUTER and PUB are CurveZMQ servers, so the client needs the
broker's public key before it connects. It remembers ("pins") one key per
``host:port`` in a known-brokers file (one ``host:port KEY`` line each) and:

- with ``--server-key KEY`` uses that key, and refuses it if another is pinned;
- otherwise asks the broker's key service (plaintext) which key it has, and
  refuses loudly, never connecting, if that differs from the pinned key;
- trusts a broker it has never met on first use (TOFU): automatically when it
  is on this machine's loopback, with ``--trust-new-broker``, or when the
  person at the terminal says yes after seeing the key's fingerprint.

The trade-off: on that first contact an attacker between client and broker
could offer its own key. Comparing the fingerprint shown with the one
``zchat-broker`` prints (or ``zchat-broker --show-key``) closes that gap;
``--server-key`` avoids it. A new key is written to the file only after the
CurveZMQ handshake with it succeeded, so a mistyped key is never remembered.

`decide_trust` is the decision with its I/O passed in (a fetch and a question),
so every branch is testable without sockets; `connect_trusted` is the shell
that reads the file, fetches, connects and remembers.

Errors (all `ClientError`, so a CLI's one ``except ZchatError`` covers them)::

    TrustError                  the client will not connect with any key it has
    ├── KeyUnavailable          the key service gave no usable key
    │   ├── KeyServiceUnreachable   no answer in time
    │   └── BadKeyReply             an answer that is not a valid key
    ├── BrokerKeyChanged        the key differs from the pinned one (message: the banner)
    ├── UntrustedBroker         a new broker was not accepted
    └── KnownBrokersError       the known-brokers file cannot be read, parsed or written
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import re
import socket
import stat
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import platformdirs
import zmq
import zmq.asyncio

from zchat.protocol import Reply, ServerKey, ZchatError, decode_incoming, encode_request
from zchat.protocol.fingerprint import is_z85_key, key_fingerprint

from .errors import BrokerUnreachable, ClientError
from .session import ChatClient, endpoint
from .sockets import open_socket

log = logging.getLogger(__name__)

KEY_FETCH_TIMEOUT = 5.0
"""Seconds to wait for the key service's answer."""

PINNED_FETCH_TIMEOUT = 2.0
"""Seconds to wait for it when a key is pinned: the fetch only checks that the key
has not changed, and without an answer the pinned key is tried anyway."""

KNOWN_BROKERS_FILE = "known_brokers"

NEW_FILE_HEADER = (
    "# Brokers this zchat client trusts: host:port KEY, one a line.\n"
    "# Remove a broker's line to accept a new key for it.\n"
)

SHOW_KEY_HINT = "zchat-broker --show-key prints it"

BANNER_TITLE = "WARNING: THE BROKER'S KEY HAS CHANGED"

Fetch = Callable[[], Awaitable[str]]
"""Gets the key the broker offers now; raises `KeyUnavailable`."""

Ask = Callable[[str], Awaitable[bool]]
"""Puts a yes/no question to the person at the terminal; True for yes."""

Resolve = Callable[[str], Awaitable[list[str]]]
"""The addresses a host name resolves to; raises `OSError`."""


# --- errors -------------------------------------------------------------------------------


class TrustError(ClientError):
    """The client has no key it may use for this broker, so it does not connect."""


class KeyUnavailable(TrustError):
    """The key service gave no usable key."""


class KeyServiceUnreachable(KeyUnavailable):
    """The key service did not answer in time."""


class BadKeyReply(KeyUnavailable):
    """Something answered on the key port, but not with a valid key."""


class BrokerKeyChanged(TrustError):
    """The broker's key differs from the pinned one; the message is a multi-line banner."""


class UntrustedBroker(TrustError):
    """A broker met for the first time was not accepted."""


class KnownBrokersError(TrustError):
    """The known-brokers file cannot be read, parsed or written."""


# --- keys and addresses -------------------------------------------------------------------

_HOST = re.compile(r"[^\s#\[\]/]+")
"""What may stand for a host in the file: no whitespace, comment mark, brackets or slash."""


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """A broker as the file knows it: the host as typed (lower-cased, no brackets), a port."""

    host: str
    port: int

    @classmethod
    def of(cls, host: str, port: int) -> BrokerAddress:
        """Normalise ``host`` (``[::1]`` -> ``::1``, ``Chat.Example`` -> ``chat.example``).

        Raises `ValueError` for a host that could not be written as one file field.
        """
        bare = host.strip()
        if bare.startswith("[") and bare.endswith("]"):
            bare = bare[1:-1]
        if not _HOST.fullmatch(bare) or not bare.isprintable():
            raise ValueError(f"not a host name or address: {host!r}")
        if not 1 <= port <= 65535:
            raise ValueError(f"not a port: {port}")
        return cls(bare.lower(), port)

    def __str__(self) -> str:
        """``host:port``, with an IPv6 address in brackets."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_address(text: str) -> BrokerAddress:
    """``host:port`` or ``[v6]:port`` back into an address; raises `ValueError`."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError(f"expected [address]:port, not {text!r}")
        port_text = rest[1:]
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon or ":" in host:
            raise ValueError(f"expected host:port, not {text!r}")
    if not port_text.isdigit():
        raise ValueError(f"not a port: {port_text!r}")
    return BrokerAddress.of(host, int(port_text))


# --- the known-brokers file ---------------------------------------------------------------


def default_known_brokers() -> Path:
    """``known_brokers`` in the per-user config directory (``$XDG_CONFIG_HOME/zchat`` on Linux)."""
    return Path(platformdirs.user_config_dir("zchat", appauthor=False)) / KNOWN_BROKERS_FILE


def _pin_line(line: str) -> tuple[BrokerAddress, str] | None:
    """The address and key a line pins, None for a blank or comment line; `ValueError`."""
    fields = line.split()
    if not fields or fields[0].startswith("#"):
        return None
    if len(fields) != 2:
        raise ValueError("expected 'host:port KEY'")
    address, key = parse_address(fields[0]), fields[1]
    if not is_z85_key(key):
        raise ValueError(f"not a 40-character Z85 key: {key!r}")
    return address, key


def parse_known_brokers(text: str, source: str = KNOWN_BROKERS_FILE) -> dict[BrokerAddress, str]:
    """The key pinned for each address; a malformed line is an error, never skipped.

    Skipping it would quietly turn a pinned broker into an unknown one.
    """
    pins: dict[BrokerAddress, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            pinned = _pin_line(line)
        except ValueError as exc:
            raise KnownBrokersError(f"{source} line {number}: {exc}") from exc
        if pinned is None:
            continue
        address, key = pinned
        if pins.setdefault(address, key) != key:
            raise KnownBrokersError(f"{source} line {number}: another key for {address}")
    return pins


def with_pin(text: str, address: BrokerAddress, key: str) -> str:
    """``text`` with ``address`` pinned to ``key``: its line replaced in place (comments
    and other lines kept as they are), or a new line added at the end."""
    parse_known_brokers(text)
    new_line = f"{address} {key}"
    lines: list[str] = []
    replaced = False
    for line in text.splitlines():
        pinned = _pin_line(line)
        if pinned is not None and pinned[0] == address:
            if not replaced:
                lines.append(new_line)
                replaced = True
            continue
        lines.append(line)
    if not replaced:
        lines.append(new_line)
    return "\n".join(lines) + "\n"


def read_known_brokers(path: Path) -> dict[BrokerAddress, str]:
    """The pins in ``path``; a missing file pins nothing."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise KnownBrokersError(f"cannot read {path}: {exc}") from exc
    return parse_known_brokers(text, str(path))


def remember_key(path: Path, address: BrokerAddress, key: str) -> None:
    """Pin ``key`` for ``address`` in ``path``, re-reading the file just before writing.

    The file is replaced atomically, so a reader never sees half of it.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = NEW_FILE_HEADER
    except (OSError, UnicodeDecodeError) as exc:
        raise KnownBrokersError(f"cannot read {path}: {exc}") from exc
    try:
        updated = with_pin(text, address, key)
    except KnownBrokersError as exc:
        raise KnownBrokersError(f"{path}: {exc.message}") from exc
    try:
        write_atomically(path, updated)
    except OSError as exc:
        raise KnownBrokersError(f"cannot write {path}: {exc}") from exc


def write_atomically(path: Path, text: str) -> None:
    """Write a temporary file beside ``path`` and rename it over ``path``.

    The directory is created if needed; a symlinked file is replaced at its
    target, and an existing file keeps its permissions.
    """
    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.chmod(temporary, stat.S_IMODE(target.stat().st_mode))
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


# --- loopback -----------------------------------------------------------------------------


def _loopback_literal(text: str) -> bool | None:
    """Whether an IP literal is loopback; None when ``text`` is not an IP literal."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


async def resolve_host(host: str) -> list[str]:
    """Every address ``host`` resolves to, for TCP."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def loopback_address(host: str, resolve: Resolve = resolve_host) -> str | None:
    """The loopback address ``host`` stands for, or None if it may be on another machine.

    A name counts only if every address it resolves to is loopback. The key is
    then fetched from the address returned, not the name, so a name that
    resolves differently a moment later cannot slip another machine's key in
    as "local" (the handshake with the name then fails instead).
    """
    address = BrokerAddress.of(host, 1).host
    literal = _loopback_literal(address)
    if literal is not None:
        return address if literal else None
    try:
        addresses = await resolve(address)
    except OSError as exc:
        log.debug("cannot resolve %s: %s", address, exc)
        return None
    if not addresses or not all(_loopback_literal(each) for each in addresses):
        return None
    return next((each for each in addresses if ":" not in each), addresses[0])


# --- asking the key service ---------------------------------------------------------------


async def fetch_server_key(
    host: str, key_port: int, context: zmq.asyncio.Context, timeout: float = KEY_FETCH_TIMEOUT
) -> str:
    """The key the broker's key service offers, over a plaintext DEALER.

    Only the Z85 key is taken from the reply; its fingerprint is recomputed by
    whoever shows it, never read from the wire. Raises `KeyServiceUnreachable`
    or `BadKeyReply`.
    """
    where = BrokerAddress.of(host, key_port)
    dealer = open_socket(context, zmq.DEALER)
    try:
        if ":" in where.host:
            dealer.setsockopt(zmq.IPV6, 1)
        try:
            async with asyncio.timeout(timeout):
                dealer.connect(endpoint(where.host, key_port))
                await dealer.send(encode_request(1, ServerKey()))
                frame = await dealer.recv()
        except (TimeoutError, zmq.ZMQError) as exc:
            raise KeyServiceUnreachable(f"cannot fetch the broker's key from {where}") from exc
    finally:
        dealer.close(linger=0)
    return key_from_reply(frame, str(where))


def key_from_reply(frame: bytes, where: str) -> str:
    """The key in the key service's reply to request id 1; raises `BadKeyReply`."""
    try:
        incoming = decode_incoming(frame)
    except ZchatError as exc:
        raise BadKeyReply(f"the key service at {where} sent a malformed reply") from exc
    if not isinstance(incoming, Reply) or incoming.request_id != 1:
        raise BadKeyReply(f"the key service at {where} did not answer the key request")
    if incoming.error is not None:
        raise BadKeyReply(f"the key service at {where} refused: {incoming.error.message}")
    key = (incoming.result or {}).get("key")
    if not isinstance(key, str) or not is_z85_key(key):
        raise BadKeyReply(f"the key service at {where} did not send a valid key")
    return key


# --- the decision -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Trusted:
    """The key to connect with, and what to do once the handshake with it succeeded."""

    key: str
    remember: bool = False
    """Pin the key: it is new to the known-brokers file."""
    note: str | None = None
    """One line to show once the key is remembered."""
    unconfirmed: str | None = None
    """Why a failed handshake may mean a wrong key rather than an absent broker."""


def changed_banner(
    address: BrokerAddress, pinned: str, offered: str, *, given: bool, known_brokers: Path
) -> str:
    """The warning shown instead of connecting, in the spirit of SSH's.

    ``given``: the new key came from ``--server-key`` rather than the broker.
    """
    rule = "@" * 64
    if given:
        source, label = "given with --server-key", "Given"
        why = "Either the key given is wrong, or the broker's key was replaced."
    else:
        source, label = "the broker offers", "Offered"
        why = "Someone may be intercepting your connection, or the broker's key was replaced."
    return "\n".join(
        [
            rule,
            f"@{BANNER_TITLE:^62}@",
            rule,
            f"The key {source} for {address} is not the one this client remembers.",
            why,
            f"Remembered key fingerprint: {key_fingerprint(pinned)}",
            f"{label} key fingerprint:{' ' * (len('Remembered') - len(label))} "
            f"{key_fingerprint(offered)}",
            "If the change is expected, compare the new fingerprint with what",
            "`zchat-broker --show-key` prints on the broker's machine, then remove",
            f"the line for {address} from {known_brokers} and connect again.",
            "Not connecting.",
        ]
    )


def new_broker_question(address: BrokerAddress, key: str) -> str:
    """What the person at the terminal is asked about a broker met for the first time."""
    return (
        f"The broker at {address} is new to this client.\n"
        f"Its key fingerprint is {key_fingerprint(key)}.\n"
        "Compare it with what zchat-broker printed on the broker's machine.\n"
        "Trust it and remember it? [y/N] "
    )


async def decide_trust(
    address: BrokerAddress,
    *,
    pinned: str | None,
    given: str | None,
    trust_new: bool,
    loopback: bool,
    fetch: Fetch,
    ask: Ask | None,
    known_brokers: Path,
) -> Trusted:
    """Which key to connect to ``address`` with, or a `TrustError` saying why none.

    ``pinned`` is the key in the file, ``given`` the one from ``--server-key``;
    ``ask`` is None when nobody is at a terminal to answer.
    """
    if given is not None:
        if pinned is not None and pinned != given:
            raise BrokerKeyChanged(
                changed_banner(address, pinned, given, given=True, known_brokers=known_brokers)
            )
        if pinned is not None:
            return Trusted(given)
        fingerprint = key_fingerprint(given)
        return Trusted(
            given,
            remember=True,
            note=f"Remembered the key for {address} (fingerprint {fingerprint}) "
            f"in {known_brokers}.",
            unconfirmed=f"or it does not hold the key given with --server-key "
            f"(fingerprint {fingerprint}; compare with zchat-broker --show-key)",
        )
    try:
        offered = await fetch()
    except KeyUnavailable as exc:
        if pinned is None:
            raise type(exc)(f"{exc.message}; pass --server-key KEY ({SHOW_KEY_HINT})") from exc
        log.info("%s; trying the remembered key for %s", exc.message, address)
        return Trusted(
            pinned,
            unconfirmed=f"or it no longer holds the remembered key "
            f"(fingerprint {key_fingerprint(pinned)}), and its key service did not answer",
        )
    if pinned is not None:
        if offered != pinned:
            raise BrokerKeyChanged(
                changed_banner(address, pinned, offered, given=False, known_brokers=known_brokers)
            )
        return Trusted(pinned)
    fingerprint = key_fingerprint(offered)
    if loopback or trust_new:
        why = "it is on this machine" if loopback else "--trust-new-broker"
        return Trusted(
            offered,
            remember=True,
            note=f"Trusting the new broker at {address} ({why}): key fingerprint "
            f"{fingerprint}, remembered in {known_brokers}.",
        )
    if ask is None:
        raise UntrustedBroker(
            f"unknown broker key for {address} (fingerprint {fingerprint}); "
            "pass --server-key KEY or --trust-new-broker"
        )
    if not await ask(new_broker_question(address, offered)):
        raise UntrustedBroker(f"not trusting the broker at {address}; nothing was remembered")
    return Trusted(offered, remember=True, note=f"Remembered {address} in {known_brokers}.")


# --- the shell ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrustOptions:
    """What the command line says about keys."""

    key_port: int
    known_brokers: Path
    server_key: str | None = None
    trust_new_broker: bool = False


async def connect_trusted(
    host: str,
    port: int,
    options: TrustOptions,
    *,
    connect_timeout: float,
    ask: Ask | None,
    tell: Callable[[str], None],
) -> ChatClient:
    """Decide the key, connect with it, and pin it once the handshake proved it.

    ``connect_timeout`` also bounds the wait for the key service (less when a key
    is pinned); ``tell`` shows one line to the user (a note, or a warning that
    the key could not be written down).
    """
    try:
        address = BrokerAddress.of(host, port)
    except ValueError as exc:
        raise TrustError(str(exc)) from exc
    pinned = read_known_brokers(options.known_brokers).get(address)
    fetch_timeout = (
        connect_timeout if pinned is None else min(connect_timeout, PINNED_FETCH_TIMEOUT)
    )
    local = await loopback_address(host)
    context = zmq.asyncio.Context()
    try:
        trusted = await decide_trust(
            address,
            pinned=pinned,
            given=options.server_key,
            trust_new=options.trust_new_broker,
            loopback=local is not None,
            fetch=lambda: fetch_server_key(
                local or address.host, options.key_port, context, fetch_timeout
            ),
            ask=ask,
            known_brokers=options.known_brokers,
        )
    finally:
        context.term()
    try:
        client = await ChatClient.connect(
            host, port, server_key=trusted.key, connect_timeout=connect_timeout
        )
    except BrokerUnreachable as exc:
        if trusted.unconfirmed is None:
            raise
        raise BrokerUnreachable(f"{exc.message}, {trusted.unconfirmed}") from exc
    if trusted.remember:
        try:
            remember_key(options.known_brokers, address, trusted.key)
        except KnownBrokersError as exc:
            tell(f"warning: the broker's key was not remembered: {exc.message}")
            return client
    if trusted.note is not None:
        tell(trusted.note)
    return client
