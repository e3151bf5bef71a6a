"""Size and parse time of the serialized cluster map for large clusters.

Builds ClusterMap messages with the protobuf classes of store/_pb and
fills them as a running primary does. Every dataserver is up, with an id,
address, failure domain, capacity, free and used bytes, chunk count,
heartbeat time and scrub totals. Every metaserver has its address and
shard list. Prints
the serialized bytes and the CPU time to serialize and parse one map in
this process (the SDK parses a map at connect and after each stale epoch).
It also times what the SDK does with a map: index it (ClusterView), and
place one upload, which ranks every eligible dataserver by rendezvous hash
(store/upload.py). Nothing is started and nothing is sent.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from pathlib import Path

from benchlib import Row, median, new_report

from store._pb import common_pb2 as pb
from store.clustermap import ClusterView
from store.layout import new_upload_id
from store.placement import (
    domains_of,
    eligible_dataservers,
    interleave_domains,
    rank_dataservers,
    stripe_targets,
)

TIB = 1 << 40
# Chunks of 4 MiB on a 16 TiB disk that is 60% full.
CHUNK_BYTES = 4 << 20
DISK_BYTES = 16 * TIB
USED_FRACTION = 0.6
DATASERVERS_PER_RACK = 40


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataservers",
        type=int,
        nargs="+",
        default=[100, 1000, 12000],
        help="dataserver counts to build maps for",
    )
    parser.add_argument("--metaservers", type=int, default=64, help="metaservers in each map")
    parser.add_argument("--shards", type=int, default=4096, help="shards in each map")
    parser.add_argument("--repeat", type=int, default=20, help="timed serializations and parses")
    return parser.parse_args()


def dataserver(index: int, now_unix_ms: int, chooser: random.Random) -> pb.DataserverInfo:
    used_bytes = int(DISK_BYTES * USED_FRACTION * chooser.uniform(0.95, 1.05))
    return pb.DataserverInfo(
        id=f"ds-{chooser.getrandbits(48):012x}",
        address=f"10.{index // 4096 % 256}.{index // 16 % 256}.{index % 16 + 10}:7100",
        state=pb.DATASERVER_STATE_UP,
        capacity_bytes=DISK_BYTES,
        free_bytes=DISK_BYTES - used_bytes,
        domain=f"rack-{index // DATASERVERS_PER_RACK:04d}",
        last_heartbeat_unix_ms=now_unix_ms - chooser.randrange(1000),
        chunk_count=used_bytes // CHUNK_BYTES,
        used_bytes=used_bytes,
        scrubbed_chunks=used_bytes // CHUNK_BYTES * 3,
        scrubbed_bytes=used_bytes * 3,
        scrub_started_unix_ms=now_unix_ms - chooser.randrange(86_400_000),
        last_scrub_unix_ms=now_unix_ms - 86_400_000 - chooser.randrange(86_400_000),
    )


def cluster_map(dataservers: int, metaservers: int, shards: int) -> pb.ClusterMap:
    chooser = random.Random(dataservers)
    now_unix_ms = int(time.time() * 1000)
    result = pb.ClusterMap(
        epoch=123_456,
        cluster_id=f"{chooser.getrandbits(128):032x}",
        shard_count=shards,
        chunk_size_bytes=CHUNK_BYTES,
        inline_max_bytes=64 << 10,
        replicas=1,
        default_scheme="auto",
    )
    for index in range(metaservers):
        first, end = shards * index // metaservers, shards * (index + 1) // metaservers
        result.metaservers.append(
            pb.MetaserverInfo(
                id=f"ms-{chooser.getrandbits(48):012x}",
                address=f"10.255.{index // 256}.{index % 256}:7000",
                shards=range(first, end),
                primary=index == 0,
                last_heartbeat_unix_ms=now_unix_ms,
            )
        )
    result.dataservers.extend(dataserver(i, now_unix_ms, chooser) for i in range(dataservers))
    return result


def time_ms(action: Callable[[], object], repeat: int) -> float:
    """Return the median process CPU milliseconds of `repeat` calls of `action`."""
    samples = []
    for _ in range(repeat):
        started_s = time.process_time()
        action()
        samples.append((time.process_time() - started_s) * 1000)
    return median(samples)


def place_upload(built: pb.ClusterMap) -> list[str]:
    """Place the first stripe of a 4+2 upload the way store/upload.py does."""
    domains = domains_of(built)
    ranking = interleave_domains(
        rank_dataservers(eligible_dataservers(built, CHUNK_BYTES), new_upload_id()), domains
    )
    return stripe_targets(ranking, 0, 6, domains)


def measure(count: int, args: argparse.Namespace) -> list[Row]:
    """Return the rows of a map with `count` dataservers: its bytes and CPU costs."""
    built = cluster_map(count, args.metaservers, args.shards)
    data = built.SerializeToString()
    name = f"{count:,} dataservers, {args.metaservers} metaservers, {args.shards} shards"
    costs = {
        "serialize": lambda: built.SerializeToString(),
        "parse": lambda: pb.ClusterMap.FromString(data),
        "index as a ClusterView": lambda: ClusterView(built),
        "place one 4+2 upload": lambda: place_upload(built),
    }
    rows = [Row(f"cluster map, {name}", "bytes", [len(data)])]
    for cost_name, action in costs.items():
        rows.append(Row(f"{cost_name}, {name}", "CPU-ms", [time_ms(action, args.repeat)]))
    return rows


def main() -> None:
    args = parse_args()
    report = new_report("cluster_map_size", vars(args), Path.cwd())
    for count in args.dataservers:
        report.rows.extend(measure(count, args))
    report.finish()


if __name__ == "__main__":
    main()
