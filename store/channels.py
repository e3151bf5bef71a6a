"""A cache of gRPC channels and stubs, one channel per server address."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, cast

import grpc.aio

from store import callstream, datapath
from store._pb import data_pb2, data_pb2_grpc, meta_pb2, meta_pb2_grpc
from store.callstream import StreamedMethod
from store.rpc import CHANNEL_OPTIONS

if TYPE_CHECKING:
    from store._pb.data_pb2_grpc import DataServiceAsyncStub
    from store._pb.meta_pb2_grpc import MetaServiceAsyncStub

META_SERVICE = meta_pb2.DESCRIPTOR.services_by_name["MetaService"]
DATA_SERVICE = data_pb2.DESCRIPTOR.services_by_name["DataService"]

# The metadata calls of object reads and writes, which the SDK sends on reusable
# streams (see store.callstream). The servers serve every unary method both ways.
STREAMED_META_METHODS = (
    "OpenUpload",
    "CommitObject",
    "CommitObjects",
    "AbortUpload",
    "StatObject",
    "StatObjects",
    "DeleteObject",
    "ListObjects",
    "HeadBucket",
    "CommitPart",
)


class _StreamedMetaStub:
    """A MetaService stub whose STREAMED_META_METHODS go on streams; other methods are unary."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = meta_pb2_grpc.MetaServiceStub(channel)
        self.streamed = {
            method: callstream.client_method(channel, META_SERVICE, method)
            for method in STREAMED_META_METHODS
        }
        for method, call in self.streamed.items():
            setattr(self, method, call)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stub, name)

    def close(self) -> None:
        for call in self.streamed.values():
            call.close()

    async def aclose(self) -> None:
        for call in self.streamed.values():
            await call.aclose()


class ChannelPool:
    """Opens each address once and reuses the channel for every call to it."""

    def __init__(self) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._data_stubs: dict[str, DataServiceAsyncStub] = {}
        self._meta_stubs: dict[str, _StreamedMetaStub] = {}
        self._chunk_writers: dict[str, Any] = {}
        self._whole_chunk_writers: dict[str, StreamedMethod] = {}
        self._chunk_readers: dict[str, Any] = {}
        self._block_readers: dict[str, StreamedMethod] = {}
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
            stub = self._meta_stubs[address] = _StreamedMetaStub(self.channel(address))
        return cast("MetaServiceAsyncStub", stub)

    def chunk_writer(self, address: str) -> Any:
        """Return the client-streaming ChunkStream/Write call of a dataserver."""
        call = self._chunk_writers.get(address)
        if call is None:
            call = self._chunk_writers[address] = datapath.write_callable(self.channel(address))
        return call

    def whole_chunk_writer(self, address: str) -> StreamedMethod:
        """Return the Write call of a dataserver for chunks of up to 1 MiB, sent on streams."""
        call = self._whole_chunk_writers.get(address)
        if call is None:
            call = self._whole_chunk_writers[address] = datapath.streamed_write(
                self.channel(address)
            )
        return call

    def chunk_reader(self, address: str) -> Any:
        """Return the ChunkStream/Read call of a dataserver (see store.datapath)."""
        call = self._chunk_readers.get(address)
        if call is None:
            call = self._chunk_readers[address] = datapath.read_callable(self.channel(address))
        return call

    def block_reader(self, address: str) -> StreamedMethod:
        """Return the ChunkStream/ReadBlocks call of a dataserver, sent on streams."""
        call = self._block_readers.get(address)
        if call is None:
            call = self._block_readers[address] = datapath.streamed_read_blocks(
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
        self._close_streams(address)
        caches: list[dict[str, Any]] = [
            self._data_stubs,
            self._meta_stubs,
            self._chunk_writers,
            self._whole_chunk_writers,
            self._chunk_readers,
            self._block_readers,
        ]
        for cache in caches:
            cache.pop(address, None)
        if channel is not None:
            self._retired.append(channel)

    def _close_streams(self, address: str) -> None:
        meta_stub = self._meta_stubs.get(address)
        if meta_stub is not None:
            meta_stub.close()
        for cache in (self._whole_chunk_writers, self._block_readers):
            call = cache.get(address)
            if call is not None:
                call.close()

    async def close(self) -> None:
        for stub in self._meta_stubs.values():
            await stub.aclose()
        for cache in (self._whole_chunk_writers, self._block_readers):
            for call in cache.values():
                await call.aclose()
        channels = list(self._channels.values()) + self._retired
        self._retired = []
        self._channels.clear()
        self._data_stubs.clear()
        self._meta_stubs.clear()
        self._chunk_writers.clear()
        self._whole_chunk_writers.clear()
        self._chunk_readers.clear()
        self._block_readers.clear()
        for channel in channels:
            await channel.close()
