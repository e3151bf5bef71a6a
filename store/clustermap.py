"""A read-only view of the cluster map with the lookups clients and servers need."""

from __future__ import annotations

from store._pb import common_pb2 as pb
from store.errors import Unavailable


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
        """Return True when the map says the dataserver takes new chunks and serves reads."""
        info = self.dataservers.get(dataserver_id)
        return info is not None and info.state == pb.DATASERVER_STATE_UP

    def is_down(self, dataserver_id: str) -> bool:
        """Return True when the map says the dataserver cannot serve reads (down or gone)."""
        info = self.dataservers.get(dataserver_id)
        return info is None or info.state == pb.DATASERVER_STATE_DOWN
