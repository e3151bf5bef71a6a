"""Aggregate read throughput with 1, 2, 4 and 8 dataserver hosts under the same bandwidth cap.

Each dataserver, and the metaserver, runs in a network namespace of its own
(store.netns.NetnsCluster) whose link `tc` caps at --rate-mbit each way. The
cap is low enough that the links, not the two CPUs, should limit the reads,
so N hosts should read N times as fast as one. The readers are client
processes (`python -m store.loadgen read`) in N client hosts, namespaces of
their own capped at --client-rate-mbit (10x the dataserver cap by default, so
the clients' links never limit the reads).

Every object is in a rep:1 bucket and has --object-chunks chunks. Placement
puts consecutive stripes on consecutive dataservers of the object's ranking,
so an object of 8 chunks puts exactly 8/N chunks on each of N = 1, 2, 4 or 8
hosts. An EC bucket cannot run on 1 host, and more copies would only let
the client choose which host to read.

Each run streams objects for --duration-s seconds from --readers-per-host
reader processes per host, spread over the client hosts, each a store.Client
of its own. The readers start once per host count and serve every run. Only
the bytes that arrive after the first --warmup-s seconds count. Every object
read to its end is checked against the BLAKE2b digest of what was written.

Needs root, `ip` and `tc`; elsewhere it exits with the harness's reason.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import (
    MIB,
    REPO_DIR,
    Row,
    Target,
    median,
    new_report,
    process_cpu_s,
    progress,
)

import store
from store.loadgen import digest, object_data
from store.netns import ClientHost, NetnsCluster, NetnsUnavailable, require_netns

BUCKET = "scaling"
DEFAULT_HOSTS = "1,2,4,8"
DEFAULT_PLOT = REPO_DIR / "docs" / "scaling-read.png"
MB = 1_000_000
# Each read() call requests one chunk, so the byte count advances about once per chunk.
PIECE_BYTES = 1 * MIB
TARGET_RATIO = 0.9
# How long the reader processes of one host count may take to start and connect.
READY_TIMEOUT_S = 120.0
# A failed chunk read that the SDK retried, as the readers log it.
RETRY_LOG_TEXT = "chunk read failed"


@dataclass
class ReadRun:
    """One timed read run: the aggregate rate and the CPU that the processes used."""

    mb_s: float
    counted_bytes: int
    counted_s: float
    objects_verified: int
    client_cpu_s: float
    server_cpu_s: float
    retried_reads: int


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure aggregate read throughput with 1 to 8 dataserver hosts (root only)."
    )
    parser.add_argument(
        "--hosts", default=DEFAULT_HOSTS, help="comma-separated dataserver host counts"
    )
    parser.add_argument("--rate-mbit", type=int, default=50, help="cap of every host, Mbit/s")
    parser.add_argument("--repeat", type=int, default=3, help="read runs per host count")
    parser.add_argument("--duration-s", type=float, default=15.0, help="length of one read run")
    parser.add_argument(
        "--warmup-s", type=float, default=3.0, help="seconds at the start of a run not counted"
    )
    parser.add_argument(
        "--readers-per-host", type=int, default=4, help="reader processes per dataserver host"
    )
    parser.add_argument(
        "--client-rate-mbit",
        type=int,
        default=None,
        help="cap of every client host, Mbit/s (default: 10x --rate-mbit; 0: none)",
    )
    parser.add_argument(
        "--window-chunks", type=int, default=2, help="stripes each reader keeps in flight"
    )
    parser.add_argument("--objects-per-host", type=int, default=4, help="objects per host")
    parser.add_argument("--object-chunks", type=int, default=8, help="chunks in each object")
    parser.add_argument(
        "--chunk-size-bytes", type=int, default=1 * MIB, help="chunk size of the metaserver"
    )
    parser.add_argument("--plot", type=Path, default=DEFAULT_PLOT, help="PNG file to write")
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="parent of the cluster directories"
    )
    args = parser.parse_args(argv)

    args.host_counts = [int(part) for part in args.hosts.split(",")]
    if args.host_counts[0] != 1:
        parser.error(f"--hosts must start with 1, the baseline of linear scaling: {args.hosts}")
    if args.warmup_s >= args.duration_s:
        parser.error(f"--warmup-s {args.warmup_s} must be less than --duration-s")
    if args.client_rate_mbit is None:
        args.client_rate_mbit = 10 * args.rate_mbit
    return args


def put_objects(client: store.Client, count: int, object_bytes: int, seed: int) -> dict[str, str]:
    """Write `count` objects of SHAKE-256 bytes; return the BLAKE2b hex digest of each by key."""
    client.create_bucket(BUCKET, scheme="rep:1")
    digests = {}
    for index in range(count):
        key = f"object-{index:03d}"
        data = object_data(seed, key, object_bytes)
        client.put(BUCKET, key, data)
        digests[key] = digest(data)
    return digests


def server_cpu_s(cluster: NetnsCluster) -> float:
    # `ip netns exec` replaces itself with the server, so the pid is the server's.
    return sum(process_cpu_s(p.pid) for p in cluster.metaservers + cluster.dataservers)


@dataclass
class Reader:
    """One reader process in a client host."""

    host: ClientHost
    popen: subprocess.Popen[str]

    def read_line(self, timeout_s: float) -> dict[str, Any]:
        """Return the next JSON line the reader prints; fail when it exits or is late."""
        assert self.popen.stdout is not None
        ready, _, _ = select.select([self.popen.stdout], [], [], timeout_s)
        line = self.popen.stdout.readline() if ready else ""
        if not line:
            log = self.host.log_path(self.popen)
            raise RuntimeError(
                f"reader pid={self.popen.pid} in {self.host.name} printed nothing within "
                f"{timeout_s:.0f}s (exit status {self.popen.poll()}); see {log}"
            )
        result: dict[str, Any] = json.loads(line)
        return result

    def retried_reads(self) -> int:
        text = self.host.log_path(self.popen).read_text(errors="replace")
        return text.count(RETRY_LOG_TEXT)


def start_readers(
    cluster: NetnsCluster,
    clients: list[ClientHost],
    digests_path: Path,
    readers: int,
    args: argparse.Namespace,
) -> list[Reader]:
    """Start `readers` reader processes over the client hosts and wait until all connected."""
    started = []
    for number in range(readers):
        host = clients[number % len(clients)]
        argv = host.python("-m", "store.loadgen", "read", "--meta", cluster.meta_address)
        argv += ["--bucket", BUCKET, "--digests", str(digests_path)]
        # Each reader starts at another object, so the readers do not move in step.
        argv += ["--shift", str(number), "--window-chunks", str(args.window_chunks)]
        argv += ["--piece-bytes", str(PIECE_BYTES), "--timeout-s", "60"]
        started.append(Reader(host, host.start(argv, stdin=subprocess.PIPE)))
    deadline_s = time.monotonic() + READY_TIMEOUT_S
    for reader in started:
        reader.read_line(max(0.0, deadline_s - time.monotonic()))
    return started


def measure_read(cluster: NetnsCluster, readers: list[Reader], args: argparse.Namespace) -> ReadRun:
    """Let every reader stream for --duration-s and count the bytes after the warm-up."""
    retried_before = sum(reader.retried_reads() for reader in readers)
    start_s = time.monotonic()
    warm_at, end_at = start_s + args.warmup_s, start_s + args.duration_s
    window = json.dumps({"warm_at": warm_at, "end_at": end_at}) + "\n"
    for reader in readers:
        assert reader.popen.stdin is not None
        reader.popen.stdin.write(window)
        reader.popen.stdin.flush()

    time.sleep(max(0.0, warm_at - time.monotonic()))
    pids = [reader.popen.pid for reader in readers]
    client_cpu_start = sum(process_cpu_s(pid) for pid in pids)
    server_cpu_start = server_cpu_s(cluster)
    time.sleep(max(0.0, end_at - time.monotonic()))
    client_cpu = sum(process_cpu_s(pid) for pid in pids) - client_cpu_start
    server_cpu = server_cpu_s(cluster) - server_cpu_start

    # A reader finishes the read() call in flight at end_at, at most one chunk.
    results = [reader.read_line(60.0) for reader in readers]
    errors = [error for result in results for error in result["errors"]]
    if errors:
        raise RuntimeError(f"{len(errors)} reads returned other bytes: {errors[0]}")
    counted_bytes = sum(int(result["counted_bytes"]) for result in results)
    counted_s = end_at - warm_at
    return ReadRun(
        mb_s=counted_bytes / counted_s / MB,
        counted_bytes=counted_bytes,
        counted_s=counted_s,
        objects_verified=sum(int(result["objects_verified"]) for result in results),
        client_cpu_s=client_cpu,
        server_cpu_s=server_cpu,
        retried_reads=sum(reader.retried_reads() for reader in readers) - retried_before,
    )


def chunk_counts(cluster: NetnsCluster) -> dict[str, int]:
    """Return the number of chunk files on each dataserver, by process name."""
    return {
        p.name: sum(1 for path in (p.directory / "chunks").glob("*/*") if path.is_file())
        for p in cluster.dataservers
    }


def measure_hosts(hosts: int, work_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Start a cluster of `hosts` dataserver hosts, write the objects, and time --repeat runs."""
    root = Path(tempfile.mkdtemp(prefix=f"store-scaling-{hosts}-", dir=work_dir))
    meta_args = ["--chunk-size-bytes", str(args.chunk_size_bytes)]
    progress(f"starting {hosts} dataserver hosts at {args.rate_mbit} Mbit/s in {root}")
    try:
        with NetnsCluster(
            root, dataservers=hosts, rate_mbit=args.rate_mbit, meta_args=meta_args
        ) as cluster:
            cluster.start()
            object_bytes = args.object_chunks * args.chunk_size_bytes
            count = args.objects_per_host * hosts
            start_s = time.monotonic()
            with store.Client(cluster.meta_address, timeout_s=120) as client:
                digests = put_objects(client, count, object_bytes, seed=hosts)
            put_s = time.monotonic() - start_s
            spread = chunk_counts(cluster)
            progress(f"wrote {count} objects of {object_bytes} bytes in {put_s:.1f}s: {spread}")

            digests_path = root / "digests.json"
            digests_path.write_text(json.dumps(digests))
            clients = [
                cluster.add_client_host(rate_mbit=args.client_rate_mbit) for _ in range(hosts)
            ]
            readers = args.readers_per_host * hosts
            start_s = time.monotonic()
            started = start_readers(cluster, clients, digests_path, readers, args)
            progress(
                f"{readers} reader processes in {len(clients)} client hosts connected in "
                f"{time.monotonic() - start_s:.1f}s"
            )
            runs = []
            for number in range(args.repeat):
                run = measure_read(cluster, started, args)
                progress(
                    f"{hosts} hosts, run {number + 1}/{args.repeat}: {run.mb_s:.2f} MB/s, "
                    f"{run.objects_verified} objects verified, {run.retried_reads} chunk reads "
                    f"retried, client CPU {run.client_cpu_s:.1f}s and servers "
                    f"{run.server_cpu_s:.1f}s in {run.counted_s:.1f}s"
                )
                runs.append(run)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "hosts": hosts,
        "readers": readers,
        "client_hosts": hosts,
        "objects": count,
        "object_bytes": object_bytes,
        "chunks_per_dataserver": spread,
        "put_s": round(put_s, 2),
        "runs": [run.__dict__ for run in runs],
        "mb_s": [run.mb_s for run in runs],
    }


def save_plot(path: Path, results: list[dict[str, Any]], rate_mbit: int) -> None:
    """Plot the median rate of each host count beside linear scaling and the sum of the caps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    hosts = [result["hosts"] for result in results]
    measured = [median(result["mb_s"]) for result in results]
    linear = [measured[0] * count for count in hosts]
    caps = [rate_mbit * count / 8 for count in hosts]

    figure, axes = plt.subplots(figsize=(6, 4), dpi=120)
    axes.plot(hosts, caps, ":", color="grey", label=f"sum of the caps ({rate_mbit} Mbit/s each)")
    axes.plot(hosts, linear, "--", color="tab:orange", label="linear (N x 1 host)")
    axes.plot(hosts, measured, "o-", color="tab:blue", label="measured (median)")
    for count, value in zip(hosts, measured, strict=True):
        axes.annotate(f"{value:.1f}", (count, value), textcoords="offset points", xytext=(6, -12))
    axes.set_xscale("log", base=2)
    axes.set_yscale("log", base=2)
    axes.set_xticks(hosts, [str(count) for count in hosts])
    axes.yaxis.set_major_formatter(ScalarFormatter())
    axes.set_xlabel("dataserver hosts")
    axes.set_ylabel("aggregate read throughput, MB/s")
    axes.set_title("Read scaling, rep:1, one tc cap per host")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def print_table(results: list[dict[str, Any]], rate_mbit: int) -> None:
    one_host = median(results[0]["mb_s"])
    if one_host <= 0:
        print("\n1 host read nothing after the warm-up, so there is no linear baseline")
        return
    print("\n| hosts | readers | runs, MB/s | median, MB/s | linear, MB/s | ratio | sum of caps |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for result in results:
        hosts = result["hosts"]
        value = median(result["mb_s"])
        runs = ", ".join(f"{rate:.2f}" for rate in result["mb_s"])
        print(
            f"| {hosts} | {result['readers']} | {runs} | {value:.2f} | {one_host * hosts:.2f} | "
            f"{value / (one_host * hosts):.2f}x | {rate_mbit * hosts / 8:.2f} |"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        require_netns()
    except NetnsUnavailable as error:
        print(f"scaling: {error}", file=sys.stderr)
        return 2

    work_dir = args.work_dir or Path(tempfile.gettempdir())
    settings = {key: value for key, value in vars(args).items() if key != "plot"}
    settings["plot"] = str(args.plot)
    settings["scheme"] = "rep:1"
    report = new_report("scaling", settings, work_dir)

    results = [measure_hosts(hosts, work_dir, args) for hosts in args.host_counts]
    one_host = median(results[0]["mb_s"])
    for result in results:
        hosts = result["hosts"]
        report.add(
            Row(
                figure=f"read, {hosts} dataserver hosts",
                unit="MB/s",
                values=result["mb_s"],
                baseline=f"linear ({hosts} x 1 host)",
                baseline_values=[one_host * hosts],
                target=Target("min_ratio", TARGET_RATIO) if hosts > 1 else None,
                note=f"{result['readers']} readers, {result['objects']} objects",
            )
        )
    report.details["hosts"] = results
    report.details["cpu_count"] = os.cpu_count()
    save_plot(args.plot, results, args.rate_mbit)
    print_table(results, args.rate_mbit)
    report.finish()
    print(f"plot written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
