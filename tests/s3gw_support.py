"""Helpers for the S3 gateway tests: clients, raw signed requests and the aws CLI.

Every test talks to a real gateway process over a real cluster on 127.0.0.1. Raw
requests are signed by botocore's own signer (the one boto3 and the aws CLI use) and
sent with http.client, so a test controls every header and byte on the wire.
"""

from __future__ import annotations

import base64
import http.client
import sys
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import boto3
import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from store.cluster import ManagedProcess

from .s3_clients_support import client_env, run_client

REGION = "us-east-1"
# The base domain of virtual-hosted-style requests that the test gateway serves.
DOMAIN = "s3.test"
AWS_CLI = str(Path(sys.executable).with_name("aws"))
AWS_CLI_TIMEOUT_S = 120


@dataclass(frozen=True)
class GatewayInfo:
    """A running gateway and the root user's keys."""

    process: ManagedProcess
    access_key: str
    secret_key: str

    @property
    def address(self) -> str:
        return self.process.address

    @property
    def endpoint(self) -> str:
        return f"http://{self.process.address}"

    @property
    def port(self) -> int:
        return int(self.process.address.rsplit(":", 1)[1])


def default_s3_client(gateway: GatewayInfo) -> Any:
    """Return a boto3 S3 client of the gateway as most users create one, as root.

    It names no signature_version, so boto3 1.44 presigns URLs with Signature
    Version 2 (AWSAccessKeyId, Expires, Signature) while its API calls use SigV4.
    """
    return boto3.client(
        "s3",
        endpoint_url=gateway.endpoint,
        aws_access_key_id=gateway.access_key,
        aws_secret_access_key=gateway.secret_key,
        region_name=REGION,
        config=Config(retries={"max_attempts": 1}),
    )


def s3_client(
    gateway: GatewayInfo,
    access_key: str | None = None,
    secret_key: str | None = None,
    **config: Any,
) -> Any:
    """Return a boto3 S3 client of the gateway (path-style, no retries), as root by default."""
    s3_config = config.pop("s3", {"addressing_style": "path"})
    return boto3.client(
        "s3",
        endpoint_url=gateway.endpoint,
        aws_access_key_id=access_key or gateway.access_key,
        aws_secret_access_key=secret_key or gateway.secret_key,
        region_name=REGION,
        config=Config(
            s3=s3_config, signature_version="s3v4", retries={"max_attempts": 1}, **config
        ),
    )


class LiteralPayloadAuth(botocore.auth.S3SigV4Auth):
    """botocore's S3 signer, declaring a fixed x-amz-content-sha256 value such as
    STREAMING-AWS4-HMAC-SHA256-PAYLOAD or UNSIGNED-PAYLOAD."""

    def __init__(self, credentials: Credentials, payload_literal: str) -> None:
        super().__init__(credentials, "s3", REGION)
        self._payload_literal = payload_literal

    def payload(self, request: AWSRequest) -> str:
        return self._payload_literal


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def code(self) -> str | None:
        """Return the S3 error code of an error body, or None."""
        return error_code(self.body)


def error_code(body: bytes) -> str | None:
    if not body:
        return None
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    code = root.find("Code")
    return code.text if code is not None else None


def crc32_header(data: bytes) -> str:
    """Return the x-amz-checksum-crc32 value of `data`: its big-endian CRC32 in base64."""
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def object_url(gateway: GatewayInfo, bucket: str, key: str = "", query: str = "") -> str:
    """Return a path-style URL, encoding the key as botocore encodes S3 keys."""
    url = f"{gateway.endpoint}/{bucket}"
    if key:
        url += "/" + quote(key, safe="/~")
    return f"{url}?{query}" if query else url


def sign(
    gateway: GatewayInfo,
    method: str,
    url: str,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    *,
    payload: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
) -> AWSRequest:
    """Sign a request with the Authorization header; `payload` replaces the body's SHA-256."""
    credentials = Credentials(access_key or gateway.access_key, secret_key or gateway.secret_key)
    request = AWSRequest(method=method, url=url, headers=dict(headers or {}), data=body)
    if payload is None:
        botocore.auth.S3SigV4Auth(credentials, "s3", REGION).add_auth(request)
    else:
        LiteralPayloadAuth(credentials, payload).add_auth(request)
    return request


def sign_v2(
    gateway: GatewayInfo,
    method: str,
    url: str,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    *,
    auth_path: str | None = None,
    secret_key: str | None = None,
) -> AWSRequest:
    """Sign a request with botocore's Signature Version 2 signer, HmacV1Auth.

    `auth_path` is the path that botocore signs in place of the URL's: "/bucket/key"
    for a virtual-hosted-style URL, and "/bucket/" for a bucket, as boto3 sets it.
    """
    credentials = Credentials(gateway.access_key, secret_key or gateway.secret_key)
    request = AWSRequest(
        method=method, url=url, headers=dict(headers or {}), data=body, auth_path=auth_path
    )
    botocore.auth.HmacV1Auth(credentials).add_auth(request)
    return request


def send(
    gateway: GatewayInfo,
    request: AWSRequest,
    body: bytes | Iterable[bytes] | None = None,
    *,
    chunked: bool = False,
    extra_headers: Mapping[str, str] | None = None,
) -> Reply:
    """Send a signed request to the gateway exactly as given and return the reply.

    `chunked` sends the body with Transfer-Encoding: chunked and no Content-Length.
    """
    parts = urlsplit(request.url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = {name: _text(value) for name, value in request.headers.items()}
    if not any(name.lower() == "host" for name in headers):
        headers["Host"] = parts.netloc
    headers.update(extra_headers or {})
    data = request.body if body is None else body
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=60)
    try:
        connection.putrequest(request.method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        if chunked:
            connection.putheader("Transfer-Encoding", "chunked")
            connection.endheaders()
            for piece in [data] if isinstance(data, bytes) else data or []:
                connection.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            connection.send(b"0\r\n\r\n")
        else:
            payload = data if isinstance(data, bytes) else b"".join(data or [])
            if "Content-Length" not in headers and (payload or request.method in ("PUT", "POST")):
                connection.putheader("Content-Length", str(len(payload)))
            connection.endheaders(payload or None)
        response = connection.getresponse()
        return Reply(response.status, dict(response.getheaders()), response.read())
    finally:
        connection.close()


def http_get(url: str, data: bytes | None = None, method: str = "GET") -> Reply:
    """Send a request with urllib, as a browser or script would use a presigned URL.

    urllib adds Content-Type: application/x-www-form-urlencoded when `data` is given.
    """
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, dict(error.headers), error.read())


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def aws_cli(gateway: GatewayInfo, config_dir: Path, *args: str, check: bool = True) -> str:
    """Run the aws CLI against the gateway with a private config; return its stdout."""
    config_dir.mkdir(parents=True, exist_ok=True)
    config = config_dir / "config"
    if not config.exists():
        config.write_text(f"[default]\nregion = {REGION}\n")
    env = client_env(config_dir / "home")
    env.update(
        AWS_CONFIG_FILE=str(config),
        AWS_SHARED_CREDENTIALS_FILE=str(config_dir / "credentials-none"),
        AWS_ACCESS_KEY_ID=gateway.access_key,
        AWS_SECRET_ACCESS_KEY=gateway.secret_key,
        AWS_EC2_METADATA_DISABLED="true",
    )
    argv = [AWS_CLI, "--endpoint-url", gateway.endpoint, *args]
    return run_client(argv, env, AWS_CLI_TIMEOUT_S, check=check).stdout


def rss_peak_bytes(pid: int) -> int:
    """Return a process's peak resident set size (VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"/proc/{pid}/status has no VmHWM line")


def upload_parts(
    s3: Any,
    bucket: str,
    key: str,
    parts: list[bytes],
    *,
    checksum_algorithm: str | None = None,
    **create: Any,
) -> tuple[str, list[dict[str, Any]]]:
    """Start a multipart upload and upload `parts`; return its id and the parts to complete it.

    With `checksum_algorithm` (SHA256, CRC32, ...), the upload and every part declare it, and
    each listed part carries its checksum, as CompleteMultipartUpload then expects.
    """
    declared = {"ChecksumAlgorithm": checksum_algorithm} if checksum_algorithm else {}
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **declared, **create)["UploadId"]
    done = []
    for number, data in enumerate(parts, start=1):
        reply = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data, **declared
        )
        part = {"PartNumber": number, "ETag": reply["ETag"]}
        if checksum_algorithm:
            name = f"Checksum{checksum_algorithm}"
            part[name] = reply[name]
        done.append(part)
    return upload_id, done
