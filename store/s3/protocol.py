"""The HTTP server of the gateway: aiohttp's low-level server with S3 error bodies.

aiohttp responds to requests it cannot parse (a header line over 8190 bytes, more
than 128 headers, broken framing) before any handler runs, with a plain-text
body. Here those responses are S3 XML errors instead, so every client sees a
parseable error, and the connection is closed as aiohttp always does then.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler

from store.s3.api_errors import S3Error
from store.s3.responses import error_response, new_request_id, standard_headers

log = logging.getLogger("store.s3")

# aiohttp's limits on request heads, and the ones the gateway uses: S3 documents an
# 8 KB limit for the request header of a PUT.
MAX_LINE_BYTES = 8190
MAX_FIELD_BYTES = 8190
MAX_HEADERS = 128
# Bytes of a request body that aiohttp buffers per connection before it stops reading
# the socket (it stops at twice this). Larger than aiohttp's 256 KiB, so body pieces
# come in larger runs and cost fewer passes through the Python code per byte.
READ_BUFFER_BYTES = 1024 * 1024


class S3RequestHandler(RequestHandler):
    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Return an S3 XML error for a request aiohttp could not parse or serve."""
        if request.writer.output_size > 0:
            raise ConnectionError("the response is partly sent; the connection is closed")
        error = _error_for(status, exc, message)
        if error.http_status >= 500:
            log.error("request from %s failed: %s", request.remote, message, exc_info=exc)
        else:
            log.info("bad request from %s: %s %s", request.remote, error.code, error.message)
        request_id = new_request_id()
        response = error_response(
            error, resource=request.path, request_id=request_id, with_body=True
        )
        response.headers.update(standard_headers(request_id))
        response.force_close()
        return response


def _error_for(status: int, exc: BaseException | None, message: str | None) -> S3Error:
    text = message or (str(exc) if exc else "")
    if isinstance(exc, LineTooLong) or "too many headers" in text.lower():
        return S3Error(
            "RequestHeaderSectionTooLarge",
            f"Your request header section exceeds the maximum allowed size ({text}); send "
            f"fewer or shorter headers (at most {MAX_HEADERS} headers of {MAX_FIELD_BYTES} bytes)",
        )
    if status == 400:
        return S3Error("InvalidRequest", f"The HTTP request could not be parsed: {text}")
    if status == 504 or status == 503:
        return S3Error("SlowDown", "Please reduce your request rate.")
    return S3Error("InternalError", "We encountered an internal error; please try again.")


class S3Server(web.Server):
    """aiohttp's low-level server, creating S3RequestHandler connections."""

    def __init__(
        self, handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]], **kwargs: Any
    ) -> None:
        super().__init__(
            handler,
            max_line_size=MAX_LINE_BYTES,
            max_field_size=MAX_FIELD_BYTES,
            max_headers=MAX_HEADERS,
            read_bufsize=READ_BUFFER_BYTES,
            access_log=None,
            # Content-Encoding describes the object (gzip stays gzip), so bodies pass as sent.
            auto_decompress=False,
            **kwargs,
        )

    def __call__(self) -> RequestHandler:
        return S3RequestHandler(self, loop=self._loop, **self._kwargs)
