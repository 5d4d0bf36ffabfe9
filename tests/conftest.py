"""Shared fixtures: the *real* PostgreSQL and Mosquitto.

Services are found (or started privately) by ``routewatch.services``; every test session
gets its own freshly migrated database, so parallel runs never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from store.migrate import migrate



def _server_url() -> str:
    return os.environ.get("ROUTEWATCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh, migrated database for this test session; dropped at the end."""
    server = _server_url()
    name = f"rw_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(server)
    params["dbname"] = name
    url = make_conninfo(**params)
    migrate(url)
    yield url
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
def mqtt_url() -> str:
    return os.environ.get("ROUTEWATCH_MQTT_URL", "mqtt://127.0.0.1:1883")
