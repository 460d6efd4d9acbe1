"""Merging worker figures, the latency histogram, the table and the JSON keys (pure)."""

from __future__ import annotations

import json
from pathlib import Path

from zchat.loadtest.report import render_table, write_json
from zchat.loadtest.stats import BrokerUsage, WorkerResult, new_histogram, record_us, summarise
from zchat.loadtest.worker import message_text, read_text


def result(latencies_us: list[int], **changes: object) -> WorkerResult:
    histogram = new_histogram()
    for value in latencies_us:
        record_us(histogram, value)
    fields: dict[str, object] = {
        "members": 3,
        "joined": 3,
        "logged_in": 3,
        "registered": 0,
        "sent": 100,
        "accepted": 100,
        "accepted_in_window": 90,
        "deliveries": 300,
        "deliveries_in_window": 270,
        "publications": 60,
        "expected": 303,
        "received": 300,
        "recovered": 3,
        "duplicates": 0,
        "gaps": 1,
        "corrupt": 0,
        "unopened": 0,
        "decrypted": 300,
        "history_requests": 1,
        "history_unavailable": False,
        "send_errors": {"rate_limited": 2},
        "login_errors": {},
        "latency": histogram.encode(),
        "storm_latency": b"",
        "complete": True,
    }
    fields.update(changes)
    return WorkerResult(**fields)  # type: ignore[arg-type]


def summary(results: list[WorkerResult], broker: BrokerUsage | None = None):  # type: ignore[no-untyped-def]
    return summarise(
        results=results,
        rooms=2,
        members=3,
        mode="rate",
        offered_rate=50.0,
        size=100,
        duration_s=2.0,
        window_s=2.0,
        login_join_s=1.5,
        storm_clients=0,
        broker=broker,
    )


def test_workers_add_up_and_latency_merges() -> None:
    figures = summary(
        [result([1000] * 150 + [50_000]), result([2000] * 49, send_errors={"rate_limited": 1})],
        BrokerUsage(cpu_s=0.054, rss_kb=60_000, peak_rss_kb=80_000, baseline_rss_kb=30_000),
    )
    assert figures.accepted_per_s == 90.0
    assert figures.deliveries_per_s == 270.0
    assert figures.events_per_publication == 5.0, "600 deliveries in 120 publications"
    assert figures.expected == 606 and figures.delivered == 606 and figures.lost == 0
    assert figures.send_errors == {"rate_limited": 3}
    assert figures.latency_ms["p50"] == 1.0
    assert figures.latency_ms["p99"] == 2.0
    assert abs(figures.latency_ms["max"] - 50.0) < 0.1
    assert figures.latency_ms["count"] == 200
    assert abs(figures.broker_cpu_us_per_delivery - 100.0) < 1e-6  # type: ignore[operator]
    assert figures.broker_rss_kb == 80_000
    assert figures.broker_rss_per_client_kb == 5_000.0


def test_lost_counts_what_neither_live_nor_history_brought() -> None:
    figures = summary([result([1000], recovered=0, history_unavailable=True)])
    assert figures.lost == 3 and figures.history_unavailable
    assert "lost" in render_table(figures) and "history not available" in render_table(figures)


def test_a_partial_worker_makes_a_partial_run() -> None:
    figures = summary([result([1000]), result([1000], complete=False)])
    assert not figures.complete
    assert "partial run" in render_table(figures)


def test_json_has_the_documented_keys(tmp_path: Path) -> None:
    figures = summary([result([1000, 2000])], BrokerUsage(1.0, 1, 2, 0))
    path = tmp_path / "run.json"
    write_json(path, figures)
    data = json.loads(path.read_text())
    for key in (
        "deliveries_per_s",
        "accepted_per_s",
        "lost",
        "broker_cpu_us_per_delivery",
        "broker_rss_kb",
        "login_join_s",
    ):
        assert key in data
    assert set(data["latency_ms"]) >= {"p50", "p90", "p99", "p999", "max"}


def test_table_shows_the_headline_figures() -> None:
    table = render_table(summary([result([1000])], BrokerUsage(1.0, 10, 20, 0)))
    for label in ("accepted", "deliveries", "latency ms", "p99.9", "lost", "broker CPU"):
        assert label in table


def test_message_text_carries_time_and_sender_at_the_exact_size() -> None:
    text = message_text(1_764_000_000_123_456, 42, 100)
    assert len(text.encode()) == 100
    assert read_text(text, 100) == (1_764_000_000_123_456, 42)
    assert read_text(text[:-1] + "x", 100) is None
    assert read_text(text, 101) is None
