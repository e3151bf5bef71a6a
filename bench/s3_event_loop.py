"""The S3 gateway's event loop: uvloop against asyncio's default loop, for large objects.

    .venv/bin/python bench/s3_event_loop.py [--size-mib 1024] [--repeat 3]

One cluster (4 dataservers, default chunk size) and two gateways on it, one per
loop. Each repetition PUTs a SIZE object through each gateway and GETs it back,
alternating the gateways so that both see the same background load. The client
is plain http.client sending UNSIGNED-PAYLOAD from one reused buffer and reading
into one reused buffer, so its own CPU cost stays small. Reported per loop: MB/s,
the gateway's CPU seconds per GiB, and the growth of its peak memory (VmHWM).
"""

from __future__ import annotations

import argparse
import http.client
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
import botocore.auth
from benchlib import (
    MIB,
    Row,
    local_cluster,
    new_report,
    process_cpu_s,
    progress,
)
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from store.cluster import LocalCluster

LOOPS = ("asyncio", "uvloop")
BUCKET = "loop-bench"
PIECE_BYTES = MIB
REGION = "us-east-1"


@dataclass(frozen=True)
class GatewayInfo:
    pid: int
    address: str
    credentials: Credentials

    @property
    def endpoint(self) -> str:
        return f"http://{self.address}"

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])


class UnsignedPayloadAuth(botocore.auth.S3SigV4Auth):
    def payload(self, request: AWSRequest) -> str:
        return "UNSIGNED-PAYLOAD"


def rss_peak_bytes(pid: int) -> int:
    """Return a process's peak resident set size (VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmHWM line")


def transfer(gateway: GatewayInfo, size_bytes: int, method: str) -> float:
    """PUT or GET one object of `size_bytes` through the gateway; return the seconds taken."""
    path = f"/{BUCKET}/large.bin"
    headers = {"Content-Length": str(size_bytes)} if method == "PUT" else {}
    request = AWSRequest(method=method, url=gateway.endpoint + path, headers=headers)
    UnsignedPayloadAuth(gateway.credentials, "s3", REGION).add_auth(request)
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=600)
    piece = bytearray(PIECE_BYTES)
    started_s = time.perf_counter()
    connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    connection.putheader("Host", gateway.address)
    for name, value in request.headers.items():
        connection.putheader(name, value)
    connection.endheaders()
    if method == "PUT":
        for _ in range(size_bytes // PIECE_BYTES):
            connection.send(piece)
    response = connection.getresponse()
    received_bytes = 0
    view = memoryview(piece)
    while count := response.readinto(view):
        received_bytes += count
    elapsed_s = time.perf_counter() - started_s
    connection.close()
    if response.status != 200:
        raise RuntimeError(f"{method} returned status {response.status}")
    if method == "GET" and received_bytes != size_bytes:
        raise RuntimeError(f"GET returned {received_bytes} of {size_bytes} bytes")
    return elapsed_s


def create_bucket(gateway: GatewayInfo) -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url=gateway.endpoint,
        aws_access_key_id=gateway.credentials.access_key,
        aws_secret_access_key=gateway.credentials.secret_key,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}),
    )
    s3.create_bucket(Bucket=BUCKET)


def start_gateways(cluster: LocalCluster, window_chunks: int) -> dict[str, GatewayInfo]:
    gateways = {}
    for loop in LOOPS:
        extra = ["--loop", loop, "--window-chunks", str(window_chunks)]
        process = cluster.add_gateway(extra_args=extra)
        credentials = Credentials(*cluster.read_root_keys())
        gateways[loop] = GatewayInfo(process.pid, process.address, credentials)
    create_bucket(gateways[LOOPS[0]])
    return gateways


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024, help="object size in MiB")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per loop")
    parser.add_argument(
        "--window-chunks", type=int, default=4, help="the gateways' --window-chunks"
    )
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp"), help="cluster directory")
    args = parser.parse_args()
    size_bytes = args.size_mib * MIB
    report = new_report(
        "s3_event_loop", vars(args) | {"work_dir": str(args.work_dir)}, args.work_dir
    )

    samples: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    growth: dict[str, int] = {}
    with local_cluster(args.work_dir, 4, "s3-loop") as cluster:
        gateways = start_gateways(cluster, args.window_chunks)
        baselines = {loop: rss_peak_bytes(g.pid) for loop, g in gateways.items()}
        for repetition in range(args.repeat):
            for loop in LOOPS if repetition % 2 == 0 else LOOPS[::-1]:
                gateway = gateways[loop]
                for method in ("PUT", "GET"):
                    cpu_before_s = process_cpu_s(gateway.pid)
                    elapsed_s = transfer(gateway, size_bytes, method)
                    cpu_s = process_cpu_s(gateway.pid) - cpu_before_s
                    samples.setdefault((loop, method), []).append(size_bytes / elapsed_s / 1e6)
                    cpu.setdefault((loop, method), []).append(cpu_s / (size_bytes / 2**30))
                    rate_mb_s = size_bytes / elapsed_s / 1e6
                    progress(f"{loop} {method} {rate_mb_s:.0f} MB/s, {cpu_s:.2f} CPU s")
        for loop, gateway in gateways.items():
            growth[loop] = rss_peak_bytes(gateway.pid) - baselines[loop]

    for method in ("PUT", "GET"):
        figures = (
            (f"{method} {args.size_mib} MiB with uvloop", "MB/s", samples),
            (f"{method} gateway CPU per GiB with uvloop", "s", cpu),
        )
        for figure, unit, values in figures:
            uvloop_values = values[("uvloop", method)]
            asyncio_values = values[("asyncio", method)]
            report.add(Row(figure, unit, uvloop_values, "asyncio loop", asyncio_values))
    report.details = {
        "measured": "uvloop; baseline: asyncio",
        "samples_mb_s": {f"{k[0]} {k[1]}": v for k, v in samples.items()},
        "cpu_s_per_gib": {f"{k[0]} {k[1]}": v for k, v in cpu.items()},
        "peak_memory_growth_bytes": growth,
    }
    report.finish()
    for loop, grown in growth.items():
        print(f"{loop}: gateway peak memory grew by {grown / MIB:.0f} MiB")


if __name__ == "__main__":
    main()
