"""`storectl node ls`: the dataservers in the cluster map with their state and capacity."""

from __future__ import annotations

import argparse
import json

from store.discovery import resolve_meta_address
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
