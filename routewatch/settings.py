"""All runtime configuration, read once from the environment (prefix ``ROUTEWATCH_``).

One ``Settings`` object is the single source of truth; modules receive the values they
need rather than reading the environment themselves.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from compliance.config import Thresholds


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ROUTEWATCH_", env_file=".env", extra="ignore")

    # Services. When these are unreachable, `routewatch demo` and the tests start
    # private instances under ``state_dir`` instead (see routewatch/services.py).
    database_url: str = "postgresql://postgres@127.0.0.1:5432/test"
    mqtt_url: str = Field(
        "mqtt://127.0.0.1:1883",
        description="the broker: mqtt://[user:password@]host[:1883] (plain TCP) or "
        "mqtts://...[:8883] (TLS; server certificate and host name checked)",
    )
    mqtt_tls_ca_file: Path | None = Field(
        None, description="CA certificate(s) for an mqtts:// broker; none = the system store"
    )
    mqtt_tls_cert_file: Path | None = Field(
        None, description="client certificate for an mqtts:// broker that asks for one"
    )
    mqtt_tls_key_file: Path | None = Field(
        None, description="the client certificate's private key (if not in the cert file)"
    )
    state_dir: Path = Path(".state")

    # API
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    dashboard_tile_url: str | None = Field(
        None,
        description="map tiles for /dashboard, e.g. https://tile.openstreetmap.org/{z}/{x}/{y}.png; "
        "none = plain background (routes and vehicles still drawn)",
    )
    dashboard_tile_attribution: str = "© OpenStreetMap contributors"

    # Ingest
    batch_max_pings: int = Field(10_000, description="flush a batch at this many pings")
    batch_max_ms: int = Field(50, description="flush a batch after this many milliseconds")
    max_payload_bytes: int = Field(1_048_576, description="larger MQTT payloads are rejected")
    max_future_skew_s: int = Field(300, description="pings further in the future are rejected")
    reorder_allowance_s: int = Field(30, description="late pings within this are put in order")
    watermark: Literal["wall", "event"] = Field(
        "wall",
        description="engine clock: 'wall' (live) or 'event' (newest fix seen; for accelerated "
        "simulation, where fix times run ahead of or behind the wall clock)",
    )
    mqtt_client_id: str = "routewatch-engine"
    mqtt_mirror_events: bool = Field(True, description="publish events to fleet/{id}/events")
    mqtt_receive_maximum: int = Field(20_000, description="un-acked QoS 1 messages in flight")
    require_known_vehicle: bool = Field(False, description="reject pings of unregistered vehicles")
    checkpoint_interval_s: int = Field(30, description="engine checkpoint cadence, seconds")
    mqtt_session_expiry_s: int = Field(3600, description="broker keeps our session this long")
    trip_abandon_after_s: int = Field(
        3600,
        ge=0,
        description="a trip whose vehicle stopped reporting ends (trip_completed, ended_by "
        "no_signal) this long after the later of its planned end and its last ping; the "
        "engine's threshold trip_abandon_s (live and replay)",
    )
    speeds_learn_every_s: int = Field(
        3600,
        ge=0,
        description="learn the fleet's travel speeds per place and hour of week from the "
        "stored pings this often, seconds, for ETAs (0 = never learn, ETAs from the plan "
        "and live speed only)",
    )
    speeds_half_life_days: float = Field(
        14.0, gt=0, description="learned speeds: a sample this many days old counts half"
    )
    speeds_first_days: float = Field(
        28.0, gt=0, description="learned speeds: the first run looks back this many days"
    )

    # Engine workers on NATS JetStream (routewatch gateway / routewatch worker)
    nats_url: str = Field(
        "nats://127.0.0.1:4222",
        description="NATS server(s) with JetStream, comma-separated for a cluster: "
        "nats://[user:password@]host[:4222],...",
    )
    nats_prefix: str = Field(
        "routewatch",
        description="names of the ping stream, its consumers and the key-value buckets "
        "(several deployments can share one NATS)",
    )
    nats_partitions: int = Field(
        32, ge=1, le=1024, description="ping partitions, fixed when the stream is created"
    )
    nats_replicas: int = Field(
        1, ge=1, le=5, description="copies of the stream and buckets in a NATS cluster"
    )
    nats_lease_s: float = Field(
        5.0, gt=0, description="a dead worker's partitions move after at most this long"
    )
    nats_max_age_h: float = Field(
        168.0, gt=0, description="pings no worker took are dropped from the stream after this"
    )
    worker_id: str | None = Field(None, description="this worker's name; unset = host name and pid")
    gateway_linger_ms: int = Field(
        100,
        ge=0,
        description="the gateway gathers pings this long after the first of a read, so each "
        "partition's envelope carries many (fewer, larger JetStream messages)",
    )
    worker_batch_max_ms: int = Field(
        500,
        description="a worker flushes each partition's batch after this many milliseconds "
        "(a partition gets a share of the pings: longer batches keep commits few)",
    )

    # OMS webhooks
    webhook_url: str | None = None
    webhook_secret: str = "change-me"
    webhook_max_attempts: int = Field(12, description="then the outbox row is marked dead")
    webhook_backoff_s: float = Field(2.0, description="first retry delay; doubles per attempt")
    webhook_backoff_max_s: float = Field(600.0, description="cap on the retry delay")
    webhook_timeout_s: float = Field(5.0, description="per-request timeout")
    webhook_eta_threshold_s: int = Field(300, description="ETA moves beyond this notify the OMS")

    # Orders, proof of delivery, customer tracking
    arriving_horizon_s: int = Field(
        900, description="order is 'arriving' when its ETA is this close"
    )
    arriving_stops_before: int = Field(1, description="...or at most this many stops are before it")
    deliver_on_departure: bool = Field(False, description="arrival+departure counts as delivered")
    pod_max_image_bytes: int = Field(2_000_000, description="per decoded image; larger -> 413")
    pod_max_photos: int = 5
    api_max_body_bytes: int = Field(16_000_000, description="larger request bodies -> 413")
    track_rate_per_s: float = Field(
        1.0, description="tracking lookups refilled per second per client"
    )
    track_burst: int = Field(20, description="tracking lookups a client may make at once")
    track_position_stops_away: int = Field(
        1,
        ge=0,
        description="the tracking page shows the vehicle's position when the order's stop is "
        "at most this many stops away (1: it is the next stop); 0 never",
    )
    track_expiry_days: float = Field(
        30.0,
        gt=0,
        description="a delivered, failed or cancelled order's tracking number answers 404 "
        "this many days after its last change",
    )
    track_tile_url: str | None = Field(
        None,
        description="map tiles under the tracking page's map, e.g. "
        "https://tile.openstreetmap.org/{z}/{x}/{y}.png; none = a vector map drawn by the page "
        "(no third party sees the customer)",
    )
    track_tile_attribution: str = "© OpenStreetMap contributors"

    # Logging
    log_level: str = "INFO"
    log_json: bool = True


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def engine_thresholds(settings: Settings) -> Thresholds:
    """The compliance engine's thresholds (live and ``replay``): the defaults, but those
    a setting names."""
    return Thresholds(trip_abandon_s=float(settings.trip_abandon_after_s))
