"""Round trips through the SDK: every size class, every read call, both clients."""

from __future__ import annotations

import asyncio
import functools
import gc
import io
import itertools
import os
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import store
from store.cluster import LocalCluster, ManagedProcess
from store.limits import DEFAULT_INLINE_MAX_BYTES
from store.scheme import parse as parse_scheme

from .support import (
    CHUNK_SIZE_BYTES,
    MIB,
    ClusterFactory,
    make_data,
    new_bucket_name,
    upload_chunk_files,
    wait_until,
)

CHUNK = CHUNK_SIZE_BYTES
INLINE = DEFAULT_INLINE_MAX_BYTES

SIZES = {
    "empty": 0,
    "one-byte": 1,
    "inline-max": INLINE,
    "inline-max-plus-1": INLINE + 1,
    "chunk-minus-1": CHUNK - 1,
    "chunk": CHUNK,
    "chunk-plus-1": CHUNK + 1,
    "three-chunks-and-odd": 3 * CHUNK + 12_345,
}


def ranges_for(size: int) -> list[tuple[int, int | None]]:
    """Return (offset, length) pairs that cover starts, ends and chunk boundaries of `size`."""
    candidates: list[tuple[int, int | None]] = [
        (0, None),
        (0, 0),
        (0, 1),
        (size // 2, 100),
        (size - 1, 1),
        (size - 5, 100),  # clipped at the end of the object
        (size, None),  # empty: starts at the end
        (CHUNK - 7, 14),  # across the first chunk boundary
        (CHUNK, 10),  # starts exactly on a chunk boundary
        (CHUNK - 65_536, 65_536 * 2 + 3),  # whole checksum blocks on both sides of a boundary
        (2 * CHUNK - 1, CHUNK + 2),  # covers one chunk and a byte on each side
        (1, size - 2),  # everything but the first and last byte
    ]
    return [
        (offset, length)
        for offset, length in candidates
        if 0 <= offset <= size and (length is None or length >= 0)
    ]


def expected_range(data: bytes, offset: int, length: int | None) -> bytes:
    return data[offset:] if length is None else data[offset : offset + length]


def check_object(client: store.Client, bucket: str, key: str, data: bytes, tmp_path: Path) -> None:
    """Check stat, get, ranged get, get_stream and get_file of an object against `data`."""
    size = len(data)
    info = client.stat(bucket, key)
    assert info.size_bytes == size, f"stat of {key} reports {info.size_bytes} bytes, wrote {size}"

    got = client.get(bucket, key)
    assert len(got) == size, f"get of {key} returned {len(got)} bytes, wrote {size}"
    assert got == data, f"get of {key} returned different bytes"

    for offset, length in ranges_for(size):
        want = expected_range(data, offset, length)
        part = client.get(bucket, key, offset=offset, length=length)
        assert part == want, (
            f"get of {key} ({size} bytes) at offset={offset} length={length} returned "
            f"{len(part)} bytes that differ from the {len(want)} expected"
        )

    streamed = b"".join(client.get_stream(bucket, key))
    assert streamed == data, f"get_stream of {key} returned different bytes"

    offset = min(CHUNK - 3, size)
    streamed_range = b"".join(client.get_stream(bucket, key, offset=offset, length=CHUNK))
    assert streamed_range == data[offset : offset + CHUNK], (
        f"get_stream of {key} at offset={offset} length={CHUNK} returned different bytes"
    )

    buffer = bytearray(size + 10)
    count = client.get_into(bucket, key, buffer)
    assert count == size, f"get_into of {key} copied {count} bytes, expected {size}"
    assert buffer[:size] == data, f"get_into of {key} copied other bytes"
    assert buffer[size:] == bytes(10), f"get_into of {key} wrote past the object's end"

    offset = min(CHUNK - 7, size)
    window = memoryview(bytearray(100))
    count = client.get_into(bucket, key, window, offset=offset)
    assert count == min(100, size - offset), f"get_into at offset={offset} copied {count} bytes"
    assert window[:count] == data[offset : offset + count], f"get_into at offset={offset}"

    path = tmp_path / f"{key.replace('/', '_')}.out"
    file_info = client.get_file(bucket, key, path)
    assert file_info.size_bytes == size, f"get_file of {key} reports {file_info.size_bytes} bytes"
    assert path.read_bytes() == data, f"get_file of {key} wrote different bytes to {path}"


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_put_get_sizes(client: store.Client, bucket: str, size: int, tmp_path: Path) -> None:
    cluster_map = client.cluster_map()
    assert cluster_map.inline_max_bytes == INLINE, "these sizes assume the default inline limit"
    assert cluster_map.chunk_size_bytes == CHUNK, "these sizes assume the test chunk size"

    data = make_data(size, seed=size)
    key = f"sizes/{size}"
    info = client.put(bucket, key, data)

    assert info.size_bytes == size, f"put returned size {info.size_bytes}, wrote {size}"
    assert info.is_inline == (size <= INLINE), (
        f"a {size}-byte object should be inline only up to {INLINE} bytes, is_inline="
        f"{info.is_inline}"
    )
    stripe = 1 if size <= INLINE else parse_scheme(info.scheme).stripe_bytes(CHUNK)
    expected_stripes = 0 if size <= INLINE else -(-size // stripe)
    assert info.stripe_count == expected_stripes, (
        f"a {size}-byte object should have {expected_stripes} stripes, has {info.stripe_count}"
    )
    check_object(client, bucket, key, data, tmp_path)


def test_open_seek_read(client: store.Client, bucket: str) -> None:
    size = 3 * CHUNK + 777
    data = make_data(size, seed=11)
    client.put(bucket, "open/multi", data)

    with client.open(bucket, "open/multi") as file:
        assert file.size_bytes == size, f"open reports {file.size_bytes} bytes, wrote {size}"
        assert file.read(10) == data[:10], "the first read returned different bytes"
        assert file.tell() == 10, f"tell after reading 10 bytes is {file.tell()}"

        file.seek(CHUNK - 7)
        assert file.read(14) == data[CHUNK - 7 : CHUNK + 7], "read across a chunk boundary"
        assert file.tell() == CHUNK + 7, f"tell after the boundary read is {file.tell()}"

        # Sequential reads continue where the last one ended, across the next boundary.
        assert file.read(CHUNK) == data[CHUNK + 7 : 2 * CHUNK + 7], "sequential read"

        file.seek(-10, io.SEEK_CUR)
        assert file.tell() == 2 * CHUNK - 3, f"tell after SEEK_CUR -10 is {file.tell()}"
        assert file.read(6) == data[2 * CHUNK - 3 : 2 * CHUNK + 3], "read after SEEK_CUR"

        file.seek(-100, io.SEEK_END)
        assert file.read() == data[-100:], "read to the end after SEEK_END"
        assert file.read(5) == b"", "read at the end of the object returned bytes"

        file.seek(size + 50)
        assert file.read(5) == b"", "read past the end of the object returned bytes"

        buffer = bytearray(20)
        file.seek(CHUNK - 10)
        assert file.readinto(buffer) == 20, "readinto across a boundary read a short count"
        assert bytes(buffer) == data[CHUNK - 10 : CHUNK + 10], "readinto returned wrong bytes"

        # Odd-sized sequential reads of the whole object.
        file.seek(0)
        pieces = []
        for _ in range(size // 100_003 + 2):
            piece = file.read(100_003)
            if not piece:
                break
            pieces.append(piece)
        assert b"".join(pieces) == data, "odd-sized sequential reads returned different bytes"


def test_open_limit_stops_prefetch(client: store.Client, bucket: str) -> None:
    size = 4 * CHUNK
    data = make_data(size, seed=14)
    client.put(bucket, "open/limited", data)
    end = 2 * CHUNK + 100

    with client.open(bucket, "open/limited") as file:
        file.limit(end)
        file.seek(CHUNK - 7)
        assert file.read(14) == data[CHUNK - 7 : CHUNK + 7], "read across a chunk boundary"
        assert file.read(CHUNK) == data[CHUNK + 7 : 2 * CHUNK + 7], "sequential read"
        prefetched = sorted(file._reader._prefetched)
        assert prefetched and prefetched[-1] <= 2, f"prefetched stripes {prefetched} past the limit"
        assert file.read(93) == data[2 * CHUNK + 7 : end], "sequential read up to the limit"
        assert file.read(50) == data[end : end + 50], "read past the limit"
        file.seek(0)
        assert file.read() == data, "read of the whole object after the limit"


def test_open_inline(client: store.Client, bucket: str) -> None:
    data = make_data(1000, seed=12)
    client.put(bucket, "open/inline", data)

    with client.open(bucket, "open/inline") as file:
        file.seek(990)
        assert file.read(100) == data[990:], "read at the end of an inline object"
        file.seek(5)
        assert file.read(3) == data[5:8], "read after a seek back in an inline object"
        assert file.tell() == 8, f"tell after the read is {file.tell()}"


def test_put_iterator_odd_pieces(client: store.Client, bucket: str, tmp_path: Path) -> None:
    data = make_data(2 * CHUNK + 500_001, seed=13)
    sizes = [1, 4093, 65_537, 333_333, 7, 0, 1_000_003]

    def pieces() -> Iterator[bytes]:
        offset = 0
        for size in itertools.cycle(sizes):
            if offset >= len(data):
                return
            yield data[offset : offset + size]
            offset += size

    info = client.put(bucket, "stream/odd", pieces())
    assert info.size_bytes == len(data), f"put of a stream stored {info.size_bytes} bytes"
    stripe = parse_scheme(info.scheme).stripe_bytes(CHUNK)
    assert info.stripe_count == -(-len(data) // stripe), (
        f"a stream of 2 chunks and a bit gave {info.stripe_count} stripes of {stripe} bytes"
    )
    check_object(client, bucket, "stream/odd", data, tmp_path)


def test_put_iterator_small(client: store.Client, bucket: str, tmp_path: Path) -> None:
    data = make_data(300, seed=14)

    info = client.put(bucket, "stream/small", iter([data[:100], b"", data[100:]]))
    assert info.is_inline, "a 300-byte stream should be stored inline"
    check_object(client, bucket, "stream/small", data, tmp_path)

    empty = client.put(bucket, "stream/empty", iter([]))
    assert empty.size_bytes == 0, f"an empty stream stored {empty.size_bytes} bytes"
    check_object(client, bucket, "stream/empty", b"", tmp_path)


def test_put_pipe(client: store.Client, bucket: str, tmp_path: Path) -> None:
    data = make_data(2 * CHUNK + 99_999, seed=15)
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        with os.fdopen(write_fd, "wb") as pipe:
            for start in range(0, len(data), 70_001):
                pipe.write(data[start : start + 70_001])

    feeder = threading.Thread(target=feed, name="pipe-feeder", daemon=True)
    feeder.start()
    with os.fdopen(read_fd, "rb") as source:
        assert not source.seekable(), "a pipe should not be seekable"
        info = client.put(bucket, "stream/pipe", source)
    feeder.join(timeout=10)

    assert not feeder.is_alive(), "the pipe feeder did not finish"
    assert info.size_bytes == len(data), f"put of a pipe stored {info.size_bytes} bytes"
    check_object(client, bucket, "stream/pipe", data, tmp_path)


def map_counts_reach(client: store.Client, minimum: dict[str, int]) -> bool:
    """Return whether each dataserver id in `minimum` reports at least that many chunks."""
    reported = {info.id: info.chunk_count for info in client.cluster_map().dataservers}
    return all(reported.get(server_id, 0) >= count for server_id, count in minimum.items())


def test_large_object(
    cluster: LocalCluster, client: store.Client, bucket: str, tmp_path: Path
) -> None:
    size = 100 * MIB
    data = make_data(size, seed=16)
    info = client.put(bucket, "large", data)

    assert info.size_bytes == size, f"put stored {info.size_bytes} bytes, wrote {size}"
    stripe = parse_scheme(info.scheme).stripe_bytes(CHUNK)
    assert info.stripe_count == -(-size // stripe), f"expected {size // stripe} stripes"

    chunks = upload_chunk_files(cluster, info.version_id)
    counts = {name: len(paths) for name, paths in chunks.items()}
    assert sum(counts.values()) == info.chunk_count, f"chunk files per dataserver: {counts}"
    for name, count in counts.items():
        assert count > 0, f"dataserver {name} got none of the large object's chunks: {counts}"
    assert max(counts.values()) - min(counts.values()) <= 1, f"uneven spread: {counts}"

    # Heartbeats carry each dataserver's chunk count into the cluster map.
    ids = {process.name: process.server_id for process in cluster.dataservers}
    wait_until(
        functools.partial(map_counts_reach, client, {ids[name]: n for name, n in counts.items()}),
        10,
        f"cluster map chunk counts to reach the large object's {counts}",
    )

    assert client.get(bucket, "large") == data, "get of the large object returned other bytes"
    for offset, length in [(50 * CHUNK - 1, 2), (7 * CHUNK + 3, 5 * CHUNK), (size - 9, 9)]:
        part = client.get(bucket, "large", offset=offset, length=length)
        assert part == data[offset : offset + length], f"range {offset}+{length} differs"

    streamed = bytearray()
    for piece in client.get_stream(bucket, "large"):
        streamed += piece
    assert streamed == data, "get_stream of the large object returned other bytes"

    path = tmp_path / "large.out"
    client.get_file(bucket, "large", path)
    assert path.read_bytes() == data, "get_file of the large object wrote other bytes"

    with client.open(bucket, "large") as file:
        file.seek(99 * CHUNK - 4)
        assert file.read(8) == data[99 * CHUNK - 4 : 99 * CHUNK + 4], "open across a boundary"


async def _async_round_trip(address: str, bucket: str) -> None:
    async with store.AsyncClient(address) as client:
        await client.create_bucket(bucket)
        for size in [0, 1, INLINE + 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5]:
            data = make_data(size, seed=1000 + size)
            key = f"async/{size}"
            info = await client.put(bucket, key, data)
            assert info.size_bytes == size, f"async put stored {info.size_bytes} of {size}"

            got = await client.get(bucket, key)
            assert got == data, f"async get of a {size}-byte object returned other bytes"

            for offset, length in ranges_for(size):
                part = await client.get(bucket, key, offset=offset, length=length)
                assert part == expected_range(data, offset, length), (
                    f"async get of {key} at offset={offset} length={length} returned other bytes"
                )

            buffer = bytearray(size)
            count = await client.get_into(bucket, key, buffer)
            assert count == size, f"async get_into of {key} copied {count} bytes"
            assert buffer == data, f"async get_into of {key} copied other bytes"

            streamed = b"".join([piece async for piece in client.get_stream(bucket, key)])
            assert streamed == data, f"async get_stream of {key} returned other bytes"

            reader = await client.open(bucket, key)
            async with reader:
                reader.seek(max(size - CHUNK - 3, 0))
                tail_bytes = await reader.read()
                assert tail_bytes == data[max(size - CHUNK - 3, 0) :], f"async open of {key}"

        stream_data = make_data(2 * CHUNK + 3, seed=2000)

        async def pieces() -> AsyncIterator[bytes]:
            for start in range(0, len(stream_data), 300_007):
                await asyncio.sleep(0)
                yield stream_data[start : start + 300_007]

        info = await client.put(bucket, "async/stream", pieces())
        assert info.size_bytes == len(stream_data), "async put of an async iterator"
        got = await client.get(bucket, "async/stream")
        assert got == stream_data, "async get of the async-iterator object returned other bytes"


def test_async_client(cluster: LocalCluster) -> None:
    asyncio.run(_async_round_trip(cluster.meta_address, new_bucket_name("async")))


def test_close_cancels_loop_tasks(cluster: LocalCluster, caplog: pytest.LogCaptureFixture) -> None:
    """Client.close cancels what still runs on its loop instead of leaving it to be destroyed.

    A grpc.aio call's status task can outlive its channel by a turn of the loop. If the loop
    closes first, asyncio prints "Task was destroyed but it is pending!" into storectl's error.
    """
    client = store.Client(cluster.meta_address)
    loop = client._loop.loop
    started = threading.Event()

    async def linger() -> None:
        started.set()
        await asyncio.Event().wait()

    tasks: list[asyncio.Task[None]] = []
    loop.call_soon_threadsafe(lambda: tasks.append(loop.create_task(linger())))
    assert started.wait(5), "the task on the client's loop did not start"

    client.close()
    gc.collect()

    assert tasks[0].cancelled(), "a task left on the client's loop was not cancelled"
    destroyed = [r.getMessage() for r in caplog.records if "destroyed" in r.getMessage()]
    assert not destroyed, destroyed


def start_line(process: ManagedProcess) -> str:
    """Return the last line a server logged when it started."""
    marker = f"{process.role} started id="
    lines = [line for line in process.log_path.read_text().splitlines() if marker in line]
    assert lines, f"{process.name} logged no start line"
    return lines[-1]


def test_servers_on_asyncio_loop(cluster_factory: ClusterFactory) -> None:
    """--loop asyncio runs the metaserver and the dataservers on asyncio's own loop."""
    cluster = cluster_factory(
        dataservers=3, meta_args=["--loop", "asyncio"], data_args=["--loop", "asyncio"]
    )
    with store.Client(cluster.meta_address) as client:
        client.create_bucket("asyncio-loop")
        data = make_data(3 * CHUNK_SIZE_BYTES + 5, seed=600)
        client.put("asyncio-loop", "obj", data)
        assert client.get("asyncio-loop", "obj") == data, "a round trip on asyncio's loop"

    for process in cluster.metaservers + cluster.dataservers:
        line = start_line(process)
        assert line.endswith("loop=asyncio"), f"{process.name}: {line}"


def test_servers_on_uvloop_by_default(cluster: LocalCluster) -> None:
    for process in cluster.metaservers + cluster.dataservers:
        line = start_line(process)
        assert line.endswith("loop=uvloop"), f"{process.name}: {line}"
