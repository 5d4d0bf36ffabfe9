"""store.copy_binary against the real PostgreSQL: what its payload stores equals what
psycopg's own row-by-row binary COPY stores, for every column kind, NULLs included."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store.copy_binary import Columns

_TABLE = """
CREATE TEMP TABLE IF NOT EXISTS copy_check (
    k int, ts timestamptz, f8 float8, f4 float4, i8 bigint, flag bool, a text, b text
)
"""
_COLUMNS = "ts, f8, f4, i8, flag, a, b"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# text PostgreSQL can hold: no NUL, no lone surrogates
texts = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"))
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
row = st.tuples(
    st.integers(-(2**40), 2**42),  # epoch ms: before 1970 and long after 2000
    st.one_of(st.just(math.nan), finite, st.sampled_from([math.inf, -math.inf, -0.0])),
    st.one_of(st.just(math.nan), st.floats(width=32, allow_nan=False)),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([-1, 0, 1]),
    st.one_of(st.none(), texts),
    st.one_of(st.none(), texts),
)


@pytest.fixture(scope="module")
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute(_TABLE)
        yield c


def _stored(conn: psycopg.Connection, k: int) -> list[tuple[object, ...]]:
    return conn.execute(
        f"SELECT {_COLUMNS} FROM copy_check WHERE k = %s ORDER BY ts, i8, a, b", [k]
    ).fetchall()


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(row, max_size=30))
def test_payload_stores_what_psycopg_row_copy_stores(
    conn: psycopg.Connection, rows: list[tuple[int, float, float, int, int, str | None, str | None]]
) -> None:
    conn.execute("TRUNCATE copy_check")
    n = len(rows)
    cols = list(zip(*rows, strict=True)) if rows else [[]] * 7
    payload = (
        Columns(n)
        .timestamptz_ms(np.array(cols[0], np.int64))
        .float8(np.array(cols[1], np.float64))
        .float4(np.array(cols[2], np.float64))
        .int8(np.array(cols[3], np.int64))
        .bool_flag(np.array(cols[4], np.int8))
        .text(list(cols[5]))
        .text(list(cols[6]))
        .payload()
    )
    sql = f"COPY copy_check (k, {_COLUMNS}) FROM STDIN (FORMAT BINARY)"
    # ours: k is filled in after (the payload has no k column)
    with conn.cursor().copy(f"COPY copy_check ({_COLUMNS}) FROM STDIN (FORMAT BINARY)") as cp:
        cp.write(payload)
    conn.execute("UPDATE copy_check SET k = 1")
    with conn.cursor().copy(sql) as cp:
        cp.set_types(["int4", "timestamptz", "float8", "float4", "int8", "bool", "text", "text"])
        for ms, f8, f4, i8, flag, a, b in rows:
            cp.write_row(
                (
                    2,
                    _EPOCH + timedelta(milliseconds=ms),
                    None if math.isnan(f8) else f8,
                    None if math.isnan(f4) else f4,
                    i8,
                    None if flag < 0 else flag > 0,
                    a,
                    b,
                )
            )
    assert _stored(conn, 1) == _stored(conn, 2)
    assert len(_stored(conn, 1)) == n


def test_null_below_and_column_order() -> None:
    cols = Columns(2).int8(np.array([-1, 7], np.int64), null_below=0)
    payload = cols.text(["x", None]).payload()
    # row 1: 2 fields, NULL int8, text "x"; row 2: int8 7, NULL text
    body = payload[19:-2]
    assert body == (
        b"\x00\x02" + b"\xff\xff\xff\xff" + b"\x00\x00\x00\x01x"
        b"\x00\x02" + b"\x00\x00\x00\x08" + (7).to_bytes(8, "big") + b"\xff\xff\xff\xff"
    )
    with pytest.raises(ValueError, match="before the text"):
        cols.float8(np.zeros(2))
