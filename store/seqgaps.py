"""``tracker_seq`` and ``ping_gaps`` (migration 0033): the engine's count of pings lost on
the way (``ingest.seqgaps``), written in the batch's transaction, and read back by the
engine at start, the vehicle API, the health check and the demo's console."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import tuple_row

from ingest.seqgaps import SeqReport, TrackerState

#: "missing in the last minutes" (health, dashboard, demo console) looks back this far
RECENT_MINUTES = 5

_UPSERT = """
INSERT INTO tracker_seq AS t (vehicle_id, last_seq, last_ts, seen_mask, missing, gaps,
                              restarts, updated_at)
SELECT s.vehicle_id, s.last_seq, timestamptz 'epoch' + s.ts_ms * interval '1 millisecond',
       s.seen_mask, s.missing, s.gaps, s.restarts, now()
FROM unnest(%b::text[], %b::bigint[], %b::bigint[], %b::bigint[], %b::bigint[], %b::bigint[],
            %b::bigint[]) AS s(vehicle_id, last_seq, ts_ms, seen_mask, missing, gaps, restarts)
ON CONFLICT (vehicle_id) DO UPDATE SET
    last_seq = EXCLUDED.last_seq, last_ts = EXCLUDED.last_ts, seen_mask = EXCLUDED.seen_mask,
    missing = EXCLUDED.missing, gaps = EXCLUDED.gaps, restarts = EXCLUDED.restarts,
    updated_at = now()
"""

_INSERT_GAPS = """
INSERT INTO ping_gaps (vehicle_id, after_seq, next_seq, missing)
SELECT * FROM unnest(%b::text[], %b::bigint[], %b::bigint[], %b::bigint[])
"""

_LOAD = """
SELECT vehicle_id, last_seq, (extract(epoch FROM last_ts) * 1000)::bigint, seen_mask,
       missing, gaps, restarts
FROM tracker_seq
"""

#: the gaps reported in the last ``RECENT_MINUTES`` (an SQL relation)
RECENT_GAPS = (
    f"(SELECT * FROM ping_gaps WHERE detected_at > now() - interval '{RECENT_MINUTES} minutes')"
)

RECENT_SQL = f"""
SELECT coalesce(sum(missing), 0)::bigint AS pings_missing,
       count(*) FILTER (WHERE missing > 0) AS gaps,
       count(DISTINCT vehicle_id) FILTER (WHERE missing > 0) AS vehicles
FROM {RECENT_GAPS} g
"""


async def save_report(conn: AsyncConnection[Any], report: SeqReport) -> None:
    """The batch's trackers' new state and its gaps (inside the caller's transaction)."""
    if report.states:
        await conn.execute(_UPSERT, _columns(_row(st) for st in report.states))
    if report.gaps:
        gaps = ((g.vehicle_id, g.after_seq, g.next_seq, g.missing) for g in report.gaps)
        await conn.execute(_INSERT_GAPS, _columns(gaps))


def _row(st: TrackerState) -> tuple[object, ...]:
    return (
        st.vehicle_id, st.last_seq, st.last_ts_ms, st.seen_mask, st.missing, st.gaps, st.restarts
    )  # fmt: skip


def _columns(rows: Iterable[tuple[object, ...]]) -> list[list[object]]:
    """Rows -> one list per column (the unnest parameters)."""
    return [list(c) for c in zip(*rows, strict=True)]


async def load_tracker_states(conn: AsyncConnection[Any]) -> list[TrackerState]:
    cur = await conn.cursor(row_factory=tuple_row).execute(_LOAD)
    return [TrackerState(*row) for row in await cur.fetchall()]


async def recent_loss(conn: AsyncConnection[Any]) -> dict[str, int]:
    """Pings missing (net of late arrivals), gaps and trackers with gaps, over the last
    ``RECENT_MINUTES`` minutes."""
    cur = await conn.cursor(row_factory=tuple_row).execute(RECENT_SQL)
    row = await cur.fetchone()
    assert row is not None
    return dict(zip(("pings_missing", "gaps", "vehicles"), map(int, row), strict=True))
