"""``routewatch demo`` end to end, from scratch: private PostgreSQL and Mosquitto (the
configured URLs point at closed ports), migrations, engine, API and a small simulated
fleet; the API lists the fleet with fresh positions within a minute; SIGINT stops every
process the demo started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest

from routewatch import services
from tests.processes import ProcessOutput, stop_politely

VEHICLES = 5
FRESH_S = 60.0  # a position this recent (wall clock) counts as live
LISTED_TIMEOUT_S = 60.0  # every simulated vehicle is listed within a minute
# A simulated vehicle reports only once it departs: planned starts are spread over 60 s
# and departures jitter by up to 120 s more (simulator.scenario), plus a ping interval.
ALL_MOVING_TIMEOUT_S = 200.0
READY_TIMEOUT_S = 120.0
SUMMARY_WAIT_S = 30.0  # the demo prints one every 10 s


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (by /proc parent links)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], ProcessOutput]]:
    env = {
        **os.environ,
        "ROUTEWATCH_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{services.free_port()}/demo",
        "ROUTEWATCH_MQTT_URL": f"mqtt://127.0.0.1:{services.free_port()}",
        "ROUTEWATCH_STATE_DIR": str(tmp_path / "state"),
        "ROUTEWATCH_LOG_JSON": "true",
    }
    cmd = [
        sys.executable,
        "-m",
        "routewatch.cli",
        "demo",
        "--vehicles",
        str(VEHICLES),
        "--seed",
        "3",
        "--faults",
        "none",
        "--port",
        str(services.free_port()),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True, bufsize=1)
    try:
        yield proc, ProcessOutput(proc)
    finally:
        # A failed test still stops the demo the polite way, so private services go too.
        stop_politely(proc)


@pytest.mark.slow
def test_demo_runs_the_fleet_and_stops_cleanly(
    demo: tuple[subprocess.Popen[str], ProcessOutput],
) -> None:
    proc, out = demo
    base_url = out.wait_for(r"API docs\s+(\S+)/docs", READY_TIMEOUT_S).group(1)
    token = out.wait_for(r"supervisor token\s+(\S+)", 5).group(1)
    database_url = out.wait_for(r"database\s+(\S+)", 5).group(1)
    mqtt_url = out.wait_for(r"MQTT broker\s+(\S+)", 5).group(1)
    log_path = Path(out.wait_for(r"logs\s+(\S+)", 5).group(1))

    def vehicles() -> list[dict[str, object]]:
        assert proc.poll() is None, "demo exited early"
        response = httpx.get(
            f"{base_url}/v1/vehicles", headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        assert response.status_code == 200, response.text
        return list(response.json())

    deadline = time.monotonic() + LISTED_TIMEOUT_S
    while len(listed := vehicles()) < VEHICLES and time.monotonic() < deadline:
        time.sleep(1)
    assert len(listed) == VEHICLES, f"vehicles listed within a minute: {listed}"

    deadline = time.monotonic() + ALL_MOVING_TIMEOUT_S
    fresh: list[dict[str, object]] = []
    while len(fresh) < VEHICLES and time.monotonic() < deadline:
        now = datetime.now(UTC)
        fresh = [
            v
            for v in vehicles()
            if v.get("ts")
            and v.get("lat") is not None
            and v.get("lon") is not None
            and abs((now - datetime.fromisoformat(str(v["ts"]))).total_seconds()) < FRESH_S
        ]
        time.sleep(1)
    assert len(fresh) == VEHICLES, f"only {len(fresh)} vehicles with fresh positions: {fresh}"

    # The console: the URLs, then one summary line at a time; the children's logs (every
    # order transition, trip, batch) go to the file whose path was printed.
    out.wait_for(rf"fleet: {VEHICLES} on the road · \d+ on route", SUMMARY_WAIT_S)
    assert not [line for line in out.seen if "routewatch.commands.serve" in line]
    assert "API listening" in log_path.read_text()

    started = _descendants(proc.pid)
    assert len(started) >= 3  # serve, its API child, simulate (+ private mosquitto)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    time.sleep(0.5)
    assert not [pid for pid in started if _alive(pid)], "processes left after SIGINT"

    pg_port = int(psycopg.conninfo.conninfo_to_dict(database_url)["port"] or 0)
    _, mqtt_port = services.mqtt_address(mqtt_url)
    assert not services.tcp_open("127.0.0.1", pg_port), "private PostgreSQL still running"
    assert not services.tcp_open("127.0.0.1", mqtt_port), "private mosquitto still running"
    assert not services.tcp_open("127.0.0.1", int(base_url.rsplit(":", 1)[1])), "API still up"
