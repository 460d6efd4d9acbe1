"""Run one benchmark scenario N times and print the median and spread of its figures.

    python benchmarks/run.py fanout            # 3 runs, raw JSON in benchmarks/out/
    python benchmarks/run.py idle --runs 1

Each run is the real `zchat-load --spawn-broker` (a fresh broker on free
loopback ports, load accounts reused from the cache). `fanout` also measures
the bare-pyzmq ceiling (`ceiling.py`, same rooms, members and size) right
before each of its runs, so the ratio compares like with like.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
LOAD = [sys.executable, "-m", "zchat.loadtest.cli", "--spawn-broker"]

SCENARIOS: dict[str, list[str]] = {
    "fanout": ["--rooms", "10", "--members", "50", "--duration", "10", "--saturate"],
    # One generator process: a latency run must leave the broker a core of its own on a
    # 2-core machine (with two, six busy threads share two cores and requests stall).
    "fanout-2000": [
        "--rooms",
        "10",
        "--members",
        "50",
        "--duration",
        "10",
        "--rate",
        "2000",
        "--processes",
        "1",
    ],
    "bigroom": [
        "--rooms",
        "1",
        "--members",
        "500",
        "--duration",
        "10",
        "--saturate",
        "--echo-window",
        "--window",
        "1",
    ],
    "pairs": ["--rooms", "250", "--members", "2", "--duration", "10", "--saturate"],
    "idle": ["--rooms", "100", "--members", "50", "--duration", "5", "--rate", "0"],
    "logins": [
        "--rooms",
        "1",
        "--members",
        "20",
        "--duration",
        "75",
        "--rate",
        "200",
        "--login-storm",
        "500",
    ],
}
"""The load of each scenario; `idle` is 5,000 connected clients, `logins` one chatting room
of 20 while 500 other clients log in at once (a sixth of the way in; 500 Argon2 checks take
about a minute on 2 cores, so the window covers the whole storm)."""

CEILING = ["--rooms", "10", "--members", "50", "--size", "100", "--duration", "5"]

FIGURES = (
    ("accepted_per_s", "accepted msg/s"),
    ("deliveries_per_s", "deliveries/s"),
    ("events_per_publication", "events per publication"),
    ("latency_ms.p50", "p50 ms"),
    ("latency_ms.p99", "p99 ms"),
    ("latency_ms.p999", "p99.9 ms"),
    ("latency_ms.max", "max ms"),
    ("lost", "lost"),
    ("login_join_s", "log in + join s"),
    ("broker_cpu_us_per_delivery", "broker us/delivery"),
    ("broker_rss_kb", "broker peak RSS KiB"),
    ("broker_rss_per_client_kb", "broker RSS KiB/client"),
    ("storm.p99", "storm login p99 ms"),
    ("ceiling_deliveries_per_s", "bare pyzmq deliveries/s"),
    ("ceiling_ratio", "deliveries / ceiling"),
)


def pick(data: dict[str, object], dotted: str) -> float | None:
    value: object = data
    for part in dotted.split("."):
        if not isinstance(value, dict) or value.get(part) is None:
            return None
        value = value[part]
    return float(value) if isinstance(value, int | float) else None


def ceiling(run: int) -> float:
    path = OUT / f"ceiling-{run}.json"
    subprocess.run(  # noqa: S603 (our own interpreter and script)
        [sys.executable, str(HERE / "ceiling.py"), *CEILING, "--json", str(path)], check=True
    )
    return float(json.loads(path.read_text())["deliveries_per_s"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--runs", type=int, default=3)
    args, extra = parser.parse_known_args()  # the rest, after --, goes to zchat-load
    args.extra = [option for option in extra if option != "--"]
    OUT.mkdir(exist_ok=True)
    runs: list[dict[str, object]] = []
    for run in range(1, args.runs + 1):
        path = OUT / f"{args.scenario}-{run}.json"
        command = [*LOAD, *SCENARIOS[args.scenario], *args.extra, "--json", str(path)]
        bare = ceiling(run) if args.scenario == "fanout" else None
        print(f"run {run}/{args.runs}: {' '.join(command[2:])}", file=sys.stderr, flush=True)
        subprocess.run(command, check=False)  # noqa: S603 (our own interpreter and options)
        data = json.loads(path.read_text())
        if bare:
            data["ceiling_deliveries_per_s"] = bare
            data["ceiling_ratio"] = float(data["deliveries_per_s"]) / bare  # type: ignore[arg-type]
        runs.append(data)
    print(f"\n{args.scenario}: median of {len(runs)} runs [min - max]")
    summary: dict[str, dict[str, float]] = {}
    for key, label in FIGURES:
        values = [v for v in (pick(data, key) for data in runs) if v is not None]
        if not values:
            continue
        summary[key] = {
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
        }
        print(
            f"  {label:<26} {statistics.median(values):>12,.2f}  "
            f"[{min(values):,.2f} - {max(values):,.2f}]"
        )
    (OUT / f"{args.scenario}-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
