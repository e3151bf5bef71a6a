"""(c) Small objects: 4 KiB put, get and stat ops/s beside the raw small-RPC ceiling.

Concurrency comes from AsyncClient tasks on one client (1, 16 and, for
synced commits, 64 writers) and, in one extra run, from 16 threads sharing
one blocking Client. Each repetition measures the raw grpcio unary ceiling
at the same concurrency right before the SDK figures, so both see the same
machine load. A 4 KiB object is below the inline limit, so put is one
CommitObject with a synced RocksDB write, and get and stat are one
StatObject each. Each run also records the CPU time per operation of the
client (this process) and of the server (the metaserver, or the raw server),
read from /proc, since on 2 cores the CPU per operation bounds the rate.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from benchlib import (
    RateSample,
    Row,
    Target,
    local_cluster,
    new_report,
    process_cpu_s,
    progress,
    run_async_load,
    run_thread_load,
)
from rawgrpc import RawClient, RawServer

from store import AsyncClient, Client
from store._pb import meta_pb2, meta_pb2_grpc
from store.cluster import ManagedProcess

BUCKET = "bench-small"
OBJECT_BYTES = 4096
PRELOADED_KEYS = 1000
PUT_KEYS_PER_WORKER = 1000
STAT_TARGET = Target("min_ratio", 0.8)
COMMIT_TARGET = Target("min_ratio", 0.8)
TASK_CONCURRENCIES = (1, 16)
COMMIT_CONCURRENCY = 64
THREADS = 16
PAYLOAD = b"s" * OBJECT_BYTES


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="repetitions of each figure")
    parser.add_argument("--duration-s", type=float, default=2.0, help="seconds of each run")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="directory for the cluster's data (removed afterwards)",
    )
    return parser.parse_args()


def preloaded_key(worker: int, index: int) -> str:
    return f"object-{(worker * 7919 + index) % PRELOADED_KEYS:05d}"


def put_key(worker: int, index: int) -> str:
    return f"put-{worker:03d}-{index % PUT_KEYS_PER_WORKER:05d}"


class AsyncOperations:
    """The SDK operations of the load loops, on one AsyncClient."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    async def stat(self, worker: int, index: int) -> object:
        return await self.client.stat(BUCKET, preloaded_key(worker, index))

    async def get(self, worker: int, index: int) -> object:
        return await self.client.get(BUCKET, preloaded_key(worker, index))

    async def put(self, worker: int, index: int) -> object:
        return await self.client.put(BUCKET, put_key(worker, index), PAYLOAD)


def thread_operations(client: Client) -> dict[str, Callable[[int, int], object]]:
    return {
        "stat": lambda worker, index: client.stat(BUCKET, preloaded_key(worker, index)),
        "get": lambda worker, index: client.get(BUCKET, preloaded_key(worker, index)),
        "put": lambda worker, index: client.put(BUCKET, put_key(worker, index), PAYLOAD),
    }


def commit_counters(meta_address: str) -> tuple[int, int]:
    """Return the metaserver's commits and synced write batches, summed over its shards."""
    with grpc.insecure_channel(meta_address) as channel:
        status = meta_pb2_grpc.MetaServiceStub(channel).GetStatus(
            meta_pb2.GetStatusRequest(), timeout=10
        )
    return sum(s.commits for s in status.shards), sum(s.sync_writes for s in status.shards)


class SmallBench:
    """Runs every figure of one repetition and keeps the samples by figure name."""

    def __init__(
        self, runner: asyncio.Runner, meta: ManagedProcess, raw: RawServer, duration_s: float
    ) -> None:
        self.runner = runner
        self.meta_address = meta.address
        self.server_pids = {"meta": meta.pid, "raw": raw.pid}
        self.duration_s = duration_s
        self.client = runner.run(self._connect(meta.address))
        self.raw = runner.run(self._raw(raw.address))
        self.operations = AsyncOperations(self.client)
        self.samples: dict[str, list[RateSample]] = {}
        # Client and server CPU milliseconds per operation, by figure name.
        self.cpu_ms: dict[str, list[tuple[float, float]]] = {}
        self.group_commit: list[float] = []

    @staticmethod
    async def _connect(address: str) -> AsyncClient:
        client = AsyncClient(address)
        await client.connect()
        return client

    @staticmethod
    async def _raw(address: str) -> RawClient:
        return RawClient(address)

    def close(self) -> None:
        self.runner.run(self.client.close())
        self.runner.run(self.raw.close())

    def _keep(self, name: str, sample: RateSample) -> None:
        self.samples.setdefault(name, []).append(sample)

    def preload(self) -> None:
        async def load() -> None:
            await self.client.create_bucket(BUCKET)
            for first in range(0, PRELOADED_KEYS, 50):
                await asyncio.gather(
                    *(
                        self.client.put(BUCKET, preloaded_key(0, index), PAYLOAD)
                        for index in range(first, min(first + 50, PRELOADED_KEYS))
                    )
                )
            await self.raw.small_rpc_load(16, 0.5)
            await run_async_load(self.operations.stat, 16, 0.5)

        self.runner.run(load())

    def _measure(self, name: str, load: Callable[[], RateSample]) -> None:
        """Run one load, keeping its rate and the CPU it cost per operation."""
        server_pid = self.server_pids["raw" if name.startswith("raw") else "meta"]
        client_before_s = process_cpu_s(os.getpid())
        server_before_s = process_cpu_s(server_pid)
        sample = load()
        ops = max(sample.ops, 1)
        client_ms = (process_cpu_s(os.getpid()) - client_before_s) * 1000 / ops
        server_ms = (process_cpu_s(server_pid) - server_before_s) * 1000 / ops
        self._keep(name, sample)
        self.cpu_ms.setdefault(name, []).append((client_ms, server_ms))

    def _async_run(self, name: str, operation: Any, concurrency: int) -> None:
        self._measure(
            f"{name}-{concurrency}",
            lambda: self.runner.run(run_async_load(operation, concurrency, self.duration_s)),
        )

    def run_repetition(self, blocking: Client) -> None:
        for concurrency in TASK_CONCURRENCIES:
            self._async_run("raw", self.raw.echo, concurrency)
            self._async_run("stat", self.operations.stat, concurrency)
            self._async_run("get", self.operations.get, concurrency)
            self._async_run("put", self.operations.put, concurrency)
        self._async_run("raw", self.raw.echo, COMMIT_CONCURRENCY)
        before = commit_counters(self.meta_address)
        self._async_run("put", self.operations.put, COMMIT_CONCURRENCY)
        after = commit_counters(self.meta_address)
        synced_writes = max(after[1] - before[1], 1)
        self.group_commit.append((after[0] - before[0]) / synced_writes)
        for name, operation in thread_operations(blocking).items():
            self._measure(
                f"{name}-threads",
                functools.partial(run_thread_load, operation, THREADS, self.duration_s),
            )

    def ops_per_s(self, name: str) -> list[float]:
        return [sample.ops_per_s for sample in self.samples[name]]

    def latest(self) -> str:
        return ", ".join(
            f"{name} {samples[-1].ops_per_s:,.0f}" for name, samples in self.samples.items()
        )


def build_rows(bench: SmallBench) -> list[Row]:
    rows = []
    for concurrency in TASK_CONCURRENCIES:
        raw_name = f"raw unary, concurrency {concurrency}"
        raw = bench.ops_per_s(f"raw-{concurrency}")
        tasks = f"{concurrency} task{'s' if concurrency > 1 else ''}"
        for operation in ("stat", "get", "put"):
            target = STAT_TARGET if operation == "stat" else None
            values = bench.ops_per_s(f"{operation}-{concurrency}")
            rows.append(
                Row(f"SDK {operation} 4 KiB, {tasks}", "ops/s", values, raw_name, raw, target)
            )
    rows.append(
        Row(
            f"SDK put 4 KiB synced commit, {COMMIT_CONCURRENCY} tasks",
            "ops/s",
            bench.ops_per_s(f"put-{COMMIT_CONCURRENCY}"),
            f"raw unary, concurrency {COMMIT_CONCURRENCY}",
            bench.ops_per_s(f"raw-{COMMIT_CONCURRENCY}"),
            COMMIT_TARGET,
        )
    )
    raw_threads = bench.ops_per_s(f"raw-{THREADS}")
    for operation in ("stat", "get", "put"):
        target = STAT_TARGET if operation == "stat" else None
        rows.append(
            Row(
                f"SDK {operation} 4 KiB, {THREADS} threads on one blocking Client",
                "ops/s",
                bench.ops_per_s(f"{operation}-threads"),
                f"raw unary, concurrency {THREADS} (tasks)",
                raw_threads,
                target,
            )
        )
    return rows


def cpu_rows(bench: SmallBench) -> list[Row]:
    """Rows of client plus server CPU milliseconds per operation, SDK beside raw."""
    rows = []
    pairs = [(f"{op}-{c}", f"raw-{c}") for c in TASK_CONCURRENCIES for op in ("stat", "get", "put")]
    pairs.append((f"put-{COMMIT_CONCURRENCY}", f"raw-{COMMIT_CONCURRENCY}"))
    for name, raw in pairs:
        rows.append(
            Row(
                f"CPU per op, client + server, {name}",
                "ms",
                [client + server for client, server in bench.cpu_ms[name]],
                f"CPU per op, {raw}",
                [client + server for client, server in bench.cpu_ms[raw]],
            )
        )
    return rows


def latency_details(bench: SmallBench) -> dict[str, Any]:
    return {
        name: {
            "ops_per_s": [round(s.ops_per_s, 1) for s in samples],
            "latency_ms_p50": [round(s.latency_ms_p50, 3) for s in samples],
            "latency_ms_p99": [round(s.latency_ms_p99, 3) for s in samples],
            "client_cpu_ms_per_op": [round(c, 4) for c, _ in bench.cpu_ms[name]],
            "server_cpu_ms_per_op": [round(s, 4) for _, s in bench.cpu_ms[name]],
        }
        for name, samples in bench.samples.items()
    }


def main() -> None:
    args = parse_args()
    report = new_report("sdk_small", {**vars(args), "work_dir": str(args.work_dir)}, args.work_dir)
    with (
        RawServer() as raw_server,
        local_cluster(args.work_dir, 1, "small") as cluster,
        asyncio.Runner() as runner,
    ):
        bench = SmallBench(runner, cluster.metaservers[0], raw_server, args.duration_s)
        blocking = Client(cluster.meta_address)
        try:
            bench.preload()
            for repetition in range(args.repeat):
                bench.run_repetition(blocking)
                progress(f"repetition {repetition + 1}/{args.repeat}: {bench.latest()}")
        finally:
            blocking.close()
            bench.close()
    report.rows.extend(build_rows(bench))
    report.rows.extend(cpu_rows(bench))
    report.details["samples"] = latency_details(bench)
    report.details["commits_per_synced_write_at_64"] = bench.group_commit
    report.finish()


if __name__ == "__main__":
    main()
