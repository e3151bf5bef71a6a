"""The SDK's connection to a cluster: channels, the cached cluster map, and metadata calls.

Metadata calls go to the metaserver that serves the key's shard. A call that
fails with StaleEpoch refreshes the map and is retried; a call that fails
with Unavailable is retried with backoff when it is safe to repeat.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import grpc

from store._pb import common_pb2 as pb
from store._pb import meta_pb2
from store.channels import ChannelPool
from store.clustermap import ClusterView
from store.errors import StaleEpoch, StoreError, Timeout, Unavailable
from store.rpc import error_from_rpc
from store.shardmap import shard_of

if TYPE_CHECKING:
    from store._pb.meta_pb2_grpc import MetaServiceAsyncStub

log = logging.getLogger(__name__)

T = TypeVar("T")

# Bounded retries of one metadata call.
MAX_META_ATTEMPTS = 6
RETRY_BACKOFF_S_MAX = 1.0
# Attempts of one chunk transfer that fails to connect, and the first backoff.
MAX_CHUNK_ATTEMPTS = 4
CHUNK_RETRY_BACKOFF_S = 0.1
# How long a retry waits for a connection to a dataserver the map shows up.
CONNECT_TIMEOUT_S = 2.0
# A refresh of the map is skipped when the cached map is younger than this.
MAP_REFRESH_MIN_INTERVAL_S = 0.05


def never_sent(error: StoreError) -> bool:
    """Return whether a call failed before its request left, for want of a connection.

    Such a call is safe to repeat even when it changes state. gRPC reports it as
    UNAVAILABLE with this text when no connection could be made.
    """
    return "failed to connect to all addresses" in (error.server_message or "")


class Deadline:
    """The time left for one SDK call; every RPC inside it gets the remainder."""

    def __init__(self, timeout_s: float | None, what: str) -> None:
        self.what = what
        self.timeout_s = timeout_s
        self._end = None if timeout_s is None else time.monotonic() + timeout_s

    def remaining_s(self, cap_s: float | None = None) -> float | None:
        if self._end is None:
            return cap_s
        left = self._end - time.monotonic()
        if left <= 0:
            raise Timeout(f"{self.what} timed out after {self.timeout_s}s")
        return left if cap_s is None else min(left, cap_s)


class Connection:
    def __init__(self, addresses: list[str]) -> None:
        assert addresses
        self.seed_addresses = addresses
        self.channels = ChannelPool()
        self.view: ClusterView | None = None
        self._refreshed_at = 0.0
        self._refresh_lock = asyncio.Lock()

    async def close(self) -> None:
        await self.channels.close()

    def meta_stub(self, address: str) -> MetaServiceAsyncStub:
        return self.channels.meta(address)

    async def cluster_view(self, deadline: Deadline) -> ClusterView:
        if self.view is None:
            await self.refresh_map(deadline)
        assert self.view is not None
        return self.view

    async def refresh_map(self, deadline: Deadline, min_epoch: int = 0) -> ClusterView:
        """Fetch the cluster map from any reachable metaserver."""
        async with self._refresh_lock:
            view = self.view
            fresh = time.monotonic() - self._refreshed_at < MAP_REFRESH_MIN_INTERVAL_S
            if view is not None and fresh and view.epoch >= min_epoch:
                return view
            # The primary first: it holds the map, the others serve copies.
            known = [view.primary_address] if view and view.primary_address else []
            known += view.metaserver_addresses if view else []
            addresses = list(dict.fromkeys(known + self.seed_addresses))
            errors: list[str] = []
            for address in addresses:
                try:
                    cluster_map: pb.ClusterMap = await self.meta_stub(address).GetClusterMap(
                        meta_pb2.GetClusterMapRequest(), timeout=deadline.remaining_s(5.0)
                    )
                except grpc.RpcError as exc:
                    errors.append(str(error_from_rpc(exc, f"metaserver {address}")))
                    continue
                if self.view is None or cluster_map.epoch >= self.view.epoch:
                    if self.view is not None and cluster_map.epoch != self.view.epoch:
                        log.info(
                            "cluster map refreshed epoch=%d->%d", self.view.epoch, cluster_map.epoch
                        )
                    self.view = ClusterView(cluster_map)
                if self.view.epoch >= min_epoch:
                    break
            if self.view is None or (errors and len(errors) == len(addresses)):
                raise Unavailable(f"cannot fetch the cluster map: {'; '.join(errors)}")
            self._refreshed_at = time.monotonic()
            return self.view

    def shard_for(self, view: ClusterView, bucket: str, key: bytes) -> int:
        return shard_of(bucket, key, view.shard_count)

    async def meta_call(
        self,
        deadline: Deadline,
        shard: int | None,
        call: Callable[[MetaServiceAsyncStub, ClusterView, float | None], Awaitable[T]],
        idempotent: bool,
    ) -> T:
        """Run a metadata call on the shard's metaserver (the primary when shard is None).

        `call` gets the stub, the cluster view and the timeout for this attempt.
        """
        backoff_s = 0.05
        for attempt in range(1, MAX_META_ATTEMPTS + 1):
            view = await self.cluster_view(deadline)
            if shard is None:
                address = view.primary_address or self.seed_addresses[0]
            else:
                address = view.metaserver_for_shard(shard)
            try:
                return await call(self.meta_stub(address), view, deadline.remaining_s())
            except grpc.RpcError as exc:
                error: StoreError = error_from_rpc(exc, f"metaserver {address}")
            except (StaleEpoch, Unavailable) as exc:
                # Raised already translated, by calls that do not go through a stub directly.
                error = exc
            last = attempt == MAX_META_ATTEMPTS
            if isinstance(error, StaleEpoch) and not last:
                await self.refresh_map(deadline, getattr(error, "server_epoch", 0) or 0)
                continue
            retry = isinstance(error, Unavailable) and not isinstance(error, Timeout)
            if retry and (idempotent or never_sent(error)) and not last:
                log.info(
                    "retrying metadata call in %.2fs (attempt %d): %s", backoff_s, attempt, error
                )
                await asyncio.sleep(min(backoff_s, deadline.remaining_s() or backoff_s))
                backoff_s = min(backoff_s * 2, RETRY_BACKOFF_S_MAX)
                await self._try_refresh(deadline)
                # A restarted metaserver is found at once instead of after the reconnect backoff.
                self._renew_if_broken(address)
                continue
            raise error
        raise AssertionError("unreachable")

    async def should_retry(
        self,
        errors: list[StoreError],
        targets: list[str],
        attempt: int,
        deadline: Deadline,
        include_suspect: bool = False,
    ) -> bool:
        """Decide whether chunk transfers that failed with `errors` are worth another attempt.

        Only connection failures are retried, after a backoff that doubles with each
        attempt, and only when a connection to one of the `targets` opens within
        CONNECT_TIMEOUT_S while a fresh cluster map shows it up. With `include_suspect`,
        which reads pass, a suspect target counts too. Writes do not pass it, because a
        suspect dataserver gets no new chunks. A restarted dataserver is thus found
        again at once, and a dead one costs a few seconds, not a chunk timeout.
        """
        if attempt >= MAX_CHUNK_ATTEMPTS or not errors:
            return False
        if not all(isinstance(e, Unavailable) and not isinstance(e, Timeout) for e in errors):
            return False
        backoff_s = min(CHUNK_RETRY_BACKOFF_S * 2 ** (attempt - 1), RETRY_BACKOFF_S_MAX)
        remaining_s = deadline.remaining_s()
        if remaining_s is not None and remaining_s <= backoff_s:
            return False
        await asyncio.sleep(backoff_s)
        try:
            view = await self.refresh_map(deadline)
        except Unavailable:
            return False
        for target in targets:
            usable = view.is_readable(target) if include_suspect else view.is_up(target)
            if usable and await self._connects(view.dataserver_address(target), deadline):
                return True
        return False

    async def _connects(self, address: str, deadline: Deadline) -> bool:
        """Return whether a connection to `address` is ready within CONNECT_TIMEOUT_S."""
        self._renew_if_broken(address)
        channel = self.channels.channel(address)
        try:
            await asyncio.wait_for(channel.channel_ready(), deadline.remaining_s(CONNECT_TIMEOUT_S))
        except TimeoutError:
            return False
        return True

    def _renew_if_broken(self, address: str) -> None:
        """Replace the channel to `address` when it is not connected.

        A channel that failed waits out a reconnect backoff of up to two seconds
        before it tries again, and it fails calls at once meanwhile. A new channel
        connects at the next call.
        """
        channel = self.channels.channel(address)
        if channel.get_state(try_to_connect=True) != grpc.ChannelConnectivity.READY:
            self.channels.reset(address, min_age_s=CONNECT_TIMEOUT_S / 4)

    async def _try_refresh(self, deadline: Deadline) -> None:
        try:
            await self.refresh_map(deadline)
        except Unavailable:
            pass
