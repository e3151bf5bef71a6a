"""CPU per S3 request in each process: boto3 client, gateway, metaserver, dataservers.

    .venv/bin/python bench/s3_cpu.py [--size-bytes 1048576] [--count 300] [--rounds 3]

One cluster (4 dataservers, one gateway process) with two buckets: one with
the cluster's default scheme (ec:2+1 with 4 dataservers) and one with rep:1,
a single copy as in the Ceph and Swift peers of bench/s3_peers.py. Each round,
for each bucket in turn, boto3 PUTs COUNT objects of SIZE at --concurrency and
then GETs them back once. The client's CPU time and every server's
(/proc/PID/stat) are read before and after each phase and divided by COUNT.

s3_peers.py compares whole servers. This script shows where one server's CPU
goes, because CPU limits a phase when the client and every server share two
cores. The baseline of each row is the bucket with the default scheme.
The GETs read objects written just before, so dataservers read them from
disk, as s3bench.py's GET phases do.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
from benchlib import Row, local_cluster, new_report, process_cpu_s, progress
from botocore.config import Config

import store

REGION = "us-east-1"
SCHEMES = {"default": "store-cpu-default", "rep:1": "store-cpu-rep1"}
PROCESSES = ("client", "gateway", "metaserver", "dataservers")


class Clients:
    """One boto3 client per worker thread, as s3bench.py uses them."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, pool_size: int) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._arguments: dict[str, Any] = {
            "endpoint_url": endpoint,
            "aws_access_key_id": access_key,
            "aws_secret_access_key": secret_key,
            "region_name": REGION,
            "config": Config(
                s3={"addressing_style": "path"},
                max_pool_connections=pool_size,
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        }

    def get(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            # Creating sessions is not thread-safe in boto3.
            with self._lock:
                client = boto3.session.Session().client("s3", **self._arguments)
            self._local.client = client
        return client


def cpu_ms(pids: dict[str, list[int]]) -> dict[str, float]:
    """Return the CPU milliseconds used so far by this process and each server group."""
    used = {"client": time.process_time() * 1000}
    for name, group in pids.items():
        used[name] = sum(process_cpu_s(pid) for pid in group) * 1000
    return used


def run_phase(
    pool: ThreadPoolExecutor,
    clients: Clients,
    pids: dict[str, list[int]],
    method: str,
    bucket: str,
    keys: list[str],
    body: bytes,
) -> tuple[float, dict[str, float]]:
    """Send one request per key; return requests/s and CPU ms per request by process."""

    def put(key: str) -> None:
        clients.get().put_object(Bucket=bucket, Key=key, Body=body)

    def get(key: str) -> None:
        data = clients.get().get_object(Bucket=bucket, Key=key)["Body"].read()
        if len(data) != len(body):
            raise RuntimeError(f"GET {bucket}/{key}: {len(data)} bytes, expected {len(body)}")

    before = cpu_ms(pids)
    started_s = time.perf_counter()
    list(pool.map(put if method == "PUT" else get, keys))
    elapsed_s = time.perf_counter() - started_s
    after = cpu_ms(pids)
    per_request = {name: (after[name] - before[name]) / len(keys) for name in PROCESSES}
    return len(keys) / elapsed_s, per_request


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size-bytes", type=int, default=1 << 20, help="object size in bytes (default: 1 MiB)"
    )
    parser.add_argument("--count", type=int, default=300, help="objects per phase (default: 300)")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (default: 8)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds over both buckets (default: 3)"
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path("/tmp"),
        help="parent of the cluster directory (default: /tmp)",
    )
    args = parser.parse_args()
    report = new_report("s3_cpu", vars(args) | {"work_dir": str(args.work_dir)}, args.work_dir)

    # (method, scheme) -> requests/s per round, and (method, scheme, process) -> ms per request.
    rates: dict[tuple[str, str], list[float]] = {}
    costs: dict[tuple[str, str, str], list[float]] = {}
    body = os.urandom(args.size_bytes)
    with local_cluster(args.work_dir, 4, "s3-cpu") as cluster:
        gateway = cluster.add_gateway()
        with store.Client(cluster.meta_address) as client:
            client.create_bucket(SCHEMES["default"])
            client.create_bucket(SCHEMES["rep:1"], scheme="rep:1")
        pids = {
            "gateway": [gateway.pid],
            "metaserver": [process.pid for process in cluster.metaservers],
            "dataservers": [process.pid for process in cluster.dataservers],
        }
        access_key, secret_key = cluster.read_root_keys()
        clients = Clients(f"http://{gateway.address}", access_key, secret_key, 2 * args.concurrency)
        with ThreadPoolExecutor(args.concurrency) as pool:
            # Create every thread's client outside the measured phases.
            list(pool.map(lambda _: clients.get(), range(4 * args.concurrency)))
            for number in range(args.rounds):
                for scheme, bucket in SCHEMES.items():
                    keys = [f"round-{number}/object-{i}" for i in range(args.count)]
                    for method in ("PUT", "GET"):
                        rate, per_request = run_phase(
                            pool, clients, pids, method, bucket, keys, body
                        )
                        rates.setdefault((method, scheme), []).append(rate)
                        for name, value in per_request.items():
                            costs.setdefault((method, scheme, name), []).append(value)
                        shares = ", ".join(f"{n} {v:.2f}" for n, v in per_request.items())
                        progress(
                            f"round {number} {scheme} {method}: {rate:.0f}/s; "
                            f"CPU ms per request: {shares}"
                        )

    for method in ("PUT", "GET"):
        label = f"{method} of {args.size_bytes} bytes"
        report.add(
            Row(
                f"{label}, rep:1",
                "requests/s",
                rates[(method, "rep:1")],
                "default scheme",
                rates[(method, "default")],
            )
        )
        for name in PROCESSES:
            report.add(
                Row(
                    f"{label}, rep:1, {name} CPU",
                    "ms/request",
                    costs[(method, "rep:1", name)],
                    "default scheme",
                    costs[(method, "default", name)],
                )
            )
    report.details = {
        "rates": {f"{m} {s}": v for (m, s), v in rates.items()},
        "cpu_ms_per_request": {f"{m} {s} {n}": v for (m, s, n), v in costs.items()},
    }
    report.finish()


if __name__ == "__main__":
    main()
