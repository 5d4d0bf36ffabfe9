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

import contextlib
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
        _close(c)
        raise ConnectionError(f"refused: {refused[0] if refused else 'no CONNACK'}")


def _close(c: mqtt.Client) -> None:
    c.disconnect()
    c.loop_stop()


def _subscribe(c: mqtt.Client, topic: str) -> None:
    granted: list[bool] = []
    done = threading.Event()

    def on_subscribe(
        _c: object, _u: object, _mid: int, codes: list[mqtt.ReasonCode], _p: object
    ) -> None:
        granted.extend(not rc.is_failure for rc in codes)
        done.set()

    c.on_subscribe = on_subscribe
    c.subscribe(topic, qos=1)
    if not done.wait(TIMEOUT_S) or not all(granted):
        raise ConnectionError(f"subscription to {topic} refused (an ACL?)")


def probe_offline_queue(broker: MqttEndpoint, messages: int = PROBE_MESSAGES) -> QueueProbe:
    """How many of ``messages`` QoS 1 messages the broker keeps for an absent persistent
    session. Raises ``ConnectionError`` or ``OSError`` when the probe cannot run (a
    broker refusing the login or the topic); the probe's session is removed either way."""
    client_id = f"rw-queue-probe-{uuid.uuid4().hex[:8]}"
    topic = f"routewatch/queue-probe/{client_id}"
    try:
        sent = _park(broker, client_id, topic, messages)
        return QueueProbe(sent, _collect(broker, client_id, sent))
    finally:
        with contextlib.suppress(OSError, ConnectionError):
            cleaner = _client(broker, client_id, clean=True)  # removes the session
            _connect(cleaner, broker)
            _close(cleaner)


def _park(broker: MqttEndpoint, client_id: str, topic: str, messages: int) -> int:
    """Subscribe as a persistent session, go away, publish; returns how many the broker
    acknowledged."""
    subscriber = _client(broker, client_id, clean=False)
    _connect(subscriber, broker)
    try:
        _subscribe(subscriber, topic)
    finally:
        _close(subscriber)
    publisher = _client(broker, f"{client_id}-pub", clean=True)
    _connect(publisher, broker)
    try:
        infos = [publisher.publish(topic, b"probe", qos=1) for _ in range(messages)]
        deadline = time.monotonic() + TIMEOUT_S
        for info in infos:
            with contextlib.suppress(RuntimeError, ValueError):  # lost: not acknowledged
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        return sum(1 for info in infos if info.is_published())
    finally:
        _close(publisher)


def _collect(broker: MqttEndpoint, client_id: str, expected: int) -> int:
    """Come back as the session and count what the broker kept (until ``QUIET_S`` passes
    without a message, once the first has come)."""
    received = 0
    last = time.monotonic()
    lock = threading.Lock()

    def on_message(_c: object, _u: object, _m: mqtt.MQTTMessage) -> None:
        nonlocal received, last
        with lock:
            received += 1
            last = time.monotonic()

    subscriber = _client(broker, client_id, clean=False)
    subscriber.on_message = on_message
    _connect(subscriber, broker)
    try:
        started = time.monotonic()
        while time.monotonic() - started < TIMEOUT_S:
            with lock:
                if received >= expected or (received and time.monotonic() - last > QUIET_S):
                    break
            time.sleep(0.05)
    finally:
        _close(subscriber)
    return received
