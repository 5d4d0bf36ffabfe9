"""Apply the numbered SQL files in ``migrations/`` once each, in order.

Each file runs in its own transaction together with its row in ``schema_migrations``,
so a failure leaves no half-applied file, and a second run applies nothing. A checksum
is kept per file: editing an applied migration is refused rather than silently ignored,
except for the corrections listed in ``SUPERSEDED`` (a database that applied the earlier
text has the same schema).

TimescaleDB is used where the database has it or the server preloads it (0002 says how
it decides); ``timescaledb=False`` keeps a new database on plain PostgreSQL. When the
server has the extension installed but not preloaded, one warning says how to enable it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Serialises concurrent runners (two workers starting at once) on one database.
_LOCK_KEY = 0x526F7574  # "Rout"

#: Released migrations whose text was corrected since, with the checksums of the texts a
#: database may have applied instead. Each correction leaves the schema it builds as it was.
SUPERSEDED: dict[int, frozenset[str]] = {
    # 0002 created the extension whenever it was installed: on a server that does not
    # preload it, that failed and closed the connection. Same schema where it ran.
    2: frozenset({"c348d9f15a2958b7f955897b5a4b42bdd27fa1a0dda6eabafef6d6bc9edd07ac"}),
    # 0030 added commit_xid with the default txid_current() in one step, which TimescaleDB
    # refuses on a compressed hypertable; now 0 for older rows, then the same default.
    # Either value means "committed before any later checkpoint".
    30: frozenset({"e55c88ca9d28ebcae9776447112cf148642a5637ac0ffa60486da2df78f552f7"}),
}

_TIMESCALEDB_STATE = """
SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'),
       EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),
       current_setting('shared_preload_libraries') ~ '(^|[\\s,/])timescaledb\\s*(,|$)'
"""
ENABLE_HINT = (
    "TimescaleDB is installed on this PostgreSQL server but not preloaded, so this database "
    "runs on plain PostgreSQL. To use it: ALTER SYSTEM SET shared_preload_libraries = "
    "'timescaledb' (keeping any libraries already listed), restart PostgreSQL, and migrate "
    "a new database."
)


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


@dataclass(frozen=True)
class TimescaleState:
    installed: bool  # this database has the extension
    available: bool  # the server has it installed
    preloaded: bool  # the server preloads it (needed to create it)


def timescaledb_state(conn: psycopg.Connection) -> TimescaleState:
    row = conn.execute(_TIMESCALEDB_STATE).fetchone()
    return TimescaleState(*(bool(v) for v in row)) if row else TimescaleState(False, False, False)


def _warn_if_not_preloaded(conn: psycopg.Connection) -> None:
    """``ENABLE_HINT`` when the database is plain but the server could give it TimescaleDB."""
    state = timescaledb_state(conn)
    if not state.installed and state.available and not state.preloaded:
        log.warning(ENABLE_HINT)


def migrate(
    database_url: str, directory: Path = MIGRATIONS_DIR, *, timescaledb: bool = True
) -> list[str]:
    """Apply pending migrations; return the names applied (empty when up to date).
    ``timescaledb=False``: a database not yet on TimescaleDB stays on plain PostgreSQL."""
    applied_now: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        if not timescaledb:
            conn.execute("SET routewatch.timescaledb = off")
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
                    if checksum != mig.checksum and checksum not in SUPERSEDED.get(mig.version, ()):
                        raise MigrationError(
                            f"{mig.name} was changed after it was applied (as {name}); "
                            "add a new migration instead of editing an applied one"
                        )
                    continue
                try:
                    with conn.transaction():
                        conn.execute(mig.sql)  # type: ignore[arg-type,unused-ignore]  # trusted file content
                        conn.execute(
                            "INSERT INTO schema_migrations (version, name, checksum) "
                            "VALUES (%s, %s, %s)",
                            (mig.version, mig.name, mig.checksum),
                        )
                except psycopg.Error as exc:
                    raise MigrationError(
                        f"{mig.name} failed and was rolled back: {exc}".strip()
                    ) from exc
                applied_now.append(mig.name)
            _warn_if_not_preloaded(conn)
        finally:
            # A failed migration may have closed the connection, and with it the lock.
            if not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now
