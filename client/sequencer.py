"""One room's place in its numbered stream, with no I/O: each event shown once, in order.

This is the client half of the zguide's *Clone* pattern (the specification's
"Missing nothing"). The join reply is the snapshot; live publications that
arrive before it are buffered and played after it, minus what it already held.
A live event that skips numbers, an announcement of a later seq, a rejoin after
a reconnect or a probe after the reader fell behind all ask the caller to fetch
a range with ``history``; the page it gets back is handed to `Sequencer.fetched`.

Every method returns a `Step`: the events to show now, in seq order, and at
most one range to fetch. One fetch is outstanding at a time; the caller reports
its outcome with `fetched` (which may ask for the rest of the range) or
`fetch_failed`. The caller may fetch a range in smaller pieces: each answer says
how far it covers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from zchat.protocol import RoomEvent
from zchat.protocol.limits import MAX_SEQ

from .events import HistoryEvent

MAX_BUFFERED = 5_000
"""Out-of-order live events kept per room; beyond this the newest are dropped (and fetched
again later, since the sequencer still knows they exist)."""


@dataclass(frozen=True, slots=True)
class Fetch:
    """Ask the broker for ``history(room, from_seq, to_seq)``."""

    from_seq: int
    to_seq: int


@dataclass(frozen=True, slots=True)
class Step:
    """What one input produced: events to show, in order, and maybe a range to fetch."""

    shown: list[RoomEvent] = field(default_factory=list)
    fetch: Fetch | None = None


class Sequencer:
    """Orders one room's events: snapshot, live, announcements and fetched history."""

    def __init__(self, room: str, max_buffered: int = MAX_BUFFERED) -> None:
        self.room = room
        self.last: int | None = None
        """The seq of the last event shown (or known to be gone); None before the snapshot."""
        self.earliest: int | None = None
        """The lowest seq shown so far, where paging back starts; None before the snapshot."""
        self._buffer: dict[int, RoomEvent] = {}
        self._known = 0
        """The highest seq known to exist (seen live or announced)."""
        self._fetching: Fetch | None = None
        self._probing = False
        """Whether to fetch the tail (up to whatever the room has reached) next."""
        self._max_buffered = max_buffered

    @property
    def fetching(self) -> Fetch | None:
        """The range being fetched, if any."""
        return self._fetching

    @property
    def behind(self) -> bool:
        """Whether events are known to exist that are not shown yet."""
        return self.last is None or self._known > self.last or bool(self._buffer) or self._probing

    def snapshot(self, seq: int, events: Iterable[RoomEvent]) -> Step:
        """The join reply: ``events`` (the latest up to ``seq``) as history, then the buffer.

        A second snapshot (joining again, or rejoining after a reconnect) shows no
        history again: it only says the room has reached ``seq``.
        """
        if self.last is not None:
            return self.announced(seq)
        past = sorted((event for event in events if event.seq <= seq), key=_seq)
        shown: list[RoomEvent] = [HistoryEvent.of(event) for event in _unique(past)]
        self.last = seq
        self.earliest = shown[0].seq if shown else seq + 1
        self._known = max(self._known, seq)
        shown.extend(self._drain())
        return Step(shown, self._next_fetch())

    def live(self, event: RoomEvent) -> Step:
        """A publication, opened; shown now if it is the next one, else held."""
        if self.last is not None and event.seq <= self.last:
            return Step()  # a repeat, or already in the snapshot
        self._known = max(self._known, event.seq)
        self._hold(event)
        if self.last is None:
            return Step()
        return Step(self._drain(), self._next_fetch())

    def announced(self, seq: int) -> Step:
        """The room has reached ``seq``: fetch what is missing up to it."""
        self._known = max(self._known, seq)
        if self.last is None:
            return Step()
        return Step([], self._next_fetch())

    def probe(self) -> Step:
        """Fetch everything after the last shown event, however far the room has got.

        For when the reader may have lost the end of a burst and its announcements
        too (it stopped reading for a while).
        """
        self._probing = True
        if self.last is None:
            return Step()
        return Step([], self._next_fetch())

    def fetched(self, events: Iterable[RoomEvent], covered: int, last_seq: int) -> Step:
        """A ``history`` answer for the outstanding fetch.

        Every event up to ``covered`` is in ``events`` or gone for good (the broker
        no longer keeps it); ``last_seq`` is the room's latest, beyond which nothing
        exists yet. A page with ``more`` covers up to its last event; the last page
        up to the end of the range asked for.
        """
        fetch, self._fetching = self._fetching, None
        if fetch is None or self.last is None:
            return Step()
        end = min(fetch.to_seq, last_seq)
        covered = min(covered, end)
        shown: list[RoomEvent] = []
        for event in sorted(events, key=_seq):
            if self.last < event.seq <= covered:
                shown.append(event)
                self.last = event.seq
        self.last = max(self.last, covered)
        if self.last < end and covered >= fetch.from_seq:
            self._fetching = Fetch(self.last + 1, fetch.to_seq)  # the rest of the range
            return Step(shown, self._fetching)
        shown.extend(self._drain())
        return Step(shown, self._next_fetch())

    def fetch_failed(self) -> None:
        """The outstanding fetch got no answer; the next input may ask again."""
        self._fetching = None

    def retry(self) -> Step:
        """Ask again for what is missing, e.g. after a failed fetch and a reconnect."""
        if self.last is None:
            return Step()
        return Step([], self._next_fetch())

    def page_start(self, count: int) -> Fetch | None:
        """The range of up to ``count`` events before the earliest shown; None at the start."""
        if self.earliest is None or self.earliest <= 1 or count < 1:
            return None
        return Fetch(max(1, self.earliest - count), self.earliest - 1)

    def paged_back(self, fetch: Fetch, events: Iterable[RoomEvent]) -> list[HistoryEvent]:
        """A page before the earliest shown event, as history; later pages start before it."""
        if self.earliest is None:
            return []
        page = [
            HistoryEvent.of(event)
            for event in _unique(sorted(events, key=_seq))
            if fetch.from_seq <= event.seq < self.earliest
        ]
        self.earliest = fetch.from_seq
        return page

    # --- inside -----------------------------------------------------------------------------

    def _hold(self, event: RoomEvent) -> None:
        self._buffer.setdefault(event.seq, event)
        while len(self._buffer) > self._max_buffered:
            del self._buffer[max(self._buffer)]  # still known: fetched when its turn comes

    def _drain(self) -> list[RoomEvent]:
        """Show buffered events that now follow on; forget those already shown."""
        assert self.last is not None
        for seq in [seq for seq in self._buffer if seq <= self.last]:
            del self._buffer[seq]
        shown = []
        while (event := self._buffer.pop(self.last + 1, None)) is not None:
            shown.append(event)
            self.last = event.seq
        return shown

    def _next_fetch(self) -> Fetch | None:
        """The first missing range, unless a fetch is already out."""
        if self._fetching is not None or self.last is None:
            return None
        if self._buffer:
            end = min(self._buffer) - 1
        elif self._known > self.last:
            end = self._known
        elif self._probing:
            end = MAX_SEQ
        else:
            return None
        if end <= self.last:
            return None
        self._probing = self._probing and end != MAX_SEQ
        self._fetching = Fetch(self.last + 1, end)
        return self._fetching


def _seq(event: RoomEvent) -> int:
    return event.seq


def _unique(events: list[RoomEvent]) -> list[RoomEvent]:
    """Sorted events with repeated seqs removed."""
    unique: list[RoomEvent] = []
    for event in events:
        if not unique or unique[-1].seq != event.seq:
            unique.append(event)
    return unique
