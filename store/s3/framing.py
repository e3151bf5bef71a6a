"""A bounded, buffered reader of CRLF lines and exact byte counts over an async byte source."""

from __future__ import annotations

from typing import Protocol

from store.s3.errors import INCOMPLETE_BODY, INVALID_ARGUMENT, S3AuthError, auth_error

READ_SIZE_BYTES = 64 * 1024


class ByteSource(Protocol):
    """Anything with `async read(n)` that returns at most n bytes, and b"" only at the end.

    aiohttp's `request.content` (a StreamReader) and asyncio.StreamReader both qualify.
    The source must end where the body ends, as aiohttp's does for a request with
    Content-Length or Transfer-Encoding: chunked.
    """

    async def read(self, n: int, /) -> bytes: ...


class BufferedSource:
    """Read CRLF-terminated lines and byte runs from a ByteSource, never holding more than
    one line plus one read in memory.

    Every method either consumes input or raises at the end of the source, so a caller's
    loop over them ends when the input does.
    """

    def __init__(self, source: ByteSource, read_size_bytes: int = READ_SIZE_BYTES) -> None:
        self._source = source
        self._read_size_bytes = read_size_bytes
        self._buffer = bytearray()
        self._at_end = False

    async def read_line(self, max_line_bytes: int, location: str) -> bytes | None:
        """Return the next line without its CRLF, or None when the source ended before it.

        A line longer than `max_line_bytes` (CRLF included), a bare LF or a source that
        ends inside the line raises S3AuthError. `location` names the line in messages.
        """
        searched_bytes = 0
        while True:
            newline_at = self._buffer.find(b"\n", searched_bytes)
            if newline_at >= 0:
                break
            searched_bytes = len(self._buffer)
            if searched_bytes > max_line_bytes:
                raise malformed_body(f"The {location} is longer than {max_line_bytes} bytes.")
            if not await self._fill():
                if not self._buffer:
                    return None
                raise incomplete_body(f"The body ended inside the {location}.")
        if newline_at + 1 > max_line_bytes:
            raise malformed_body(f"The {location} is longer than {max_line_bytes} bytes.")
        if newline_at == 0 or self._buffer[newline_at - 1] != ord("\r"):
            raise malformed_body(f"The {location} ends with LF instead of CRLF.")
        line = bytes(self._buffer[: newline_at - 1])
        del self._buffer[: newline_at + 1]
        return line

    async def read_some(self, max_bytes: int, location: str) -> bytes:
        """Return between 1 and `max_bytes` bytes, raising IncompleteBody at the end."""
        if self._buffer:
            piece = bytes(self._buffer[:max_bytes])
            del self._buffer[:max_bytes]
            return piece
        if not self._at_end:
            piece = await self._source.read(min(max_bytes, self._read_size_bytes))
            if piece:
                return piece
            self._at_end = True
        raise incomplete_body(f"The body ended inside the {location}.")

    async def expect_crlf(self, location: str) -> None:
        """Consume a CRLF, raising if the source ends or sends something else."""
        while len(self._buffer) < 2:
            if not await self._fill():
                raise incomplete_body(f"The body ended before the CRLF after the {location}.")
        if self._buffer[:2] != b"\r\n":
            raise malformed_body(f"The {location} is not followed by CRLF.")
        del self._buffer[:2]

    async def at_end(self) -> bool:
        """Return whether the source has no more bytes, reading at most once to find out."""
        if self._buffer:
            return False
        return not await self._fill()

    async def _fill(self) -> bool:
        """Append one read to the buffer; return False once the source has ended."""
        if self._at_end:
            return False
        data = await self._source.read(self._read_size_bytes)
        if not data:
            self._at_end = True
            return False
        self._buffer += data
        return True


def incomplete_body(detail: str) -> S3AuthError:
    """Build the IncompleteBody error for a body that ended early, at the place `detail` names."""
    return auth_error(
        INCOMPLETE_BODY,
        f"You did not provide the number of bytes the request declared. {detail} "
        "Send the whole body.",
    )


def malformed_body(detail: str) -> S3AuthError:
    """Build the InvalidArgument error for broken aws-chunked framing, described by `detail`."""
    return auth_error(
        INVALID_ARGUMENT,
        f"The aws-chunked body is malformed. {detail} Encode the body as the "
        "x-amz-content-sha256 header declares.",
    )
