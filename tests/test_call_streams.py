"""Unary calls on reusable streams (store.callstream) against real servers.

The SDK sends its stats, commits and block reads on streams it keeps open.
These tests check what a unary call guaranteed: the same errors, timeouts that
end the call, and servers that stop and restart under clients with idle streams.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import AsyncIterator
from datetime import datetime

import grpc
import grpc.aio
import pytest

import store
from store import callstream, datapath
from store._pb import common_pb2, data_pb2, meta_pb2, meta_pb2_grpc
from store.channels import META_SERVICE
from store.checksum import crc32c
from store.cluster import LocalCluster, ManagedProcess
from store.errors import ERROR_CODE_METADATA_KEY
from store.rpc import CHANNEL_OPTIONS
from store.serving import STOP_GRACE_S
from store.shardmap import shard_of

from .support import ClusterFactory, chunk_files, make_data


def missing_key_request(cluster: LocalCluster, bucket: str) -> meta_pb2.StatObjectRequest:
    key = b"no-such-key"
    shard = shard_of(bucket, key, cluster.shards)
    return meta_pb2.StatObjectRequest(bucket=bucket, key=key, shard=shard)


async def stat_both_ways(
    address: str, request: meta_pb2.StatObjectRequest
) -> tuple[grpc.aio.AioRpcError, grpc.aio.AioRpcError]:
    """Return the errors of one StatObject sent as a unary call and on a stream."""
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        unary = meta_pb2_grpc.MetaServiceStub(channel).StatObject
        streamed = callstream.client_method(channel, META_SERVICE, "StatObject")
        errors = []
        for call in (unary, streamed):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call(request, timeout=10.0)
            errors.append(caught.value)
        await streamed.aclose()
    return errors[0], errors[1]


def store_error_code(error: grpc.aio.AioRpcError) -> str | None:
    for key, value in error.trailing_metadata() or ():
        if key == ERROR_CODE_METADATA_KEY:
            return str(value)
    return None


def test_streamed_error_matches_unary(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(dataservers=1)
    with store.Client(cluster.meta_address) as client:
        client.create_bucket("errors")
    request = missing_key_request(cluster, "errors")

    unary, streamed = asyncio.run(stat_both_ways(cluster.meta_address, request))

    assert streamed.code() == unary.code() == grpc.StatusCode.NOT_FOUND
    assert streamed.details() == unary.details()
    assert store_error_code(unary) is not None, "the unary error has no store-error code"
    assert store_error_code(streamed) == store_error_code(unary)


def stop_seconds(process: ManagedProcess) -> float:
    """Return the seconds between a server's last "stopping" and "stopped" log lines."""
    text = process.log_path.read_text()
    stamps = {}
    for event in ("stopping", "stopped"):
        found = re.findall(rf"^(\S+ \S+) INFO \S+: \w+ {event} id=", text, re.MULTILINE)
        assert found, f"{process.name} logged no '{event}' line"
        stamps[event] = datetime.strptime(found[-1], "%Y-%m-%d %H:%M:%S,%f")
    return (stamps["stopped"] - stamps["stopping"]).total_seconds()


def test_idle_streams_end_at_stop(cluster_factory: ClusterFactory) -> None:
    """Servers end the streams clients keep open instead of waiting out the grace period."""
    cluster = cluster_factory(dataservers=1)
    metaserver = cluster.metaservers[0]
    dataserver = cluster.dataservers[0]
    data = make_data(300_000, seed=71)
    with store.Client(cluster.meta_address) as client:
        client.create_bucket("stops", scheme="rep:1")
        client.put("stops", "k", data)
        assert client.get("stops", "k") == data

        for process in (dataserver, metaserver):
            process.stop()
            assert "idle call streams" in process.log_path.read_text(), (
                f"{process.name} ended no idle streams, so this test checks nothing"
            )
            elapsed_s = stop_seconds(process)
            assert elapsed_s < STOP_GRACE_S, (
                f"{process.name} took {elapsed_s:.2f} s to stop, the whole grace period"
            )
            cluster.restart(process)

        # The same client finds its streams ended and opens new ones.
        assert client.get("stops", "k") == data
        client.put("stops", "k2", data)
        assert client.stat("stops", "k2").size_bytes == len(data)


def test_timed_out_call_frees_stream(cluster_factory: ClusterFactory) -> None:
    """A call that times out on a stopped metaserver fails as Timeout; later calls work."""
    cluster = cluster_factory(dataservers=1)
    metaserver = cluster.metaservers[0]
    with store.Client(cluster.meta_address) as client:
        client.create_bucket("paused")
        client.put("paused", "k", b"value")
        metaserver.signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(store.Timeout):
                client.stat("paused", "k", timeout_s=0.5)
            waited_s = time.monotonic() - started
        finally:
            metaserver.signal(signal.SIGCONT)
        assert waited_s < 5.0, f"a 0.5 s stat timed out after {waited_s:.1f} s"

        # The reply to the timed-out stat arrives on a cancelled stream and is dropped.
        for _ in range(20):
            assert client.stat("paused", "k").size_bytes == 5
        client.put("paused", "k", b"new value")
        assert client.get("paused", "k") == b"new value"


class KeyLength(meta_pb2_grpc.MetaServiceServicer):
    """A MetaService whose StatObject returns a record with the key's length as size."""

    async def StatObject(
        self, request: meta_pb2.StatObjectRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.ObjectRecord:
        return common_pb2.ObjectRecord(size_bytes=len(request.key))


async def call_after_close() -> tuple[grpc.aio.AioRpcError, float]:
    """Return the error of a streamed call sent to a server that ended its streams.

    This opens an in-process server so that its StreamedHandlers can be closed
    while the client has an idle stream, as a metaserver does at shutdown.
    """
    handlers = callstream.StreamedHandlers()
    server = grpc.aio.server()
    callstream.register_service(server, handlers, META_SERVICE, KeyLength())
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            method = callstream.client_method(channel, META_SERVICE, "StatObject")
            reply = await method(meta_pb2.StatObjectRequest(key=b"abc"), timeout=5.0)
            assert reply.size_bytes == 3

            handlers.close()
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await method(meta_pb2.StatObjectRequest(key=b"abcd"), timeout=5.0)
            return caught.value, time.monotonic() - started
    finally:
        await server.stop(None)


def test_call_after_handlers_close() -> None:
    """A call sent as the server ends its streams fails as UNAVAILABLE at once, not by timeout."""
    error, elapsed_s = asyncio.run(call_after_close())

    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "shutting down" in (error.details() or "")
    assert elapsed_s < 2.0, f"the failed call took {elapsed_s:.2f} s"


async def calls_to_unary_server() -> list[int]:
    """Return the replies of streamed calls to a server that serves only unary methods."""
    server = grpc.aio.server()
    meta_pb2_grpc.add_MetaServiceServicer_to_server(KeyLength(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            method = callstream.client_method(channel, META_SERVICE, "StatObject")
            sizes = []
            for key in (b"a", b"bb", b"ccc"):
                reply = await method(meta_pb2.StatObjectRequest(key=key), timeout=5.0)
                sizes.append(reply.size_bytes)
            return sizes
    finally:
        await server.stop(None)


def test_unary_fallback_for_old_server() -> None:
    """A server without the streamed methods (an older version) gets unary calls."""
    assert asyncio.run(calls_to_unary_server()) == [1, 2, 3]


async def write_to_unary_server(messages: list[bytes]) -> int:
    """Send a whole chunk with streamed_write to a server with only the client-streaming Write."""

    async def write(requests: AsyncIterator[bytes], context: object) -> bytes:
        data_bytes = [len(message) async for message in requests][1:]
        return data_pb2.WriteChunkResponse(length_bytes=sum(data_bytes)).SerializeToString()

    handler = grpc.stream_unary_rpc_method_handler(write)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(datapath.SERVICE, {"Write": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            chunk = datapath.WholeChunk(messages[0], b"".join(messages[1:]))
            reply = await datapath.streamed_write(channel)(chunk, timeout=5.0)
            return int(reply.length_bytes)
    finally:
        await server.stop(None)


def test_write_fallback_for_old_server() -> None:
    """A whole-chunk Write to a server without streamed methods goes as header and data."""
    messages = [b"header", b"x" * 1000 + b"y" * 24]

    assert asyncio.run(write_to_unary_server(messages)) == 1024


async def whole_chunk_errors(address: str, dataserver_id: str) -> list[grpc.aio.AioRpcError]:
    """Send a short whole chunk and one addressed to another dataserver; return the errors."""
    data = make_data(1000, seed=72)
    header = common_pb2.ChunkFileHeader(
        chunk_id=bytes(22), upload_id="00" * 16, length_bytes=len(data), crc32c=crc32c(data)
    )
    requests = [
        (dataserver_id, data[:999]),
        ("ds-not-this-one", data),
    ]
    errors = []
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        write = datapath.streamed_write(channel)
        for target, body in requests:
            first = data_pb2.WriteChunkHeader(chunk=header, dataserver_id=target)
            chunk = datapath.WholeChunk(first.SerializeToString(), body)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await write(chunk, timeout=10.0)
            errors.append(caught.value)
        await write.aclose()
    return errors


def test_whole_chunk_write_rejects_bad_input(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(dataservers=1)
    dataserver = cluster.dataservers[0]

    short, misrouted = asyncio.run(whole_chunk_errors(dataserver.address, dataserver.server_id))

    assert short.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "carries 999 bytes of data, not the declared 1000" in (short.details() or "")
    assert misrouted.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "refresh the cluster map" in (misrouted.details() or "")
    assert not chunk_files(dataserver), "a rejected write left a chunk file"
