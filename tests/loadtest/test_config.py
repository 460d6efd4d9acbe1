"""Option checks and the split of members over rooms and workers (pure)."""

from __future__ import annotations

import os

import pytest

from zchat.loadtest.config import ConfigError, LoadConfig, assign, is_loopback


def config(**changes: object) -> LoadConfig:
    base: dict[str, object] = {
        "rooms": 2,
        "members": 3,
        "duration_s": 2.0,
        "rate": 50.0,
        "spawn_broker": True,
    }
    base.update(changes)
    return LoadConfig(**base)  # type: ignore[arg-type]


def test_a_sensible_run_validates() -> None:
    assert config().validate().clients == 6


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rate": None}, "exactly one of --rate and --saturate"),
        ({"saturate": True}, "exactly one of --rate and --saturate"),
        ({"rooms": 0}, "at least 1"),
        ({"duration_s": 0.0}, "--duration"),
        ({"duration_s": 1e6}, "--duration"),
        ({"size": 10}, "--size"),
        ({"size": 5000}, "--size"),
        ({"rate": -1.0}, "negative"),
        ({"spawn_broker": False}, "--spawn-broker or --host"),
        ({"host": "127.0.0.1", "port": 5000}, "--spawn-broker or --host"),
        ({"spawn_broker": False, "host": "127.0.0.1"}, "--host needs --port"),
        ({"server_key": "short"}, "40-character"),
        ({"password": "short"}, "8 to 1024"),
        ({"prefix": "bad prefix"}, "--prefix"),
        ({"members": 30_000}, "at most"),
        ({"echo_window": True}, "--echo-window goes with --saturate"),
    ],
)
def test_nonsense_is_refused_with_a_reason(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config(**changes).validate()


def test_rate_zero_means_idle_clients() -> None:
    assert config(rate=0.0).validate().idle
    assert not config().idle


def test_a_sample_of_deliveries_is_opened_for_latency_unless_asked_otherwise() -> None:
    assert config().decrypt_interval == 8
    assert config(rate=None, saturate=True).decrypt_interval == 8
    assert config(decrypt_every=1).decrypt_interval == 1
    assert config(decrypt_every=3).decrypt_interval == 3


def test_every_member_is_placed_once_and_rooms_spread_over_workers() -> None:
    run = config(rooms=3, members=4, processes=2, login_storm=3).validate()
    plan = assign(run)
    assert len(plan) == 2
    specs = [spec for worker in plan for spec in worker]
    assert sorted(spec.index for spec in specs) == list(range(15))
    assert len({spec.user for spec in specs}) == 15
    chatters = [spec for spec in specs if spec.room is not None]
    assert len(chatters) == 12 and len({spec.room for spec in chatters}) == 3
    for worker in plan:
        assert len({spec.room for spec in worker if spec.room}) == 3


def test_never_more_workers_than_members() -> None:
    assert config(rooms=1, members=1, processes=8).worker_count == 1
    assert config(rooms=50, members=100).worker_count >= 10


def test_a_latency_run_leaves_a_spawned_broker_a_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert config(rooms=10, members=50).worker_count == 3
    assert config(rooms=10, members=50, rate=None, saturate=True).worker_count == 4
    assert config(rooms=10, members=50, spawn_broker=False, host="127.0.0.1").worker_count == 4
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert config(rooms=10, members=50).worker_count == 1


def test_loopback_names() -> None:
    assert is_loopback("localhost") and is_loopback("127.0.0.1") and is_loopback("[::1]")
    assert not is_loopback("10.0.0.1") and not is_loopback("example.org")
