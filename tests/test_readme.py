"""The README keeps its promises: the sections a newcomer looks for, and settings that exist."""

from __future__ import annotations

import re
from pathlib import Path

from routewatch.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def test_configuration_points_to_the_settings_table() -> None:
    """The table itself lives in docs/interfaces.md, kept equal to the code by
    tests/test_docs.py; the README links to it and shows only real settings."""
    text = README.read_text()
    section = text[text.index("## Configuration") :]
    section = section[: section.index("\n## ", 1)]
    assert "docs/interfaces.md#settings" in section
    shown = set(re.findall(r"ROUTEWATCH_([A-Z0-9_]+)=", section))
    assert shown and shown <= {name.upper() for name in Settings.model_fields}


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
