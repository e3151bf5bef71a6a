"""A read-only view of the cluster map with the lookups clients and servers need."""

from __future__ import annotations

from collections.abc import Iterable

from store._pb import common_pb2 as pb
from store.errors import Unavailable

_STATE_PREFIX = "DATASERVER_STATE_"

# Readers try the copies on up dataservers first, then those on suspect ones, then the rest.
_READ_RANK = {pb.DATASERVER_STATE_UP: 0, pb.DATASERVER_STATE_SUSPECT: 1}
_READ_RANK_OTHER = 2


def state_name(state: pb.DataserverState.ValueType) -> str:
    """Return a DataserverState as the lowercase word that logs and storectl show (up, out)."""
    return pb.DataserverState.Name(state).removeprefix(_STATE_PREFIX).lower()


def counted_dataservers(dataservers: Iterable[pb.DataserverInfo]) -> int:
    """Count the dataservers that make up the cluster's size: every one that is not out."""
    return sum(1 for info in dataservers if info.state != pb.DATASERVER_STATE_OUT)


class ClusterView:
    """Indexes one ClusterMap by dataserver id and by shard."""

    def __init__(self, cluster_map: pb.ClusterMap) -> None:
        self.map = cluster_map
        self.epoch = cluster_map.epoch
        self.shard_count = cluster_map.shard_count
        self.dataservers: dict[str, pb.DataserverInfo] = {d.id: d for d in cluster_map.dataservers}
        self._shard_owner: dict[int, str] = {}
        for metaserver in cluster_map.metaservers:
            for shard in metaserver.shards:
                self._shard_owner[shard] = metaserver.address
        self.metaserver_addresses = sorted({m.address for m in cluster_map.metaservers})
        primaries = [m.address for m in cluster_map.metaservers if m.primary]
        # Bucket operations go to the primary, which holds the bucket catalog.
        self.primary_address = primaries[0] if primaries else None

    def metaserver_for_shard(self, shard: int) -> str:
        """Return the address of the metaserver serving `shard`."""
        try:
            return self._shard_owner[shard]
        except KeyError:
            raise Unavailable(
                f"no metaserver serves shard {shard} in cluster map epoch {self.epoch}"
            ) from None

    def shards_of(self, address: str) -> list[int]:
        """Return the shards the map assigns to the metaserver at `address`."""
        return sorted(shard for shard, owner in self._shard_owner.items() if owner == address)

    def dataserver_address(self, dataserver_id: str) -> str:
        """Return the address of a dataserver named in a layout."""
        info = self.dataservers.get(dataserver_id)
        if info is None:
            raise Unavailable(
                f"dataserver {dataserver_id} is not in cluster map epoch {self.epoch}; it was "
                "removed, so its chunks cannot be read"
            )
        return info.address

    def is_up(self, dataserver_id: str) -> bool:
        """Return True when the map shows the dataserver up, taking chunks and serving reads."""
        info = self.dataservers.get(dataserver_id)
        return info is not None and info.state == pb.DATASERVER_STATE_UP

    def read_rank(self, dataserver_id: str) -> int:
        """Rank a dataserver for reads: 0 when up, 1 when suspect, 2 otherwise or unknown."""
        info = self.dataservers.get(dataserver_id)
        if info is None:
            return _READ_RANK_OTHER
        return _READ_RANK.get(info.state, _READ_RANK_OTHER)

    def is_readable(self, dataserver_id: str) -> bool:
        """Return whether a dataserver is up or suspect, so a read of it may succeed soon."""
        return self.read_rank(dataserver_id) < _READ_RANK_OTHER
