"""Deciding which chunks repair moves: lost, reported, draining, or on a fuller dataserver.

A chunk is rebuilt (decoded from the other chunks of its stripe) when its
dataserver is out or gone or when it was reported bad. It is copied (read
as it is and written elsewhere) when its dataserver is draining, or when
the dataserver stores more than its share and an emptier one can take it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from store._pb import common_pb2 as pb
from store.clustermap import ClusterView

# A dataserver within this fraction of the mean chunk count is balanced.
BALANCE_TOLERANCE = 0.05


@dataclass(frozen=True, slots=True)
class Move:
    """One chunk to put on another dataserver."""

    # True: decode it from the stripe's other chunks; False: copy the chunk itself.
    rebuild: bool
    # The destination chosen by balancing, or None to let placement choose.
    target: str | None = None


@dataclass(frozen=True, slots=True)
class PassState:
    """The dataserver states one repair pass works from."""

    view: ClusterView
    # Out, so their chunks are rebuilt.
    lost: frozenset[str]
    # Draining and still readable, so their chunks are copied.
    draining: frozenset[str]

    @classmethod
    def of(cls, view: ClusterView) -> PassState:
        servers = view.map.dataservers
        lost = frozenset(i.id for i in servers if i.state == pb.DATASERVER_STATE_OUT)
        draining = frozenset(i.id for i in servers if i.draining and i.id not in lost)
        return cls(view, lost, draining)

    def is_lost(self, target: str) -> bool:
        return target in self.lost or target not in self.view.dataservers


class Balancer:
    """Budgets of chunk moves from fuller to emptier dataservers for one pass.

    `counts` are the chunks this metaserver's layouts place on each eligible
    dataserver. Every metaserver balances its own shards, so the cluster as a
    whole evens out too.
    """

    def __init__(self, counts: Mapping[str, int], domains: Mapping[str, str]) -> None:
        self.domains = domains
        self.counts = dict(counts)
        mean = sum(counts.values()) / len(counts) if counts else 0.0
        low, high = mean * (1 - BALANCE_TOLERANCE), mean * (1 + BALANCE_TOLERANCE)
        # Balancing starts when a dataserver is off the mean by the tolerance and by at
        # least one chunk, and then moves chunks until no two differ by more than one.
        self.active = any(
            (c > high and c - mean >= 1) or (c < low and mean - c >= 1) for c in counts.values()
        )

    def pick(self, targets: list[str]) -> tuple[int, str] | None:
        """Return (position, destination) of one chunk of a stripe worth moving, or None."""
        if not self.active:
            return None
        for position, source in enumerate(targets):
            if source not in self.counts:
                continue
            destination = self._destination(targets, position)
            if destination is not None:
                self.counts[source] -= 1
                self.counts[destination] += 1
                return position, destination
        return None

    def _destination(self, targets: list[str], position: int) -> str | None:
        """Return the emptiest dataserver that can take the chunk at `position`, or None."""
        others = [t for p, t in enumerate(targets) if p != position]
        used = {self.domains.get(t, t) for t in others}
        source = targets[position]
        source_domain = self.domains.get(source, source)
        emptier = [s for s in self.counts if self.counts[source] - self.counts[s] >= 2]
        for server in sorted(emptier, key=lambda s: self.counts[s]):
            domain = self.domains.get(server, server)
            # Never move a chunk into a domain the stripe already uses, unless it moves
            # within its own domain (which keeps the stripe as spread as it was).
            if server not in targets and (domain not in used or domain == source_domain):
                return server
        return None


def plan_moves(
    record: pb.ObjectRecord,
    state: PassState,
    reported: frozenset[tuple[bytes, str]],
    balancer: Balancer | None,
) -> dict[int, dict[int, Move]]:
    """Return the moves of each stripe of an object that needs any, by stripe and position."""
    plan: dict[int, dict[int, Move]] = {}
    for index, stripe in enumerate(record.layout.stripes):
        moves: dict[int, Move] = {}
        for position, chunk in enumerate(stripe.chunks):
            if state.is_lost(chunk.target) or (chunk.chunk_id, chunk.target) in reported:
                moves[position] = Move(rebuild=True)
            elif chunk.target in state.draining:
                moves[position] = Move(rebuild=False)
        if not moves and balancer is not None:
            picked = balancer.pick([chunk.target for chunk in stripe.chunks])
            if picked is not None:
                moves[picked[0]] = Move(rebuild=False, target=picked[1])
        if moves:
            plan[index] = moves
    return plan


def count_chunks(records: Iterable[pb.ObjectRecord], eligible: list[str]) -> dict[str, int]:
    """Count the chunks the records place on each eligible dataserver."""
    counts = dict.fromkeys(eligible, 0)
    for record in records:
        for stripe in record.layout.stripes:
            for chunk in stripe.chunks:
                if chunk.target in counts:
                    counts[chunk.target] += 1
    return counts
