"""The cluster map authority: dataserver registry, heartbeats, failure detection, epoch.

State lives in the metaserver's system database so a restart keeps the
registry and never reuses an epoch. The epoch grows on every change that
can invalidate a client's placement or routing: a dataserver joins, changes
address or state, or shard ownership changes. Capacity updates from
heartbeats do not change the epoch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import rocksdict

from store._pb import common_pb2 as pb
from store.errors import InvalidArgument
from store.shardmap import format_shard_ranges

log = logging.getLogger(__name__)

_EPOCH_KEY = b"E"
_CONFIG_KEY = b"C"
_DATASERVER_TAG = b"D"
_METASERVER_TAG = b"M"


class Membership:
    """Tracks dataservers and metaservers and builds the versioned cluster map."""

    def __init__(
        self,
        db: rocksdict.Rdict,
        config: pb.ClusterMap,
        dataserver_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert dataserver_timeout_s > 0
        self._db = db
        self._sync = rocksdict.WriteOptions()
        self._sync.sync = True
        self.config = config
        self.dataserver_timeout_s = dataserver_timeout_s
        self._clock = clock
        stored_epoch = db.get(_EPOCH_KEY)
        self.epoch = int.from_bytes(stored_epoch, "big") if stored_epoch else 0
        self.metaservers: dict[str, pb.MetaserverInfo] = {}
        self.dataservers: dict[str, pb.DataserverInfo] = {}
        self._last_seen_s: dict[str, float] = {}
        self._load()

    def _load(self) -> None:
        now_s = self._clock()
        for value in self._scan(_DATASERVER_TAG):
            info = pb.DataserverInfo.FromString(value)
            self.dataservers[info.id] = info
            # A restarted metaserver gives every known dataserver a full timeout to check in.
            self._last_seen_s[info.id] = now_s
        for value in self._scan(_METASERVER_TAG):
            metaserver = pb.MetaserverInfo.FromString(value)
            self.metaservers[metaserver.id] = metaserver
        log.info(
            "loaded %d dataservers and %d metaservers, epoch=%d",
            len(self.dataservers),
            len(self.metaservers),
            self.epoch,
        )

    def _scan(self, tag: bytes) -> list[bytes]:
        values = []
        iterator = self._db.iter()
        iterator.seek(tag)
        while iterator.valid() and iterator.key().startswith(tag):
            values.append(iterator.value())
            iterator.next()
        return values

    @staticmethod
    def load_config(db: rocksdict.Rdict) -> pb.ClusterMap | None:
        value = db.get(_CONFIG_KEY)
        return None if value is None else pb.ClusterMap.FromString(value)

    @staticmethod
    def store_config(db: rocksdict.Rdict, config: pb.ClusterMap) -> None:
        options = rocksdict.WriteOptions()
        options.sync = True
        batch = rocksdict.WriteBatch(raw_mode=True)
        batch.put(_CONFIG_KEY, config.SerializeToString())
        db.write(batch, options)

    def _persist(
        self,
        changed: list[pb.DataserverInfo],
        bump_epoch: bool,
        metaservers: list[pb.MetaserverInfo] | None = None,
    ) -> None:
        batch = rocksdict.WriteBatch(raw_mode=True)
        for info in changed:
            batch.put(_DATASERVER_TAG + info.id.encode(), info.SerializeToString())
        for metaserver in metaservers or ():
            batch.put(_METASERVER_TAG + metaserver.id.encode(), metaserver.SerializeToString())
        if bump_epoch:
            self.epoch += 1
            batch.put(_EPOCH_KEY, self.epoch.to_bytes(8, "big"))
        self._db.write(batch, self._sync)

    def register_metaserver(self, info: pb.MetaserverInfo) -> None:
        """Record a metaserver and its shards; bumps the epoch when routing changed.

        Raises InvalidArgument when another metaserver already serves one of its shards.
        """
        for other in self.metaservers.values():
            overlap = set(other.shards) & set(info.shards)
            if other.id != info.id and overlap:
                raise InvalidArgument(
                    f"metaserver {info.id} at {info.address} claims shards "
                    f"{format_shard_ranges(sorted(overlap))} already served by metaserver "
                    f"{other.id} at {other.address}; give each metaserver distinct --shards"
                )
        known = self.metaservers.get(info.id)
        record = pb.MetaserverInfo()
        record.CopyFrom(info)
        record.last_heartbeat_unix_ms = int(time.time() * 1000)
        self.metaservers[info.id] = record
        changed = (
            known is None
            or known.address != info.address
            or list(known.shards) != list(info.shards)
            or known.primary != info.primary
        )
        if not changed:
            return
        self._persist([], bump_epoch=True, metaservers=[record])
        log.info(
            "metaserver registered id=%s address=%s shards=%s primary=%s epoch=%d",
            info.id,
            info.address,
            format_shard_ranges(list(info.shards)),
            info.primary,
            self.epoch,
        )

    def register(self, info: pb.DataserverInfo) -> None:
        """Add a dataserver or bring it back up; bumps the epoch on any change that matters."""
        known = self.dataservers.get(info.id)
        self._last_seen_s[info.id] = self._clock()
        record = pb.DataserverInfo()
        record.CopyFrom(info)
        record.state = pb.DATASERVER_STATE_UP
        record.last_heartbeat_unix_ms = int(time.time() * 1000)
        changed = (
            known is None
            or known.address != record.address
            or known.state != record.state
            or known.domain != record.domain
        )
        self.dataservers[info.id] = record
        self._persist([record], bump_epoch=changed)
        if known is None:
            log.info(
                "dataserver joined id=%s address=%s epoch=%d", info.id, info.address, self.epoch
            )
        elif changed:
            log.info(
                "dataserver rejoined id=%s address=%s (was %s, %s) epoch=%d",
                info.id,
                info.address,
                known.address,
                pb.DataserverState.Name(known.state),
                self.epoch,
            )

    def heartbeat(self, info: pb.DataserverInfo) -> bool:
        """Record a heartbeat; return False when the dataserver must register first."""
        known = self.dataservers.get(info.id)
        if known is None or known.address != info.address:
            return False
        if known.state != pb.DATASERVER_STATE_UP:
            self.register(info)
            return True
        self._last_seen_s[info.id] = self._clock()
        known.capacity_bytes = info.capacity_bytes
        known.free_bytes = info.free_bytes
        known.used_bytes = info.used_bytes
        known.chunk_count = info.chunk_count
        known.last_heartbeat_unix_ms = int(time.time() * 1000)
        return True

    def check_timeouts(self) -> list[str]:
        """Mark dataservers that missed heartbeats for the timeout as down; return their ids."""
        now_s = self._clock()
        expired = [
            info
            for info in self.dataservers.values()
            if info.state == pb.DATASERVER_STATE_UP
            and now_s - self._last_seen_s.get(info.id, now_s) > self.dataserver_timeout_s
        ]
        if not expired:
            return []
        for info in expired:
            info.state = pb.DATASERVER_STATE_DOWN
        self._persist(expired, bump_epoch=True)
        for info in expired:
            log.warning(
                "dataserver down id=%s address=%s: no heartbeat for %.1fs, epoch=%d",
                info.id,
                info.address,
                self.dataserver_timeout_s,
                self.epoch,
            )
        return [info.id for info in expired]

    def cluster_map(self) -> pb.ClusterMap:
        cluster_map = pb.ClusterMap()
        cluster_map.CopyFrom(self.config)
        cluster_map.epoch = self.epoch
        cluster_map.metaservers.extend(
            self.metaservers[metaserver_id] for metaserver_id in sorted(self.metaservers)
        )
        cluster_map.dataservers.extend(
            self.dataservers[dataserver_id] for dataserver_id in sorted(self.dataservers)
        )
        return cluster_map
