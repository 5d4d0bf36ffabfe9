"""``routewatch token create|list|revoke`` against the real database."""

from __future__ import annotations

import subprocess
import sys

import psycopg


def test_token_command_create_list_revoke(database_url: str, db: object) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "routewatch.cli",
                "token",
                "--database-url",
                database_url,
                *args,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

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
