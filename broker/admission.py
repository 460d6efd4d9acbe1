"""Whether a login or registration may even be tried: checked before the slow hash.

Refusing here costs the broker nothing, so a password-guessing loop cannot
make it spend Argon2 time, and a login that may go ahead is told how long to
wait first (the delay grows with recent failures of that account or address).
"""

from __future__ import annotations

from zchat.protocol.errors import TooManyAttempts
from zchat.protocol.validation import name_key

from .state import BrokerState


def admit_login(state: BrokerState, user: str, peer: str, now_ms: int) -> int:
    """Milliseconds to wait before checking this login; raises `TooManyAttempts`."""
    limits = state.settings.limits
    failures = max(
        state.login_failures_by_account.count(name_key(user), now_ms),
        state.login_failures_by_address.count(peer, now_ms),
    )
    if failures >= limits.login_max_failures:
        minutes = max(1, limits.login_window_ms // 60_000)
        raise TooManyAttempts(
            f"too many failed logins; try again in {minutes} minute{'s' * (minutes > 1)}"
        )
    return limits.login_delay(failures)


def record_login(state: BrokerState, user: str, peer: str, succeeded: bool, now_ms: int) -> None:
    """Count a failure against the account and the address; a success clears the account."""
    if succeeded:
        state.login_failures_by_account.clear(name_key(user))
        return
    state.login_failures_by_account.fail(name_key(user), now_ms)
    state.login_failures_by_address.fail(peer, now_ms)


def admit_registration(state: BrokerState, peer: str, now_ms: int) -> None:
    """Raises `TooManyAttempts` when this address has created accounts too fast."""
    empty = state.registrations_by_address.take(peer, now_ms)
    if empty is not None:
        seconds = max(1, empty.wait_ms() // 1000)
        raise TooManyAttempts(f"too many registrations from your address; retry in {seconds} s")


def admit_resume(state: BrokerState, peer: str, now_ms: int) -> None:
    """Raises `TooManyAttempts` when this address has tried too many bad resume tokens
    (or failed too many logins): a token is a credential, guessed like a password."""
    limits = state.settings.limits
    if state.login_failures_by_address.count(peer, now_ms) >= limits.login_max_failures:
        minutes = max(1, limits.login_window_ms // 60_000)
        raise TooManyAttempts(
            f"too many failed attempts; try again in {minutes} minute{'s' * (minutes > 1)}"
        )


def record_bad_token(state: BrokerState, peer: str, now_ms: int) -> None:
    """Count a bad resume token against the address that tried it."""
    state.login_failures_by_address.fail(peer, now_ms)
