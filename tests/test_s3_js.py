"""The AWS SDK for JavaScript v3 against the gateway, at its defaults.

Node services and browsers reach S3 through this SDK. Since version 3.729 it sends a CRC32
checksum with every upload by default, and it presigns x-amz-* headers as query parameters.
The test runs tests/js/s3_check.mjs with Node.js. tools/install-s3-clients.sh installs the
SDK there with `npm ci`, at the versions that tests/js/package-lock.json pins.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .s3_clients_support import (
    INSTALL_SCRIPT,
    client_env,
    require_command,
    run_client,
    skip_missing_client,
)
from .s3gw_support import REGION, GatewayInfo, crc32_header
from .support import MIB, make_data

JS_DIR = Path(__file__).parent / "js"
SCRIPT = JS_DIR / "s3_check.mjs"
NODE_TIMEOUT_S = 120
ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")


def require_sdk() -> str:
    """Return the path of node, or skip (fail under CI) when node or the SDK is missing."""
    node = require_command("node")
    if not (JS_DIR / "node_modules" / "@aws-sdk" / "client-s3").is_dir():
        skip_missing_client(
            f"the JavaScript SDK is not installed in {JS_DIR}; run {INSTALL_SCRIPT}"
        )
    return node


def run_check(gateway: GatewayInfo, bucket: str, data_dir: Path, home: Path) -> dict[str, Any]:
    env = client_env(home)
    env.update(
        S3_ENDPOINT=gateway.endpoint,
        S3_ACCESS_KEY=gateway.access_key,
        S3_SECRET_KEY=gateway.secret_key,
        S3_REGION=REGION,
        S3_BUCKET=bucket,
        DATA_DIR=str(data_dir),
        # The SDK would otherwise ask the EC2 instance metadata service for credentials.
        AWS_EC2_METADATA_DISABLED="true",
    )
    completed = run_client([require_sdk(), str(SCRIPT)], env, NODE_TIMEOUT_S)
    seen: dict[str, Any] = json.loads(completed.stdout)
    return seen


def test_js_sdk_defaults(gateway: GatewayInfo, s3: Any, s3_bucket: str, tmp_path: Path) -> None:
    small = make_data(70_001, seed=80)
    large = make_data(12 * MIB + 7, seed=81)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "small.bin").write_bytes(small)
    (data_dir / "large.bin").write_bytes(large)

    seen = run_check(gateway, s3_bucket, data_dir, tmp_path / "home")

    def read(name: str) -> bytes:
        return (data_dir / name).read_bytes()

    small_etag = f'"{hashlib.md5(small).hexdigest()}"'
    assert seen["put"] == {"etag": small_etag, "crc32": crc32_header(small)}
    assert seen["get"] == {
        "etag": small_etag,
        "crc32": crc32_header(small),
        "metadata": {"owner": "ann"},
    }
    assert read("small.out") == small
    assert seen["upload"]["etag"].endswith('-3"'), "12 MiB in 5 MiB parts is 3 parts"
    assert read("large.out") == large
    assert seen["range"] == {"contentRange": f"bytes 1000-1999/{len(large)}", "length": 1000}
    assert read("range.out") == large[1000:2000]
    for algorithm in ALGORITHMS:
        result = seen["checksums"][algorithm]
        assert result["ok"], (algorithm, result)
        assert result["value"]["put"] == result["value"]["head"], algorithm
        assert result["value"]["put"], algorithm
    assert seen["checksums"]["CRC32"]["value"]["put"] == crc32_header(small)
    assert read("copy.out") == small
    assert read("presigned.out") == small
    assert seen["presigned"] == {
        "getStatus": 200,
        "defaultPutStatus": 400,
        "defaultPutCode": "BadDigest",
        "putStatus": 200,
        "putMetadata": {"via": "url"},
    }
    expected_keys = sorted(
        ["small.bin", "dir/large.bin", "copy.bin", "presigned.bin"]
        + [f"checksum/{algorithm}" for algorithm in ALGORITHMS]
    )
    assert seen["keys"] == expected_keys
    assert seen["missing"] == {"ok": False, "name": "NoSuchKey", "status": 404}
    assert (seen["deleted"], seen["deleteErrors"]) == (len(expected_keys), [])
    assert s3.list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 0
