"""Shared parts of the benchmarks: timing loops, statistics, result rows, tables and JSON.

Every benchmark measures each figure beside its baseline in the same run,
repeats both, and reports medians and the ratio of the medians. Figures are
printed and written to bench/results/<name>.json; nothing here asserts timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import importlib.metadata
import json
import logging
import mmap
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from store.cluster import LocalCluster

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
MIB = 1 << 20
GIB = 1 << 30

# Every load loop stops at whichever bound it reaches first.
DEFAULT_MAX_OPS = 1_000_000


# Statistics.


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], fraction: float) -> float:
    """Return the value below which `fraction` of the sorted values fall (nearest rank)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


@dataclass(slots=True)
class RateSample:
    """One timed run of a load loop."""

    ops: int
    elapsed_s: float
    latency_ms_p50: float
    latency_ms_p99: float

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.elapsed_s if self.elapsed_s > 0 else 0.0


def _rate_sample(latencies_s: list[float], elapsed_s: float) -> RateSample:
    latencies_ms = [latency * 1000 for latency in latencies_s]
    return RateSample(
        ops=len(latencies_s),
        elapsed_s=elapsed_s,
        latency_ms_p50=percentile(latencies_ms, 0.50),
        latency_ms_p99=percentile(latencies_ms, 0.99),
    )


# Load loops, bounded in count and time.

Operation = Callable[[int, int], Awaitable[object]]


async def run_async_load(
    operation: Operation, concurrency: int, duration_s: float, max_ops: int = DEFAULT_MAX_OPS
) -> RateSample:
    """Run `operation(worker, index)` in `concurrency` tasks until `duration_s` or `max_ops`."""
    latencies_s: list[float] = []
    start_s = time.perf_counter()
    end_s = start_s + duration_s

    async def worker(worker_index: int) -> None:
        index = 0
        while time.perf_counter() < end_s and len(latencies_s) < max_ops:
            began_s = time.perf_counter()
            await operation(worker_index, index)
            latencies_s.append(time.perf_counter() - began_s)
            index += 1

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return _rate_sample(latencies_s, time.perf_counter() - start_s)


def run_thread_load(
    operation: Callable[[int, int], object],
    threads: int,
    duration_s: float,
    max_ops: int = DEFAULT_MAX_OPS,
) -> RateSample:
    """Run `operation(worker, index)` in `threads` threads until `duration_s` or `max_ops`."""
    latencies_s: list[float] = []
    lock = threading.Lock()
    start_s = time.perf_counter()
    end_s = start_s + duration_s

    def worker(worker_index: int) -> None:
        index = 0
        while time.perf_counter() < end_s and len(latencies_s) < max_ops:
            began_s = time.perf_counter()
            operation(worker_index, index)
            latency_s = time.perf_counter() - began_s
            with lock:
                latencies_s.append(latency_s)
            index += 1

    pool = [threading.Thread(target=worker, args=(w,)) for w in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return _rate_sample(latencies_s, time.perf_counter() - start_s)


async def time_async(action: Callable[[], Awaitable[object]]) -> tuple[float, object]:
    """Return the seconds `action` took and its result."""
    start_s = time.perf_counter()
    result = await action()
    return time.perf_counter() - start_s, result


# Result rows and targets.


@dataclass(slots=True)
class Target:
    """A goal for one row: `kind` is min_ratio, max_ratio, min_value or max_value."""

    kind: str
    threshold: float

    def describe(self, unit: str) -> str:
        if self.kind == "min_ratio":
            return f">= {self.threshold:g}x"
        if self.kind == "max_ratio":
            return f"<= {self.threshold:g}x"
        if self.kind == "max_value":
            return f"<= {self.threshold:,.0f} {unit}"
        return f">= {self.threshold:,.0f} {unit}"

    def met(self, value: float, ratio: float | None) -> bool | None:
        if self.kind == "min_value":
            return value >= self.threshold
        if self.kind == "max_value":
            return value <= self.threshold
        if ratio is None:
            return None
        return ratio >= self.threshold if self.kind == "min_ratio" else ratio <= self.threshold


@dataclass(slots=True)
class Row:
    """One figure beside its baseline, both repeated in the same run."""

    figure: str
    unit: str
    values: list[float]
    baseline: str = ""
    baseline_values: list[float] = field(default_factory=list)
    target: Target | None = None
    note: str = ""

    @property
    def value_median(self) -> float:
        return median(self.values)

    @property
    def baseline_median(self) -> float | None:
        return median(self.baseline_values) if self.baseline_values else None

    @property
    def ratio(self) -> float | None:
        base = self.baseline_median
        if base is None or base == 0:
            return None
        return self.value_median / base

    def met(self) -> bool | None:
        return None if self.target is None else self.target.met(self.value_median, self.ratio)

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        record["target"] = asdict(self.target) if self.target else None
        record["value_median"] = self.value_median
        record["baseline_median"] = self.baseline_median
        record["ratio"] = self.ratio
        record["target_text"] = self.target.describe(self.unit) if self.target else ""
        record["met"] = self.met()
        return record


def format_number(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def format_table(rows: list[Row]) -> str:
    """Return the rows as a Markdown table: figure, median, baseline, ratio, target, met."""
    header = ["figure", "unit", "ours (median)", "baseline", "baseline (median)", "ratio"]
    header += ["target", "met"]
    lines = [header]
    for row in rows:
        ratio = row.ratio
        met = row.met()
        lines.append(
            [
                row.figure,
                row.unit,
                format_number(row.value_median),
                row.baseline or "-",
                format_number(row.baseline_median),
                "-" if ratio is None else f"{ratio:.2f}x",
                row.target.describe(row.unit) if row.target else "-",
                {True: "yes", False: "NO", None: "-"}[met],
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = []
    for number, line in enumerate(lines):
        text.append(
            "| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) + " |"
        )
        if number == 0:
            text.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(text)


# Machine description.


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    return float("nan")


def _disk(path: Path) -> dict[str, Any]:
    usage = shutil.disk_usage(path)
    device = ""
    filesystem = ""
    try:
        output = subprocess.run(
            ["df", "--output=source,fstype", str(path)], capture_output=True, text=True, check=True
        ).stdout.split("\n")[1]
        device, filesystem = output.split()[:2]
    except (OSError, subprocess.CalledProcessError, IndexError, ValueError):
        pass
    rotational = ""
    name = Path(device).name
    rotational_file = Path(f"/sys/block/{name}/queue/rotational")
    if name and rotational_file.exists():
        # Virtual disks often report 1 whatever backs them, so this is only a hint.
        rotational = f"rotational={rotational_file.read_text().strip()}"
    return {
        "path": str(path),
        "device": device,
        "filesystem": filesystem,
        "kind": rotational,
        "size_gib": round(usage.total / GIB, 1),
        "free_gib": round(usage.free / GIB, 1),
        "fsync_ms_median": round(_fsync_ms_median(path), 3),
    }


def _fsync_ms_median(directory: Path, count: int = 20) -> float:
    """Time a 4 KiB write plus fsync, the cost a synced commit pays at least once."""
    samples_ms = []
    path = directory / f".bench-fsync-{os.getpid()}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for index in range(count):
            start_s = time.perf_counter()
            os.pwrite(fd, b"x" * 4096, index * 4096)
            os.fsync(fd)
            samples_ms.append((time.perf_counter() - start_s) * 1000)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return median(samples_ms)


def _package_versions() -> dict[str, str]:
    versions = {}
    for name in ("grpcio", "protobuf", "rocksdict", "awscrt", "aiohttp", "store", "py-spy"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit() -> str:
    try:
        result = subprocess.run(
            ["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(REPO_DIR), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return result.stdout.strip() + ("-dirty" if dirty else "")


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def machine_info(work_dir: Path) -> dict[str, Any]:
    """Describe the CPU, cores, memory, disk, Python and library versions of this run."""
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)),
        "memory_gib": round(_memory_gib(), 1),
        "disk": _disk(work_dir),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "packages": _package_versions(),
        "commit": git_commit(),
        "load_average_at_start": load_average(),
    }


def describe_machine(info: dict[str, Any]) -> str:
    disk = info["disk"]
    packages = ", ".join(f"{name} {version}" for name, version in info["packages"].items())
    return (
        f"CPU {info['cpu_model']}, {info['cpu_affinity']} cores, {info['memory_gib']} GiB RAM; "
        f"disk {disk['device']} ({disk['filesystem']}, {disk['kind']}, {disk['size_gib']} GiB, "
        f"4 KiB write+fsync {disk['fsync_ms_median']} ms); "
        f"Linux {info['kernel']}; Python {info['python']}; {packages}; commit {info['commit']}; "
        f"load average at start {info['load_average_at_start']}"
    )


# Reports.


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Report:
    """The rows and details of one benchmark script, printed and written as JSON."""

    name: str
    command: str
    machine: dict[str, Any]
    settings: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    started_utc: str = field(default_factory=utc_now)

    def add(self, row: Row) -> None:
        self.rows.append(row)

    def finish(self) -> Path:
        """Print the table and write bench/results/<name>.json; return that path."""
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{self.name}.json"
        record = {
            "name": self.name,
            "command": self.command,
            "started_utc": self.started_utc,
            "finished_utc": utc_now(),
            "load_average_at_end": load_average(),
            "machine": self.machine,
            "settings": self.settings,
            "rows": [row.to_json() for row in self.rows],
            "details": self.details,
        }
        path.write_text(json.dumps(record, indent=2, default=str) + "\n")
        print(f"\n## {self.name}\n")
        print(format_table(self.rows))
        print(f"\nwritten to {path}", flush=True)
        return path


def new_report(name: str, settings: dict[str, Any], work_dir: Path) -> Report:
    command = " ".join([".venv/bin/python", f"bench/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    info = machine_info(work_dir)
    print(f"# {name}: {command}\n{describe_machine(info)}", flush=True)
    return Report(name=name, command=command, machine=info, settings=settings)


def progress(message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", flush=True)


# Local clusters.


@contextlib.contextmanager
def local_cluster(
    work_dir: Path, dataservers: int, name: str, **options: Any
) -> Iterator[LocalCluster]:
    """Start a fresh LocalCluster under a new directory in `work_dir`; remove it afterwards."""
    root = Path(tempfile.mkdtemp(prefix=f"store-bench-{name}-", dir=work_dir))
    cluster = LocalCluster(root, dataservers=dataservers, **options)
    progress(f"starting cluster {root} with {dataservers} dataserver(s)")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def cluster_pids(cluster: LocalCluster) -> dict[str, int]:
    """Return the pid of every server process of the cluster, by process name."""
    return {p.name: p.pid for p in cluster.metaservers + cluster.dataservers}


# Disk baseline.


def disk_direct_mb_s(directory: Path, data: bytes, block_bytes: int = MIB) -> tuple[float, float]:
    """Write `data` to a new file with O_DIRECT and fsync, read it back with O_DIRECT.

    Returns the write and read throughput in MB/s, one block in flight at a time,
    the way a dataserver moves one chunk message. NaN where O_DIRECT fails (tmpfs).
    """
    if len(data) % block_bytes:
        raise ValueError(f"data of {len(data)} bytes is not a multiple of {block_bytes}")
    path = directory / f".bench-direct-{os.getpid()}"
    aligned = mmap.mmap(-1, block_bytes)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o600)
    except OSError as error:
        progress(f"O_DIRECT is not available under {directory}: {error}")
        return float("nan"), float("nan")
    try:
        start_s = time.perf_counter()
        for offset in range(0, len(data), block_bytes):
            aligned[:] = data[offset : offset + block_bytes]
            os.pwrite(fd, aligned, offset)
        os.fsync(fd)
        write_mb_s = len(data) / (time.perf_counter() - start_s) / 1e6
        start_s = time.perf_counter()
        for offset in range(0, len(data), block_bytes):
            os.preadv(fd, [aligned], offset)
        read_mb_s = len(data) / (time.perf_counter() - start_s) / 1e6
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
        aligned.close()
    return write_mb_s, read_mb_s


# CPU accounting.

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """Return the user plus system CPU seconds that all threads of a process used so far."""
    return _stat_cpu_s(Path(f"/proc/{pid}/stat"))


def thread_cpu_s(pid: int, tid: int) -> float:
    """Return the user plus system CPU seconds that one thread of a process used so far."""
    return _stat_cpu_s(Path(f"/proc/{pid}/task/{tid}/stat"))


def _stat_cpu_s(path: Path) -> float:
    # Fields after the parenthesized command name start at field 3 (state); utime and
    # stime are fields 14 and 15 of proc(5), in clock ticks.
    fields = path.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S


def machine_busy_s() -> float:
    """Return the CPU seconds that all cores spent outside idle and iowait since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal; guest time is already in user.
    return (sum(values[:8]) - values[3] - values[4]) / CLOCK_TICKS_PER_S


# Log records.


class LogCounter(logging.Handler):
    """Counts log records by the first two words of their message ("degraded read")."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.counts: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        words = " ".join(str(record.msg).split()[:2])
        self.counts[words] = self.counts.get(words, 0) + 1


@contextlib.contextmanager
def counting_log(name: str) -> Iterator[LogCounter]:
    """Route one logger's records of level INFO and above to a counter, away from stderr."""
    logger = logging.getLogger(name)
    counter = LogCounter()
    saved = (logger.level, logger.propagate)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(counter)
    try:
        yield counter
    finally:
        logger.removeHandler(counter)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
