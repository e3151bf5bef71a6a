"""The S3 gateway beside Ceph RGW, Swift's s3api and a null server, in one run.

    .venv/bin/python bench/s3_peers.py [--repeat 2] [--servers LIST]

LIST defaults to store-w1,store-w1-rep1,ceph,swift,null.

Each server runs alone, so none shares the two CPUs with another: this script
starts it, runs s3bench.py at concurrency 1 and then 8 against it, and stops it
before the next one starts. With --repeat N the whole round runs N times, so the
servers take turns and see the same drifting background load.

It prints the median of each phase at each concurrency with the ratios ours/Ceph,
ours/Swift and ours/null. "Ours" is the first store-* server in --servers, and
every store-* server also gets its ratio to Ceph. Then it checks the targets at
concurrency 8 for every store-* server. Every phase must reach at least Ceph
RGW's figure, and the 4 KiB PUT, GET and HEAD and the listings at least 3 times
Swift's.

Servers:
  store-wN  a fresh `storectl cluster up --detach --s3-workers N` (4 dataservers);
            s3bench.py creates its bucket, which takes the cluster's default
            scheme (ec:2+1 with 4 dataservers: any one dataserver may fail)
  store-wN-repR  the same, with the bucket created beforehand as rep:R. With
            rep:1 the store keeps one copy, as the Ceph and Swift peers do
            (pools of size 1, one replica), so all three do the same work per byte
  null      bench/s3_null_server.py: the boto3 client's ceiling on this machine
  ceph      Ceph RGW 16.2, started and stopped with PEERS/ceph/start.sh and stop.sh
  swift     OpenStack Swift 2.30 s3api, with PEERS/swift/start.sh and stop.sh

Every s3bench.py run writes its JSON to bench/results/s3_peers/, and the summary
goes to bench/results/s3_peers.json. The server-side CPU seconds of each run (the
server's processes and their children) are recorded beside the client's.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from benchlib import (
    REPO_DIR,
    RESULTS_DIR,
    describe_machine,
    machine_info,
    process_cpu_s,
    progress,
    utc_now,
)

DEFAULT_S3BENCH = REPO_DIR.parent / "shared" / "bench" / "s3bench.py"
DEFAULT_PEERS = REPO_DIR.parent / "shared" / "peers"
RUNS_DIR = RESULTS_DIR / "s3_peers"
NULL_LISTEN = "127.0.0.1:18380"
CONCURRENCIES = (1, 8)
# Seconds one s3bench.py run may take before it is stopped.
RUN_TIMEOUT_S = 900
# s3bench.py's phase sizes. With the full sizes, one run against the slowest server
# (Swift) at concurrency 1 takes about 90 s. The quick sizes are for a smoke run.
SIZE_FLAGS = (
    "--large-count",
    "--count-1m",
    "--count-4k",
    "--list-keys",
    "--list-passes",
    "--range-count",
    "--mpu-size",
    "--part-size",
)
FULL_SIZES = (4, 100, 1000, 5000, 4, 300, 128 << 20, 16 << 20)
QUICK_SIZES = (1, 20, 100, 1000, 1, 50, 32 << 20, 16 << 20)
# Phases whose figure needs at least 3 times Swift's, besides at least Ceph RGW's.
THREE_TIMES_SWIFT = ("put-4k", "get-4k", "head-4k", "list", "list-delim")
SKIPPED_PHASES = ("list-populate",)
# Phases reported in operations per second rather than MiB/s.
OPS_PHASES = ("put-4k", "get-4k", "head-4k", "range-get")


@dataclass(frozen=True)
class Endpoint:
    url: str
    access_key: str
    secret_key: str
    # The server's top-level processes; their children count toward its CPU time too.
    pids: tuple[int, ...]
    # A bucket made beforehand for s3bench.py to use; None lets it create its own.
    bucket: str | None = None


class Server(Protocol):
    @property
    def name(self) -> str: ...

    def start(self) -> Endpoint: ...

    def stop(self) -> None: ...


# The servers.


class StoreServer:
    """A fresh local cluster with its S3 gateway, through `storectl cluster up`."""

    def __init__(self, workers: int, replicas: int | None, work_dir: Path) -> None:
        self.name = f"store-w{workers}" + (f"-rep{replicas}" if replicas else "")
        self.workers = workers
        self.scheme = f"rep:{replicas}" if replicas else None
        self.directory = work_dir / f"cluster-{self.name}"

    def start(self) -> Endpoint:
        shutil.rmtree(self.directory, ignore_errors=True)
        storectl = str(Path(sys.executable).parent / "storectl")
        command = [storectl, "cluster", "up", "--dir", str(self.directory), "--detach"]
        command += ["--s3-workers", str(self.workers)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, timeout=120)
        record = json.loads((self.directory / "cluster.json").read_text())
        pids = [server["pid"] for server in record["metaservers"] + record["dataservers"]]
        s3 = record["s3"]
        bucket = None
        if self.scheme is not None:
            bucket = f"s3peers-{self.scheme.replace(':', '')}"
            command = [storectl, "bucket", "create", bucket, "--scheme", self.scheme]
            command += ["--dir", str(self.directory)]
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, timeout=60)
        return Endpoint(
            s3["endpoint"], s3["access_key"], s3["secret_key"], (s3["pid"], *pids), bucket
        )

    def stop(self) -> None:
        if not (self.directory / "cluster.json").exists():
            return  # cluster up failed and stopped what it had started
        storectl = str(Path(sys.executable).parent / "storectl")
        command = [storectl, "cluster", "down", "--dir", str(self.directory)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, timeout=120)
        shutil.rmtree(self.directory, ignore_errors=True)


class NullServer:
    """bench/s3_null_server.py in its own process."""

    name = "null"

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Endpoint:
        script = str(Path(__file__).with_name("s3_null_server.py"))
        self.process = subprocess.Popen(
            [sys.executable, script, "--listen", NULL_LISTEN], stdout=subprocess.PIPE
        )
        assert self.process.stdout is not None
        self.process.stdout.readline()  # "listening on ..." once it serves
        return Endpoint(f"http://{NULL_LISTEN}", "null", "null", (self.process.pid,))

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None


@dataclass(frozen=True)
class PeerServer:
    """A production S3 server, started and stopped by the scripts in its peer directory."""

    name: str
    directory: Path
    url: str
    access_key: str
    secret_key: str
    # Directory of the pid files that start.sh writes for the peer's daemons.
    pid_dir: Path

    def start(self) -> Endpoint:
        self.run_script("start.sh")
        pids = tuple(int(path.read_text()) for path in sorted(self.pid_dir.glob("*.pid")))
        return Endpoint(self.url, self.access_key, self.secret_key, pids)

    def stop(self) -> None:
        self.run_script("stop.sh")

    def run_script(self, name: str) -> None:
        script = str(self.directory / name)
        subprocess.run(["bash", script], check=True, stdout=subprocess.DEVNULL, timeout=300)


def make_server(name: str, work_dir: Path, peers_dir: Path) -> Server:
    store = re.fullmatch(r"store-w(\d+)(?:-rep(\d+))?", name)
    if store is not None:
        replicas = int(store[2]) if store[2] else None
        return StoreServer(int(store[1]), replicas, work_dir)
    if name == "null":
        return NullServer()
    if name == "ceph":
        keys = ("CEPHPEERTESTACCESS01", "cephPeerTestSecretKey0000000000000000001")
        run_dir = Path("/srv/ceph-peer/run")
        return PeerServer("ceph", peers_dir / "ceph", "http://127.0.0.1:18280", *keys, run_dir)
    if name == "swift":
        run_dir = Path("/srv/swift-peer/run")
        url = "http://127.0.0.1:18080"
        return PeerServer("swift", peers_dir / "swift", url, "test:tester", "testing", run_dir)
    raise SystemExit(f"unknown server {name!r}; use store-wN, store-wN-repR, null, ceph or swift")


# CPU time of a process tree.


def descendants(pid: int) -> Iterator[int]:
    """Yield `pid` and every live process below it."""
    yield pid
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return
    for task in tasks:
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            yield from descendants(int(child))


def tree_cpu_s(pids: tuple[int, ...]) -> dict[int, float]:
    """Return the CPU seconds of every live process in the trees under `pids`."""
    seconds = {}
    for top in pids:
        for pid in descendants(top):
            try:
                seconds[pid] = process_cpu_s(pid)
            except OSError:
                continue
    return seconds


def cpu_used_s(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(value - before.get(pid, 0.0) for pid, value in after.items())


# Runs.


@dataclass
class Results:
    # (server, concurrency, phase) -> the phase's figure in each repetition.
    figures: dict[tuple[str, int, str], list[float]] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)

    def add_run(self, server: str, concurrency: int, report: dict[str, Any]) -> None:
        for phase in report["phases"]:
            value, unit = phase_figure(phase)
            if value is None or phase["phase"] in SKIPPED_PHASES:
                continue
            self.figures.setdefault((server, concurrency, phase["phase"]), []).append(value)
            self.units[phase["phase"]] = unit

    def median(self, server: str, concurrency: int, phase: str) -> float | None:
        values = self.figures.get((server, concurrency, phase))
        return statistics.median(values) if values else None


def phase_figure(phase: dict[str, Any]) -> tuple[float | None, str]:
    """Return a phase's throughput: ops/s for small objects, keys/s for listings and
    deletes, MiB/s for the rest."""
    name = phase["phase"]
    if phase.get("errors"):
        return None, ""
    if phase.get("unit") == "keys":
        return phase.get("units_s"), "keys/s"
    if name in OPS_PHASES:
        return phase.get("ops_s"), "ops/s"
    return phase.get("mib_s"), "MiB/s"


def s3bench_size_args(quick: bool) -> list[str]:
    sizes = QUICK_SIZES if quick else FULL_SIZES
    arguments = []
    for flag, size in zip(SIZE_FLAGS, sizes, strict=True):
        arguments += [flag, str(size)]
    return arguments


def run_s3bench(
    args: argparse.Namespace, endpoint: Endpoint, concurrency: int, output: Path
) -> dict[str, Any]:
    command = [
        sys.executable,
        str(args.s3bench),
        "--endpoint", endpoint.url,
        "--access-key", endpoint.access_key,
        "--secret-key", endpoint.secret_key,
        "--concurrency", str(concurrency),
        "--seconds", str(args.phase_s),
        "--total-seconds", str(RUN_TIMEOUT_S - 60),
        "--json", str(output),
        *s3bench_size_args(args.quick),
    ]  # fmt: skip
    if endpoint.bucket is not None:
        command += ["--bucket", endpoint.bucket]
    with output.with_suffix(".log").open("w") as log_file:
        completed = subprocess.run(
            command, stdout=log_file, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT_S
        )
    if not output.exists():
        raise RuntimeError(
            f"s3bench exited with {completed.returncode} and wrote no JSON; "
            f"see {output.with_suffix('.log')}"
        )
    report: dict[str, Any] = json.loads(output.read_text())
    report["exit_code"] = completed.returncode
    return report


def measure_server(
    server: Server, args: argparse.Namespace, repetition: int, results: Results
) -> None:
    """Start the server, run s3bench.py at each concurrency, and stop it, even on failure."""
    progress(f"starting {server.name}")
    try:
        endpoint = server.start()
        for concurrency in CONCURRENCIES:
            measure_once(server.name, endpoint, concurrency, args, repetition, results)
    finally:
        progress(f"stopping {server.name}")
        server.stop()


def measure_once(
    name: str,
    endpoint: Endpoint,
    concurrency: int,
    args: argparse.Namespace,
    repetition: int,
    results: Results,
) -> None:
    output = RUNS_DIR / f"{name}-c{concurrency}-r{repetition}.json"
    cpu_before = tree_cpu_s(endpoint.pids)
    report = run_s3bench(args, endpoint, concurrency, output)
    server_cpu_s = cpu_used_s(cpu_before, tree_cpu_s(endpoint.pids))
    client_cpu_s = sum(phase.get("client_cpu_s", 0.0) for phase in report["phases"])
    wall_s = sum(phase.get("wall_s", 0.0) for phase in report["phases"])
    results.add_run(name, concurrency, report)
    results.runs.append(
        {
            "server": name,
            "concurrency": concurrency,
            "repetition": repetition,
            "json": str(output),
            "exit_code": report["exit_code"],
            "errored_phases": report["errored_phases"],
            "truncated_phases": report["truncated_phases"],
            "server_cpu_s": round(server_cpu_s, 2),
            "client_cpu_s": round(client_cpu_s, 2),
            "phases_wall_s": round(wall_s, 2),
        }
    )
    progress(
        f"{name} c={concurrency}: exit {report['exit_code']}, phases {wall_s:.0f} s,"
        f" server CPU {server_cpu_s:.0f} s, client CPU {client_cpu_s:.0f} s,"
        f" errored {report['errored_phases'] or 'none'}"
    )


# The summary.


def format_value(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def format_ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or not denominator:
        return "-"
    return f"{numerator / denominator:.2f}"


def phases_in_order(results: Results) -> list[str]:
    seen: list[str] = []
    for _server, _concurrency, phase in results.figures:
        if phase not in seen:
            seen.append(phase)
    return seen


def summary_table(results: Results, servers: list[str], ours: str) -> str:
    """One row per phase and concurrency: each server's median, then each store
    server's ratio to Ceph, and ours to Swift and to the null server."""
    stores = [name for name in servers if name.startswith("store-")]
    ratios = [(name, "ceph") for name in stores] + [(ours, "swift"), (ours, "null")]
    header = ["phase", "c", "unit", *servers, *(f"{name}/{peer}" for name, peer in ratios)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for phase in phases_in_order(results):
        for concurrency in CONCURRENCIES:
            cells = [phase, str(concurrency), results.units.get(phase, "")]
            cells += [format_value(results.median(name, concurrency, phase)) for name in servers]
            for name, peer in ratios:
                cells.append(
                    format_ratio(
                        results.median(name, concurrency, phase),
                        results.median(peer, concurrency, phase),
                    )
                )
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def target_table(results: Results, stores: list[str], concurrency: int = 8) -> str:
    """Return the targets at concurrency 8 as a table: each store server's figure and
    whether it meets the target."""
    header = ["phase", "target", *(f"{name} | met" for name in stores)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * (2 + 2 * len(stores))]
    for phase in phases_in_order(results):
        ceph = results.median("ceph", concurrency, phase)
        swift = results.median("swift", concurrency, phase)
        goals = [("Ceph", ceph)]
        if phase in THREE_TIMES_SWIFT and swift is not None:
            goals.append(("3x Swift", 3 * swift))
        for label, goal in goals:
            if goal is None:
                continue
            cells = [phase, f">= {format_value(goal)} ({label})"]
            for name in stores:
                value = results.median(name, concurrency, phase)
                met = value is not None and value >= goal
                cells += [format_value(value), "yes" if met else "no"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_table(results: Results) -> str:
    lines = [
        "| server | c | rep | phases wall s | server CPU s | client CPU s | errored |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in results.runs:
        cells = [
            run["server"],
            str(run["concurrency"]),
            str(run["repetition"]),
            f"{run['phases_wall_s']:.0f}",
            f"{run['server_cpu_s']:.0f}",
            f"{run['client_cpu_s']:.0f}",
            ",".join(run["errored_phases"]) or "none",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--servers",
        default="store-w1,store-w1-rep1,ceph,swift,null",
        help="comma-separated servers, in the order they run (store-wN, store-wN-repR, null, "
        "ceph, swift)",
    )
    parser.add_argument("--repeat", type=int, default=2, help="rounds over all servers")
    parser.add_argument(
        "--phase-s", type=float, default=40.0, help="s3bench.py's cap on one phase, in seconds"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--s3bench", type=Path, default=DEFAULT_S3BENCH, help="s3bench.py path")
    parser.add_argument(
        "--peers", type=Path, default=DEFAULT_PEERS, help="directory with ceph/ and swift/"
    )
    parser.add_argument(
        "--work-dir", type=Path, default=Path("/tmp"), help="directory for the store clusters"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    names = args.servers.split(",")
    ours = next((name for name in names if name.startswith("store-")), names[0])
    servers = [make_server(name, args.work_dir, args.peers) for name in names]
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    info = machine_info(args.work_dir)
    print(describe_machine(info), flush=True)
    started = utc_now()
    results = Results()
    for repetition in range(args.repeat):
        for server in servers:
            measure_server(server, args, repetition, results)

    tables = {
        "results": summary_table(results, names, ours),
        "targets": target_table(results, [name for name in names if name.startswith("store-")]),
        "cpu": cpu_table(results),
    }
    for title, table in tables.items():
        print(f"\n## {title}\n\n{table}")
    summary = {
        "started_utc": started,
        "finished_utc": utc_now(),
        "machine": info,
        "settings": vars(args) | {"s3bench_sizes": s3bench_size_args(args.quick)},
        "medians": {
            f"{server} c={concurrency} {phase}": results.median(server, concurrency, phase)
            for server, concurrency, phase in results.figures
        },
        "figures": {" ".join(map(str, key)): value for key, value in results.figures.items()},
        "units": results.units,
        "runs": results.runs,
        "tables": tables,
    }
    path = RESULTS_DIR / "s3_peers.json"
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
