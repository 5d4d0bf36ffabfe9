"""Random and mutated MQTT messages for fuzzing ingestion through the real broker.

``corpus(n, seed, now_ms)`` makes ``n`` (topic, payload) pairs: valid pings (objects and
arrays, unique fix times) mixed with every kind of bad input a fleet produces — random
bytes, truncated and byte-mutated JSON, wrong types, huge and tiny numbers, NaN/Infinity,
nested arrays, oversize payloads, bad vehicle ids and RFC 3339 edge cases. Every topic
matches the engine's subscription ``fleet/+/ping`` (others never reach it), and is valid
MQTT (UTF-8, no NUL, no wildcards). Deterministic for a seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import orjson

Message = tuple[str, bytes]

VEHICLES = ["F-1", "F.2", "F_3", "fz-4.a", "Z" * 64, "9", "f-6", "F-7"]
BAD_VEHICLES = ["", "a b", "ü", "X" * 65, "a!", "a%b", "é.1", "a:b", "*", "$x"]
RFC3339 = [
    "{d}T08:00:00Z",
    "{d}t08:00:00z",
    "{d}T15:00:00+07:00",
    "{d}T08:00:00-00:00",
    "{d}T08:00:00.123456789Z",
    "{d}T23:59:60Z",  # leap second
    "{d}T08:00:00",  # no offset
    "{d}T08:00:00+24:00",
    "{d}T08:00:00+0700",
    "{d} 08:00:00Z",
    "{d}",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "2025-02-30T00:00:00Z",
    "1999-12-31T23:59:59Z",
    "+02025-11-22T08:00:00Z",
    "",
    " ",
]
EDGE_NUMBERS = [
    b"1e308",
    b"-1e308",
    b"1e999",
    b"-1e999",
    b"1e-320",
    b"4.9e-324",
    b"1" + b"0" * 30,
    b"1" + b"0" * 400,
    b"-0",
    b"0.0000000000000000000000000000000000000000000001",
    b"3.5e38",
    b"9223372036854775808",
    b"NaN",
    b"-Infinity",
    b"Infinity",
]
WRONG_TYPES: list[object] = [None, True, False, "1.5", "", [], [1.0], {}, {"v": 1}, "NaN", "inf"]


class Corpus:
    """Message factory; ``next_ts`` hands out fix times unique across the corpus."""

    def __init__(self, seed: int, now_ms: int) -> None:
        self.rng = random.Random(seed)
        self._ts = now_ms - 6 * 3600 * 1000
        self.kinds: list[tuple[int, Callable[[], Message]]] = [
            (25, self.valid_object),
            (8, self.valid_array),
            (25, self.mutated),
            (8, self.wrong_type),
            (7, self.edge_number),
            (4, self.nested),
            (2, self.oversize),
            (4, self.bad_topic),
            (8, self.rfc3339),
            (5, self.random_bytes),
            (4, self.mixed_array),
        ]

    def next_ts(self) -> int:
        self._ts += self.rng.randint(1, 50)
        return self._ts

    def topic(self) -> str:
        return f"fleet/{self.rng.choice(VEHICLES)}/ping"

    def ping(self) -> dict[str, object]:
        r = self.rng
        item: dict[str, object] = {
            "ts": self.next_ts(),
            "lat": r.uniform(-90, 90),
            "lon": r.uniform(-180, 180),
        }
        for key, low, high in (("speed", 0, 200), ("heading", 0, 360), ("accuracy", 0, 100)):
            if r.random() < 0.7:
                item[key] = round(r.uniform(low, high), r.randint(0, 6))
        if r.random() < 0.5:
            item["seq"] = r.randint(0, 2**40)
        return item

    def valid_object(self) -> Message:
        return self.topic(), orjson.dumps(self.ping())

    def valid_array(self) -> Message:
        items = [self.ping() for _ in range(self.rng.randint(1, 6))]
        if self.rng.random() < 0.3:
            items.append(dict(items[0]))  # a repeat inside one message: stored once
        self.rng.shuffle(items)
        return self.topic(), orjson.dumps(items)

    def mutated(self) -> Message:
        topic, raw = self.valid_array() if self.rng.random() < 0.3 else self.valid_object()
        data = bytearray(raw)
        r = self.rng
        for _ in range(r.randint(1, 4)):
            if not data:
                break
            i = r.randrange(len(data))
            op = r.randrange(6)
            if op == 0:
                del data[i:]  # truncated
            elif op == 1:
                data[i] = r.randrange(256)
            elif op == 2:
                data.insert(i, r.choice(b'{}[],:"0123456789.-eE \\\x00\xff'))
            elif op == 3:
                del data[i : i + r.randint(1, 8)]
            elif op == 4:
                data[i:i] = data[i : i + r.randint(1, 16)]
            else:
                digits = [k for k, b in enumerate(data) if 48 <= b <= 57]
                if digits:
                    data[r.choice(digits)] = r.randrange(48, 58)
        return topic, bytes(data)

    def wrong_type(self) -> Message:
        item = self.ping()
        key = self.rng.choice(["ts", "lat", "lon", "speed", "heading", "accuracy", "seq"])
        item[key] = self.rng.choice(WRONG_TYPES)
        if self.rng.random() < 0.2:
            del item[self.rng.choice(["ts", "lat", "lon"])]
        return self.topic(), orjson.dumps(item)

    def edge_number(self) -> Message:
        item = self.ping()
        key = self.rng.choice(["ts", "lat", "lon", "speed", "heading", "accuracy", "seq"])
        marker = "__EDGE__"
        item[key] = marker
        text = orjson.dumps(item).replace(b'"' + marker.encode() + b'"', b"@")
        return self.topic(), text.replace(b"@", self.rng.choice(EDGE_NUMBERS))

    def nested(self) -> Message:
        depth = self.rng.choice([2, 3, 50, 1500, 20_000])
        inner = orjson.dumps(self.ping())
        return self.topic(), b"[" * depth + inner + b"]" * depth

    def oversize(self) -> Message:
        # valid JSON of ~6 KB: over the fuzz test's 4,000-byte limit, refused unread
        return self.topic(), orjson.dumps([self.ping()] * 60)

    def bad_topic(self) -> Message:
        return f"fleet/{self.rng.choice(BAD_VEHICLES)}/ping", self.valid_object()[1]

    def rfc3339(self) -> Message:
        item = self.ping()
        day = "2025-11-22" if self.rng.random() < 0.5 else "2026-01-01"
        item["ts"] = self.rng.choice(RFC3339).format(d=day)
        return self.topic(), orjson.dumps(item)

    def random_bytes(self) -> Message:
        size = self.rng.choice([0, 1, 2, 8, 64, 512])
        return self.topic(), self.rng.randbytes(size)

    def mixed_array(self) -> Message:
        makers = [self.wrong_type, self.edge_number, self.rfc3339, self.valid_object]
        parts = [self.rng.choice(makers)()[1] for _ in range(self.rng.randint(2, 6))]
        return self.topic(), b"[" + b",".join(parts) + b"]"

    def make(self, n: int) -> list[Message]:
        weights = [w for w, _ in self.kinds]
        makers = [m for _, m in self.kinds]
        return [self.rng.choices(makers, weights)[0]() for _ in range(n)]


def corpus(n: int, seed: int, now_ms: int) -> list[Message]:
    return Corpus(seed, now_ms).make(n)
