"""Migrations: from an empty database and from every earlier schema version (as the
released texts left it) to the same schema, on plain PostgreSQL and on TimescaleDB;
nothing to do the second time; the command's answers when the database is missing or the
server is down; an installed but not preloaded TimescaleDB (one warning, plain schema)."""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from routewatch import services
from store.migrate import (
    ENABLE_HINT,
    MIGRATIONS_DIR,
    SUPERSEDED,
    MigrationError,
    discover,
    migrate,
    timescaledb_state,
)
from tests.conftest import MakeDatabase, scratch_databases

#: the texts of released migrations that were corrected since (store.migrate.SUPERSEDED)
RELEASED = Path(__file__).parent / "released"
#: 0001, 0002, 0010, 0020, 0021, 0022, 0023
UP_TO_0023 = 7

_SCHEMA_QUERIES = {
    "columns": """
        SELECT table_name, column_name, data_type, column_default, is_nullable
          FROM information_schema.columns WHERE table_schema = 'public'
         ORDER BY 1, 2""",
    "indexes": "SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2",
    "constraints": """
        SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint
         WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2""",
    "views": "SELECT viewname, definition FROM pg_views WHERE schemaname = 'public' ORDER BY 1",
    "functions": """
        SELECT proname, md5(prosrc) FROM pg_proc
         WHERE pronamespace = 'public'::regnamespace AND prokind = 'f' ORDER BY 1, 2""",
    "triggers": "SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2",
}
_TIMESCALE_QUERIES = {
    "hypertables": """
        SELECT hypertable_name, num_dimensions, compression_enabled
          FROM timescaledb_information.hypertables ORDER BY 1""",
    "dimensions": """
        SELECT hypertable_name, column_name, time_interval
          FROM timescaledb_information.dimensions ORDER BY 1""",
    "columnstore": """
        SELECT hypertable::text, segmentby, orderby, index::text
          FROM timescaledb_information.hypertable_columnstore_settings
         WHERE hypertable::text NOT LIKE '%%_materialized_%%' ORDER BY 1""",
    "jobs": """
        SELECT proc_name, coalesce(hypertable_name, ''),
               (config - 'hypertable_id' - 'mat_hypertable_id')::text
          FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL
         ORDER BY 1, 2, 3""",
}


def schema_of(url: str) -> dict[str, list[tuple[object, ...]]]:
    with psycopg.connect(url) as conn:
        queries = dict(_SCHEMA_QUERIES)
        if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone():
            queries |= _TIMESCALE_QUERIES
        return {name: conn.execute(q).fetchall() for name, q in queries.items()}  # type: ignore[arg-type]


def released_history(directory: Path, upto: int) -> Path:
    """A migrations folder as a database at version ``upto`` applied it: the released
    text of each migration up to it."""
    directory.mkdir()
    for mig in discover():
        if mig.version <= upto:
            source = RELEASED / mig.name
            shutil.copy(source if source.exists() else MIGRATIONS_DIR / mig.name, directory)
    return directory


@pytest.fixture
def plain_database(postgres_server_url: str) -> Iterator[MakeDatabase]:
    """Factory of fresh empty databases on the test server, dropped afterwards."""
    with scratch_databases(postgres_server_url, migrated=False) as make:
        yield make


def _upgrade_from_every_version(make: MakeDatabase, tmp_path: Path, **kw: bool) -> int:
    fresh = make()
    assert migrate(fresh, **kw)
    assert migrate(fresh, **kw) == []  # nothing the second time
    expected = schema_of(fresh)
    upgraded = 0
    for mig in discover():
        url = make()
        try:
            migrate(url, released_history(tmp_path / f"v{mig.version}", mig.version), **kw)
        except MigrationError:
            break  # the released text fails here: no database was ever left at this version
        migrate(url, **kw)
        assert schema_of(url) == expected, f"upgrade from {mig.name}"
        upgraded += 1
    return upgraded


def test_plain_postgres_upgrades_from_every_version(
    plain_database: MakeDatabase, tmp_path: Path
) -> None:
    with psycopg.connect(plain_database()) as conn:
        server = timescaledb_state(conn)
    if server.preloaded:
        pytest.skip("this server preloads TimescaleDB: the TimescaleDB upgrade test covers it")
    upgraded = _upgrade_from_every_version(plain_database, tmp_path, timescaledb=False)
    # Where the server had TimescaleDB installed but not preloaded, the released 0002
    # tried to create the extension and failed: no database got past 0001 there.
    assert upgraded == (1 if server.available else len(discover()))


@pytest.mark.timescaledb
def test_timescaledb_upgrades_from_every_version(timescale_server_url: str, tmp_path: Path) -> None:
    with scratch_databases(timescale_server_url, migrated=False) as make:
        # the released 0030 failed on TimescaleDB: 0001..0023 are the versions to come from
        assert _upgrade_from_every_version(make, tmp_path) == UP_TO_0023


def test_edited_migration_is_refused(plain_database: MakeDatabase, tmp_path: Path) -> None:
    url = plain_database()
    history = released_history(tmp_path / "h", 1)
    migrate(url, history)
    (history / "0001_core.sql").write_text("SELECT 1;\n")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(url, history)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "routewatch.cli", "migrate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_migrate_creates_a_missing_database(postgres_server_url: str) -> None:
    name = f"rw_mig_{uuid.uuid4().hex[:10]}"
    url = services.with_dbname(postgres_server_url, name)
    try:
        first = _cli("--database-url", url)
        assert first.returncode == 0, first.stderr
        assert first.stdout.startswith("applied: 0001_core.sql")
        again = _cli("--database-url", url)
        assert again.returncode == 0 and again.stdout.strip() == "database is up to date"
    finally:
        with psycopg.connect(
            services.with_dbname(postgres_server_url, "postgres"), autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migrate_against_a_server_that_is_down_says_so_in_one_line() -> None:
    port = services.free_port()
    done = _cli("--database-url", f"postgresql://postgres@127.0.0.1:{port}/routewatch")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert (
        len(lines) == 1
        and f"cannot reach PostgreSQL at postgresql://postgres@127.0.0.1:{port}" in lines[0]
    )


@pytest.mark.timescaledb
def test_installed_but_not_preloaded_migrates_plain_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pg_ctl = services.find_binary("pg_ctl")
    if pg_ctl is None or not services.timescaledb_installed(pg_ctl):
        pytest.skip("TimescaleDB is not installed on this machine")
    with services.PrivatePostgres(tmp_path / "pg", preload_timescaledb=False) as server:
        url = services.ensure_database(server.url, "routewatch")
        with caplog.at_level(logging.WARNING, logger="store.migrate"):
            assert migrate(url)
        assert [r.getMessage() for r in caplog.records] == [ENABLE_HINT]
        with psycopg.connect(url) as conn:
            assert conn.execute(
                "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"
            ).fetchone() == (0,)
            assert conn.execute("SELECT to_regclass('pings_ts_brin')").fetchone() != (None,)


def test_superseded_checksums_are_the_released_texts() -> None:
    released = {
        int(path.name[:4]): hashlib.sha256(path.read_text().encode()).hexdigest()
        for path in RELEASED.glob("*.sql")
    }
    assert {v: frozenset({c}) for v, c in released.items()} == SUPERSEDED
    current = {m.version: m.checksum for m in discover()}
    assert all(current[v] != c for v, c in released.items())  # they were corrected
