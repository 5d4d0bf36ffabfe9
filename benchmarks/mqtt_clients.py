"""MQTT receive rate of the candidate engine clients, side by side, with acks after batches.

For each client the same thing is timed: a persistent MQTT session (QoS 1 subscription
to ``fleet/+/ping``) finds N single-ping messages queued at a private Mosquitto, and the
client drains them, acknowledging each batch of ``--batch`` messages only once the
whole batch is in (as the engine does after its commit), with Receive Maximum
``--receive-maximum``. Queueing first means every client sees the same broker work and
the publisher does not compete for the 2 cores during the timing.

Clients: ``mosquitto_sub`` (the C client: the broker delivery baseline; it acks each
message at once), ``ingest.receiver`` (the engine's receiver), aiomqtt (the engine's
previous client: paho's manual ack through its private client, queue drained as the
engine did), paho in its own network thread (``manual_ack=True``), gmqtt
(``optimistic_acknowledgement=False``: the PUBACK is sent when the message's coroutine
returns, so each waits for its batch). Only the receiving is timed: no decoding or
database work. The C client and ``ingest.receiver`` are also timed over TLS (a second,
TLS listener of the same broker, with a certificate from a throw-away CA), which is what
``mqtts://`` costs the engine.

    .venv/bin/python -m benchmarks.mqtt_clients --messages 100000

Figures are printed, never asserted. Other processes on the machine make them noisy:
compare the clients within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import gmqtt
import orjson
import paho.mqtt.client as paho
import trustme
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.receiver import ConnectOptions, connect
from routewatch.services import PrivateMosquitto, free_port
from simulator.mqttwire import WirePublisher

TOPIC_FILTER = "fleet/+/ping"
# Queue everything for an offline session; the in-flight window is the client's own
# Receive Maximum (the C client asks for none, so the broker's cap applies: the same).
BROKER_CONFIG = "max_queued_messages 0\nmax_inflight_messages {window}\n"


def single_pings(n: int, vehicles: int) -> list[tuple[str, str]]:
    now_ms = int(time.time() * 1000)
    return [
        (
            f"fleet/V{k % vehicles:05d}/ping",
            orjson.dumps(
                {
                    "ts": now_ms - (n - k) * 10,
                    "lat": -6.2 + k * 1e-7,
                    "lon": 106.8,
                    "speed": 30.0,
                    "heading": 90.0,
                    "accuracy": 5.0,
                    "seq": k,
                }
            ).decode(),
        )
        for k in range(n)
    ]


async def make_session(port: int, client_id: str) -> None:
    """Create the persistent session and its subscription, then go offline."""
    opts = ConnectOptions("127.0.0.1", port, client_id, clean_start=True, session_expiry_s=600)
    async with connect(opts) as conn:
        await conn.subscribe(TOPIC_FILTER, qos=1)


async def end_session(port: int, client_id: str) -> None:
    """Drop the session, so later runs' messages are not queued for it."""
    opts = ConnectOptions("127.0.0.1", port, client_id, clean_start=True, session_expiry_s=0)
    async with connect(opts):
        pass


def preload(port: int, msgs: list[tuple[str, str]]) -> None:
    pub = WirePublisher("127.0.0.1", port, f"preload-{uuid.uuid4().hex[:6]}", qos=1)
    try:
        for i in range(0, len(msgs), 2000):
            pub.publish_many(msgs[i : i + 2000])
        if not pub.wait_acked(120):
            raise SystemExit("preload: the broker did not acknowledge every message")
    finally:
        pub.close()


@dataclass(frozen=True)
class Tls:
    """The broker's TLS listener: its port and the CA file and context that trust it."""

    port: int
    ca_file: Path
    context: ssl.SSLContext


def tls_listener(directory: Path) -> tuple[Tls, str]:
    """A certificate for 127.0.0.1 from a throw-away CA, and the broker config lines."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(directory / "broker.key"))
    cert.cert_chain_pems[0].write_to_path(str(directory / "broker.crt"))
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    for path in directory.glob("*.*"):
        path.chmod(0o644)  # a broker started as root reads them as the mosquitto user
    context = ssl.create_default_context(cafile=str(directory / "ca.pem"))
    tls = Tls(free_port(), directory / "ca.pem", context)
    config = (
        f"listener {tls.port} 127.0.0.1\ncertfile {directory / 'broker.crt'}\n"
        f"keyfile {directory / 'broker.key'}\n"
    )
    return tls, config


async def drain_receiver(
    port: int, cid: str, n: int, batch: int, window: int, tls: Tls | None = None
) -> None:
    opts = ConnectOptions(
        "127.0.0.1",
        tls.port if tls else port,
        cid,
        receive_maximum=window,
        session_expiry_s=600,
        tls=tls.context if tls else None,
    )
    async with connect(opts) as conn:
        got = 0
        mids: list[int] = []
        while got < n:
            for _topic, _payload, mid, _qos in await conn.receive(batch - len(mids)):
                mids.append(mid)
            got_now = got + len(mids)
            if len(mids) >= batch or got_now >= n:
                conn.ack(mids)
                got, mids = got_now, []


async def drain_aiomqtt(port: int, cid: str, n: int, batch: int, window: int) -> None:
    props = Properties(PacketTypes.CONNECT)
    props.ReceiveMaximum = window
    props.SessionExpiryInterval = 600
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier=cid,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=False,
        properties=props,
    ) as client:
        client._client.manual_ack_set(True)
        queue = client._queue
        pending: list[aiomqtt.Message] = []
        got = 0
        async for msg in client.messages:
            pending.append(msg)
            while len(pending) < batch and not queue.empty():
                pending.append(queue.get_nowait())
            if len(pending) >= batch or got + len(pending) >= n:
                for m in pending:
                    client._client.ack(m.mid, m.qos)
                got += len(pending)
                pending = []
                if got >= n:
                    return


def drain_paho(port: int, cid: str, n: int, batch: int, window: int) -> None:
    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2,
        client_id=cid,
        protocol=paho.MQTTv5,
        manual_ack=True,
    )
    done = threading.Event()
    pending: list[tuple[int, int]] = []
    got = [0]

    def on_message(c: paho.Client, _ud: object, msg: paho.MQTTMessage) -> None:
        pending.append((msg.mid, msg.qos))
        if len(pending) >= batch or got[0] + len(pending) >= n:
            for mid, qos in pending:
                c.ack(mid, qos)
            got[0] += len(pending)
            pending.clear()
            if got[0] >= n:
                done.set()

    client.on_message = on_message
    props = Properties(PacketTypes.CONNECT)
    props.ReceiveMaximum = window
    props.SessionExpiryInterval = 600
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    client.loop_start()
    try:
        if not done.wait(600):
            raise SystemExit("paho: timed out")
    finally:
        client.disconnect()
        client.loop_stop()


async def drain_gmqtt(port: int, cid: str, n: int, batch: int, window: int) -> None:
    loop = asyncio.get_running_loop()
    count = 0
    batch_in: asyncio.Future[None] = loop.create_future()
    finished: asyncio.Future[None] = loop.create_future()

    async def on_message(
        _c: object, _topic: str, _payload: bytes, _qos: int, _props: object
    ) -> int:
        nonlocal count, batch_in
        fut = batch_in
        count += 1
        if count % batch == 0 or count >= n:
            fut.set_result(None)  # the whole batch is in: every waiter acks now
            batch_in = loop.create_future()
            if count >= n and not finished.done():
                finished.set_result(None)
        await fut
        return 0

    client = gmqtt.Client(
        cid,
        clean_session=False,
        optimistic_acknowledgement=False,
        session_expiry_interval=600,
        receive_maximum=window,
    )
    client.on_message = on_message
    await client.connect("127.0.0.1", port, version=gmqtt.constants.MQTTv50)
    try:
        await asyncio.wait_for(finished, 600)
    finally:
        await client.disconnect()


def mosquitto_sub_command(port: int, cid: str, n: int, tls: Tls | None = None) -> list[str]:
    """``mosquitto_sub`` on the persistent session ``cid``: QoS 1, exit after n messages."""
    exe = shutil.which("mosquitto_sub")
    if exe is None:
        raise SystemExit("mosquitto_sub not found (apt-get install mosquitto-clients)")
    address = ["-p", str(tls.port), "--cafile", str(tls.ca_file)] if tls else ["-p", str(port)]
    command = [
        exe,
        "-h",
        "127.0.0.1",
        *address,
        "-V",
        "mqttv5",
        "-c",
        "-i",
        cid,
        "-x",
        "600",
        "-q",
        "1",
    ]
    return [*command, "-t", TOPIC_FILTER, "-C", str(n)]


def drain_c(port: int, cid: str, n: int, batch: int, window: int, tls: Tls | None = None) -> None:
    subprocess.run(
        mosquitto_sub_command(port, cid, n, tls),
        stdout=subprocess.DEVNULL,
        check=True,
        timeout=600,
    )


Drain = Callable[[int, str, int, int, int], object]
CLIENTS: dict[str, Drain] = {
    "mosquitto_sub (C)": drain_c,
    "ingest.receiver": drain_receiver,
    "aiomqtt": drain_aiomqtt,
    "paho, own thread": drain_paho,
    "gmqtt": drain_gmqtt,
}
TLS_CLIENTS = {"mosquitto_sub (C), TLS": drain_c, "ingest.receiver, TLS": drain_receiver}


def measure(port: int, drain: Drain, msgs: list[tuple[str, str]], batch: int, window: int) -> float:
    """Messages per second received and acknowledged from a pre-filled session queue."""
    cid = f"rx-{uuid.uuid4().hex[:8]}"
    asyncio.run(make_session(port, cid))
    preload(port, msgs)
    t0 = time.perf_counter()
    result = drain(port, cid, len(msgs), batch, window)
    if asyncio.iscoroutine(result):
        asyncio.run(result)
    rate = len(msgs) / (time.perf_counter() - t0)
    asyncio.run(end_session(port, cid))
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--vehicles", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=1000, help="acknowledge per this many messages")
    ap.add_argument("--receive-maximum", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=1, help="measure every client this many times")
    ap.add_argument(
        "--only", action="append", choices=sorted(CLIENTS | TLS_CLIENTS), help="limit the clients"
    )
    args = ap.parse_args()
    msgs = single_pings(args.messages, args.vehicles)
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rw-clients-")))
        tmp.chmod(0o755)
        tls, tls_config = tls_listener(tmp)
        config = BROKER_CONFIG.format(window=args.receive_maximum) + tls_config
        broker = stack.enter_context(PrivateMosquitto(tmp / "broker", extra_config=config))
        clients = CLIENTS | {
            name: functools.partial(drain, tls=tls) for name, drain in TLS_CLIENTS.items()
        }
        results: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for name, drain in clients.items():
                if args.only and name not in args.only:
                    continue
                rate = measure(broker.port, drain, msgs, args.batch, args.receive_maximum)
                results.setdefault(name, []).append(rate)
    print(
        f"{args.messages} single-ping QoS 1 messages queued for a persistent session; "
        f"acks per {args.batch}, Receive Maximum {args.receive_maximum}"
    )
    base = max(results.get("mosquitto_sub (C)", [0.0]))
    for name, rates in results.items():
        best = max(rates)
        ratio = f"  {best / base:5.0%} of the C client" if base else ""
        runs = ", ".join(f"{r:,.0f}" for r in rates)
        print(f"{name:<20} {best:>10,.0f} msg/s (runs: {runs}){ratio}")


if __name__ == "__main__":
    main()
