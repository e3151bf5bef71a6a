"""CPU time of one repair scan: the pass that looks through every object for lost chunks.

Writes --objects records of ec:4+2 objects into --shards shard databases
in this process. Each object has --stripes stripes, with chunks spread over
--dataservers dataservers. The script marks one dataserver out in a cluster
map and runs the metaserver's own scan over the shards (Repairer._scan in
metaserver/repair.py). The scan counts every eligible dataserver's chunks
for balancing, then plans the moves of every object, and keeps at most 256
objects per shard. It reports the CPU microseconds per object scanned and
how many objects a lost dataserver leaves to repair. The scan runs on the
metaserver's event loop and yields every 1,000 records, so requests share
the core with it for that long.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

from benchlib import Row, median, new_report, progress
from metaload import KEY_SPACES
from rawrocks import RawShards, dataserver_ids, encoded_objects

from metaserver.repair import Repairer, RepairSettings
from metaserver.repair_plan import PassState
from metaserver.rocks import RocksEnv
from metaserver.shard import Shard
from store._pb import common_pb2 as pb
from store.clustermap import ClusterView

BUCKET = "datasets"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1_000_000, help="objects written")
    parser.add_argument("--shards", type=int, default=32, help="shard databases")
    parser.add_argument("--stripes", type=int, default=1, help="ec:4+2 stripes per object")
    parser.add_argument("--dataservers", type=int, default=1000, help="dataservers in the map")
    parser.add_argument("--repeat", type=int, default=3, help="timed scans")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="directory for the databases (removed afterwards)",
    )
    return parser.parse_args()


def cluster_map_with_one_out(dataserver_ids: list[str]) -> pb.ClusterMap:
    """Return a map of the dataservers, every one up except the first, which is out."""
    built = pb.ClusterMap(epoch=1, shard_count=1)
    for index, dataserver_id in enumerate(dataserver_ids):
        state = pb.DATASERVER_STATE_OUT if index == 0 else pb.DATASERVER_STATE_UP
        built.dataservers.add(id=dataserver_id, address=f"10.0.0.{index}:7100", state=state)
    return built


def main() -> None:
    args = parse_args()
    report = new_report(
        "repair_scan", {**vars(args), "work_dir": str(args.work_dir)}, args.work_dir
    )
    progress(f"writing {args.objects:,} records of {args.stripes} stripes")
    ids = dataserver_ids(args.dataservers)
    space = KEY_SPACES["dataset"]
    pairs = encoded_objects(space, BUCKET, range(args.objects), args.stripes, ids)
    root = Path(tempfile.mkdtemp(prefix="repair-scan-", dir=args.work_dir))
    env = RocksEnv()
    try:
        raw = RawShards.create(root, env, args.shards)
        raw.put_batches(BUCKET, pairs, 64, sync=False)
        raw.settle()
        raw.close()
        shards = [Shard(n, root / f"{n:04d}", env, None) for n in range(args.shards)]
        state = PassState.of(ClusterView(cluster_map_with_one_out(ids)))
        eligible = sorted(set(ids) - state.lost)
        repairer = Repairer({shard.number: shard for shard in shards}, None, RepairSettings(), 60.0)  # type: ignore[arg-type]
        us_per_object = []
        found = 0
        for _ in range(args.repeat):
            started_s = time.process_time()
            found = len(asyncio.run(repairer._scan(state, eligible)))
            us_per_object.append((time.process_time() - started_s) / args.objects * 1e6)
            progress(f"scan: {us_per_object[-1]:.2f} CPU-us per object, {found} objects to repair")
        for shard in shards:
            shard.db.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report.add(Row("repair scan, CPU per object scanned", "CPU-us", us_per_object))
    report.details["objects_found"] = found
    report.details["objects_found_limit"] = RepairSettings().max_objects_per_pass * args.shards
    report.details["scan_s_median"] = median(us_per_object) * args.objects / 1e6
    report.finish()


if __name__ == "__main__":
    main()
