"""A secondary metaserver's link to the primary.

The secondary registers its shards with the primary and repeats the call
every interval as its heartbeat. Each reply carries the cluster map when
its epoch changed and the bucket list when buckets changed, so the
secondary routes, validates layouts and checks buckets from local copies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc

from metaserver.catalog import BucketMirror
from store._pb import common_pb2 as pb
from store._pb import meta_pb2
from store.channels import ChannelPool
from store.errors import NoSuchBucket, StoreError, Unavailable
from store.rpc import error_from_rpc

log = logging.getLogger(__name__)

REGISTER_BACKOFF_S_MAX = 5.0


class PrimaryLink:
    """Mirrors the primary's cluster map and buckets; offers the Membership read interface."""

    def __init__(
        self,
        primary_address: str,
        info: pb.MetaserverInfo,
        buckets: BucketMirror,
        interval_s: float,
        timeout_s: float,
    ) -> None:
        assert interval_s > 0 and timeout_s > 0
        self.primary_address = primary_address
        self.info = info
        self.buckets = buckets
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._channels = ChannelPool()
        self.map = pb.ClusterMap()
        self.dataservers: dict[str, pb.DataserverInfo] = {}
        self.failures = 0
        # Called with each newer map, so the metaserver serves the shards it assigns.
        self.on_map: Callable[[pb.ClusterMap], None] | None = None

    # The read interface shared with Membership.

    @property
    def epoch(self) -> int:
        return self.map.epoch

    @property
    def config(self) -> pb.ClusterMap:
        return self.map

    def cluster_map(self) -> pb.ClusterMap:
        return self.map

    def primary(self) -> object:
        """Return the primary's MetaService stub."""
        return self._channels.meta(self.primary_address)

    # The link.

    async def register(self, deadline_s: float) -> None:
        """Register until the primary accepts, retrying with backoff for up to `deadline_s`."""
        backoff_s = 0.1
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline_s
        while True:
            try:
                await self.sync_once()
                log.info(
                    "registered with primary %s: shards served here, epoch=%d",
                    self.primary_address,
                    self.epoch,
                )
                return
            except Unavailable as error:
                if loop.time() + backoff_s > end:
                    raise
                log.warning(
                    "registration with primary %s failed, retry in %.1fs: %s",
                    self.primary_address,
                    backoff_s,
                    error,
                )
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, REGISTER_BACKOFF_S_MAX)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.sync_once()
            except StoreError as error:
                self.failures += 1
                if self.failures == 1 or self.failures % 30 == 0:
                    log.warning(
                        "heartbeat to primary %s failed (%d in a row): %s",
                        self.primary_address,
                        self.failures,
                        error,
                    )
                continue
            if self.failures:
                log.info(
                    "heartbeat to primary %s works again after %d failures",
                    self.primary_address,
                    self.failures,
                )
                self.failures = 0

    async def sync_once(self) -> None:
        request = meta_pb2.RegisterMetaserverRequest(
            info=self.info, known_epoch=self.map.epoch, known_bucket_version=self.buckets.version
        )
        try:
            reply = await self._channels.meta(self.primary_address).RegisterMetaserver(
                request, timeout=self.timeout_s
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, f"primary metaserver {self.primary_address}") from None
        if reply.HasField("map") and reply.map.epoch >= self.map.epoch:
            self.adopt_map(reply.map)
            if self.on_map is not None:
                self.on_map(self.map)
        if reply.buckets_changed:
            self.buckets.replace_all(list(reply.buckets), reply.bucket_version)

    def adopt_map(self, cluster_map: pb.ClusterMap) -> None:
        """Use `cluster_map` from now on unless the copy here is newer."""
        if cluster_map.epoch < self.map.epoch:
            return
        if cluster_map.epoch != self.map.epoch:
            log.info("cluster map from primary epoch=%d->%d", self.map.epoch, cluster_map.epoch)
        self.map = cluster_map
        self.dataservers = {info.id: info for info in cluster_map.dataservers}

    async def ensure_bucket(self, name: str) -> None:
        """Learn a bucket from the primary when the mirror does not have it yet."""
        if name in self.buckets.buckets:
            return
        try:
            record = await self._channels.meta(self.primary_address).HeadBucket(
                meta_pb2.HeadBucketRequest(name=name), timeout=self.timeout_s
            )
        except grpc.RpcError as exc:
            error = error_from_rpc(exc, f"primary metaserver {self.primary_address}")
            if isinstance(error, NoSuchBucket):
                raise NoSuchBucket(
                    f"bucket {name!r} does not exist; check its name, or create it first"
                ) from None
            raise error from None
        self.buckets.learn(record)

    async def close(self) -> None:
        await self._channels.close()
