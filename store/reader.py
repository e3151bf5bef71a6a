"""AsyncObjectReader: a seekable reader of one object version.

Sequential reads fetch whole stripes and keep up to `window` stripes in
flight ahead of the position, so a reader streaming a large object keeps
every dataserver busy. A read that does not continue where the previous one
ended is treated as random access and fetches only the blocks it covers.
`limit(end)` keeps the prefetch from reading past the end of a byte range.
`read_pieces` returns the bytes as gRPC delivered them, without joining them.
"""

from __future__ import annotations

import asyncio
import bisect
import io

from store.checksum import Buffer
from store.connection import Deadline
from store.download import Reader, ReadTarget
from store.errors import InvalidArgument
from store.layout import StripeSlice, stripes_for_range

Piece = Buffer


class AsyncObjectReader:
    def __init__(self, reader: Reader, target: ReadTarget, timeout_s: float | None) -> None:
        self._reader = reader
        self._target = target
        self._timeout_s = timeout_s
        self.size_bytes = target.record.size_bytes
        self._position = 0
        # End of the previous read; a read starting here counts as sequential.
        self._sequential_from = 0
        self._stripes = list(target.record.layout.stripes)
        self._prefetched: dict[int, asyncio.Task[list[Buffer]]] = {}
        # Prefetching reads no byte at or past `_limit_bytes`, so no stripe from
        # `_limit_stripe` on.
        self._limit_bytes = self.size_bytes
        self._limit_stripe = len(self._stripes)
        self.closed = False

    @property
    def name(self) -> str:
        return self._target.name()

    def limit(self, end_bytes: int) -> None:
        """Prefetch nothing at or past `end_bytes`, where the caller stops reading.

        A reader of a byte range sets this to the range's end. Without it, a read
        that continues from the previous one prefetches whole stripes past the
        range. Reads past the limit still work, without prefetching.
        """
        # Stripes prefetched under another limit may be cut short: fetch them again.
        for task in self._prefetched.values():
            task.cancel()
        self._prefetched.clear()
        self._limit_bytes = max(0, min(end_bytes, self.size_bytes))
        offsets = [stripe.offset_bytes for stripe in self._stripes]
        self._limit_stripe = bisect.bisect_left(offsets, self._limit_bytes)

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self._position + offset
        elif whence == io.SEEK_END:
            position = self.size_bytes + offset
        else:
            raise InvalidArgument(f"invalid whence {whence}")
        if position < 0:
            raise InvalidArgument(f"cannot seek to negative position {position} in {self.name}")
        self._position = position
        return position

    async def read(self, size: int = -1) -> bytes:
        """Read up to `size` bytes (all remaining when negative) from the current position."""
        pieces = await self.read_pieces(size)
        if len(pieces) == 1 and isinstance(pieces[0], bytes):
            return pieces[0]
        return b"".join(pieces)

    async def read_pieces(self, size: int = -1) -> list[Piece]:
        """Read like `read`, but return the bytes in pieces, without joining them.

        A sequential read of large stripes returns the messages gRPC delivered,
        or views of them, so a caller that writes the pieces to a socket saves
        a copy of every byte.
        """
        if self.closed:
            raise ValueError(f"read of closed object reader {self.name}")
        end = self.size_bytes if size < 0 else min(self.size_bytes, self._position + size)
        if end <= self._position:
            return []
        start = self._position
        pieces: list[Piece]
        if self._target.record.is_inline:
            pieces = [self._target.record.inline_data[start:end]]
        elif start == self._sequential_from and end <= self._limit_bytes:
            pieces = await self._read_sequential(start, end)
        else:
            deadline = Deadline(self._timeout_s, f"read {self.name}")
            pieces = list(await self._reader.read_range(self._target, start, end - start, deadline))
        assert sum(len(piece) for piece in pieces) == end - start
        self._position = end
        self._sequential_from = end
        return pieces

    async def readinto(self, buffer: memoryview) -> int:
        """Read into a writable byte buffer from the current position; return the count."""
        if self.closed:
            raise ValueError(f"read of closed object reader {self.name}")
        start = self._position
        end = min(self.size_bytes, start + len(buffer))
        if end <= start:
            return 0
        if self._target.record.is_inline or start == self._sequential_from:
            data = await self.read(end - start)
            buffer[: len(data)] = data
            return len(data)
        deadline = Deadline(self._timeout_s, f"read {self.name}")
        await self._reader.read_range_into(self._target, start, buffer[: end - start], deadline)
        self._position = end
        self._sequential_from = end
        return end - start

    async def _read_sequential(self, start: int, end: int) -> list[Piece]:
        pieces: list[Piece] = []
        for piece in stripes_for_range(self._target.record.layout, start, end - start):
            self._prefetch_from(piece.stripe_index)
            stripe_data = await self._prefetched[piece.stripe_index]
            pieces += slice_pieces(stripe_data, piece.start_bytes, piece.end_bytes)
        return pieces

    def _prefetch_from(self, first: int) -> None:
        # Drop stripes behind the position, then keep `window` stripes in flight from it.
        for index in [i for i in self._prefetched if i < first]:
            self._prefetched.pop(index).cancel()
        last = min(first + self._reader.window, self._limit_stripe)
        for index in range(first, last):
            if index not in self._prefetched:
                self._prefetched[index] = asyncio.ensure_future(self._fetch_stripe(index))

    async def _fetch_stripe(self, index: int) -> list[Buffer]:
        stripe = self._stripes[index]
        length_bytes = min(stripe.length_bytes, self._limit_bytes - stripe.offset_bytes)
        piece = StripeSlice(index, stripe, 0, length_bytes)
        deadline = Deadline(self._timeout_s, f"read {self.name}")
        return await self._reader.read_slice(self._target, piece, deadline)

    async def close(self) -> None:
        self.closed = True
        for task in self._prefetched.values():
            task.cancel()
        self._prefetched.clear()

    async def __aenter__(self) -> AsyncObjectReader:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def slice_pieces(pieces: list[Buffer], start: int, end: int) -> list[Piece]:
    """Return bytes [start, end) of the pieces joined, as the pieces themselves or views of them."""
    result: list[Piece] = []
    offset = 0
    for piece in pieces:
        piece_end = offset + len(piece)
        if max(offset, start) < min(piece_end, end):
            if start <= offset and piece_end <= end:
                result.append(piece)
            else:
                result.append(
                    memoryview(piece)[max(start - offset, 0) : min(end, piece_end) - offset]
                )
        offset = piece_end
    return result
