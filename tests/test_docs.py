"""The docs in ``docs/`` name exactly what the code has.

Each checked list is a Markdown table under a fixed heading whose first column is the
name in backticks (``| `off_route` | ...``); the heading's section ends at the next
heading of any level. A failure names the file, the section and the missing or extra
names: add or remove the row.
"""

from __future__ import annotations

import argparse
import importlib
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

from fastapi.routing import APIRoute
from starlette.routing import Mount, Route

from api.main import ROUTERS, create_app
from compliance.config import Thresholds
from compliance.events import SEVERITY, EventType
from ingest.decode import Reason
from routewatch.cli import build_parser, command_names
from routewatch.settings import Settings

DOCS = Path(__file__).resolve().parent.parent / "docs"
INTERFACES = DOCS / "interfaces.md"
ARCHITECTURE = DOCS / "architecture.md"

HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"}  # not HEAD
_ROW = re.compile(r"^\| `([^`]+)` \|(.*)$", re.M)


def _section(doc: Path, heading: str) -> str:
    """The text under the line ``heading`` up to the next heading (outside code fences)."""
    lines = doc.read_text().splitlines()
    assert heading in lines, f"{doc.name}: heading {heading!r} not found"
    body: list[str] = []
    fenced = False
    for line in lines[lines.index(heading) + 1 :]:
        if line.startswith("```"):
            fenced = not fenced
        elif line.startswith("#") and not fenced:
            break
        body.append(line)
    return "\n".join(body)


def _rows(doc: Path, heading: str) -> list[tuple[str, list[str]]]:
    """(name in the first column, the other cells) of each table row of a section."""
    return [
        (m[1], [c.strip() for c in m[2].split(" | ")])
        for m in _ROW.finditer(_section(doc, heading))
    ]


def _names(doc: Path, heading: str) -> list[str]:
    return [name for name, _ in _rows(doc, heading)]


def _assert_same(documented: list[str], expected: set[str], doc: Path, heading: str) -> None:
    where = f"{doc.relative_to(DOCS.parent)} {heading!r}"
    twice = sorted({n for n in documented if documented.count(n) > 1})
    missing = sorted(expected - set(documented))
    extra = sorted(set(documented) - expected)
    problems = [
        f"listed more than once: {twice}" if twice else "",
        f"missing rows for {missing}" if missing else "",
        f"rows for names the code does not have: {extra}" if extra else "",
    ]
    assert not any(problems), f"{where}: " + "; ".join(p for p in problems if p)


# -- (a) events, and the other closed lists of names -------------------------------------


def test_event_catalog_lists_every_event_type() -> None:
    expected = {str(t) for t in EventType}
    _assert_same(_names(INTERFACES, "### Event catalog"), expected, INTERFACES, "### Event catalog")


def test_event_catalog_severities_match_the_code() -> None:
    heading = "### Event catalog"
    known = {str(t) for t in EventType}
    wrong = {
        name: (cells[0], SEVERITY[EventType(name)])
        for name, cells in _rows(INTERFACES, heading)
        if name in known and cells[0] != SEVERITY[EventType(name)]
    }
    assert not wrong, f"docs/interfaces.md {heading!r}: (documented, code) severities {wrong}"


def test_rejection_reasons_are_documented() -> None:
    heading = "### Rejection reasons"
    _assert_same(_names(INTERFACES, heading), {str(r) for r in Reason}, INTERFACES, heading)


def test_thresholds_and_defaults_are_documented() -> None:
    heading = "### Detectors and their default thresholds"
    rows = _rows(ARCHITECTURE, heading)
    defaults = {f.name: float(f.default) for f in fields(Thresholds)}  # type: ignore[arg-type]
    _assert_same([n for n, _ in rows], set(defaults), ARCHITECTURE, heading)
    wrong = {n: (c[0], defaults[n]) for n, c in rows if float(c[0]) != defaults[n]}
    assert not wrong, f"docs/architecture.md {heading!r}: (documented, code) defaults {wrong}"


# -- (b) HTTP routes -----------------------------------------------------------------------


def _method_paths(names: list[str]) -> list[str]:
    bad = [n for n in names if not re.fullmatch(r"[A-Z]+ /\S*", n)]
    assert not bad, f"docs/interfaces.md: rows not of the form `METHOD /path`: {bad}"
    return names


def _app() -> Any:
    return create_app(Settings())


def test_every_openapi_endpoint_is_documented() -> None:
    heading = "### Endpoints"
    spec = _app().openapi()["paths"]
    expected = {
        f"{method.upper()} {path}"
        for path, ops in spec.items()
        for method in ops
        if method.upper() in HTTP_METHODS
    }
    _assert_same(_method_paths(_names(INTERFACES, heading)), expected, INTERFACES, heading)


def _hidden_routes() -> set[str]:
    """Routes outside the OpenAPI description: the routers' pages (include_in_schema
    false), FastAPI's own documentation routes, and mounted static files."""
    found: set[str] = set()
    for name in ROUTERS:
        for route in importlib.import_module(f"api.routes.{name}").router.routes:
            if isinstance(route, APIRoute) and not route.include_in_schema:
                found |= {f"{m} {route.path}" for m in (route.methods or set()) & HTTP_METHODS}
    for route in _app().routes:
        if isinstance(route, Mount):
            found.add(f"GET {route.path}/{{path}}")
        elif isinstance(route, Route) and not isinstance(route, APIRoute):
            found |= {f"{m} {route.path}" for m in (route.methods or set()) & HTTP_METHODS}
    return found


def test_every_page_and_other_route_is_documented() -> None:
    heading = "### Pages and other routes (not in OpenAPI)"
    names = _method_paths(_names(INTERFACES, heading))
    _assert_same(names, _hidden_routes(), INTERFACES, heading)


# -- (c) settings --------------------------------------------------------------------------


def _documented_default(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def test_every_setting_is_documented_with_its_default() -> None:
    heading = "## Settings"
    rows = _rows(INTERFACES, heading)
    expected = {f"ROUTEWATCH_{name.upper()}": f for name, f in Settings.model_fields.items()}
    _assert_same([n for n, _ in rows], set(expected), INTERFACES, heading)
    wrong = {
        name: (cells[0], want)
        for name, cells in rows
        if cells[0].strip("`") != (want := _documented_default(expected[name].default))
    }
    assert not wrong, f"docs/interfaces.md {heading!r}: (documented, code) defaults {wrong}"


# -- (d) command line ----------------------------------------------------------------------


def test_every_command_is_documented() -> None:
    heading = "### Commands"
    expected = {f"routewatch {name}" for name in command_names()}
    _assert_same(_names(INTERFACES, heading), expected, INTERFACES, heading)


def _long_options(parser: argparse.ArgumentParser) -> set[str]:
    """Every ``--option`` of ``parser`` and of its sub-commands, except ``--help``."""
    found: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _long_options(sub)
        found |= {o for o in action.option_strings if o.startswith("--") and o != "--help"}
    return found


def test_every_command_option_is_documented() -> None:
    problems = []
    for name in command_names():
        heading = f"### `routewatch {name}`"
        top = build_parser(name)
        sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
        expected = _long_options(sub.choices[name])
        documented = [n.split()[0] for n in _names(INTERFACES, heading) if n.startswith("--")]
        missing, extra = sorted(expected - set(documented)), sorted(set(documented) - expected)
        if missing or extra:
            problems.append(f"{heading}: missing {missing}, extra {extra}")
    assert not problems, "docs/interfaces.md options tables:\n" + "\n".join(problems)
