"""Whether a login or registration may even be tried: checked before the slow hash.

Refusing here costs the broker nothing, so a password-guessing loop cannot
make it spend Argon2 time, and a login that may go ahead is told how long to
wait first (the delay grows with recent failures).

Failed logins are counted three ways. Per account *from one address* and per
address they lead, past `Limits.login_max_failures`, to `too_many_attempts`:
that stops a guesser at its own address. Per account from anywhere they only
ever delay (at most `Limits.login_max_delay_ms`): anyone may fail anyone's
login on purpose, so a lockout of the account would lock its owner out.
"""

from __future__ import annotations

from zchat.protocol.errors import TooManyAttempts
from zchat.protocol.validation import name_key

from .state import BrokerState


def admit_login(state: BrokerState, user: str, peer: str, now_ms: int) -> int:
    """Milliseconds to wait before checking this login; raises `TooManyAttempts`."""
    limits = state.settings.limits
    locking = max(
        state.login_failures_by_account_address.count(_pair(user, peer), now_ms),
        state.login_failures_by_address.count(peer, now_ms),
    )
    if locking >= limits.login_max_failures:
        minutes = max(1, limits.login_window_ms // 60_000)
        raise TooManyAttempts(
            f"too many failed logins; try again in {minutes} minute{'s' * (minutes > 1)}",
            retry_ms=limits.login_window_ms,
        )
    delaying = state.login_failures_by_account.count(name_key(user), now_ms)
    return limits.login_delay(max(locking, delaying))


def _pair(user: str, peer: str) -> str:
    return f"{name_key(user)} {peer}"  # no name holds a space


def record_login(state: BrokerState, user: str, peer: str, succeeded: bool, now_ms: int) -> None:
    """Count a failure against the account, the account at this address, and the address;
    a success clears the account's counts."""
    if succeeded:
        state.login_failures_by_account.clear(name_key(user))
        state.login_failures_by_account_address.clear(_pair(user, peer))
        return
    state.login_failures_by_account.fail(name_key(user), now_ms)
    state.login_failures_by_account_address.fail(_pair(user, peer), now_ms)
    state.login_failures_by_address.fail(peer, now_ms)


def admit_registration(state: BrokerState, peer: str, now_ms: int) -> None:
    """Raises `TooManyAttempts` when this address has created accounts too fast."""
    empty = state.registrations_by_address.take(peer, now_ms)
    if empty is not None:
        seconds = max(1, empty.wait_ms() // 1000)
        raise TooManyAttempts(
            f"too many registrations from your address; retry in {seconds} s",
            retry_ms=empty.wait_ms(),
        )


def admit_resume(state: BrokerState, peer: str, now_ms: int) -> None:
    """Raises `TooManyAttempts` when this address has tried too many bad resume tokens
    (or failed too many logins): a token is a credential, guessed like a password."""
    limits = state.settings.limits
    if state.login_failures_by_address.count(peer, now_ms) >= limits.login_max_failures:
        minutes = max(1, limits.login_window_ms // 60_000)
        raise TooManyAttempts(
            f"too many failed attempts; try again in {minutes} minute{'s' * (minutes > 1)}",
            retry_ms=limits.login_window_ms,
        )


def record_bad_token(state: BrokerState, peer: str, now_ms: int) -> None:
    """Count a bad resume token against the address that tried it."""
    state.login_failures_by_address.fail(peer, now_ms)
