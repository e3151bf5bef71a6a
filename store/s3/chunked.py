"""Read and check S3 request bodies: aws-chunked decoding and plain bodies with a signed hash.

`open_payload_reader()` picks the reader for the PayloadMode that sigv4.verify()
returned. Every reader is an async iterator of decoded payload pieces and raises
S3AuthError when the body breaks its framing, its signatures or its declared length.
The caller must not commit an object before the iteration has ended without an
error, and for a trailing checksum it must also check `trailers` first.

The aws-chunked format is the one of the S3 API reference pages "Transferring Payload
in Multiple Chunks (Chunked Upload)" and "Signature calculations for trailing headers":

    hex-size[;chunk-signature=<64 hex>]\\r\\n<data>\\r\\n   (repeated)
    0[;chunk-signature=<64 hex>]\\r\\n                      (the final, empty chunk)
    name:value\\r\\n ... [x-amz-trailer-signature:<64 hex>\\r\\n]   (trailer modes only)
    \\r\\n
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence

from multidict import MultiMapping

from store.s3 import signing
from store.s3.auth_common import AuthResult, PayloadMode
from store.s3.errors import (
    INVALID_ARGUMENT,
    MALFORMED_TRAILER_ERROR,
    SIGNATURE_DOES_NOT_MATCH,
    X_AMZ_CONTENT_SHA256_MISMATCH,
    S3AuthError,
    auth_error,
)
from store.s3.framing import (
    READ_SIZE_BYTES,
    BufferedSource,
    ByteSource,
    incomplete_body,
    malformed_body,
)

MIB = 1024 * 1024
# A signed chunk is held in memory until its signature is checked, so this bounds the
# memory per request. botocore 1.44 sends 1 MiB chunks, and the AWS documentation's
# signed example 64 KiB chunks.
# NOTE: S3's minimum of 8 KiB for every chunk but the last is not enforced.
DEFAULT_MAX_CHUNK_SIZE_BYTES = 16 * MIB
# A valid chunk header has at most 16 hex digits, ";chunk-signature=" and 64 hex digits.
MAX_CHUNK_HEADER_BYTES = 4096
MAX_TRAILER_LINE_BYTES = 4096
MAX_TRAILER_LINES = 32
TRAILER_SIGNATURE_NAME = "x-amz-trailer-signature"

_HEX_SIZE_PATTERN = re.compile(rb"[0-9A-Fa-f]{1,16}")
_TRAILER_NAME_PATTERN = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")

HeaderMap = MultiMapping[str] | Mapping[str, str]


class PayloadReader(ABC):
    """A one-pass async iterator over the decoded payload of a request body.

    `decoded_length_bytes` counts the payload bytes yielded so far. `complete` turns
    True once the whole body has been read and checked. `trailers` maps each trailing
    header name (lowercase) to its value once `complete` is True, without
    x-amz-trailer-signature, and is empty for bodies without trailers.
    """

    def __init__(self) -> None:
        self.decoded_length_bytes = 0
        self.complete = False
        self.trailers: dict[str, str] = {}
        self._started = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._started:
            raise RuntimeError("a PayloadReader can be iterated only once")
        self._started = True
        return self._pieces()

    @abstractmethod
    def _pieces(self) -> AsyncIterator[bytes]:
        """Yield the decoded payload, then set `complete` and `trailers`."""


# Pieces of a plain body: up to this long, as far as the socket has delivered them.
PLAIN_PIECE_BYTES = 1024 * 1024
# Pieces at least this long are hashed in a worker thread (hashlib releases the GIL),
# so the event loop keeps serving while SHA-256 runs at about 1 GB/s.
THREAD_HASH_MIN_BYTES = 128 * 1024


class PlainPayloadReader(PayloadReader):
    """Pass a body through unchanged, checking its length and, when signed, its SHA-256.

    The pieces are at most `piece_size_bytes` long. When `content_length_bytes` is set,
    the reader stops after that many bytes and raises IncompleteBody if the source ends
    first. When `expected_sha256` is set, the digest is compared at the end and a
    mismatch raises XAmzContentSHA256Mismatch after the last piece was yielded.
    """

    def __init__(
        self,
        source: ByteSource,
        *,
        expected_sha256: str | None,
        content_length_bytes: int | None,
        piece_size_bytes: int = PLAIN_PIECE_BYTES,
    ) -> None:
        super().__init__()
        self._source = source
        self._expected_sha256 = expected_sha256.lower() if expected_sha256 else None
        self._content_length_bytes = content_length_bytes
        self._piece_size_bytes = piece_size_bytes

    async def _pieces(self) -> AsyncIterator[bytes]:
        digest = hashlib.sha256() if self._expected_sha256 is not None else None
        while True:
            request_bytes = self._piece_size_bytes
            if self._content_length_bytes is not None:
                request_bytes = min(
                    request_bytes, self._content_length_bytes - self.decoded_length_bytes
                )
                if request_bytes == 0:
                    break
            piece = await self._source.read(request_bytes)
            if not piece:
                break
            if digest is not None and len(piece) >= THREAD_HASH_MIN_BYTES:
                await asyncio.to_thread(digest.update, piece)
            elif digest is not None:
                digest.update(piece)
            self.decoded_length_bytes += len(piece)
            yield piece

        self._check_length()
        if digest is not None:
            self._check_digest(digest.hexdigest())
        self.complete = True

    def _check_length(self) -> None:
        expected = self._content_length_bytes
        if expected is not None and self.decoded_length_bytes < expected:
            raise incomplete_body(
                f"The body ended after {self.decoded_length_bytes} bytes, but Content-Length "
                f"is {expected}."
            )

    def _check_digest(self, computed_sha256: str) -> None:
        if computed_sha256 != self._expected_sha256:
            raise auth_error(
                X_AMZ_CONTENT_SHA256_MISMATCH,
                "The provided 'x-amz-content-sha256' header does not match what was "
                f"computed: the header is {self._expected_sha256} and the body's SHA-256 is "
                f"{computed_sha256}. Send the SHA-256 of the exact body bytes.",
            )


class AwsChunkedDecoder(PayloadReader):
    """Decode an aws-chunked body in any of the three STREAMING-* payload modes.

    In the signed modes each chunk is read whole, up to `max_chunk_size_bytes`, and its
    signature is checked before any of its bytes are yielded. In the unsigned trailer
    mode chunk data is yielded as it arrives, in pieces of at most `read_size_bytes`.
    `decoded_content_length_bytes` (x-amz-decoded-content-length) is enforced when
    given, and every name in `declared_trailers` (x-amz-trailer) must arrive as a
    trailer, and no other name.
    """

    def __init__(
        self,
        source: ByteSource,
        auth: AuthResult,
        *,
        decoded_content_length_bytes: int | None = None,
        declared_trailers: Iterable[str] = (),
        max_chunk_size_bytes: int = DEFAULT_MAX_CHUNK_SIZE_BYTES,
        read_size_bytes: int = READ_SIZE_BYTES,
    ) -> None:
        super().__init__()
        mode = auth.payload_mode
        if not mode.is_aws_chunked:
            raise ValueError(f"payload mode {mode.name} is not aws-chunked")
        self._mode = mode
        self._signer = _ChunkSigner.from_auth(auth) if mode.has_chunk_signatures else None
        self._reader = BufferedSource(source, read_size_bytes)
        self._declared_length_bytes = decoded_content_length_bytes
        self._declared_trailers = frozenset(name.lower() for name in declared_trailers)
        self._max_chunk_size_bytes = max_chunk_size_bytes
        self._read_size_bytes = read_size_bytes
        self._chunk_count = 0

    async def _pieces(self) -> AsyncIterator[bytes]:
        # Every pass reads a chunk header line, so the loop ends with the input.
        while True:
            size_bytes, chunk_signature = await self._read_chunk_header()
            self._check_length_budget(size_bytes)
            if self._signer is not None:
                chunk = self._read_signed_chunk(self._signer, size_bytes, chunk_signature)
                async for piece in chunk:
                    yield piece
            else:
                async for piece in self._read_unsigned_chunk(size_bytes):
                    yield piece
            if size_bytes == 0:
                break

        await self._read_end_of_body()
        self._check_decoded_length()
        self.complete = True

    async def _read_chunk_header(self) -> tuple[int, str | None]:
        self._chunk_count += 1
        location = f"header of chunk {self._chunk_count}"
        line = await self._reader.read_line(MAX_CHUNK_HEADER_BYTES, location)
        if line is None:
            raise incomplete_body(
                f"The body ended before the {location}, without the final zero-length chunk."
            )
        size_text, _, extensions = line.partition(b";")
        size_text = size_text.strip(b" \t")
        if not _HEX_SIZE_PATTERN.fullmatch(size_text):
            raise malformed_body(
                f"The {location} {_shorten(line)} does not start with a hexadecimal chunk size."
            )
        size_bytes = int(size_text, 16)
        if size_bytes > self._max_chunk_size_bytes:
            raise auth_error(
                INVALID_ARGUMENT,
                f"Chunk {self._chunk_count} declares {size_bytes} bytes, more than the maximum "
                f"chunk size of {self._max_chunk_size_bytes} bytes. Send smaller chunks.",
            )
        return size_bytes, _chunk_signature(extensions)

    async def _read_signed_chunk(
        self, signer: _ChunkSigner, size_bytes: int, chunk_signature: str | None
    ) -> AsyncIterator[bytes]:
        """Read a whole chunk, check its signature and only then yield its pieces."""
        location = f"data of chunk {self._chunk_count}"
        if chunk_signature is None:
            raise malformed_body(
                f"The header of chunk {self._chunk_count} has no ';chunk-signature=' "
                "extension, which this payload mode requires."
            )
        pieces: list[bytes] = []
        digest = hashlib.sha256()
        remaining_bytes = size_bytes
        while remaining_bytes > 0:
            piece = await self._reader.read_some(remaining_bytes, location)
            digest.update(piece)
            pieces.append(piece)
            remaining_bytes -= len(piece)
        if size_bytes > 0:
            await self._reader.expect_crlf(location)
        signer.check_chunk(digest.hexdigest(), chunk_signature, self._chunk_count)

        self.decoded_length_bytes += size_bytes
        for piece in pieces:
            yield piece

    async def _read_unsigned_chunk(self, size_bytes: int) -> AsyncIterator[bytes]:
        location = f"data of chunk {self._chunk_count}"
        remaining_bytes = size_bytes
        while remaining_bytes > 0:
            request_bytes = min(remaining_bytes, self._read_size_bytes)
            piece = await self._reader.read_some(request_bytes, location)
            remaining_bytes -= len(piece)
            self.decoded_length_bytes += len(piece)
            yield piece
        if size_bytes > 0:
            await self._reader.expect_crlf(location)

    async def _read_end_of_body(self) -> None:
        """Read what follows the final chunk's header, up to the end of the source."""
        if self._mode is PayloadMode.STREAMING_SIGNED:
            line = await self._reader.read_line(MAX_TRAILER_LINE_BYTES, "end of the body")
            if line is None:
                raise incomplete_body("The body ended without the CRLF after the final chunk.")
            if line:
                raise malformed_body(
                    f"The final chunk is followed by {_shorten(line)} instead of CRLF. "
                    "Trailing headers need x-amz-content-sha256 "
                    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER."
                )
        else:
            await self._read_trailer_section()
        if not await self._reader.at_end():
            raise malformed_body("There are bytes after the end of the aws-chunked body.")

    async def _read_trailer_section(self) -> None:
        lines = await self._read_trailer_lines()
        trailers, trailer_signature = _parse_trailer_lines(lines)
        if self._signer is not None:
            if trailer_signature is None:
                raise _trailer_error(
                    f"The trailer has no {TRAILER_SIGNATURE_NAME} line, which "
                    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER requires."
                )
            self._signer.check_trailer(trailers, trailer_signature)
        elif trailer_signature is not None:
            raise _trailer_error(
                f"The trailer has a {TRAILER_SIGNATURE_NAME} line, but the payload mode "
                "STREAMING-UNSIGNED-PAYLOAD-TRAILER has no signatures to chain it to."
            )
        self._check_declared_trailers(trailers)
        self.trailers = trailers

    async def _read_trailer_lines(self) -> list[bytes]:
        """Return the trailer lines up to the blank line that ends them, or to the end.

        The end of the source in place of the closing blank line is accepted, and so is a
        blank line right after the final chunk when trailers are declared, because AWS
        documentation examples show both forms.
        """
        lines: list[bytes] = []
        skipped_leading_blank = False
        # One leading blank line, the trailer lines and the closing blank line.
        for _ in range(MAX_TRAILER_LINES + 2):
            line = await self._reader.read_line(MAX_TRAILER_LINE_BYTES, "trailer line")
            if line is None:
                return lines
            if not line:
                if lines or skipped_leading_blank or not self._declared_trailers:
                    return lines
                skipped_leading_blank = True
                continue
            if len(lines) == MAX_TRAILER_LINES:
                break
            lines.append(line)
        raise _trailer_error(f"The trailer has more than {MAX_TRAILER_LINES} lines.")

    def _check_declared_trailers(self, trailers: Mapping[str, str]) -> None:
        missing = sorted(self._declared_trailers - trailers.keys())
        if missing:
            raise _trailer_error(
                f"The trailing headers {', '.join(missing)} declared in x-amz-trailer did "
                "not arrive. Send every declared trailer after the final chunk."
            )
        undeclared = sorted(trailers.keys() - self._declared_trailers)
        if undeclared:
            raise _trailer_error(
                f"The trailing headers {', '.join(undeclared)} are not declared in "
                "x-amz-trailer. Declare them in that header, or leave them out."
            )

    def _check_length_budget(self, size_bytes: int) -> None:
        """Raise before yielding a chunk that would exceed x-amz-decoded-content-length."""
        declared = self._declared_length_bytes
        if declared is not None and self.decoded_length_bytes + size_bytes > declared:
            raise auth_error(
                INVALID_ARGUMENT,
                f"The aws-chunked body decodes to more than the {declared} bytes declared in "
                "x-amz-decoded-content-length. Send the payload's exact length in that header.",
            )

    def _check_decoded_length(self) -> None:
        declared = self._declared_length_bytes
        if declared is not None and self.decoded_length_bytes != declared:
            raise incomplete_body(
                f"The aws-chunked body decodes to {self.decoded_length_bytes} bytes, but "
                f"x-amz-decoded-content-length is {declared}."
            )


class _ChunkSigner:
    """The chain of chunk signatures that starts at the request's seed signature."""

    def __init__(self, signing_key: bytes, amz_date: str, scope: str, seed_signature: str):
        self._signing_key = signing_key
        self._amz_date = amz_date
        self._scope = scope
        self._previous_signature = seed_signature

    @classmethod
    def from_auth(cls, auth: AuthResult) -> _ChunkSigner:
        if (
            auth.signing_key is None
            or auth.amz_date is None
            or auth.scope is None
            or auth.seed_signature is None
        ):
            raise ValueError("signed aws-chunked bodies need the signing fields of AuthResult")
        return cls(auth.signing_key, auth.amz_date, auth.scope, auth.seed_signature)

    def check_chunk(self, chunk_sha256_hex: str, provided: str, chunk_number: int) -> None:
        string_to_sign = signing.chunk_string_to_sign(
            self._amz_date, self._scope, self._previous_signature, chunk_sha256_hex
        )
        self._check(string_to_sign, provided, f"chunk {chunk_number}")

    def check_trailer(self, trailers: Mapping[str, str], provided: str) -> None:
        # NOTE: the AWS examples sign a single trailer. With several, this signs them
        # sorted by name, as the AWS SDK for .NET does, which may differ from other clients.
        canonical = "".join(f"{name}:{value}\n" for name, value in sorted(trailers.items()))
        string_to_sign = signing.trailer_string_to_sign(
            self._amz_date,
            self._scope,
            self._previous_signature,
            signing.sha256_hex(canonical.encode("utf-8")),
        )
        self._check(string_to_sign, provided, "the trailing headers")

    def _check(self, string_to_sign: str, provided: str, signed_part: str) -> None:
        expected = signing.sign(self._signing_key, string_to_sign)
        if not signing.signatures_equal(expected, provided):
            raise auth_error(
                SIGNATURE_DOES_NOT_MATCH,
                f"The signature of {signed_part} does not match the signature we calculated from "
                "the previous signature and the data. Check your key and signing method, "
                "and send the chunks unchanged and in order.",
                string_to_sign=string_to_sign,
            )
        self._previous_signature = expected


def open_payload_reader(
    source: ByteSource,
    auth: AuthResult,
    headers: HeaderMap,
    *,
    max_chunk_size_bytes: int = DEFAULT_MAX_CHUNK_SIZE_BYTES,
) -> PayloadReader:
    """Return the reader for `auth.payload_mode`, configured from the request headers.

    Plain bodies use Content-Length. aws-chunked bodies use
    x-amz-decoded-content-length and x-amz-trailer. A malformed length header raises
    S3AuthError InvalidArgument.
    """
    if not auth.payload_mode.is_aws_chunked:
        return PlainPayloadReader(
            source,
            expected_sha256=auth.payload_sha256,
            content_length_bytes=_length_header(headers, "content-length"),
        )
    return AwsChunkedDecoder(
        source,
        auth,
        decoded_content_length_bytes=_length_header(headers, "x-amz-decoded-content-length"),
        declared_trailers=parse_trailer_names(headers.get("x-amz-trailer", "")),
        max_chunk_size_bytes=max_chunk_size_bytes,
    )


def parse_trailer_names(header_value: str) -> list[str]:
    """Split an x-amz-trailer value ("x-amz-checksum-crc32, other") into lowercase names."""
    return [name.strip().lower() for name in header_value.split(",") if name.strip()]


def _length_header(headers: HeaderMap, name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    value = value.strip()
    if not value.isascii() or not value.isdigit():
        raise auth_error(
            INVALID_ARGUMENT,
            f"The header {name} is {_shorten(value.encode())}, but must be a whole number of "
            "bytes.",
        )
    return int(value)


def _chunk_signature(extensions: bytes) -> str | None:
    """Return the chunk-signature value among ";"-separated chunk extensions, if any.

    Other extensions are ignored, because RFC 9112 requires recipients to ignore
    unrecognized chunk extensions.
    """
    for extension in extensions.split(b";"):
        name, _, value = extension.strip(b" \t").partition(b"=")
        if name == b"chunk-signature":
            return value.decode("ascii", "replace")
    return None


def _parse_trailer_lines(lines: Sequence[bytes]) -> tuple[dict[str, str], str | None]:
    """Split trailer lines into the trailing headers and the x-amz-trailer-signature value."""
    trailers: dict[str, str] = {}
    trailer_signature: str | None = None
    for line in lines:
        if trailer_signature is not None:
            raise _trailer_error(
                f"The trailer line {_shorten(line)} follows the trailer signature."
            )
        name_bytes, colon, value_bytes = line.partition(b":")
        name = name_bytes.decode("latin-1").strip(" \t").lower()
        if not colon or not _TRAILER_NAME_PATTERN.fullmatch(name):
            raise _trailer_error(f"The trailer line {_shorten(line)} is not 'name:value'.")
        value = value_bytes.decode("latin-1").strip(" \t")
        if name == TRAILER_SIGNATURE_NAME:
            trailer_signature = value
        elif name in trailers:
            raise _trailer_error(f"The trailing header {name} appears more than once.")
        else:
            trailers[name] = value
    return trailers, trailer_signature


def _trailer_error(detail: str) -> S3AuthError:
    return auth_error(
        MALFORMED_TRAILER_ERROR,
        "The request contained trailing data that was not well-formed or did not conform "
        f"to our published schema. {detail}",
    )


def _shorten(value: bytes, max_bytes: int = 100) -> str:
    """Quote client bytes for an error message, cut to `max_bytes`."""
    if len(value) > max_bytes:
        return repr(value[:max_bytes]) + "..."
    return repr(value)
