"""The parts of an HTTP request that SigV4 signs, independent of the HTTP server."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote_to_bytes

from multidict import CIMultiDict, MultiMapping

if TYPE_CHECKING:
    from aiohttp import web

HeaderSource = MultiMapping[str] | Mapping[str, str] | Iterable[tuple[str, str]]


# The query parameters that authenticate a presigned URL of Signature Version 4.
SIGV4_QUERY_AUTH_PARAMETERS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
)
# x-amz-* query parameters of a presigned URL that do not stand for headers.
_NOT_HOISTED = frozenset(
    name.lower()
    for name in (*SIGV4_QUERY_AUTH_PARAMETERS, "X-Amz-Security-Token", "X-Amz-Content-Sha256")
)


@dataclass(frozen=True)
class ParsedRequest:
    """An HTTP request line and headers, as SigV4 verification needs them.

    `raw_path` is the path exactly as the client sent it, still percent-encoded and
    without the query string. `query` contains the decoded (name, value) pairs in the
    order sent. `headers` is a case-insensitive multimap.
    """

    method: str
    raw_path: str
    query: tuple[tuple[str, str], ...]
    headers: CIMultiDict[str]

    @classmethod
    def from_target(cls, method: str, target: str, headers: HeaderSource) -> ParsedRequest:
        """Build a request from the raw request-target of the request line ("/b/k?x=1")."""
        raw_path, raw_query = split_target(target)
        return cls(method, raw_path, parse_query(raw_query), CIMultiDict(headers))

    @classmethod
    def from_aiohttp(cls, request: web.BaseRequest) -> ParsedRequest:
        """Build a request from an aiohttp request without reading its body.

        aiohttp's `raw_path` is the request-target as received, query string included.
        """
        return cls.from_target(request.method, request.raw_path, request.headers)

    def with_query_headers(self) -> ParsedRequest:
        """Return this request with the headers that its query string carries (hoisted_headers)."""
        hoisted = hoisted_headers(self.query)
        if not hoisted:
            return self
        headers = merge_headers(self.headers, hoisted)
        return ParsedRequest(self.method, self.raw_path, self.query, headers)


def hoisted_headers(query: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Return the headers that a presigned URL carries as query parameters.

    SDKs move the x-amz-* headers of a request into the query string when they presign
    it (x-amz-meta-*, x-amz-checksum-*, x-amz-checksum-mode, x-amz-copy-source and so on),
    so that the URL works without extra headers. S3 reads them as headers; so does the
    gateway, for both signature versions.
    """
    return [
        (name, value)
        for name, value in query
        if name.lower().startswith("x-amz-") and name.lower() not in _NOT_HOISTED
    ]


def merge_headers(headers: HeaderSource, hoisted: list[tuple[str, str]]) -> CIMultiDict[str]:
    """Return `headers` with `hoisted` added, each replacing any header of the same name."""
    merged = CIMultiDict(headers)
    for name, _ in hoisted:
        merged.popall(name, None)
    merged.extend(hoisted)
    return merged


def split_target(target: str) -> tuple[str, str]:
    """Split a request-target into the raw path and the raw query string.

    An absolute-form target ("http://host/path?q") loses its scheme and authority.
    """
    for scheme in ("http://", "https://"):
        if target[: len(scheme)].lower() == scheme:
            slash_at = target.find("/", len(scheme))
            question_at = target.find("?", len(scheme))
            if slash_at < 0 or 0 <= question_at < slash_at:
                rest = target[question_at:] if question_at >= 0 else ""
                target = "/" + rest
            else:
                target = target[slash_at:]
            break
    raw_path, _, raw_query = target.partition("?")
    return raw_path, raw_query


def parse_query(raw_query: str) -> tuple[tuple[str, str], ...]:
    """Decode a raw query string into (name, value) pairs, keeping order and repeats.

    A parameter without "=" gets the value "". Empty segments ("a=1&&b=2") are skipped.
    "+" decodes to a space, as in HTML forms, and percent escapes decode as UTF-8, with
    invalid bytes kept as surrogates so that they encode back to the bytes sent.
    """
    pairs: list[tuple[str, str]] = []
    for segment in raw_query.split("&"):
        if not segment:
            continue
        name, _, value = segment.partition("=")
        pairs.append((_decode_query_component(name), _decode_query_component(value)))
    return tuple(pairs)


def _decode_query_component(text: str) -> str:
    raw_bytes = text.replace("+", " ").encode("utf-8", "surrogateescape")
    return unquote_to_bytes(raw_bytes).decode("utf-8", "surrogateescape")
