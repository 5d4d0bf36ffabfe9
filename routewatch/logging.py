"""Log setup: one JSON object per line for machines, a readable line for people.

Modules log through the stdlib (``log = logging.getLogger(__name__)``) and pass
structured fields with ``extra={...}``; this module only decides how records look.
A JSON line has ``ts`` (RFC 3339, UTC, milliseconds), ``level``, ``logger``, ``msg``, every
``extra`` field, and ``exc`` when an exception is attached.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    # uvicorn attaches an ANSI-coloured copy of every message; useless off a terminal.
    | {"message", "asctime", "color_message"}
)


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a caller attached with ``extra=``."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}


def _iso_ms(created_s: float) -> str:
    return (
        datetime.fromtimestamp(created_s, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object (no newline inside)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _iso_ms(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(extra_fields(record))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack"] = record.stack_info
        return orjson.dumps(doc, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


class HumanFormatter(logging.Formatter):
    """``HH:MM:SS.mmm LEVEL logger: message key=value ...`` for terminals."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        line = f"{ts} {record.levelname:<7} {record.name}: {record.getMessage()}"
        extras = extra_fields(record)
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(level: str | int = "INFO", json: bool = True) -> None:
    """Configure the root logger to write to stderr: JSON lines when ``json`` is true and
    stderr is not a terminal, readable lines otherwise. Safe to call more than once."""
    use_json = json and not sys.stderr.isatty()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else HumanFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # Per-request lines from uvicorn (server) and httpx (client) drown everything else;
    # their warnings and errors still show.
    for chatty in ("uvicorn.access", "httpx"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
