"""The demo console's one-line fleet summary: vehicles on the road, on and off route,
late, signal lost, open alerts, pings stored per second, pings missing lately."""

from __future__ import annotations

import time
from datetime import datetime

import httpx
import psycopg

from store.seqgaps import RECENT_MINUTES
from store.vehicles import FLEET_SUMMARY_SQL

STORED_METRIC = "routewatch_pings_stored_total"


def pings_stored(metrics_text: str) -> float | None:
    """The engine's stored-pings counter in a Prometheus text exposition."""
    for line in metrics_text.splitlines():
        if line.startswith(STORED_METRIC + " "):
            return float(line.split()[1])
    return None


class FleetWatch:
    def __init__(self, database_url: str, base_url: str) -> None:
        self.database_url = database_url
        self.base_url = base_url
        self._stored: tuple[float, float] | None = None  # (monotonic time, counter)

    def _rate(self) -> str:
        try:
            text = httpx.get(f"{self.base_url}/metrics", timeout=2.0).text
        except httpx.HTTPError:
            return "?"
        stored, now = pings_stored(text), time.monotonic()
        if stored is None:
            return "?"
        previous, self._stored = self._stored, (now, stored)
        if previous is None or now <= previous[0]:
            return "…"
        return f"{(stored - previous[1]) / (now - previous[0]):,.0f}"

    def line(self) -> str:
        clock = datetime.now().strftime("%H:%M:%S")
        try:
            with psycopg.connect(
                self.database_url, connect_timeout=2, options="-c statement_timeout=2000"
            ) as conn:
                row = conn.execute(FLEET_SUMMARY_SQL).fetchone()
        except psycopg.Error as exc:
            return f"{clock}  fleet: the database did not answer ({type(exc).__name__})"
        assert row is not None
        on_road, on_route, off_route, late, lost, alerts, missing = row
        text = (
            f"{clock}  fleet: {on_road} on the road · {on_route} on route · "
            f"{off_route} off route · {late} late · {lost} signal lost · "
            f"{alerts} open alerts · {self._rate()} pings/s stored"
        )
        if missing:
            text += f" · {missing} pings missing ({RECENT_MINUTES} min)"
        return text
