"""The one event shape every detector speaks (CONTRACT §4).

Events are plain values; ``event_id`` is derived from what the event *is* (trip, type,
event time and subject), so the same input always yields the same ids — which is what
makes replay comparable to live and database writes idempotent.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any

_EVENT_NS = uuid.UUID("6f1c2a4e-8d0b-4b7e-9f51-3a2d6c1e0b77")
_EVENT_NS_BYTES = _EVENT_NS.bytes
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_MS = 86_400_000


class EventType(StrEnum):
    TRIP_STARTED = "trip_started"
    STOP_ARRIVED = "stop_arrived"
    STOP_DEPARTED = "stop_departed"
    OFF_ROUTE = "off_route"
    BACK_ON_ROUTE = "back_on_route"
    UNPLANNED_STOP = "unplanned_stop"
    UNPLANNED_STOP_ENDED = "unplanned_stop_ended"
    SPEEDING = "speeding"
    SPEEDING_ENDED = "speeding_ended"
    LATE = "late"
    BACK_ON_SCHEDULE = "back_on_schedule"
    SIGNAL_LOST = "signal_lost"
    SIGNAL_RESTORED = "signal_restored"
    TRIP_COMPLETED = "trip_completed"


#: condition-start event -> the event that ends it
PARTNERS: dict[EventType, EventType] = {
    EventType.OFF_ROUTE: EventType.BACK_ON_ROUTE,
    EventType.UNPLANNED_STOP: EventType.UNPLANNED_STOP_ENDED,
    EventType.SPEEDING: EventType.SPEEDING_ENDED,
    EventType.LATE: EventType.BACK_ON_SCHEDULE,
    EventType.SIGNAL_LOST: EventType.SIGNAL_RESTORED,
    EventType.STOP_ARRIVED: EventType.STOP_DEPARTED,
}

SEVERITY: dict[EventType, str] = {
    EventType.TRIP_STARTED: "info",
    EventType.STOP_ARRIVED: "info",
    EventType.STOP_DEPARTED: "info",
    EventType.OFF_ROUTE: "warning",
    EventType.BACK_ON_ROUTE: "info",
    EventType.UNPLANNED_STOP: "warning",
    EventType.UNPLANNED_STOP_ENDED: "info",
    EventType.SPEEDING: "warning",
    EventType.SPEEDING_ENDED: "info",
    EventType.LATE: "warning",
    EventType.BACK_ON_SCHEDULE: "info",
    EventType.SIGNAL_LOST: "warning",
    EventType.SIGNAL_RESTORED: "info",
    EventType.TRIP_COMPLETED: "info",
}


@lru_cache(maxsize=1024)
def _date_part(day: int) -> str:
    return (_EPOCH + timedelta(days=day)).strftime("%Y-%m-%dT")


def ms_to_rfc3339(ts_ms: int) -> str:
    """Epoch milliseconds -> RFC 3339 UTC string (``Z`` suffix, ms precision when needed).

    Plain arithmetic below the day (formatting a datetime per event was ~10 us, a
    noticeable share of replaying many short trips)."""
    day, ms = divmod(int(ts_ms), _DAY_MS)
    s, ms = divmod(ms, 1000)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    frac = f".{ms:03d}" if ms else ""
    return f"{_date_part(day)}{h:02d}:{m:02d}:{s:02d}{frac}Z"


def name_uuid(name: str) -> str:
    """``str(uuid.uuid5(_EVENT_NS, name))``, without building two UUID objects."""
    b = bytearray(hashlib.sha1(_EVENT_NS_BYTES + name.encode()).digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x50  # version 5
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    trip_id: str
    vehicle_id: str
    ts_ms: int
    lat: float
    lon: float
    route_m: float
    details: dict[str, Any] = field(default_factory=dict)
    #: the trip's driver, when it has one: filled in where events are stored
    #: (``store.events``) and replayed (``compliance.replay``), never by the detectors;
    #: not part of ``event_id``
    driver_id: str | None = None

    @property
    def severity(self) -> str:
        return SEVERITY[self.type]

    @property
    def event_id(self) -> str:
        subject = self.details.get("stop_id", "")
        return name_uuid(f"{self.trip_id}|{self.type}|{self.ts_ms}|{subject}")

    def to_dict(self) -> dict[str, Any]:
        """The CONTRACT §4 JSON object (``driver_id`` only when the trip has a driver)."""
        driver = {} if self.driver_id is None else {"driver_id": self.driver_id}
        return {
            "event_id": self.event_id,
            "type": str(self.type),
            "trip_id": self.trip_id,
            "vehicle_id": self.vehicle_id,
            **driver,
            "ts": ms_to_rfc3339(self.ts_ms),
            "lat": round(self.lat, 7),
            "lon": round(self.lon, 7),
            "route_m": round(self.route_m, 1),
            "severity": self.severity,
            "details": self.details,
        }
