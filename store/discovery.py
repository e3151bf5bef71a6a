"""Finding the metaserver address for storectl and the demo.

The address comes from, in order: an explicit --meta flag, an explicit --dir
flag, the STORE_META environment variable, and the cluster.json of the
default cluster directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from store.cluster import CLUSTER_FILE
from store.errors import InvalidArgument

DEFAULT_CLUSTER_DIR = Path(".store-dev")
META_ENV_VAR = "STORE_META"


def read_meta_addresses(directory: Path) -> list[str]:
    """Return the metaserver addresses recorded in DIR/cluster.json."""
    path = directory / CLUSTER_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidArgument(
            f"no cluster at {directory}: {path} does not exist; start one with "
            f"`storectl cluster up --dir {directory}`, or pass --meta HOST:PORT"
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidArgument(f"cannot read {path}: {exc}") from None
    addresses = [str(m.get("address", "")) for m in record.get("metaservers", [])]
    addresses = [a for a in addresses if a]
    if not addresses:
        raise InvalidArgument(f"{path} lists no metaserver address; start the cluster again")
    return addresses


def resolve_meta_address(meta: str | None, directory: Path | None) -> str:
    """Return the metaserver address(es) to connect to, comma-separated."""
    if meta:
        return meta
    if directory is not None:
        return ",".join(read_meta_addresses(directory))
    from_env = os.environ.get(META_ENV_VAR, "").strip()
    if from_env:
        return from_env
    return ",".join(read_meta_addresses(DEFAULT_CLUSTER_DIR))
