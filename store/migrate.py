"""Apply the numbered SQL files in ``migrations/`` once each, in order.

Each file runs in its own transaction together with its row in ``schema_migrations``,
so a failure leaves no half-applied file, and a second run applies nothing. A checksum
is kept per file: editing an applied migration is refused rather than silently ignored.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Serialises concurrent runners (two workers starting at once) on one database.
_LOCK_KEY = 0x526F7574  # "Rout"


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise MigrationError(f"{path.name}: migration files are named NNNN_snake_case.sql")
        found.append(Migration(int(m.group(1)), path.name, path.read_text()))
    versions = [m.version for m in found]
    if len(versions) != len(set(versions)):
        raise MigrationError(f"two migration files share a number in {directory}")
    return found


def migrate(database_url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; return the names applied (empty when up to date)."""
    applied_now: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version    integer PRIMARY KEY,
                       name       text NOT NULL,
                       checksum   text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {
                v: (n, c)
                for v, n, c in conn.execute(
                    "SELECT version, name, checksum FROM schema_migrations"
                ).fetchall()
            }
            for mig in discover(directory):
                if mig.version in done:
                    name, checksum = done[mig.version]
                    if checksum != mig.checksum:
                        raise MigrationError(
                            f"{mig.name} was changed after it was applied (as {name}); "
                            "add a new migration instead of editing an applied one"
                        )
                    continue
                with conn.transaction():
                    conn.execute(mig.sql)  # type: ignore[arg-type,unused-ignore]  # trusted file content
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) "
                        "VALUES (%s, %s, %s)",
                        (mig.version, mig.name, mig.checksum),
                    )
                applied_now.append(mig.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now
