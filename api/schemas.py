"""Request and response models (Create/Public variants per resource).

Times go out as RFC 3339 UTC strings with a ``Z`` suffix (CONTRACT conventions);
distances in metres, speeds in km/h, durations in seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, PlainSerializer

from compliance.text import Line, Text


def rfc3339(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    text = dt.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace(".000+00:00", "Z").replace("+00:00", "Z")


Time = Annotated[datetime, PlainSerializer(rfc3339, return_type=str)]


class TimeWindow(BaseModel):
    start: Time | None = None
    end: Time | None = None


# --- vehicles ---------------------------------------------------------------------------


class VehiclePublic(BaseModel):
    vehicle_id: str
    label: str | None = None
    active: bool = True
    ts: Time | None = Field(None, description="time of the last position fix")
    lat: float | None = None
    lon: float | None = None
    speed_kmh: float | None = None
    heading_deg: float | None = None
    trip_id: str | None = None
    driver_id: str | None = Field(None, description="the driver of that trip")
    driver_name: str | None = None
    route_m: float | None = Field(None, description="progress along the planned route, m")
    offset_m: float | None = Field(None, description="distance from the planned route, m")
    on_route: bool | None = None
    schedule_delay_s: float | None = None
    status: str | None = None
    updated_at: Time | None = None
    pings_missing: int = Field(
        0,
        description="pings this tracker numbered (seq) but never delivered, net of late "
        "arrivals: lost by the broker, the network or the tracker",
    )
    seq_gaps: int = Field(0, description="times the tracker's seq numbering jumped")
    pings_missing_recent: int = Field(
        0, description="pings found missing in the last 5 minutes (after the reorder allowance)"
    )


# --- trips ------------------------------------------------------------------------------


class OrderCreated(BaseModel):
    order_id: str
    stop_id: str
    tracking_number: str
    status: str


class TripCreated(BaseModel):
    trip_id: str
    vehicle_id: str
    driver_id: str | None = None
    status: str
    replaced: bool = Field(description="true when an existing plan with this trip_id was replaced")
    route_length_m: float
    orders: list[OrderCreated]


class StopLive(BaseModel):
    seq: int
    stop_id: str
    order_id: str | None
    order_status: str | None
    location: tuple[float, float] = Field(description="[lon, lat]")
    route_m: float
    radius_m: float
    planned_arrival: Time | None
    window: TimeWindow
    status: str = Field(description="pending / arrived / departed / skipped")
    arrived_at: Time | None
    departed_at: Time | None
    eta: Time | None
    eta_window: TimeWindow


class TripPublic(BaseModel):
    trip_id: str
    vehicle_id: str
    driver_id: str | None = None
    driver_name: str | None = None
    status: str
    planned_start: Time
    route_length_m: float
    plan: dict[str, Any]
    progress_m: float | None
    progress_pct: float | None
    on_route: bool | None
    offset_m: float | None
    schedule_delay_s: float | None
    last_update: Time | None
    position: tuple[float, float] | None = Field(None, description="[lon, lat]")
    stops: list[StopLive]


# --- orders and proof of delivery -------------------------------------------------------


class StatusChange(BaseModel):
    status: str
    ts: Time
    reason: str | None = None


class PodSummary(BaseModel):
    recipient_name: str
    condition: Literal["ok", "damaged"]
    received_at: Time
    device_ts: Time | None
    distance_m: float | None = Field(None, description="from the planned stop, m")
    flagged: bool
    flag_reasons: list[str]
    photos: int


class OrderPublic(BaseModel):
    order_id: str
    tracking_number: str
    trip_id: str
    driver_id: str | None = Field(None, description="the driver of the order's trip")
    stop_id: str
    status: str
    eta: Time | None
    eta_window: TimeWindow
    window: TimeWindow
    updated_at: Time
    history: list[StatusChange]
    pod: PodSummary | None


class PodImageIn(BaseModel):
    media_type: Literal["image/png", "image/jpeg"]
    data: str = Field(description="base64 (standard alphabet) of the image bytes")


class PodCreate(BaseModel):
    recipient_name: Line = Field(min_length=1, max_length=200)
    signature: PodImageIn
    photos: list[PodImageIn] = Field(default_factory=list)
    notes: Text | None = Field(None, max_length=4000)
    condition: Literal["ok", "damaged"] = "ok"
    device_ts: Annotated[int, Field(description="epoch ms")] | Line | None = None
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)


class PodImageOut(BaseModel):
    kind: Literal["signature", "photo"]
    media_type: str
    sha256: str
    size_bytes: int
    data: str = Field(description="base64")


class PodPublic(PodSummary):
    order_id: str
    notes: str | None
    lat: float | None
    lon: float | None
    images: list[PodImageOut]


# --- customer tracking ------------------------------------------------------------------


class TrackPod(BaseModel):
    delivered_at: Time
    recipient_name: str
    condition: Literal["ok", "damaged"]


class TrackStep(BaseModel):
    status: str
    ts: Time


class LonLat(BaseModel):
    lat: float
    lon: float


class TrackPath(BaseModel):
    type: Literal["LineString"] = "LineString"
    coordinates: list[tuple[float, float]] = Field(description="[lon, lat] positions")


class TrackPosition(BaseModel):
    """The vehicle while this delivery is next (or within the configured stops away)."""

    lat: float
    lon: float
    ts: Time = Field(description="fix time of the vehicle's latest position")
    age_s: float = Field(description="seconds between that fix and the answer")
    heading_deg: float | None
    destination: LonLat = Field(description="this delivery's stop")
    path: TrackPath | None = Field(
        description="the planned route from the vehicle's position on it to this stop only "
        "(null when the vehicle is past it on the route)"
    )
    remaining_m: float | None = Field(description="distance along that path, metres")


class TrackPublic(BaseModel):
    """What a customer sees (CONTRACT §6): nothing about other orders or addresses."""

    tracking_number: str
    status: str
    eta: Time | None
    eta_window: TimeWindow
    planned_window: TimeWindow
    stops_before: int | None = Field(
        None, description="deliveries still ahead of yours on the vehicle's trip"
    )
    last_update: Time
    timeline: list[TrackStep]
    pod: TrackPod | None
    position: TrackPosition | None = Field(
        None,
        description="the vehicle, live, while the order is out for delivery and at most "
        "ROUTEWATCH_TRACK_POSITION_STOPS_AWAY stops away; otherwise null",
    )
