"""Reports of corrupt chunks to the metaservers, which queue their objects for repair.

Each report goes to the metaserver serving the shard of the chunk's object,
found through the cluster map of the primary metaserver. Reports that fail
stay with the caller, which sends them again later.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import grpc

from dataserver.heartbeat import describe_rpc_error
from store._pb import meta_pb2
from store.channels import ChannelPool
from store.clustermap import ClusterView
from store.errors import Unavailable
from store.shardmap import shard_of

log = logging.getLogger(__name__)

# Bad chunks per ReportBadChunks request.
MAX_REPORT_CHUNKS = 1000


@dataclass(frozen=True, slots=True)
class BadChunkReport:
    """A corrupt chunk that the metaserver of its object's shard has not acknowledged yet."""

    chunk_id: bytes
    bucket: str
    key: bytes
    reason: str

    def to_json(self) -> dict[str, str]:
        return {
            "chunk_id": self.chunk_id.hex(),
            "bucket": self.bucket,
            "key": self.key.hex(),
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> BadChunkReport:
        return cls(
            bytes.fromhex(record["chunk_id"]),
            str(record["bucket"]),
            bytes.fromhex(record["key"]),
            str(record["reason"]),
        )


class BadChunkReporter:
    """Sends BadChunkReports with ReportBadChunks, one request per shard and batch."""

    def __init__(self, meta_address: str, dataserver_id: str, timeout_s: float) -> None:
        assert timeout_s > 0
        self.meta_address = meta_address
        self.dataserver_id = dataserver_id
        self.timeout_s = timeout_s
        self._pool = ChannelPool()
        self._unimplemented_logged = False

    async def send(self, reports: list[BadChunkReport]) -> list[BadChunkReport]:
        """Send the reports; return those that were not delivered, to retry later."""
        if not reports:
            return []
        try:
            view = await self._cluster_view()
        except grpc.RpcError as exc:
            log.warning(
                "bad chunk reports kept for later: cannot fetch the cluster map from "
                "metaserver %s: %s",
                self.meta_address,
                describe_rpc_error(exc),
            )
            return list(reports)
        by_shard: dict[int, list[BadChunkReport]] = defaultdict(list)
        for report in reports:
            by_shard[shard_of(report.bucket, report.key, view.shard_count)].append(report)
        undelivered: list[BadChunkReport] = []
        for shard, group in sorted(by_shard.items()):
            for start in range(0, len(group), MAX_REPORT_CHUNKS):
                batch = group[start : start + MAX_REPORT_CHUNKS]
                if not await self._send_batch(view, shard, batch):
                    undelivered.extend(batch)
        assert len(undelivered) <= len(reports)
        return undelivered

    async def _cluster_view(self) -> ClusterView:
        stub = self._pool.meta(self.meta_address)
        cluster_map = await stub.GetClusterMap(
            meta_pb2.GetClusterMapRequest(), timeout=self.timeout_s
        )
        view = ClusterView(cluster_map)
        if view.shard_count <= 0:
            raise Unavailable(f"cluster map epoch {view.epoch} has no shards")
        return view

    async def _send_batch(self, view: ClusterView, shard: int, batch: list[BadChunkReport]) -> bool:
        """Send one ReportBadChunks request; return whether the metaserver accepted it."""
        request = meta_pb2.ReportBadChunksRequest(shard=shard)
        for report in batch:
            request.chunks.add(
                bucket=report.bucket,
                key=report.key,
                chunk_id=report.chunk_id,
                dataserver_id=self.dataserver_id,
                reason=report.reason,
            )
        try:
            address = view.metaserver_for_shard(shard)
        except Unavailable as error:
            log.warning("bad chunk reports of shard=%d kept for later: %s", shard, error)
            return False
        try:
            reply = await self._pool.meta(address).ReportBadChunks(request, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            self._log_failure(exc, shard, address, len(batch))
            return False
        log.info(
            "reported bad chunks shard=%d metaserver=%s chunks=%d objects_queued=%d",
            shard,
            address,
            len(batch),
            reply.queued,
        )
        return True

    def _log_failure(self, exc: grpc.RpcError, shard: int, address: str, count: int) -> None:
        code = exc.code() if hasattr(exc, "code") else None
        if code == grpc.StatusCode.UNIMPLEMENTED:
            # A metaserver without ReportBadChunks: log it once, not once per pass.
            if not self._unimplemented_logged:
                log.info(
                    "metaserver %s does not implement ReportBadChunks yet; bad chunk reports "
                    "are kept and sent again on later scrub passes",
                    address,
                )
                self._unimplemented_logged = True
            return
        log.warning(
            "bad chunk reports of shard=%d kept for later: ReportBadChunks to metaserver %s "
            "failed for %d chunks: %s",
            shard,
            address,
            count,
            describe_rpc_error(exc),
        )

    async def close(self) -> None:
        await self._pool.close()
