"""Helpers shared by the tests: test data, chunk files on disk, bounded waits."""

from __future__ import annotations

import contextlib
import itertools
import random
import struct
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from store.cluster import LocalCluster, ManagedProcess

T = TypeVar("T")

KIB = 1024
MIB = 1024 * KIB

# Chunk size of every test cluster: small, so multi-chunk objects stay small.
CHUNK_SIZE_BYTES = 1 * MIB
SHARD_COUNT = 16
DATASERVER_COUNT = 4

# Flags of every test cluster's metaserver, before a test's own flags (later flags win).
BASE_META_ARGS = ["--chunk-size-bytes", str(CHUNK_SIZE_BYTES)]

# The fixed prefix of a chunk file, as documented in dataserver/chunkstore.py:
# magic, format version, header length, header CRC32C, data offset (little-endian u32s).
CHUNK_PREFIX = struct.Struct("<8sIIII")
CHUNK_MAGIC = b"STORCHNK"

_bucket_numbers = itertools.count()


def make_data(size_bytes: int, seed: int) -> bytes:
    """Return `size_bytes` pseudo-random bytes, the same for the same seed."""
    return random.Random(seed).randbytes(size_bytes)


def new_bucket_name(label: str) -> str:
    """Return a bucket name that no other call in this test session returns."""
    return f"{label}-{next(_bucket_numbers)}-{random.randrange(1 << 32):08x}"


def chunk_files(process: ManagedProcess) -> list[Path]:
    """Return the chunk files under a dataserver's chunks/ directory, sorted by name."""
    return sorted(path for path in (process.directory / "chunks").glob("*/*") if path.is_file())


def temp_files(process: ManagedProcess) -> list[Path]:
    """Return the files under a dataserver's tmp/ directory (unfinished chunk writes)."""
    return sorted(path for path in (process.directory / "tmp").iterdir() if path.is_file())


def upload_chunk_files(cluster: LocalCluster, upload_id: str) -> dict[str, list[Path]]:
    """Return each dataserver's chunk files of one upload, keyed by process name.

    Chunk ids start with the 16-byte upload id, and a committed object's
    version id is its upload id, so the file names tell which version a
    chunk belongs to.
    """
    return {
        process.name: [path for path in chunk_files(process) if path.name.startswith(upload_id)]
        for process in cluster.dataservers
    }


def count_upload_chunks(cluster: LocalCluster, upload_id: str) -> int:
    return sum(len(paths) for paths in upload_chunk_files(cluster, upload_id).values())


def chunk_data_offset(path: Path) -> int:
    """Return the file offset where a chunk file's data starts, checking its prefix."""
    with path.open("rb") as file:
        prefix = file.read(CHUNK_PREFIX.size)
    magic, _version, _header_bytes, _header_crc, data_offset = CHUNK_PREFIX.unpack(prefix)
    assert magic == CHUNK_MAGIC, f"{path} does not start with the chunk file magic: {magic!r}"
    return int(data_offset)


def chunk_header_range(path: Path) -> tuple[int, int]:
    """Return the [start, end) file offsets of a chunk file's serialized header."""
    with path.open("rb") as file:
        prefix = file.read(CHUNK_PREFIX.size)
    _magic, _version, header_bytes, _header_crc, _data_offset = CHUNK_PREFIX.unpack(prefix)
    return CHUNK_PREFIX.size, CHUNK_PREFIX.size + int(header_bytes)


def flip_byte(path: Path, offset: int) -> None:
    """Invert every bit of the byte at `offset` in the file."""
    with path.open("r+b") as file:
        file.seek(offset)
        (value,) = file.read(1)
        file.seek(offset)
        file.write(bytes([value ^ 0xFF]))


@contextlib.contextmanager
def mounted_tmpfs(directory: Path, size_bytes: int) -> Iterator[bool]:
    """Mount a tmpfs of `size_bytes` on `directory` for the block, and unmount it after.

    Yields False, and mounts nothing, where mounting is not permitted (not root, or
    no CAP_SYS_ADMIN in a container). Stop every process using the directory before
    the block ends, or the unmount fails.
    """
    directory.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    mounted = mount.returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(directory)], check=True, capture_output=True)


def wait_until(
    condition: Callable[[], T],
    timeout_s: float,
    description: str,
    interval_s: float = 0.1,
    state: Callable[[], object] | None = None,
) -> T:
    """Poll `condition` until it returns a true value and return that value.

    Raises AssertionError with `description`, and the value of `state()` when
    given, if `timeout_s` passes first.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            found = f"; found {state()}" if state is not None else ""
            raise AssertionError(f"timed out after {timeout_s}s waiting for {description}{found}")
        time.sleep(interval_s)


class ClusterFactory:
    """A starter of private clusters for one test. The `cluster_factory` fixture stops them."""

    def __init__(self, root: Path, on_create: Callable[[LocalCluster], None]) -> None:
        self._root = root
        self._on_create = on_create
        self.started: list[LocalCluster] = []

    def __call__(
        self,
        *,
        dataservers: int = DATASERVER_COUNT,
        metaservers: int = 1,
        meta_args: Sequence[str] = (),
        data_args: Sequence[str] = (),
        domains: Sequence[str] = (),
    ) -> LocalCluster:
        """Start a cluster and wait until every dataserver registered."""
        cluster = LocalCluster(
            self._root / f"cluster-{len(self.started)}",
            dataservers=dataservers,
            metaservers=metaservers,
            shards=SHARD_COUNT,
            meta_args=[*BASE_META_ARGS, *meta_args],
            data_args=list(data_args),
            domains=list(domains),
        )
        self.started.append(cluster)
        self._on_create(cluster)
        cluster.start()
        return cluster

    def stop_all(self) -> None:
        """Stop every cluster this factory started. Safe to call more than once."""
        for cluster in self.started:
            cluster.stop()
