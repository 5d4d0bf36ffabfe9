"""routewatch.services against real binaries: private PostgreSQL and Mosquitto are started
when the configured URLs point at closed ports, work, and are gone after the context."""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as paho
import psycopg
import pytest

from routewatch import services
from routewatch.settings import Settings


def _closed_port() -> int:
    """A port nothing listens on (bound and released, so no one else has it either)."""
    return services.free_port()


def _roundtrip(url: str, **auth: str) -> bytes:
    """Subscribe, publish one QoS 1 message to a unique topic, return what came back."""
    host, port = services.mqtt_address(url)
    topic = f"test/services/{uuid.uuid4().hex}"
    got: queue.Queue[bytes] = queue.Queue()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}")
    if auth:
        client.username_pw_set(auth["username"], auth.get("password"))
    subscribed = threading.Event()
    client.on_message = lambda _c, _u, msg: got.put(bytes(msg.payload))
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect(host, port)
    client.loop_start()
    try:
        client.subscribe(topic, qos=1)
        assert subscribed.wait(5), "no SUBACK"
        client.publish(topic, b"ping", qos=1).wait_for_publish(5)
        return got.get(timeout=5)
    finally:
        client.loop_stop()
        client.disconnect()


def _gone(port: int) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not services.tcp_open("127.0.0.1", port, 0.2):
            return True
        time.sleep(0.1)
    return False


def test_probes_tell_closed_from_open(mqtt_url: str, postgres_server_url: str) -> None:
    port = _closed_port()
    assert not services.mqtt_reachable(f"mqtt://127.0.0.1:{port}")
    assert not services.postgres_reachable(f"postgresql://postgres@127.0.0.1:{port}/x")
    assert services.mqtt_reachable(mqtt_url)
    assert services.postgres_reachable(postgres_server_url)


def test_private_services_start_work_and_stop(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"postgresql://postgres@127.0.0.1:{_closed_port()}/rw_private",
        mqtt_url=f"mqtt://127.0.0.1:{_closed_port()}",
        state_dir=tmp_path / "state",
    )
    with services.ensure_services(settings) as svc:
        assert svc.started == ("postgresql", "mosquitto")
        assert svc.database_url != settings.database_url
        url = services.ensure_database(svc.database_url)
        assert services.ensure_database(svc.database_url) == url  # idempotent
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT current_database(), current_user").fetchone()
        assert row == ("rw_private", "postgres")
        assert _roundtrip(svc.mqtt_url) == b"ping"
        pg_port = int(psycopg.conninfo.conninfo_to_dict(url)["port"] or 0)
        _, mqtt_port = services.mqtt_address(svc.mqtt_url)
    assert _gone(pg_port), "private PostgreSQL still listening after the context"
    assert _gone(mqtt_port), "private mosquitto still listening after the context"
    assert (tmp_path / "state" / "mosquitto" / "data").is_dir()  # persistence in state dir


def test_configured_services_are_reused(
    tmp_path: Path, mqtt_url: str, postgres_server_url: str
) -> None:
    settings = Settings(
        database_url=postgres_server_url, mqtt_url=mqtt_url, state_dir=tmp_path / "state"
    )
    with services.ensure_services(settings) as svc:
        assert svc.started == ()
        assert (svc.database_url, svc.mqtt_url) == (postgres_server_url, mqtt_url)
    assert not (tmp_path / "state").exists()
    assert services.mqtt_reachable(mqtt_url)  # reused services are left running


def test_private_mosquitto_with_own_config(start_mosquitto, tmp_path: Path) -> None:
    passwords = tmp_path / "passwd"
    passwords.write_text("")
    subprocess.run(
        [
            str(services.find_binary("mosquitto_passwd") or "mosquitto_passwd"),
            "-b",
            str(passwords),
            "alice",
            "s3cret",
        ],
        check=True,
    )
    broker = start_mosquitto(f"password_file {passwords}", allow_anonymous=False)
    assert not services.mqtt_reachable(broker.url)  # anonymous refused
    assert services.mqtt_reachable(broker.url.replace("//", "//alice:s3cret@"))
    assert _roundtrip(broker.url, username="alice", password="s3cret") == b"ping"


def test_second_user_of_a_state_dir_is_refused(tmp_path: Path) -> None:
    with (
        services.PrivateMosquitto(tmp_path / "m"),
        pytest.raises(services.ServiceError, match="in use"),
    ):
        services.PrivateMosquitto(tmp_path / "m").start()


def test_sigterm_stops_private_services(tmp_path: Path) -> None:
    """A process holding private services that gets SIGTERM stops them on its way out."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from routewatch.services import ensure_services
        from routewatch.settings import Settings
        s = Settings(database_url="postgresql://postgres@127.0.0.1:{_closed_port()}/x",
                     mqtt_url="mqtt://127.0.0.1:{_closed_port()}",
                     state_dir=Path({str(tmp_path / "state")!r}))
        with ensure_services(s) as svc:
            print(svc.database_url, svc.mqtt_url, flush=True)
            time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    db_url, mqtt_url = proc.stdout.readline().split()
    pg_port = int(psycopg.conninfo.conninfo_to_dict(db_url)["port"] or 0)
    _, mqtt_port = services.mqtt_address(mqtt_url)
    assert services.tcp_open("127.0.0.1", pg_port) and services.tcp_open("127.0.0.1", mqtt_port)
    proc.terminate()
    assert proc.wait(timeout=30) != 0
    assert _gone(pg_port) and _gone(mqtt_port)


def test_missing_binary_message_names_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "find_binary", lambda name: None)
    monkeypatch.setattr(services, "_is_root", lambda: False)
    with pytest.raises(services.ServiceError, match="apt-get install -y postgresql mosquitto"):
        services.require_binaries("initdb")


def test_free_port_is_bindable(free_port: int) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", free_port))


def test_runner_exports_service_urls(tmp_path: Path) -> None:
    """``python -m routewatch.services -- CMD`` runs CMD against (here: private) services."""
    env = {
        **os.environ,
        "ROUTEWATCH_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{_closed_port()}/rw_run",
        "ROUTEWATCH_MQTT_URL": f"mqtt://127.0.0.1:{_closed_port()}",
        "ROUTEWATCH_STATE_DIR": str(tmp_path / "state"),
    }
    probe = (
        "import os, sys, psycopg; from routewatch import services as s; "
        "psycopg.connect(os.environ['ROUTEWATCH_DATABASE_URL']).close(); "
        "sys.exit(7 if s.mqtt_reachable(os.environ['ROUTEWATCH_MQTT_URL']) else 1)"
    )
    result = subprocess.run(
        [sys.executable, "-m", "routewatch.services", "--", sys.executable, "-c", probe],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 7, result.stderr
