"""Shared fixtures: the *real* PostgreSQL and Mosquitto.

Services are found (or started privately) by ``routewatch.services``: the ones configured
with ``ROUTEWATCH_DATABASE_URL`` / ``ROUTEWATCH_MQTT_URL`` when they answer, otherwise
private instances for this test session, stopped at its end. Every test session gets its
own freshly migrated database, so parallel runs never see each other's rows.

When a private service had to be started, the matching ``ROUTEWATCH_*`` variable is set
for the rest of the session so that ``Settings()`` and subprocesses find it too.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from routewatch import services
from routewatch.settings import Settings
from store.migrate import migrate


def _session_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(state_dir=tmp_path_factory.mktemp("services"))


@pytest.fixture(scope="session")
def postgres_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a PostgreSQL server we may create databases on (configured or private)."""
    settings = _session_settings(tmp_path_factory)
    with services.ensure_postgres(settings) as url:
        if url != settings.database_url:
            os.environ["ROUTEWATCH_DATABASE_URL"] = services.ensure_database(url)
        yield url


@pytest.fixture(scope="session")
def database_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, migrated database for this test session; dropped at the end."""
    name = f"rw_test_{uuid.uuid4().hex[:10]}"
    url = services.ensure_database(postgres_server_url, name)
    migrate(url)
    yield url
    with psycopg.connect(
        services.with_dbname(postgres_server_url, "postgres"), autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def timescale_server_url(
    postgres_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A PostgreSQL server whose new databases get TimescaleDB: the configured one when
    it preloads the extension, else a private cluster (which preloads it) when this
    machine has it installed; the test is skipped on a machine without it."""
    with services.ensure_timescaledb(
        postgres_server_url, tmp_path_factory.mktemp("timescaledb")
    ) as url:
        if url is None:
            pytest.skip("TimescaleDB is not installed on this machine")
        yield url


MakeDatabase = Callable[[], str]


@contextlib.contextmanager
def scratch_databases(server_url: str, *, migrated: bool) -> Iterator[MakeDatabase]:
    """A factory of fresh databases on ``server_url`` (migrated or empty), all dropped
    when the block ends."""
    names: list[str] = []

    def make() -> str:
        names.append(f"rw_scratch_{uuid.uuid4().hex[:10]}")
        url = services.ensure_database(server_url, names[-1])
        if migrated:
            migrate(url)
        return url

    try:
        yield make
    finally:
        with psycopg.connect(services.with_dbname(server_url, "postgres"), autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pause_timescaledb_jobs(url: str) -> None:
    """Unschedule the database's TimescaleDB policy jobs (refresh, compression, retention)
    for a test that runs them by hand. The scheduler starts them seconds after the
    migration, and a run in the middle of the test's writes changes what it reads: a
    retention run drops old rows, and a refresh materialises a day whose later events a
    real-time aggregate then misses until the next refresh (as in production, for up to
    its 30-minute schedule)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs "
            "WHERE hypertable_name IS NOT NULL"
        )


@pytest.fixture
def timescale_database(timescale_server_url: str) -> Iterator[MakeDatabase]:
    """Factory of fresh databases migrated on TimescaleDB, dropped after the test."""
    with scratch_databases(timescale_server_url, migrated=True) as make:
        yield make


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    """A connection to an emptied test database (all tables truncated before the test)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'schema_migrations'"
            ).fetchall()
        ]
        if tables:
            conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE")
        yield conn


@pytest.fixture(scope="session")
def mqtt_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of an anonymous MQTT broker (configured or private). Shared by all tests: use
    unique topics and vehicle ids."""
    settings = _session_settings(tmp_path_factory)
    with services.ensure_mosquitto(settings) as url:
        if url != settings.mqtt_url:
            os.environ["ROUTEWATCH_MQTT_URL"] = url
        yield url


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a NATS server with JetStream (configured or private). Shared by all tests:
    give each its own ``ROUTEWATCH_NATS_PREFIX``."""
    settings = _session_settings(tmp_path_factory)
    with services.ensure_nats(settings) as url:
        if url != settings.nats_url:
            os.environ["ROUTEWATCH_NATS_URL"] = url
        yield url


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    return services.free_port()


StartMosquitto = Callable[..., services.PrivateMosquitto]


@pytest.fixture
def start_mosquitto(tmp_path: Path) -> Iterator[StartMosquitto]:
    """Factory for private brokers with their own config, stopped after the test:
    ``broker = start_mosquitto(extra_config="acl_file /path", allow_anonymous=False)``;
    connect to ``broker.url`` (a free port on 127.0.0.1). Paths in ``extra_config`` may
    point into ``tmp_path``."""
    started: list[services.PrivateMosquitto] = []

    def start(extra_config: str = "", *, allow_anonymous: bool = True) -> services.PrivateMosquitto:
        broker = services.PrivateMosquitto(
            tmp_path / f"mosquitto-{len(started)}",
            extra_config=extra_config,
            allow_anonymous=allow_anonymous,
        )
        started.append(broker.start())
        return broker

    yield start
    for broker in started:
        broker.stop()


@pytest.fixture(scope="session", autouse=True)
def compiled_kernels() -> None:
    """Compile the compliance kernels once per session (seconds on a cold Numba cache, as
    in a fresh clone), so live-engine tests time behaviour, not JIT compilation. The
    engine does the same at start-up (ingest.pipeline.warm_up_kernels)."""
    from compliance.warmup import warm_up

    warm_up()


class RestartablePostgres:
    """A private PostgreSQL cluster for one test, which may stop and start it (never the
    shared server): ``database_url`` is a migrated database on it. ``stop()`` is a fast
    shutdown (clients are disconnected, new connections refused) keeping the data;
    ``start()`` brings the same cluster back on the same port."""

    def __init__(self, server: services.PrivatePostgres) -> None:
        self.server = server
        self.database_url = services.ensure_database(server.url, "routewatch")
        migrate(self.database_url)
        # pg_ctl start needs the server options again; the last start wrote them down.
        opts = shlex.split((server.data_dir / "postmaster.opts").read_text())
        self._options = shlex.join(opts[3:])  # without the binary and its -D <dir>

    def stop(self) -> None:
        self.server._pg("pg_ctl", "stop", "-D", str(self.server.data_dir), "-m", "fast", "-w")

    def start(self) -> None:
        log_path = self.server.data_dir.parent / "postgres.log"
        data = str(self.server.data_dir)
        self.server._pg(
            "pg_ctl", "start", "-D", data, "-w", "-l", str(log_path), "-o", self._options
        )


@pytest.fixture
def private_postgres(tmp_path: Path) -> Iterator[RestartablePostgres]:
    """A private PostgreSQL (``initdb``/``pg_ctl``, as the postgres user when root) with
    a migrated database, for tests that stop and start the server; removed afterwards."""
    server = services.PrivatePostgres(tmp_path / "postgres").start()
    try:
        yield RestartablePostgres(server)
    finally:
        server.stop()
