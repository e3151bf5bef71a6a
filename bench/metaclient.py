"""A load-generating client process for bench/metaservers.py.

The parent starts several of these and sends each one JSON command per line
on stdin; each command gets one JSON line on stdout. The process keeps one
event loop, so its clients and channels stay connected between commands:

    {"command": "connect", "targets": {"one": "ADDR", "two": "ADDR", "raw": "ADDR"}}
    {"command": "preload", "target": "one", "first": 0, "count": 5000}   (the bucket exists)
    {"command": "run", "target": "one", "load": "sdk-stat", "start_s": T, "end_s": T2, ...}
    {"command": "exit"}

A run starts at once and counts only the operations that complete between
`start_s` and `end_s` (CLOCK_MONOTONIC, which every process on the machine
shares), so the time before `start_s` warms the load up. The loads:

    sdk-stat     AsyncClient.stat() of a random preloaded key, `tasks` tasks
    sdk-put      AsyncClient.put() of a new small object, `tasks` tasks
    batch-stat   StatObjects calls of `batch` random preloaded keys, built per call,
                 `calls` in flight, split evenly over the metaservers
    batch-put    CommitObjects calls of `batch` new inline objects, likewise
    raw-echo     raw grpcio unary calls of 128 bytes (bench/raw_server.py), `tasks` tasks

The SDK loads are what an application gets. The batch loads send what the
SDK's batcher sends, minus the SDK's per-operation work, so the client costs
little CPU and the metaservers' own limit shows.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc.aio
from benchlib import percentile
from rawgrpc import RawClient

from store import AsyncClient, batching
from store._pb import common_pb2 as pb
from store._pb import meta_pb2, meta_pb2_grpc
from store.checksum import crc32c
from store.clustermap import ClusterView
from store.rpc import CHANNEL_OPTIONS
from store.shardmap import shard_of

BUCKET = "bench-meta"
OBJECT_BYTES = 1024
PAYLOAD = bytes(range(256)) * (OBJECT_BYTES // 256)
# Timeout of every call of the loads.
CALL_TIMEOUT_S = 30.0
# The SDK's own number of batch calls in flight per metaserver.
SDK_CALLS_IN_FLIGHT = batching.MAX_CALLS_IN_FLIGHT
# Maximum number of latencies one run keeps for its percentiles.
MAX_LATENCY_SAMPLES = 200_000
# Every run also stops after this many operations, warm-up included, whatever its end time.
MAX_OPS_PER_RUN = 5_000_000


def preloaded_key(index: int) -> str:
    return f"stat/{index:08d}"


@dataclass
class RunCounter:
    """Operations completed inside the measured window, and their latencies."""

    start_s: float
    end_s: float
    ops: int = 0
    errors: int = 0
    first_error: str = ""
    # Operations completed or failed since the run started, warm-up included.
    total: int = 0
    latencies_s: list[float] = field(default_factory=list)

    def running(self) -> bool:
        return time.monotonic() < self.end_s and self.total < MAX_OPS_PER_RUN

    def done(self, began_s: float, count: int = 1) -> None:
        self.total += count
        now_s = time.monotonic()
        if self.start_s <= now_s <= self.end_s:
            self.ops += count
            if len(self.latencies_s) < MAX_LATENCY_SAMPLES:
                self.latencies_s.append(now_s - began_s)

    def failed(self, error: BaseException) -> None:
        self.total += 1
        self.errors += 1
        if not self.first_error:
            self.first_error = f"{type(error).__name__}: {error}"

    def summary(self) -> dict[str, Any]:
        latencies_ms = [latency * 1000 for latency in self.latencies_s]
        return {
            "ops": self.ops,
            "errors": self.errors,
            "first_error": self.first_error,
            "latency_ms_p50": percentile(latencies_ms, 0.5),
            "latency_ms_p99": percentile(latencies_ms, 0.99),
        }


class Target:
    """One cluster as the loads see it: an AsyncClient and raw stubs per metaserver."""

    def __init__(self, worker: int, address: str) -> None:
        self.worker = worker
        self.client = AsyncClient(address, timeout_s=CALL_TIMEOUT_S)
        self.view: ClusterView | None = None
        self.channels: dict[str, grpc.aio.Channel] = {}
        self.stubs: dict[str, meta_pb2_grpc.MetaServiceStub] = {}
        self.preloaded = 0
        self.puts = 0
        # Preloaded (key, shard) pairs by the address of the metaserver serving them.
        self._stat_keys: dict[str, list[tuple[bytes, int]]] = {}

    async def connect(self) -> None:
        await self.client.connect()
        self.view = ClusterView(await self.client.cluster_map())
        for address in self.view.metaserver_addresses:
            channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
            self.channels[address] = channel
            self.stubs[address] = meta_pb2_grpc.MetaServiceStub(channel)

    async def close(self) -> None:
        await self.client.close()
        for channel in self.channels.values():
            await channel.close()

    def new_put_key(self) -> str:
        self.puts += 1
        return f"put/{self.worker:02d}/{self.puts:09d}"

    def stat_keys(self, address: str) -> list[tuple[bytes, int]]:
        """Return the preloaded keys that the metaserver at `address` serves, with their shards."""
        if sum(len(pairs) for pairs in self._stat_keys.values()) != self.preloaded:
            self._stat_keys = {address: [] for address in self.stubs}
            for index in range(self.preloaded):
                key = preloaded_key(index).encode()
                shard, owner = self.owner(key)
                self._stat_keys[owner].append((key, shard))
        return self._stat_keys[address]

    def owner(self, key: bytes) -> tuple[int, str]:
        """Return the shard of `key` and the address of the metaserver that serves it."""
        assert self.view is not None
        shard = shard_of(BUCKET, key, self.view.shard_count)
        return shard, self.view.metaserver_for_shard(shard)


class Worker:
    def __init__(self, worker: int) -> None:
        self.worker = worker
        self.targets: dict[str, Target] = {}
        self.raw: RawClient | None = None
        self.random = random.Random(worker)
        self.record = pb.ObjectRecord(
            size_bytes=len(PAYLOAD),
            etag="bench",
            is_inline=True,
            inline_data=PAYLOAD,
            inline_crc32c=crc32c(PAYLOAD),
        )

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        name = command["command"]
        if name == "connect":
            return await self.connect(command["targets"])
        if name == "preload":
            return await self.preload(command["target"], command["first"], command["count"])
        if name == "run":
            return await self.run(command)
        raise ValueError(f"unknown command {name!r}")

    async def connect(self, addresses: dict[str, str]) -> dict[str, Any]:
        for name, address in addresses.items():
            if name == "raw":
                self.raw = RawClient(address)
                continue
            target = Target(self.worker, address)
            await target.connect()
            self.targets[name] = target
        return {"connected": sorted(addresses)}

    async def preload(self, name: str, first: int, count: int) -> dict[str, Any]:
        """Put the preloaded keys first .. first+count-1, 64 at a time."""
        client = self.targets[name].client
        for start in range(first, first + count, 64):
            stop = min(start + 64, first + count)
            await asyncio.gather(
                *(client.put(BUCKET, preloaded_key(i), PAYLOAD) for i in range(start, stop))
            )
        return {"preloaded": count}

    async def close(self) -> None:
        for target in self.targets.values():
            await target.close()
        if self.raw is not None:
            await self.raw.close()

    # Loads.

    async def run(self, command: dict[str, Any]) -> dict[str, Any]:
        counter = RunCounter(command["start_s"], command["end_s"])
        # An experiment may change the SDK's window; None restores the SDK's own value.
        batching.MAX_CALLS_IN_FLIGHT = command.get("sdk_calls_in_flight") or SDK_CALLS_IN_FLIGHT
        load: str = command["load"]
        target = self.targets.get(command["target"])
        if target is not None:
            target.preloaded = command["preloaded"]
        loops: list[Awaitable[None]]
        if load in ("sdk-stat", "sdk-put", "raw-echo"):
            operation = self._operation(load, target)
            loops = [self._task_loop(operation, counter) for _ in range(command["tasks"])]
        else:
            assert target is not None
            call = self._batch_stat if load == "batch-stat" else self._batch_put
            # The same calls in flight in total, whatever the number of metaservers.
            calls_per_metaserver = max(1, command["calls"] // len(target.stubs))
            loops = [
                self._batch_loop(call, target, address, command["batch"], counter)
                for address in target.stubs
                for _ in range(calls_per_metaserver)
            ]
        await asyncio.gather(*loops)
        return counter.summary()

    def _operation(self, load: str, target: Target | None) -> Callable[[], Awaitable[object]]:
        if load == "raw-echo":
            raw = self.raw
            assert raw is not None
            return lambda: raw.echo(0, 0)
        assert target is not None
        client = target.client
        if load == "sdk-stat":
            return lambda: client.stat(
                BUCKET, preloaded_key(self.random.randrange(target.preloaded))
            )
        return lambda: client.put(BUCKET, target.new_put_key(), PAYLOAD)

    @staticmethod
    async def _task_loop(operation: Callable[[], Awaitable[object]], counter: RunCounter) -> None:
        while counter.running():
            began_s = time.monotonic()
            try:
                await operation()
            except Exception as error:  # counted and reported, not hidden
                counter.failed(error)
                continue
            counter.done(began_s)

    @staticmethod
    async def _batch_loop(
        call: Callable[[Target, str, int], Awaitable[int]],
        target: Target,
        address: str,
        batch: int,
        counter: RunCounter,
    ) -> None:
        while counter.running():
            began_s = time.monotonic()
            try:
                failed = await call(target, address, batch)
            except grpc.RpcError as error:
                counter.failed(error)
                continue
            if failed:
                counter.failed(RuntimeError(f"{failed} of {batch} results were errors"))
            counter.done(began_s, batch - failed)

    @staticmethod
    def _new_keys(target: Target, address: str, batch: int) -> list[tuple[bytes, int]]:
        """Return `batch` new (key, shard) pairs whose shards the metaserver at `address` serves."""
        pairs: list[tuple[bytes, int]] = []
        while len(pairs) < batch:
            key = target.new_put_key().encode()
            shard, owner = target.owner(key)
            if owner == address:
                pairs.append((key, shard))
        return pairs

    async def _batch_stat(self, target: Target, address: str, batch: int) -> int:
        keys = target.stat_keys(address)
        request = meta_pb2.StatObjectsRequest(
            stats=[
                meta_pb2.StatObjectRequest(bucket=BUCKET, key=key, shard=shard)
                for key, shard in (keys[self.random.randrange(len(keys))] for _ in range(batch))
            ]
        )
        reply = await target.stubs[address].StatObjects(request, timeout=CALL_TIMEOUT_S)
        return sum(1 for result in reply.results if result.error_code)

    async def _batch_put(self, target: Target, address: str, batch: int) -> int:
        request = meta_pb2.CommitObjectsRequest(
            commits=[
                meta_pb2.CommitObjectRequest(
                    bucket=BUCKET, key=key, shard=shard, record=self.record
                )
                for key, shard in self._new_keys(target, address, batch)
            ]
        )
        reply = await target.stubs[address].CommitObjects(request, timeout=CALL_TIMEOUT_S)
        return sum(1 for result in reply.results if result.error_code)


async def serve(worker_number: int) -> None:
    worker = Worker(worker_number)
    loop = asyncio.get_running_loop()
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line or not line.strip():
                break
            command = json.loads(line)
            if command["command"] == "exit":
                break
            try:
                reply = await worker.handle(command)
            except Exception as error:  # sent to the parent, which stops the run
                reply = {"error": f"{type(error).__name__}: {error}"}
            print(json.dumps(reply), flush=True)
    finally:
        await worker.close()


def main() -> None:
    asyncio.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
