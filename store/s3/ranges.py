"""The Range header of GET and HEAD: one byte range, as RFC 9110 section 14.1.2 defines it.

"bytes=FIRST-LAST" (LAST clipped to the end), "bytes=FIRST-" and "bytes=-SUFFIX" (the
last SUFFIX bytes). A range that starts at or past the end is 416 InvalidRange, and so
is one that does not parse, so the client learns of its mistake. Several ranges in one
request are not implemented, as in S3.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from store.s3.api_errors import S3Error, not_implemented

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    length: int

    def content_range(self, size_bytes: int) -> str:
        return f"bytes {self.start}-{self.start + self.length - 1}/{size_bytes}"


def parse_range(header: str, size_bytes: int) -> ByteRange:
    """Return the satisfiable part of a Range header for an object of `size_bytes`."""
    text = header.strip().replace(" ", "")
    if "," in text:
        raise not_implemented(f"A Range with several ranges ({header[:80]!r})")
    match = _RANGE.fullmatch(text)
    if match is None or (not match.group(1) and not match.group(2)):
        raise _invalid(header, size_bytes, "it is not of the form bytes=FIRST-LAST")
    first_text, last_text = match.groups()
    if not first_text:
        suffix_bytes = int(last_text)
        if suffix_bytes == 0 or size_bytes == 0:
            raise _invalid(header, size_bytes, "it selects no bytes")
        start = max(0, size_bytes - suffix_bytes)
        return ByteRange(start, size_bytes - start)
    start = int(first_text)
    if last_text and int(last_text) < start:
        raise _invalid(header, size_bytes, "its last byte comes before its first")
    if start >= size_bytes:
        raise _invalid(header, size_bytes, "it starts at or past the end of the object")
    end = size_bytes if not last_text else min(size_bytes, int(last_text) + 1)
    return ByteRange(start, end - start)


def _invalid(header: str, size_bytes: int, reason: str) -> S3Error:
    return S3Error(
        "InvalidRange",
        f"The requested range {header[:80]!r} is not satisfiable for an object of "
        f"{size_bytes} bytes: {reason}",
    )
