"""Mapping of (bucket, key) to metadata shards, and shard range syntax."""

from __future__ import annotations

import hashlib

from store.errors import InvalidArgument
from store.limits import MAX_SHARD_COUNT


def shard_of(bucket: str, key: bytes, shard_count: int) -> int:
    """Return the shard that owns (bucket, key): a stable hash, the same in every process."""
    assert shard_count > 0
    digest = hashlib.blake2b(bucket.encode() + b"\0" + key, digest_size=8).digest()
    shard = int.from_bytes(digest, "little") % shard_count
    assert 0 <= shard < shard_count
    return shard


def parse_shard_ranges(text: str, shard_count: int) -> list[int]:
    """Parse "0-7,12,14-15" into a sorted list of shard numbers below `shard_count`."""
    if not 0 < shard_count <= MAX_SHARD_COUNT:
        raise InvalidArgument(f"shard count {shard_count} must be between 1 and {MAX_SHARD_COUNT}")
    shards: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                first_text, last_text = part.split("-", 1)
                first, last = int(first_text), int(last_text)
            else:
                first = last = int(part)
        except ValueError:
            raise InvalidArgument(
                f"invalid shard range {part!r} in {text!r}; use a form like 0-7,12"
            ) from None
        if not 0 <= first <= last < shard_count:
            raise InvalidArgument(
                f"shard range {part!r} is outside 0-{shard_count - 1} (shard count {shard_count})"
            )
        shards.update(range(first, last + 1))
    if not shards:
        raise InvalidArgument(f"shard range {text!r} names no shards")
    return sorted(shards)


def format_shard_ranges(shards: list[int]) -> str:
    """Format shard numbers compactly, the inverse of parse_shard_ranges."""
    parts: list[str] = []
    ordered = sorted(set(shards))
    index = 0
    while index < len(ordered):
        first = ordered[index]
        while index + 1 < len(ordered) and ordered[index + 1] == ordered[index] + 1:
            index += 1
        last = ordered[index]
        parts.append(str(first) if first == last else f"{first}-{last}")
        index += 1
    return ",".join(parts)
