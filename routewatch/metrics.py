"""Prometheus metric definitions for the whole application, in one place.

Every module imports the metric it updates from here, so names, labels and buckets are
defined once and ``/metrics`` (the API) exposes the same registry the engine writes to.
Names follow the Prometheus conventions: ``_total`` counters, base units in the name.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PINGS_RECEIVED = Counter(
    "routewatch_pings_received_total",
    "Ping items received over MQTT (each array element counts once; a payload that "
    "cannot be split into items counts as one).",
)
PINGS_REJECTED = Counter(
    "routewatch_pings_rejected_total",
    "Ping items or payloads rejected by validation, by reason.",
    ["reason"],
)
PINGS_STORED = Counter(
    "routewatch_pings_stored_total",
    "Pings newly inserted into the pings table.",
)
PINGS_DUPLICATE = Counter(
    "routewatch_pings_duplicate_total",
    "Accepted pings not stored because the same (vehicle_id, ts) was already seen, "
    "within the batch or in the database.",
)
PINGS_LATE = Counter(
    "routewatch_pings_late_total",
    "Pings older than the reorder allowance behind their vehicle's newest ping "
    "(stored, but they do not rewind detector state).",
)
PINGS_MISSING = Counter(
    "routewatch_pings_missing_total",
    "Pings never received: holes in a tracker's seq numbering still open after the "
    "reorder allowance (lost by the broker, the network or the tracker).",
)
PINGS_GAP_FILLED = Counter(
    "routewatch_pings_gap_filled_total",
    "Pings that arrived late into a hole in their tracker's seq numbering.",
)
TRACKER_RESTARTS = Counter(
    "routewatch_tracker_restarts_total",
    "Trackers that started their seq numbering again (a lower number with a newer fix).",
)
EVENTS_EMITTED = Counter(
    "routewatch_events_total",
    "Compliance events newly stored, by type.",
    ["type"],
)
MQTT_MESSAGES = Counter(
    "routewatch_mqtt_messages_total",
    "MQTT messages received on the ping subscription.",
)
MQTT_RECONNECTS = Counter(
    "routewatch_mqtt_reconnects_total",
    "Times the engine lost the broker and reconnected.",
)
BATCHES = Counter(
    "routewatch_batches_total",
    "Batches committed by the ingest pipeline.",
)
BATCH_SIZE = Histogram(
    "routewatch_batch_size_pings",
    "Accepted pings per committed batch.",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000),
)
BATCH_COMMIT_SECONDS = Histogram(
    "routewatch_batch_commit_seconds",
    "Wall time to process and commit one batch (engine + database), seconds.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
PROCESSING_LAG_SECONDS = Histogram(
    "routewatch_processing_lag_seconds",
    "Commit time minus the fix time of each batch's newest ping, seconds "
    "(device clock skew included).",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
INFLIGHT_MESSAGES = Gauge(
    "routewatch_inflight_messages",
    "MQTT messages received but not yet committed and acknowledged.",
)
ACTIVE_TRIPS = Gauge(
    "routewatch_active_trips",
    "Trips currently loaded into the compliance engine.",
)
PARTITIONS_OWNED = Gauge(
    "routewatch_partitions_owned",
    "Ping partitions this engine worker owns (routewatch worker).",
)
