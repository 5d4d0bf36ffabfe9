"""The fence of a partition's commits (ingest/worker.py): a claim waits for the old
owner's commit in flight, and after it the old owner's commits are refused."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest

from ingest.partitions import Scope
from ingest.worker import Fence, LeaseLost, claim_epoch


async def test_a_claim_waits_for_the_commit_in_flight_then_fences_the_old_owner(
    database_url: str,
) -> None:
    scope = Scope(5, 1000 + uuid.uuid4().int % 10**6)  # a partitioning of its own
    async with (
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as old,
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as new,
    ):
        fence = Fence(scope, await claim_epoch(old, scope, "w-old"))
        async with old.transaction():
            await fence(old)  # a batch commit in flight holds the row
            claim = asyncio.create_task(claim_epoch(new, scope, "w-new"))
            await asyncio.sleep(0.5)
            assert not claim.done(), "the claim must wait for the commit in flight"
        assert await asyncio.wait_for(claim, 10) == fence.epoch + 1
        with pytest.raises(LeaseLost):
            async with old.transaction():
                await fence(old)  # the old owner's next commit is refused
        await Fence(scope, fence.epoch + 1)(new)  # the new owner's passes
