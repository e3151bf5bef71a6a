"""Profile the SDK's large PUT and GET and the 4 KiB stat and commit paths with py-spy.

For each scenario, py-spy samples the client (this process), the metaserver
and every dataserver at once. The script prints each process's top functions
by own time (self) and by time including callees (total), as shares of that
process's samples. Raw collapsed stacks, which flamegraph tools read, go to
bench/results/profiles/. With --listing-dir it also profiles a listing of the
bucket that bench/listing.py loaded.

py-spy must be installed in the virtualenv (`.venv/bin/pip install py-spy`).
It reads the other processes' memory with ptrace, so it runs as the user
who started the cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from benchlib import (
    MIB,
    RESULTS_DIR,
    Row,
    cluster_pids,
    local_cluster,
    new_report,
    progress,
    run_async_load,
)
from listing import LARGE_BUCKET
from listing import SHARDS as LISTING_SHARDS
from metaload import MARKER_FILE as LISTING_MARKER_FILE

from store import AsyncClient
from store.cluster import LocalCluster

BUCKET = "bench-profile"
PROFILE_DIR = RESULTS_DIR / "profiles"
# The "total" lists keep only frames of the store and its libraries. Frames of the standard
# library, the benchmark and the entry points appear in almost every stack.
LIBRARY_FRAME = re.compile(r"(^|/)(store|metaserver|dataserver|grpc|google/protobuf)/")
ENTRY_POINT = re.compile(r"^(main|<module>) ")
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(:(?P<line>\d+))?\)$")
TOP_FUNCTIONS = 15


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="large object size in MiB")
    parser.add_argument("--dataservers", type=int, default=1, help="dataservers in the cluster")
    parser.add_argument(
        "--small-duration-s", type=float, default=8.0, help="seconds of each 4 KiB scenario"
    )
    parser.add_argument("--rate-hz", type=int, default=200, help="py-spy samples per second")
    parser.add_argument(
        "--native",
        action="store_true",
        help="also sample C frames; py-spy then pauses each process at every sample, "
        "which slows it down",
    )
    parser.add_argument(
        "--listing-dir",
        type=Path,
        default=None,
        help="also profile a listing of the cluster that bench/listing.py loaded here, "
        "such as bench/results/listing-cluster",
    )
    parser.add_argument(
        "--listing-keys", type=int, default=400_000, help="keys to list in that profile"
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="directory for the cluster's data (removed afterwards)",
    )
    return parser.parse_args()


def py_spy_path() -> str:
    path = Path(sys.executable).parent / "py-spy"
    found = str(path) if path.exists() else shutil.which("py-spy")
    if found is None:
        raise SystemExit("py-spy is not installed; run `.venv/bin/pip install py-spy==0.4.3`")
    return found


class Sampler:
    """py-spy record processes, one per sampled pid, stopped with SIGINT by pid."""

    def __init__(self, pids: dict[str, int], scenario: str, args: argparse.Namespace) -> None:
        self.outputs = {name: PROFILE_DIR / f"{scenario}-{name}.txt" for name in pids}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        for path in self.outputs.values():
            path.unlink(missing_ok=True)
        for name, pid in pids.items():
            command = [py_spy_path(), "record", "--pid", str(pid), "--rate", str(args.rate_hz)]
            command += ["--format", "raw", "--output", str(self.outputs[name])]
            # py-spy reads native stacks only while the process is paused at each sample.
            command.append("--native" if args.native else "--nonblocking")
            self.processes[name] = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        time.sleep(1.0)

    def stop(self) -> dict[str, Path]:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for name, process in self.processes.items():
            try:
                _, stderr = process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                _, stderr = process.communicate()
            if not self.outputs[name].exists():
                progress(f"py-spy failed to write a profile for {name}: {stderr.decode()[-500:]}")
        return {name: path for name, path in self.outputs.items() if path.exists()}


def short_frame(frame: str) -> tuple[str, bool]:
    """Return "function (file)" without the line number, and whether it counts in totals."""
    match = FRAME.match(frame)
    if match is None:
        return frame, False
    file = match["file"]
    for marker in ("site-packages/", "/lib/python3.11/", "/wt-bench/", "/main/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    function = match["function"]
    if function.startswith("0x"):
        # Native frames without symbols: count them per library instead of per address.
        function = "[unsymbolized native code]"
    name = f"{function} ({file})"
    return name, bool(LIBRARY_FRAME.search(match["file"])) and not ENTRY_POINT.match(name)


def summarize(path: Path) -> dict[str, Any]:
    """Return total samples and the top functions by self and by total samples."""
    self_counts: Counter[str] = Counter()
    total_counts: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = [short_frame(frame) for frame in stack.split(";")]
        self_counts[frames[-1][0]] += count
        for name in {name for name, counted in frames if counted}:
            total_counts[name] += count

    def top(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"function": name, "samples": count, "share": round(count / samples, 4)}
            for name, count in counter.most_common(TOP_FUNCTIONS)
        ]

    return {"samples": samples, "self": top(self_counts), "total": top(total_counts)}


def print_summary(scenario: str, wall_s: float, rate_hz: int, summaries: dict[str, Any]) -> None:
    print(f"\n### {scenario} ({wall_s:.1f}s)")
    for name, summary in summaries.items():
        samples = summary["samples"]
        busy = samples / (wall_s * rate_hz) if wall_s > 0 else 0.0
        print(f"\n{name}: {samples} samples, active threads about {busy:.2f} of wall time")
        for kind in ("self", "total"):
            print(f"  top by {kind}:")
            for entry in summary[kind][:10]:
                print(f"    {entry['share'] * 100:5.1f}%  {entry['function']}")


class Scenarios:
    """The profiled operations, on one AsyncClient of the cluster."""

    def __init__(self, client: AsyncClient, data: bytes, small_duration_s: float) -> None:
        self.client = client
        self.data = data
        self.small_duration_s = small_duration_s
        self.small = b"s" * 4096
        # Allocated once here so that the get_into profile shows the read, not the allocation.
        self.buffer = bytearray(len(data))

    async def prepare(self) -> None:
        await self.client.create_bucket(BUCKET)
        for index in range(100):
            await self.client.put(BUCKET, f"small-{index:03d}", self.small)

    async def put(self) -> None:
        await self.client.put(BUCKET, "large", self.data)

    async def get(self) -> None:
        got = await self.client.get(BUCKET, "large")
        if len(got) != len(self.data):
            raise RuntimeError(f"get returned {len(got)} bytes of {len(self.data)}")

    async def get_into(self) -> None:
        copied = await self.client.get_into(BUCKET, "large", self.buffer)
        if copied != len(self.data):
            raise RuntimeError(f"get_into returned {copied} bytes of {len(self.data)}")

    async def get_stream(self) -> None:
        received = 0
        async for piece in self.client.get_stream(BUCKET, "large"):
            received += len(piece)
        if received != len(self.data):
            raise RuntimeError(f"get_stream returned {received} bytes of {len(self.data)}")

    async def stat_16(self) -> None:
        async def stat(worker: int, index: int) -> object:
            return await self.client.stat(BUCKET, f"small-{(worker + index) % 100:03d}")

        sample = await run_async_load(stat, 16, self.small_duration_s)
        progress(f"stat, 16 tasks: {sample.ops_per_s:,.0f} ops/s while sampled")

    async def commit_64(self) -> None:
        async def put(worker: int, index: int) -> object:
            return await self.client.put(BUCKET, f"commit-{worker}-{index % 100}", self.small)

        sample = await run_async_load(put, 64, self.small_duration_s)
        progress(f"put 4 KiB, 64 tasks: {sample.ops_per_s:,.0f} ops/s while sampled")

    def all(self) -> dict[str, Callable[[], Coroutine[Any, Any, None]]]:
        return {
            "put_large": self.put,
            "get_large": self.get,
            "get_into_large": self.get_into,
            "get_stream_large": self.get_stream,
            "stat_16": self.stat_16,
            "commit_64": self.commit_64,
        }


def profile_all(
    runner: asyncio.Runner,
    scenarios: dict[str, Callable[[], Coroutine[Any, Any, None]]],
    pids: dict[str, int],
    args: argparse.Namespace,
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for scenario, action in scenarios.items():
        progress(f"profiling {scenario}")
        sampler = Sampler(pids, scenario, args)
        start_s = time.perf_counter()
        try:
            runner.run(action())
        finally:
            wall_s = time.perf_counter() - start_s
            outputs = sampler.stop()
        summaries = {name: summarize(path) for name, path in outputs.items()}
        print_summary(scenario, wall_s, args.rate_hz, summaries)
        results[scenario] = {"wall_s": wall_s, "processes": summaries}
    return results


def profile_listing(args: argparse.Namespace) -> dict[str, Any]:
    """Profile a listing of the large bucket that bench/listing.py loaded in --listing-dir."""
    if not (args.listing_dir / LISTING_MARKER_FILE).exists():
        raise SystemExit(
            f"--listing-dir {args.listing_dir} contains no {LISTING_MARKER_FILE}; "
            "load it first with bench/listing.py"
        )
    cluster = LocalCluster(args.listing_dir, dataservers=0, shards=LISTING_SHARDS)
    cluster.start()
    try:
        with asyncio.Runner() as runner:
            client = AsyncClient(cluster.meta_address)
            runner.run(client.connect())

            async def list_keys() -> None:
                keys = 0
                start_s = time.perf_counter()
                async for page in client.iter_pages(LARGE_BUCKET, max_keys=1000):
                    keys += len(page.entries)
                    if keys >= args.listing_keys:
                        break
                rate = keys / (time.perf_counter() - start_s)
                progress(f"listed {keys:,} keys, {rate:,.0f} keys/s while sampled")

            pids = {"client": os.getpid(), **cluster_pids(cluster)}
            try:
                return profile_all(runner, {"list_large": list_keys}, pids, args)
            finally:
                runner.run(client.close())
    finally:
        cluster.stop()


def main() -> None:
    args = parse_args()
    PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    report = new_report(
        "profile_sdk", {**vars(args), "work_dir": str(args.work_dir)}, args.work_dir
    )
    data = os.urandom(args.size_mib * MIB)
    with (
        local_cluster(args.work_dir, args.dataservers, "profile") as cluster,
        asyncio.Runner() as runner,
    ):
        client = AsyncClient(cluster.meta_address)
        runner.run(client.connect())
        scenarios = Scenarios(client, data, args.small_duration_s)
        runner.run(scenarios.prepare())
        pids = {"client": os.getpid(), **cluster_pids(cluster)}
        try:
            results = profile_all(runner, scenarios.all(), pids, args)
        finally:
            runner.run(client.close())
    if args.listing_dir is not None:
        results.update(profile_listing(args))
    report.details = results
    for scenario, result in results.items():
        report.add(Row(f"{scenario} wall time while sampled", "s", [result["wall_s"]]))
    report.finish()


if __name__ == "__main__":
    main()
