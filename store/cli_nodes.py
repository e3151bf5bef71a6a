"""`storectl node`: list, add, drain and remove dataservers."""

from __future__ import annotations

import argparse
import json
import os

from store.cli_objects import connect
from store.cluster import CLUSTER_FILE, LocalCluster
from store.discovery import DEFAULT_CLUSTER_DIR, META_ENV_VAR, resolve_meta_address
from store.status import (
    count_states,
    dataservers_json,
    fetch_cluster_map,
    format_dataservers,
    seed_addresses,
)

# The timeout of the cluster map request when --timeout-s is not given.
DEFAULT_TIMEOUT_S = 10.0


def node_ls(args: argparse.Namespace) -> int:
    """Print every dataserver: id, address, domain, state, heartbeat age, space and chunks."""
    timeout_s = args.timeout_s if args.timeout_s is not None else DEFAULT_TIMEOUT_S
    address = resolve_meta_address(args.meta, args.dir)
    cluster_map = fetch_cluster_map(seed_addresses(address), timeout_s)
    dataservers = dataservers_json(cluster_map)
    if args.json:
        print(json.dumps(dataservers, indent=2))
        return 0
    print(format_dataservers(dataservers, count_states(cluster_map)))
    return 0


def node_drain(args: argparse.Namespace) -> int:
    """Start (or with --cancel stop) draining a dataserver; repair then moves its chunks off."""
    with connect(args) as client:
        info = client.drain_dataserver(args.id, cancel=args.cancel)
    if args.cancel:
        print(f"dataserver {info.id} takes new chunks again")
    else:
        print(
            f"draining dataserver {info.id} ({info.chunk_count} chunks at its last heartbeat); "
            "watch its CHUNKS column fall to 0 in `storectl node ls` (moved chunks are "
            "deleted after the metaserver's --gc-delay-s, 60 s by default), stop its process, "
            f"then run `storectl node remove {info.id}`"
        )
    return 0


def node_remove(args: argparse.Namespace) -> int:
    """Forget a stopped dataserver whose chunks all live elsewhere."""
    with connect(args) as client:
        client.remove_dataserver(args.id)
    print(f"removed dataserver {args.id} from the cluster map")
    _forget_local(args, args.id)
    return 0


def _forget_local(args: argparse.Namespace, dataserver_id: str) -> None:
    """Drop a removed dataserver from DIR/cluster.json, so `cluster up` does not start it."""
    if args.meta is not None or (args.dir is None and os.environ.get(META_ENV_VAR)):
        return
    directory = args.dir or DEFAULT_CLUSTER_DIR
    if not (directory / CLUSTER_FILE).exists():
        return
    cluster = LocalCluster.load(directory)
    kept = [p for p in cluster.dataservers if p.server_id != dataserver_id]
    if len(kept) == len(cluster.dataservers):
        return
    cluster.dataservers = kept
    cluster.write_cluster_file()
    print(f"removed it from {directory / CLUSTER_FILE} too")


def node_add(args: argparse.Namespace) -> int:
    """Start one more dataserver in the local cluster of DIR; rebalance then evens out chunks."""
    cluster = LocalCluster.load(args.dir)
    process = cluster.add_dataserver(domain=args.domain or "", detach=True)
    print(
        f"started dataserver {process.name} pid={process.pid} at {process.address} "
        f"(id {process.server_id}); repair moves chunks onto it until the counts are even"
    )
    return 0
