"""Event ids and times: the hand-rolled fast paths agree with the standard library."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from compliance.events import _EVENT_NS, Event, EventType, ms_to_rfc3339, name_uuid

# year 1 to 9999, as datetime has them
MS = st.integers(-62_135_596_800_000, 253_402_300_799_999)


@given(MS)
def test_rfc3339_is_datetimes_format(ts_ms: int) -> None:
    dt = datetime.fromtimestamp(ts_ms // 1000, tz=UTC)
    frac = f".{ts_ms % 1000:03d}" if ts_ms % 1000 else ""
    assert ms_to_rfc3339(ts_ms) == dt.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"


def test_rfc3339_examples() -> None:
    assert ms_to_rfc3339(0) == "1970-01-01T00:00:00Z"
    assert ms_to_rfc3339(1_763_798_400_123) == "2025-11-22T08:00:00.123Z"
    assert ms_to_rfc3339(-1) == "1969-12-31T23:59:59.999Z"


@given(st.text())
def test_name_uuid_is_uuid5(name: str) -> None:
    try:
        name.encode()
    except UnicodeEncodeError:  # (a lone surrogate: uuid5 refuses it alike)
        return
    assert name_uuid(name) == str(uuid.uuid5(_EVENT_NS, name))


def test_event_id_is_stable() -> None:
    # ids are stored: the same event must keep the id it has always had
    e = Event(
        EventType.STOP_ARRIVED, "T1", "V1", 1_763_798_400_000, 0.0, 0.0, 0.0, {"stop_id": "S1"}
    )
    assert e.event_id == "33131969-7bad-5589-bb75-4c9f8f50c69f"
