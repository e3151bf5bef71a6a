"""Placement of chunks on dataservers: a pure function of the cluster map and the chunk id.

Each upload ranks the eligible dataservers by rendezvous hashing of its
upload id, and stripe s puts its copies on consecutive entries of that
ranking starting at s * replicas. Consecutive stripes therefore land on
different dataservers, every dataserver gets an equal share of a large
object, and different objects start at different dataservers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from store._pb import common_pb2 as pb
from store.errors import Unavailable


def eligible_dataservers(cluster_map: pb.ClusterMap, chunk_bytes: int) -> list[str]:
    """Return the ids of dataservers that can take a new chunk of `chunk_bytes`."""
    return sorted(
        info.id
        for info in cluster_map.dataservers
        if info.state == pb.DATASERVER_STATE_UP and info.free_bytes >= chunk_bytes
    )


def rank_dataservers(dataserver_ids: Sequence[str], upload_id: str) -> list[str]:
    """Order dataserver ids by rendezvous hash with the upload id (highest score first)."""
    seed = upload_id.encode()

    def score(dataserver_id: str) -> bytes:
        return hashlib.blake2b(seed + b"/" + dataserver_id.encode(), digest_size=8).digest()

    ranked = sorted(dataserver_ids, key=score, reverse=True)
    assert len(set(ranked)) == len(ranked), "dataserver ids must be unique"
    return ranked


def stripe_targets(ranking: Sequence[str], stripe_index: int, replicas: int) -> list[str]:
    """Return the dataservers for the copies of one stripe, all distinct."""
    if replicas > len(ranking):
        raise Unavailable(
            f"placement needs {replicas} dataservers with free space but only "
            f"{len(ranking)} are up ({', '.join(ranking) or 'none'}); start more dataservers "
            "or lower the replica count"
        )
    start = stripe_index * replicas
    targets = [ranking[(start + copy) % len(ranking)] for copy in range(replicas)]
    assert len(set(targets)) == replicas
    return targets
