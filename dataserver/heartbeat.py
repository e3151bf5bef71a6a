"""Registration with the metaserver and the heartbeat loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc
import grpc.aio

from store._pb import common_pb2 as pb
from store._pb import meta_pb2, meta_pb2_grpc
from store.rpc import CHANNEL_OPTIONS

log = logging.getLogger(__name__)

REGISTER_BACKOFF_S_MAX = 5.0


class Heartbeater:
    """Registers the dataserver and reports its capacity and health every interval."""

    def __init__(
        self,
        meta_address: str,
        info: Callable[[], pb.DataserverInfo],
        interval_s: float,
        timeout_s: float,
    ) -> None:
        assert interval_s > 0 and timeout_s > 0
        self.meta_address = meta_address
        self._info = info
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._channel = grpc.aio.insecure_channel(meta_address, options=CHANNEL_OPTIONS)
        self._stub = meta_pb2_grpc.MetaServiceStub(self._channel)
        self.registered = asyncio.Event()
        self.failures = 0

    async def run(self) -> None:
        """Register, then heartbeat until cancelled; re-register when the metaserver forgets us."""
        await self._register()
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                info = await asyncio.to_thread(self._info)
                reply = await self._stub.Heartbeat(
                    meta_pb2.HeartbeatRequest(info=info), timeout=self.timeout_s
                )
            except grpc.RpcError as exc:
                self._count_failure(exc)
                continue
            if self.failures:
                log.info(
                    "heartbeat to metaserver %s works again after %d failures",
                    self.meta_address,
                    self.failures,
                )
                self.failures = 0
            if not reply.known:
                log.warning(
                    "metaserver %s does not know dataserver %s; registering again",
                    self.meta_address,
                    info.id,
                )
                await self._register()

    async def _register(self) -> None:
        backoff_s = 0.1
        attempt = 0
        while True:
            attempt += 1
            try:
                info = await asyncio.to_thread(self._info)
                reply = await self._stub.RegisterDataserver(
                    meta_pb2.RegisterDataserverRequest(info=info), timeout=self.timeout_s
                )
            except grpc.RpcError as exc:
                log.warning(
                    "register with metaserver %s failed (attempt %d, retry in %.1fs): %s",
                    self.meta_address,
                    attempt,
                    backoff_s,
                    describe_rpc_error(exc),
                )
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, REGISTER_BACKOFF_S_MAX)
                continue
            log.info(
                "registered dataserver=%s address=%s with metaserver=%s epoch=%d cluster=%s",
                info.id,
                info.address,
                self.meta_address,
                reply.epoch,
                reply.cluster_id,
            )
            self.registered.set()
            return

    def _count_failure(self, exc: grpc.RpcError) -> None:
        self.failures += 1
        # Log the first failure and then every 30th, so an outage does not flood the log.
        if self.failures == 1 or self.failures % 30 == 0:
            log.warning(
                "heartbeat to metaserver %s failed (%d in a row): %s",
                self.meta_address,
                self.failures,
                describe_rpc_error(exc),
            )

    async def close(self) -> None:
        await self._channel.close()


def describe_rpc_error(exc: grpc.RpcError) -> str:
    """Return a failed call's status code name and details, for a log line."""
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return f"{code.name if code else 'error'}: {details}"
