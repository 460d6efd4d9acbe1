"""Log a failure once, then only how many more of its kind came: a flood must not fill the disk.

A peer that can make the broker fail (a request that hits a bug, a password hash
that makes the hasher throw) would otherwise write one traceback per request.
Here the first of each kind is logged in full; later ones within the interval
are only counted, and the count is logged with the next one after it (or at
`flush`): "57 more like this in the last 60 s".
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

INTERVAL_MS = 60_000
"""At most one full entry per kind of failure in this time."""
MAX_KINDS = 1_000
"""Kinds tracked at once; the longest-quiet is forgotten beyond this."""


@dataclass(slots=True)
class _Window:
    start_ms: int
    more: int = 0


class RepeatedLog:
    """Rate-limits log entries per kind (a short string naming what failed).

    Time is passed in, so the core can use it without reading the clock.
    """

    def __init__(self, logger: logging.Logger, interval_ms: int = INTERVAL_MS) -> None:
        self._logger = logger
        self._interval_ms = interval_ms
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    def report_exception(self, kind: str, now_ms: int, message: str, *args: object) -> None:
        """Log ``message`` with the current exception's traceback, unless ``kind`` was
        logged less than the interval ago (then it is only counted)."""
        if self._admit(kind, now_ms):
            self._logger.error(message, *args, exc_info=True)

    def report(self, kind: str, now_ms: int, message: str, *args: object) -> None:
        """Like `report_exception`, as a warning without a traceback."""
        if self._admit(kind, now_ms):
            self._logger.warning(message, *args)

    def flush(self, now_ms: int) -> None:
        """Log the counts not yet reported (say, when the broker stops)."""
        for kind, window in self._windows.items():
            self._summarize(kind, window, now_ms)
        self._windows.clear()

    def _admit(self, kind: str, now_ms: int) -> bool:
        window = self._windows.get(kind)
        if window is not None and now_ms - window.start_ms < self._interval_ms:
            window.more += 1
            return False
        if window is not None:
            self._summarize(kind, window, now_ms)
        self._windows[kind] = _Window(now_ms)
        self._windows.move_to_end(kind)
        while len(self._windows) > MAX_KINDS:
            self._summarize(*self._windows.popitem(last=False), now_ms)
        return True

    def _summarize(self, kind: str, window: _Window, now_ms: int) -> None:
        if window.more:
            seconds = max(1, round((now_ms - window.start_ms) / 1000))
            self._logger.warning(
                "%d more like this in the last %d s: %s", window.more, seconds, kind
            )
