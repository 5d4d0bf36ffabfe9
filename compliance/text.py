"""Text a client sends: what is refused, with a message saying what to do (issue #14).

PostgreSQL ``text`` and ``jsonb`` cannot hold NUL (U+0000), and an unpaired UTF-16
surrogate (a JSON ``"\\ud800"`` escape decodes to one) is not Unicode at all: it cannot
be encoded as UTF-8 to reach the database. Either used to surface as a 500; here they are
refused up front, everywhere the same way:

- :data:`Line` — identifiers (trip, stop, order and vehicle ids, path and query
  parameters) and one-line names (recipient, token names): no control characters at all
  (C0, DEL, C1), no surrogates.
- :data:`Text` — free text (notes): like :data:`Line`, but tab, line feed and carriage
  return are allowed.
- :func:`json_problems` — any JSON value stored as it came (the trip plan): no NUL and no
  surrogates in any string or key at any depth, and nothing else ``jsonb`` (or orjson,
  which writes it) cannot take.

The checks are ``AfterValidator``\\ s, so pydantic reports them like any other field
error (the API answers 422 naming the field); :func:`check_line` / :func:`check_text`
raise ``ValueError`` for callers outside pydantic (the ``routewatch token`` CLI).
:func:`storable` is the other direction, for evidence that must be kept whatever it
holds (rejected MQTT topics): it escapes what the database cannot store.

Everything else is accepted and stored exactly: right-to-left scripts, emoji, combining
marks, format characters, non-characters.
"""

from __future__ import annotations

import itertools
import math
import re
from typing import Annotated, Any, NamedTuple

import numpy as np
from pydantic import AfterValidator

#: NUL, any other control character (C0, DEL, C1), or a surrogate code point
_LINE_BAD = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
#: the same, except tab, line feed and carriage return
_TEXT_BAD = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
#: what no stored string may hold
_STORE_BAD = re.compile(r"[\x00\ud800-\udfff]")


def _describe(value: str, match: re.Match[str], multiline: bool) -> str:
    ch = match.group()
    where = f"at position {match.start()}"
    if ch == "\x00":
        return (
            f"contains a NUL character (U+0000) {where}, which cannot be stored: "
            "remove it (a JSON \\u0000 escape is one too)"
        )
    code = ord(ch)
    if 0xD800 <= code <= 0xDFFF:
        return (
            f"contains an unpaired surrogate (U+{code:04X}) {where}, which is not valid "
            "Unicode: send the text as UTF-8 (or a complete \\uD83D\\uDE00-style pair)"
        )
    if multiline:
        return (
            f"contains the control character U+{code:04X} {where}: free text may hold "
            "tab, line feed and carriage return but no other control characters"
        )
    return (
        f"contains the control character U+{code:04X} {where}: identifiers and names "
        "must be one line of printable text (no tabs, line breaks or other control "
        "characters)"
    )


def line_problem(value: str) -> str | None:
    """Why ``value`` is not acceptable as an identifier or one-line name, or None."""
    match = _LINE_BAD.search(value)
    return None if match is None else _describe(value, match, multiline=False)


def text_problem(value: str) -> str | None:
    """Why ``value`` is not acceptable as free text, or None."""
    match = _TEXT_BAD.search(value)
    return None if match is None else _describe(value, match, multiline=True)


def check_line(value: str) -> str:
    """``value`` unchanged, or ``ValueError`` saying what to fix."""
    if problem := line_problem(value):
        raise ValueError(problem)
    return value


def check_text(value: str) -> str:
    """``value`` unchanged, or ``ValueError`` saying what to fix."""
    if problem := text_problem(value):
        raise ValueError(problem)
    return value


Line = Annotated[str, AfterValidator(check_line)]
"""An identifier or a one-line name: printable text, no control characters."""

Text = Annotated[str, AfterValidator(check_text)]
"""Free text: printable text plus tab, line feed and carriage return."""


#: nesting deeper than this is refused (orjson, which writes the stored JSON, stops at 255)
MAX_JSON_DEPTH = 64
#: integers beyond these do not fit the 64 bits orjson writes
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1

Loc = tuple[str | int, ...]


class _Key(NamedTuple):
    """An object key with a problem, queued in document order (before its value)."""

    name: str


def json_problems(obj: Any, loc: Loc = ()) -> list[tuple[Loc, str]]:
    """``(loc, message)`` for everything in the parsed JSON ``obj`` that cannot be stored
    as it came, in document order: a string or object key holding NUL or an unpaired
    surrogate, a non-finite number (``NaN``/``Infinity``, which Python's parser accepts),
    an integer beyond 64 bits, nesting deeper than :data:`MAX_JSON_DEPTH`.

    Iterative, so a deeply nested document cannot exhaust the stack; locations name keys
    as :func:`storable` shows them."""
    found: list[tuple[Loc, str]] = []
    stack: list[tuple[Any, Loc, int]] = [(obj, loc, 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            if match := _STORE_BAD.search(item):
                found.append((where, _describe(item, match, multiline=True)))
        elif isinstance(item, _Key):
            if match := _STORE_BAD.search(item.name):
                found.append((where, "the key " + _describe(item.name, match, multiline=True)))
        elif isinstance(item, bool) or item is None:
            pass
        elif isinstance(item, int):
            if not _INT_MIN <= item <= _INT_MAX:
                found.append((where, "integer too large to store (at most 64 bits)"))
        elif isinstance(item, float):
            if not math.isfinite(item):
                found.append((where, f"{item} is not a JSON number: send a finite number"))
        elif isinstance(item, dict | list | tuple):
            if depth >= MAX_JSON_DEPTH:
                found.append((where, f"nested deeper than {MAX_JSON_DEPTH} levels"))
                continue
            if depth + 1 < MAX_JSON_DEPTH and _plain_numbers(item):
                continue
            children: list[tuple[Any, Loc, int]] = []
            if isinstance(item, dict):
                for key, value in item.items():
                    at = (*where, storable(key) if isinstance(key, str) else key)
                    if isinstance(key, str) and _STORE_BAD.search(key):
                        children.append((_Key(key), at, depth))
                    children.append((value, at, depth + 1))
            else:
                children = [(value, (*where, i), depth + 1) for i, value in enumerate(item)]
            stack.extend(reversed(children))
    return found


def _finite_floats(values: list[Any] | tuple[Any, ...]) -> bool:
    if not all(type(v) is float for v in values):
        return False
    try:
        return math.isfinite(math.fsum(values))
    except OverflowError:  # finite values whose sum overflows: the slow path decides
        return False


def _plain_numbers(values: Any) -> bool:
    """The bulk of a plan quickly: a list of finite floats, or of lists of them (a route's
    coordinates). False for anything else, which the general walk then checks."""
    if not isinstance(values, list | tuple):
        return False
    if _finite_floats(values):
        return True
    if not values or not all(type(v) is list or type(v) is tuple for v in values):
        return False
    # a route's points in one NumPy pass: whatever float() takes is storable (a string
    # it parses holds no NUL nor surrogate), so finite values below 2**63 (no integer
    # beyond 64 bits) leave nothing to report
    try:
        flat = np.fromiter(itertools.chain.from_iterable(values), np.float64)
    except (TypeError, ValueError, OverflowError):
        return False
    return bool(np.isfinite(flat).all() and (np.abs(flat) < 2.0**63).all())


def storable(value: str) -> str:
    """``value`` with what the database cannot store escaped (NUL as ``\\x00``, an
    unpaired surrogate as ``\\udcff``): for evidence that is kept, not validated."""
    if _STORE_BAD.search(value) is None:
        return value
    escaped = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return escaped.replace("\x00", "\\x00")
