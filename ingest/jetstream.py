"""What routewatch keeps in NATS JetStream, and the envelope its pings travel in.

- Stream ``<PREFIX>_PINGS`` on subjects ``<prefix>.pings.<partition>``: work-queue
  retention (a message is gone once its partition's owner acknowledged it, after the
  commit), kept at most ``nats_max_age_h``, ``nats_replicas`` copies.
- One durable pull consumer per partition, ``<prefix>-p<partition>``, used by the worker
  that owns the partition. A new owner deletes and re-creates it: the messages the old
  owner took and did not acknowledge are delivered again at once, instead of after the
  ack wait.
- Key-value buckets: ``<prefix>_meta`` (the partition count, fixed when the stream is
  made), ``<prefix>_workers`` (one key per live worker, renewed; expires with the
  worker) and ``<prefix>_leases`` (one key per owned partition, compare-and-set,
  expires ``nats_lease_s`` after its owner stopped renewing it).

Envelope: the gateway packs the MQTT messages of one socket read that belong to one
partition into one JetStream message (as a Kafka producer batches records per
partition): repeated ``[u16 topic length][topic][u32 payload length][payload]``. One
store-and-acknowledge round trip then carries hundreds of pings, and the vehicle id —
which may hold ``.`` or spaces that a NATS subject cannot — travels in the MQTT topic
inside, never in a subject.
"""

from __future__ import annotations

import contextlib
import logging
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.kv import KeyValue

from routewatch.settings import Settings

log = logging.getLogger(__name__)

_PREFIX_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TOPIC = struct.Struct(">H")
_PAYLOAD = struct.Struct(">I")
#: envelope size the gateway aims below (NATS refuses messages over max_payload, 1 MiB
#: by default)
ENVELOPE_BYTES = 256 * 1024
#: how long a claimed partition's un-acknowledged message waits before JetStream offers
#: it again to the same consumer (a commit that takes this long is stuck; a new owner
#: does not wait for it: it re-creates the consumer)
ACK_WAIT_S = 300.0


class NatsSetupError(RuntimeError):
    """The NATS side cannot be used as configured; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Layout:
    """Names of everything routewatch keeps in NATS, from ``nats_prefix``."""

    prefix: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Layout:
        if not _PREFIX_RE.match(settings.nats_prefix):
            raise NatsSetupError(
                f"ROUTEWATCH_NATS_PREFIX {settings.nats_prefix!r}: use letters, digits, - and _"
            )
        return cls(settings.nats_prefix)

    @property
    def stream(self) -> str:
        return f"{self.prefix.upper()}_PINGS"

    def subject(self, partition: int) -> str:
        return f"{self.prefix}.pings.{partition}"

    def durable(self, partition: int) -> str:
        return f"{self.prefix}-p{partition}"

    @property
    def meta_bucket(self) -> str:
        return f"{self.prefix}_meta"

    @property
    def workers_bucket(self) -> str:
        return f"{self.prefix}_workers"

    @property
    def leases_bucket(self) -> str:
        return f"{self.prefix}_leases"


async def connect(settings: Settings, name: str) -> Client:
    """A NATS connection that reconnects for ever (a worker outlives NATS restarts)."""
    servers = [s.strip() for s in settings.nats_url.split(",") if s.strip()]
    try:
        return await nats.connect(
            servers=servers,
            name=name,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=5,
        )
    except (OSError, nats.errors.Error) as exc:
        raise NatsSetupError(
            f"cannot reach NATS at {settings.nats_url} ({exc or type(exc).__name__}); "
            "start nats-server with JetStream (nats-server -js) or set ROUTEWATCH_NATS_URL"
        ) from exc


@dataclass(frozen=True, slots=True)
class Setup:
    """The NATS side, ready: the partition count and the two buckets workers use."""

    layout: Layout
    partitions: int
    workers: KeyValue
    leases: KeyValue


async def ensure_setup(js: JetStreamContext, settings: Settings) -> Setup:
    """Create the stream and buckets when missing (idempotent; every gateway and worker
    calls it at start). The partition count is the one recorded first: a different
    ``nats_partitions`` later is refused with what to do, since it would move vehicles
    between partitions under running workers."""
    layout = Layout.from_settings(settings)
    try:
        meta = await js.create_key_value(
            KeyValueConfig(bucket=layout.meta_bucket, history=1, replicas=settings.nats_replicas)
        )
        with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError):
            await meta.create("partitions", str(settings.nats_partitions).encode())
        partitions = int((await meta.get("partitions")).value or b"0")
        if partitions != settings.nats_partitions:
            raise NatsSetupError(
                f"the ping stream {layout.stream} was set up with {partitions} partitions, "
                f"ROUTEWATCH_NATS_PARTITIONS is {settings.nats_partitions}: set it to "
                f"{partitions}, or use another ROUTEWATCH_NATS_PREFIX for a new layout"
            )
        await js.add_stream(
            StreamConfig(
                name=layout.stream,
                subjects=[f"{layout.prefix}.pings.*"],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                max_age=settings.nats_max_age_h * 3600.0,
                num_replicas=settings.nats_replicas,
                duplicate_window=120.0,
            )
        )
        workers, leases = [
            await js.create_key_value(
                KeyValueConfig(
                    bucket=bucket,
                    history=1,
                    ttl=settings.nats_lease_s,
                    replicas=settings.nats_replicas,
                )
            )
            for bucket in (layout.workers_bucket, layout.leases_bucket)
        ]
    except nats.js.errors.ServiceUnavailableError as exc:
        raise NatsSetupError(
            f"NATS at {settings.nats_url} has no JetStream: start nats-server with -js"
        ) from exc
    except nats.js.errors.BadRequestError as exc:
        raise NatsSetupError(
            f"NATS refused routewatch's stream or buckets ({exc.description}); they may "
            f"exist with other settings: compare `nats stream info {layout.stream}` with "
            "the docs, or use another ROUTEWATCH_NATS_PREFIX"
        ) from exc
    return Setup(layout, partitions, workers, leases)


def consumer_config(layout: Layout, partition: int) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=layout.durable(partition),
        filter_subject=layout.subject(partition),
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ACK_WAIT_S,
        max_ack_pending=10_000,
    )


# -- the envelope ------------------------------------------------------------------------


def pack_record(topic: str, payload: bytes) -> bytes:
    """One MQTT ``(topic, payload)`` record of an envelope."""
    raw = topic.encode("utf-8", "surrogateescape")
    return _TOPIC.pack(len(raw)) + raw + _PAYLOAD.pack(len(payload)) + payload


def pack(records: list[tuple[str, bytes]]) -> bytes:
    """MQTT ``(topic, payload)`` records -> one envelope."""
    return b"".join(pack_record(topic, payload) for topic, payload in records)


def unpack(data: bytes) -> Iterator[tuple[str, bytes]]:
    """An envelope -> its ``(topic, payload)`` records; raises ``ValueError`` if cut short."""
    view, pos, end = memoryview(data), 0, len(data)
    while pos < end:
        if pos + 2 > end:
            raise ValueError("envelope cut inside a topic length")
        (n,) = _TOPIC.unpack_from(view, pos)
        topic = bytes(view[pos + 2 : pos + 2 + n]).decode("utf-8", "surrogateescape")
        pos += 2 + n
        if pos + 4 > end:
            raise ValueError("envelope cut inside a payload length")
        (m,) = _PAYLOAD.unpack_from(view, pos)
        if pos + 4 + m > end:
            raise ValueError("envelope cut inside a payload")
        yield topic, bytes(view[pos + 4 : pos + 4 + m])
        pos += 4 + m
