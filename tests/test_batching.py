"""The SDK's coalescing of concurrent stats into batch calls, against a fake metaserver stub."""

from __future__ import annotations

import asyncio
from typing import Any

from store._pb import common_pb2 as pb
from store._pb import meta_pb2
from store.batching import MAX_CALLS_IN_FLIGHT, stat_batcher
from store.errors import NoSuchKey

ADDRESS = "127.0.0.1:1"


class FakeStub:
    """Returns StatObjects replies after `delay_s`; a key named "missing" gets NoSuchKey."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.batch_sizes: list[int] = []

    async def StatObjects(
        self, request: meta_pb2.StatObjectsRequest, timeout: float
    ) -> meta_pb2.StatObjectsResponse:
        self.batch_sizes.append(len(request.stats))
        await asyncio.sleep(self.delay_s)
        reply = meta_pb2.StatObjectsResponse()
        for stat in request.stats:
            result = reply.results.add()
            if stat.key == b"missing":
                result.error_code = NoSuchKey.code
                result.error_message = "no such key"
            else:
                result.record.etag = stat.key.decode()
        return reply


class FakeChannels:
    def __init__(self, stub: FakeStub) -> None:
        self.stub = stub

    def meta(self, address: str) -> Any:
        assert address == ADDRESS
        return self.stub


def stat_request(key: bytes) -> meta_pb2.StatObjectRequest:
    return meta_pb2.StatObjectRequest(bucket="b", key=key)


def test_batcher_sends_one_iteration_in_one_call() -> None:
    async def run() -> list[pb.ObjectRecord]:
        batcher = stat_batcher(FakeChannels(stub))  # type: ignore[arg-type]
        keys = [f"k{i}".encode() for i in range(10)]
        return await asyncio.gather(*(batcher.call(ADDRESS, stat_request(k), 5.0) for k in keys))

    stub = FakeStub(delay_s=0.0)
    records = asyncio.run(run())
    assert stub.batch_sizes == [10], (
        f"requests of one loop iteration were split: {stub.batch_sizes}"
    )
    assert [r.etag for r in records] == [f"k{i}" for i in range(10)], "results out of order"


def test_batcher_woken_tasks_join_next_call() -> None:
    """Tasks that send again as soon as their reply arrives fill the calls, not trail them."""
    tasks = 32
    rounds = 5

    async def worker(batcher: Any, number: int) -> None:
        for index in range(rounds):
            record = await batcher.call(ADDRESS, stat_request(f"{number}-{index}".encode()), 5.0)
            assert record.etag == f"{number}-{index}", "a task got another request's result"

    async def run() -> None:
        batcher = stat_batcher(FakeChannels(stub))  # type: ignore[arg-type]
        await asyncio.gather(*(worker(batcher, number) for number in range(tasks)))

    stub = FakeStub(delay_s=0.01)
    asyncio.run(run())
    assert sum(stub.batch_sizes) == tasks * rounds, f"requests lost: {stub.batch_sizes}"
    assert len(stub.batch_sizes) <= rounds * MAX_CALLS_IN_FLIGHT, (
        f"{len(stub.batch_sizes)} calls for {rounds} rounds: {stub.batch_sizes}"
    )


def test_batcher_raises_per_request_error() -> None:
    async def run() -> list[Any]:
        batcher = stat_batcher(FakeChannels(stub))  # type: ignore[arg-type]
        keys = [b"a", b"missing", b"b"]
        calls = (batcher.call(ADDRESS, stat_request(k), 5.0) for k in keys)
        return await asyncio.gather(*calls, return_exceptions=True)

    stub = FakeStub(delay_s=0.0)
    first, missing, last = asyncio.run(run())
    assert isinstance(missing, NoSuchKey), f"expected NoSuchKey, got {missing!r}"
    assert first.etag == "a", f"the first request got {first!r}"
    assert last.etag == "b", f"the last request got {last!r}"
