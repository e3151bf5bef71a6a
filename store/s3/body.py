"""Request bodies: decoded and checked while they stream, never held whole in memory.

The payload reader of store.s3.chunked follows the payload mode the signature
declared (a signed SHA-256, UNSIGNED-PAYLOAD or one of the aws-chunked modes) and
raises when the body breaks its framing, its signatures or its length. The SDK
reads the pieces in chunk-sized runs, so a PUT keeps about `window_chunks` chunks
of the body in memory, whatever its size.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import HttpVersion11, web

from store.limits import GIB
from store.s3.api_errors import S3Error
from store.s3.checksums import ChecksumRequest
from store.s3.chunked import PayloadReader, open_payload_reader
from store.s3.context import RequestContext

# The largest object a single PUT or a part may carry, as in S3.
MAX_PUT_BYTES = 5 * GIB


class RequestBody:
    """The decoded body of one request."""

    def __init__(self, context: RequestContext) -> None:
        assert context.auth is not None, "the request must be authenticated first"
        self._context = context
        self._mode = context.auth.payload_mode
        self._reader: PayloadReader = open_payload_reader(
            ContinueOnFirstRead(context.request), context.auth, context.headers
        )

    def declared_length_bytes(self) -> int | None:
        """Return the decoded length the request declared, or None when it declared none."""
        name = "x-amz-decoded-content-length" if self._mode.is_aws_chunked else "content-length"
        value = self._context.headers.get(name)
        return int(value) if value is not None and value.strip().isdigit() else None

    def require_length(self, max_bytes: int = MAX_PUT_BYTES) -> int | None:
        """Return the declared length; raise MissingContentLength or EntityTooLarge.

        A body sent with Transfer-Encoding: chunked may declare no length, as Ceph
        RGW allows, and gets None; `pieces` enforces `max_bytes` as it streams.
        """
        length = self.declared_length_bytes()
        if length is None and self._chunked_transfer():
            return None
        if length is None:
            header = (
                "x-amz-decoded-content-length" if self._mode.is_aws_chunked else "Content-Length"
            )
            raise S3Error(
                "MissingContentLength",
                f"You must provide the {header} HTTP header with the length of the content",
            )
        check_size(length, max_bytes)
        return length

    def _chunked_transfer(self) -> bool:
        """Tell whether plain HTTP chunked transfer coding frames the body, without aws-chunked."""
        coding = self._context.headers.get("Transfer-Encoding", "")
        return not self._mode.is_aws_chunked and "chunked" in coding.lower()

    async def pieces(
        self, checksums: ChecksumRequest | None = None, max_bytes: int = MAX_PUT_BYTES
    ) -> AsyncIterator[bytes]:
        """Yield the decoded body; at the end, copy a trailing checksum into `checksums`."""
        received_bytes = 0
        async for piece in self._reader:
            received_bytes += len(piece)
            check_size(received_bytes, max_bytes)
            yield piece
        if checksums is not None:
            checksums.fill_from_trailers(self._reader.trailers)

    async def read_all(self, max_bytes: int) -> bytes:
        """Return the whole decoded body of a small request (an XML document)."""
        parts: list[bytes] = []
        received_bytes = 0
        async for piece in self._reader:
            received_bytes += len(piece)
            if received_bytes > max_bytes:
                raise S3Error(
                    "MalformedXML" if max_bytes < MAX_PUT_BYTES else "EntityTooLarge",
                    f"the request body is longer than {max_bytes} bytes; send a smaller document",
                )
            parts.append(piece)
        return b"".join(parts)


class ContinueOnFirstRead:
    """The request's body stream, sending "100 Continue" before the first read.

    A client that sent Expect: 100-continue waits for it before it sends the body, so
    a request rejected before its body is read (AccessDenied, NoSuchBucket) costs no
    upload.
    """

    def __init__(self, request: web.BaseRequest) -> None:
        self._request = request

    async def read(self, n: int) -> bytes:
        await send_continue(self._request)
        return await self._request.content.read(n)


# The request's key that records whether "100 Continue" went out.
_CONTINUED_KEY = "store.s3.continued"


def awaits_continue(request: web.BaseRequest) -> bool:
    """Tell whether the client waits for "100 Continue" and has not had it yet."""
    if request.get(_CONTINUED_KEY) or request.version != HttpVersion11:
        return False
    return request.headers.get("Expect", "").lower() == "100-continue"


async def send_continue(request: web.BaseRequest) -> None:
    """Send the interim "100 Continue" response once, if the client requested it."""
    if not awaits_continue(request):
        return
    request[_CONTINUED_KEY] = True
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    # The 100 response is not part of the final response's size.
    request.writer.output_size = 0


def check_size(size_bytes: int, max_bytes: int = MAX_PUT_BYTES) -> None:
    if size_bytes > max_bytes:
        raise S3Error(
            "EntityTooLarge",
            f"Your proposed upload of {size_bytes} bytes exceeds the maximum allowed object "
            f"size of {max_bytes} bytes; use a multipart upload",
        )
