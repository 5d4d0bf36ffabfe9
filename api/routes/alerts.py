"""Alerts: list with filters and keyset paging, acknowledge, and the live SSE stream.

The stream sends one ``alert`` message per alert change, with the alert's ``stream_id``
as the SSE ``id``. A reconnecting client sends ``Last-Event-ID`` and receives every
change after it — none lost, none repeated (stream ids are drawn in commit order, see
``store.alerts``). Wake-ups come from ``LISTEN routewatch_alerts``; the stream re-reads
the table after each wake-up and at least every ``_POLL_S`` seconds, so a notification
that slips between two reads delays a message but never loses it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

import psycopg
from fastapi import APIRouter, Depends, Header, HTTPException, Query, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from api import sse
from api.auth import require_role
from api.deps import ConnDep, SettingsDep
from api.errors import Problem, unprocessable
from api.links import link
from compliance.text import Line, Text
from store import alerts as store

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])

Supervisor = Annotated[Any, Depends(require_role("supervisor"))]
StreamSupervisor = Annotated[Any, Depends(sse.StreamRoleChecker("supervisor"))]

_POLL_S = 2.0
_BATCH = 500
#: channel the stream LISTENs on (a benchmark points it elsewhere to measure polling alone)
_listen_channel = store.NOTIFY_CHANNEL

AlertStatus = Literal["open", "acked", "resolved"]


class AckIn(BaseModel):
    note: Text | None = Field(None, max_length=2000, description="why / what was done")


class AlertPage(BaseModel):
    alerts: list[dict[str, Any]]
    next_cursor: str | None = Field(
        None, description="pass as ?cursor= for the next (older) page; null on the last page"
    )


@router.get(
    "",
    response_model=AlertPage,
    responses={
        200: {
            "links": {
                "AckAlert": link(
                    "POST",
                    "/v1/alerts/{alert_id}/ack",
                    "acknowledge the newest alert of the page",
                    alert_id="$response.body#/alerts/0/id",
                )
            }
        },
        400: {"model": Problem, "description": "malformed cursor"},
    },
)
async def list_alerts(
    conn: ConnDep,
    _: Supervisor,
    status_: Annotated[
        list[Line] | None, Query(alias="status", description="open, acked, resolved")
    ] = None,
    type_: Annotated[list[Line] | None, Query(alias="type")] = None,
    since: Annotated[datetime | None, Query(description="opened at or after (RFC 3339)")] = None,
    vehicle_id: Line | None = None,
    driver_id: Annotated[Line | None, Query(description="alerts of this driver's trips")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> AlertPage:
    """Persisted alerts, newest first. ``status`` and ``type`` may repeat or be comma lists."""
    before_id = None
    if cursor is not None:
        # (ASCII digits: str.isdigit() admits "²", which int() refuses; and a bigint)
        if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 18):
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "malformed cursor")
        before_id = int(cursor)
    if since is not None and since.tzinfo is None:
        raise unprocessable(["query", "since"], "since needs a UTC offset")
    statuses = _split(status_)
    if bad := sorted(set(statuses) - set(get_args(AlertStatus))):
        raise unprocessable(["query", "status"], f"unknown status {', '.join(bad)}")
    rows = await store.list_alerts(
        conn,
        status=statuses,
        types=_split(type_),
        since=since,
        vehicle_id=vehicle_id,
        driver_id=driver_id,
        before_id=before_id,
        limit=limit,
    )
    next_cursor = str(rows[-1]["id"]) if len(rows) == limit else None
    return AlertPage(alerts=[store.to_public(r) for r in rows], next_cursor=next_cursor)


def _split(values: Sequence[str] | None) -> list[str]:
    return [v for raw in values or [] for v in raw.split(",") if v]


@router.post("/{alert_id}/ack")
async def ack_alert(
    alert_id: int, conn: ConnDep, principal: Supervisor, body: AckIn | None = None
) -> dict[str, Any]:
    """Acknowledge: records who (the token's name), when, and an optional note."""
    who = principal.name or f"token-{principal.token_id}"
    row = await store.acknowledge(conn, alert_id, by=who, note=body.note if body else None)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such alert")
    return store.to_public(row)


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_alerts(
    settings: SettingsDep,
    _: StreamSupervisor,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    after: Annotated[
        int | None, Query(ge=0, description="resume after this stream id (if no header)")
    ] = None,
) -> StreamingResponse:
    """Server-Sent Events: ``event: alert`` per new or changed alert, ``id`` = stream id.

    Without ``Last-Event-ID`` (or ``?after=``) the stream starts with changes from now on.
    Accepts ``?access_token=`` because EventSource cannot send headers.
    """
    resume_after = sse.parse_last_event_id(last_event_id, after)
    return StreamingResponse(
        _alert_messages(settings.database_url, resume_after),
        media_type="text/event-stream",
        headers=sse.SSE_HEADERS,
    )


async def _alert_messages(database_url: str, after: int | None) -> AsyncIterator[bytes]:
    # A dedicated connection: LISTEN ties it up for the life of the stream, which would
    # starve the request pool.
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(f"LISTEN {_listen_channel}")
        # LISTEN before the first read: anything committed later also wakes us up.
        last = after if after is not None else await store.latest_stream_id(conn)
        yield sse.retry_hint()
        last_write = time.monotonic()
        while True:
            rows = await store.changes_after(conn, last, limit=_BATCH)
            for row in rows:
                last = row["stream_id"]
                yield sse.format_event(store.to_public(row), event="alert", event_id=last)
            if rows:
                last_write = time.monotonic()
                if len(rows) == _BATCH:
                    continue
            async for _note in conn.notifies(timeout=_POLL_S, stop_after=1):
                pass
            if time.monotonic() - last_write >= sse.HEARTBEAT_S:
                yield sse.comment()
                last_write = time.monotonic()
