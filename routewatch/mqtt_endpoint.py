"""Where an MQTT broker is and how to reach it: one parser of ``mqtt://`` / ``mqtts://``
URLs and the TLS context they ask for, shared by the engine's receiver, the simulator,
the health check and the service runner (which needs nothing heavier than ``ssl``).

- ``mqtt://[user:password@]host[:port]`` — plain TCP, port 1883 by default;
- ``mqtts://[user:password@]host[:port]`` — TLS, port 8883 by default. The server's
  certificate is checked against the system's CA store, or against ``ca_file`` when one is
  given (``ROUTEWATCH_MQTT_TLS_CA_FILE``), and its name against the URL's host. A client
  certificate and key (``ROUTEWATCH_MQTT_TLS_CERT_FILE`` / ``..._KEY_FILE``) are sent when
  given, for brokers that authenticate devices by certificate.

The TLS files are ignored for ``mqtt://`` URLs: a private plain broker started in place of
an unreachable TLS one (``routewatch.services``) is still reached.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from routewatch.settings import Settings

PLAIN_SCHEMES = ("mqtt", "tcp")
TLS_SCHEMES = ("mqtts", "ssl", "tls")
PLAIN_PORT, TLS_PORT = 1883, 8883


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @classmethod
    def parse(
        cls,
        url: str,
        *,
        ca_file: Path | str | None = None,
        cert_file: Path | str | None = None,
        key_file: Path | str | None = None,
    ) -> MqttEndpoint:
        """The endpoint of ``url``; ``ValueError`` names what is wrong with it."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in PLAIN_SCHEMES + TLS_SCHEMES:
            raise ValueError(
                f"unsupported MQTT URL scheme {parts.scheme!r} in {url!r}: use "
                "mqtt://host:1883 (plain TCP) or mqtts://host:8883 (TLS)"
            )
        tls = scheme in TLS_SCHEMES
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"bad port in MQTT URL: {exc}") from None
        if cert_file is None and key_file is not None:
            raise ValueError("an MQTT TLS key file needs its certificate file too")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=port or (TLS_PORT if tls else PLAIN_PORT),
            tls=tls,
            username=unquote(parts.username) if parts.username is not None else None,
            password=unquote(parts.password) if parts.password is not None else None,
            ca_file=Path(ca_file) if tls and ca_file else None,
            cert_file=Path(cert_file) if tls and cert_file else None,
            key_file=Path(key_file) if tls and key_file else None,
        )

    @classmethod
    def from_settings(cls, settings: Settings, url: str | None = None) -> MqttEndpoint:
        """``url`` (default: ``settings.mqtt_url``) with the TLS files of ``settings``."""
        return cls.parse(
            url or settings.mqtt_url,
            ca_file=settings.mqtt_tls_ca_file,
            cert_file=settings.mqtt_tls_cert_file,
            key_file=settings.mqtt_tls_key_file,
        )

    @property
    def address(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client TLS context (None for plain TCP): certificate and host name checked."""
        if not self.tls:
            return None
        try:
            context = ssl.create_default_context(
                ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file) if self.ca_file else None
            )
            if self.cert_file is not None:
                context.load_cert_chain(
                    self.cert_file, self.key_file if self.key_file is not None else None
                )
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load the MQTT TLS files: {exc}") from exc
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context


def varint(n: int) -> bytes:
    """MQTT's variable byte integer (remaining length, property lengths)."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(text: str) -> bytes:
    """An MQTT UTF-8 string: two-byte length, then the bytes."""
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def connect_packet_v311(client_id: str, username: str | None, password: str | None) -> bytes:
    """A minimal MQTT 3.1.1 CONNECT (clean session, keepalive 10 s), for reachability probes."""
    flags, payload = 0x02, utf8(client_id)
    if username is not None:
        flags, payload = flags | 0x80, payload + utf8(username)
        if password is not None:
            flags, payload = flags | 0x40, payload + utf8(password)
    body = b"\x00\x04MQTT\x04" + bytes([flags]) + (10).to_bytes(2, "big") + payload
    return b"\x10" + varint(len(body)) + body


def connack_ok(connack: bytes) -> bool:
    """Whether a 4-byte MQTT 3.1.1 CONNACK accepts the connection."""
    return len(connack) == 4 and connack[0] == 0x20 and connack[3] == 0
