"""compliance.text: the one definition of the text routewatch refuses (issue #14)."""

from __future__ import annotations

import json
import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compliance.text import (
    MAX_JSON_DEPTH,
    check_line,
    check_text,
    json_problems,
    line_problem,
    storable,
    text_problem,
)

any_text = st.text(st.characters(codec=None, exclude_categories=[]), max_size=20)


@given(any_text)
def test_line_refuses_exactly_controls_and_surrogates(value: str) -> None:
    bad = [c for c in value if unicodedata.category(c) in ("Cc", "Cs")]
    assert (line_problem(value) is not None) == bool(bad)
    multiline_bad = [c for c in bad if c not in "\t\n\r"]
    assert (text_problem(value) is not None) == bool(multiline_bad)
    if not bad:
        assert check_line(value) is value and check_text(value) is value


@given(any_text)
def test_storable_is_always_storable_and_changes_only_what_it_must(value: str) -> None:
    kept = storable(value)
    kept.encode("utf-8")  # no surrogates left
    assert "\x00" not in kept
    if "\x00" not in value and not any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        assert kept is value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("a\x00b", "NUL character (U+0000) at position 1"),
        ("ab\ud800", "unpaired surrogate (U+D800) at position 2"),
        ("a\x07", "control character U+0007 at position 1"),
    ],
)
def test_messages_say_what_and_where(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        check_line(value)


def test_json_problems_at_any_depth_with_locations() -> None:
    doc = json.loads(
        '{"type": "Feature", "properties": {"name": "a\\u0000", "k\\ud800": 1, '
        '"n": [1.5, NaN, 18446744073709551616], "ok": "مرحبا 😀\\t"}}'
    )
    found = json_problems(doc, ("route",))
    assert [loc for loc, _ in found] == [
        ("route", "properties", "name"),
        ("route", "properties", "k\\ud800"),  # a key is named as it can be shown
        ("route", "properties", "n", 1),
        ("route", "properties", "n", 2),
    ]
    messages = [msg for _, msg in found]
    assert "NUL character (U+0000) at position 1" in messages[0]
    assert messages[1].startswith("the key contains an unpaired surrogate (U+D800)")
    assert messages[2:] == [
        "nan is not a JSON number: send a finite number",
        "integer too large to store (at most 64 bits)",
    ]


def test_json_nesting_is_bounded_and_walked_without_recursion() -> None:
    deep: list[object] = []
    for _ in range(5000):
        deep = [deep]
    [(loc, msg)] = json_problems(deep)
    assert len(loc) == MAX_JSON_DEPTH and "nested deeper" in msg
    assert json_problems({"coordinates": [[106.8, -6.2]] * 1000}) == []


def test_route_array_fast_path_equals_the_exact_one() -> None:
    """route_array's C-level/NumPy path for plain [lon, lat] floats gives what the exact
    per-point path gives, and anything else (ints, bools, strings, altitudes, NaN,
    out-of-range points, a Feature, several parts) goes the exact way, errors included."""
    import numpy as np
    import pytest

    from compliance.plan import _route_lines, route_array

    def exact(route: object) -> np.ndarray:
        return np.array([pt for line in _route_lines(route) for pt in line]).reshape(-1, 2)

    good = [
        {"type": "LineString", "coordinates": [[106.8, -6.2], [106.9, -6.3]]},
        {"type": "LineString", "coordinates": [[106.8, -6.2], [107, -6]]},  # ints
        {"type": "LineString", "coordinates": [[106.8, -6.2, 5.0], [106.9, -6.3, 7.0]]},
        {"type": "LineString", "coordinates": [[106.8, -6.2], [106.9, -6.3, 1.0]]},
        {
            "type": "Feature",
            "properties": {},
            "geometry": {"type": "LineString", "coordinates": [[1.0, 2.0], [3.0, 4.0]]},
        },
        {"type": "MultiLineString", "coordinates": [[[1.0, 2.0], [3.0, 4.0]], [[3.0, 4.0]]]},
    ]
    for route in good:
        assert np.array_equal(route_array(route), exact(route))
        assert np.array_equal(route_array(route, trusted=True), exact(route))
    bad = [
        [[106.8, -6.2], [True, -6.3]],
        [[106.8, -6.2], ["106.9", -6.3]],
        [[106.8, -6.2], [float("nan"), -6.3]],
        [[106.8, -6.2], [200.0, -6.3]],
        [[106.8, -6.2], [106.9]],
        [[106.8, -6.2], [106.9], [1.0, 2.0, 3.0]],  # as many numbers as pairs would have
    ]
    for coords in bad:
        route = {"type": "LineString", "coordinates": coords}
        with pytest.raises(ValueError) as want:
            exact(route)
        with pytest.raises(ValueError) as got:
            route_array(route)
        assert str(got.value) == str(want.value)


def test_a_stored_plan_is_parsed_again_without_the_plan_wide_checks() -> None:
    from compliance.plan import STORED, TripPlan
    from tests.compliance.builders import plan

    p = plan([(0.0, 0.0), (1000.0, 0.0)], [{"stop_id": "S1", "xy": (500.0, 0.0)}])
    obj = p.model_dump(mode="json")
    assert TripPlan.model_validate(obj, context=STORED) == p
