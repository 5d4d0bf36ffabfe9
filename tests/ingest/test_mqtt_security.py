"""Broker security from ``routewatch mqtt auth``, against a private Mosquitto that runs the
generated password file and ACL: devices publish only their own pings, the engine only
reads pings (and writes its event mirror), anonymous and wrong logins are refused."""

from __future__ import annotations

import asyncio
import queue
import shutil
import stat
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from ingest.service import run_engine
from routewatch.cli import main as cli
from routewatch.mqtt_auth import (
    CREDENTIALS_FILE,
    ENGINE_USER,
    PASSWORD_FILE,
    config_text,
    hash_password,
    read_credentials,
    read_password_file,
    verify_password,
    write_broker_auth,
)
from routewatch.mqtt_endpoint import MqttEndpoint
from simulator.publisher import WirePublishers
from tests.conftest import StartMosquitto
from tests.ingest.live_helpers import NOW_MS, make_settings, ping, stored, wait_for

DEVICE_A, DEVICE_B = "B.9123-XYZ", "B_9124"  # "." must not act as a wildcard anywhere
READER = "oms~events"
GATEWAY = "sim~fleet"
NOT_AUTHORIZED = 0x87  # MQTT 5 reason code in PUBACK / CONNACK
TIMEOUT_S = 10.0

V5 = MQTTProtocolVersion.MQTTv5
V311 = MQTTProtocolVersion.MQTTv311


class Client:
    """A blocking paho client that reports CONNACK and PUBACK reason codes."""

    def __init__(
        self, port: int, user: str | None, password: str | None, protocol: MQTTProtocolVersion
    ) -> None:
        self._c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:10]}", protocol=protocol
        )
        if user is not None:
            self._c.username_pw_set(user, password)
        self._connack: queue.Queue[int] = queue.Queue()
        self._puback: dict[int, int] = {}
        self._acked = threading.Condition()
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._c.on_connect = lambda c, u, f, rc, p: self._connack.put(rc.value)
        self._c.on_publish = self._on_publish
        self._c.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload))
        self._c.connect("127.0.0.1", port)
        self._c.loop_start()
        self.connack = self._connack.get(timeout=TIMEOUT_S)

    def _on_publish(self, c: object, u: object, mid: int, rc: mqtt.ReasonCode, p: object) -> None:
        with self._acked:
            self._puback[mid] = rc.value
            self._acked.notify_all()

    def publish(self, topic: str, payload: bytes) -> int:
        """Publish at QoS 1; the PUBACK reason code (always 0 for MQTT 3.1.1)."""
        mid = self._c.publish(topic, payload, qos=1).mid
        with self._acked:
            assert self._acked.wait_for(lambda: mid in self._puback, TIMEOUT_S)
            return self._puback.pop(mid)

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self._c.on_subscribe = lambda *a: done.set()
        self._c.subscribe(topic, qos=1)
        assert done.wait(TIMEOUT_S)

    def close(self) -> None:
        self._c.disconnect()
        self._c.loop_stop()


@dataclass
class Broker:
    port: int
    url: str
    passwords: dict[str, str]
    clients: list[Client]

    def connect(
        self, user: str | None, password: str | None = None, protocol: MQTTProtocolVersion = V5
    ) -> Client:
        if user is not None and password is None:
            password = self.passwords[user]
        client = Client(self.port, user, password, protocol)
        self.clients.append(client)
        return client


@pytest.fixture
def broker(tmp_path: Path, start_mosquitto: StartMosquitto) -> Iterator[Broker]:
    auth = tmp_path / "auth"
    write_broker_auth(
        auth, [DEVICE_A, DEVICE_B], readers=[READER], gateways=[GATEWAY], listener=None
    )
    # The generated snippet as written; the private broker adds its own listener.
    mosquitto = start_mosquitto(config_text(auth, listener=None), allow_anonymous=False)
    b = Broker(mosquitto.port, mosquitto.url, read_credentials(auth / CREDENTIALS_FILE), [])
    yield b
    for client in b.clients:
        client.close()


def ping_payload(ts_ms: int = NOW_MS) -> bytes:
    return orjson.dumps(ping(ts_ms))


def test_hash_is_mosquittos_pbkdf2_format() -> None:
    salt = bytes(range(12))
    encoded = hash_password("s3cret", salt=salt, iterations=101)
    prefix, iterations, salt_b64, digest_b64 = encoded.split("$")[1:]
    assert (prefix, iterations, salt_b64) == ("7", "101", "AAECAwQFBgcICQoL")
    assert len(digest_b64) == 88  # base64 of 64 bytes
    assert verify_password("s3cret", encoded)
    assert not verify_password("s3cres", encoded)


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="no mosquitto_passwd")
def test_hash_agrees_with_mosquitto_passwd(tmp_path: Path) -> None:
    """Cross-check only: the same parameters as the reference tool (not a dependency)."""
    path = tmp_path / "pw"
    path.touch()
    subprocess.run(["mosquitto_passwd", "-b", str(path), "u", "s3cret"], check=True)
    encoded = read_password_file(path)["u"]
    assert encoded.startswith("$7$")
    assert verify_password("s3cret", encoded)
    assert not verify_password("other", encoded)


def test_device_publishes_its_own_pings_and_the_engine_receives_them(broker: Broker) -> None:
    engine = broker.connect(ENGINE_USER)
    engine.subscribe("fleet/+/ping")
    device = broker.connect(DEVICE_A)
    assert device.connack == 0
    assert device.publish(f"fleet/{DEVICE_A}/ping", ping_payload()) == 0
    assert engine.messages.get(timeout=TIMEOUT_S) == (f"fleet/{DEVICE_A}/ping", ping_payload())


@pytest.mark.parametrize("protocol", [V5, V311], ids=["mqtt5", "mqtt311"])
def test_device_cannot_publish_as_another(broker: Broker, protocol: MQTTProtocolVersion) -> None:
    engine = broker.connect(ENGINE_USER)
    engine.subscribe("fleet/#")
    device = broker.connect(DEVICE_A, protocol=protocol)
    forged = [
        f"fleet/{DEVICE_B}/ping",
        "fleet/B-9123-XYZ/ping",  # A's id with "." replaced: no wildcard matching
        f"fleet/{DEVICE_A}/events",  # devices cannot forge engine events
        f"fleet/{DEVICE_A}/ping/extra",
        f"fleet/{DEVICE_A}",
    ]
    for topic in forged:
        code = device.publish(topic, ping_payload())
        # MQTT 5 says so in the PUBACK; MQTT 3.1.1 has no way to and drops it silently.
        assert code == (NOT_AUTHORIZED if protocol == V5 else 0), topic
    # The same connection's next, allowed publish arrives; had any forged one got through,
    # the broker (which keeps per-connection order) would have delivered it first.
    assert device.publish(f"fleet/{DEVICE_A}/ping", ping_payload()) == 0
    assert engine.messages.get(timeout=TIMEOUT_S)[0] == f"fleet/{DEVICE_A}/ping"
    assert engine.messages.empty()


def test_engine_reads_pings_and_writes_events_only(broker: Broker) -> None:
    watcher = broker.connect(ENGINE_USER)
    watcher.subscribe("fleet/#")
    integrator = broker.connect(READER)
    integrator.subscribe("fleet/#")
    engine = broker.connect(ENGINE_USER)
    for topic in (f"fleet/{DEVICE_A}/ping", f"fleet/{ENGINE_USER}/ping", "fleet/x/y"):
        assert engine.publish(topic, ping_payload()) == NOT_AUTHORIZED, topic
    assert engine.publish(f"fleet/{DEVICE_A}/events", b"{}") == 0
    assert integrator.messages.get(timeout=TIMEOUT_S)[0] == f"fleet/{DEVICE_A}/events"
    # The integrator only reads: it cannot forge events or pings, not even its own.
    for topic in (f"fleet/{DEVICE_A}/events", f"fleet/{READER}/ping", f"fleet/{DEVICE_A}/ping"):
        assert integrator.publish(topic, b"{}") == NOT_AUTHORIZED, topic
    # A sentinel ping from a device: everything the engine user may read arrives before it.
    assert broker.connect(DEVICE_A).publish(f"fleet/{DEVICE_A}/ping", ping_payload()) == 0
    assert watcher.messages.get(timeout=TIMEOUT_S)[0] == f"fleet/{DEVICE_A}/ping"
    assert watcher.messages.empty()  # the engine never reads the event mirror either
    assert integrator.messages.empty()


def test_simulator_logs_in_as_a_gateway(broker: Broker) -> None:
    """``routewatch simulate`` takes a gateway login from its MQTT URL: it may publish any
    vehicle's pings, nothing else; without the login the broker refuses it."""
    engine = broker.connect(ENGINE_USER)
    engine.subscribe("fleet/#")
    with pytest.raises(ConnectionError):
        WirePublishers(MqttEndpoint.parse(broker.url), 1, 1, "sim-anonymous")
    url = broker.url.replace("mqtt://", f"mqtt://{GATEWAY}:{broker.passwords[GATEWAY]}@")
    sim = WirePublishers(MqttEndpoint.parse(url), 1, 1, "sim")
    try:
        topics = [f"fleet/{DEVICE_B}/events", f"fleet/{DEVICE_A}/ping", f"fleet/{DEVICE_B}/ping"]
        sim.clients[0].publish_many((t, "{}") for t in topics)
    finally:
        sim.close(expected=3)
    got = [engine.messages.get(timeout=TIMEOUT_S)[0] for _ in range(2)]
    assert got == topics[1:]  # the forged event (3.1.1: dropped silently) never arrived
    assert engine.messages.empty()


@pytest.mark.parametrize("protocol", [V5, V311], ids=["mqtt5", "mqtt311"])
def test_anonymous_and_wrong_logins_are_refused(
    broker: Broker, protocol: MQTTProtocolVersion
) -> None:
    refusals = {
        "anonymous": broker.connect(None, protocol=protocol).connack,
        "wrong password": broker.connect(DEVICE_A, "not-the-password", protocol).connack,
        "unknown user": broker.connect("B_9999", "whatever", protocol).connack,
        "another's password": broker.connect(
            DEVICE_A, broker.passwords[DEVICE_B], protocol
        ).connack,
    }
    # 0x86 bad user name or password / 0x87 not authorized (paho reports MQTT 3.1.1's
    # CONNACK codes 4 / 5 as these MQTT 5 reason codes too).
    assert all(code in {0x86, NOT_AUTHORIZED} for code in refusals.values()), refusals


async def test_engine_ingests_with_its_credentials(
    broker: Broker, db: psycopg.Connection, database_url: str
) -> None:
    """The real engine logs in from ROUTEWATCH_MQTT_URL's user:password; a device's own
    pings are stored, a forged one never reaches it."""
    url = broker.url.replace("mqtt://", f"mqtt://{ENGINE_USER}:{broker.passwords[ENGINE_USER]}@")
    settings = make_settings(database_url, url)
    device = broker.connect(DEVICE_A)
    stop = asyncio.Event()
    task = asyncio.create_task(run_engine(settings, stop), name="secured-engine")
    try:
        t0 = NOW_MS - 10_000
        # Until the engine has subscribed the broker keeps nothing for it: repeat the
        # first ping (stored once) until it lands.
        async with asyncio.timeout(30):
            while not stored(db, DEVICE_A):
                assert not task.done(), task.exception()
                await asyncio.to_thread(device.publish, f"fleet/{DEVICE_A}/ping", ping_payload(t0))
                await asyncio.sleep(0.2)
        forged = await asyncio.to_thread(
            device.publish, f"fleet/{DEVICE_B}/ping", ping_payload(t0 + 1000)
        )
        assert forged == NOT_AUTHORIZED
        await asyncio.to_thread(device.publish, f"fleet/{DEVICE_A}/ping", ping_payload(t0 + 2000))
        await wait_for(lambda: len(stored(db, DEVICE_A)) == 2)
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await task
    assert stored(db, DEVICE_A) == [(DEVICE_A, t0), (DEVICE_A, t0 + 2000)]
    assert stored(db, DEVICE_B) == []
    assert db.execute("SELECT count(*) FROM rejected_pings").fetchone() == (0,)


def test_cli_keeps_passwords_rotates_and_reads_the_registry(
    tmp_path: Path, db: psycopg.Connection, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db.execute("INSERT INTO vehicles (vehicle_id) VALUES ('R.1'), ('R-2')")
    db.execute("INSERT INTO vehicles (vehicle_id, active) VALUES ('R_off', false)")
    out = tmp_path / "broker"
    base = ["mqtt", "auth", "--out", str(out), "--database-url", database_url]
    given = ["--vehicle", "V9", "--reader", READER, "--gateway", GATEWAY, "--print"]
    assert cli([*base, *given]) == 0
    issued = capsys.readouterr().out.splitlines()
    assert issued[0] == "username,password,role" and len(issued) == 7  # 3 services, 3 devices
    first = read_credentials(out / CREDENTIALS_FILE)
    assert set(first) == {ENGINE_USER, READER, GATEWAY, "R.1", "R-2", "V9"}
    acl = (out / "acl").read_text()
    assert f"user {READER}" in acl and f"user {GATEWAY}\ntopic write fleet/+/ping" in acl
    hashes = read_password_file(out / PASSWORD_FILE)
    assert all(verify_password(first[u], hashes[u]) for u in first)
    assert stat.S_IMODE((out / CREDENTIALS_FILE).stat().st_mode) == 0o600

    assert cli([*base, "--print"]) == 0  # nothing new: nothing printed, nothing changed
    assert capsys.readouterr().out == ""
    assert read_credentials(out / CREDENTIALS_FILE) == first
    assert read_password_file(out / PASSWORD_FILE) == hashes

    assert cli([*base, "--rotate", "R.1"]) == 0
    rotated = read_credentials(out / CREDENTIALS_FILE)
    assert rotated["R.1"] != first["R.1"]
    assert {u: p for u, p in rotated.items() if u != "R.1"} == {
        u: p for u, p in first.items() if u != "R.1"
    }
    assert (out / "acl").read_text() == acl  # kept without --reader / --gateway
    assert cli([*base, "--prune"]) == 0  # V9 and the reader came only from arguments
    assert set(read_credentials(out / CREDENTIALS_FILE)) == {ENGINE_USER, "R.1", "R-2"}
    assert READER not in (out / "acl").read_text() and GATEWAY not in (out / "acl").read_text()
    assert cli([*base, "--no-registry", "--vehicle", "bad/id"]) == 2
    assert cli([*base, "--no-registry", "--reader", "looks-like-a-vehicle"]) == 2
