"""Chunk files on local disk.

A chunk file is a fixed prefix, a ChunkFileHeader and the data:

    offset 0   magic "STORCHNK", format version, header length, header CRC32C,
               data offset (u32 each, little-endian)
    offset 24  ChunkFileHeader (chunk id, upload id, bucket, key, stripe index,
               length, CRC32C of the data, one CRC32C per 64 KiB block)
    data_offset (a multiple of 4096)  the chunk's bytes

Files are named by the hex chunk id under chunks/<first two hex digits>/, so
no user-supplied name ever becomes a path. A write goes to tmp/ and is renamed
into place only after its CRC32C matched and the file was fsynced, so a
crash never leaves a partial chunk under chunks/.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from store._pb import common_pb2 as pb
from store.checksum import crc32c
from store.durable import fsync_directory
from store.errors import (
    ChecksumMismatch,
    ChunkNotFound,
    DiskFull,
    InternalError,
    InvalidArgument,
)
from store.layout import CHUNK_ID_BYTES, UPLOAD_ID_BYTES, check_upload_id
from store.limits import CHECKSUM_BLOCK_BYTES, MAX_CHUNK_SIZE_BYTES

log = logging.getLogger(__name__)

MAGIC = b"STORCHNK"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sIIII")
DATA_ALIGN_BYTES = 4096
MAX_HEADER_BYTES = 1 << 20


def _data_offset(header_bytes: int) -> int:
    end = _PREFIX.size + header_bytes
    return (end + DATA_ALIGN_BYTES - 1) // DATA_ALIGN_BYTES * DATA_ALIGN_BYTES


def encode_prefix_and_header(header: pb.ChunkFileHeader) -> tuple[bytes, int]:
    """Return the bytes before the data and the data offset."""
    body = header.SerializeToString()
    offset = _data_offset(len(body))
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(body), crc32c(body), offset)
    return prefix + body, offset


@dataclass(frozen=True, slots=True)
class Usage:
    capacity_bytes: int
    free_bytes: int
    used_bytes: int
    chunk_count: int


class ChunkWriter:
    """One chunk being received: data goes to a temp file, checksummed as it arrives."""

    def __init__(self, store: ChunkStore, header: pb.ChunkFileHeader) -> None:
        self._store = store
        self.header = header
        self.length_bytes = header.length_bytes
        self.block_size_bytes = header.block_size_bytes
        block_count = (self.length_bytes + self.block_size_bytes - 1) // self.block_size_bytes
        # Size the header with placeholder block CRCs: fixed32 fields have a fixed width,
        # so the real header written at the end has exactly this length.
        header.block_crc32c.extend([0] * block_count)
        _, self._data_offset = encode_prefix_and_header(header)
        del header.block_crc32c[:]
        self._block_crcs: list[int] = []
        self._block_crc = 0
        self._block_filled = 0
        self._crc = 0
        self.received_bytes = 0
        self.temp_path = store.tmp_dir / f"{header.chunk_id.hex()}.{uuid.uuid4().hex}"
        self._fd = os.open(self.temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)

    def write(self, data: bytes) -> None:
        """Append data; raises InvalidArgument past the declared length, DiskFull on ENOSPC."""
        if self.received_bytes + len(data) > self.length_bytes:
            raise InvalidArgument(
                f"chunk {self.header.chunk_id.hex()}: received more than the declared "
                f"{self.length_bytes} bytes"
            )
        self._pwrite(data, self._data_offset + self.received_bytes)
        self._update_checksums(memoryview(data))
        self.received_bytes += len(data)

    def _update_checksums(self, view: memoryview) -> None:
        self._crc = crc32c(view, self._crc)
        while view:
            room = self.block_size_bytes - self._block_filled
            piece = view[:room]
            self._block_crc = crc32c(piece, self._block_crc)
            self._block_filled += len(piece)
            view = view[len(piece) :]
            if self._block_filled == self.block_size_bytes:
                self._block_crcs.append(self._block_crc)
                self._block_crc = 0
                self._block_filled = 0

    def _pwrite(self, data: bytes | memoryview, offset: int) -> None:
        view = memoryview(data)
        try:
            while view:
                written = os.pwrite(self._fd, view, offset)
                view = view[written:]
                offset += written
        except OSError as exc:
            raise self._store.os_error(exc, self.header.chunk_id, self.length_bytes) from exc

    def finish(self) -> Path:
        """Verify length and CRC32C, write the header, fsync and publish the file."""
        chunk_hex = self.header.chunk_id.hex()
        if self.received_bytes != self.length_bytes:
            raise InvalidArgument(
                f"chunk {chunk_hex}: received {self.received_bytes} bytes, header declared "
                f"{self.length_bytes}"
            )
        if self._crc != self.header.crc32c:
            raise ChecksumMismatch(
                f"chunk {chunk_hex}: data has CRC32C {self._crc:#010x} but the writer sent "
                f"{self.header.crc32c:#010x}; the data was corrupted in transit, retry the write"
            )
        if self._block_filled:
            self._block_crcs.append(self._block_crc)
        self.header.block_crc32c.extend(self._block_crcs)
        head, offset = encode_prefix_and_header(self.header)
        assert offset == self._data_offset, (offset, self._data_offset)
        self._pwrite(head, 0)
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise self._store.os_error(exc, self.header.chunk_id, self.length_bytes) from exc
        os.close(self._fd)
        self._fd = -1
        return self._store.publish(self.temp_path, self.header, offset + self.length_bytes)

    def abort(self) -> None:
        """Remove the temp file; safe to call more than once."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.temp_path.unlink(missing_ok=True)


@dataclass(slots=True)
class OpenChunk:
    fd: int
    header: pb.ChunkFileHeader
    data_offset: int

    def close(self) -> None:
        os.close(self.fd)


class ChunkStore:
    """The chunk files of one dataserver directory."""

    def __init__(self, root: Path, capacity_bytes: int = 0, reserve_bytes: int = 0) -> None:
        self.root = root
        self.chunks_dir = root / "chunks"
        self.tmp_dir = root / "tmp"
        self._capacity_limit_bytes = capacity_bytes
        self.reserve_bytes = reserve_bytes
        self._lock = threading.Lock()
        self._used_bytes = 0
        self._chunk_count = 0
        self.chunks_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def recover(self) -> None:
        """Remove unfinished writes left by a crash and count the stored chunks."""
        removed = 0
        for leftover in self.tmp_dir.iterdir():
            leftover.unlink(missing_ok=True)
            removed += 1
        used = count = 0
        for subdir in self.chunks_dir.iterdir():
            for entry in os.scandir(subdir):
                used += entry.stat().st_size
                count += 1
        with self._lock:
            self._used_bytes, self._chunk_count = used, count
        log.info(
            "chunk store recovered root=%s chunks=%d used_bytes=%d removed_temp_files=%d",
            self.root,
            count,
            used,
            removed,
        )

    def path_for(self, chunk_id: bytes) -> Path:
        if len(chunk_id) != CHUNK_ID_BYTES:
            raise InvalidArgument(
                f"chunk id {chunk_id.hex()} has {len(chunk_id)} bytes, expected {CHUNK_ID_BYTES}"
            )
        name = chunk_id.hex()
        return self.chunks_dir / name[:2] / name

    def usage(self) -> Usage:
        stats = os.statvfs(self.root)
        fs_capacity = stats.f_blocks * stats.f_frsize
        fs_free = stats.f_bavail * stats.f_frsize
        with self._lock:
            used, count = self._used_bytes, self._chunk_count
        capacity = fs_capacity
        free = max(fs_free - self.reserve_bytes, 0)
        if self._capacity_limit_bytes:
            capacity = min(capacity, self._capacity_limit_bytes)
            free = min(free, max(self._capacity_limit_bytes - used, 0))
        return Usage(capacity, free, used, count)

    def begin_write(self, header: pb.ChunkFileHeader) -> ChunkWriter:
        """Check the header and the free space, and open a writer for the chunk."""
        self.path_for(header.chunk_id)
        if not 0 < header.length_bytes <= MAX_CHUNK_SIZE_BYTES:
            raise InvalidArgument(
                f"chunk {header.chunk_id.hex()}: length {header.length_bytes} must be between 1 "
                f"and {MAX_CHUNK_SIZE_BYTES} bytes"
            )
        upload_id = check_upload_id(header.upload_id)
        if bytes.fromhex(upload_id) != header.chunk_id[:UPLOAD_ID_BYTES]:
            raise InvalidArgument(
                f"chunk {header.chunk_id.hex()} does not belong to upload {header.upload_id}"
            )
        header.block_size_bytes = CHECKSUM_BLOCK_BYTES
        del header.block_crc32c[:]
        free = self.usage().free_bytes
        if free < header.length_bytes + DATA_ALIGN_BYTES:
            raise DiskFull(
                f"no space for chunk {header.chunk_id.hex()} of {header.length_bytes} bytes: "
                f"{free} bytes free under {self.root} (reserve {self.reserve_bytes} bytes); "
                "free disk space or add dataservers"
            )
        try:
            return ChunkWriter(self, header)
        except OSError as exc:
            raise self.os_error(exc, header.chunk_id, header.length_bytes) from exc

    def os_error(self, exc: OSError, chunk_id: bytes, length_bytes: int) -> Exception:
        """Translate an OSError from a chunk write into a store error."""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return DiskFull(
                f"disk full under {self.root} while writing chunk {chunk_id.hex()} of "
                f"{length_bytes} bytes ({exc.strerror}); free disk space or add dataservers"
            )
        return InternalError(f"I/O error writing chunk {chunk_id.hex()} under {self.root}: {exc}")

    def publish(self, temp_path: Path, header: pb.ChunkFileHeader, file_bytes: int) -> Path:
        """Rename a finished temp file into place and make the rename durable."""
        final = self.path_for(header.chunk_id)
        final.parent.mkdir(exist_ok=True)
        replaced = final.exists()
        os.replace(temp_path, final)
        fsync_directory(final.parent)
        with self._lock:
            if not replaced:
                self._chunk_count += 1
                self._used_bytes += file_bytes
        return final

    def open_chunk(self, chunk_id: bytes) -> OpenChunk:
        """Open a chunk and parse its header; ChunkNotFound if absent, ChecksumMismatch if torn."""
        path = self.path_for(chunk_id)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise ChunkNotFound(f"chunk {chunk_id.hex()} not found under {self.root}") from None
        try:
            return OpenChunk(fd, *self._read_header(fd, chunk_id))
        except BaseException:
            os.close(fd)
            raise

    def _read_header(self, fd: int, chunk_id: bytes) -> tuple[pb.ChunkFileHeader, int]:
        head = os.pread(fd, DATA_ALIGN_BYTES, 0)
        if len(head) < _PREFIX.size:
            raise ChecksumMismatch(f"chunk {chunk_id.hex()}: file too short for a header")
        magic, version, header_bytes, header_crc, data_offset = _PREFIX.unpack_from(head)
        if magic != MAGIC or version != FORMAT_VERSION or header_bytes > MAX_HEADER_BYTES:
            raise ChecksumMismatch(
                f"chunk {chunk_id.hex()}: bad file prefix (magic {magic!r}, version {version})"
            )
        end = _PREFIX.size + header_bytes
        if end > len(head):
            head = os.pread(fd, end, 0)
        body = head[_PREFIX.size : end]
        if crc32c(body) != header_crc or data_offset != _data_offset(header_bytes):
            raise ChecksumMismatch(f"chunk {chunk_id.hex()}: header checksum mismatch")
        header = pb.ChunkFileHeader.FromString(body)
        if header.chunk_id != chunk_id:
            raise ChecksumMismatch(
                f"chunk file {chunk_id.hex()} holds chunk {header.chunk_id.hex()}"
            )
        return header, data_offset

    def read_blocks(self, chunk: OpenChunk, offset_bytes: int, length_bytes: int) -> bytes:
        """Read [offset, offset + length) of the chunk's data."""
        data = os.pread(chunk.fd, length_bytes, chunk.data_offset + offset_bytes)
        if len(data) != length_bytes:
            raise ChecksumMismatch(
                f"chunk {chunk.header.chunk_id.hex()}: file truncated, read {len(data)} of "
                f"{length_bytes} bytes at offset {offset_bytes}"
            )
        return data

    def delete(self, chunk_id: bytes) -> bool:
        """Delete one chunk; return False when it did not exist."""
        path = self.path_for(chunk_id)
        try:
            file_bytes = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return False
        with self._lock:
            self._chunk_count -= 1
            self._used_bytes -= file_bytes
        return True

    def delete_upload(self, upload_id: str) -> int:
        """Delete every chunk of an upload; return how many were deleted."""
        check_upload_id(upload_id)
        subdir = self.chunks_dir / upload_id[:2]
        if not subdir.is_dir():
            return 0
        deleted = 0
        for entry in os.scandir(subdir):
            if entry.name.startswith(upload_id) and self.delete(bytes.fromhex(entry.name)):
                deleted += 1
        return deleted

    def sync_deletes(self, chunk_ids: list[bytes]) -> None:
        """Make the unlinks of these chunks durable."""
        for directory in {self.path_for(chunk).parent for chunk in chunk_ids}:
            if directory.is_dir():
                fsync_directory(directory)
