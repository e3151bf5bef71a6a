"""The result of request authentication and the checks that the SigV4 and SigV2 verifiers share.

sigv4.py verifies Signature Version 4 and dispatches Signature Version 2 requests to
sigv2.py. Both return an AuthResult, whose PayloadMode selects how the readers in
chunked.py read and check the body.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from store.s3.errors import (
    INVALID_ACCESS_KEY_ID,
    INVALID_ARGUMENT,
    REQUEST_TIME_TOO_SKEWED,
    SIGNATURE_DOES_NOT_MATCH,
    S3AuthError,
    auth_error,
)
from store.s3.request import ParsedRequest

DEFAULT_MAX_SKEW_S = 900
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_UNSIGNED_PAYLOAD_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_SIGNED_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_PAYLOAD_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"

_AMZ_DATE_PATTERN = re.compile(r"\d{8}T\d{6}Z")
_SHA256_HEX_PATTERN = re.compile(r"[0-9a-fA-F]{64}")

LookupSecret = Callable[[str], str | None]


class PayloadMode(enum.Enum):
    """The encoding and integrity protection of the body, declared by x-amz-content-sha256.

    SIGNED_PAYLOAD: a plain body whose SHA-256 (AuthResult.payload_sha256) is signed.
    UNSIGNED_PAYLOAD: a plain body with no integrity check ("UNSIGNED-PAYLOAD").
    STREAMING_SIGNED: aws-chunked, every chunk signed (STREAMING-AWS4-HMAC-SHA256-PAYLOAD).
    STREAMING_UNSIGNED_TRAILER: aws-chunked, unsigned chunks and a trailing checksum
    header (STREAMING-UNSIGNED-PAYLOAD-TRAILER).
    STREAMING_SIGNED_TRAILER: aws-chunked, signed chunks and signed trailing headers
    (STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER).
    """

    SIGNED_PAYLOAD = "SIGNED_PAYLOAD"
    UNSIGNED_PAYLOAD = "UNSIGNED_PAYLOAD"
    STREAMING_SIGNED = "STREAMING_SIGNED"
    STREAMING_UNSIGNED_TRAILER = "STREAMING_UNSIGNED_TRAILER"
    STREAMING_SIGNED_TRAILER = "STREAMING_SIGNED_TRAILER"

    @property
    def is_aws_chunked(self) -> bool:
        return self not in (PayloadMode.SIGNED_PAYLOAD, PayloadMode.UNSIGNED_PAYLOAD)

    @property
    def has_chunk_signatures(self) -> bool:
        return self in (PayloadMode.STREAMING_SIGNED, PayloadMode.STREAMING_SIGNED_TRAILER)


class AuthType(enum.Enum):
    """The way a request authenticated itself."""

    ANONYMOUS = "ANONYMOUS"
    AUTHORIZATION_HEADER = "AUTHORIZATION_HEADER"
    PRESIGNED_URL = "PRESIGNED_URL"


_LITERAL_PAYLOAD_MODES = {
    UNSIGNED_PAYLOAD: PayloadMode.UNSIGNED_PAYLOAD,
    STREAMING_UNSIGNED_PAYLOAD_TRAILER: PayloadMode.STREAMING_UNSIGNED_TRAILER,
    STREAMING_SIGNED_PAYLOAD: PayloadMode.STREAMING_SIGNED,
    STREAMING_SIGNED_PAYLOAD_TRAILER: PayloadMode.STREAMING_SIGNED_TRAILER,
}


@dataclass(frozen=True)
class AuthResult:
    """The outcome of a successful `verify()`.

    `access_key` is None for an anonymous request, and so are the signing fields.
    `payload_sha256` is the lowercase hex digest to check the body against, set only
    for PayloadMode.SIGNED_PAYLOAD. `signing_key`, `amz_date` ("YYYYMMDDTHHMMSSZ"),
    `scope` ("YYYYMMDD/region/s3/aws4_request") and `seed_signature` (the request's
    own signature) start the chain of aws-chunked chunk signatures. They and `region`
    are None for a Signature Version 2 request too, which has no scope and never
    signs chunks.
    """

    access_key: str | None
    auth_type: AuthType
    payload_mode: PayloadMode
    payload_sha256: str | None = None
    region: str | None = None
    amz_date: str | None = None
    scope: str | None = None
    seed_signature: str | None = None
    signing_key: bytes | None = field(default=None, repr=False)


# Payload modes.


def payload_mode(value: str, *, allow_signed_streaming: bool) -> tuple[PayloadMode, str | None]:
    """Map an x-amz-content-sha256 value to its PayloadMode and the expected body digest."""
    if _SHA256_HEX_PATTERN.fullmatch(value):
        return PayloadMode.SIGNED_PAYLOAD, value.lower()
    mode = _LITERAL_PAYLOAD_MODES.get(value)
    if mode is None:
        raise auth_error(
            INVALID_ARGUMENT,
            f"x-amz-content-sha256 {shorten(value)} must be UNSIGNED-PAYLOAD, "
            "STREAMING-UNSIGNED-PAYLOAD-TRAILER, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, "
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER or a valid sha256 value.",
        )
    if mode.has_chunk_signatures and not allow_signed_streaming:
        raise auth_error(
            INVALID_ARGUMENT,
            f"x-amz-content-sha256 {value} needs a Signature Version 4 Authorization header, "
            "because the chunk signatures chain from its signature. Sign the request with "
            "that header, or use UNSIGNED-PAYLOAD.",
        )
    return mode, None


def payload_mode_of_unsigned_request(request: ParsedRequest) -> tuple[PayloadMode, str | None]:
    """Return the body mode of a request whose payload is not signed.

    That is a presigned, anonymous or Signature Version 2 request. The body still
    follows x-amz-content-sha256 when the client sends it, as a header or else as a
    query parameter: a digest is checked and an aws-chunked body is decoded.
    """
    value = single_header(request, "x-amz-content-sha256")
    if value is None:
        # The JavaScript SDK signs X-Amz-Content-Sha256=UNSIGNED-PAYLOAD into the query.
        in_query = [v for name, v in request.query if name.lower() == "x-amz-content-sha256"]
        value = in_query[0] if in_query else None
    if value is None:
        return PayloadMode.UNSIGNED_PAYLOAD, None
    return payload_mode(value, allow_signed_streaming=False)


# Checks and errors.


def check_clock_skew(
    request_time: datetime, request_time_text: str, now: datetime, max_skew_s: float
) -> None:
    """Raise RequestTimeTooSkewed when `request_time` is more than `max_skew_s` from `now`."""
    if abs(now - request_time) > timedelta(seconds=max_skew_s):
        raise auth_error(
            REQUEST_TIME_TOO_SKEWED,
            "The difference between the request time and the server's time is too large: "
            f"the request time is {request_time_text} and the server time is "
            f"{format_time(now)}, more than {max_skew_s:g} s apart. Synchronize the "
            "client's clock.",
        )


def unknown_access_key(access_key: str) -> S3AuthError:
    return auth_error(
        INVALID_ACCESS_KEY_ID,
        f"The AWS access key ID {shorten(access_key)} does not exist in our records. "
        "Check the access key ID that the client is configured with.",
    )


def signature_mismatch(
    string_to_sign: str, canonical_request: str | None = None, hint: str = ""
) -> S3AuthError:
    """Build SignatureDoesNotMatch. The signed strings are for the server's debug log only."""
    return auth_error(
        SIGNATURE_DOES_NOT_MATCH,
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method." + (f" {hint}" if hint else ""),
        canonical_request=canonical_request,
        string_to_sign=string_to_sign,
    )


# Small helpers.


def single_header(request: ParsedRequest, name: str) -> str | None:
    values = request.headers.getall(name, [])
    if len(values) > 1:
        raise auth_error(
            INVALID_ARGUMENT,
            f"The header {name} appears {len(values)} times. Send it once.",
        )
    return values[0] if values else None


def parse_amz_date(value: str) -> datetime | None:
    if not _AMZ_DATE_PATTERN.fullmatch(value):
        return None
    # The pattern fixed every position, so slicing replaces the slower strptime.
    try:
        return datetime(
            int(value[0:4]),
            int(value[4:6]),
            int(value[6:8]),
            int(value[9:11]),
            int(value[11:13]),
            int(value[13:15]),
            tzinfo=UTC,
        )
    except ValueError:
        return None


def parse_http_date(value: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        # OverflowError: a field too large for datetime, such as a 20-digit hour.
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(AMZ_DATE_FORMAT)


def shorten(value: str, max_chars: int = 100) -> str:
    """Quote a client-supplied value for an error message, cut to `max_chars`."""
    if len(value) > max_chars:
        value = value[:max_chars] + "..."
    return repr(value)
