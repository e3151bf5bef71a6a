"""Metadata throughput of one metaserver process against two, on the same machine.

One run starts two clusters of 64 shards side by side and keeps both up:
"one" is a single metaserver serving every shard, "two" is a primary
serving shards 0-31 and a secondary (`--primary ADDR --shards 32-63`)
serving 32-63, as `storectl cluster up --metaservers 2` starts them. Neither
has dataservers: objects of 1 KiB are inline, so a put is one commit and a
stat is one metadata lookup. Client processes (bench/metaclient.py) drive
the same load at each cluster in turn. The order of the two clusters
alternates between repetitions, so load from other work on the machine
hits both.

Each repetition measures, in order:

1. the raw grpcio baseline: unary calls of 128 bytes to bench/raw_server.py;
2. for each load, cluster "one" and cluster "two" (or the reverse):
   sdk-stat and sdk-put (AsyncClient tasks, which the SDK batches), and
   batch-stat and batch-put (the same batch calls sent directly, so the
   clients cost little CPU; see metaclient.py).

Each measurement warms up for `--warmup-s`, then counts the operations that
complete in the next `--duration-s`. At both ends of that window it reads
the CPU time of every process it started (utime + stime from /proc/PID/stat),
of each metaserver's main thread, which runs the event loop, and of the whole
machine (/proc/stat).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from benchlib import (
    BENCH_DIR,
    local_cluster,
    new_report,
    progress,
)
from metaclient import BUCKET
from metasamples import (
    CONFIGS,
    Sample,
    Samples,
    breakdown_table,
    build_rows,
    cpu_snapshot,
    sample_details,
    sample_of,
)
from rawgrpc import RawServer

from store import Client
from store._pb import meta_pb2, meta_pb2_grpc
from store.cluster import LocalCluster

SHARDS = 64
LOADS = ("sdk-stat", "sdk-put", "batch-stat", "batch-put")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of every figure")
    parser.add_argument("--duration-s", type=float, default=3.0, help="measured seconds per run")
    parser.add_argument("--warmup-s", type=float, default=1.0, help="unmeasured seconds first")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--tasks", type=int, default=512, help="AsyncClient tasks per client")
    parser.add_argument("--raw-tasks", type=int, default=64, help="raw unary tasks per client")
    parser.add_argument("--batch", type=int, default=128, help="operations per batch call")
    parser.add_argument(
        "--calls",
        type=int,
        default=4,
        help="batch calls in flight per client, split evenly over the metaservers",
    )
    parser.add_argument(
        "--sdk-calls-in-flight",
        type=int,
        default=None,
        help="an experiment: set the SDK's batch calls in flight per metaserver in the clients",
    )
    parser.add_argument("--preload", type=int, default=20_000, help="objects for the stats")
    parser.add_argument("--loads", default=",".join(LOADS), help="comma-separated loads")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after the measurements, run each load once more under py-spy (not counted)",
    )
    parser.add_argument("--rate-hz", type=int, default=200, help="py-spy samples per second")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="directory for the clusters' data (removed afterwards)",
    )
    args = parser.parse_args()
    args.native = False
    args.loads = [load for load in args.loads.split(",") if load]
    unknown = set(args.loads) - set(LOADS)
    if unknown:
        parser.error(f"unknown loads {sorted(unknown)}; choose from {', '.join(LOADS)}")
    return args


# Client processes.


class ClientProcess:
    """One bench/metaclient.py process, driven over its stdin and stdout."""

    def __init__(self, number: int) -> None:
        self.name = f"client-{number}"
        self.process = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "metaclient.py"), str(number)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, command: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} pid={self.pid} exited (code {self.process.poll()})")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"{self.name} pid={self.pid}: {reply['error']}")
        return reply

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(BrokenPipeError):
                self.send({"command": "exit"})
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def ask_all(clients: list[ClientProcess], commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for client, command in zip(clients, commands, strict=True):
        client.send(command)
    return [client.receive() for client in clients]


@contextlib.contextmanager
def client_processes(count: int) -> Iterator[list[ClientProcess]]:
    clients = [ClientProcess(number) for number in range(count)]
    try:
        yield clients
    finally:
        for client in clients:
            client.stop()


# Measurements.


@dataclass
class Bench:
    args: argparse.Namespace
    clients: list[ClientProcess]
    # Server pids by target, each named by process ("meta-0", "raw").
    servers: dict[str, dict[str, int]]
    # Metaserver addresses by target.
    metaservers: dict[str, list[str]]
    samples: Samples = field(default_factory=dict)

    def pids(self) -> dict[str, int]:
        """Return the pid of every process this run started, by "target/name" for servers."""
        named = {c.name: c.pid for c in self.clients}
        for target, servers in self.servers.items():
            named.update({f"{target}/{name}": pid for name, pid in servers.items()})
        named["parent"] = os.getpid()
        return named

    def measure(self, target: str, load: str, keep: bool = True) -> Sample:
        args = self.args
        start_s = time.monotonic() + args.warmup_s
        end_s = start_s + args.duration_s
        command = {
            "command": "run",
            "target": target,
            "load": load,
            "start_s": start_s,
            "end_s": end_s,
            "tasks": args.raw_tasks if load == "raw-echo" else args.tasks,
            "batch": args.batch,
            "calls": args.calls,
            "preloaded": args.preload,
            "sdk_calls_in_flight": args.sdk_calls_in_flight,
        }
        counters_before = commit_counters(self.metaservers.get(target, []))
        for client in self.clients:
            client.send(command)
        pids = self.pids()
        metaservers = {
            f"{target}/{name}": pid for name, pid in self.servers[target].items() if "meta" in name
        }
        time.sleep(max(0.0, start_s - time.monotonic()))
        before = cpu_snapshot(pids, metaservers)
        time.sleep(max(0.0, end_s - time.monotonic()))
        after = cpu_snapshot(pids, metaservers)
        replies = [client.receive() for client in self.clients]
        sample = sample_of(replies, before, after, target)
        counters_after = commit_counters(self.metaservers.get(target, []))
        sample.commits = counters_after[0] - counters_before[0]
        sample.sync_writes = counters_after[1] - counters_before[1]
        if keep:
            self.samples.setdefault((target, load), []).append(sample)
        return sample


def describe(target: str, load: str, sample: Sample) -> str:
    errors = f", {sample.errors} errors" if sample.errors else ""
    if sample.sync_writes:
        errors += f", {sample.commits / sample.sync_writes:.1f} commits per synced write"
    return (
        f"{load:10s} {target:3s} {sample.ops_per_s:9,.0f} ops/s{errors}; cores: servers "
        f"{sample.cores('server:'):.2f} (busiest main thread "
        f"{sample.busiest_main_thread_cores():.2f}), clients {sample.cores('client-'):.2f}, "
        f"machine {sample.machine_cpu_s / sample.elapsed_s:.2f}"
    )


def commit_counters(addresses: list[str]) -> tuple[int, int]:
    """Return the commits and synced write batches of every shard of these metaservers."""
    commits = sync_writes = 0
    for address in addresses:
        with grpc.insecure_channel(address) as channel:
            status = meta_pb2_grpc.MetaServiceStub(channel).GetStatus(
                meta_pb2.GetStatusRequest(), timeout=30
            )
        commits += sum(shard.commits for shard in status.shards)
        sync_writes += sum(shard.sync_writes for shard in status.shards)
    return commits, sync_writes


# Setup.


def preload(bench: Bench, cluster: LocalCluster, target: str) -> None:
    """Create the bucket and put the preloaded objects, split over the client processes."""
    client = Client(cluster.meta_address)
    try:
        client.create_bucket(BUCKET)
    finally:
        client.close()
    count = bench.args.preload
    share = -(-count // len(bench.clients))
    commands = [
        {"command": "preload", "target": target, "first": first, "count": min(share, count - first)}
        for first in range(0, count, share)
    ]
    ask_all(bench.clients[: len(commands)], commands)


def server_pids(cluster: LocalCluster) -> dict[str, int]:
    return {process.name: process.pid for process in cluster.metaservers + cluster.dataservers}


def run(args: argparse.Namespace, bench: Bench) -> None:
    for repetition in range(args.repeat):
        order = CONFIGS if repetition % 2 == 0 else CONFIGS[::-1]
        progress(f"repetition {repetition + 1}/{args.repeat}, order {' then '.join(order)}")
        progress(describe("raw", "raw-echo", bench.measure("raw", "raw-echo")))
        for load in args.loads:
            for target in order:
                progress(describe(target, load, bench.measure(target, load)))
    if args.profile:
        for load in args.loads:
            for target in CONFIGS:
                profile(bench, target, load)


def profile(bench: Bench, target: str, load: str) -> None:
    """Run one more window of `load` on `target` with py-spy sampling servers and clients."""
    # Imported here, so the measurements run even where the profiler's module does not load.
    from profile_sdk import PROFILE_DIR, Sampler, print_summary, summarize

    pids = {name: pid for name, pid in bench.servers[target].items()}
    pids.update({client.name: client.pid for client in bench.clients})
    PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    sampler = Sampler(pids, f"metaservers-{target}-{load}", bench.args)
    try:
        sample = bench.measure(target, load, keep=False)
    finally:
        paths = sampler.stop()
    summaries = {name: summarize(path) for name, path in paths.items()}
    print_summary(
        f"{load} on {target}: {describe(target, load, sample)}",
        sample.elapsed_s,
        bench.args.rate_hz,
        summaries,
    )


def main() -> None:
    args = parse_args()
    report = new_report(
        "metaservers", {**vars(args), "work_dir": str(args.work_dir)}, args.work_dir
    )
    with (
        RawServer() as raw,
        local_cluster(args.work_dir, 0, "meta1", shards=SHARDS, metaservers=1) as one,
        local_cluster(args.work_dir, 0, "meta2", shards=SHARDS, metaservers=2) as two,
        client_processes(args.clients) as clients,
    ):
        servers = {"one": server_pids(one), "two": server_pids(two), "raw": {"raw": raw.pid}}
        metaservers = {
            name: [m.address for m in c.metaservers] for name, c in (("one", one), ("two", two))
        }
        bench = Bench(args, clients, servers, metaservers)
        targets = {"one": one.meta_address, "two": two.meta_address, "raw": raw.address}
        ask_all(clients, [{"command": "connect", "targets": targets}] * len(clients))
        for name, cluster in (("one", one), ("two", two)):
            progress(f"preloading {args.preload} objects into cluster {name}")
            preload(bench, cluster, name)
        run(args, bench)
    report.rows.extend(build_rows(bench.samples, args.loads))
    report.details["samples"] = sample_details(bench.samples)
    report.details["breakdown"] = breakdown_table(bench.samples, args.loads)
    report.finish()
    print("\n" + report.details["breakdown"])


if __name__ == "__main__":
    main()
