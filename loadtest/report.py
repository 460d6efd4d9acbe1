"""The end-of-run table, the JSON file, and the progress bar on stderr."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TextIO

from .stats import Figures


def _n(value: float) -> str:
    return f"{value:,.0f}"


def render_table(figures: Figures) -> str:
    """A readable table of a run's figures."""
    rate = (
        "saturate"
        if figures.mode == "saturate"
        else ("idle" if figures.mode == "idle" else f"{_n(figures.offered_rate or 0)} msg/s")
    )
    latency = figures.latency_ms
    rows: list[tuple[str, str]] = [
        ("population", f"{figures.rooms} rooms x {figures.members} members = {figures.clients}"),
        (
            "load",
            f"{rate}, {figures.size} B, {figures.window_s:.1f} s measured, "
            f"{figures.processes} processes",
        ),
        (
            "log in + join all",
            f"{figures.login_join_s:.1f} s ({_n(figures.joined)} joined"
            + (
                f", {_n(figures.registered)} accounts registered first"
                if figures.registered
                else ""
            )
            + ")",
        ),
        ("accepted", f"{_n(figures.accepted_per_s)} msg/s ({_n(figures.accepted)})"),
        (
            "deliveries",
            f"{_n(figures.deliveries_per_s)} /s ({_n(figures.deliveries)})"
            + (
                f", {figures.events_per_publication:.1f} events per publication"
                if figures.events_per_publication
                else ""
            ),
        ),
        (
            "latency ms",
            f"p50 {latency['p50']:.2f}  p90 {latency['p90']:.2f}  p99 {latency['p99']:.2f}  "
            f"p99.9 {latency['p999']:.2f}  max {latency['max']:.2f}  (n={_n(latency['count'])})",
        ),
        (
            "expected / delivered",
            f"{_n(figures.expected)} / {_n(figures.delivered)} "
            f"(recovered {_n(figures.recovered)} from {_n(figures.gaps)} gaps)",
        ),
        (
            "lost",
            _n(figures.lost)
            + ("  (history not available)" if figures.lost and figures.history_unavailable else ""),
        ),
    ]
    if figures.corrupt or figures.duplicates:
        rows.append(("corrupt / duplicates", f"{figures.corrupt} / {figures.duplicates}"))
    if figures.storm is not None:
        storm = figures.storm
        rows.append(
            (
                "login storm",
                f"{_n(storm['clients'])} logins: p50 {storm['p50']:.0f} ms, "
                f"p99 {storm['p99']:.0f} ms, max {storm['max']:.0f} ms",
            )
        )
    if figures.broker_cpu_s is not None:
        per = figures.broker_cpu_us_per_delivery
        rows.append(
            (
                "broker CPU",
                f"{figures.broker_cpu_s:.2f} s"
                + (f", {per:.2f} us per delivery" if per is not None else "")
                + (
                    " ("
                    + ", ".join(
                        f"{name} {spent:.2f} s"
                        for name, spent in sorted(figures.broker_cpu_by_thread.items())
                        if spent >= 0.01
                    )
                    + ")"
                    if figures.broker_cpu_by_thread
                    else ""
                ),
            )
        )
    if figures.broker_rss_kb is not None:
        per_client = figures.broker_rss_per_client_kb
        rows.append(
            (
                "broker peak RSS",
                f"{figures.broker_rss_kb / 1024:.1f} MiB"
                + (f", {per_client:.1f} KiB per client" if per_client is not None else ""),
            )
        )
    for label, errors in (
        ("send errors", figures.send_errors),
        ("login errors", figures.login_errors),
    ):
        if errors:
            rows.append(
                (label, ", ".join(f"{code} {count}" for code, count in sorted(errors.items())))
            )
    if not figures.complete:
        rows.append(("NOTE", "partial run: stopped early, figures cover what was done"))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def write_json(path: Path, figures: Figures) -> None:
    path.write_text(json.dumps(figures.as_json(), indent=2, sort_keys=True) + "\n")


class ProgressBar:
    """One line on stderr, redrawn at most a few times a second."""

    WIDTH = 24

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        """On a terminal the line is redrawn in place; elsewhere a line is added every 2 s."""
        self._last = 0.0
        self._shown = False

    def show(self, phase: str, done: float, total: float, detail: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < (0.2 if self.tty else 2.0):
            return
        self._last = now
        fraction = min(max(done / total, 0.0), 1.0) if total > 0 else 0.0
        filled = int(fraction * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        line = f"{phase:<8} [{bar}] {fraction * 100:5.1f}%  {detail}"
        if self.tty:
            self.stream.write(f"\r\x1b[2K{line}")
            self._shown = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False
