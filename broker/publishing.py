"""Seal a batch's room events into as few publications as possible.

Everything one broker batch posts to a room goes out as one publication per
run of consecutive events under the same key: one seal, one ZeroMQ message and
one CURVE frame per subscriber for the run, instead of one per event. A run
ends where the room's key changed (so a member who left never gets a box it
could open) or where the publication would grow past what a peer accepts.
"""

from __future__ import annotations

from zchat.protocol.limits import MAX_BATCH_EVENTS

from .outgoing import Outgoing, Publish, RoomPost, Unicast

BATCH_PLAINTEXT_BYTES = 16 * 1024 - 64
"""Most sealed plaintext one publication carries: far under the frame limit, and it keeps a
slow subscriber's queue (counted in messages by the high-water mark) modest in bytes.
A single event (at most ``MAX_TEXT_BYTES`` of text) always fits. 64 bytes short of 16 KiB
so a full batch, with its padding's header and the tag, is padded to 16 KiB, not 32."""
EVENT_FRAMING_BYTES = 24
"""A bound on msgpack's framing of one ``[kind, user, ts_ms, text]`` beyond user and text."""


def _plaintext_size(post: RoomPost) -> int:
    _, user, _, text = post.event
    return len(user.encode("utf-8")) + len(text.encode("utf-8")) + EVENT_FRAMING_BYTES


class _Run:
    __slots__ = ("cipher", "events", "first_seq", "size", "topic")

    def __init__(self, post: RoomPost, size: int) -> None:
        self.topic = post.topic
        self.cipher = post.cipher
        self.first_seq = post.seq
        self.events = [post.event]
        self.size = size

    def takes(self, post: RoomPost, size: int) -> bool:
        return (
            post.cipher is self.cipher
            and post.seq == self.first_seq + len(self.events)
            and len(self.events) < MAX_BATCH_EVENTS
            and self.size + size <= BATCH_PLAINTEXT_BYTES
        )

    def publication(self) -> Publish:
        return Publish(self.topic, self.cipher.seal(self.topic, self.first_seq, self.events))


def seal_batches(outbox: list[Outgoing]) -> list[Unicast | Publish]:
    """The outbox with its `RoomPost`s sealed into publications, in seq order per room.

    Unicasts and ready publications keep their order; sealed runs follow them (they
    leave on another socket, so order between the two means nothing to a peer).
    """
    ready: list[Unicast | Publish] = []
    sealed: list[Publish] = []
    open_runs: dict[bytes, _Run] = {}
    for item in outbox:
        if not isinstance(item, RoomPost):
            ready.append(item)
            continue
        size = _plaintext_size(item)
        run = open_runs.get(item.topic)
        if run is not None and run.takes(item, size):
            run.events.append(item.event)
            run.size += size
            continue
        if run is not None:
            sealed.append(run.publication())
        open_runs[item.topic] = _Run(item, size)
    sealed.extend(run.publication() for run in open_runs.values())
    return ready + sealed
