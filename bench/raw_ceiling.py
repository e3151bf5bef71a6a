"""(a) The raw grpcio ceiling: 1 MiB message streaming and small unary RPCs.

A trivial grpc.aio server (raw_server.py, a separate process) streams 1 MiB
messages to one client, receives them from it, and echoes 128-byte requests
at concurrency 1, 16 and 64. These are the baselines of the SDK benchmarks,
which also measure them again in their own runs.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from benchlib import MIB, Row, new_report, progress
from rawgrpc import SMALL_RPC_BYTES, RawClient, RawServer

CONCURRENCIES = (1, 16, 64)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="repetitions of each figure")
    parser.add_argument("--stream-mib", type=int, default=1024, help="MiB streamed per repetition")
    parser.add_argument(
        "--duration-s", type=float, default=2.0, help="seconds of each small-RPC run"
    )
    return parser.parse_args()


async def measure(address: str, args: argparse.Namespace) -> dict[str, list[float]]:
    client = RawClient(address)
    figures: dict[str, list[float]] = {"download": [], "upload": []}
    figures.update({f"echo-{c}": [] for c in CONCURRENCIES})
    try:
        await client.download_mb_s(64 * MIB)
        await client.small_rpc_load(16, 0.5)
        for repetition in range(args.repeat):
            figures["download"].append(await client.download_mb_s(args.stream_mib * MIB))
            figures["upload"].append(await client.upload_mb_s(args.stream_mib * MIB))
            for concurrency in CONCURRENCIES:
                sample = await client.small_rpc_load(concurrency, args.duration_s)
                figures[f"echo-{concurrency}"].append(sample.ops_per_s)
            progress(
                f"repetition {repetition + 1}/{args.repeat}: "
                + ", ".join(f"{name} {values[-1]:,.0f}" for name, values in figures.items())
            )
    finally:
        await client.close()
    return figures


def main() -> None:
    args = parse_args()
    report = new_report("raw_ceiling", vars(args), Path(tempfile.gettempdir()))
    with RawServer() as server:
        figures = asyncio.run(measure(server.address, args))
    report.add(Row("raw stream download, 1 MiB messages", "MB/s", figures["download"]))
    report.add(Row("raw stream upload, 1 MiB messages", "MB/s", figures["upload"]))
    for concurrency in CONCURRENCIES:
        report.add(
            Row(
                f"raw unary {SMALL_RPC_BYTES} B, concurrency {concurrency}",
                "ops/s",
                figures[f"echo-{concurrency}"],
            )
        )
    report.finish()


if __name__ == "__main__":
    main()
