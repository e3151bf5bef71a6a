"""Coalescing of concurrent metadata calls into batch calls.

A gRPC call costs a Python server far more CPU than a stat or a small commit
does. When many tasks of one client call the same metaserver at once, their
requests travel together in one CommitObjects or StatObjects call: the first
request after a quiet spell is sent alone, and the requests that arrive while
calls are in flight go in the next call. A batch therefore never waits for a
timer; it only collects what would otherwise have queued behind the calls in
flight.

A batch leaves one event loop iteration after the request that made it
possible (the first request, or the reply that freed a call), not at once.
The tasks that a reply wakes up usually send their next request in the same
iteration, and these join the batch instead of waiting for the next reply.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from store._pb import common_pb2 as pb
from store._pb import meta_pb2
from store.channels import ChannelPool
from store.errors import StaleEpoch, StoreError, error_for_status
from store.rpc import error_from_rpc

log = logging.getLogger(__name__)

# Upper bounds: requests per call and calls in flight per metaserver.
MAX_BATCH_REQUESTS = 128
MAX_CALLS_IN_FLIGHT = 2
# Timeout of a batch call when none of its requests has a deadline.
DEFAULT_BATCH_TIMEOUT_S = 60.0


@dataclass(slots=True)
class _Pending:
    request: Any
    future: asyncio.Future[pb.ObjectRecord]
    timeout_s: float | None


class Batcher:
    """Sends requests of one kind to each metaserver in batches.

    `method` names the batch RPC and `wrap` builds its request from the items.
    """

    def __init__(
        self, channels: ChannelPool, method: str, wrap: Callable[[list[Any]], Any]
    ) -> None:
        self._channels = channels
        self._method = method
        self._wrap = wrap
        self._waiting: dict[str, list[_Pending]] = {}
        self._in_flight: dict[str, int] = {}
        # Addresses whose next batch is scheduled for the next event loop iteration.
        self._scheduled: set[str] = set()

    async def call(self, address: str, request: Any, timeout_s: float | None) -> pb.ObjectRecord:
        """Send `request` to the metaserver at `address`; raises the request's own StoreError."""
        future: asyncio.Future[pb.ObjectRecord] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(address, []).append(_Pending(request, future, timeout_s))
        self._schedule(address)
        return await future

    def _schedule(self, address: str) -> None:
        """Send the next batch to `address` in the next event loop iteration."""
        if address not in self._scheduled:
            self._scheduled.add(address)
            asyncio.get_running_loop().call_soon(self._send_scheduled, address)

    def _send_scheduled(self, address: str) -> None:
        self._scheduled.discard(address)
        self._send_next(address)

    def _send_next(self, address: str) -> None:
        waiting = self._waiting.get(address)
        if not waiting or self._in_flight.get(address, 0) >= MAX_CALLS_IN_FLIGHT:
            return
        batch = [item for item in waiting[:MAX_BATCH_REQUESTS] if not item.future.done()]
        del waiting[:MAX_BATCH_REQUESTS]
        if not batch:
            self._send_next(address)
            return
        self._in_flight[address] = self._in_flight.get(address, 0) + 1
        asyncio.get_running_loop().create_task(self._send(address, batch))

    async def _send(self, address: str, batch: list[_Pending]) -> None:
        try:
            await self._call(address, batch)
        finally:
            self._in_flight[address] -= 1
            self._schedule(address)

    async def _call(self, address: str, batch: list[_Pending]) -> None:
        timeouts = [item.timeout_s for item in batch]
        timeout_s = DEFAULT_BATCH_TIMEOUT_S if None in timeouts else max(t or 0 for t in timeouts)
        stub = getattr(self._channels.meta(address), self._method)
        try:
            reply = await stub(self._wrap([item.request for item in batch]), timeout=timeout_s)
        except grpc.RpcError as exc:
            error = error_from_rpc(exc, f"metaserver {address}")
            for item in batch:
                _fail(item, error)
            return
        except asyncio.CancelledError:
            for item in batch:
                item.future.cancel()
            raise
        if len(reply.results) != len(batch):
            log.error(
                "[BUG] metaserver %s answered %d %s requests with %d results",
                address,
                len(batch),
                self._method,
                len(reply.results),
            )
        for item, result in zip(batch, reply.results, strict=False):
            if result.error_code:
                _fail(item, _result_error(address, result))
            elif not item.future.done():
                item.future.set_result(result.record)
        for item in batch[len(reply.results) :]:
            _fail(item, StoreError(f"metaserver {address} returned no result for the request"))


def commit_batcher(channels: ChannelPool) -> Batcher:
    return Batcher(
        channels, "CommitObjects", lambda items: meta_pb2.CommitObjectsRequest(commits=items)
    )


def stat_batcher(channels: ChannelPool) -> Batcher:
    return Batcher(channels, "StatObjects", lambda items: meta_pb2.StatObjectsRequest(stats=items))


def _result_error(address: str, result: meta_pb2.RecordResult) -> StoreError:
    error = error_for_status(
        None, result.error_code, f"metaserver {address}: {result.error_message}"
    )
    # The S3 gateway shows clients the server's message, without the address.
    error.server_message = result.error_message
    if isinstance(error, StaleEpoch):
        error.server_epoch = result.server_epoch
    return error


def _fail(item: _Pending, error: StoreError) -> None:
    if not item.future.done():
        item.future.set_exception(error)
