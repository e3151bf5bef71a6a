"""Readers see either the old or the new version of an object, never a mix."""

from __future__ import annotations

import hashlib
import threading
import time

import store

from .support import CHUNK_SIZE_BYTES, make_data

CHUNK = CHUNK_SIZE_BYTES
VERSIONS = 30
MAX_READS = 2000
MAX_SECONDS = 60.0
# A range across the first and second chunk boundaries.
RANGE_OFFSET = CHUNK - 1000
RANGE_LENGTH = CHUNK + 2000


def version_data(version: int) -> bytes:
    """Return the content of one version: even versions share a size, odd ones differ."""
    size = 3 * CHUNK if version % 2 == 0 else 2 * CHUNK + 12_345 * version
    return make_data(size, seed=500 + version)


def test_overwrite_concurrent_reader(client: store.Client, bucket: str) -> None:
    versions = [version_data(version) for version in range(VERSIONS)]
    by_digest = {hashlib.sha256(data).digest(): index for index, data in enumerate(versions)}
    ranges = {
        data[RANGE_OFFSET : RANGE_OFFSET + RANGE_LENGTH]: index
        for index, data in enumerate(versions)
    }
    assert len(by_digest) == VERSIONS, "the test versions must all differ"
    client.put(bucket, "hot", versions[0])

    writer_errors: list[BaseException] = []
    writer_done = threading.Event()

    def overwrite() -> None:
        try:
            for data in versions[1:]:
                client.put(bucket, "hot", data)
        except BaseException as error:
            writer_errors.append(error)
        finally:
            writer_done.set()

    writer = threading.Thread(target=overwrite, name="overwriter", daemon=True)
    writer.start()

    seen: set[int] = set()
    mixed: list[str] = []
    reads = 0
    deadline = time.monotonic() + MAX_SECONDS
    while not writer_done.is_set() and reads < MAX_READS and time.monotonic() < deadline:
        method = ("get", "stream", "open", "range")[reads % 4]
        if method == "range":
            part = client.get(bucket, "hot", offset=RANGE_OFFSET, length=RANGE_LENGTH)
            version = ranges.get(part)
        else:
            if method == "get":
                data = client.get(bucket, "hot")
            elif method == "stream":
                data = b"".join(client.get_stream(bucket, "hot"))
            else:
                with client.open(bucket, "hot") as file:
                    data = file.read()
            version = by_digest.get(hashlib.sha256(data).digest())
        reads += 1
        if version is None:
            mixed.append(f"read {reads} ({method})")
        else:
            seen.add(version)
    writer.join(timeout=MAX_SECONDS)

    assert not writer.is_alive(), f"the writer did not finish within {MAX_SECONDS}s"
    assert not writer_errors, f"an overwrite failed: {writer_errors[0]!r}"
    assert not mixed, f"{len(mixed)} of {reads} reads matched no written version: {mixed[:5]}"
    assert reads >= 4, f"only {reads} reads ran while the writer was overwriting"
    assert len(seen) >= 2, f"the reader saw only versions {sorted(seen)}; no overlap happened"
    final = client.get(bucket, "hot")
    assert final == versions[-1], "after the writer finished, get did not return the last version"
