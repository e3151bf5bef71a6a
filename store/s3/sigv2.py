"""Verify S3 requests signed with AWS Signature Version 2 (HMAC-SHA1).

boto3 (1.43 and 1.44) still presigns URLs this way unless the client sets
signature_version="s3v4", and older tools sign the Authorization header this way.
Both forms are accepted:

- the Authorization header "AWS AccessKeyId:Signature", dated by x-amz-date or else
  Date, which must lie within `max_skew_s` of the server time;
- a presigned URL with the AWSAccessKeyId, Expires (seconds since the epoch) and
  Signature query parameters, valid until Expires.

The rules follow the Amazon S3 Developer Guide page "Signing and authenticating REST
requests" (RESTAuthentication.md in awsdocs/amazon-s3-developer-guide):

    Signature = Base64(HMAC-SHA1(SecretAccessKey, UTF-8(StringToSign)))
    StringToSign = HTTP-Verb + "\\n" + Content-MD5 + "\\n" + Content-Type + "\\n" +
                   Date-or-Expires + "\\n" + CanonicalizedAmzHeaders + CanonicalizedResource

The page sets no maximum lifetime for a presigned URL, so Expires may lie any time
in the future, unlike X-Amz-Expires of Signature Version 4. The payload is not
signed, so the body is read as UNSIGNED-PAYLOAD unless x-amz-content-sha256
declares otherwise. Content-MD5, when sent, is checked by the object handlers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from datetime import UTC, datetime

from multidict import CIMultiDict

from store.s3 import signing
from store.s3.addressing import bucket_from_host
from store.s3.auth_common import (
    AuthResult,
    AuthType,
    LookupSecret,
    check_clock_skew,
    format_time,
    parse_amz_date,
    parse_http_date,
    payload_mode_of_unsigned_request,
    shorten,
    signature_mismatch,
    single_header,
    unknown_access_key,
)
from store.s3.errors import ACCESS_DENIED, INVALID_ARGUMENT, auth_error
from store.s3.request import ParsedRequest

AUTHORIZATION_ALGORITHM = "AWS"
# Any of these query parameters makes a request a Signature Version 2 presigned URL.
QUERY_AUTH_MARKERS = ("AWSAccessKeyId", "Signature")
QUERY_AUTH_PARAMETERS = ("AWSAccessKeyId", "Expires", "Signature")
_AMZ_HEADER_PREFIX = "x-amz-"
# Twenty digits reach past the year 3 * 10^12, far beyond any real expiry.
_MAX_EXPIRES_DIGITS = 20

# The query parameters that CanonicalizedResource includes: those the S3 guide lists,
# and those botocore's HmacV1Auth signs (checked with 1.43 and 1.44), so that botocore
# and the AWS CLI match.
SUBRESOURCES = frozenset(
    {
        # Listed in the S3 guide.
        "acl",
        "delete",
        "lifecycle",
        "location",
        "logging",
        "notification",
        "partNumber",
        "policy",
        "requestPayment",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "response-content-language",
        "response-content-type",
        "response-expires",
        "torrent",
        "uploadId",
        "uploads",
        "versionId",
        "versioning",
        "versions",
        "website",
        # Signed by botocore as well.
        "accelerate",
        "analytics",
        "cors",
        "defaultObjectAcl",
        "inventory",
        "metrics",
        "object-lock",
        "replication",
        "restore",
        "select",
        "select-type",
        "storageClass",
        "tagging",
    }
)


def is_v2_authorization(value: str) -> bool:
    """Return whether an Authorization header value uses the "AWS" (Signature Version 2) scheme."""
    return value.strip().partition(" ")[0] == AUTHORIZATION_ALGORITHM


def split_authorization(value: str) -> tuple[str, str] | None:
    """Split "AWS AccessKeyId:Signature" into its two parts, or return None when malformed."""
    scheme, _, credentials = value.strip().partition(" ")
    access_key, colon, signature = credentials.strip().partition(":")
    signature = signature.strip()
    if scheme != AUTHORIZATION_ALGORITHM or not colon or not access_key or not signature:
        return None
    return access_key, signature


def verify_authorization_header(
    request: ParsedRequest,
    authorization: str,
    lookup_secret: LookupSecret,
    now: datetime,
    domain: str | None,
    max_skew_s: float,
) -> AuthResult:
    """Verify "Authorization: AWS AccessKeyId:Signature" and the request time."""
    parts = split_authorization(authorization)
    if parts is None:
        raise auth_error(
            INVALID_ARGUMENT,
            "AWS authorization header is invalid. Expected AwsAccessKeyId:signature, as in "
            '"Authorization: AWS AKIAIOSFODNN7EXAMPLE:<base64 signature>".',
        )
    access_key, signature = parts
    date_text, request_time = _request_time_from_headers(request)
    check_clock_skew(request_time, date_text, now, max_skew_s)

    # x-amz-date, when sent, is signed among the x-amz-* headers, and the Date line is empty.
    date_line = "" if single_header(request, "x-amz-date") is not None else date_text
    expected = string_to_sign(request, date_line, _virtual_host_bucket(request, domain))
    return _check_signature(
        request, access_key, signature, expected, lookup_secret, AuthType.AUTHORIZATION_HEADER
    )


def verify_presigned_url(
    request: ParsedRequest, lookup_secret: LookupSecret, now: datetime, domain: str | None
) -> AuthResult:
    """Verify the AWSAccessKeyId, Expires and Signature query parameters.

    The Date and x-amz-date headers play no part: Expires alone bounds the validity.
    botocore signs the x-amz-* headers of a presigned request, then moves them into the
    query string, so they are signed as headers from there. Content-Type and
    Content-MD5 must come as headers still.
    """
    params = _presigned_parameters(request)
    expires_text = params["Expires"]
    if not _is_epoch_seconds(expires_text):
        raise auth_error(
            ACCESS_DENIED,
            f"Invalid date (should be seconds since epoch): {shorten(expires_text)}. "
            "Expires must be a whole number of seconds since 1970-01-01T00:00:00Z.",
        )
    _check_not_expired(int(expires_text), now)

    signed = request.with_query_headers()
    expected = string_to_sign(signed, expires_text, _virtual_host_bucket(request, domain))
    return _check_signature(
        request,
        params["AWSAccessKeyId"],
        params["Signature"],
        expected,
        lookup_secret,
        AuthType.PRESIGNED_URL,
    )


def string_to_sign(request: ParsedRequest, date_line: str, bucket: str | None) -> str:
    """Build the StringToSign of `request`.

    `date_line` is the Date header, the Expires parameter or "" when x-amz-date is
    sent. `bucket` is the bucket named in the Host header of a virtual-hosted-style
    request, and None for a path-style request.
    """
    content_md5 = single_header(request, "content-md5") or ""
    content_type = single_header(request, "content-type") or ""
    positional = [request.method, content_md5.strip(" \t"), content_type.strip(" \t"), date_line]
    amz_headers = canonicalized_amz_headers(request.headers)
    return "\n".join(positional) + "\n" + amz_headers + canonicalized_resource(request, bucket)


def canonicalized_amz_headers(headers: CIMultiDict[str]) -> str:
    """Return the x-amz-* headers as "name:value\\n" lines, sorted by lowercase name.

    Repeated headers are joined with commas, and each value is trimmed of spaces and tabs.
    """
    values_by_name: dict[str, list[str]] = {}
    for name, value in headers.items():
        lower_name = name.lower()
        if lower_name.startswith(_AMZ_HEADER_PREFIX):
            values_by_name.setdefault(lower_name, []).append(value.strip(" \t"))
    return "".join(f"{name}:{','.join(values_by_name[name])}\n" for name in sorted(values_by_name))


def canonicalized_resource(request: ParsedRequest, bucket: str | None) -> str:
    """Return "/bucket" for a virtual-hosted-style request, the raw path and the subresources.

    The path is used as sent, still percent-encoded, except that a path-style path
    naming only a bucket ("/photos") gets a trailing slash, the form that a
    virtual-hosted-style request ("/") gives. botocore 1.43 and 1.44 sign "/photos/" too,
    because S3 accepts only that form (botocore/handlers.py).
    Subresource values are the decoded values, unencoded, as the S3 guide specifies.
    """
    path = request.raw_path or "/"
    if bucket is None and path.count("/") == 1 and path != "/":
        path += "/"
    resource = (f"/{bucket}" if bucket is not None else "") + path
    subresources = _subresource_query(request.query)
    return f"{resource}?{subresources}" if subresources else resource


def sign(secret_key: str, text: str) -> str:
    """Return the base64 HMAC-SHA1 of `text` under `secret_key`."""
    digest = hmac.new(
        secret_key.encode("utf-8"), text.encode("utf-8", "surrogateescape"), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode("ascii")


def _subresource_query(pairs: Iterable[tuple[str, str]]) -> str:
    """Join the subresource parameters sorted by name, keeping the sent order of repeats."""
    kept = sorted(
        ((name, value) for name, value in pairs if name in SUBRESOURCES), key=lambda pair: pair[0]
    )
    return "&".join(f"{name}={value}" if value else name for name, value in kept)


def _signed_headers_hint(request: ParsedRequest) -> str:
    """Return a hint naming the headers that Signature Version 2 signs and clients often add."""
    content_type = request.headers.get("content-type", "")
    content_md5 = request.headers.get("content-md5", "")
    return (
        "Signature Version 2 signs Content-Type "
        f"({repr(content_type[:80]) if content_type else 'none sent'}) and Content-MD5 "
        f"({repr(content_md5[:40]) if content_md5 else 'none sent'}): send the values the URL "
        "or request was signed with (curl --data adds application/x-www-form-urlencoded; "
        "pass -H 'Content-Type:' to drop it)."
    )


def _check_signature(
    request: ParsedRequest,
    access_key: str,
    signature: str,
    expected_string_to_sign: str,
    lookup_secret: LookupSecret,
    auth_type: AuthType,
) -> AuthResult:
    secret_key = lookup_secret(access_key)
    if secret_key is None:
        raise unknown_access_key(access_key)
    expected = sign(secret_key, expected_string_to_sign)
    if not signing.signatures_equal(expected, signature):
        raise signature_mismatch(expected_string_to_sign, hint=_signed_headers_hint(request))
    mode, sha256 = payload_mode_of_unsigned_request(request)
    return AuthResult(access_key, auth_type, mode, sha256)


def _request_time_from_headers(request: ParsedRequest) -> tuple[str, datetime]:
    """Return the request time as sent and parsed, from x-amz-date or else from Date.

    The S3 guide requires an RFC 2616 date in x-amz-date. The ISO 8601 basic form
    of Signature Version 4 ("20070327T212026Z") is accepted too.
    """
    amz_date = single_header(request, "x-amz-date")
    if amz_date is not None:
        request_time = parse_http_date(amz_date) or parse_amz_date(amz_date)
        text = amz_date
    else:
        text = single_header(request, "date") or ""
        request_time = parse_http_date(text) if text else None
    if request_time is None:
        raise auth_error(
            ACCESS_DENIED,
            "AWS authentication requires a valid Date or x-amz-date header. Send Date "
            'as an HTTP date, such as "Tue, 27 Mar 2007 19:36:42 GMT".',
        )
    return text, request_time


def _presigned_parameters(request: ParsedRequest) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in request.query:
        if name not in QUERY_AUTH_PARAMETERS:
            continue
        if name in params:
            raise auth_error(
                INVALID_ARGUMENT, f"The query parameter {name} appears more than once."
            )
        params[name] = value
    if len(params) != len(QUERY_AUTH_PARAMETERS):
        missing = [name for name in QUERY_AUTH_PARAMETERS if name not in params]
        raise auth_error(
            ACCESS_DENIED,
            "Query-string authentication requires the Signature, Expires and AWSAccessKeyId "
            f"parameters. Missing: {', '.join(missing)}.",
        )
    return params


def _is_epoch_seconds(text: str) -> bool:
    # The length bound keeps int() within Python's 4300-digit conversion limit.
    return text.isascii() and text.isdigit() and len(text) <= _MAX_EXPIRES_DIGITS


def _check_not_expired(expires_s: int, now: datetime) -> None:
    now_s = now.timestamp()
    if now_s > expires_s:
        expiry = datetime.fromtimestamp(expires_s, UTC)
        raise auth_error(
            ACCESS_DENIED,
            f"Request has expired: the presigned URL was valid until {format_time(expiry)} "
            f"(Expires={expires_s}) and the server time is {format_time(now)}. Create a new "
            "presigned URL.",
        )


def _virtual_host_bucket(request: ParsedRequest, domain: str | None) -> str | None:
    return bucket_from_host(single_header(request, "host"), domain)
