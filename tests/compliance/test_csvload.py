"""compliance.csvload: the one-pass Numba parser against Python's own parsing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance.csvload import load_pings_csv
from compliance.grouping import groups_by_code

# up to 15 significant digits and exponents within +-22: the mantissa and the power of ten
# are exact, so one multiplication or division rounds correctly, like float()
NUMBER = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False)
    .filter(lambda f: f == 0 or abs(f) > 1e-6)
    .map(lambda f: f"{f:.15g}"),
    st.decimals(-200, 200, places=7, allow_nan=False, allow_infinity=False).map(str),
    st.integers(-(10**15), 10**15).map(str),
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["V1", "V10", "b-2", "A.x"]), st.integers(0, 50), NUMBER),
        max_size=40,
    ),
    st.booleans(),
)
def test_values_and_groups_match_python(tmp_path_factory, rows, crlf) -> None:
    path: Path = tmp_path_factory.mktemp("csv") / "p.csv"
    nl = "\r\n" if crlf else "\n"
    lines = ["vehicle_id,ts,lat,lon,speed"]
    lines += [f"{v},{1_763_798_400_000 + t * 1000},-6.2,106.8,{x}" for v, t, x in rows]
    path.write_text(nl.join(lines) + nl)
    got = load_pings_csv(path)
    assert got.vehicle_id == [v for v, _, _ in rows]
    assert got.ts_ms.tolist() == [1_763_798_400_000 + t * 1000 for _, t, _ in rows]
    assert got.speed_kmh.tolist() == [float(x) for _, _, x in rows]
    # the loader's own grouping (a fast path for files already grouped in ts order)
    want = groups_by_code(got.vehicle_names, got.vehicle_code, got.ts_ms)  # type: ignore[attr-defined]
    have = got.groups()  # type: ignore[attr-defined]
    assert [v for v, _ in have] == [v for v, _ in want]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(have, want, strict=True))


def test_grouped_file_is_recognised(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    rows = [f"V{v},{t},-6.2,106.8" for v in (2, 1) for t in (1000, 1000, 2000)]
    path.write_text("vehicle_id,ts,lat,lon\n" + "\n".join(rows) + "\n")
    got = load_pings_csv(path)
    assert got.grouped  # type: ignore[attr-defined]
    assert [(v, r.tolist()) for v, r in got.groups()] == [  # type: ignore[attr-defined]
        ("V1", [3, 4, 5]),
        ("V2", [0, 1, 2]),
    ]
