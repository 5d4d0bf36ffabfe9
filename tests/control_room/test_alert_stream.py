"""The alert SSE stream over real HTTP (uvicorn on a free port) against the real DB:
connect, receive, disconnect, more alerts, resume with Last-Event-ID -> nothing lost,
nothing repeated. Plus the REST list/ack endpoints and their role checks."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from api import sse
from store import alerts
from tests.control_room.factories import ev


def apply(database_url: str, events: list[Any]) -> None:
    async def _go() -> None:
        async with (
            await psycopg.AsyncConnection.connect(database_url) as conn,
            conn.transaction(),
        ):
            await alerts.apply_events(conn, events)

    asyncio.run(_go())


class SseReader:
    """Parse one SSE response into messages ``{"id", "event", "data", "retry", "comment"}``."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.iter_lines()

    def __iter__(self) -> Iterator[dict[str, str]]:
        fields: dict[str, str] = {}
        for line in self._lines:
            if line == "":
                if fields:
                    yield fields
                fields = {}
            elif line.startswith(":"):
                yield {"comment": line[1:].strip()}
            else:
                key, _, value = line.partition(":")
                fields[key] = value[1:] if value.startswith(" ") else value

    def wait_ready(self) -> None:
        """The server sends ``retry:`` once it LISTENs and knows where to start."""
        for msg in self:
            if "retry" in msg:
                return

    def alerts(self, n: int) -> list[dict[str, Any]]:
        got = []
        for msg in self:
            if msg.get("event") == "alert":
                data = json.loads(msg["data"])
                assert int(msg["id"]) == data["stream_id"]
                got.append(data)
                if len(got) == n:
                    break
        return got


def test_stream_resume_loses_and_repeats_nothing(
    api_url: str, database_url: str, supervisor_token: str
) -> None:
    headers = {"Authorization": f"Bearer {supervisor_token}"}
    timeout = httpx.Timeout(10.0)
    with httpx.Client(base_url=api_url, timeout=timeout) as client:
        with client.stream("GET", "/v1/alerts/stream", headers=headers) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            reader = SseReader(resp)
            reader.wait_ready()
            # Created after the stream opened: pushed live.
            apply(
                database_url,
                [
                    ev("off_route", "R1", 1),
                    ev("speeding", "R1", 2),
                    ev("late", "R2", 3, stop_id="S1"),
                ],
            )
            first = reader.alerts(3)
        assert [a["type"] for a in first] == ["off_route", "speeding", "late"]
        last_id = first[-1]["stream_id"]

        # While nobody listens: two new alerts and one resolution.
        apply(
            database_url,
            [
                ev("signal_lost", "R3", 10),
                ev("back_on_route", "R1", 11),
                ev("unplanned_stop", "R2", 12),
            ],
        )

        with client.stream(
            "GET", "/v1/alerts/stream", headers={**headers, "Last-Event-ID": str(last_id)}
        ) as resp:
            reader = SseReader(resp)
            resumed = reader.alerts(3)
            # One more change while connected, to prove the stream is still live.
            apply(database_url, [ev("speeding_ended", "R1", 20)])
            live = reader.alerts(1)

    ids = [a["stream_id"] for a in first + resumed + live]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert sorted((a["type"], a["status"]) for a in resumed) == [
        ("off_route", "resolved"),
        ("signal_lost", "open"),
        ("unplanned_stop", "open"),
    ]
    assert (live[0]["type"], live[0]["status"]) == ("speeding", "resolved")
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM alerts WHERE stream_id > %s", (last_id,)
        ).fetchone()
    assert row is not None
    (in_db,) = row
    assert in_db == len(resumed + live)


def test_stream_heartbeat_and_query_token(
    api_url: str, supervisor_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sse, "HEARTBEAT_S", 0.2)
    params = {"access_token": supervisor_token}
    started = time.monotonic()
    with httpx.stream("GET", f"{api_url}/v1/alerts/stream", params=params, timeout=10) as resp:
        assert resp.status_code == 200
        for msg in SseReader(resp):
            if msg.get("comment") == "heartbeat":
                break
    assert time.monotonic() - started < 8


def test_stream_and_list_need_supervisor(
    api_url: str, supervisor_token: str, oms_token: str
) -> None:
    with httpx.Client(base_url=api_url, timeout=5) as client:
        assert client.get("/v1/alerts/stream").status_code == 401
        assert (
            client.get("/v1/alerts/stream", params={"access_token": "rw_nope"}).status_code == 401
        )
        assert (
            client.get("/v1/alerts/stream", params={"access_token": oms_token}).status_code == 403
        )
        assert client.get("/v1/alerts").status_code == 401
        # The query-string token is for streams only.
        assert (
            client.get("/v1/alerts", params={"access_token": supervisor_token}).status_code == 401
        )
        assert (
            client.get("/v1/alerts", headers={"Authorization": f"Bearer {oms_token}"}).status_code
            == 403
        )


def test_list_filters_paging_and_ack(
    api_url: str, database_url: str, supervisor_token: str
) -> None:
    apply(
        database_url,
        [ev("speeding", f"L{i}", i, vehicle_id="VL") for i in range(7)]
        + [ev("off_route", "L0", 50, vehicle_id="VX")],
    )
    headers = {"Authorization": f"Bearer {supervisor_token}"}
    with httpx.Client(base_url=api_url, headers=headers, timeout=5) as client:
        ids: list[int] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"type": "speeding", "limit": 3}
            if cursor:
                params["cursor"] = cursor
            page = client.get("/v1/alerts", params=params).json()
            ids += [a["id"] for a in page["alerts"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(ids) == 7 and len(set(ids)) == 7
        vx = client.get("/v1/alerts", params={"vehicle_id": "VX"}).json()["alerts"]
        assert [a["type"] for a in vx] == ["off_route"]

        r = client.post(f"/v1/alerts/{vx[0]['id']}/ack", json={"note": "driver detour"})
        assert r.status_code == 200
        body = r.json()
        assert (body["status"], body["acked_by"], body["ack_note"]) == (
            "acked",
            "alice",
            "driver detour",
        )
        assert client.post("/v1/alerts/99999999/ack").status_code == 404
        acked = client.get("/v1/alerts", params={"status": "acked"}).json()["alerts"]
        assert [a["id"] for a in acked] == [vx[0]["id"]]
        assert client.get("/v1/alerts", params={"cursor": "x1"}).status_code == 400
