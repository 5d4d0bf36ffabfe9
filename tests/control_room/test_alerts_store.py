"""Alerts from constructed event sequences: open, auto-resolve, ack, idempotency, paging."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.rows import dict_row

from store import alerts
from tests.control_room.factories import at, ev


async def _apply(database_url: str, events: list) -> int:
    async with await psycopg.AsyncConnection.connect(database_url) as conn, conn.transaction():
        return await alerts.apply_events(conn, events)


async def _rows(database_url: str, **filters) -> list[dict]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        return await alerts.list_alerts(conn, **filters)


async def test_open_then_partner_resolves(db: psycopg.Connection, database_url: str) -> None:
    await _apply(
        database_url,
        [
            ev("off_route", "T1", 10, offset_m=120.0, since="x"),
            ev("speeding", "T1", 20, limit_kmh=40, speed_kmh=60),
        ],
    )
    rows = await _rows(database_url)
    assert {r["type"]: r["status"] for r in rows} == {"off_route": "open", "speeding": "open"}

    await _apply(database_url, [ev("back_on_route", "T1", 40, off_route_s=30)])
    by_type = {r["type"]: r for r in await _rows(database_url)}
    assert by_type["off_route"]["status"] == "resolved"
    assert by_type["off_route"]["resolved_by"] == "back_on_route"
    assert by_type["off_route"]["resolved_at"] == at(40)
    assert by_type["speeding"]["status"] == "open"  # a different condition stays open


async def test_partner_only_resolves_its_own_trip(
    db: psycopg.Connection, database_url: str
) -> None:
    await _apply(database_url, [ev("off_route", "TA", 10), ev("off_route", "TB", 10)])
    await _apply(database_url, [ev("back_on_route", "TA", 20)])
    status = {r["trip_id"]: r["status"] for r in await _rows(database_url)}
    assert status == {"TA": "resolved", "TB": "open"}


async def test_same_batch_open_then_resolve(db: psycopg.Connection, database_url: str) -> None:
    await _apply(database_url, [ev("signal_lost", "T2", 100), ev("signal_restored", "T2", 300)])
    (row,) = await _rows(database_url)
    assert (row["type"], row["status"]) == ("signal_lost", "resolved")


async def test_partner_resolves_even_with_an_earlier_event_time(
    db: psycopg.Connection, database_url: str
) -> None:
    # signal_lost is stamped by the clock tick; the restoring ping can carry an earlier
    # fix time when it arrives late. Emission order, not event time, pairs them.
    await _apply(database_url, [ev("signal_lost", "T2b", 500)])
    await _apply(database_url, [ev("signal_restored", "T2b", 450, gap_s=200)])
    (row,) = await _rows(database_url)
    assert row["status"] == "resolved"


async def test_late_resolved_per_stop(db: psycopg.Connection, database_url: str) -> None:
    await _apply(
        database_url,
        [
            ev("late", "T3", 10, stop_id="S1", delay_s=900),
            ev("late", "T3", 11, stop_id="S2", delay_s=900),
        ],
    )
    await _apply(database_url, [ev("back_on_schedule", "T3", 50, stop_id="S2")])
    status = {r["details"]["stop_id"]: r["status"] for r in await _rows(database_url)}
    assert status == {"S1": "open", "S2": "resolved"}


async def test_arrival_resolves_that_stops_late_alert(
    db: psycopg.Connection, database_url: str
) -> None:
    await _apply(
        database_url,
        [ev("late", "TL", 10, stop_id="S1"), ev("late", "TL", 11, stop_id="S2")],
    )
    await _apply(database_url, [ev("stop_arrived", "TL", 60, stop_id="S1", delay_s=700)])
    status = {
        r["details"]["stop_id"]: (r["status"], r["resolved_by"]) for r in await _rows(database_url)
    }
    assert status == {"S1": ("resolved", "stop_arrived"), "S2": ("open", None)}


async def test_trip_completed_resolves_conditions(
    db: psycopg.Connection, database_url: str
) -> None:
    await _apply(database_url, [ev("unplanned_stop", "T4", 10), ev("late", "T4", 12, stop_id="S1")])
    await _apply(database_url, [ev("trip_completed", "T4", 900, distance_m=5000)])
    assert {r["status"] for r in await _rows(database_url)} == {"resolved"}


async def test_reapplied_resolver_does_not_close_a_later_alert(
    db: psycopg.Connection, database_url: str
) -> None:
    ended = ev("speeding_ended", "T5", 50)
    await _apply(database_url, [ended])  # nothing open: resolves nothing
    await _apply(database_url, [ev("speeding", "T5", 100)])
    assert await _apply(database_url, [ended]) == 0  # re-delivered: applied once only
    (row,) = await _rows(database_url)
    assert row["status"] == "open"


async def test_idempotent_redelivery(db: psycopg.Connection, database_url: str) -> None:
    batch = [ev("off_route", "T6", 10), ev("back_on_route", "T6", 30), ev("off_route", "T6", 60)]
    first = await _apply(database_url, batch)
    before = {r["id"]: (r["status"], r["stream_id"]) for r in await _rows(database_url)}
    second = await _apply(database_url, batch)
    after = {r["id"]: (r["status"], r["stream_id"]) for r in await _rows(database_url)}
    assert first == 3 and second == 0
    assert before == after
    assert sorted(s for s, _ in after.values()) == ["open", "resolved"]


async def test_events_that_need_no_attention_are_ignored(
    db: psycopg.Connection, database_url: str
) -> None:
    assert (
        await _apply(
            database_url, [ev("trip_started", "T7", 1), ev("stop_arrived", "T7", 2, stop_id="S1")]
        )
        == 0
    )
    assert await _rows(database_url) == []


async def test_ack_records_who_when_note_and_bumps_stream(
    db: psycopg.Connection, database_url: str
) -> None:
    await _apply(database_url, [ev("speeding", "T8", 10)])
    (row,) = await _rows(database_url)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        acked = await alerts.acknowledge(conn, row["id"], by="alice", note="called driver")
        again = await alerts.acknowledge(conn, row["id"], by="bob", note="late click")
        missing = await alerts.acknowledge(conn, 999_999, by="bob", note=None)
    assert acked is not None and again is not None and missing is None
    assert (acked["status"], acked["acked_by"], acked["ack_note"]) == (
        "acked",
        "alice",
        "called driver",
    )
    assert acked["acked_at"] is not None
    assert acked["stream_id"] > row["stream_id"]
    assert again["acked_by"] == "alice" and again["stream_id"] == acked["stream_id"]
    # An acked alert is still auto-resolved by its partner.
    await _apply(database_url, [ev("speeding_ended", "T8", 40)])
    (final,) = await _rows(database_url)
    assert (final["status"], final["acked_by"]) == ("resolved", "alice")


async def test_filters_and_keyset_paging(db: psycopg.Connection, database_url: str) -> None:
    batch = [ev("speeding", f"P{i}", i, vehicle_id=f"V{i % 2}") for i in range(25)]
    batch += [ev("off_route", "P0", 100, vehicle_id="V0")]
    await _apply(database_url, batch)
    seen: list[int] = []
    cursor = None
    while True:
        page = await _rows(database_url, types=["speeding"], before_id=cursor, limit=10)
        if not page:
            break
        seen += [r["id"] for r in page]
        cursor = page[-1]["id"]
    assert len(seen) == 25 and len(set(seen)) == 25 and seen == sorted(seen, reverse=True)
    v1 = await _rows(database_url, vehicle_id="V1")
    assert len(v1) == 12 and {r["vehicle_id"] for r in v1} == {"V1"}
    recent = await _rows(database_url, since=at(20))
    assert {r["type"] for r in recent} == {"speeding", "off_route"} and len(recent) == 6


async def test_notify_sent_on_commit(db: psycopg.Connection, database_url: str) -> None:
    listener = psycopg.connect(database_url, autocommit=True)
    try:
        listener.execute(f"LISTEN {alerts.NOTIFY_CHANNEL}")
        await _apply(database_url, [ev("off_route", "T9", 1)])
        got = list(listener.notifies(timeout=2.0, stop_after=1))
        assert got and int(got[0].payload) > 0
    finally:
        listener.close()


@pytest.mark.parametrize("status", [["open"], ["resolved"]])
async def test_status_filter(db: psycopg.Connection, database_url: str, status: list[str]) -> None:
    await _apply(
        database_url,
        [ev("off_route", "TS", 1), ev("speeding", "TS", 2), ev("speeding_ended", "TS", 3)],
    )
    rows = await _rows(database_url, status=status)
    assert len(rows) == 1 and rows[0]["status"] == status[0]
    with db.cursor(row_factory=dict_row) as cur:
        assert cur.execute("SELECT count(*) AS n FROM alerts").fetchone() == {"n": 2}


def _pod_fixture(db: psycopg.Connection) -> None:
    from tests.control_room.factories import insert_trip

    insert_trip(db, "TP", "VP")
    db.execute(
        "INSERT INTO stops (trip_id, seq, stop_id, order_id, lon, lat, route_m, radius_m, "
        "service_s) VALUES ('TP', 0, 'S1', 'OP-1', 106.8, -6.2, 0, 75, 300), "
        "('TP', 1, 'S2', 'OP-2', 106.81, -6.2, 900, 75, 300)"
    )
    db.execute(
        "INSERT INTO orders (order_id, tracking_number, trip_id, stop_id) VALUES "
        "('OP-1', 'TNP1', 'TP', 'S1'), ('OP-2', 'TNP2', 'TP', 'S2')"
    )


def test_flagged_or_damaged_pod_raises_one_review_alert(db: psycopg.Connection) -> None:
    _pod_fixture(db)
    db.execute("INSERT INTO pod (order_id, recipient_name, condition) VALUES ('OP-1', 'A', 'ok')")
    assert db.execute("SELECT count(*) FROM alerts").fetchone() == (0,)
    db.execute(
        "UPDATE pod SET flagged = true, flag_reasons = '{far_from_stop}' WHERE order_id = 'OP-1'"
    )
    db.execute("UPDATE pod SET condition = 'damaged' WHERE order_id = 'OP-1'")  # same cause
    db.execute(
        "INSERT INTO pod (order_id, recipient_name, condition) VALUES ('OP-2', 'B', 'damaged')"
    )
    rows = db.execute(
        "SELECT type, vehicle_id, status, details->>'order_id' FROM alerts ORDER BY id"
    ).fetchall()
    assert rows == [("pod_review", "VP", "open", "OP-1"), ("pod_review", "VP", "open", "OP-2")]


def test_skipped_stop_raises_alert_once(db: psycopg.Connection) -> None:
    _pod_fixture(db)
    db.execute("UPDATE stops SET status = 'skipped' WHERE stop_id = 'S2'")
    db.execute("UPDATE stops SET status = 'skipped' WHERE stop_id = 'S2'")
    db.execute("UPDATE stops SET status = 'arrived' WHERE stop_id = 'S1'")
    rows = db.execute("SELECT type, details->>'stop_id' FROM alerts").fetchall()
    assert rows == [("stop_skipped", "S2")]
