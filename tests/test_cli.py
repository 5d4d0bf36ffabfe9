"""The command line discovers command modules lazily."""

from __future__ import annotations

import subprocess
import sys

from routewatch.cli import build_parser, command_names


def test_every_command_module_registers_its_own_name() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert sorted(sub.choices) == command_names()  # type: ignore[arg-type]


def test_a_named_command_imports_only_its_module() -> None:
    code = (
        "import sys; from routewatch.cli import build_parser, _named_command; "
        "build_parser(_named_command(['replay', '--help'])); "
        "print(sorted(m for m in sys.modules if m.startswith('routewatch.commands.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "['routewatch.commands.replay']"
