"""The demo's local data: the standard library's files and one large random file."""

from __future__ import annotations

import logging
import os
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Folders of third-party packages installed into the interpreter, not part of the stdlib.
THIRD_PARTY_DIRS = ("site-packages", "dist-packages")
GENERATE_BLOCK_BYTES = 4 << 20


@dataclass(frozen=True, slots=True)
class LocalFile:
    path: Path
    key: bytes
    size_bytes: int


@dataclass(frozen=True, slots=True)
class FileScan:
    root: Path
    files: list[LocalFile]
    unreadable: int

    @property
    def size_bytes(self) -> int:
        return sum(f.size_bytes for f in self.files)


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def scan_files(root: Path, key_prefix: bytes) -> FileScan:
    """List every regular file under `root` (not following symlinks), keyed by relative path.

    Keys are bytes so that file names that are not UTF-8 keep their exact bytes. Files
    that cannot be opened for reading are counted and left out.
    """
    files: list[LocalFile] = []
    unreadable = 0
    for directory, subdirectories, names in os.walk(root):
        if Path(directory) == root:
            subdirectories[:] = [d for d in subdirectories if d not in THIRD_PARTY_DIRS]
        subdirectories.sort()
        for name in sorted(names):
            path = Path(directory, name)
            if path.is_symlink() or not path.is_file():
                continue
            local = _open_file(root, path, key_prefix)
            if local is None:
                unreadable += 1
                continue
            files.append(local)
    return FileScan(root, files, unreadable)


def _open_file(root: Path, path: Path, key_prefix: bytes) -> LocalFile | None:
    """Return the file as a LocalFile, or None when it cannot be opened for reading."""
    try:
        with path.open("rb") as file:
            size_bytes = os.fstat(file.fileno()).st_size
    except OSError as exc:
        log.info("skipping unreadable file %s: %s", path, exc)
        return None
    key = key_prefix + os.fsencode(path.relative_to(root).as_posix())
    return LocalFile(path, key, size_bytes)


def generate_random_file(path: Path, size_bytes: int) -> float:
    """Write `size_bytes` of random bytes to `path` and return the seconds it took."""
    started_s = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as file:
        left = size_bytes
        while left > 0:
            block = os.urandom(min(GENERATE_BLOCK_BYTES, left))
            file.write(block)
            left -= len(block)
    return time.perf_counter() - started_s


def first_difference(expected: bytes | memoryview, actual: bytes | memoryview) -> int:
    """Return the first offset where the two differ (the shorter length if one is a prefix)."""
    length = min(len(expected), len(actual))
    low, high = 0, length
    # Binary search on prefix equality; comparing slices runs at memcmp speed.
    while low < high:
        middle = (low + high) // 2
        if expected[low : middle + 1] == actual[low : middle + 1]:
            low = middle + 1
        else:
            high = middle
    return low
