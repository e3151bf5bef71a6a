"""Helpers for the S3 authentication tests: botocore-signed requests and byte sources.

Requests are signed by botocore itself (the signer that boto3 and the AWS CLI use),
and never sent: a boto3 client's request is captured in its "before-send" event.
The chunk signatures of the signed aws-chunked modes come from `encode_signed_chunks`,
written from the AWS specification with hashlib and hmac only, so it shares no code
with store.s3.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import boto3
import botocore.auth
import botocore.crt.auth
from botocore.awsrequest import AWSPreparedRequest, AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from store.s3 import ParsedRequest

ACCESS_KEY = "AKIDSTORETEST0000001"
SECRET_KEY = "st0re/Secret+Key=ForTests0000000000000000"
CREDENTIALS = Credentials(ACCESS_KEY, SECRET_KEY)
REGION = "us-east-1"
SIGNING_TIME = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
AMZ_DATE = SIGNING_TIME.strftime("%Y%m%dT%H%M%SZ")
SCOPE = f"{AMZ_DATE[:8]}/{REGION}/s3/aws4_request"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

# The example credentials and time of the AWS S3 API reference.
DOC_ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
DOC_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
DOC_TIME = datetime(2013, 5, 24, 0, 0, 0, tzinfo=UTC)


def lookup_secret(access_key: str) -> str | None:
    return {ACCESS_KEY: SECRET_KEY, DOC_ACCESS_KEY: DOC_SECRET_KEY}.get(access_key)


def freeze_botocore_clock(monkeypatch: Any, moment: datetime = SIGNING_TIME) -> None:
    """Make botocore sign with `moment` as the current time."""

    def fixed_now(remove_tzinfo: bool = True) -> datetime:
        return moment.replace(tzinfo=None) if remove_tzinfo else moment

    monkeypatch.setattr(botocore.auth, "get_current_datetime", fixed_now)
    # With awscrt installed, boto3 clients sign with these CRT signers instead.
    monkeypatch.setattr(botocore.crt.auth, "get_current_datetime", fixed_now)


def path_url(base: str, key: str, query: str = "") -> str:
    """Join an endpoint, a key encoded as botocore encodes S3 keys and a raw query string."""
    url = base.rstrip("/") + "/" + quote(key, safe="/~")
    return f"{url}?{query}" if query else url


class StreamingS3SigV4Auth(botocore.auth.S3SigV4Auth):
    """botocore's S3 signer, declaring a fixed x-amz-content-sha256 value such as
    STREAMING-AWS4-HMAC-SHA256-PAYLOAD, which botocore itself never sends."""

    def __init__(self, payload_literal: str) -> None:
        super().__init__(CREDENTIALS, "s3", REGION)
        self._payload_literal = payload_literal

    def payload(self, request: AWSRequest) -> str:
        return self._payload_literal


# botocore's pure-Python signers, and the awscrt (aws-c-auth) signers that boto3 uses
# when awscrt is installed.
HEADER_SIGNERS = {
    "botocore": botocore.auth.S3SigV4Auth,
    "awscrt": botocore.crt.auth.CrtS3SigV4Auth,
}
QUERY_SIGNERS = {
    "botocore": botocore.auth.S3SigV4QueryAuth,
    "awscrt": botocore.crt.auth.CrtS3SigV4QueryAuth,
}


def sign_header(
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    *,
    unsigned_payload: bool = False,
    region: str = REGION,
    signer: str = "botocore",
) -> AWSRequest:
    """Sign a request with S3SigV4Auth or CrtS3SigV4Auth (the Authorization header)."""
    request = AWSRequest(method=method, url=url, headers=headers or {}, data=body)
    if unsigned_payload:
        request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    HEADER_SIGNERS[signer](CREDENTIALS, "s3", region).add_auth(request)
    return request


def sign_streaming(
    url: str, payload_literal: str, headers: dict[str, str]
) -> tuple[AWSRequest, str]:
    """Sign a PUT that declares an aws-chunked body; return it and its seed signature."""
    request = AWSRequest(method="PUT", url=url, headers=headers)
    StreamingS3SigV4Auth(payload_literal).add_auth(request)
    return request, authorization_signature(request)


def presign(
    method: str,
    url: str,
    expires_s: int = 3600,
    headers: dict[str, str] | None = None,
    *,
    signer: str = "botocore",
) -> AWSRequest:
    """Presign a request with S3SigV4QueryAuth or CrtS3SigV4QueryAuth."""
    request = AWSRequest(method=method, url=url, headers=headers or {})
    QUERY_SIGNERS[signer](CREDENTIALS, "s3", REGION, expires=expires_s).add_auth(request)
    return request


def authorization_signature(request: AWSRequest) -> str:
    authorization = header_text(request.headers["Authorization"])
    return authorization.rsplit("Signature=", 1)[1]


def header_text(value: str | bytes) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def to_parsed(
    request: AWSRequest | AWSPreparedRequest,
    extra_headers: Iterable[tuple[str, str]] = (),
) -> ParsedRequest:
    """Turn a botocore request into what the server would receive, Host header included."""
    parts = urlsplit(request.url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    headers = [(name, header_text(value)) for name, value in request.headers.items()]
    if not any(name.lower() == "host" for name, _ in headers):
        headers.append(("Host", parts.netloc))
    headers.extend(extra_headers)
    return ParsedRequest.from_target(request.method, target, headers)


def with_header(request: ParsedRequest, name: str, value: str) -> ParsedRequest:
    """Return a copy of `request` with header `name` replaced by `value`."""
    headers = request.headers.copy()
    headers.popall(name, None)
    headers.add(name, value)
    return ParsedRequest(request.method, request.raw_path, request.query, headers)


def replace_query_value(parsed: ParsedRequest, name: str, value: str) -> ParsedRequest:
    query = tuple((n, value if n == name else v) for n, v in parsed.query)
    return ParsedRequest(parsed.method, parsed.raw_path, query, parsed.headers)


def drop_query(parsed: ParsedRequest, name: str) -> ParsedRequest:
    query = tuple((n, v) for n, v in parsed.query if n != name)
    return ParsedRequest(parsed.method, parsed.raw_path, query, parsed.headers)


class CapturedRequest(Exception):
    """Raised from botocore's before-send event, so a boto3 call never reaches the network."""

    def __init__(self, request: AWSPreparedRequest) -> None:
        super().__init__("captured")
        self.request = request


def _capture(request: AWSPreparedRequest, **_: Any) -> None:
    raise CapturedRequest(request)


def boto3_client(endpoint_url: str, *, addressing_style: str = "path") -> Any:
    """Return a boto3 S3 client whose requests are captured instead of sent.

    It names signature_version "s3v4" because boto3 1.44 still presigns URLs with
    Signature Version 2 by default.
    """
    client = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(
            s3={"addressing_style": addressing_style},
            signature_version="s3v4",
            retries={"max_attempts": 1, "mode": "standard"},
        ),
    )
    client.meta.events.register("before-send.s3", _capture)
    return client


def capture(call: Callable[[], Any]) -> tuple[AWSPreparedRequest, bytes]:
    """Run a boto3 call and return the request it would have sent, with its body bytes."""
    try:
        call()
    except CapturedRequest as captured:
        body = captured.request.body
        if body is None:
            body_bytes = b""
        elif hasattr(body, "read"):
            body_bytes = body.read()
        elif isinstance(body, str):
            body_bytes = body.encode("utf-8")
        else:
            body_bytes = bytes(body)
        return captured.request, body_bytes
    raise AssertionError("the boto3 call returned without sending a request")


# Byte sources.


class PieceSource:
    """An async byte source that returns at most `piece_size` bytes per read, and counts reads."""

    def __init__(self, data: bytes, piece_size: int = 1000) -> None:
        self._data = data
        self._offset = 0
        self._piece_size = piece_size
        self.read_count = 0

    async def read(self, n: int) -> bytes:
        self.read_count += 1
        end = self._offset + min(n, self._piece_size)
        piece = self._data[self._offset : end]
        self._offset += len(piece)
        return piece

    @property
    def bytes_consumed(self) -> int:
        return self._offset


def run(coroutine: Any, timeout_s: float = 10) -> Any:
    """Run a coroutine with a timeout, so a decoder that hangs fails instead."""
    return asyncio.run(asyncio.wait_for(coroutine, timeout_s))


# An independent encoder for the signed aws-chunked modes.


@dataclass(frozen=True)
class ChunkSigningContext:
    signing_key: bytes
    amz_date: str
    scope: str
    seed_signature: str


def spec_signing_key(secret_key: str, date: str, region: str = REGION) -> bytes:
    key = f"AWS4{secret_key}".encode()
    for part in (date, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _hmac_hex(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


@dataclass
class SignedFrame:
    """One chunk of a signed aws-chunked body, as it goes on the wire."""

    data: bytes
    signature: str

    def encode(self) -> bytes:
        header = f"{len(self.data):x};chunk-signature={self.signature}\r\n".encode()
        return header + self.data + (b"\r\n" if self.data else b"")


def sign_chunks(chunks: Sequence[bytes], context: ChunkSigningContext) -> list[SignedFrame]:
    """Sign each chunk and a final empty chunk, chaining from the seed signature."""
    frames = []
    previous = context.seed_signature
    for chunk in [*chunks, b""]:
        string_to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256-PAYLOAD",
                context.amz_date,
                context.scope,
                previous,
                EMPTY_SHA256,
                hashlib.sha256(chunk).hexdigest(),
            ]
        )
        previous = _hmac_hex(context.signing_key, string_to_sign)
        frames.append(SignedFrame(chunk, previous))
    return frames


def trailer_signature(
    trailers: Sequence[tuple[str, str]], context: ChunkSigningContext, previous: str
) -> str:
    """Sign trailing headers, chained to the final chunk's signature `previous`."""
    canonical = "".join(f"{name}:{value}\n" for name, value in sorted(trailers))
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256-TRAILER",
            context.amz_date,
            context.scope,
            previous,
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    return _hmac_hex(context.signing_key, string_to_sign)


def trailer_section(trailers: Sequence[tuple[str, str]], signature: str | None) -> bytes:
    """Encode trailer lines, an x-amz-trailer-signature line when given, and the blank line."""
    lines = b"".join(f"{name}:{value}\r\n".encode() for name, value in trailers)
    if signature is not None:
        lines += f"x-amz-trailer-signature:{signature}\r\n".encode()
    return lines + b"\r\n"


def encode_signed_chunks(
    chunks: Sequence[bytes],
    context: ChunkSigningContext,
    trailers: Sequence[tuple[str, str]] | None = None,
) -> bytes:
    """Encode a STREAMING-AWS4-HMAC-SHA256-PAYLOAD body, or its -TRAILER form with trailers."""
    frames = sign_chunks(chunks, context)
    body = b"".join(frame.encode() for frame in frames)
    if trailers is None:
        return body + b"\r\n"
    signature = trailer_signature(trailers, context, frames[-1].signature)
    return body + trailer_section(trailers, signature)


def split_evenly(data: bytes, chunk_size: int) -> list[bytes]:
    return [data[start : start + chunk_size] for start in range(0, len(data), chunk_size)]
