"""The cluster map authority: dataserver registry, heartbeats, failure detection, epoch.

State lives in the metaserver's system database so a restart keeps the
registry and never reuses an epoch. The epoch grows on every change that
can invalidate a client's placement or routing: a dataserver joins, changes
address or state, or shard ownership changes. Capacity updates from
heartbeats do not change the epoch.

Failure detection measures the silence since a dataserver's last heartbeat
on the monotonic clock:

| silence                | state   | new chunks | reads                    |
| ---------------------- | ------- | ---------- | ------------------------ |
| up to `suspect_s`      | up      | yes        | tried first              |
| over `suspect_s`       | suspect | no         | tried after up copies    |
| over `down_s`          | down    | no         | tried last               |
| over `down_s + out_s`  | out     | no         | tried last; to rebuild   |

A heartbeat or registration brings any state back to up. Silence alone
only moves a dataserver down that table, so a dataserver loaded as
suspect, down or out after a restart returns to up only by heartbeating.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import rocksdict

from store._pb import common_pb2 as pb
from store.clustermap import counted_dataservers, state_name
from store.errors import InvalidArgument, NotFound, PreconditionFailed
from store.shardmap import format_shard_ranges

log = logging.getLogger(__name__)

_EPOCH_KEY = b"E"
_CONFIG_KEY = b"C"
_DATASERVER_TAG = b"D"
_METASERVER_TAG = b"M"

# The order in which silence moves a dataserver's state.
_STATE_RANK = {
    pb.DATASERVER_STATE_UP: 0,
    pb.DATASERVER_STATE_SUSPECT: 1,
    pb.DATASERVER_STATE_DOWN: 2,
    pb.DATASERVER_STATE_OUT: 3,
}


@dataclass(frozen=True)
class FailureTimeouts:
    """Seconds of heartbeat silence before each state change of a dataserver."""

    # Silence before up becomes suspect. Invariant: 0 < suspect_s < down_s.
    suspect_s: float
    # Silence before suspect becomes down.
    down_s: float
    # Time spent down before down becomes out. Invariant: out_s > 0.
    out_s: float

    def validate(self) -> None:
        """Raise InvalidArgument naming the metaserver flag that breaks an invariant."""
        for flag, value in (
            ("--dataserver-suspect-s", self.suspect_s),
            ("--dataserver-timeout-s", self.down_s),
            ("--dataserver-out-s", self.out_s),
        ):
            if not value > 0:
                raise InvalidArgument(f"{flag} {value} must be positive")
        if self.suspect_s >= self.down_s:
            raise InvalidArgument(
                f"--dataserver-suspect-s {self.suspect_s} must be below --dataserver-timeout-s "
                f"{self.down_s}; lower the first or raise the second"
            )


def state_after_silence(
    state: pb.DataserverState.ValueType, silence_s: float, timeouts: FailureTimeouts
) -> pb.DataserverState.ValueType:
    """Return the state of a dataserver in `state` whose last heartbeat was `silence_s` ago.

    The result never comes before `state` in the order up, suspect, down, out,
    because only a heartbeat moves a dataserver back to up.
    """
    assert state in _STATE_RANK, f"dataserver state {state} is not a known state"
    assert silence_s >= 0, f"negative heartbeat silence {silence_s}"
    if silence_s > timeouts.down_s + timeouts.out_s:
        timed = pb.DATASERVER_STATE_OUT
    elif silence_s > timeouts.down_s:
        timed = pb.DATASERVER_STATE_DOWN
    elif silence_s > timeouts.suspect_s:
        timed = pb.DATASERVER_STATE_SUSPECT
    else:
        timed = pb.DATASERVER_STATE_UP
    return max(state, timed, key=lambda candidate: _STATE_RANK[candidate])


class Membership:
    """Tracks dataservers and metaservers and builds the versioned cluster map."""

    def __init__(
        self,
        db: rocksdict.Rdict,
        config: pb.ClusterMap,
        timeouts: FailureTimeouts,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        timeouts.validate()
        self._db = db
        self._sync = rocksdict.WriteOptions()
        self._sync.sync = True
        self.config = config
        self.timeouts = timeouts
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
            # Monotonic times do not survive a restart, so a dataserver that was down goes out
            # only after down_s + out_s more, and one that was out stays out until it heartbeats.
            self._last_seen_s[info.id] = now_s
        for value in self._scan(_METASERVER_TAG):
            metaserver = pb.MetaserverInfo.FromString(value)
            self.metaservers[metaserver.id] = metaserver
        log.info(
            "loaded %d dataservers (%d not out) and %d metaservers, epoch=%d",
            len(self.dataservers),
            counted_dataservers(self.dataservers.values()),
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
        """Record a metaserver; bumps the epoch when routing changed.

        A new metaserver brings the shards of its --shards flag; raises InvalidArgument
        when another metaserver already serves one of them. A known one keeps the shards
        the map assigns it, whatever it declares: shards change owner only by a move.
        """
        known = self.metaservers.get(info.id)
        record = pb.MetaserverInfo()
        record.CopyFrom(info)
        record.last_heartbeat_unix_ms = int(time.time() * 1000)
        if known is None:
            self._check_unclaimed(info)
        else:
            del record.shards[:]
            record.shards.extend(known.shards)
        self.metaservers[info.id] = record
        changed = known is None or known.address != info.address or known.primary != info.primary
        if not changed:
            return
        self._persist([], bump_epoch=True, metaservers=[record])
        log.info(
            "metaserver registered id=%s address=%s shards=%s primary=%s epoch=%d",
            info.id,
            info.address,
            format_shard_ranges(list(record.shards)),
            info.primary,
            self.epoch,
        )

    def _check_unclaimed(self, info: pb.MetaserverInfo) -> None:
        for other in self.metaservers.values():
            overlap = set(other.shards) & set(info.shards)
            if overlap:
                raise InvalidArgument(
                    f"metaserver {info.id} at {info.address} claims shards "
                    f"{format_shard_ranges(sorted(overlap))} already served by metaserver "
                    f"{other.id} at {other.address}; give each metaserver distinct --shards"
                )

    def metaserver(self, name: str) -> pb.MetaserverInfo:
        """Return the metaserver whose id or address is `name`; raise NotFound when none is."""
        for info in self.metaservers.values():
            if name in (info.id, info.address):
                return info
        known = ", ".join(f"{m.id} ({m.address})" for m in self.metaservers.values())
        raise NotFound(f"no metaserver has id or address {name!r}; known: {known}")

    def shard_owner(self, shard: int) -> pb.MetaserverInfo:
        for info in self.metaservers.values():
            if shard in info.shards:
                return info
        raise NotFound(f"no metaserver serves shard {shard} at epoch {self.epoch}")

    def assign_shard(self, shard: int, source_id: str, target_id: str) -> None:
        """Give `shard` from one metaserver to another in one persisted epoch."""
        source = self.metaservers[source_id]
        target = self.metaservers[target_id]
        assert shard in source.shards
        assert shard not in target.shards
        remaining = [number for number in source.shards if number != shard]
        del source.shards[:]
        source.shards.extend(remaining)
        target.shards.extend([shard])
        target.shards.sort()
        self._persist([], bump_epoch=True, metaservers=[source, target])
        log.info(
            "shard=%d assigned from metaserver %s to %s epoch=%d",
            shard,
            source_id,
            target_id,
            self.epoch,
        )

    def register(self, info: pb.DataserverInfo) -> None:
        """Add a dataserver or bring it back up; bumps the epoch on any change that matters."""
        known = self.dataservers.get(info.id)
        now_s = self._clock()
        silence_s = now_s - self._last_seen_s.get(info.id, now_s)
        self._last_seen_s[info.id] = now_s
        record = pb.DataserverInfo()
        record.CopyFrom(info)
        record.state = pb.DATASERVER_STATE_UP
        record.last_heartbeat_unix_ms = int(time.time() * 1000)
        # Draining is an operator's decision, kept across restarts of the dataserver.
        record.draining = known is not None and known.draining
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
                "dataserver rejoined id=%s address=%s previous_address=%s state=%s->up "
                "since_heartbeat_s=%.1f epoch=%d",
                info.id,
                info.address,
                known.address,
                state_name(known.state),
                silence_s,
                self.epoch,
            )

    def heartbeat(self, info: pb.DataserverInfo) -> bool:
        """Record a heartbeat; return False when the dataserver must register first.

        A heartbeat from a suspect, down or out dataserver registers it again as up.
        """
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
        known.scrubbed_chunks = info.scrubbed_chunks
        known.scrubbed_bytes = info.scrubbed_bytes
        known.corrupt_chunks = info.corrupt_chunks
        known.scrub_started_unix_ms = info.scrub_started_unix_ms
        known.last_scrub_unix_ms = info.last_scrub_unix_ms
        known.last_heartbeat_unix_ms = int(time.time() * 1000)
        return True

    def check_timeouts(self) -> list[str]:
        """Move dataservers whose heartbeats stopped to suspect, down or out.

        Returns the ids of the dataservers whose state changed. All changes of one
        call are persisted in one batch with one epoch bump.
        """
        now_s = self._clock()
        changes: list[tuple[pb.DataserverInfo, pb.DataserverState.ValueType, float]] = []
        for info in self.dataservers.values():
            silence_s = now_s - self._last_seen_s[info.id]
            state = state_after_silence(info.state, silence_s, self.timeouts)
            if state != info.state:
                changes.append((info, info.state, silence_s))
                info.state = state
        if not changes:
            return []
        self._persist([info for info, _, _ in changes], bump_epoch=True)
        for info, old_state, silence_s in changes:
            log.warning(
                "dataserver state changed id=%s address=%s state=%s->%s since_heartbeat_s=%.1f "
                "epoch=%d",
                info.id,
                info.address,
                state_name(old_state),
                state_name(info.state),
                silence_s,
                self.epoch,
            )
        return [info.id for info, _, _ in changes]

    def set_draining(self, dataserver_id: str, draining: bool) -> pb.DataserverInfo:
        """Start or stop draining a dataserver; bumps the epoch when the flag changes."""
        info = self.get(dataserver_id)
        if info.draining != draining:
            info.draining = draining
            self._persist([info], bump_epoch=True)
            log.info(
                "dataserver %s id=%s address=%s epoch=%d",
                "draining" if draining else "no longer draining",
                info.id,
                info.address,
                self.epoch,
            )
        return info

    def remove(self, dataserver_id: str) -> None:
        """Forget a stopped dataserver; the caller checked that no layout names it."""
        info = self.get(dataserver_id)
        if info.state == pb.DATASERVER_STATE_UP:
            raise PreconditionFailed(
                f"dataserver {dataserver_id} at {info.address} is up; stop its process first, "
                "or it registers again. If you just stopped it, wait until `storectl node ls` "
                "shows it suspect (a few seconds), then remove it"
            )
        del self.dataservers[dataserver_id]
        self._last_seen_s.pop(dataserver_id, None)
        self.epoch += 1
        batch = rocksdict.WriteBatch(raw_mode=True)
        batch.delete(_DATASERVER_TAG + dataserver_id.encode())
        batch.put(_EPOCH_KEY, self.epoch.to_bytes(8, "big"))
        self._db.write(batch, self._sync)
        log.info(
            "dataserver removed id=%s address=%s epoch=%d", dataserver_id, info.address, self.epoch
        )

    def get(self, dataserver_id: str) -> pb.DataserverInfo:
        """Return a dataserver's record; raise NotFound when the map lacks it."""
        info = self.dataservers.get(dataserver_id)
        if info is None:
            raise NotFound(
                f"dataserver {dataserver_id!r} is not in the cluster map; list the dataservers "
                "with storectl node ls"
            )
        return info

    def adopt_map(self, cluster_map: pb.ClusterMap) -> None:
        """Nothing to do: the primary's map is the one others adopt."""

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
