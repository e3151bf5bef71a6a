"""Unit tests of store/placement.py: deterministic, spread and distinct placement."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from store._pb import common_pb2 as pb
from store.errors import Unavailable
from store.placement import (
    eligible_dataservers,
    interleave_domains,
    rank_dataservers,
    replacement_target,
    shares_domain,
    stripe_targets,
)

DATASERVERS = [f"ds-{index:02d}" for index in range(6)]
UPLOAD_IDS = [f"{index:032x}" for index in range(1, 201)]


def test_rank_deterministic() -> None:
    ranking = rank_dataservers(DATASERVERS, UPLOAD_IDS[0])
    shuffled = DATASERVERS[:]
    random.Random(1).shuffle(shuffled)

    assert rank_dataservers(DATASERVERS, UPLOAD_IDS[0]) == ranking, "same input, other ranking"
    assert rank_dataservers(shuffled, UPLOAD_IDS[0]) == ranking, "input order changed the ranking"
    assert sorted(ranking) == sorted(DATASERVERS), "the ranking lost or added dataservers"


def test_rank_stable_without_member() -> None:
    """Removing a dataserver keeps the order of the others (rendezvous hashing)."""
    for upload_id in UPLOAD_IDS[:20]:
        ranking = rank_dataservers(DATASERVERS, upload_id)
        removed = ranking[2]
        smaller = rank_dataservers([d for d in DATASERVERS if d != removed], upload_id)
        assert smaller == [d for d in ranking if d != removed], f"order changed for {upload_id}"


def test_rank_differs_per_upload() -> None:
    firsts = Counter(rank_dataservers(DATASERVERS, upload_id)[0] for upload_id in UPLOAD_IDS)
    for dataserver in DATASERVERS:
        share = firsts[dataserver]
        assert share >= len(UPLOAD_IDS) / len(DATASERVERS) / 2, (
            f"{dataserver} ranks first for only {share} of {len(UPLOAD_IDS)} uploads: {firsts}"
        )


@pytest.mark.parametrize("servers", [2, 3, 4, 6])
def test_consecutive_stripes_differ(servers: int) -> None:
    ranking = rank_dataservers(DATASERVERS[:servers], UPLOAD_IDS[0])
    for stripe in range(50):
        current = stripe_targets(ranking, stripe, 1)
        following = stripe_targets(ranking, stripe + 1, 1)
        assert current != following, f"stripes {stripe} and {stripe + 1} share dataserver {current}"


@pytest.mark.parametrize(("servers", "replicas"), [(4, 1), (5, 2), (6, 3), (3, 3)])
def test_stripe_copies_distinct(servers: int, replicas: int) -> None:
    ranking = rank_dataservers(DATASERVERS[:servers], UPLOAD_IDS[1])
    for stripe in range(40):
        targets = stripe_targets(ranking, stripe, replicas)
        assert len(targets) == replicas, f"stripe {stripe} got {len(targets)} copies"
        assert len(set(targets)) == replicas, f"stripe {stripe} copies share a server: {targets}"


@pytest.mark.parametrize(("servers", "replicas"), [(4, 1), (5, 1), (6, 2), (5, 3)])
def test_spread_even(servers: int, replicas: int) -> None:
    ranking = rank_dataservers(DATASERVERS[:servers], UPLOAD_IDS[2])
    stripes = servers * 20
    counts = Counter(
        target for stripe in range(stripes) for target in stripe_targets(ranking, stripe, replicas)
    )
    assert set(counts) == set(ranking), f"some dataservers got no chunks: {counts}"
    assert max(counts.values()) - min(counts.values()) <= 1, f"uneven spread: {counts}"


def test_too_few_dataservers() -> None:
    ranking = rank_dataservers(DATASERVERS[:2], UPLOAD_IDS[0])

    with pytest.raises(Unavailable) as caught:
        stripe_targets(ranking, 0, 3)
    message = str(caught.value)
    assert "3" in message, f"the error does not give the replica count: {message}"
    assert "2" in message, f"the error does not give the dataserver count: {message}"


def test_eligible_dataservers() -> None:
    cluster_map = pb.ClusterMap(
        dataservers=[
            pb.DataserverInfo(id="ds-c", state=pb.DATASERVER_STATE_UP, free_bytes=10 << 20),
            pb.DataserverInfo(id="ds-a", state=pb.DATASERVER_STATE_UP, free_bytes=1 << 20),
            pb.DataserverInfo(id="ds-b", state=pb.DATASERVER_STATE_DOWN, free_bytes=10 << 20),
            pb.DataserverInfo(id="ds-d", state=pb.DATASERVER_STATE_UP, free_bytes=(1 << 20) - 1),
        ]
    )

    assert eligible_dataservers(cluster_map, 1 << 20) == ["ds-a", "ds-c"], (
        "eligible dataservers must be up, have room for the chunk, and come sorted"
    )


def test_interleaved_ranking_gives_each_stripe_distinct_domains() -> None:
    domains = {f"ds-{i}": f"rack-{i % 3}" for i in range(9)}
    ranking = interleave_domains(rank_dataservers(sorted(domains), "upload-x"), domains)
    counts: dict[str, int] = {}
    for stripe in range(300):
        targets = stripe_targets(ranking, stripe, 3, domains)
        racks = {domains[target] for target in targets}
        assert len(racks) == 3, f"stripe {stripe} shares a rack: {targets}"
        for target in targets:
            counts[target] = counts.get(target, 0) + 1
    assert max(counts.values()) - min(counts.values()) <= 1, f"uneven spread: {counts}"


def test_few_domains_share_not_servers() -> None:
    domains = {"a1": "a", "a2": "a", "b1": "b", "b2": "b"}
    ranking = interleave_domains(rank_dataservers(sorted(domains), "upload-y"), domains)
    for stripe in range(20):
        targets = stripe_targets(ranking, stripe, 3, domains)
        assert len(set(targets)) == 3, f"stripe {stripe} repeats a server: {targets}"
        assert shares_domain(targets, domains), "three chunks in two domains must share one"


def test_replacement_avoids_taken_and_failed() -> None:
    domains = {"a1": "a", "a2": "a", "b1": "b", "c1": "c", "d1": "d"}
    ranking = rank_dataservers(sorted(domains), "upload-z")
    replacement = replacement_target(ranking, 0, ["a1", "b1"], ["c1"], domains)
    assert replacement == "d1", f"expected the only server in a new domain, got {replacement}"
    replacement = replacement_target(ranking, 0, ["a1", "b1", "d1"], ["c1"], domains)
    assert replacement == "a2", f"expected a2 once no new domain is left, got {replacement}"
    assert replacement_target(ranking, 0, ["a1", "a2", "b1", "d1"], ["c1"], domains) is None
