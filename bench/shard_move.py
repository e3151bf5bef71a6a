"""Shard moves: how long a move takes and how long writes to the shard wait.

Starts a cluster of two metaservers (16 shards, 8 each) and loads --keys
small inline objects into one shard through the real commit path. Then it
moves that shard from one metaserver to the other and back, --repeat times
each way, while writer tasks keep putting objects into it. Each move reports its total
time and the time its writes were held (freeze to new epoch).

The baseline, measured in the same run, is a plain copy of the shard's
RocksDB directory with the files fsynced: the disk work a move cannot avoid.
Put latency during the moves is shown beside the latency of the same writers
before the first move.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from benchlib import BENCH_DIR, Row, local_cluster, median, new_report, percentile, progress

from store import AsyncClient
from store.shardmap import shard_of

SHARDS = 16
MOVED_SHARD = 3
BUCKET = "moves"
VALUE_BYTES = 48
WRITERS = 16


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=200_000, help="objects in the moved shard")
    parser.add_argument("--repeat", type=int, default=3, help="moves in each direction")
    parser.add_argument("--loaders", type=int, default=2, help="loader processes")
    parser.add_argument(
        "--work-dir", type=Path, default=BENCH_DIR / "results", help="where the cluster runs"
    )
    return parser.parse_args()


def shard_keys(first: int, count: int) -> list[str]:
    """Return `count` keys of MOVED_SHARD, numbered from candidate `first` on."""
    found: list[str] = []
    number = first
    while len(found) < count:
        key = f"data/part-{number:09d}.json"
        if shard_of(BUCKET, key.encode(), SHARDS) == MOVED_SHARD:
            found.append(key)
        number += 1
    return found


async def _load(address: str, keys: list[str]) -> None:
    async with AsyncClient(address) as client:
        pending = iter(keys)

        async def worker() -> None:
            for key in pending:
                await client.put(BUCKET, key, key.encode().ljust(VALUE_BYTES, b"."))

        await asyncio.gather(*(worker() for _ in range(64)))


def load(address: str, first: int, count: int) -> int:
    asyncio.run(_load(address, shard_keys(first, count)))
    return count


def copy_baseline_s(source: Path, scratch: Path) -> float:
    """Copy a shard directory and fsync every file; return the seconds taken."""
    shutil.rmtree(scratch, ignore_errors=True)
    started_s = time.perf_counter()
    shutil.copytree(source, scratch)
    for path in scratch.iterdir():
        with path.open("rb") as file:
            os.fsync(file.fileno())
    elapsed_s = time.perf_counter() - started_s
    shutil.rmtree(scratch)
    return elapsed_s


async def moves_under_load(address: str, owners: list[str], repeat: int) -> dict[str, list[float]]:
    """Move MOVED_SHARD back and forth under writers; return timings and put latencies."""
    figures: dict[str, list[float]] = {"total_ms": [], "frozen_ms": [], "mb_s": [], "mb": []}
    latencies: dict[str, list[float]] = {"before": [], "during": []}
    phase = "before"
    keys = shard_keys(10**8, 20_000)
    async with AsyncClient(address, timeout_s=120) as client:
        stop = asyncio.Event()

        async def writer(index: int) -> None:
            for key in keys[index::WRITERS]:
                if stop.is_set():
                    return
                started_s = time.perf_counter()
                await client.put(BUCKET, key, b"x" * VALUE_BYTES)
                latencies[phase].append(time.perf_counter() - started_s)

        tasks = [asyncio.create_task(writer(i)) for i in range(WRITERS)]
        await asyncio.sleep(3.0)
        phase = "during"
        for number in range(2 * repeat):
            reply = await client.move_shard(MOVED_SHARD, owners[(number + 1) % 2])
            figures["total_ms"].append(reply.total_ms)
            figures["frozen_ms"].append(reply.frozen_ms)
            figures["mb"].append(reply.copied_bytes / 1e6)
            figures["mb_s"].append(reply.copied_bytes / 1e6 / max(reply.total_ms / 1000, 1e-3))
            progress(
                f"move {number + 1}: {reply.copied_bytes / 1e6:.1f} MB, total {reply.total_ms} "
                f"ms, writes held {reply.frozen_ms} ms"
            )
            await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*tasks)
    figures["put_before_ms"] = [s * 1000 for s in latencies["before"]]
    figures["put_during_ms"] = [s * 1000 for s in latencies["during"]]
    return figures


def main() -> None:
    args = parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    report = new_report("shard-move", vars(args) | {"shards": SHARDS}, args.work_dir)
    with local_cluster(args.work_dir, 1, "shard-move", metaservers=2, shards=SHARDS) as cluster:
        address = cluster.meta_address
        asyncio.run(_create_bucket(address))
        progress(f"loading {args.keys:,} objects into shard {MOVED_SHARD}")
        started_s = time.perf_counter()
        per_loader = args.keys // args.loaders
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.loaders, mp_context=context) as pool:
            loaded = sum(
                pool.map(
                    load,
                    [address] * args.loaders,
                    [i * 10**7 for i in range(args.loaders)],
                    [per_loader] * args.loaders,
                )
            )
        progress(f"loaded {loaded:,} objects in {time.perf_counter() - started_s:.0f}s")
        owners = [process.server_id for process in cluster.metaservers]
        source = cluster.metaservers[0].directory / "shards" / f"{MOVED_SHARD:04d}"
        baseline_s = [copy_baseline_s(source, args.work_dir / "copy-baseline") for _ in range(3)]
        figures = asyncio.run(moves_under_load(address, owners, args.repeat))

    baseline_ms = [s * 1000 for s in baseline_s]
    report.add(
        Row(
            f"move of a shard of {loaded:,} objects ({median(figures['mb']):.1f} MB copied)",
            "ms",
            figures["total_ms"],
            "copy + fsync of its files",
            baseline_ms,
        )
    )
    report.add(Row("writes held during the move", "ms", figures["frozen_ms"]))
    report.add(Row("move copy rate", "MB/s", figures["mb_s"]))
    for label, fraction in (("p50", 0.5), ("p99", 0.99), ("max", 1.0)):
        report.add(
            Row(
                f"put latency {label} while moving",
                "ms",
                [percentile(figures["put_during_ms"], fraction)],
                "same writers before the moves",
                [percentile(figures["put_before_ms"], fraction)],
            )
        )
    report.details["put_count_during"] = len(figures["put_during_ms"])
    report.details["median_move_ms"] = median(figures["total_ms"])
    report.finish()


async def _create_bucket(address: str) -> None:
    async with AsyncClient(address) as client:
        await client.create_bucket(BUCKET)


if __name__ == "__main__":
    main()
