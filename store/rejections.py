"""Record rejected pings and payloads (CONTRACT §1: never silently dropped), by COPY."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import AsyncConnection

from compliance.text import storable
from ingest.decode import Rejection
from store.pings import copy_rows

_COPY = (
    "COPY rejected_pings (topic, vehicle_id, reason, detail, payload) FROM STDIN (FORMAT BINARY)"
)
_TYPES = ["text", "text", "text", "text", "bytea"]


def _text(value: str) -> str:
    # PostgreSQL text cannot hold NUL, nor UTF-8 an unpaired surrogate (a topic the
    # receiver decoded leniently): keep the evidence visible, escaped, instead of failing.
    return storable(value)


async def insert_rejections(conn: AsyncConnection, rejections: Sequence[Rejection]) -> int:
    """Store each rejection (inside the caller's transaction); returns the count."""
    if not rejections:
        return 0
    rows = (
        (_text(r.topic), r.vehicle_id, str(r.reason), _text(r.detail), r.payload_excerpt)
        for r in rejections
    )
    await copy_rows(conn, _COPY, _TYPES, rows)
    return len(rejections)
