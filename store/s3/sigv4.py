"""Verify S3 requests signed with AWS Signature Version 4.

`verify()` accepts the three ways a request reaches S3: an Authorization header
("AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=..."), a presigned
URL (X-Amz-Algorithm, X-Amz-Credential, X-Amz-Date, X-Amz-Expires,
X-Amz-SignedHeaders and X-Amz-Signature query parameters), and no authentication at
all. It only reads the request line and headers. The body is checked afterwards by
the readers in chunked.py, following the PayloadMode that `verify()` returns.

The canonical request is built the way S3 builds it, which differs from other AWS
services: the path is used exactly as sent, with no normalization and no second
round of percent-encoding.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from store.s3 import signing
from store.s3.errors import (
    ACCESS_DENIED,
    AUTHORIZATION_HEADER_MALFORMED,
    AUTHORIZATION_QUERY_PARAMETERS_ERROR,
    INVALID_ACCESS_KEY_ID,
    INVALID_ARGUMENT,
    INVALID_REQUEST,
    MISSING_SECURITY_HEADER,
    REQUEST_TIME_TOO_SKEWED,
    SIGNATURE_DOES_NOT_MATCH,
    S3AuthError,
    auth_error,
)
from store.s3.request import ParsedRequest

SERVICE = "s3"
DEFAULT_MAX_SKEW_S = 900
MAX_PRESIGNED_EXPIRES_S = 7 * 24 * 3600
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_UNSIGNED_PAYLOAD_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_SIGNED_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_PAYLOAD_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"

# x-amz-* headers that may stay out of SignedHeaders. The signature covers
# x-amz-content-sha256 anyway, as the last line of the canonical request, and
# X-Amz-Date as the timestamp of the string to sign. A presigned URL ignores both.
_BOUND_WITHOUT_LISTING = frozenset({"x-amz-content-sha256", "x-amz-date"})
_QUERY_AUTH_MARKERS = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature")
_QUERY_AUTH_PARAMETERS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
)
_AMZ_DATE_PATTERN = re.compile(r"\d{8}T\d{6}Z")
_SCOPE_DATE_PATTERN = re.compile(r"\d{8}")
_SHA256_HEX_PATTERN = re.compile(r"[0-9a-fA-F]{64}")
# A lowercase HTTP field name (RFC 9110 token).
_HEADER_NAME_PATTERN = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")

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
    own signature) start the chain of aws-chunked chunk signatures.
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


@dataclass(frozen=True)
class _Credential:
    access_key: str
    date: str
    region: str
    service: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{signing.SCOPE_TERMINATOR}"


@dataclass(frozen=True)
class _SignedRequestParts:
    """The credential, time, signed headers and signature, from either form of authentication."""

    credential: _Credential
    amz_date: str
    request_time: datetime
    signed_headers: tuple[str, ...]
    signature: str
    # The error code for malformed authentication data in this form.
    malformed_code: str
    # X-Amz-Expires of a presigned URL, or None for the Authorization header.
    expires_s: int | None = None


def verify(
    request: ParsedRequest,
    lookup_secret: LookupSecret,
    now: datetime,
    region: str | None = None,
    max_skew_s: float = DEFAULT_MAX_SKEW_S,
) -> AuthResult:
    """Authenticate `request` and return who signed it and how its body must be read.

    `lookup_secret(access_key)` returns the secret key, or None for an unknown key.
    It is called synchronously, at most once, so a store that needs I/O must be
    cached or looked up before. `now` is the server time and must be timezone-aware.
    `region`, when set, is the only region accepted in the credential scope.
    A request without any authentication returns access_key None. Whether to
    allow it is the caller's decision.
    NOTE: an X-Amz-Security-Token header or parameter is signed like any other, but
    not validated, because the store has no temporary credentials.

    Raises S3AuthError with the S3 error code and status for every rejection.
    """
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime, such as datetime.now(UTC)")
    authorization = _single_header(request, "authorization")
    query_names = {name for name, _ in request.query}
    if "AWSAccessKeyId" in query_names and "Signature" in query_names:
        raise _sigv2_not_supported()
    is_presigned = any(name in query_names for name in _QUERY_AUTH_MARKERS)

    if authorization is not None and is_presigned:
        raise auth_error(
            INVALID_ARGUMENT,
            "Only one auth mechanism allowed: send either the Authorization header or the "
            "X-Amz-Algorithm query parameters, not both.",
        )
    if authorization is not None:
        parts = _parse_authorization_header(authorization, request)
        payload_hash = _required_payload_hash(request)
        auth_type = AuthType.AUTHORIZATION_HEADER
    elif is_presigned:
        parts = _parse_presigned_query(request)
        payload_hash = UNSIGNED_PAYLOAD
        auth_type = AuthType.PRESIGNED_URL
    else:
        return _anonymous_result(request)

    _check_credential_scope(parts, region)
    if parts.expires_s is None:
        _check_request_time(parts, now, max_skew_s)
    else:
        _check_presigned_validity(parts, parts.expires_s, now, max_skew_s)
    _check_signed_headers(request, parts)
    return _check_signature(request, parts, payload_hash, auth_type, lookup_secret)


def _anonymous_result(request: ParsedRequest) -> AuthResult:
    mode, sha256 = _payload_mode_of_unsigned_request(request)
    return AuthResult(None, AuthType.ANONYMOUS, mode, sha256)


def _check_signature(
    request: ParsedRequest,
    parts: _SignedRequestParts,
    payload_hash: str,
    auth_type: AuthType,
    lookup_secret: LookupSecret,
) -> AuthResult:
    credential = parts.credential
    secret_key = lookup_secret(credential.access_key)
    if secret_key is None:
        raise auth_error(
            INVALID_ACCESS_KEY_ID,
            f"The AWS access key ID {_shorten(credential.access_key)} does not exist in our "
            "records. "
            "Check the access key ID that the client is configured with.",
        )

    canonical = canonical_request(request, parts.signed_headers, payload_hash, auth_type)
    string_to_sign = signing.request_string_to_sign(parts.amz_date, credential.scope, canonical)
    signing_key = signing.derive_signing_key(
        secret_key, credential.date, credential.region, credential.service
    )
    expected = signing.sign(signing_key, string_to_sign)
    if not signing.signatures_equal(expected, parts.signature):
        raise auth_error(
            SIGNATURE_DOES_NOT_MATCH,
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.",
            canonical_request=canonical,
            string_to_sign=string_to_sign,
        )

    if auth_type is AuthType.PRESIGNED_URL:
        mode, sha256 = _payload_mode_of_unsigned_request(request)
    else:
        mode, sha256 = _payload_mode(payload_hash, allow_signed_streaming=True)
    return AuthResult(
        access_key=credential.access_key,
        auth_type=auth_type,
        payload_mode=mode,
        payload_sha256=sha256,
        region=credential.region,
        amz_date=parts.amz_date,
        scope=credential.scope,
        seed_signature=expected,
        signing_key=signing_key,
    )


def canonical_request(
    request: ParsedRequest,
    signed_headers: tuple[str, ...],
    payload_hash: str,
    auth_type: AuthType,
) -> str:
    """Build the SigV4 canonical request, as S3 computes it.

    The path is the raw path as sent ("/" when empty). A presigned URL's own
    X-Amz-Signature parameter is left out of the canonical query string.
    """
    query = request.query
    if auth_type is AuthType.PRESIGNED_URL:
        query = tuple((name, value) for name, value in query if name != "X-Amz-Signature")
    header_lines = "".join(
        f"{name}:{signing.canonical_header_value(request.headers.getall(name))}\n"
        for name in signed_headers
    )
    return "\n".join(
        [
            request.method,
            request.raw_path or "/",
            signing.canonical_query_string(query),
            header_lines,
            ";".join(signed_headers),
            payload_hash,
        ]
    )


# Authorization header.


def _parse_authorization_header(value: str, request: ParsedRequest) -> _SignedRequestParts:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != signing.ALGORITHM:
        raise _unsupported_authorization(algorithm)
    fields = _parse_authorization_fields(rest)
    credential = _parse_credential(fields["Credential"], AUTHORIZATION_HEADER_MALFORMED)
    amz_date, request_time = _request_time_from_headers(request)
    signed_headers = _parse_signed_headers(fields["SignedHeaders"], AUTHORIZATION_HEADER_MALFORMED)
    signature = _checked_signature(fields["Signature"], AUTHORIZATION_HEADER_MALFORMED)
    return _SignedRequestParts(
        credential,
        amz_date,
        request_time,
        signed_headers,
        signature,
        AUTHORIZATION_HEADER_MALFORMED,
    )


def _parse_authorization_fields(text: str) -> dict[str, str]:
    """Parse "Credential=..., SignedHeaders=..., Signature=..." with or without spaces."""
    fields: dict[str, str] = {}
    for item in text.split(","):
        name, equals, value = item.strip().partition("=")
        if not equals or name not in ("Credential", "SignedHeaders", "Signature"):
            raise _header_malformed(
                f"The component {_shorten(item.strip())} is not one of Credential=, "
                "SignedHeaders= and Signature=."
            )
        if name in fields:
            raise _header_malformed(f"{name}= appears more than once.")
        fields[name] = value.strip()
    for name in ("Credential", "SignedHeaders", "Signature"):
        if name not in fields:
            raise _header_malformed(f"The {name}= component is missing.")
    return fields


def _request_time_from_headers(request: ParsedRequest) -> tuple[str, datetime]:
    """Return the request timestamp from X-Amz-Date, or else from Date."""
    amz_date = _single_header(request, "x-amz-date")
    if amz_date is not None:
        request_time = _parse_amz_date(amz_date)
        if request_time is not None:
            return amz_date, request_time
    else:
        http_date = _single_header(request, "date")
        if http_date is not None:
            request_time = _parse_http_date(http_date)
            if request_time is not None:
                return request_time.strftime(AMZ_DATE_FORMAT), request_time
    raise auth_error(
        ACCESS_DENIED,
        "AWS authentication requires a valid Date or x-amz-date header. Send x-amz-date "
        "in the form YYYYMMDDTHHMMSSZ (UTC).",
    )


def _required_payload_hash(request: ParsedRequest) -> str:
    value = _single_header(request, "x-amz-content-sha256")
    if value is None:
        raise auth_error(
            MISSING_SECURITY_HEADER,
            "Your request is missing the required header x-amz-content-sha256. Send the "
            "hex SHA-256 of the body, UNSIGNED-PAYLOAD or a STREAMING-* value.",
        )
    _payload_mode(value, allow_signed_streaming=True)
    return value


# Presigned URL.


def _parse_presigned_query(request: ParsedRequest) -> _SignedRequestParts:
    params = _presigned_parameters(request)
    if params["X-Amz-Algorithm"] != signing.ALGORITHM:
        raise _query_error(
            f'X-Amz-Algorithm only supports "{signing.ALGORITHM}", '
            f"not {_shorten(params['X-Amz-Algorithm'])}."
        )
    credential = _parse_credential(params["X-Amz-Credential"], AUTHORIZATION_QUERY_PARAMETERS_ERROR)
    amz_date = params["X-Amz-Date"]
    request_time = _parse_amz_date(amz_date)
    if request_time is None:
        raise _query_error(
            f"X-Amz-Date {_shorten(amz_date)} must be in the ISO8601 basic format YYYYMMDDTHHMMSSZ."
        )
    signed_headers = _parse_signed_headers(
        params["X-Amz-SignedHeaders"], AUTHORIZATION_QUERY_PARAMETERS_ERROR
    )
    signature = _checked_signature(params["X-Amz-Signature"], AUTHORIZATION_QUERY_PARAMETERS_ERROR)
    return _SignedRequestParts(
        credential,
        amz_date,
        request_time,
        signed_headers,
        signature,
        AUTHORIZATION_QUERY_PARAMETERS_ERROR,
        _parse_expires(params["X-Amz-Expires"]),
    )


def _parse_expires(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise _query_error(
            f"X-Amz-Expires {_shorten(text)} must be a whole number of seconds from 0 to "
            f"{MAX_PRESIGNED_EXPIRES_S}."
        )
    expires_s = int(text)
    if expires_s > MAX_PRESIGNED_EXPIRES_S:
        raise _query_error(
            "X-Amz-Expires must be less than a week (in seconds) that is "
            f"{MAX_PRESIGNED_EXPIRES_S}, but it is {expires_s}. Create a URL with a shorter "
            "expiry."
        )
    return expires_s


def _presigned_parameters(request: ParsedRequest) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in request.query:
        if name not in _QUERY_AUTH_PARAMETERS:
            continue
        if name in params:
            raise _query_error(f"The query parameter {name} appears more than once.")
        params[name] = value
    missing = [name for name in _QUERY_AUTH_PARAMETERS if name not in params]
    if missing:
        raise _query_error(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, "
            "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and "
            f"X-Amz-Expires parameters. Missing: {', '.join(missing)}."
        )
    return params


def _check_presigned_validity(
    parts: _SignedRequestParts, expires_s: int, now: datetime, max_skew_s: float
) -> None:
    """Check that `now` lies between X-Amz-Date, less the allowed skew, and the expiry."""
    if parts.request_time - now > timedelta(seconds=max_skew_s):
        raise auth_error(
            ACCESS_DENIED,
            f"Request is not valid yet: X-Amz-Date {parts.amz_date} is more than "
            f"{max_skew_s:g} s ahead of the server time {_format_time(now)}. Check the "
            "clock of the machine that created the URL.",
        )
    expiry = parts.request_time + timedelta(seconds=expires_s)
    if now > expiry:
        raise auth_error(
            ACCESS_DENIED,
            f"Request has expired: the presigned URL was valid until {_format_time(expiry)} "
            f"(X-Amz-Date plus X-Amz-Expires) and the server time is {_format_time(now)}. "
            "Create a new presigned URL.",
        )


# Checks shared by both forms.


def _check_request_time(parts: _SignedRequestParts, now: datetime, max_skew_s: float) -> None:
    skew = abs(now - parts.request_time)
    if skew > timedelta(seconds=max_skew_s):
        raise auth_error(
            REQUEST_TIME_TOO_SKEWED,
            "The difference between the request time and the server's time is too large: "
            f"the request time is {parts.amz_date} and the server time is {_format_time(now)}, "
            f"more than {max_skew_s:g} s apart. Synchronize the client's clock.",
        )


def _check_credential_scope(parts: _SignedRequestParts, region: str | None) -> None:
    credential = parts.credential
    code = parts.malformed_code
    if credential.date != parts.amz_date[:8]:
        raise _malformed(
            code,
            f'Invalid credential date "{credential.date}". This date is not the same as '
            f'X-Amz-Date: "{parts.amz_date[:8]}". Sign with the date of the request.',
        )
    if credential.service != SERVICE:
        raise _malformed(
            code,
            f"The credential scope names the service {_shorten(credential.service)}, but "
            f'this endpoint belongs to "{SERVICE}". Sign the request for service "{SERVICE}".',
        )
    if region is not None and credential.region != region:
        raise _malformed(
            code,
            f"The region {_shorten(credential.region)} in the credential scope is wrong, "
            f"expecting {region!r}. Configure the client with region {region}.",
        )


def _check_signed_headers(request: ParsedRequest, parts: _SignedRequestParts) -> None:
    """Require host to be signed, every signed header to be present and every x-amz-* signed."""
    signed = parts.signed_headers
    if "host" not in signed:
        raise _malformed(
            parts.malformed_code,
            f"SignedHeaders {_shorten(';'.join(signed))} must include host. Sign the Host header.",
        )
    missing = [name for name in signed if name not in request.headers]
    if missing:
        raise auth_error(
            ACCESS_DENIED,
            f"The signed headers {', '.join(missing)} are missing from the request. Send "
            "every header that SignedHeaders lists.",
        )
    present = {name.lower() for name in request.headers}
    unsigned = sorted(
        name
        for name in present
        if name.startswith("x-amz-") and name not in signed and name not in _BOUND_WITHOUT_LISTING
    )
    if unsigned:
        raise auth_error(
            ACCESS_DENIED,
            "There were headers present in the request which were not signed: "
            f"{', '.join(unsigned)}. Sign every x-amz-* header, or leave it out.",
        )


def _parse_credential(value: str, code: str) -> _Credential:
    parts = value.split("/")
    if len(parts) != 5 or not all(parts) or parts[4] != signing.SCOPE_TERMINATOR:
        raise _malformed(
            code,
            f"The Credential {_shorten(value)} is malformed, expecting "
            '"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".',
        )
    access_key, date, region, service, _ = parts
    if not _SCOPE_DATE_PATTERN.fullmatch(date):
        raise _malformed(code, f"The credential date {_shorten(date)} must have the form YYYYMMDD.")
    return _Credential(access_key, date, region, service)


def _parse_signed_headers(value: str, code: str) -> tuple[str, ...]:
    names = tuple(value.split(";"))
    for name in names:
        if not _HEADER_NAME_PATTERN.fullmatch(name):
            raise _malformed(
                code,
                f"SignedHeaders {_shorten(value)} must be lowercase header names separated "
                f"by ';', but contains {_shorten(name)}.",
            )
    if len(set(names)) != len(names):
        raise _malformed(code, f"SignedHeaders {_shorten(value)} lists a header more than once.")
    return names


def _checked_signature(value: str, code: str) -> str:
    if not signing.SIGNATURE_PATTERN.fullmatch(value):
        raise _malformed(
            code, f"The signature {_shorten(value)} must be 64 lowercase hexadecimal characters."
        )
    return value


def _payload_mode(value: str, *, allow_signed_streaming: bool) -> tuple[PayloadMode, str | None]:
    """Map an x-amz-content-sha256 value to its PayloadMode and the expected body digest."""
    if _SHA256_HEX_PATTERN.fullmatch(value):
        return PayloadMode.SIGNED_PAYLOAD, value.lower()
    mode = _LITERAL_PAYLOAD_MODES.get(value)
    if mode is None:
        raise auth_error(
            INVALID_ARGUMENT,
            f"x-amz-content-sha256 {_shorten(value)} must be UNSIGNED-PAYLOAD, "
            "STREAMING-UNSIGNED-PAYLOAD-TRAILER, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, "
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER or a valid sha256 value.",
        )
    if mode.has_chunk_signatures and not allow_signed_streaming:
        raise auth_error(
            INVALID_ARGUMENT,
            f"x-amz-content-sha256 {value} needs the Authorization header, because the chunk "
            "signatures chain from its signature. Sign the request with the header, or use "
            "UNSIGNED-PAYLOAD.",
        )
    return mode, None


def _payload_mode_of_unsigned_request(request: ParsedRequest) -> tuple[PayloadMode, str | None]:
    """Return the body mode of a presigned or anonymous request, whose payload is unsigned.

    The body still follows x-amz-content-sha256 when the client sends it: a digest is
    checked and an aws-chunked body is decoded.
    """
    value = _single_header(request, "x-amz-content-sha256")
    if value is None:
        return PayloadMode.UNSIGNED_PAYLOAD, None
    return _payload_mode(value, allow_signed_streaming=False)


# Small helpers.


def _single_header(request: ParsedRequest, name: str) -> str | None:
    values = request.headers.getall(name, [])
    if len(values) > 1:
        raise auth_error(
            INVALID_ARGUMENT,
            f"The header {name} appears {len(values)} times. Send it once.",
        )
    return values[0] if values else None


def _parse_amz_date(value: str) -> datetime | None:
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


def _parse_http_date(value: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(AMZ_DATE_FORMAT)


def _shorten(value: str, max_chars: int = 100) -> str:
    """Quote a client-supplied value for an error message, cut to `max_chars`."""
    if len(value) > max_chars:
        value = value[:max_chars] + "..."
    return repr(value)


def _malformed(code: str, detail: str) -> S3AuthError:
    if code == AUTHORIZATION_HEADER_MALFORMED:
        return _header_malformed(detail)
    return _query_error(f"The presigned URL's X-Amz-* query parameters are invalid. {detail}")


def _header_malformed(detail: str) -> S3AuthError:
    return auth_error(
        AUTHORIZATION_HEADER_MALFORMED, f"The authorization header is malformed. {detail}"
    )


def _query_error(message: str) -> S3AuthError:
    return auth_error(AUTHORIZATION_QUERY_PARAMETERS_ERROR, message)


def _sigv2_not_supported() -> S3AuthError:
    return auth_error(
        INVALID_REQUEST,
        "The authorization mechanism you have provided is not supported: Signature Version 2. "
        f"Please use {signing.ALGORITHM}.",
    )


def _unsupported_authorization(algorithm: str) -> S3AuthError:
    if algorithm in ("AWS", "AWS4-ECDSA-P256-SHA256"):
        return auth_error(
            INVALID_REQUEST,
            f"The authorization mechanism you have provided is not supported: {algorithm}. "
            f"Please use {signing.ALGORITHM}.",
        )
    return auth_error(
        INVALID_ARGUMENT,
        f"Unsupported Authorization Type {_shorten(algorithm, 40)}. Sign the request with "
        f"{signing.ALGORITHM}.",
    )
