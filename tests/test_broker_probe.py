"""The demo's check of a broker it did not configure: how many messages it keeps for an
absent engine (routewatch.broker_probe), against private brokers with and without
Mosquitto's default limit."""

from __future__ import annotations

import logging

import pytest

from routewatch.broker_probe import PROBE_MESSAGES, probe_offline_queue
from routewatch.commands.demo import _check_reused_broker
from routewatch.mqtt_endpoint import MqttEndpoint
from routewatch.settings import Settings
from tests.conftest import StartMosquitto


def test_default_queue_limit_is_found_and_named(
    start_mosquitto: StartMosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    broker = start_mosquitto("max_queued_messages 1000\n")  # Mosquitto's default
    probe = probe_offline_queue(MqttEndpoint.parse(broker.url))
    assert (probe.sent, probe.kept, probe.drops) == (PROBE_MESSAGES, 1000, True)
    caplog.set_level(logging.INFO, logger="routewatch.commands.demo")
    _check_reused_broker(Settings(mqtt_url=broker.url), broker.url)
    warning = next(r for r in caplog.records if r.levelno == logging.WARNING).getMessage()
    assert "kept only 1000 of 1500" in warning and "max_queued_messages 1000000" in warning


def test_a_configured_broker_passes(
    start_mosquitto: StartMosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    broker = start_mosquitto()  # routewatch's own settings (routewatch.broker)
    probe = probe_offline_queue(MqttEndpoint.parse(broker.url))
    assert (probe.kept, probe.drops) == (PROBE_MESSAGES, False)
    caplog.set_level(logging.INFO, logger="routewatch.commands.demo")
    _check_reused_broker(Settings(mqtt_url=broker.url), broker.url)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_broker_that_refuses_the_probe_still_gets_a_warning(
    start_mosquitto: StartMosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    broker = start_mosquitto(allow_anonymous=False)
    caplog.set_level(logging.INFO, logger="routewatch.commands.demo")
    _check_reused_broker(Settings(mqtt_url=broker.url), broker.url)
    warning = next(r for r in caplog.records if r.levelno == logging.WARNING).getMessage()
    assert "could not check" in warning and "max_queued_messages 1000000" in warning
