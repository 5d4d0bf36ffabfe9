"""Learned travel speeds (migration 0042): the fleet's stored pings summed per ~220 m cell
and hour of week into ``speed_cells``, and read back as the engine's
:class:`compliance.history.SpeedProfile`.

:func:`learn` adds the pings stored since the last run (up to ``until``, which the
caller keeps a few minutes behind now so late pings are in) with the selection
:func:`compliance.history.aggregate` makes: pings of a trip, moving (>= 3.6 km/h by the
device's speed), with an accuracy of 50 m or better when one is given. Old samples fade
with a half-life: each sample weighs 0.5^((reference - its ts) / half-life), where the
reference (``decayed_to``) moves on at most once a day, when every row is multiplied by
the decay since the last move and rows that weigh almost nothing are forgotten; so a
refresh reads only new pings and a full update of the table runs once a day.

Several engine processes may call :func:`learn`: the ``speed_learning`` row is locked
for the run, and a run finding the pings already learned up to ``until`` does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from psycopg import AsyncConnection
from psycopg.rows import tuple_row

from compliance.history import CELL_DEG, MAX_ACCURACY_M, MOVING_MPS, SpeedCells, SpeedProfile

#: rows whose weight fell under this are forgotten at a daily decay
FORGET_WEIGHT = 0.05
#: the decay's reference moves on at most this often
DECAY_EVERY = timedelta(days=1)
_EPOCH_MONDAY_S = 4 * 86_400  # 1970-01-05 was a Monday

_STATE = """
SELECT learned_until, decayed_to FROM speed_learning WHERE id FOR UPDATE
"""

_DECAY = """
UPDATE speed_cells SET weight = weight * %(f)s, sum_mps = sum_mps * %(f)s
"""

_ADD = f"""
WITH s AS (
    SELECT floor(lat / {CELL_DEG})::integer AS i,
           floor(lon / {CELL_DEG})::integer AS j,
           ((floor((extract(epoch FROM ts) - {_EPOCH_MONDAY_S}) / 3600)::bigint %% 168 + 168)
             %% 168)::smallint AS h,
           power(0.5, extract(epoch FROM (%(ref)s - ts)) / %(half_life_s)s) AS w,
           speed_kmh::float8 / 3.6 AS mps
    FROM pings
    WHERE ts >= %(since)s AND ts < %(until)s AND trip_id IS NOT NULL
      AND speed_kmh >= {MOVING_MPS * 3.6}
      AND (accuracy_m IS NULL OR accuracy_m <= {MAX_ACCURACY_M})
)
INSERT INTO speed_cells AS c (cell_i, cell_j, hour_of_week, weight, sum_mps)
SELECT i, j, h, sum(w), sum(w * mps) FROM s GROUP BY i, j, h
ON CONFLICT (cell_i, cell_j, hour_of_week) DO UPDATE
SET weight = c.weight + EXCLUDED.weight, sum_mps = c.sum_mps + EXCLUDED.sum_mps
"""

_SAVE = """
INSERT INTO speed_learning (id, learned_until, decayed_to, learned_at, cells)
VALUES (true, %(until)s, %(ref)s, now(), %(cells)s)
ON CONFLICT (id) DO UPDATE SET learned_until = EXCLUDED.learned_until,
    decayed_to = EXCLUDED.decayed_to, learned_at = now(), cells = EXCLUDED.cells
"""


@dataclass(frozen=True, slots=True)
class Learned:
    """What one :func:`learn` run did."""

    since: datetime | None  # None: nothing to do (already learned up to ``until``)
    until: datetime
    cells: int  # (cell, hour) rows the new pings touched
    decayed: bool


async def learn(
    conn: AsyncConnection,
    until: datetime,
    *,
    half_life_days: float,
    first_days: float,
) -> Learned:
    """Add the pings stored in [last run's ``until``, ``until``) to ``speed_cells`` (the
    first run looks back ``first_days``), in one transaction."""
    half_life_s = half_life_days * 86_400.0
    async with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(
            "INSERT INTO speed_learning (id, learned_until, decayed_to) "
            "VALUES (true, %s, %s) ON CONFLICT (id) DO NOTHING",
            (until - timedelta(days=first_days), until),
        )
        await cur.execute(_STATE)
        row = await cur.fetchone()
        assert row is not None
        since, ref = row
        if since >= until:
            return Learned(None, until, 0, False)
        decayed = until - ref >= DECAY_EVERY
        if decayed:
            f = 0.5 ** ((until - ref).total_seconds() / half_life_s)
            await cur.execute(_DECAY, {"f": f})
            await cur.execute("DELETE FROM speed_cells WHERE weight < %s", (FORGET_WEIGHT,))
            ref = until
        await cur.execute(
            _ADD, {"ref": ref, "half_life_s": half_life_s, "since": since, "until": until}
        )
        cells = cur.rowcount
        await cur.execute(_SAVE, {"until": until, "ref": ref, "cells": cells})
    return Learned(since, until, cells, decayed)


async def learned_until(conn: AsyncConnection) -> datetime | None:
    """Up to when the stored pings are learned (None: never)."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute("SELECT learned_until FROM speed_learning WHERE id")
        row = await cur.fetchone()
    return row[0] if row else None


async def load(conn: AsyncConnection) -> SpeedProfile | None:
    """The learned speeds as the engine uses them (None when nothing is learned yet)."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute("SELECT cell_i, cell_j, hour_of_week, weight, sum_mps FROM speed_cells")
        rows = await cur.fetchall()
    if not rows:
        return None
    i, j, h, w, s = (np.array(col) for col in zip(*rows, strict=True))
    return SpeedProfile.from_cells(
        SpeedCells(
            i.astype(np.int64),
            j.astype(np.int64),
            h.astype(np.int64),
            w.astype(np.float64),
            s.astype(np.float64),
        )
    )


def default_until(now: datetime | None = None, lag: timedelta = timedelta(minutes=10)) -> datetime:
    """Learn up to this instant: ``lag`` behind now, so pings still in flight are in."""
    return (now or datetime.now(UTC)) - lag
