"""How long to wait between reconnect attempts: doubling, capped, with jitter."""

from __future__ import annotations

import random
from collections.abc import Iterator

FIRST_DELAY = 0.5
MAX_DELAY = 10.0
JITTER = 0.25
"""Each delay is moved by up to this fraction either way, so clients a restart
disconnected together do not all come back in the same instant."""


def delays(
    first: float = FIRST_DELAY,
    cap: float = MAX_DELAY,
    jitter: float = JITTER,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """0.5 s, 1 s, 2 s, ... up to 10 s, each give or take ``jitter``; never ends."""
    pick = rng if rng is not None else random.Random()  # noqa: S311 -- jitter, not a secret
    delay = first
    while True:
        yield delay * (1 + pick.uniform(-jitter, jitter))
        delay = min(cap, delay * 2)
