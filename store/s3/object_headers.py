"""Object headers: user metadata (x-amz-meta-*), stored HTTP headers and response headers.

Content-Type goes to the object record's content type. Content-Encoding,
Content-Disposition, Content-Language, Cache-Control and Expires are stored as the
SDK's system metadata and returned on GET and HEAD. The aws-chunked token of
Content-Encoding describes the transfer, not the object, so it is not stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

from store.limits import MAX_USER_METADATA_BYTES
from store.s3 import tags
from store.s3.api_errors import S3Error, not_implemented
from store.types import ObjectInfo

USER_METADATA_PREFIX = "x-amz-meta-"
DEFAULT_CONTENT_TYPE = "binary/octet-stream"
# Stored headers, by their lowercase name, with the capitalization responses use.
SYSTEM_HEADERS = {
    "content-encoding": "Content-Encoding",
    "content-disposition": "Content-Disposition",
    "content-language": "Content-Language",
    "cache-control": "Cache-Control",
    "expires": "Expires",
}
# GET query parameters that replace a response header, as S3 allows on signed requests.
RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}


@dataclass(frozen=True, slots=True)
class StoredHeaders:
    """The headers a write stores besides the bytes."""

    content_type: str
    metadata: dict[str, str]
    system_metadata: dict[str, str]


def stored_headers(headers: Mapping[str, str]) -> StoredHeaders:
    """Collect the headers a PUT, a copy with REPLACE or a multipart upload stores."""
    return StoredHeaders(
        content_type=headers.get("content-type", ""),
        metadata=user_metadata(headers),
        system_metadata=system_metadata(headers) | tags.entry_of_headers(headers),
    )


def user_metadata(headers: Mapping[str, str]) -> dict[str, str]:
    """Return x-amz-meta-* headers by lowercase name; raise MetadataTooLarge over 2 KiB."""
    metadata: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if not lower.startswith(USER_METADATA_PREFIX):
            continue
        short = lower[len(USER_METADATA_PREFIX) :]
        if not short:
            raise S3Error("InvalidArgument", "a metadata header must have a name after x-amz-meta-")
        metadata[short] = f"{metadata[short]},{value}" if short in metadata else value
    size_bytes = sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items())
    if size_bytes > MAX_USER_METADATA_BYTES:
        raise S3Error(
            "MetadataTooLarge",
            f"Your metadata headers are {size_bytes} bytes (names plus values), more than "
            f"the maximum of {MAX_USER_METADATA_BYTES}; store large values in the object",
        )
    return metadata


def system_metadata(headers: Mapping[str, str]) -> dict[str, str]:
    stored: dict[str, str] = {}
    for name in SYSTEM_HEADERS:
        value = headers.get(name)
        if value is None:
            continue
        if name == "content-encoding":
            value = without_aws_chunked(value)
        if value:
            stored[name] = value
    return stored


def without_aws_chunked(content_encoding: str) -> str:
    """Drop the aws-chunked token from a Content-Encoding value ("aws-chunked,gzip" -> "gzip")."""
    tokens = [token.strip() for token in content_encoding.split(",")]
    return ",".join(token for token in tokens if token and token.lower() != "aws-chunked")


def http_date(moment: datetime) -> str:
    """Format a time as an HTTP date in GMT, at the second."""
    return format_datetime(moment.replace(microsecond=0), usegmt=True)


def quoted_etag(etag: str) -> str:
    return f'"{etag}"'


def object_headers(info: ObjectInfo, query: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the headers of a GET or HEAD of `info`, with response-* overrides applied."""
    headers = {
        "ETag": quoted_etag(info.etag),
        "Last-Modified": http_date(info.modified),
        "Content-Type": info.content_type or DEFAULT_CONTENT_TYPE,
        "Accept-Ranges": "bytes",
    }
    for name, value in info.system_metadata.items():
        if name in SYSTEM_HEADERS:
            headers[SYSTEM_HEADERS[name]] = value
    for name, value in info.metadata.items():
        headers[USER_METADATA_PREFIX + name] = value
    headers.update(tags.count_header(info.system_metadata))
    for parameter, header in RESPONSE_OVERRIDES.items():
        if query and parameter in query:
            headers[header] = query[parameter]
    return headers


SSE_HEADER = "x-amz-server-side-encryption"
SSE_CUSTOMER_PREFIX = "x-amz-server-side-encryption-customer-"
SSE_CUSTOMER_ALGORITHM = SSE_CUSTOMER_PREFIX + "algorithm"


def check_write_encryption_headers(headers: Mapping[str, str]) -> None:
    """Raise for SSE-C key headers without the algorithm header, as Amazon S3 does.

    The gateway stores no encrypted objects, so a complete set of SSE headers
    gets NotImplemented from the caller instead.
    """
    named = [name for name in headers if name.lower().startswith(SSE_CUSTOMER_PREFIX)]
    if named and SSE_CUSTOMER_ALGORITHM not in headers:
        raise S3Error(
            "InvalidArgument",
            "Requests specifying Server Side Encryption with Customer provided keys must "
            f"provide a valid encryption algorithm: {', '.join(sorted(named))} came without "
            f"{SSE_CUSTOMER_ALGORITHM}",
        )


def check_read_encryption_headers(headers: Mapping[str, str]) -> None:
    """Raise for encryption headers on a GET or HEAD: no object here is encrypted."""
    if SSE_HEADER in headers or SSE_HEADER + "-aws-kms-key-id" in headers:
        raise S3Error(
            "InvalidArgument",
            f"{SSE_HEADER} header is not supported for this operation; send it only with writes",
        )
    if any(name.lower().startswith(SSE_CUSTOMER_PREFIX) for name in headers):
        raise S3Error(
            "InvalidRequest",
            "The encryption parameters are not applicable to this object: it is not "
            "encrypted with a customer-provided key, so read it without SSE-C headers",
        )


# Canned ACLs that leave a bucket or object private to the bucket's owner, the
# only ACL the gateway has.
PRIVATE_CANNED_ACLS = frozenset({"private", "bucket-owner-full-control"})


def reject_acl_headers(headers: Mapping[str, str], allowed: frozenset[str]) -> None:
    """Raise NotImplemented for a canned ACL outside `allowed` or any x-amz-grant-* header."""
    acl = headers.get("x-amz-acl")
    if acl is not None and acl not in allowed:
        raise not_implemented(f"The canned ACL {acl[:40]!r} (only private is)")
    if any(name.lower().startswith("x-amz-grant-") for name in headers):
        raise not_implemented("Granting access with x-amz-grant-* headers")
