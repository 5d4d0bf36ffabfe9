"""Partitions, envelopes and the assignment of partitions to workers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.gateway import envelopes, vehicle_of
from ingest.jetstream import pack, unpack
from ingest.partitions import Scope, partition_of
from ingest.worker import assignment
from routewatch import services

TOKEN_SAFE = st.text(
    st.characters(min_codepoint=33, max_codepoint=0x2FFF, exclude_characters=".*>"),
    min_size=1,
    max_size=20,
)


def test_the_partition_is_the_one_nats_subject_mapping_computes(tmp_path: Path) -> None:
    """A real nats-server maps ``part.<id>`` with ``{{partition(32,1)}}``: it picks the
    same partition as ``partition_of`` for every vehicle id a NATS token can hold."""
    ids = [f"V{n}" for n in range(150)] + ["truck-7", "ÆØÅ-12", "車両-3", "a_b=c", "Z" * 40]
    config = 'mappings = { "part.*": "part.{{wildcard(1)}}.{{partition(32,1)}}" }\n'

    async def mapped() -> dict[str, int]:
        with services.PrivateNats(tmp_path / "nats", config=config) as server:
            nc = await nats.connect(server.url)
            got: dict[str, int] = {}
            done = asyncio.Event()

            async def on_msg(msg: nats.aio.msg.Msg) -> None:
                _, vid, p = msg.subject.split(".")
                got[vid] = int(p)
                if len(got) == len(ids):
                    done.set()

            await nc.subscribe("part.*.*", cb=on_msg)
            for vid in ids:
                await nc.publish(f"part.{vid}", b"")
            async with asyncio.timeout(10):
                await done.wait()
            await nc.close()
            return got

    got = asyncio.run(mapped())
    assert got == {vid: partition_of(vid, 32) for vid in ids}


def test_partitions_spread_vehicles_evenly() -> None:
    counts = [0] * 32
    for n in range(32_000):
        counts[partition_of(f"VEH-{n:05d}", 32)] += 1
    assert min(counts) > 800 and max(counts) < 1200  # 1000 each, give or take


@given(st.text(max_size=30), st.integers(1, 64))
def test_a_scope_owns_exactly_its_partition(vehicle_id: str, partitions: int) -> None:
    p = partition_of(vehicle_id, partitions)
    assert 0 <= p < partitions
    assert [Scope(k, partitions).owns(vehicle_id) for k in range(partitions)].count(True) == 1
    assert Scope().owns(vehicle_id)


@given(st.lists(st.tuples(st.text(max_size=40), st.binary(max_size=300)), max_size=30))
def test_an_envelope_gives_back_its_records(records: list[tuple[str, bytes]]) -> None:
    assert list(unpack(pack(records))) == records


def test_a_cut_envelope_is_an_error() -> None:
    data = pack([("fleet/V1/ping", b'{"ts":1}')])
    for end in (1, 5, len(data) - 1):
        with pytest.raises(ValueError, match="cut"):
            list(unpack(data[:end]))


def test_the_gateway_groups_a_read_by_partition_in_order() -> None:
    messages = [
        (f"fleet/{v}/ping", f"{v}:{i}".encode(), i + 1, 1)
        for i in range(300)
        for v in ("a.b", "c d", "E")
    ][:600]
    packed = envelopes(messages, 8, max_bytes=400)
    assert all(len(data) <= 400 for _, data in packed)
    seen: dict[str, list[bytes]] = {}
    for p, data in packed:
        for topic, payload in unpack(data):
            assert partition_of(vehicle_of(topic), 8) == p
            seen.setdefault(topic, []).append(payload)
    for v in ("a.b", "c d", "E"):  # every vehicle's messages, in the order received
        assert seen[f"fleet/{v}/ping"] == [m[1] for m in messages if m[0] == f"fleet/{v}/ping"]
    assert vehicle_of("other/topic") == ""


def test_assignment_is_shared_and_moves_little() -> None:
    three = assignment(64, ["w1", "w2", "w3"])
    assert three == assignment(64, ["w3", "w1", "w2"])  # every worker computes the same
    assert all(12 <= list(three.values()).count(w) <= 32 for w in ("w1", "w2", "w3"))
    four = assignment(64, ["w1", "w2", "w3", "w4"])
    moved = {p for p in range(64) if three[p] != four[p]}
    assert all(four[p] == "w4" for p in moved)  # only to the newcomer
    two = assignment(64, ["w1", "w3"])
    assert all(two[p] == three[p] for p in range(64) if three[p] != "w2")  # only w2's move
    assert assignment(8, []) == {}
