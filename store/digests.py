"""Content checksums as S3 defines them: CRC32, CRC32C, CRC64-NVME, SHA-1, SHA-256 and MD5.

Values are the base64 of the big-endian digest, as in the x-amz-checksum-*
headers. The CRCs come from awscrt (native code: 3 to 25 GB/s here), the
hashes from hashlib. MD5 runs at about 0.75 GB/s on one core, so callers feed
large inputs from a worker thread (hashlib releases the GIL for buffers over
2 KiB).

A multipart object's checksum is either COMPOSITE, the checksum of the parts'
concatenated raw checksums followed by "-N", or FULL_OBJECT, the CRC of the
whole content, combined from the parts' CRCs without reading the data again.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import awscrt.checksums as crt

from store.errors import BadDigest, InvalidArgument

CRC_ALGORITHMS = ("crc32", "crc32c", "crc64nvme")
HASH_ALGORITHMS = ("sha1", "sha256")
ALGORITHMS = CRC_ALGORITHMS + HASH_ALGORITHMS
FULL_OBJECT = "FULL_OBJECT"
# The checksum S3 stores for content uploaded without one.
DEFAULT_ALGORITHM = "crc64nvme"
COMPOSITE = "COMPOSITE"

_CRC_FUNCTIONS = {"crc32": crt.crc32, "crc32c": crt.crc32c, "crc64nvme": crt.crc64nvme}
_CRC_COMBINE = {
    "crc32": crt.combine_crc32,
    "crc32c": crt.combine_crc32c,
    "crc64nvme": crt.combine_crc64nvme,
}
_CRC_BYTES = {"crc32": 4, "crc32c": 4, "crc64nvme": 8}


def check_algorithm(name: str) -> str:
    """Return the lowercase algorithm name, or raise InvalidArgument."""
    algorithm = name.lower()
    if algorithm not in ALGORITHMS:
        raise InvalidArgument(
            f"unknown checksum algorithm {name!r}; use one of {', '.join(ALGORITHMS)}"
        )
    return algorithm


class Digests:
    """Running checksums of one stream of bytes, fed in order."""

    def __init__(self, algorithms: Iterable[str], md5: bool) -> None:
        self._crcs = {name: 0 for name in algorithms if name in CRC_ALGORITHMS}
        self._hashes: dict[str, Any] = {
            name: hashlib.new(name) for name in algorithms if name in HASH_ALGORITHMS
        }
        self._md5 = hashlib.md5() if md5 else None
        self.size_bytes = 0

    @property
    def wanted(self) -> bool:
        return bool(self._crcs or self._hashes or self._md5)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        for name, value in self._crcs.items():
            self._crcs[name] = _CRC_FUNCTIONS[name](data, value)
        for hasher in self._hashes.values():
            hasher.update(data)
        if self._md5 is not None:
            self._md5.update(data)
        self.size_bytes += len(data)

    def md5_hex(self) -> str:
        assert self._md5 is not None, "MD5 was not requested"
        return self._md5.hexdigest()

    def md5_base64(self) -> str:
        assert self._md5 is not None, "MD5 was not requested"
        return base64.b64encode(self._md5.digest()).decode()

    def values(self) -> dict[str, str]:
        """Return each checksum's base64 value."""
        values = {name: _crc_base64(name, value) for name, value in self._crcs.items()}
        for name, hasher in self._hashes.items():
            values[name] = base64.b64encode(hasher.digest()).decode()
        return values

    def verify(self, expected: Mapping[str, str], content_md5: str | None) -> None:
        """Raise BadDigest unless every expected checksum and the Content-MD5 match."""
        actual = self.values()
        for name, value in expected.items():
            if name not in actual:
                raise InvalidArgument(
                    f"a {name} checksum was expected but not computed; declare {name} among "
                    "the checksum algorithms before the data is read"
                )
            if actual[name] != value:
                raise BadDigest(
                    f"the {name} checksum of the content is {actual.get(name)}, but the request "
                    f"declared {value}; the data changed in transit, send it again"
                )
        if content_md5 is not None and self.md5_base64() != content_md5:
            raise BadDigest(
                f"the Content-MD5 of the content is {self.md5_base64()}, but the request "
                f"declared {content_md5}; the data changed in transit, send it again"
            )


def _crc_base64(name: str, value: int) -> str:
    return base64.b64encode(value.to_bytes(_CRC_BYTES[name], "big")).decode()


def _crc_value(value: str) -> int:
    return int.from_bytes(base64.b64decode(value), "big")


def composite(algorithm: str, part_values: Sequence[str]) -> str:
    """Return the COMPOSITE checksum of a multipart object from its parts' checksums."""
    raw = b"".join(base64.b64decode(value) for value in part_values)
    digests = Digests([algorithm], md5=False)
    digests.update(raw)
    return f"{digests.values()[algorithm]}-{len(part_values)}"


def full_object(algorithm: str, parts: Sequence[tuple[str, int]]) -> str:
    """Return the FULL_OBJECT CRC of a multipart object from (part CRC, part size) pairs."""
    if algorithm not in _CRC_COMBINE:
        raise InvalidArgument(f"{algorithm} has no full-object form; use a CRC algorithm")
    combined = 0
    for index, (value, size_bytes) in enumerate(parts):
        crc = _crc_value(value)
        combined = crc if index == 0 else _CRC_COMBINE[algorithm](combined, crc, size_bytes)
    return _crc_base64(algorithm, combined)


def multipart_etag(part_etags: Sequence[str]) -> str:
    """Return S3's ETag of a multipart object: MD5 of the parts' binary MD5s, then "-N"."""
    try:
        raw = b"".join(bytes.fromhex(etag.strip('"')) for etag in part_etags)
    except ValueError:
        raise InvalidArgument(
            f"part ETags must be hex MD5 values, got {list(part_etags)}"
        ) from None
    return f"{hashlib.md5(raw).hexdigest()}-{len(part_etags)}"
