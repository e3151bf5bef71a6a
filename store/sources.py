"""Inputs of a put, read in pieces: bytes, files, and streams of unknown length."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from store.errors import InvalidArgument

PutData = bytes | bytearray | memoryview | BinaryIO | Iterable[bytes] | AsyncIterable[bytes]


class Source(Protocol):
    # Total bytes when known in advance, else None.
    size_bytes: int | None

    async def read_exact(self, size_bytes: int) -> bytes | memoryview:
        """Return the next `size_bytes` bytes, fewer only at the end of the input."""

    async def close(self) -> None: ...


class BufferSource:
    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._view = memoryview(data).cast("B")
        self.size_bytes: int | None = len(self._view)
        self._offset = 0

    async def read_exact(self, size_bytes: int) -> memoryview:
        piece = self._view[self._offset : self._offset + size_bytes]
        self._offset += len(piece)
        return piece

    async def close(self) -> None:
        return None


class FileSource:
    """A binary file object, read in a worker thread so the event loop stays free."""

    def __init__(self, file: BinaryIO, close_file: bool) -> None:
        self._file = file
        self._close_file = close_file
        self.size_bytes = _remaining_bytes(file)

    def _read(self, size_bytes: int) -> bytes:
        parts: list[bytes] = []
        wanted = size_bytes
        while wanted > 0:
            piece = self._file.read(wanted)
            if not piece:
                break
            parts.append(piece)
            wanted -= len(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def read_exact(self, size_bytes: int) -> bytes:
        return await asyncio.to_thread(self._read, size_bytes)

    async def close(self) -> None:
        if self._close_file:
            await asyncio.to_thread(self._file.close)


class IterableSource:
    """An iterator or async iterator of byte strings of any sizes."""

    def __init__(self, pieces: Iterable[bytes] | AsyncIterable[bytes]) -> None:
        self.size_bytes: int | None = None
        self._async: AsyncIterator[bytes] | None = None
        self._sync: Iterator[bytes] | None = None
        if isinstance(pieces, AsyncIterable):
            self._async = aiter(pieces)
        else:
            self._sync = iter(pieces)
        # Pieces read but not yet returned, and their total length. Each byte is copied
        # once, by the join that builds a read's result.
        self._pieces: list[bytes | memoryview] = []
        self._buffered_bytes = 0
        self._done = False

    async def _next_piece(self) -> bytes | None:
        if self._async is not None:
            return await anext(self._async, None)
        assert self._sync is not None
        return await asyncio.to_thread(next, self._sync, None)

    async def read_exact(self, size_bytes: int) -> bytes:
        while self._buffered_bytes < size_bytes and not self._done:
            piece = await self._next_piece()
            if piece is None:
                self._done = True
                break
            if not isinstance(piece, bytes | bytearray | memoryview):
                raise InvalidArgument(f"a put stream must yield bytes, got {type(piece).__name__}")
            if not isinstance(piece, bytes):
                # A producer may reuse its buffer once it has yielded it.
                piece = bytes(piece)
            self._pieces.append(piece)
            self._buffered_bytes += len(piece)
        return self._take(size_bytes)

    def _take(self, size_bytes: int) -> bytes:
        """Remove and return the first `size_bytes` buffered bytes (fewer at the end)."""
        result_pieces: list[bytes | memoryview] = []
        remaining_bytes = min(size_bytes, self._buffered_bytes)
        self._buffered_bytes -= remaining_bytes
        index = 0
        while remaining_bytes > 0 and len(self._pieces[index]) <= remaining_bytes:
            result_pieces.append(self._pieces[index])
            remaining_bytes -= len(self._pieces[index])
            index += 1
        rest = self._pieces[index:]
        if remaining_bytes > 0:
            # Split the piece that straddles the boundary without copying it.
            view = memoryview(rest[0]).cast("B")
            result_pieces.append(view[:remaining_bytes])
            rest[0] = view[remaining_bytes:]
        self._pieces = rest
        return b"".join(result_pieces)

    async def close(self) -> None:
        if self._async is not None and hasattr(self._async, "aclose"):
            await self._async.aclose()


def _remaining_bytes(file: BinaryIO) -> int | None:
    try:
        if not file.seekable():
            return None
        position = file.tell()
        end = file.seek(0, io.SEEK_END)
        file.seek(position)
        return end - position
    except (OSError, AttributeError, ValueError):
        return None


def open_source(data: PutData) -> Source:
    """Wrap any supported put input in a Source."""
    if isinstance(data, bytes | bytearray | memoryview):
        return BufferSource(data)
    if isinstance(data, str | os.PathLike):
        raise InvalidArgument(
            f"put() takes bytes, a binary file or an iterator of bytes, not "
            f"{type(data).__name__}; use put_file() to upload the file at a path"
        )
    if hasattr(data, "read"):
        return FileSource(data, close_file=False)  # type: ignore[arg-type]
    if isinstance(data, Iterable | AsyncIterable):
        return IterableSource(data)  # type: ignore[arg-type]
    raise InvalidArgument(
        f"cannot put a {type(data).__name__}; pass bytes, a binary file or an iterator of bytes"
    )


def open_path_source(path: str | os.PathLike[str]) -> Source:
    """Open the file at `path` for a put."""
    try:
        return FileSource(Path(path).open("rb"), close_file=True)
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror}") from None
