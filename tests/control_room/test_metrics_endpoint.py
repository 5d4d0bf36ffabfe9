"""``/metrics`` exposes the engine's named series and the API's request metrics."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from routewatch import metrics as m

ENGINE_SERIES = [
    "routewatch_pings_received",
    "routewatch_pings_rejected",
    "routewatch_pings_stored",
    "routewatch_events",
    "routewatch_processing_lag_seconds",
    "routewatch_batch_size_pings",
]


def families(text: str) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_metrics_exposes_named_series(api_url: str, supervisor_token: str) -> None:
    # The server runs in this process, so samples recorded here must show up there.
    m.PINGS_REJECTED.labels("control_room_test_reason").inc(3)
    m.EVENTS_EMITTED.labels("off_route").inc()
    m.BATCH_SIZE.observe(42)
    httpx.get(f"{api_url}/v1/alerts", headers={"Authorization": f"Bearer {supervisor_token}"})

    r = httpx.get(f"{api_url}/metrics")  # public: no token
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    fam = families(r.text)
    for name in ENGINE_SERIES:
        assert name in fam, name
    rejected = {
        s.labels.get("reason"): s.value
        for s in fam["routewatch_pings_rejected"]
        if s.name.endswith("_total")
    }
    assert rejected.get("control_room_test_reason", 0) >= 3
    batch_counts = [
        s.value for s in fam["routewatch_batch_size_pings"] if s.name.endswith("_count")
    ]
    assert batch_counts and batch_counts[0] >= 1
    requests = fam["routewatch_api_requests"]
    assert any(
        s.labels == {"method": "GET", "route": "/v1/alerts", "status": "200"} and s.value >= 1
        for s in requests
    )
    assert "routewatch_api_request_seconds" in fam
