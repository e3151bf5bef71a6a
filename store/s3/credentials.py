"""Look up the user and secret key of an access key, with a short-lived cache.

The gateway keeps no state of its own: users and keys live in the metaserver. The
cache only saves a metadata call per request, so a removed user or key still works
on a gateway for at most `ttl_s` seconds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from store.client import AsyncClient
from store.errors import NotFound
from store.types import UserInfo

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 5.0
MAX_CACHED_KEYS = 10_000
# Name of the user that the metaserver creates with the cluster; it may do anything.
ROOT_USER_NAME = "root"


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated user of a request."""

    name: str
    access_key: str

    @property
    def is_root(self) -> bool:
        return self.name == ROOT_USER_NAME


class CredentialCache:
    """Access key to user, fetched from the metaserver and kept for `ttl_s` seconds."""

    def __init__(self, client: AsyncClient, ttl_s: float = DEFAULT_TTL_S) -> None:
        self._client = client
        self._ttl_s = ttl_s
        # access key -> (monotonic expiry time, user or None for an unknown key)
        self._entries: dict[str, tuple[float, UserInfo | None]] = {}

    async def lookup(self, access_key: str) -> UserInfo | None:
        """Return the user with its secret key, or None when the key is unknown."""
        now_s = time.monotonic()
        cached = self._entries.get(access_key)
        if cached is not None and cached[0] > now_s:
            return cached[1]
        try:
            user: UserInfo | None = await self._client.get_credentials(access_key)
        except NotFound:
            user = None
        self._remember(access_key, user, now_s)
        return user

    def _remember(self, access_key: str, user: UserInfo | None, now_s: float) -> None:
        if len(self._entries) >= MAX_CACHED_KEYS:
            # Drop the oldest half; dicts keep insertion order.
            for stale in list(self._entries)[: MAX_CACHED_KEYS // 2]:
                del self._entries[stale]
        self._entries.pop(access_key, None)
        self._entries[access_key] = (now_s + self._ttl_s, user)
