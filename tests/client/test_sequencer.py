"""The sequencer with no sockets: snapshot then buffer, gaps, repeats, announcements, paging."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from zchat.client.events import HistoryEvent
from zchat.client.sequencer import Fetch, Sequencer, Step
from zchat.protocol import RoomEvent, RoomEventKind
from zchat.protocol.limits import MAX_SEQ

ROOM = "room1"


def event(seq: int, kind: RoomEventKind = RoomEventKind.MESSAGE) -> RoomEvent:
    return RoomEvent(ROOM, seq, kind, "alice", 1_000 + seq, f"m{seq}" if kind == "msg" else "")


def events(*seqs: int) -> list[RoomEvent]:
    return [event(seq) for seq in seqs]


def seqs(step: Step) -> list[int]:
    return [shown.seq for shown in step.shown]


def joined(seq: int = 10) -> Sequencer:
    sequencer = Sequencer(ROOM)
    sequencer.snapshot(seq, [])
    return sequencer


def test_the_snapshot_is_history_and_the_buffer_follows_without_repeats() -> None:
    sequencer = Sequencer(ROOM)
    # Subscribed first: live events arrive before the join reply, some already in it.
    for seq in (9, 10, 11, 12):
        assert sequencer.live(event(seq)) == Step()
    step = sequencer.snapshot(10, events(8, 9, 10))
    assert seqs(step) == [8, 9, 10, 11, 12]
    assert [isinstance(shown, HistoryEvent) for shown in step.shown] == [True] * 3 + [False] * 2
    assert step.fetch is None
    assert sequencer.last == 12 and sequencer.earliest == 8


def test_a_snapshot_without_history_starts_after_its_seq() -> None:
    sequencer = Sequencer(ROOM)
    assert sequencer.live(event(5)) == Step()  # our own join, already reflected in the reply
    assert sequencer.snapshot(5, []) == Step()
    assert seqs(sequencer.live(event(6))) == [6]
    assert sequencer.page_start(50) == Fetch(1, 5)


def test_a_gap_between_the_snapshot_and_the_buffer_is_fetched() -> None:
    sequencer = Sequencer(ROOM)
    sequencer.live(event(14))  # 11 to 13 were lost (the subscription was late)
    step = sequencer.snapshot(10, events(10))
    assert seqs(step) == [10]
    assert step.fetch == Fetch(11, 13)
    done = sequencer.fetched(events(11, 12, 13), covered=MAX_SEQ, last_seq=14)
    assert seqs(done) == [11, 12, 13, 14] and done.fetch is None


def test_live_events_in_order_are_shown_at_once_and_repeats_dropped() -> None:
    sequencer = joined(10)
    assert seqs(sequencer.live(event(11))) == [11]
    assert seqs(sequencer.live(event(12))) == [12]
    assert sequencer.live(event(12)) == Step()
    assert sequencer.live(event(3)) == Step()


def test_a_skipped_seq_holds_later_events_until_the_gap_is_fetched() -> None:
    sequencer = joined(10)
    step = sequencer.live(event(14))
    assert step == Step([], Fetch(11, 13))
    assert sequencer.live(event(15)) == Step()  # one fetch at a time; 15 waits too
    done = sequencer.fetched(events(11, 12, 13, 14), covered=MAX_SEQ, last_seq=15)
    assert seqs(done) == [11, 12, 13, 14, 15]
    assert sequencer.fetching is None and not sequencer.behind


def test_a_long_gap_is_fetched_page_by_page() -> None:
    sequencer = joined(0)
    assert sequencer.live(event(1200)).fetch == Fetch(1, 1199)
    first = sequencer.fetched(events(*range(1, 501)), covered=500, last_seq=1200)
    assert seqs(first) == list(range(1, 501)) and first.fetch == Fetch(501, 1199)
    second = sequencer.fetched(events(*range(501, 1001)), covered=1000, last_seq=1200)
    assert second.fetch == Fetch(1001, 1199)
    last = sequencer.fetched(events(*range(1001, 1200)), covered=MAX_SEQ, last_seq=1200)
    assert seqs(last) == [*range(1001, 1200), 1200]


def test_an_announcement_reveals_a_lost_tail() -> None:
    sequencer = joined(10)
    assert seqs(sequencer.live(event(11))) == [11]
    assert sequencer.announced(11) == Step()  # nothing missing
    step = sequencer.announced(13)
    assert step.fetch == Fetch(12, 13)
    assert sequencer.announced(14) == Step()  # already fetching
    done = sequencer.fetched(events(12, 13), covered=MAX_SEQ, last_seq=14)
    assert seqs(done) == [12, 13] and done.fetch == Fetch(14, 14)


def test_an_announcement_before_the_snapshot_is_kept_for_after_it() -> None:
    sequencer = Sequencer(ROOM)
    assert sequencer.announced(12) == Step()
    assert sequencer.snapshot(10, []).fetch == Fetch(11, 12)


def test_a_range_fetched_in_small_pieces_even_where_pruned() -> None:
    sequencer = joined(10)
    assert sequencer.live(event(30)).fetch == Fetch(11, 29)
    nothing = sequencer.fetched([], covered=15, last_seq=30)  # 11..15 are gone
    assert nothing == Step([], Fetch(16, 29))
    some = sequencer.fetched(events(16, 17), covered=20, last_seq=30)
    assert seqs(some) == [16, 17] and some.fetch == Fetch(21, 29)
    rest = sequencer.fetched(events(*range(21, 30)), covered=29, last_seq=30)
    assert seqs(rest) == [*range(21, 30), 30] and rest.fetch is None


def test_pruned_events_are_skipped_not_waited_for() -> None:
    sequencer = joined(10)
    sequencer.live(event(30))
    # The broker kept only 25 onwards of the missing 11..29.
    done = sequencer.fetched(events(25, 26, 27, 28, 29), covered=MAX_SEQ, last_seq=30)
    assert seqs(done) == [25, 26, 27, 28, 29, 30]


def test_a_range_entirely_gone_moves_on() -> None:
    sequencer = joined(10)
    sequencer.live(event(13))
    done = sequencer.fetched([], covered=MAX_SEQ, last_seq=13)
    assert seqs(done) == [13]


def test_a_probe_fetches_whatever_the_room_has_reached() -> None:
    sequencer = joined(10)
    step = sequencer.probe()
    assert step.fetch == Fetch(11, MAX_SEQ)
    assert seqs(sequencer.fetched(events(11, 12), covered=MAX_SEQ, last_seq=12)) == [11, 12]
    assert sequencer.last == 12 and not sequencer.behind


def test_a_probe_during_a_fetch_comes_after_it() -> None:
    sequencer = joined(10)
    assert sequencer.live(event(13)).fetch == Fetch(11, 12)
    assert sequencer.probe() == Step()
    done = sequencer.fetched(events(11, 12), covered=MAX_SEQ, last_seq=20)
    assert seqs(done) == [11, 12, 13] and done.fetch == Fetch(14, MAX_SEQ)


def test_a_failed_fetch_is_asked_for_again() -> None:
    sequencer = joined(10)
    assert sequencer.live(event(13)).fetch == Fetch(11, 12)
    sequencer.fetch_failed()
    assert sequencer.retry().fetch == Fetch(11, 12)


def test_a_rejoin_after_an_outage_fetches_what_was_missed() -> None:
    sequencer = joined(10)
    sequencer.live(event(11))
    step = sequencer.snapshot(20, events(19, 20))  # joined again: history is not repeated
    assert step == Step([], Fetch(12, 20))
    assert seqs(sequencer.fetched(events(*range(12, 21)), covered=MAX_SEQ, last_seq=20)) == list(
        range(12, 21)
    )


def test_paging_back_walks_towards_the_start() -> None:
    sequencer = Sequencer(ROOM)
    sequencer.snapshot(120, events(*range(71, 121)))
    fetch = sequencer.page_start(50)
    assert fetch == Fetch(21, 70)
    page = sequencer.paged_back(fetch, events(*range(21, 71)))
    assert [shown.seq for shown in page] == list(range(21, 71))
    assert all(isinstance(shown, HistoryEvent) for shown in page)
    fetch = sequencer.page_start(50)
    assert fetch == Fetch(1, 20)
    sequencer.paged_back(fetch, events(*range(1, 21)))
    assert sequencer.page_start(50) is None


def test_the_buffer_is_bounded_and_what_it_dropped_is_fetched() -> None:
    sequencer = Sequencer(ROOM, max_buffered=3)
    sequencer.snapshot(10, [])
    sequencer.live(event(12))
    for seq in (13, 14, 15):
        sequencer.live(event(seq))  # 15 pushes the newest out
    done = sequencer.fetched(events(11), covered=MAX_SEQ, last_seq=15)
    assert seqs(done) == [11, 12, 13, 14]
    assert done.fetch == Fetch(15, 15)


@settings(max_examples=200, deadline=None)
@given(
    total=st.integers(min_value=1, max_value=60),
    joined_at=st.integers(min_value=0, max_value=60),
    history=st.integers(min_value=0, max_value=20),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_any_mix_of_drops_repeats_and_reordering_shows_each_event_once_in_order(
    total: int, joined_at: int, history: int, seed: int
) -> None:
    """Whatever the network does, the room's events after the snapshot's history come out
    once each, in order, with the history before them."""
    rng = random.Random(seed)
    joined_at = min(joined_at, total)
    stored = {seq: event(seq) for seq in range(1, total + 1)}
    live = [stored[seq] for seq in range(max(1, joined_at - 3), total + 1) if rng.random() > 0.3]
    live += rng.sample(live, k=len(live) // 4)  # repeats
    rng.shuffle(live)
    announced = rng.random() > 0.5
    sequencer = Sequencer(ROOM)
    shown: list[RoomEvent] = []

    def run(step: Step) -> None:
        shown.extend(step.shown)
        while step.fetch is not None:
            fetch = step.fetch
            page = [stored[seq] for seq in range(fetch.from_seq, min(fetch.to_seq, total) + 1)]
            covered = page[6].seq if len(page) > 7 else fetch.to_seq
            step = sequencer.fetched(page[:7], covered=covered, last_seq=total)
            shown.extend(step.shown)

    before = rng.randrange(len(live) + 1)
    for item in live[:before]:
        run(sequencer.live(item))
    snapshot = [stored[seq] for seq in range(max(1, joined_at - history + 1), joined_at + 1)]
    run(sequencer.snapshot(joined_at, snapshot if history else []))
    for item in live[before:]:
        run(sequencer.live(item))
    run(sequencer.announced(total) if announced else sequencer.probe())

    first = snapshot[0].seq if history and snapshot else joined_at + 1
    assert [item.seq for item in shown] == list(range(first, total + 1))
    assert all(isinstance(item, HistoryEvent) == (item.seq <= joined_at) for item in shown)
