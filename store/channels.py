"""A cache of gRPC channels and stubs, one channel per server address."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, cast

import grpc.aio

from store import datapath
from store._pb import data_pb2_grpc, meta_pb2_grpc
from store.rpc import CHANNEL_OPTIONS

if TYPE_CHECKING:
    from store._pb.data_pb2_grpc import DataServiceAsyncStub
    from store._pb.meta_pb2_grpc import MetaServiceAsyncStub


class ChannelPool:
    """Opens each address once and reuses the channel for every call to it."""

    def __init__(self) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._data_stubs: dict[str, DataServiceAsyncStub] = {}
        self._meta_stubs: dict[str, MetaServiceAsyncStub] = {}
        self._chunk_writers: dict[str, Any] = {}
        self._chunk_readers: dict[str, Any] = {}
        self._block_readers: dict[str, Any] = {}
        self._retired: list[grpc.aio.Channel] = []
        self._opened_s: dict[str, float] = {}

    def channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
            self._channels[address] = channel
            self._opened_s[address] = time.monotonic()
        return channel

    def data(self, address: str) -> DataServiceAsyncStub:
        stub = self._data_stubs.get(address)
        if stub is None:
            stub = self._data_stubs[address] = cast(
                "DataServiceAsyncStub", data_pb2_grpc.DataServiceStub(self.channel(address))
            )
        return stub

    def meta(self, address: str) -> MetaServiceAsyncStub:
        stub = self._meta_stubs.get(address)
        if stub is None:
            stub = self._meta_stubs[address] = cast(
                "MetaServiceAsyncStub", meta_pb2_grpc.MetaServiceStub(self.channel(address))
            )
        return stub

    def chunk_writer(self, address: str) -> Any:
        """Return the ChunkStream/Write call of a dataserver (see store.datapath)."""
        call = self._chunk_writers.get(address)
        if call is None:
            call = self._chunk_writers[address] = datapath.write_callable(self.channel(address))
        return call

    def chunk_reader(self, address: str) -> Any:
        """Return the ChunkStream/Read call of a dataserver (see store.datapath)."""
        call = self._chunk_readers.get(address)
        if call is None:
            call = self._chunk_readers[address] = datapath.read_callable(self.channel(address))
        return call

    def block_reader(self, address: str) -> Any:
        """Return the ChunkStream/ReadBlocks call of a dataserver (see store.datapath)."""
        call = self._block_readers.get(address)
        if call is None:
            call = self._block_readers[address] = datapath.read_blocks_callable(
                self.channel(address)
            )
        return call

    def reset(self, address: str, min_age_s: float = 0.0) -> None:
        """Replace the channel to `address` with a new one at the next call.

        A channel younger than `min_age_s` is kept, so concurrent callers that all
        found the old channel broken replace it once. Calls still running on the old
        channel finish on it; it is closed with the pool.
        """
        opened_s = self._opened_s.get(address)
        if opened_s is not None and time.monotonic() - opened_s < min_age_s:
            return
        channel = self._channels.pop(address, None)
        caches: list[dict[str, Any]] = [
            self._data_stubs,
            self._meta_stubs,
            self._chunk_writers,
            self._chunk_readers,
            self._block_readers,
        ]
        for cache in caches:
            cache.pop(address, None)
        if channel is not None:
            self._retired.append(channel)

    async def close(self) -> None:
        channels = list(self._channels.values()) + self._retired
        self._retired = []
        self._channels.clear()
        self._data_stubs.clear()
        self._meta_stubs.clear()
        self._chunk_writers.clear()
        self._chunk_readers.clear()
        self._block_readers.clear()
        for channel in channels:
            await channel.close()
