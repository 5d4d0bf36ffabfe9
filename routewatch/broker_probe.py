"""Does a broker that routewatch did not configure keep what the engine misses?

Mosquitto keeps at most ``max_queued_messages`` (default 1000) for a persistent session
whose client is away, and drops the rest without telling anyone: the engine restarting,
or waiting for a slow database (backpressure), then loses pings. ``probe_offline_queue``
measures the limit the way the engine would meet it: a persistent session subscribes
(QoS 1) to a private topic and goes away, ``PROBE_MESSAGES`` messages are published to
it, the session comes back and counts what the broker kept. Then the session is removed.
It takes well under a second on a local broker.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from routewatch.broker import BROKER_QUEUE_CONFIG
from routewatch.mqtt_endpoint import MqttEndpoint

PROBE_MESSAGES = 1500  # above Mosquitto's default limit of 1000
TIMEOUT_S = 10.0
QUIET_S = 0.5  # no message for this long after the last one: the queue is drained


@dataclass(frozen=True, slots=True)
class QueueProbe:
    sent: int
    kept: int

    @property
    def drops(self) -> bool:
        return self.kept < self.sent

    def advice(self, url: str) -> str:
        return (
            f"the MQTT broker at {url} kept only {self.kept} of {self.sent} messages for an "
            "absent subscriber: pings arriving while the engine restarts or waits for the "
            f"database will be dropped. Add `{BROKER_QUEUE_CONFIG}` to its configuration "
            "(README: 'The broker keeps what the engine misses'), or unset "
            "ROUTEWATCH_MQTT_URL to let routewatch start its own"
        )


def _client(broker: MqttEndpoint, client_id: str, clean: bool) -> mqtt.Client:
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean,
        protocol=mqtt.MQTTv311,
    )
    if broker.username is not None:
        c.username_pw_set(broker.username, broker.password)
    if (context := broker.ssl_context()) is not None:
        c.tls_set_context(context)
    c.max_inflight_messages_set(200)
    return c


def _connect(c: mqtt.Client, broker: MqttEndpoint) -> None:
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(_c: object, _u: object, _f: object, rc: mqtt.ReasonCode, _p: object) -> None:
        if rc.is_failure:
            refused.append(str(rc))
        connected.set()

    c.on_connect = on_connect
    c.connect(broker.host, broker.port, keepalive=30)
    c.loop_start()
    if not connected.wait(TIMEOUT_S) or refused:
        c.loop_stop()
        raise ConnectionError(f"refused: {refused[0] if refused else 'no CONNACK'}")


def probe_offline_queue(broker: MqttEndpoint, messages: int = PROBE_MESSAGES) -> QueueProbe:
    """How many of ``messages`` QoS 1 messages the broker keeps for an absent persistent
    session. Raises ``ConnectionError`` or ``OSError`` when the probe cannot run (a
    broker refusing the login or the topic)."""
    client_id = f"rw-queue-probe-{uuid.uuid4().hex[:8]}"
    topic = f"routewatch/queue-probe/{client_id}"
    received = 0
    last = time.monotonic()
    lock = threading.Lock()

    def on_message(_c: object, _u: object, _m: mqtt.MQTTMessage) -> None:
        nonlocal received, last
        with lock:
            received += 1
            last = time.monotonic()

    subscriber = _client(broker, client_id, clean=False)
    _connect(subscriber, broker)
    subscribed = threading.Event()
    subscriber.on_subscribe = lambda *_: subscribed.set()
    subscriber.subscribe(topic, qos=1)
    if not subscribed.wait(TIMEOUT_S):
        raise ConnectionError("no SUBACK")
    subscriber.disconnect()
    subscriber.loop_stop()

    publisher = _client(broker, f"{client_id}-pub", clean=True)
    _connect(publisher, broker)
    try:
        infos = [publisher.publish(topic, b"probe", qos=1) for _ in range(messages)]
        deadline = time.monotonic() + TIMEOUT_S
        for info in infos:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
    finally:
        publisher.disconnect()
        publisher.loop_stop()

    subscriber = _client(broker, client_id, clean=False)
    subscriber.on_message = on_message
    _connect(subscriber, broker)
    last = time.monotonic()
    deadline = last + TIMEOUT_S
    while time.monotonic() < deadline:
        with lock:
            if received >= messages or time.monotonic() - last > QUIET_S:
                break
        time.sleep(0.05)
    subscriber.disconnect()
    subscriber.loop_stop()
    # remove the session (a clean connection with the same id)
    cleaner = _client(broker, client_id, clean=True)
    _connect(cleaner, broker)
    cleaner.disconnect()
    cleaner.loop_stop()
    return QueueProbe(messages, received)
