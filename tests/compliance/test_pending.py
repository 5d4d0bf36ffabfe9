"""compliance.pending: a resting block gives back exactly the pings it was packed from."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance.pending import Pending, pack, unpack

T0_MS = 1_763_798_400_000


def _bits(a: np.ndarray) -> np.ndarray:
    """Bit patterns (-0.0 differs from 0.0), every NaN as one (its payload means nothing)."""
    return np.where(np.isnan(a), np.nan, a).view(np.int64)


def _coord(limit: float) -> st.SearchStrategy[float]:
    # 7-decimal fixes (packed narrow) and any float (kept 64-bit)
    return st.one_of(
        st.integers(-int(limit * 1e7), int(limit * 1e7)).map(lambda k: k / 1e7),
        st.floats(-limit, limit, allow_nan=False),
    )


def _reading() -> st.SearchStrategy[float]:
    return st.one_of(
        st.integers(-32767, 32767).map(lambda k: k / 10.0),
        st.floats(allow_nan=True, allow_infinity=False, width=64),
        st.just(float("nan")),
        st.just(-0.0),
    )


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 3_000_000_000),
            *(_coord(90), _coord(180)),
            *(_reading(), _reading(), _reading()),
        ),
        min_size=1,
        max_size=40,
    ),
    st.one_of(
        st.just("absent"),  # a tracker without sequence numbers
        st.integers(0, 2**40),  # consecutive from this base (int32 offsets)
        st.just("any"),  # anything, -1 (absent) mixed in
    ),
    st.randoms(use_true_random=False),
)
def test_pack_unpack_is_exact(rows, seq_kind, rnd) -> None:
    n = len(rows)
    ts = T0_MS + np.cumsum([r[0] for r in rows]).astype(np.int64)
    lat, lon, spd, acc, hdg = (np.array([r[k] for r in rows], np.float64) for k in range(1, 6))
    if seq_kind == "absent":
        seq = np.full(n, -1, np.int64)
    elif seq_kind == "any":
        seq = np.array([rnd.choice([-1, rnd.randrange(-(2**63), 2**63)]) for _ in rows])
    else:
        seq = np.arange(n, dtype=np.int64) + int(seq_kind)
    p = Pending(
        ts, lat, lon, lat * 2.0, lon * 3.0, spd, acc, hdg, seq, np.arange(n, dtype=np.int64)
    )
    q = unpack(pack(p), lambda a, b: (a * 2.0, b * 3.0))
    assert np.array_equal(q.ts_ms, p.ts_ms)
    assert np.array_equal(q.seq, p.seq)
    for name in ("lat", "lon", "x_m", "y_m", "speed_kmh", "accuracy_m", "heading_deg"):
        assert np.array_equal(_bits(getattr(q, name)), _bits(getattr(p, name))), name
    assert np.all(q.row == -1)
    assert all(c.flags.writeable and c.flags.c_contiguous for c in q.columns())


def test_typical_fixes_rest_in_18_bytes_each() -> None:
    n = 30
    ts = T0_MS + np.arange(n, dtype=np.int64) * 1000
    lat = np.round(-6.2 + np.arange(n) * 1e-4, 7)
    lon = np.round(106.8 + np.arange(n) * 1e-4, 7)
    spd = np.full(n, 43.2)
    acc = np.full(n, np.nan)
    hdg = np.full(n, 271.5)
    block = pack(
        Pending(ts, lat, lon, lat, lon, spd, acc, hdg, np.full(n, -1), np.arange(n, dtype=np.int64))
    )
    assert len(block) == 24 + 18 * n


def test_sequence_numbers_rest_in_8_bytes_a_run_else_4_bytes_each() -> None:
    n = 30
    ts = T0_MS + np.arange(n, dtype=np.int64) * 1000
    lat = np.round(-6.2 + np.arange(n) * 1e-4, 7)
    seq = 5_000_000_000 + np.arange(n, dtype=np.int64)
    spd = np.full(n, 43.2)
    p = Pending(ts, lat, lat, lat, lat, spd, spd, spd, seq, np.arange(n, dtype=np.int64))
    block = pack(p)
    assert len(block) == 24 + 18 * n + 8  # counting up by one: the first alone
    assert np.array_equal(unpack(block, lambda a, b: (a, b)).seq, seq)
    seq[10:] += 1  # a lost fix
    block = pack(p)
    assert len(block) == 24 + 18 * n + 8 + 4 * n
    assert np.array_equal(unpack(block, lambda a, b: (a, b)).seq, seq)
    # offsets that would overflow int64 arithmetic stay 64-bit
    extremes = np.array([-1, 2**63 - 1] * 15, np.int64)
    p.seq = extremes
    assert np.array_equal(unpack(pack(p), lambda a, b: (a, b)).seq, extremes)
