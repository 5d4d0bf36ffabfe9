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
