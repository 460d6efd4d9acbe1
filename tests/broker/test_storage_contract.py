"""What every `Storage` implementation promises, run against each of them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from zchat.broker.sqlite_storage import SqliteStorage
from zchat.broker.storage import MemoryStorage, Storage, StoredDirect, StoredEvent, StoredRoom


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    opened: Storage = (
        MemoryStorage() if request.param == "memory" else SqliteStorage(tmp_path / "db.sqlite3")
    )
    yield opened
    opened.close()


def test_a_rolled_back_request_leaves_no_trace_and_the_others_stay(store: Storage) -> None:
    store.add_room("room1")
    store.savepoint()
    store.append_event(StoredEvent("room1", 1, "join", "alice", 1, ""))
    store.release_savepoint()

    store.savepoint()
    store.add_account("bob", "hash")
    store.add_room("room2")
    store.append_event(StoredEvent("room1", 2, "msg", "alice", 2, "half-way"))
    store.add_direct(StoredDirect(0, "alice", "bob", 2, "hi", msg_id="d1"))
    store.add_resume_token("token", "alice", expires_ms=10)
    store.rollback_to_savepoint()

    assert store.account("bob") is None
    assert store.rooms() == [StoredRoom("room1", 1)]
    assert [e.seq for e in store.events("room1", 1, 10, 10)] == [1]
    assert store.count_undelivered("bob") == 0
    assert store.use_resume_token("token", now_ms=0, expires_ms=10) is None
    store.savepoint()  # what was undone can be written again
    store.add_room("room2")
    store.append_event(StoredEvent("room2", 1, "msg", "alice", 3, "again"))
    store.append_event(StoredEvent("room1", 2, "msg", "alice", 3, "again"))
    store.add_direct(StoredDirect(0, "alice", "bob", 3, "hi", msg_id="d1"))
    store.release_savepoint()
    store.commit()
    assert store.rooms() == [StoredRoom("room1", 2), StoredRoom("room2", 1)]
    assert store.count_undelivered("bob") == 1


def test_a_request_that_writes_nothing_can_be_rolled_back(store: Storage) -> None:
    store.savepoint()
    store.rollback_to_savepoint()
    store.savepoint()
    store.release_savepoint()
    store.add_room("room1")
    store.commit()
    assert store.rooms() == [StoredRoom("room1", 0)]


def test_a_rooms_newest_key_id_is_kept_unless_its_request_is_undone(store: Storage) -> None:
    store.add_room("room1")
    assert store.rooms() == [StoredRoom("room1", 0, kid=0)]
    store.set_room_kid("ROOM1", 7)
    store.savepoint()
    store.set_room_kid("room1", 8)
    store.rollback_to_savepoint()
    store.commit()
    assert store.rooms() == [StoredRoom("room1", 0, kid=7)]
