"""``routewatch`` command line (CONTRACT §8).

Each subcommand lives in its own module under ``routewatch/commands/`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (a callable taking the
parsed ``argparse.Namespace`` and returning an exit code). Modules are discovered, so
adding a command never means editing this file; a module is named after its command.

Discovery is lazy: when the command line names a command, only that command's module is
imported. Importing every module eagerly (the API server's, the demo's HTTP client, ...)
cost ``routewatch replay`` a quarter of a second before it read a byte.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from routewatch import __version__, commands


def command_names() -> list[str]:
    """Names of the command modules, without importing them."""
    return sorted(m.name for m in pkgutil.iter_modules(commands.__path__))


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser for every command, or only for the command ``only`` (a module name)."""
    parser = argparse.ArgumentParser(
        prog="routewatch",
        description="GPS telematics ingestion and route-compliance engine.",
    )
    parser.add_argument("--version", action="version", version=f"routewatch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in [only] if only is not None else command_names():
        module = importlib.import_module(f"{commands.__name__}.{name}")
        module.register(sub)
    return parser


def _named_command(argv: Sequence[str]) -> str | None:
    """The command module the arguments name, if any (the first non-option argument).

    Top-level options take no value (only ``-h`` and ``--version``), so the first
    argument not starting with ``-`` is the command."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first is not None and first in command_names() else None


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    # an unknown command or plain --help still gets the full parser (and its listing)
    parser = build_parser(_named_command(args_in))
    args = parser.parse_args(args_in)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
