"""Listing: a lazy k-way merge of ordered key cursors with prefix and delimiter.

The metaserver merges one cursor per shard and the SDK merges one page per
metaserver with the same function. A page of N items touches about N keys:
when a common prefix is emitted, every cursor inside it seeks past it
instead of reading the keys it rolls up.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from store.errors import InvalidArgument


class KeyCursor(Protocol):
    """An ordered source of keys positioned on its current key, or exhausted."""

    def current(self) -> bytes | None:
        """Return the current key, or None when exhausted."""

    def payload(self) -> Any:
        """Return the value of the current key."""

    def advance(self) -> bytes | None:
        """Move to the next key and return it (None when exhausted)."""

    def seek(self, key: bytes) -> None:
        """Move to the first key >= `key`."""


@dataclass(slots=True)
class ListItem:
    key: bytes
    is_prefix: bool
    payload: Any = None


def prefix_successor(prefix: bytes) -> bytes | None:
    """Return the smallest key greater than every key starting with `prefix`, or None."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


def next_start_key(item: ListItem) -> bytes | None:
    """Return the first key the page after `item` may return (None: nothing can follow)."""
    if item.is_prefix:
        return prefix_successor(item.key)
    return item.key + b"\x00"


def merge_page(
    cursors: Sequence[KeyCursor], prefix: bytes, delimiter: bytes, max_keys: int
) -> tuple[list[ListItem], bool]:
    """Merge the cursors into at most `max_keys` items; return them and whether more follow.

    Every cursor must already be positioned at or after the page start and yield
    only keys that start with `prefix`.
    """
    assert max_keys >= 0
    heap: list[tuple[bytes, int]] = []
    for index, cursor in enumerate(cursors):
        key = cursor.current()
        if key is not None:
            heap.append((key, index))
    heapq.heapify(heap)

    # One pass per item; this loop runs once per listed key, so it avoids calls it can skip.
    items: list[ListItem] = []
    append = items.append
    prefix_length = len(prefix)
    last_key: bytes | None = None
    while heap and len(items) < max_keys:
        key, index = heap[0]
        if delimiter:
            position = key.find(delimiter, prefix_length)
            if position >= 0:
                rolled_up = key[: position + len(delimiter)]
                append(ListItem(rolled_up, True))
                _skip_prefix(heap, cursors, rolled_up)
                last_key = None
                continue
        cursor = cursors[index]
        if key != last_key:
            append(ListItem(key, False, cursor.payload()))
            last_key = key
        following = cursor.advance()
        if following is None:
            heapq.heappop(heap)
        else:
            heapq.heapreplace(heap, (following, index))
    return items, bool(heap)


def _skip_prefix(
    heap: list[tuple[bytes, int]], cursors: Sequence[KeyCursor], rolled_up: bytes
) -> None:
    # Keys under `rolled_up` form one contiguous range at the head of the heap.
    successor = prefix_successor(rolled_up)
    while heap and heap[0][0].startswith(rolled_up):
        _, index = heapq.heappop(heap)
        cursor = cursors[index]
        if successor is None:
            continue
        cursor.seek(successor)
        _push(heap, cursor, index)


def _push(heap: list[tuple[bytes, int]], cursor: KeyCursor, index: int) -> None:
    key = cursor.current()
    if key is not None:
        heapq.heappush(heap, (key, index))


class ItemCursor:
    """A cursor over already-sorted list items, as returned by one metaserver."""

    def __init__(self, items: Sequence[ListItem]) -> None:
        self._items = items
        self._keys = [item.key for item in items]
        self._index = 0

    def current(self) -> bytes | None:
        return self._keys[self._index] if self._index < len(self._keys) else None

    def payload(self) -> Any:
        return self._items[self._index].payload

    def advance(self) -> bytes | None:
        self._index += 1
        return self.current()

    def seek(self, key: bytes) -> None:
        self._index = max(self._index, bisect.bisect_left(self._keys, key))


def encode_token(start_key: bytes) -> str:
    """Return the opaque page token for a page that starts at `start_key`."""
    return base64.urlsafe_b64encode(b"k1" + start_key).decode()


def decode_token(token: str) -> bytes:
    """Return the start key of a page token; InvalidArgument for a token we did not issue."""
    try:
        raw = base64.urlsafe_b64decode(token.encode())
    except (binascii.Error, ValueError):
        raw = b""
    if not raw.startswith(b"k1"):
        raise InvalidArgument(
            f"invalid page token {token[:60]!r}; pass a token from a previous page"
        )
    return raw[2:]
