"""MQTT over TLS against a private Mosquitto whose TLS listener comes from the
``routewatch mqtt auth --tls-cert/--tls-key`` snippet, with a CA made for the test
(trustme): the engine connects, receives pings from the simulator's publisher, mirrors
events; every client refuses a server certificate for another name and one from a CA it
does not trust."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import psycopg
import pytest
import trustme

from api.routes.health import check_broker
from ingest.receiver import ConnectOptions, MqttError, connect
from routewatch import services
from routewatch.cli import main as cli
from routewatch.mqtt_auth import CONFIG_FILE, CREDENTIALS_FILE, ENGINE_USER, read_credentials
from routewatch.mqtt_endpoint import MqttEndpoint
from simulator.publisher import WirePublishers
from tests.conftest import StartMosquitto
from tests.ingest.live_helpers import (
    NOW_MS,
    announce_trip,
    drive,
    engine,
    make_settings,
    mirrored_events,
    publisher,
    wait_for,
)

VEHICLE = f"tls{uuid.uuid4().hex[:6]}"
READER, GATEWAY = "oms~events", "sim~fleet"


@dataclass
class TlsBroker:
    port: int  # the TLS listener
    ca_file: Path  # the CA that signed the broker's certificate (for "localhost")
    other_ca_file: Path  # a CA that did not
    passwords: dict[str, str]

    def url(self, user: str, host: str = "localhost") -> str:
        return f"mqtts://{user}:{self.passwords[user]}@{host}:{self.port}"


@pytest.fixture
def tls_broker(tmp_path: Path, start_mosquitto: StartMosquitto) -> Iterator[TlsBroker]:
    ca, other_ca = trustme.CA(), trustme.CA()
    cert = ca.issue_cert("localhost")
    files = tmp_path / "tls"
    files.mkdir()
    files.chmod(0o755)  # a broker started as root reads them as the mosquitto user
    cert.private_key_pem.write_to_path(str(files / "broker.key"))
    cert.cert_chain_pems[0].write_to_path(str(files / "broker.crt"))
    for name, authority in (("ca.pem", ca), ("other-ca.pem", other_ca)):
        authority.cert_pem.write_to_path(str(files / name))
    for path in files.iterdir():
        path.chmod(0o644)
    port = services.free_port()
    auth = tmp_path / "auth"
    code = cli(
        [
            "mqtt",
            "auth",
            f"--out={auth}",
            "--no-registry",
            f"--vehicle={VEHICLE}",
            f"--reader={READER}",
            f"--gateway={GATEWAY}",
            "--listener=none",  # the private broker has its own plain listener
            f"--tls-cert={files / 'broker.crt'}",
            f"--tls-key={files / 'broker.key'}",
            f"--tls-listener={port} 127.0.0.1",
        ]
    )
    assert code == 0
    snippet = (auth / CONFIG_FILE).read_text()
    assert f"listener {port} 127.0.0.1" in snippet and "certfile" in snippet
    start_mosquitto(snippet, allow_anonymous=False)
    yield TlsBroker(
        port, files / "ca.pem", files / "other-ca.pem", read_credentials(auth / CREDENTIALS_FILE)
    )


async def test_engine_receives_and_mirrors_over_tls(
    tls_broker: TlsBroker, db: psycopg.Connection, database_url: str
) -> None:
    ca = tls_broker.ca_file
    settings = make_settings(
        database_url,
        tls_broker.url(ENGINE_USER),
        mqtt_tls_ca_file=ca,
        mqtt_mirror_events=True,
    )
    trip_id = f"T-{VEHICLE}-{uuid.uuid4().hex[:4]}"
    t0 = NOW_MS - 330_000
    pings = drive(t0)
    async with (
        publisher(tls_broker.url(GATEWAY), ca_file=ca) as probe,
        publisher(tls_broker.url(READER), ca_file=ca) as reader,
        mirrored_events(reader, VEHICLE) as mirrored,
        engine(settings, probe),
    ):
        announce_trip(db, trip_id, VEHICLE, t0)
        await asyncio.sleep(0.5)  # the LISTEN task loads the trip
        # the simulator's own publisher, over TLS, as the gateway
        sim = WirePublishers(MqttEndpoint.parse(tls_broker.url(GATEWAY), ca_file=ca), 2, 1, "t")
        topic = f"fleet/{VEHICLE}/ping"
        for i in range(0, len(pings), 10):
            sim.clients[i % 2].publish_many([(topic, orjson.dumps(pings[i : i + 10]))])
        sim.close(expected=len(range(0, len(pings), 10)))
        await wait_for(
            lambda: (
                db.execute(
                    "SELECT count(*) FROM pings WHERE vehicle_id = %s", (VEHICLE,)
                ).fetchone()
                == (len(pings),)
            ),
            timeout_s=20,
        )
        await wait_for(lambda: {"trip_started", "stop_arrived"} <= {m["type"] for m in mirrored})
    assert {m["trip_id"] for m in mirrored} == {trip_id}


def _refusals(url: str, ca_file: Path) -> dict[str, str]:
    """How each client fails against ``url``; every one must, and say why."""
    endpoint = MqttEndpoint.parse(url, ca_file=ca_file)
    out: dict[str, str] = {}

    async def receiver() -> None:
        opts = ConnectOptions(
            endpoint.host, endpoint.port, "t-refused", endpoint.username, endpoint.password,
            tls=endpoint.ssl_context(), connect_timeout_s=5,
        )  # fmt: skip
        with pytest.raises(MqttError) as refused:
            async with connect(opts):
                pass
        out["receiver"] = str(refused.value)
        settings = make_settings("postgresql://unused", url, mqtt_tls_ca_file=ca_file)
        health = await check_broker(settings)
        assert health["ok"] is False
        out["health"] = health["error"]

    asyncio.run(receiver())
    with pytest.raises(ssl.SSLCertVerificationError) as refused:
        WirePublishers(endpoint, 1, 1, "t-refused")
    out["simulator"] = str(refused.value)
    assert not services.mqtt_reachable(
        url, settings=make_settings("", url, mqtt_tls_ca_file=ca_file)
    )
    return out


def test_certificate_for_another_name_is_refused(tls_broker: TlsBroker) -> None:
    # The certificate names "localhost"; the same broker reached as 127.0.0.1 is refused.
    refusals = _refusals(tls_broker.url(GATEWAY, host="127.0.0.1"), tls_broker.ca_file)
    assert all("IP address mismatch" in why for why in refusals.values()), refusals


def test_certificate_from_an_untrusted_ca_is_refused(tls_broker: TlsBroker) -> None:
    refusals = _refusals(tls_broker.url(GATEWAY), tls_broker.other_ca_file)
    assert all("unable to get local issuer certificate" in why for why in refusals.values()), (
        refusals
    )


def test_system_store_is_the_default(tls_broker: TlsBroker) -> None:
    """Without a CA file the system's store is used: a private CA is not in it."""
    endpoint = MqttEndpoint.parse(tls_broker.url(GATEWAY))
    assert endpoint.tls and endpoint.port == tls_broker.port and endpoint.ca_file is None
    with pytest.raises(ssl.SSLCertVerificationError):
        WirePublishers(endpoint, 1, 1, "t-system-store")


def test_url_schemes_and_defaults() -> None:
    assert MqttEndpoint.parse("mqtts://h").port == 8883
    assert MqttEndpoint.parse("mqtt://h").port == 1883
    plain = MqttEndpoint.parse("mqtt://u:p%40ss@h:1", ca_file="/x")
    assert (plain.tls, plain.username, plain.password, plain.ca_file) == (False, "u", "p@ss", None)
    assert plain.ssl_context() is None
    with pytest.raises(ValueError, match="mqtts://host:8883"):
        MqttEndpoint.parse("http://h")
    with pytest.raises(ValueError, match="cannot load the MQTT TLS files"):
        MqttEndpoint.parse("mqtts://h", ca_file="/nonexistent/ca.pem").ssl_context()
