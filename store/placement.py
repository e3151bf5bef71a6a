"""Placement of chunks on dataservers: a pure function of the cluster map and the chunk id.

Each upload ranks the eligible dataservers by rendezvous hashing of its
upload id, and stripe s puts its W chunks (copies, or data and parity
chunks) on consecutive entries of that ranking starting at s * W.
Consecutive stripes therefore land on different dataservers, every
dataserver gets an equal share of a large object, and different objects
start at different dataservers.

Failure domains: the ranking is first interleaved by domain, and walking it
from the stripe's start, a chunk skips dataservers whose domain the stripe
already uses. Only when fewer than W
domains have room do two chunks share a domain, never a dataserver, and the
layout records that it happened.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence

from store._pb import common_pb2 as pb
from store.errors import Unavailable


def eligible_dataservers(cluster_map: pb.ClusterMap, chunk_bytes: int) -> list[str]:
    """Return the ids of dataservers that can take a new chunk of `chunk_bytes`."""
    return sorted(
        info.id
        for info in cluster_map.dataservers
        if info.state == pb.DATASERVER_STATE_UP
        and not info.draining
        and info.free_bytes >= chunk_bytes
    )


def rank_dataservers(dataserver_ids: Sequence[str], upload_id: str) -> list[str]:
    """Order dataserver ids by rendezvous hash with the upload id (highest score first)."""
    seed = upload_id.encode()

    def score(dataserver_id: str) -> bytes:
        return hashlib.blake2b(seed + b"/" + dataserver_id.encode(), digest_size=8).digest()

    ranked = sorted(dataserver_ids, key=score, reverse=True)
    assert len(set(ranked)) == len(ranked), "dataserver ids must be unique"
    return ranked


def domains_of(cluster_map: pb.ClusterMap) -> dict[str, str]:
    """Return each dataserver's failure domain; one without a label is a domain of its own."""
    return {info.id: info.domain or info.id for info in cluster_map.dataservers}


def interleave_domains(ranking: Sequence[str], domains: Mapping[str, str]) -> list[str]:
    """Reorder a ranking so that consecutive entries come from different domains.

    Round-robin over the domains in the order of their best-ranked member, so
    stripes that take consecutive entries use every domain and every server
    equally. With one server per domain the ranking is unchanged.
    """
    members: dict[str, list[str]] = {}
    for server in ranking:
        members.setdefault(domains.get(server, server), []).append(server)
    interleaved: list[str] = []
    for rank in range(max((len(group) for group in members.values()), default=0)):
        interleaved.extend(group[rank] for group in members.values() if rank < len(group))
    return interleaved


def stripe_targets(
    ranking: Sequence[str],
    stripe_index: int,
    width: int,
    domains: Mapping[str, str] | None = None,
) -> list[str]:
    """Return the distinct dataservers for the `width` chunks of one stripe, in position order."""
    if width > len(ranking):
        advice = "start more dataservers"
        if width > 1:
            advice += " or create the bucket with a narrower scheme"
        noun = "dataserver" if width == 1 else "dataservers"
        raise Unavailable(
            f"placement needs {width} {noun} with free space but only "
            f"{len(ranking)} are up ({', '.join(ranking) or 'none'}); {advice}"
        )
    start = stripe_index * width
    order = [ranking[(start + step) % len(ranking)] for step in range(len(ranking))]
    targets = _spread(order, width, domains or {}, set())
    assert len(set(targets)) == width
    return targets


def replacement_target(
    ranking: Sequence[str],
    stripe_index: int,
    taken: Collection[str],
    avoid: Collection[str],
    domains: Mapping[str, str] | None = None,
) -> str | None:
    """Return a dataserver for a chunk that could not be written to its first target.

    The result is not in `taken` (the stripe's other targets) or `avoid` (targets
    that failed), and is in a domain of its own when one is left. Returns None
    when no dataserver is left.
    """
    width = max(len(taken), 1)
    start = stripe_index * width
    order = [ranking[(start + step) % len(ranking)] for step in range(len(ranking))]
    candidates = [server for server in order if server not in avoid]
    picked = _spread(candidates, 1, domains or {}, set(taken))
    return picked[0] if picked else None


def shares_domain(targets: Sequence[str], domains: Mapping[str, str]) -> bool:
    """Return True when two of the targets are in one failure domain."""
    labels = [domains.get(target, target) for target in targets]
    return len(set(labels)) < len(labels)


def _spread(
    order: Sequence[str], count: int, domains: Mapping[str, str], taken: set[str]
) -> list[str]:
    """Pick `count` servers from `order` (none of `taken`), new domains first."""
    used_domains = {domains.get(server, server) for server in taken}
    picked: list[str] = []
    for server in order:
        domain = domains.get(server, server)
        if server not in taken and domain not in used_domains:
            picked.append(server)
            used_domains.add(domain)
            if len(picked) == count:
                return picked
    for server in order:
        if server not in taken and server not in picked:
            picked.append(server)
            if len(picked) == count:
                break
    return picked
