"""The S3 gateway's peak memory while it moves one large object each way.

    .venv/bin/python bench/s3_rss.py [--size-mib 2048] [--loop uvloop]

One cluster (4 dataservers) and one gateway process (--workers 1). The client
streams a SIZE object up with http.client, from one reused 1 MiB buffer and
UNSIGNED-PAYLOAD, then reads it back into one reused buffer, so neither side's
memory depends on the object's size unless the gateway buffers it. After each
transfer it reads the gateway's VmHWM (peak resident set size) from
/proc/PID/status. The target is a peak under 256 MiB.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchlib import MIB, Row, local_cluster, new_report, process_cpu_s, progress
from botocore.credentials import Credentials
from s3_event_loop import BUCKET, GatewayInfo, create_bucket, rss_peak_bytes, transfer

MAX_PEAK_MIB = 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=2048, help="object size in MiB")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp"), help="cluster directory")
    args = parser.parse_args()
    size_bytes = args.size_mib * MIB
    report = new_report("s3_rss", vars(args) | {"work_dir": str(args.work_dir)}, args.work_dir)

    peaks_mib: dict[str, float] = {}
    rates_mb_s: dict[str, float] = {}
    cpu_s: dict[str, float] = {}
    with local_cluster(args.work_dir, 4, "s3-rss") as cluster:
        process = cluster.add_gateway(extra_args=["--loop", args.loop])
        credentials = Credentials(*cluster.read_root_keys())
        gateway = GatewayInfo(process.pid, process.address, credentials)
        create_bucket(gateway)
        peaks_mib["idle"] = rss_peak_bytes(gateway.pid) / MIB
        for method in ("PUT", "GET"):
            cpu_before_s = process_cpu_s(gateway.pid)
            elapsed_s = transfer(gateway, size_bytes, method)
            cpu_s[method] = process_cpu_s(gateway.pid) - cpu_before_s
            rates_mb_s[method] = size_bytes / elapsed_s / 1e6
            peaks_mib[method] = rss_peak_bytes(gateway.pid) / MIB
            progress(
                f"{method} {args.size_mib} MiB to {BUCKET}: {rates_mb_s[method]:.0f} MB/s, "
                f"gateway CPU {cpu_s[method]:.1f} s, VmHWM {peaks_mib[method]:.0f} MiB"
            )

    for method in ("PUT", "GET"):
        met = "met" if peaks_mib[method] < MAX_PEAK_MIB else "missed"
        note = f"target < {MAX_PEAK_MIB} MiB: {met}"
        report.add(Row(f"gateway VmHWM after the {method}", "MiB", [peaks_mib[method]], note=note))
    report.details = {
        "peak_rss_mib": peaks_mib,
        "transfer_mb_s": rates_mb_s,
        "gateway_cpu_s": cpu_s,
    }
    report.finish()
    print(
        f"gateway VmHWM: {peaks_mib['idle']:.0f} MiB idle, {peaks_mib['PUT']:.0f} MiB after the "
        f"PUT, {peaks_mib['GET']:.0f} MiB after the GET (target < {MAX_PEAK_MIB} MiB)"
    )


if __name__ == "__main__":
    main()
