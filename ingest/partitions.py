"""Which partition a vehicle's pings belong to, and the scope one pipeline owns.

The hash is NATS's own: the subject mapping function ``{{partition(n, 1)}}`` puts a
subject in ``fnv32a(token) % n`` (nats-server ``subject_transform.go``), so a deployment
that maps ``fleet.*.ping`` on its servers and one that lets ``routewatch gateway`` pick
the partition send every vehicle to the same place (checked against a real server in
``tests/ingest/test_partitions.py``). The vehicle id is hashed as its UTF-8 bytes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from store.live import ENGINE_CHECKPOINT_KEY

_FNV_OFFSET, _FNV_PRIME = 0x811C9DC5, 0x01000193


def fnv32a(data: bytes) -> int:
    h = _FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return h


@functools.lru_cache(maxsize=1 << 17)
def partition_of(vehicle_id: str, partitions: int) -> int:
    """The partition (0 .. ``partitions`` - 1) of ``vehicle_id``'s pings (cached: a
    fleet's ids come back with every ping)."""
    return fnv32a(vehicle_id.encode("utf-8", "surrogateescape")) % partitions


@dataclass(frozen=True, slots=True)
class Scope:
    """The vehicles one pipeline owns: every vehicle (the single-process engine), or the
    vehicles of one partition out of ``partitions`` (an engine worker's share)."""

    partition: int | None = None
    partitions: int = 1

    def owns(self, vehicle_id: str) -> bool:
        return self.partition is None or partition_of(vehicle_id, self.partitions) == self.partition

    @property
    def checkpoint_key(self) -> str:
        """The ``engine_checkpoints`` row holding this scope's engine state."""
        if self.partition is None:
            return ENGINE_CHECKPOINT_KEY
        return f"__partition_{self.partition}_of_{self.partitions}__"

    def __str__(self) -> str:
        return "all vehicles" if self.partition is None else f"partition {self.partition}"


WHOLE = Scope()
