"""The bucket and key a request names, read from the Host header and the raw path.

Path-style requests name the bucket in the first path segment
(http://host/bucket/key). Virtual-hosted-style requests name it in the host
(http://bucket.DOMAIN/key), where DOMAIN is the gateway's --domain.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from store.limits import MAX_KEY_BYTES
from store.names import bucket_name_problem
from store.s3.api_errors import S3Error


@dataclass(frozen=True, slots=True)
class Location:
    """The target of a request. `key` is None for a bucket, and never empty."""

    bucket: str | None
    key: str | None
    virtual_host: bool = False

    @property
    def resource(self) -> str:
        """Return the resource path for error bodies ("/bucket/key")."""
        if self.bucket is None:
            return "/"
        if self.key is None:
            return f"/{self.bucket}"
        return f"/{self.bucket}/{self.key}"


def locate(host: str | None, raw_path: str, domain: str | None) -> Location:
    """Return the bucket and key a request targets; raise S3Error for an invalid one."""
    path = raw_path or "/"
    if not path.startswith("/"):
        raise S3Error("InvalidURI", f"the request path {path[:100]!r} must start with '/'")
    bucket = bucket_from_host(host, domain)
    if bucket is not None:
        key = _decode(path[1:], "key")
        return Location(check_bucket(bucket), check_key(key) if key else None, True)

    first, slash, rest = path[1:].partition("/")
    if not first:
        return Location(None, None)
    bucket = _decode(first, "bucket name")
    key = _decode(rest, "key") if slash else ""
    return Location(check_bucket(bucket), check_key(key) if key else None)


def bucket_from_host(host: str | None, domain: str | None) -> str | None:
    """Return the bucket of a virtual-hosted-style Host ("photos.s3.local:9000"), or None."""
    if not host or not domain:
        return None
    name = host.lower()
    if name.startswith("["):
        return None
    name = name.rsplit(":", 1)[0] if ":" in name else name
    suffix = "." + domain.lower().strip(".")
    if name.endswith(suffix) and len(name) > len(suffix):
        return name[: -len(suffix)]
    return None


def check_bucket(name: str) -> str:
    problem = bucket_name_problem(name)
    if problem is not None:
        raise S3Error(
            "InvalidBucketName",
            f"The specified bucket is not valid: {name[:100]!r} {problem}",
        )
    return name


def check_key(key: str) -> str:
    size_bytes = len(key.encode("utf-8", "surrogateescape"))
    if size_bytes > MAX_KEY_BYTES:
        raise S3Error(
            "KeyTooLongError",
            f"Your key is too long: {size_bytes} bytes of UTF-8, and the maximum is "
            f"{MAX_KEY_BYTES}; use a shorter key",
        )
    return key


def _decode(raw: str, what: str) -> str:
    """Percent-decode a path segment as UTF-8, raising InvalidURI for other bytes."""
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise S3Error(
            "InvalidURI",
            f"the {what} in the request path is not valid UTF-8 once percent-decoded; "
            "encode it as UTF-8",
        ) from None
