"""Counting what a worker saw, merging the workers, and the figures of a run.

Pure: workers fill a `Tally`, turn it into a picklable `WorkerResult`, and the
coordinator merges those into one `Figures` with `summarise`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

LATENCY_MAX_US = 120_000_000
"""Latencies are kept in microseconds, up to two minutes, to 3 significant figures."""
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}


def new_histogram() -> HdrHistogram:
    return HdrHistogram(1, LATENCY_MAX_US, 3)


def record_us(histogram: HdrHistogram, value_us: int) -> None:
    """Record one latency, clamped into the histogram's range."""
    histogram.record_value(min(max(value_us, 1), LATENCY_MAX_US))


def merge_histograms(encoded: list[bytes]) -> HdrHistogram:
    merged = new_histogram()
    for blob in encoded:
        if blob:
            merged.decode_and_add(blob)
    return merged


def latency_ms(histogram: HdrHistogram) -> dict[str, float]:
    """p50, p90, p99, p999 and max in milliseconds (0.0 when nothing was measured)."""
    if histogram.get_total_count() == 0:
        return {**dict.fromkeys(PERCENTILES, 0.0), "max": 0.0, "count": 0}
    figures: dict[str, float] = {
        name: histogram.get_value_at_percentile(pct) / 1000 for name, pct in PERCENTILES.items()
    }
    figures["max"] = histogram.get_max_value() / 1000
    figures["count"] = histogram.get_total_count()
    return figures


@dataclass(slots=True)
class Tally:
    """What one worker counts while it runs (a live, mutable object)."""

    sent: int = 0
    accepted: int = 0
    deliveries: int = 0
    """Room events received on the members' SUB sockets with the next expected seq or later
    (a publication carries a batch of consecutive events; each new one counts)."""
    publications: int = 0
    """Sealed publications that brought new events (each carries a batch of them)."""
    decrypted: int = 0
    """Publications opened for the latency sample."""
    corrupt: int = 0
    """Opened publications whose box failed, or events whose text was not what the sender
    wrote."""
    unopened: int = 0
    """Sampled publications for which no key was held."""
    duplicates: int = 0
    gaps: int = 0
    recovered: int = 0
    history_requests: int = 0
    history_unavailable: bool = False
    send_errors: Counter[str] = field(default_factory=Counter)
    login_errors: Counter[str] = field(default_factory=Counter)
    joined: int = 0
    logged_in: int = 0
    registered: int = 0
    latency: HdrHistogram = field(default_factory=new_histogram)
    storm_latency: HdrHistogram = field(default_factory=new_histogram)
    """Time from sending a storm client's login to its reply."""

    def snapshot(self) -> tuple[int, int, int]:
        return self.sent, self.accepted, self.deliveries


@dataclass(frozen=True, slots=True)
class WorkerResult:
    """A worker's final figures, sent to the coordinator (picklable)."""

    members: int
    joined: int
    logged_in: int
    registered: int
    sent: int
    accepted: int
    accepted_in_window: int
    deliveries: int
    deliveries_in_window: int
    publications: int
    expected: int
    received: int
    """Distinct expected events received live."""
    recovered: int
    duplicates: int
    gaps: int
    corrupt: int
    unopened: int
    decrypted: int
    history_requests: int
    history_unavailable: bool
    send_errors: dict[str, int]
    login_errors: dict[str, int]
    latency: bytes
    storm_latency: bytes
    complete: bool
    """False when the run was cut short (Ctrl-C or a deadline): the figures are partial."""


@dataclass(frozen=True, slots=True)
class BrokerUsage:
    """What the spawned broker spent: CPU over the measured window, and memory."""

    cpu_s: float
    rss_kb: int
    peak_rss_kb: int
    baseline_rss_kb: int
    """RSS before any load client connected."""
    cpu_by_thread: dict[str, float] = field(default_factory=dict)
    """CPU seconds in the window per broker thread name (event loop, ZeroMQ I/O, hashers)."""


@dataclass(frozen=True, slots=True)
class Figures:
    """Everything the report shows, as plain numbers."""

    rooms: int
    members: int
    clients: int
    mode: str
    offered_rate: float | None
    size: int
    processes: int
    duration_s: float
    window_s: float
    accepted: int
    accepted_per_s: float
    deliveries: int
    deliveries_per_s: float
    events_per_publication: float | None
    """Deliveries per sealed publication received: how much the broker's batching saved."""
    expected: int
    delivered: int
    recovered: int
    lost: int
    gaps: int
    duplicates: int
    corrupt: int
    decrypted: int
    history_unavailable: bool
    latency_ms: dict[str, float]
    login_join_s: float
    joined: int
    registered: int
    storm: dict[str, float] | None
    send_errors: dict[str, int]
    login_errors: dict[str, int]
    broker_cpu_s: float | None
    broker_cpu_by_thread: dict[str, float] | None
    broker_cpu_us_per_delivery: float | None
    broker_rss_kb: int | None
    broker_rss_per_client_kb: float | None
    complete: bool

    def as_json(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def summarise(
    *,
    results: list[WorkerResult],
    rooms: int,
    members: int,
    mode: str,
    offered_rate: float | None,
    size: int,
    duration_s: float,
    window_s: float,
    login_join_s: float,
    storm_clients: int,
    broker: BrokerUsage | None,
) -> Figures:
    """Merge the workers' results into the run's figures."""
    window = window_s if window_s > 0 else 0.0

    def total(name: str) -> int:
        return sum(int(getattr(result, name)) for result in results)

    def per_s(count: int) -> float:
        return count / window if window else 0.0

    deliveries_in_window = total("deliveries_in_window")
    expected = total("expected")
    delivered = total("received") + total("recovered")
    send_errors: Counter[str] = Counter()
    login_errors: Counter[str] = Counter()
    for result in results:
        send_errors.update(result.send_errors)
        login_errors.update(result.login_errors)
    storm = None
    if storm_clients:
        storm_hist = merge_histograms([result.storm_latency for result in results])
        storm = {"clients": storm_clients, **latency_ms(storm_hist)}
    cpu_per_delivery = None
    if broker is not None and deliveries_in_window:
        cpu_per_delivery = broker.cpu_s * 1e6 / deliveries_in_window
    clients = rooms * members
    return Figures(
        rooms=rooms,
        members=members,
        clients=clients,
        mode=mode,
        offered_rate=offered_rate,
        size=size,
        processes=len(results),
        duration_s=duration_s,
        window_s=window,
        accepted=total("accepted_in_window"),
        accepted_per_s=per_s(total("accepted_in_window")),
        deliveries=deliveries_in_window,
        deliveries_per_s=per_s(deliveries_in_window),
        events_per_publication=(
            total("deliveries") / total("publications") if total("publications") else None
        ),
        expected=expected,
        delivered=delivered,
        recovered=total("recovered"),
        lost=max(expected - delivered, 0),
        gaps=total("gaps"),
        duplicates=total("duplicates"),
        corrupt=total("corrupt"),
        decrypted=total("decrypted"),
        history_unavailable=any(result.history_unavailable for result in results),
        latency_ms=latency_ms(merge_histograms([result.latency for result in results])),
        login_join_s=login_join_s,
        joined=total("joined"),
        registered=total("registered"),
        storm=storm,
        send_errors=dict(send_errors),
        login_errors=dict(login_errors),
        broker_cpu_s=broker.cpu_s if broker else None,
        broker_cpu_by_thread=broker.cpu_by_thread if broker else None,
        broker_cpu_us_per_delivery=cpu_per_delivery,
        broker_rss_kb=broker.peak_rss_kb if broker else None,
        broker_rss_per_client_kb=(
            (broker.rss_kb - broker.baseline_rss_kb) / clients if broker and clients else None
        ),
        complete=bool(results) and all(result.complete for result in results),
    )
