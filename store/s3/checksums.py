"""Checksum headers: x-amz-checksum-*, Content-MD5, x-amz-sdk-checksum-algorithm, trailers.

A request may declare at most one x-amz-checksum-ALGORITHM value, in a header or
in a trailer named by x-amz-trailer. The SDK computes the declared algorithm while
the body streams and compares the value after the last byte (BadDigest on a
mismatch, nothing committed). A request that declares no checksum still gets a
CRC-64/NVME stored, as Amazon S3 does for every new object.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field

from store.digests import ALGORITHMS, COMPOSITE, DEFAULT_ALGORITHM, FULL_OBJECT
from store.s3.api_errors import S3Error

HEADER_PREFIX = "x-amz-checksum-"
CHECKSUM_TYPE_HEADER = "x-amz-checksum-type"
CHECKSUM_MODE_HEADER = "x-amz-checksum-mode"
# Size of each algorithm's digest, which a base64 value must decode to.
DIGEST_BYTES = {"crc32": 4, "crc32c": 4, "crc64nvme": 8, "sha1": 20, "sha256": 32}
MD5_BYTES = 16
# Names of the checksum elements in S3 XML documents (ChecksumCRC32, ...).
XML_NAMES = {
    "crc32": "ChecksumCRC32",
    "crc32c": "ChecksumCRC32C",
    "crc64nvme": "ChecksumCRC64NVME",
    "sha1": "ChecksumSHA1",
    "sha256": "ChecksumSHA256",
}
assert set(DIGEST_BYTES) == set(ALGORITHMS) == set(XML_NAMES)


@dataclass
class ChecksumRequest:
    """The checksums a write computes, and the values its content must match."""

    algorithms: list[str]
    # Filled from headers at once, and from the trailer after the last byte.
    expected: dict[str, str] = field(default_factory=dict)
    content_md5: str | None = None
    trailer_algorithm: str | None = None

    def fill_from_trailers(self, trailers: Mapping[str, str]) -> None:
        """Copy the trailing checksum into `expected`; call once the body was read."""
        if self.trailer_algorithm is None:
            return
        name = HEADER_PREFIX + self.trailer_algorithm
        value = trailers.get(name)
        if value is None:
            raise S3Error(
                "InvalidRequest", f"the trailer {name} declared in x-amz-trailer is missing"
            )
        self.expected[self.trailer_algorithm] = check_value(self.trailer_algorithm, value)


def parse_checksum_request(
    headers: Mapping[str, str], *, default_algorithm: str | None = DEFAULT_ALGORITHM
) -> ChecksumRequest:
    """Read the checksum headers of a write; raise InvalidRequest or InvalidDigest.

    A malformed x-amz-checksum-* value gets InvalidRequest, as from Amazon S3; a
    malformed Content-MD5 gets InvalidDigest.
    """
    declared = declared_algorithm(headers)
    expected = _header_values(headers)
    trailer = _trailer_algorithm(headers)
    named = {name for name in (declared, trailer, *expected) if name}
    if len(named) > 1:
        raise S3Error(
            "InvalidRequest",
            f"Expecting a single x-amz-checksum- header, but the request names "
            f"{', '.join(sorted(named))}; send one checksum algorithm",
        )
    if trailer and expected:
        raise S3Error(
            "InvalidRequest",
            f"the checksum of {trailer} is sent both as a header and as a trailer; send one",
        )
    algorithms = sorted(named) or ([default_algorithm] if default_algorithm else [])
    return ChecksumRequest(
        algorithms=algorithms,
        expected=expected,
        content_md5=content_md5(headers),
        trailer_algorithm=trailer,
    )


def with_default_algorithm(algorithms: list[str]) -> list[str]:
    """Return the algorithms of a part with CRC-64/NVME added.

    Every part gets it, whatever the client declared, so that an upload created without
    a checksum algorithm completes into an object with S3's default: the full-object
    CRC-64/NVME, combined from the parts' values. It costs about 0.1 ms per MiB here.
    """
    return sorted({*algorithms, DEFAULT_ALGORITHM})


def part_checksum_fields(
    checksums: Mapping[str, str], upload_algorithm: str
) -> list[tuple[str, str]]:
    """Return the XML checksum element of a part: its upload's algorithm, or S3's default."""
    name = upload_algorithm or DEFAULT_ALGORITHM
    return [(XML_NAMES[name], checksums[name])] if name in checksums else []


def declared_algorithm(headers: Mapping[str, str]) -> str | None:
    """Return the algorithm of x-amz-sdk-checksum-algorithm or x-amz-checksum-algorithm."""
    value = headers.get("x-amz-sdk-checksum-algorithm") or headers.get("x-amz-checksum-algorithm")
    if not value:
        return None
    return check_algorithm_name(value)


def check_algorithm_name(value: str) -> str:
    algorithm = value.strip().lower()
    if algorithm not in DIGEST_BYTES:
        raise S3Error(
            "InvalidRequest",
            f"Checksum algorithm {value[:40]!r} is not supported; use one of "
            "CRC32, CRC32C, CRC64NVME, SHA1, SHA256",
        )
    return algorithm


def check_checksum_type(value: str | None, algorithm: str | None) -> str:
    """Return a valid x-amz-checksum-type for a multipart upload ("" when not given)."""
    if not value:
        return ""
    checksum_type = value.strip().upper()
    if checksum_type not in (FULL_OBJECT, COMPOSITE):
        raise S3Error(
            "InvalidRequest",
            f"x-amz-checksum-type {value[:40]!r} is invalid; use FULL_OBJECT or COMPOSITE",
        )
    if algorithm is None:
        raise S3Error(
            "InvalidRequest",
            "x-amz-checksum-type needs x-amz-checksum-algorithm; name the algorithm too",
        )
    if checksum_type == FULL_OBJECT and algorithm.startswith("sha"):
        raise S3Error(
            "InvalidRequest",
            f"The FULL_OBJECT checksum type cannot be used with the {algorithm.upper()} "
            "algorithm; use COMPOSITE or a CRC",
        )
    return checksum_type


def check_value(algorithm: str, value: str) -> str:
    """Return a base64 checksum value unchanged, or raise InvalidRequest if malformed."""
    header = HEADER_PREFIX + algorithm
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != DIGEST_BYTES[algorithm]:
        raise S3Error(
            "InvalidRequest",
            f"Value for {header} header is invalid: {value[:100]!r} is not the base64 of a "
            f"{DIGEST_BYTES[algorithm]}-byte {algorithm.upper()} value",
        )
    return value


def expected_object_checksums(headers: Mapping[str, str]) -> dict[str, str]:
    """Return the x-amz-checksum-* values a CompleteMultipartUpload expects of the object.

    A value is the base64 checksum of the whole object, or for a COMPOSITE
    checksum the base64 checksum of the parts' checksums followed by "-N".
    """
    expected: dict[str, str] = {}
    for algorithm in DIGEST_BYTES:
        value = headers.get(HEADER_PREFIX + algorithm)
        if value is None:
            continue
        value = value.strip()
        digest, dash, count = value.partition("-")
        if dash and not (count.isdigit() and count[0] != "0"):
            raise S3Error(
                "InvalidRequest",
                f"Value for {HEADER_PREFIX + algorithm} header is invalid: {value[:100]!r} "
                "must be BASE64 or BASE64-PARTCOUNT",
            )
        check_value(algorithm, digest)
        expected[algorithm] = value
    return expected


def content_md5(headers: Mapping[str, str]) -> str | None:
    value = headers.get("content-md5")
    if value is None:
        return None
    if len(_decode_base64(value, "Content-MD5")) != MD5_BYTES:
        raise _invalid_digest(f"Content-MD5 {value[:100]!r} is not the base64 of a 16-byte MD5")
    return value


def response_headers(
    checksums: Mapping[str, str], checksum_type: str, *, composite_too: bool = True
) -> dict[str, str]:
    """Return the x-amz-checksum-* headers of stored checksums, with x-amz-checksum-type."""
    headers: dict[str, str] = {}
    for algorithm, value in checksums.items():
        if algorithm in DIGEST_BYTES and (composite_too or "-" not in value):
            headers[HEADER_PREFIX + algorithm] = value
    if headers:
        headers[CHECKSUM_TYPE_HEADER] = checksum_type or FULL_OBJECT
    return headers


def _header_values(headers: Mapping[str, str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for algorithm in DIGEST_BYTES:
        value = headers.get(HEADER_PREFIX + algorithm)
        if value is not None:
            values[algorithm] = check_value(algorithm, value.strip())
    return values


def _trailer_algorithm(headers: Mapping[str, str]) -> str | None:
    value = headers.get("x-amz-trailer")
    if not value:
        return None
    names = [name.strip().lower() for name in value.split(",") if name.strip()]
    algorithms = [name[len(HEADER_PREFIX) :] for name in names if name.startswith(HEADER_PREFIX)]
    if len(names) != 1 or len(algorithms) != 1 or algorithms[0] not in DIGEST_BYTES:
        raise S3Error(
            "InvalidRequest",
            f"x-amz-trailer {value[:100]!r} must name exactly one checksum, such as "
            "x-amz-checksum-crc64nvme",
        )
    return algorithms[0]


def _decode_base64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid_digest(f"{what} {value[:100]!r} is not valid base64") from None


def _invalid_digest(detail: str) -> S3Error:
    return S3Error("InvalidDigest", f"The digest you specified is not valid: {detail}")
