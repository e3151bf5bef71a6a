"""CRC32C (Castagnoli) of chunks and of the checksum blocks inside them.

The `crc32c` package uses the SSE4.2 / ARMv8 CRC instructions (about
10 GB/s on one core here), so checksums stay cheap on the data path.
"""

from __future__ import annotations

from collections.abc import Sequence

import crc32c as _crc32c

from store.errors import ChecksumMismatch
from store.limits import CHECKSUM_BLOCK_BYTES

Buffer = bytes | bytearray | memoryview


def crc32c(data: Buffer, value: int = 0) -> int:
    """Return the CRC32C of `data`, continuing from `value`."""
    return int(_crc32c.crc32c(data, value))


def block_crcs(data: Buffer, block_size_bytes: int = CHECKSUM_BLOCK_BYTES) -> list[int]:
    """Return the CRC32C of each block of `data`; the last block may be short."""
    view = memoryview(data)
    return [
        int(_crc32c.crc32c(view[start : start + block_size_bytes]))
        for start in range(0, len(view), block_size_bytes)
    ]


def verify_blocks(
    data: Buffer,
    expected: Sequence[int],
    block_size_bytes: int,
    where: str,
) -> None:
    """Raise ChecksumMismatch unless every block of `data` has its expected CRC32C.

    `where` names the chunk and server for the message.
    """
    view = memoryview(data)
    block_count = (len(view) + block_size_bytes - 1) // block_size_bytes
    if block_count != len(expected):
        raise ChecksumMismatch(
            f"{where}: got {len(view)} bytes in {block_count} blocks but "
            f"{len(expected)} block checksums"
        )
    for index, want in enumerate(expected):
        start = index * block_size_bytes
        got = int(_crc32c.crc32c(view[start : start + block_size_bytes]))
        if got != want:
            raise ChecksumMismatch(
                f"{where}: block {index} at offset {start} has CRC32C {got:#010x}, "
                f"expected {want:#010x}; the stored copy is corrupt"
            )
