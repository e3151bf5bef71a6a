"""Verify S3 requests signed with AWS Signature Version 4 and pass version 2 to sigv2.py.

`verify()` accepts the three ways a request reaches S3: an Authorization header
("AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=..."), a presigned
URL (X-Amz-Algorithm, X-Amz-Credential, X-Amz-Date, X-Amz-Expires,
X-Amz-SignedHeaders and X-Amz-Signature query parameters), and no authentication at
all. It passes the two Signature Version 2 forms ("Authorization: AWS ..." and the
AWSAccessKeyId, Expires and Signature query parameters) to sigv2.py. It only reads
the request line and headers. The body is checked afterwards by the readers in
chunked.py, following the PayloadMode that `verify()` returns.

The canonical request is built the way S3 builds it, which differs from other AWS
services: the path is used exactly as sent, with no normalization and no second
round of percent-encoding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from store.s3 import signing, sigv2
from store.s3.auth_common import (
    AMZ_DATE_FORMAT,
    DEFAULT_MAX_SKEW_S,
    UNSIGNED_PAYLOAD,
    AuthResult,
    AuthType,
    LookupSecret,
    check_clock_skew,
    format_time,
    parse_amz_date,
    parse_http_date,
    payload_mode,
    payload_mode_of_unsigned_request,
    shorten,
    signature_mismatch,
    single_header,
    unknown_access_key,
)
from store.s3.errors import (
    ACCESS_DENIED,
    AUTHORIZATION_HEADER_MALFORMED,
    AUTHORIZATION_QUERY_PARAMETERS_ERROR,
    INVALID_ARGUMENT,
    INVALID_REQUEST,
    MISSING_SECURITY_HEADER,
    S3AuthError,
    auth_error,
)
from store.s3.request import SIGV4_QUERY_AUTH_PARAMETERS, ParsedRequest

SERVICE = "s3"
MAX_PRESIGNED_EXPIRES_S = 7 * 24 * 3600

# x-amz-* headers that may stay out of SignedHeaders. The signature covers
# x-amz-content-sha256 anyway, as the last line of the canonical request, and
# X-Amz-Date as the timestamp of the string to sign. A presigned URL ignores both.
_BOUND_WITHOUT_LISTING = frozenset({"x-amz-content-sha256", "x-amz-date"})
_QUERY_AUTH_MARKERS = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature")
QUERY_AUTH_PARAMETERS = SIGV4_QUERY_AUTH_PARAMETERS
_SCOPE_DATE_PATTERN = re.compile(r"\d{8}")
# A lowercase HTTP field name (RFC 9110 token).
_HEADER_NAME_PATTERN = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")


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
    domain: str | None = None,
) -> AuthResult:
    """Authenticate `request` and return who signed it and how its body must be read.

    `lookup_secret(access_key)` returns the secret key, or None for an unknown key.
    It is called synchronously, at most once, so a store that needs I/O must be
    cached or looked up before. `now` is the server time and must be timezone-aware.
    `region`, when set, is the only region accepted in the credential scope.
    `domain` is the base domain of virtual-hosted-style requests (BUCKET.DOMAIN),
    which Signature Version 2 needs because it signs the bucket named in Host.
    A request without any authentication returns access_key None. Whether to
    allow it is the caller's decision.
    NOTE: an X-Amz-Security-Token header or parameter is signed like any other, but
    not validated, because the store has no temporary credentials.

    Raises S3AuthError with the S3 error code and status for every rejection.
    """
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime, such as datetime.now(UTC)")
    authorization = single_header(request, "authorization")
    query_names = {name for name, _ in request.query}
    is_presigned = any(name in query_names for name in _QUERY_AUTH_MARKERS)
    is_presigned_v2 = any(name in query_names for name in sigv2.QUERY_AUTH_MARKERS)
    _check_one_mechanism(authorization is not None, is_presigned, is_presigned_v2)

    if is_presigned_v2:
        return sigv2.verify_presigned_url(request, lookup_secret, now, domain)
    if authorization is not None and sigv2.is_v2_authorization(authorization):
        return sigv2.verify_authorization_header(
            request, authorization, lookup_secret, now, domain, max_skew_s
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


def _check_one_mechanism(has_header: bool, is_presigned: bool, is_presigned_v2: bool) -> None:
    if has_header + is_presigned + is_presigned_v2 > 1:
        raise auth_error(
            INVALID_ARGUMENT,
            "Only one auth mechanism allowed: send the Authorization header, the "
            "X-Amz-Algorithm query parameters or the Signature query parameter, not several.",
        )


def _anonymous_result(request: ParsedRequest) -> AuthResult:
    mode, sha256 = payload_mode_of_unsigned_request(request)
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
        raise unknown_access_key(credential.access_key)

    canonical = canonical_request(request, parts.signed_headers, payload_hash, auth_type)
    string_to_sign = signing.request_string_to_sign(parts.amz_date, credential.scope, canonical)
    signing_key = signing.derive_signing_key(
        secret_key, credential.date, credential.region, credential.service
    )
    expected = signing.sign(signing_key, string_to_sign)
    if not signing.signatures_equal(expected, parts.signature):
        raise signature_mismatch(string_to_sign, canonical)

    if auth_type is AuthType.PRESIGNED_URL:
        mode, sha256 = payload_mode_of_unsigned_request(request)
    else:
        mode, sha256 = payload_mode(payload_hash, allow_signed_streaming=True)
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
                f"The component {shorten(item.strip())} is not one of Credential=, "
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
    amz_date = single_header(request, "x-amz-date")
    if amz_date is not None:
        request_time = parse_amz_date(amz_date)
        if request_time is not None:
            return amz_date, request_time
    else:
        http_date = single_header(request, "date")
        if http_date is not None:
            request_time = parse_http_date(http_date)
            if request_time is not None:
                return request_time.strftime(AMZ_DATE_FORMAT), request_time
    raise auth_error(
        ACCESS_DENIED,
        "AWS authentication requires a valid Date or x-amz-date header. Send x-amz-date "
        "in the form YYYYMMDDTHHMMSSZ (UTC).",
    )


def _required_payload_hash(request: ParsedRequest) -> str:
    value = single_header(request, "x-amz-content-sha256")
    if value is None:
        raise auth_error(
            MISSING_SECURITY_HEADER,
            "Your request is missing the required header x-amz-content-sha256. Send the "
            "hex SHA-256 of the body, UNSIGNED-PAYLOAD or a STREAMING-* value.",
        )
    payload_mode(value, allow_signed_streaming=True)
    return value


# Presigned URL.


def _parse_presigned_query(request: ParsedRequest) -> _SignedRequestParts:
    params = _presigned_parameters(request)
    if params["X-Amz-Algorithm"] != signing.ALGORITHM:
        raise _query_error(
            f'X-Amz-Algorithm only supports "{signing.ALGORITHM}", '
            f"not {shorten(params['X-Amz-Algorithm'])}."
        )
    credential = _parse_credential(params["X-Amz-Credential"], AUTHORIZATION_QUERY_PARAMETERS_ERROR)
    amz_date = params["X-Amz-Date"]
    request_time = parse_amz_date(amz_date)
    if request_time is None:
        raise _query_error(
            f"X-Amz-Date {shorten(amz_date)} must be in the ISO8601 basic format YYYYMMDDTHHMMSSZ."
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
            f"X-Amz-Expires {shorten(text)} must be a whole number of seconds from 0 to "
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
        if name not in QUERY_AUTH_PARAMETERS:
            continue
        if name in params:
            raise _query_error(f"The query parameter {name} appears more than once.")
        params[name] = value
    missing = [name for name in QUERY_AUTH_PARAMETERS if name not in params]
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
            f"{max_skew_s:g} s ahead of the server time {format_time(now)}. Check the "
            "clock of the machine that created the URL.",
        )
    expiry = parts.request_time + timedelta(seconds=expires_s)
    if now > expiry:
        raise auth_error(
            ACCESS_DENIED,
            f"Request has expired: the presigned URL was valid until {format_time(expiry)} "
            f"(X-Amz-Date plus X-Amz-Expires) and the server time is {format_time(now)}. "
            "Create a new presigned URL.",
        )


# Checks shared by both forms.


def _check_request_time(parts: _SignedRequestParts, now: datetime, max_skew_s: float) -> None:
    check_clock_skew(parts.request_time, parts.amz_date, now, max_skew_s)


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
            f"The credential scope names the service {shorten(credential.service)}, but "
            f'this endpoint belongs to "{SERVICE}". Sign the request for service "{SERVICE}".',
        )
    if region is not None and credential.region != region:
        raise _malformed(
            code,
            f"The region {shorten(credential.region)} in the credential scope is wrong, "
            f"expecting {region!r}. Configure the client with region {region}.",
        )


def _check_signed_headers(request: ParsedRequest, parts: _SignedRequestParts) -> None:
    """Require host to be signed, every signed header to be present and every x-amz-* signed."""
    signed = parts.signed_headers
    if "host" not in signed:
        raise _malformed(
            parts.malformed_code,
            f"SignedHeaders {shorten(';'.join(signed))} must include host. Sign the Host header.",
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
            f"The Credential {shorten(value)} is malformed, expecting "
            '"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".',
        )
    access_key, date, region, service, _ = parts
    if not _SCOPE_DATE_PATTERN.fullmatch(date):
        raise _malformed(code, f"The credential date {shorten(date)} must have the form YYYYMMDD.")
    return _Credential(access_key, date, region, service)


def _parse_signed_headers(value: str, code: str) -> tuple[str, ...]:
    names = tuple(value.split(";"))
    for name in names:
        if not _HEADER_NAME_PATTERN.fullmatch(name):
            raise _malformed(
                code,
                f"SignedHeaders {shorten(value)} must be lowercase header names separated "
                f"by ';', but contains {shorten(name)}.",
            )
    if len(set(names)) != len(names):
        raise _malformed(code, f"SignedHeaders {shorten(value)} lists a header more than once.")
    return names


def _checked_signature(value: str, code: str) -> str:
    if not signing.SIGNATURE_PATTERN.fullmatch(value):
        raise _malformed(
            code, f"The signature {shorten(value)} must be 64 lowercase hexadecimal characters."
        )
    return value


# Small helpers.


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


def _unsupported_authorization(algorithm: str) -> S3AuthError:
    if algorithm == "AWS4-ECDSA-P256-SHA256":
        return auth_error(
            INVALID_REQUEST,
            f"The authorization mechanism you have provided is not supported: {algorithm}. "
            f"Please use {signing.ALGORITHM}.",
        )
    return auth_error(
        INVALID_ARGUMENT,
        f"Unsupported Authorization Type {shorten(algorithm, 40)}. Sign the request with "
        f"{signing.ALGORITHM}.",
    )
