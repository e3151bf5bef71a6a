"""Pacing of background I/O (scrub, repair) to a byte rate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class Throttle:
    """Paces reads to `rate_bytes_s` on average, letting one piece through ahead of it.

    Idle time is not saved up, so a pause never turns into a burst later.
    """

    def __init__(self, rate_bytes_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        assert rate_bytes_s > 0
        self.rate_bytes_s = rate_bytes_s
        self._clock = clock
        # Invariant: the bytes accounted so far, read at the rate, end at this time.
        self._paid_until_s = clock()

    def delay_s(self, size_bytes: int) -> float:
        """Account for `size_bytes` just read; return the seconds to sleep before the next read."""
        assert size_bytes >= 0
        now_s = self._clock()
        cost_s = size_bytes / self.rate_bytes_s
        self._paid_until_s = max(self._paid_until_s, now_s - cost_s) + cost_s
        delay_s = self._paid_until_s - now_s
        assert delay_s >= 0
        return delay_s

    async def spend(self, size_bytes: int) -> None:
        """Account for `size_bytes` and sleep as long as the rate requires."""
        delay_s = self.delay_s(size_bytes)
        if delay_s > 0:
            await asyncio.sleep(delay_s)
