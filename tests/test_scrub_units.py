"""The scrub's throttle on a fake clock, and one Scrubber on a ChunkStore in a temp directory.

The reporter is a fake whose first call fails, so these tests see a failed
report kept in the state and sent again when the next pass starts.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path

from dataserver.badchunks import BadChunkReport
from dataserver.chunkstore import ChunkStore
from dataserver.scrub import STATE_FILE, Scrubber, ScrubState
from store._pb import common_pb2 as pb
from store.checksum import crc32c
from store.layout import chunk_id
from store.throttle import Throttle

from .support import KIB, MIB, chunk_data_offset, flip_byte, make_data

UPLOAD_ID = "ab" * 16
WAIT_S_MAX = 10.0


class FakeClock:
    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


class FlakyReporter:
    """Fails the first `failures` calls, then accepts every report."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[list[bytes]] = []

    async def send(self, reports: list[BadChunkReport]) -> list[BadChunkReport]:
        self.calls.append([report.chunk_id for report in reports])
        if len(self.calls) <= self.failures:
            return list(reports)
        return []

    async def close(self) -> None:
        return None


def test_throttle_paces_reads() -> None:
    clock = FakeClock(100.0)
    throttle = Throttle(1000.0, clock)
    for _ in range(10):
        clock.now_s += throttle.delay_s(500)
    assert clock.now_s == 105.0, "10 pieces of 500 bytes at 1000 bytes/s must take 5 s"


def test_throttle_saves_no_idle_time() -> None:
    clock = FakeClock(0.0)
    throttle = Throttle(1000.0, clock)
    assert throttle.delay_s(1000) == 1.0
    clock.now_s = 60.0
    assert throttle.delay_s(1000) == 0.0, "a piece after an idle minute needs no sleep"
    assert throttle.delay_s(1000) == 1.0, "idle time must not become a burst"


def test_throttle_slow_reads_need_no_sleep() -> None:
    clock = FakeClock(0.0)
    throttle = Throttle(1000.0, clock)
    for _ in range(5):
        clock.now_s += 2.0  # a read of 1000 bytes that took 2 s
        assert throttle.delay_s(1000) == 0.0


def test_state_json_roundtrip() -> None:
    report = BadChunkReport(b"\x01" * 22, "bucket", b"k\xff", "corrupt: block 0")
    state = ScrubState(position="01" * 22, pass_started_unix_ms=5, corrupt_chunks=1)
    state.pending_reports.append(report)
    assert ScrubState.from_json(state.to_json()) == state


def write_chunk(store: ChunkStore, stripe: int, data: bytes, key: bytes) -> Path:
    header = pb.ChunkFileHeader(
        chunk_id=chunk_id(UPLOAD_ID, stripe),
        upload_id=UPLOAD_ID,
        bucket="units",
        key=key,
        length_bytes=len(data),
        crc32c=crc32c(data),
    )
    return store.write_chunk(header, [data])


async def scrub_until(scrubber: Scrubber, done: Callable[[], bool]) -> None:
    """Run the scrubber until `done()` or WAIT_S_MAX, then stop it as the dataserver does."""
    task = asyncio.create_task(scrubber.run())
    loop = asyncio.get_running_loop()
    deadline_s = loop.time() + WAIT_S_MAX
    while not done() and loop.time() < deadline_s and not task.done():
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    scrubber.close()


def test_scrubber_retries_failed_report(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    good = [write_chunk(store, stripe, make_data(200 * KIB, stripe), b"good") for stripe in (0, 2)]
    bad = write_chunk(store, 1, make_data(300 * KIB, 1), b"bad")
    flip_byte(bad, chunk_data_offset(bad) + 200 * KIB)
    reporter = FlakyReporter(failures=1)
    scrubber = Scrubber(store, reporter, 64 * MIB, 0.05)

    asyncio.run(scrub_until(scrubber, lambda: len(reporter.calls) >= 2))

    bad_id = bytes.fromhex(bad.name)
    assert reporter.calls[:2] == [[bad_id], [bad_id]], "the failed report must be sent again"
    assert not bad.exists(), f"{bad} is still under chunks/"
    assert (tmp_path / "quarantine" / bad.name).exists()
    assert all(path.exists() for path in good)
    state = json.loads((tmp_path / STATE_FILE).read_text())
    assert state["pending_reports"] == [], state
    assert state["corrupt_chunks"] == 1, state
    assert store.usage().chunk_count == 2


def test_scrubber_quarantines_unparsable_chunk(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    path = write_chunk(store, 0, make_data(100 * KIB, 7), b"cut")
    os.truncate(path, 10)
    reporter = FlakyReporter(failures=0)
    scrubber = Scrubber(store, reporter, 64 * MIB, 60.0)

    asyncio.run(scrub_until(scrubber, lambda: scrubber.state.last_pass_finished_unix_ms > 0))
    assert (tmp_path / "quarantine" / path.name).exists()
    assert reporter.calls == [], "a chunk whose header does not parse names no object"
    assert scrubber.state.corrupt_chunks == 1
    assert scrubber.state.pending_reports == []
