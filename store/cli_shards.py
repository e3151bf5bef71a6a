"""`storectl shard`: list metadata shards and move them between metaservers."""

from __future__ import annotations

import argparse
import json

from store.cli_objects import connect
from store.cluster import CLUSTER_FILE, LocalCluster
from store.discovery import DEFAULT_CLUSTER_DIR, resolve_meta_address
from store.status import collect_status, format_shards

# A move copies the shard's RocksDB files while its writes wait; big shards take a while.
DEFAULT_MOVE_TIMEOUT_S = 300.0
DEFAULT_LS_TIMEOUT_S = 10.0


def shard_ls(args: argparse.Namespace) -> int:
    """Print every shard with the metaserver serving it, its state, keys and size."""
    timeout_s = args.timeout_s if args.timeout_s is not None else DEFAULT_LS_TIMEOUT_S
    status = collect_status(resolve_meta_address(args.meta, args.dir), timeout_s)
    if args.json:
        print(json.dumps({"epoch": status["epoch"], "shards": status["shards"]}, indent=2))
        return 0
    print(f"epoch {status['epoch']}  {status['shard_count']} shards")
    print(format_shards(status["shards"], status["metaservers"]))
    return 0


def shard_move(args: argparse.Namespace) -> int:
    """Move one shard to another metaserver while clients keep working."""
    if args.timeout_s is None:
        args.timeout_s = DEFAULT_MOVE_TIMEOUT_S
    target = _local_metaserver_id(args) or args.target
    with connect(args) as client:
        reply = client.move_shard(args.shard, target, timeout_s=args.timeout_s)
    if args.json:
        print(
            json.dumps(
                {
                    "shard": reply.shard,
                    "source": reply.source_id,
                    "target": reply.target_id,
                    "epoch": reply.epoch,
                    "copied_bytes": reply.copied_bytes,
                    "copied_files": reply.copied_files,
                    "frozen_ms": reply.frozen_ms,
                    "total_ms": reply.total_ms,
                }
            )
        )
        return 0
    print(
        f"shard {reply.shard} moved from metaserver {reply.source_id} to {reply.target_id} "
        f"at epoch {reply.epoch}: {reply.copied_files} files, {reply.copied_bytes} bytes "
        f"copied; writes waited {reply.frozen_ms} ms, {reply.total_ms} ms in all"
    )
    return 0


def _local_metaserver_id(args: argparse.Namespace) -> str | None:
    """Return the id of the local cluster's metaserver named TO (meta-1), if there is one."""
    if args.meta is not None:
        return None
    directory = args.dir or DEFAULT_CLUSTER_DIR
    if not (directory / CLUSTER_FILE).exists():
        return None
    for process in LocalCluster.load(directory).metaservers:
        if process.name == args.target:
            return process.server_id
    return None
