"""The README's configuration table lists exactly the settings that exist."""

from __future__ import annotations

import re
from pathlib import Path

from routewatch.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def _configuration_section() -> str:
    text = README.read_text()
    start = text.index("## Configuration")
    return text[start : text.index("\n## ", start + 1)]


def test_every_setting_is_documented_once() -> None:
    documented = re.findall(r"^\| `ROUTEWATCH_([A-Z0-9_]+)` \|", _configuration_section(), re.M)
    expected = {name.upper() for name in Settings.model_fields}
    assert len(documented) == len(set(documented)), "a setting is listed twice"
    assert sorted(expected - set(documented)) == [], "settings missing from the README"
    assert sorted(set(documented) - expected) == [], "README lists settings that do not exist"


def test_readme_names_the_two_commands() -> None:
    text = README.read_text()
    for heading in (
        "## Quick start",
        "## Running the tests",
        "## Configuration",
        "## Command line",
        "## Layout",
        "## Benchmarks",
    ):
        assert heading in text
    assert "make demo" in text and "make test" in text
