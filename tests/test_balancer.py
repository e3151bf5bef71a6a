"""Balancing plans: when moves start, where chunks go, and when they stop."""

from __future__ import annotations

import itertools

from metaserver.repair_plan import Balancer


def run_moves(counts: dict[str, int], width: int = 3) -> dict[str, int]:
    """Offer the balancer stripes over the servers until it stops moving chunks."""
    balancer = Balancer(counts, {})
    servers = sorted(counts)
    for targets in itertools.islice(itertools.cycle(itertools.combinations(servers, width)), 500):
        balancer.pick(list(targets))
    return balancer.counts


def test_one_full_server_evens_out() -> None:
    counts = {"a": 12, "b": 12, "c": 15, "d": 12, "e": 12, "f": 12, "g": 12}
    after = run_moves(counts)
    assert max(after.values()) - min(after.values()) <= 1, f"still uneven: {after}"
    assert sum(after.values()) == sum(counts.values()), "moves changed the chunk total"


def test_new_empty_server_fills_up() -> None:
    counts = {"a": 30, "b": 30, "c": 30, "d": 30, "e": 0}
    after = run_moves(counts)
    assert max(after.values()) - min(after.values()) <= 1, f"still uneven: {after}"


def test_balanced_counts_move_nothing() -> None:
    counts = {"a": 13, "b": 12, "c": 13, "d": 12}
    balancer = Balancer(counts, {})
    assert not balancer.active, "counts within one chunk started a rebalance"
    assert balancer.pick(["a", "b", "c"]) is None, "a balanced cluster moved a chunk"


def test_moves_keep_stripes_in_distinct_domains() -> None:
    domains = {"a1": "a", "a2": "a", "b1": "b", "c1": "c"}
    balancer = Balancer({"a1": 20, "a2": 0, "b1": 20, "c1": 20}, domains)
    picked = balancer.pick(["b1", "c1", "a1"])
    assert picked == (2, "a2"), f"expected a1's chunk to move within rack a, got {picked}"
