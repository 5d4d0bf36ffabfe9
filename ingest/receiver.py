"""The engine's MQTT 5 connection: bulk receive, manual batched acks, QoS 1 publish.

Why not a general client: at tens of thousands of single-ping messages a second the
general asyncio clients spend more per message than decoding and storing it. aiomqtt
builds a paho ``MQTTMessage`` (with its properties object) and wakes a queue waiter per
message, gmqtt awaits an ``asyncio.Queue`` per packet and, for acks after processing,
runs a task per message; paho in its own thread contends with the pipeline for the GIL
with the same per-message objects. Side by side (``benchmarks/mqtt_clients.py``) this
module drains a broker queue several times faster than each of them. It does only what
the engine needs and nothing else:

- ``connect``: over TCP or TLS (``ConnectOptions.tls``); MQTT 5 CONNECT with a fixed client id, ``clean_start`` false, Session
  Expiry and Receive Maximum (the broker's un-acked window: backpressure), optional
  username/password, keepalive pings; CONNACK refusal raises :class:`MqttError`.
- ``subscribe`` one filter at QoS <= 1.
- ``receive``: every PUBLISH the socket has delivered, parsed straight out of the read
  buffer, as ``(topic, payload, packet id, qos)`` tuples — no per-message objects or
  wake-ups. Reading pauses while ``max_buffered`` messages wait to be taken.
- ``ack``: PUBACKs for many packet ids in one write — the caller acknowledges only once
  their batch is committed (at-least-once; the broker re-delivers un-acked messages of a
  persistent session after a reconnect).
- ``publish``: QoS 0/1 publish that waits for the PUBACK (the events mirror).

Unsupported on purpose (refused as protocol errors): QoS 2, topic aliases from the
server (we advertise none), enhanced authentication.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
import struct
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from routewatch.mqtt_endpoint import utf8, varint

#: one received PUBLISH: (topic, payload, packet id (0 for QoS 0), qos)
Inbound = tuple[str, bytes, int, int]

_CONNECT, _CONNACK, _PUBLISH, _PUBACK = 0x10, 0x20, 0x30, 0x40
_SUBSCRIBE, _SUBACK, _PINGREQ, _PINGRESP, _DISCONNECT = 0x82, 0x90, 0xC0, 0xD0, 0xE0
# MQTT 5 property identifiers -> value encoding (to skip or read CONNACK/SUBACK properties)
_BYTE, _U16, _U32, _VARINT, _STR, _PAIR = 1, 2, 4, -1, -2, -3
_PROPERTY_KIND = {
    0x01: _BYTE, 0x02: _U32, 0x03: _STR, 0x08: _STR, 0x09: _STR, 0x0B: _VARINT,
    0x11: _U32, 0x12: _STR, 0x13: _U16, 0x15: _STR, 0x16: _STR, 0x17: _BYTE,
    0x18: _U32, 0x19: _BYTE, 0x1A: _STR, 0x1C: _STR, 0x1F: _STR, 0x21: _U16,
    0x22: _U16, 0x23: _U16, 0x24: _BYTE, 0x25: _BYTE, 0x26: _PAIR, 0x27: _U32,
    0x28: _BYTE, 0x29: _BYTE, 0x2A: _BYTE,
}  # fmt: skip
_PROP_SERVER_KEEP_ALIVE, _PROP_RECEIVE_MAXIMUM, _PROP_REASON = 0x13, 0x21, 0x1F


class MqttError(Exception):
    """The connection failed, was refused or was lost; reconnect to carry on."""


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = None
    keepalive_s: int = 30
    session_expiry_s: int = 3600
    receive_maximum: int = 2000
    clean_start: bool = False
    #: parsed messages waiting for ``receive`` before the socket read pauses
    max_buffered: int = 8000
    connect_timeout_s: float = 10.0
    #: TLS (``mqtts://``): the client context; the server's name is checked against ``host``
    tls: ssl.SSLContext | None = None


def _read_varint(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int] | None:
    """(value, position after it), or None when ``buf`` ends inside it."""
    value = shift = 0
    for i in range(4):
        if pos + i >= len(buf):
            return None
        byte = buf[pos + i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos + i + 1
        shift += 7
    raise MqttError("malformed variable byte integer")


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + varint(len(body)) + body


def _properties(props: dict[int, int]) -> bytes:
    out = bytearray()
    for pid, value in props.items():
        out.append(pid)
        out += value.to_bytes(_PROPERTY_KIND[pid], "big")
    return varint(len(out)) + bytes(out)


def parse_properties(data: bytes | bytearray, pos: int) -> tuple[dict[int, object], int]:
    """Properties at ``pos`` -> ({id: value}, position after them). Strings and binary
    values come back as bytes; user properties (repeatable) are skipped."""
    parsed = _read_varint(data, pos)
    if parsed is None:
        raise MqttError("truncated properties")
    length, pos = parsed
    end = pos + length
    props: dict[int, object] = {}
    while pos < end:
        pid = data[pos]
        kind = _PROPERTY_KIND.get(pid)
        pos += 1
        if kind is None:
            raise MqttError(f"unknown property 0x{pid:02x}")
        if kind > 0:
            props[pid] = int.from_bytes(data[pos : pos + kind], "big")
            pos += kind
        elif kind == _VARINT:
            parsed = _read_varint(data, pos)
            if parsed is None:
                raise MqttError("truncated property")
            props[pid], pos = parsed
        else:
            for _ in range(2 if kind == _PAIR else 1):
                size = int.from_bytes(data[pos : pos + 2], "big")
                if kind == _STR:
                    props[pid] = data[pos + 2 : pos + 2 + size]
                pos += 2 + size
    if pos != end:
        raise MqttError("malformed properties")
    return props, end


def connect_packet(opts: ConnectOptions) -> bytes:
    flags = 0x02 if opts.clean_start else 0x00
    payload = utf8(opts.client_id)
    if opts.username is not None:
        flags |= 0x80
        payload += utf8(opts.username)
    if opts.password is not None:
        flags |= 0x40
        payload += utf8(opts.password)
    props = _properties({0x11: opts.session_expiry_s, _PROP_RECEIVE_MAXIMUM: opts.receive_maximum})
    body = utf8("MQTT") + bytes([5, flags]) + struct.pack("!H", opts.keepalive_s) + props
    return _packet(_CONNECT, body + payload)


class _Protocol(asyncio.Protocol):
    """Parses the byte stream; everything else lives in :class:`MqttConnection`."""

    def __init__(self, owner: MqttConnection) -> None:
        self.owner = owner
        self.buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.owner._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        owner = self.owner
        owner.last_received_monotonic = time.monotonic()
        inbox = owner._inbox
        pos, end = 0, len(buf)
        try:
            while end - pos >= 2:
                first = buf[pos]
                # remaining length: one or two bytes in the common cases (a ping's
                # packet is 128 bytes to 16 KB)
                rlen = buf[pos + 1]
                if rlen < 0x80:
                    start = pos + 2
                elif end - pos >= 3 and buf[pos + 2] < 0x80:
                    rlen = (rlen & 0x7F) | (buf[pos + 2] << 7)
                    start = pos + 3
                else:
                    parsed = _read_varint(buf, pos + 1)
                    if parsed is None:
                        break
                    rlen, start = parsed
                stop = start + rlen
                if stop > end:
                    break
                if first & 0xF0 == _PUBLISH:
                    qos = (first >> 1) & 3
                    tlen = (buf[start] << 8) | buf[start + 1]
                    p = start + 2 + tlen
                    # lenient: a topic that is not UTF-8 (a broker that does not check) becomes a
                    # bad_topic rejection with its bytes kept, never a dropped connection
                    topic = buf[start + 2 : p].decode("utf-8", "surrogateescape")
                    mid = 0
                    if qos:
                        if qos > 1:
                            raise MqttError("QoS 2 delivery is not supported")
                        mid = (buf[p] << 8) | buf[p + 1]
                        p += 2
                    plen = buf[p]  # property length, usually 0
                    if plen < 0x80:
                        p += 1 + plen
                    else:
                        p = parse_properties(buf, p)[1]
                    if not topic:
                        raise MqttError("topic alias received, none was allowed")
                    inbox.append((topic, bytes(buf[p:stop]), mid, qos))
                else:
                    owner._control(first, bytes(buf[start:stop]))
                pos = stop
        except (MqttError, IndexError, UnicodeDecodeError) as exc:
            owner._fail(exc if isinstance(exc, MqttError) else MqttError(f"bad packet: {exc}"))
            return
        del buf[:pos]
        owner._delivered()

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._fail(MqttError(f"connection lost: {exc}" if exc else "connection closed"))


class MqttConnection:
    """One MQTT 5 connection, owned by one event loop. Use :func:`connect`."""

    def __init__(self, opts: ConnectOptions) -> None:
        self.opts = opts
        self.session_present = False
        self.last_received_monotonic = time.monotonic()
        self._transport: asyncio.Transport | None = None
        self._inbox: collections.deque[Inbound] = collections.deque()
        self._paused = False
        self._error: MqttError | None = None
        self._wakeup: asyncio.Event = asyncio.Event()
        self._connack: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting: dict[int, asyncio.Future[bytes]] = {}  # our packet id -> SUBACK/PUBACK
        self._next_id = 0
        self._send_window: asyncio.Semaphore = asyncio.Semaphore(65535)
        self._keepalive_task: asyncio.Task[None] | None = None

    # -- the stream --------------------------------------------------------------------

    def _control(self, first: int, body: bytes) -> None:
        kind = first & 0xF0
        if kind in (_PUBACK, _SUBACK):
            mid = int.from_bytes(body[:2], "big")
            fut = self._waiting.pop(mid, None)
            if fut is not None and not fut.done():
                fut.set_result(body[2:])
        elif kind == _PINGRESP:
            pass
        elif kind == _CONNACK:
            if not self._connack.done():
                self._connack.set_result(body)
        elif kind == _DISCONNECT:
            reason = body[0] if body else 0
            raise MqttError(f"broker disconnected us (reason 0x{reason:02x})")
        else:
            raise MqttError(f"unexpected packet type 0x{first:02x}")

    def _delivered(self) -> None:
        if self._inbox:
            self._wakeup.set()
            if len(self._inbox) >= self.opts.max_buffered and not self._paused:
                self._paused = True  # a QoS 0 flood; QoS 1 is bounded by Receive Maximum
                if self._transport is not None:
                    self._transport.pause_reading()

    def _fail(self, error: MqttError) -> None:
        if self._error is None:
            self._error = error
        self._wakeup.set()
        for fut in [self._connack, *self._waiting.values()]:
            if not fut.done():
                fut.set_exception(error)
        self._waiting.clear()
        if self._transport is not None:
            self._transport.abort()

    def _write(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        assert self._transport is not None
        self._transport.write(data)

    def _packet_id(self) -> int:
        for _ in range(65535):
            self._next_id = self._next_id % 65535 + 1
            if self._next_id not in self._waiting:
                return self._next_id
        raise MqttError("no free packet id")

    async def _request(self, packet_of: object, timeout_s: float) -> bytes:
        mid = self._packet_id()
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[mid] = fut
        self._write(packet_of(mid))  # type: ignore[operator]
        try:
            async with asyncio.timeout(timeout_s):
                return await fut
        except TimeoutError:
            raise MqttError(f"no acknowledgement in {timeout_s} s") from None
        finally:
            self._waiting.pop(mid, None)

    # -- public ------------------------------------------------------------------------

    async def subscribe(self, topic_filter: str, qos: int = 1, timeout_s: float = 10.0) -> None:
        def packet(mid: int) -> bytes:
            body = struct.pack("!H", mid) + b"\x00" + utf8(topic_filter) + bytes([qos])
            return _packet(_SUBSCRIBE, body)

        body = await self._request(packet, timeout_s)
        _, pos = parse_properties(body, 0)
        if not body[pos:] or body[pos] >= 0x80:
            raise MqttError(f"subscription to {topic_filter} refused: {body[pos:]!r}")

    async def receive(self, max_messages: int) -> list[Inbound]:
        """Wait for at least one message; return up to ``max_messages`` of those delivered."""
        while not self._inbox:
            if self._error is not None:
                raise self._error
            self._wakeup.clear()
            await self._wakeup.wait()
        inbox = self._inbox
        if len(inbox) <= max_messages:
            out = list(inbox)
            inbox.clear()
        else:
            out = [inbox.popleft() for _ in range(max_messages)]
        if self._paused and len(inbox) < self.opts.max_buffered // 2:
            self._paused = False
            if self._transport is not None and self._error is None:
                self._transport.resume_reading()
        return out

    def ack(self, packet_ids: Iterable[int]) -> None:
        """PUBACK (success) for each QoS 1 packet id, in one write."""
        data = b"".join(b"\x40\x02" + mid.to_bytes(2, "big") for mid in packet_ids)
        if data:
            self._write(data)

    async def publish(
        self, topic: str, payload: bytes, qos: int = 1, timeout_s: float = 10.0
    ) -> None:
        """Publish; with QoS 1 return once the broker acknowledged it."""
        head = utf8(topic)
        if qos == 0:
            self._write(_packet(_PUBLISH, head + b"\x00" + payload))
            return
        async with self._send_window:
            body = await self._request(
                lambda mid: _packet(
                    _PUBLISH | 0x02, head + struct.pack("!H", mid) + b"\x00" + payload
                ),
                timeout_s,
            )
        if body and body[0] >= 0x80:
            raise MqttError(f"publish to {topic} refused (reason 0x{body[0]:02x})")

    # -- lifecycle ---------------------------------------------------------------------

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        opts = self.opts
        try:
            async with asyncio.timeout(opts.connect_timeout_s):
                await loop.create_connection(
                    lambda: _Protocol(self),
                    opts.host,
                    opts.port,
                    ssl=opts.tls,
                    server_hostname=opts.host if opts.tls is not None else None,
                )
                self._write(connect_packet(opts))
                body = await self._connack
        except (OSError, TimeoutError) as exc:  # ssl.SSLError (a refused certificate) too
            scheme = "mqtts" if opts.tls is not None else "mqtt"
            raise MqttError(f"cannot connect to {scheme}://{opts.host}:{opts.port}: {exc}") from exc
        if len(body) < 2:
            raise MqttError("malformed CONNACK")
        self.session_present = bool(body[0] & 1)
        props, _ = parse_properties(body, 2)
        if body[1] >= 0x80:
            reason = props.get(_PROP_REASON, b"")
            raise MqttError(f"connection refused (reason 0x{body[1]:02x}) {reason!r}")
        server_window = props.get(_PROP_RECEIVE_MAXIMUM)
        if isinstance(server_window, int):
            self._send_window = asyncio.Semaphore(server_window)
        keepalive_s = props.get(_PROP_SERVER_KEEP_ALIVE, opts.keepalive_s)
        if isinstance(keepalive_s, int) and keepalive_s > 0:
            self._keepalive_task = asyncio.create_task(
                self._keepalive(keepalive_s), name="mqtt-keepalive"
            )

    async def _keepalive(self, keepalive_s: int) -> None:
        """PINGREQ every half interval; no byte from the broker for 1.5 intervals = dead."""
        while self._error is None:
            await asyncio.sleep(keepalive_s / 2)
            if time.monotonic() - self.last_received_monotonic > 1.5 * keepalive_s:
                self._fail(MqttError("keepalive timeout"))
                return
            with contextlib.suppress(MqttError):
                self._write(bytes([_PINGREQ, 0]))

    async def close(self) -> None:
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive_task
        if self._transport is not None and self._error is None:
            self._transport.write(bytes([_DISCONNECT, 0]))  # normal; the session is kept
            self._transport.close()
        self._error = self._error or MqttError("connection closed")


@contextlib.asynccontextmanager
async def connect(opts: ConnectOptions) -> AsyncIterator[MqttConnection]:
    """An open connection for the block; DISCONNECT (session kept) on exit."""
    conn = MqttConnection(opts)
    try:
        await conn._open()
        yield conn
    finally:
        await conn.close()
