"""Settings of one gateway, from the store-s3 command line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_REGION = "us-east-1"
# Chunks a single PUT or GET keeps in flight, which bounds the gateway's memory per
# request to about this many chunks (4 MiB each by default).
DEFAULT_WINDOW_CHUNKS = 4


@dataclass(frozen=True)
class GatewayConfig:
    listen: str
    meta: str
    # Base domain of virtual-hosted-style requests (bucket.DOMAIN); None for path-style only.
    domain: str | None = None
    region: str = DEFAULT_REGION
    workers: int = 1
    log_level: str = "info"
    # "uvloop" or "asyncio".
    loop: str = "asyncio"
    # Directory for server.json, written once the gateway listens; None for none.
    directory: Path | None = None
    window_chunks: int = DEFAULT_WINDOW_CHUNKS
    credential_ttl_s: float = 5.0
    # Time each metadata call of the SDK may take before the request fails with 503.
    timeout_s: float = 30.0
