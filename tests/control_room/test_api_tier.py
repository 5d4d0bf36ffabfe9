"""Several API processes behind a load balancer: whichever process a request reaches, the
control room and the customers see one system. Two real API processes (uvicorn, own
ports) on one database: an alert stream read from one is resumed on the other with
``Last-Event-ID`` (nothing lost, nothing repeated), the tracking rate limit is one limit
across both, and both serve the dashboard."""

from __future__ import annotations

import httpx

from tests.api.live_server import Server
from tests.control_room.factories import ev
from tests.control_room.test_alert_stream import SseReader, apply


def test_two_api_processes_serve_one_system(database_url: str, supervisor_token: str) -> None:
    headers = {"Authorization": f"Bearer {supervisor_token}"}
    with (
        Server(database_url, track_burst="4", track_rate_per_s="0.01") as a,
        Server(database_url, track_burst="4", track_rate_per_s="0.01") as b,
        httpx.Client(timeout=10.0) as client,
    ):
        with client.stream("GET", f"{a.url}/v1/alerts/stream", headers=headers) as resp:
            reader = SseReader(resp)
            reader.wait_ready()
            apply(database_url, [ev("off_route", "LB1", 1), ev("speeding", "LB1", 2)])
            first = reader.alerts(2)
        # Disconnected from A; the load balancer sends the reconnect to B.
        apply(database_url, [ev("signal_lost", "LB2", 10), ev("back_on_route", "LB1", 11)])
        resume = {**headers, "Last-Event-ID": str(first[-1]["stream_id"])}
        with client.stream("GET", f"{b.url}/v1/alerts/stream", headers=resume) as resp:
            reader = SseReader(resp)
            resumed = reader.alerts(2)
            apply(database_url, [ev("speeding_ended", "LB1", 20)])
            live = reader.alerts(1)
        ids = [x["stream_id"] for x in first + resumed + live]
        assert ids == sorted(ids) and len(set(ids)) == 5
        assert sorted((x["type"], x["status"]) for x in resumed) == [
            ("off_route", "resolved"),
            ("signal_lost", "open"),
        ]

        # One client, one limit: 4 lookups spread over both processes, the 5th is refused.
        codes = [
            client.get(f"{server.url}/v1/track/RW-NOPE-{i}").status_code
            for i, server in enumerate((a, b, a, b, a))
        ]
        assert codes == [404, 404, 404, 404, 429]

        for server in (a, b):
            page = client.get(f"{server.url}/dashboard")
            assert page.status_code == 200 and "<html" in page.text.lower()
