"""Names that pass for others: look-alike accounts and rooms are refused, with one lookup."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker.core import CoreHarness, error_code
from zchat.broker.handlers import NewAccount
from zchat.broker.outgoing import Failure
from zchat.broker.sqlite_storage import SqliteStorage
from zchat.broker.storage import MemoryStorage, Storage
from zchat.protocol import ErrorCode, Join, ListRooms, Register
from zchat.protocol.errors import InvalidName

CYRILLIC_A = "\u0430"


def test_registering_a_look_alike_of_an_account_is_name_taken(core: CoreHarness) -> None:
    conn = core.connection("c")
    core.ok(conn, NewAccount("prashant", "hash"))
    for look_alike in ("prashan\u0442", "PRASHANT", "pr\uff41shant"):  # a Cyrillic t
        assert error_code(core.call(conn, NewAccount(look_alike, "hash"))) == ErrorCode.NAME_TAKEN
    assert core.storage.account("pr\uff41shant") is None


def test_creating_a_look_alike_of_a_room_is_name_taken(core: CoreHarness) -> None:
    alice = core.login("alice")
    core.ok(alice, Join("ops"))
    reply = core.call(alice, Join("0ps"))
    assert error_code(reply) == ErrorCode.NAME_TAKEN
    assert isinstance(reply, Failure) and "[ops]" in reply.error.message
    assert error_code(core.call(alice, Join("defau1t"))) == ErrorCode.NAME_TAKEN
    rooms = core.ok(alice, ListRooms())["rooms"]
    assert [room["name"] for room in rooms] == ["default", "ops"]  # type: ignore[index]


def test_an_existing_room_is_joined_by_any_spelling_of_its_name(core: CoreHarness) -> None:
    alice = core.login("alice")
    core.ok(alice, Join("ops"))
    assert core.ok(alice, Join("OPS"))["room"] == "ops"


@pytest.mark.parametrize("room", ["(history)", "you", "d\u0435v"])  # a Cyrillic e
def test_a_room_named_like_the_clients_words_or_mixing_scripts_is_not_created(
    core: CoreHarness, room: str
) -> None:
    alice = core.login("alice")
    assert error_code(core.call(alice, Join(room))) == ErrorCode.INVALID_NAME


def test_a_mixed_script_or_reserved_user_name_is_refused_before_anything_is_hashed() -> None:
    for name in ("pr" + CYRILLIC_A + "shant", "(history)", "you", "Y0U"):
        with pytest.raises(InvalidName):
            Register(name, "password1")


# --- both stores agree -------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    storage: Storage = (
        MemoryStorage() if request.param == "memory" else SqliteStorage(tmp_path / "db.sqlite3")
    )
    yield storage
    storage.close()


def test_the_stores_find_look_alikes_of_accounts_and_rooms(store: Storage) -> None:
    assert store.add_account("Prashant", "h")
    store.add_room("ops")
    assert store.account_like("pr" + CYRILLIC_A + "shant") == "Prashant"
    assert store.account_like("prashant") == "Prashant"
    assert store.account_like("prakash") is None
    assert store.room_like("0PS") == "ops"
    assert store.room_like("dev") is None


def test_a_version_3_database_gets_skeletons_for_the_names_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    SqliteStorage(path).close()
    old = sqlite3.connect(path)  # back to version 3: what an older broker left
    old.executescript(
        """
        DROP INDEX accounts_skeleton; DROP INDEX rooms_skeleton;
        ALTER TABLE accounts DROP COLUMN skeleton; ALTER TABLE rooms DROP COLUMN skeleton;
        INSERT INTO accounts VALUES ('bob', 'Bob', 'hash');
        INSERT INTO rooms (name_key, name) VALUES ('ops', 'ops');
        PRAGMA user_version=3;
        """
    )
    old.close()
    store = SqliteStorage(path)
    assert store.account_like("B\u043eb") == "Bob"  # a Cyrillic o
    assert store.room_like("0ps") == "ops"
    store.close()
    plan = sqlite3.connect(path).execute(
        "EXPLAIN QUERY PLAN SELECT name FROM accounts WHERE skeleton = ?", ("bob",)
    )
    assert "accounts_skeleton" in " ".join(str(row) for row in plan)  # one indexed lookup
