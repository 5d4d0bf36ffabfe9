"""``routewatch token create|list|revoke`` against the real database."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest
from psycopg.rows import dict_row

from store import tokens

CLI = [sys.executable, "-m", "routewatch.cli", "token"]


def token_cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``routewatch token --database-url URL ARGS...`` in a subprocess."""
    return subprocess.run(
        [*CLI, "--database-url", database_url, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_token_command_create_list_revoke(database_url: str, db: object) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return token_cli(database_url, *args)

    made = cli("create", "--role", "oms", "--role", "driver", "--name", "ci")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("rw_") and len(token) > 40
    listed = cli("list")
    assert "ci" in listed.stdout and "driver,oms" in listed.stdout and token not in listed.stdout
    token_id = listed.stdout.split()[0]
    assert cli("revoke", token_id).returncode == 0
    assert "revoked" in cli("list").stdout
    assert cli("revoke", "999999").returncode == 1
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT token_hash FROM api_tokens").fetchone()
    assert stored is not None and token not in stored[0]


def test_token_names_with_control_characters_are_refused(database_url: str, db: object) -> None:
    """A name is one line of printable text (it is listed in tab-separated columns); bytes
    that are not UTF-8 arrive as unpaired surrogates. A clear usage error, no traceback."""
    for name in (b"a\tb", b"two\nlines", b"bad \xff utf-8"):
        made = token_cli(database_url, "create", "--role=oms", f"--name={os.fsdecode(name)}")
        assert made.returncode == 2, made.stderr
        assert "argument --name: token name contains" in made.stderr
        assert "Traceback" not in made.stderr and not made.stdout
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM api_tokens").fetchone() == (0,)


async def test_create_token_refuses_names_it_cannot_store(database_url: str, db: object) -> None:
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, row_factory=dict_row
    ) as conn:
        for name in ("nul\x00", "lone \ud800", "bell\x07"):
            with pytest.raises(ValueError, match="contains"):
                await tokens.create_token(conn, ["oms"], name)
        token_id, _ = await tokens.create_token(conn, ["oms"], "مرحبا 😀 ok")
        assert (await tokens.list_tokens(conn))[0]["name"] == "مرحبا 😀 ok"
        assert token_id > 0


def test_token_command_binds_a_token_to_a_driver(database_url: str, db: psycopg.Connection) -> None:
    db.execute("INSERT INTO drivers (driver_id, name) VALUES ('D-hadi', 'Hadi')")
    made = token_cli(
        database_url, "create", "--role", "driver", "--name", "hadi phone", "--driver", "D-hadi"
    )
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip().startswith("rw_") and "bound to driver D-hadi" in made.stderr
    assert "driver D-hadi" in token_cli(database_url, "list").stdout
    refused = token_cli(database_url, "create", "--role", "driver", "--driver", "D-nobody")
    assert refused.returncode == 2 and "no driver 'D-nobody'" in refused.stderr
    assert "Traceback" not in refused.stderr and not refused.stdout
    refused = token_cli(database_url, "create", "--role", "oms", "--driver", "D-hadi")
    assert refused.returncode == 2 and "driver role" in refused.stderr
    usage = token_cli(database_url, "create", "--role", "driver", "--driver", "bad id")
    assert usage.returncode == 2 and "a driver id is" in usage.stderr
