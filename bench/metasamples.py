"""Samples of bench/metaservers.py and the tables made from them.

A Sample is one measured window of one load on one target: the operations
the client processes completed in it and the CPU seconds of every process,
of each metaserver's main thread, and of the whole machine. Process names
start with "server:" for the target's servers, "client-" for the client
processes and "idle:" for the other cluster's servers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchlib import Row, Target, machine_busy_s, median, process_cpu_s, thread_cpu_s

CONFIGS = ("one", "two")
RATIO_TARGET = Target("min_ratio", 1.6)


# CPU accounting.


@dataclass
class CpuSnapshot:
    taken_s: float
    machine_s: float
    process_s: dict[str, float]
    main_thread_s: dict[str, float]


def cpu_snapshot(pids: dict[str, int], main_threads: dict[str, int]) -> CpuSnapshot:
    return CpuSnapshot(
        taken_s=time.monotonic(),
        machine_s=machine_busy_s(),
        process_s={name: process_cpu_s(pid) for name, pid in pids.items()},
        main_thread_s={name: thread_cpu_s(pid, pid) for name, pid in main_threads.items()},
    )


@dataclass
class Sample:
    """One measured window of one load on one target."""

    ops: int
    elapsed_s: float
    errors: int
    latency_ms_p50: float
    latency_ms_p99: float
    # CPU seconds in the window, by process name ("server:meta-0", "client-1", "idle:two/meta-1").
    process_cpu_s: dict[str, float]
    main_thread_cpu_s: dict[str, float]
    machine_cpu_s: float
    # Commits and synced write batches of the target's shards during the run (warm-up included).
    commits: int = 0
    sync_writes: int = 0

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.elapsed_s

    def cpu_s(self, prefix: str) -> float:
        return sum(s for name, s in self.process_cpu_s.items() if name.startswith(prefix))

    def cpu_s_per_1000_ops(self, prefix: str) -> float:
        return self.cpu_s(prefix) * 1000 / max(self.ops, 1)

    def cores(self, prefix: str) -> float:
        return self.cpu_s(prefix) / self.elapsed_s

    def busiest_main_thread_cores(self) -> float:
        return max(self.main_thread_cpu_s.values(), default=0.0) / self.elapsed_s

    def server_bound_ops_per_s(self, cores: int) -> float:
        """Estimate the ops/s if the clients cost no CPU on this machine.

        Each metaserver's event loop runs in its main thread, so it can use at most
        one core, and all metaservers together at most `cores`. The estimate scales
        the measured rate until the first of these two limits is reached.
        """
        by_main_thread = self.ops_per_s / max(self.busiest_main_thread_cores(), 1e-9)
        by_machine = cores * self.ops / max(self.cpu_s("server:"), 1e-9)
        return min(by_main_thread, by_machine)


def sample_of(
    replies: list[dict[str, Any]], before: CpuSnapshot, after: CpuSnapshot, target: str
) -> Sample:
    """Combine the clients' counts and the CPU deltas of one window into a Sample."""
    process_cpu = {}
    for name, seconds in after.process_s.items():
        delta = seconds - before.process_s[name]
        if name.startswith(f"{target}/"):
            name = "server:" + name.split("/", 1)[1]
        elif "/" in name:
            name = "idle:" + name
        process_cpu[name] = delta
    return Sample(
        ops=sum(reply["ops"] for reply in replies),
        elapsed_s=after.taken_s - before.taken_s,
        errors=sum(reply["errors"] for reply in replies),
        latency_ms_p50=median([reply["latency_ms_p50"] for reply in replies]),
        latency_ms_p99=max(reply["latency_ms_p99"] for reply in replies),
        process_cpu_s=process_cpu,
        main_thread_cpu_s={
            name: seconds - before.main_thread_s[name]
            for name, seconds in after.main_thread_s.items()
        },
        machine_cpu_s=after.machine_s - before.machine_s,
    )


# Results.

# Samples by (target, load); the targets are "one", "two" and "raw".
Samples = dict[tuple[str, str], list[Sample]]


def _median_of(samples: list[Sample], value: Callable[[Sample], float]) -> float:
    return median([value(sample) for sample in samples])


def build_rows(samples: Samples, loads: list[str]) -> list[Row]:
    """Return the report rows: the raw baseline, then each load on two against one metaserver."""
    raw = [s.ops_per_s for s in samples[("raw", "raw-echo")]]
    rows = [Row("raw grpcio unary calls, 128 B", "calls/s", raw)]
    cores = len(os.sched_getaffinity(0))
    for load in loads:
        one = samples[("one", load)]
        two = samples[("two", load)]
        rows.append(
            Row(
                f"{load}, 2 metaservers",
                "ops/s",
                [s.ops_per_s for s in two],
                f"{load}, 1 metaserver",
                [s.ops_per_s for s in one],
                RATIO_TARGET,
            )
        )
        rows.append(
            Row(
                f"{load}, 2 metaservers, estimate without client CPU",
                "ops/s",
                [s.server_bound_ops_per_s(cores) for s in two],
                f"{load}, 1 metaserver, estimate without client CPU",
                [s.server_bound_ops_per_s(cores) for s in one],
                note="Sample.server_bound_ops_per_s: one core per event loop, all cores in all",
            )
        )
    return rows


def breakdown_table(samples: Samples, loads: list[str]) -> str:
    """Return a Markdown table of throughput, ratio, CPU per 1,000 ops and cores used."""
    header = (
        "| load | metaservers | ops/s | ratio | server CPU s / 1k ops | client CPU s / 1k ops "
        "| server cores | busiest main thread | client cores | other cores |"
    )
    lines = [header, "|" + " --- |" * 10]
    lines.append(_breakdown_line("raw-echo", "raw", samples[("raw", "raw-echo")], "-"))
    for load in loads:
        one_ops = _median_of(samples[("one", load)], lambda s: s.ops_per_s)
        two_ops = _median_of(samples[("two", load)], lambda s: s.ops_per_s)
        lines.append(_breakdown_line(load, "1", samples[("one", load)], "-"))
        lines.append(
            _breakdown_line(load, "2", samples[("two", load)], f"{two_ops / one_ops:.2f}x")
        )
    return "\n".join(lines)


def _breakdown_line(load: str, metaservers: str, samples: list[Sample], ratio: str) -> str:
    def m(value: Callable[[Sample], float]) -> float:
        return _median_of(samples, value)

    # Cores used by processes that this run did not start: other work on the machine.
    ours = m(lambda s: sum(s.process_cpu_s.values()) / s.elapsed_s)
    other = m(lambda s: s.machine_cpu_s / s.elapsed_s) - ours
    main_thread = m(lambda s: s.busiest_main_thread_cores()) if metaservers != "raw" else None
    cells = [
        load,
        metaservers,
        f"{m(lambda s: s.ops_per_s):,.0f}",
        ratio,
        f"{m(lambda s: s.cpu_s_per_1000_ops('server:')):.3f}",
        f"{m(lambda s: s.cpu_s_per_1000_ops('client-')):.3f}",
        f"{m(lambda s: s.cores('server:')):.2f}",
        "-" if main_thread is None else f"{main_thread:.2f}",
        f"{m(lambda s: s.cores('client-')):.2f}",
        f"{other:.2f}",
    ]
    return "| " + " | ".join(cells) + " |"


def sample_details(samples: Samples) -> dict[str, Any]:
    """Return every sample, rounded, for the JSON report."""
    return {
        f"{target}/{load}": [
            {
                "ops_per_s": round(s.ops_per_s, 1),
                "errors": s.errors,
                "latency_ms_p50": round(s.latency_ms_p50, 3),
                "latency_ms_p99": round(s.latency_ms_p99, 3),
                "process_cpu_s": {k: round(v, 3) for k, v in s.process_cpu_s.items()},
                "main_thread_cpu_s": {k: round(v, 3) for k, v in s.main_thread_cpu_s.items()},
                "machine_cpu_s": round(s.machine_cpu_s, 3),
                "elapsed_s": round(s.elapsed_s, 3),
                "commits": s.commits,
                "sync_writes": s.sync_writes,
            }
            for s in runs
        ]
        for (target, load), runs in samples.items()
    }
