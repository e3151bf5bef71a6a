"""Cluster status for `storectl cluster status`, `storectl node ls` and the demo.

The cluster map gives the epoch, the metaservers with their shards, and the
dataservers with their state and the capacity and chunk figures of their
last heartbeat. Each metaserver's GetStatus RPC gives the per-shard figures.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import grpc

from store._pb import common_pb2 as pb
from store._pb import meta_pb2, meta_pb2_grpc
from store.clustermap import counted_dataservers, state_name
from store.errors import Unavailable
from store.rpc import CHANNEL_OPTIONS, error_from_rpc
from store.shardmap import format_shard_ranges
from store.tables import format_bytes, format_table

Status = dict[str, Any]

# Dataserver states in the order of the summary line.
STATES = ("up", "suspect", "down", "out")


def seed_addresses(address: str) -> list[str]:
    """Split one metaserver address, or several separated by commas, into a list."""
    return [a.strip() for a in address.split(",") if a.strip()]


def fetch_cluster_map(addresses: list[str], timeout_s: float) -> pb.ClusterMap:
    """Fetch the cluster map from the first metaserver in `addresses` that responds."""
    problems = []
    for address in addresses:
        with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
            stub = meta_pb2_grpc.MetaServiceStub(channel)
            try:
                cluster_map: pb.ClusterMap = stub.GetClusterMap(
                    meta_pb2.GetClusterMapRequest(), timeout=timeout_s
                )
                return cluster_map
            except grpc.RpcError as exc:
                problems.append(str(error_from_rpc(exc, f"metaserver {address}")))
    raise Unavailable(
        f"cannot fetch the cluster map: {'; '.join(problems)}. Check that the cluster runs, "
        "or start one with `storectl cluster up`"
    )


def fetch_metaserver_status(address: str, timeout_s: float) -> meta_pb2.MetaserverStatus:
    with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        stub = meta_pb2_grpc.MetaServiceStub(channel)
        try:
            status: meta_pb2.MetaserverStatus = stub.GetStatus(
                meta_pb2.GetStatusRequest(), timeout=timeout_s
            )
            return status
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, f"status of metaserver {address}") from None


def collect_status(address: str, timeout_s: float) -> Status:
    """Return the cluster status as a JSON-ready dict.

    `address` is one metaserver address or several separated by commas.
    """
    cluster_map = fetch_cluster_map(seed_addresses(address), timeout_s)
    metaservers: list[dict[str, Any]] = []
    shards: list[dict[str, Any]] = []
    for info in cluster_map.metaservers:
        status = fetch_metaserver_status(info.address, timeout_s)
        metaservers.append(_metaserver_json(info, status))
        shards.extend(_shard_json(info.id, shard) for shard in status.shards)
    shards.sort(key=lambda s: s["shard"])
    return {
        "cluster_id": cluster_map.cluster_id,
        "epoch": cluster_map.epoch,
        "shard_count": cluster_map.shard_count,
        "chunk_size_bytes": cluster_map.chunk_size_bytes,
        "inline_max_bytes": cluster_map.inline_max_bytes,
        "default_scheme": cluster_map.default_scheme or "auto",
        "metaservers": metaservers,
        "dataservers": dataservers_json(cluster_map),
        "dataserver_states": count_states(cluster_map),
        "cluster_size": counted_dataservers(cluster_map.dataservers),
        "shards": shards,
    }


def _metaserver_json(info: pb.MetaserverInfo, status: meta_pb2.MetaserverStatus) -> dict[str, Any]:
    return {
        "id": info.id,
        "address": info.address,
        "shards": format_shard_ranges(list(info.shards)),
        "shard_list": list(info.shards),
        "epoch": status.epoch,
        "started_unix_ms": status.started_unix_ms,
        "gc_chunks_deleted": status.gc_chunks_deleted,
        "gc_uploads_expired": status.gc_uploads_expired,
        "repair": {
            "queued_objects": status.repair.queued_objects,
            "repaired_chunks": status.repair.repaired_chunks,
            "repaired_bytes": status.repair.repaired_bytes,
            "rate_bytes_s": status.repair.rate_bytes_s,
            "failures": status.repair.failures,
            "unrecoverable_stripes": status.repair.unrecoverable_stripes,
            "bandwidth_bytes_s": status.repair.bandwidth_bytes_s,
            "moved_chunks": status.repair.moved_chunks,
            "moved_bytes": status.repair.moved_bytes,
            "scrub_checked_chunks": status.repair.scrub_checked_chunks,
            "scrub_bad_chunks": status.repair.scrub_bad_chunks,
            "scrub_passes": status.repair.scrub_passes,
        },
    }


def dataservers_json(cluster_map: pb.ClusterMap) -> list[dict[str, Any]]:
    """Return the map's dataservers as JSON-ready dicts, with the age of their last heartbeat."""
    now_unix_ms = int(time.time() * 1000)
    return [_dataserver_json(info, now_unix_ms) for info in cluster_map.dataservers]


def count_states(cluster_map: pb.ClusterMap) -> dict[str, int]:
    """Count the map's dataservers per state, with every state in STATES present."""
    counts = dict.fromkeys(STATES, 0)
    for info in cluster_map.dataservers:
        name = state_name(info.state)
        counts[name] = counts.get(name, 0) + 1
    return counts


def _dataserver_json(info: pb.DataserverInfo, now_unix_ms: int) -> dict[str, Any]:
    # NOTE: the age compares the metaserver's wall clock at the heartbeat with this host's,
    # so clock skew between the two hosts shifts it. The metaserver's failure detector uses
    # its own monotonic clock and is not affected.
    heartbeat_age_s = None
    if info.last_heartbeat_unix_ms > 0:
        heartbeat_age_s = round(max(0, now_unix_ms - info.last_heartbeat_unix_ms) / 1000, 1)
    # The dataserver's clock set last_scrub_unix_ms, so its skew against this host shifts the age.
    last_scrub_age_s = None
    if info.last_scrub_unix_ms > 0:
        last_scrub_age_s = round(max(0, now_unix_ms - info.last_scrub_unix_ms) / 1000, 1)
    return {
        "id": info.id,
        "address": info.address,
        "state": state_name(info.state),
        "draining": info.draining,
        "domain": info.domain,
        "capacity_bytes": info.capacity_bytes,
        "free_bytes": info.free_bytes,
        "used_bytes": info.used_bytes,
        "chunk_count": info.chunk_count,
        "last_heartbeat_unix_ms": info.last_heartbeat_unix_ms,
        "heartbeat_age_s": heartbeat_age_s,
        "scrubbed_chunks": info.scrubbed_chunks,
        "scrubbed_bytes": info.scrubbed_bytes,
        "corrupt_chunks": info.corrupt_chunks,
        "scrub_started_unix_ms": info.scrub_started_unix_ms,
        "last_scrub_unix_ms": info.last_scrub_unix_ms,
        "last_scrub_age_s": last_scrub_age_s,
    }


def _format_scrub(dataserver: dict[str, Any]) -> str:
    """Describe a dataserver's scrub: running, the age of its last full pass, or never."""
    if dataserver["scrub_started_unix_ms"] > 0:
        return "running"
    age_s = dataserver["last_scrub_age_s"]
    if age_s is None:
        return "never"
    if age_s < 60:
        return f"{age_s:.0f} s ago"
    if age_s < 3600:
        return f"{age_s / 60:.1f} min ago"
    return f"{age_s / 3600:.1f} h ago"


def _shard_json(metaserver_id: str, shard: meta_pb2.ShardStatus) -> dict[str, Any]:
    return {
        "shard": shard.shard,
        "metaserver": metaserver_id,
        "estimated_keys": shard.estimated_keys,
        "disk_bytes": shard.disk_bytes,
        "gc_entries": shard.gc_entries,
        "open_uploads": shard.open_uploads,
        "commits": shard.commits,
        "sync_writes": shard.sync_writes,
        "state": "frozen" if shard.frozen else "serving",
    }


def format_status(status: Status) -> str:
    """Render a status dict from collect_status as plain-text tables."""
    header = (
        f"cluster {status['cluster_id']}  epoch {status['epoch']}  "
        f"{status['shard_count']} shards  chunk size {format_bytes(status['chunk_size_bytes'])}  "
        f"inline max {format_bytes(status['inline_max_bytes'])}  "
        f"default scheme {status['default_scheme']}"
    )
    return "\n\n".join(
        [
            header,
            _metaserver_table(status["metaservers"]),
            _repair_table(status["metaservers"]),
            format_dataservers(status["dataservers"], status["dataserver_states"]),
            _shard_table(status["shards"]),
        ]
    )


def _metaserver_table(metaservers: list[dict[str, Any]]) -> str:
    rows = [
        [m["id"], m["address"], m["shards"], m["gc_chunks_deleted"], m["gc_uploads_expired"]]
        for m in metaservers
    ]
    headers = ["METASERVER", "ADDRESS", "SHARDS", "GC CHUNKS DELETED", "GC UPLOADS EXPIRED"]
    return format_table(headers, rows)


def _repair_table(metaservers: list[dict[str, Any]]) -> str:
    rows = []
    for m in metaservers:
        repair = m["repair"]
        limit = repair["bandwidth_bytes_s"]
        rows.append(
            [
                m["id"],
                repair["queued_objects"],
                repair["repaired_chunks"],
                format_bytes(repair["repaired_bytes"]),
                f"{format_bytes(int(repair['rate_bytes_s']))}/s",
                f"{format_bytes(limit)}/s" if limit else "none",
                repair["moved_chunks"],
                repair["failures"],
                repair["unrecoverable_stripes"],
                f"{repair['scrub_checked_chunks']}/{repair['scrub_bad_chunks']}",
            ]
        )
    headers = [
        "REPAIR",
        "QUEUED OBJECTS",
        "CHUNKS REBUILT",
        "BYTES",
        "LAST RATE",
        "LIMIT",
        "CHUNKS MOVED",
        "FAILURES",
        "UNRECOVERABLE STRIPES",
        "SCRUB CHECKED/BAD",
    ]
    return format_table(headers, rows)


def format_dataservers(dataservers: Sequence[dict[str, Any]], counts: dict[str, int]) -> str:
    """Render dataserver dicts from dataservers_json as a table and a count per state."""
    if not dataservers:
        return "no dataservers registered"
    rows = [
        [
            d["id"],
            d["address"],
            d["domain"],
            f"{d['state']}, draining" if d.get("draining") else d["state"],
            "never" if d["heartbeat_age_s"] is None else f"{d['heartbeat_age_s']:.1f} s",
            format_bytes(d["capacity_bytes"]),
            format_bytes(d["free_bytes"]),
            format_bytes(d["used_bytes"]),
            d["chunk_count"],
            format_bytes(d["scrubbed_bytes"]),
            d["corrupt_chunks"],
            _format_scrub(d),
        ]
        for d in dataservers
    ]
    headers = [
        "DATASERVER",
        "ADDRESS",
        "DOMAIN",
        "STATE",
        "SINCE HEARTBEAT",
        "CAPACITY",
        "FREE",
        "USED",
        "CHUNKS",
        "SCRUBBED",
        "CORRUPT",
        "LAST SCRUB",
    ]
    size = sum(counts.values()) - counts["out"]
    summary = "dataservers: " + ", ".join(f"{counts[state]} {state}" for state in counts)
    summary += f"; cluster size {size} (out dataservers do not count)"
    return format_table(headers, rows, right_columns={4, 5, 6, 7, 9}) + "\n" + summary


def format_shards(shards: list[dict[str, Any]], metaservers: list[dict[str, Any]]) -> str:
    """Render the shards of a status dict with each metaserver's address and the shard's state."""
    addresses = {m["id"]: m["address"] for m in metaservers}
    rows: list[list[object]] = [
        [
            s["shard"],
            s["metaserver"],
            addresses.get(s["metaserver"], ""),
            s["state"],
            s["estimated_keys"],
            format_bytes(s["disk_bytes"]),
            s["commits"],
        ]
        for s in shards
    ]
    headers = ["SHARD", "METASERVER", "ADDRESS", "STATE", "KEYS (EST.)", "DISK", "COMMITS"]
    return format_table(headers, rows, right_columns={0, 4, 5, 6})


def _shard_table(shards: list[dict[str, Any]]) -> str:
    rows: list[list[object]] = [
        [
            s["shard"],
            s["metaserver"],
            s["estimated_keys"],
            format_bytes(s["disk_bytes"]),
            s["gc_entries"],
            s["open_uploads"],
            s["commits"],
        ]
        for s in shards
    ]
    rows.append(
        [
            "total",
            "",
            sum(s["estimated_keys"] for s in shards),
            format_bytes(sum(s["disk_bytes"] for s in shards)),
            sum(s["gc_entries"] for s in shards),
            sum(s["open_uploads"] for s in shards),
            sum(s["commits"] for s in shards),
        ]
    )
    headers = ["SHARD", "METASERVER", "KEYS (EST.)", "DISK", "GC QUEUE", "OPEN UPLOADS", "COMMITS"]
    return format_table(headers, rows, right_columns={0, 2, 3, 4, 5, 6})
