"""Building HTTP responses: XML documents and S3 error bodies."""

from __future__ import annotations

import base64
import os
import xml.etree.ElementTree as ET

from aiohttp import web

from store.s3.api_errors import S3Error
from store.s3.xmlcodec import XML_CONTENT_TYPE, add, serialize


def new_request_id() -> str:
    return os.urandom(8).hex().upper()


def standard_headers(request_id: str) -> dict[str, str]:
    """Return the headers every response carries."""
    return {
        "x-amz-request-id": request_id,
        "x-amz-id-2": base64.b64encode(request_id.encode()).decode(),
        "Server": "store-s3",
    }


def xml_response(
    root: ET.Element, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status, body=serialize(root), content_type=XML_CONTENT_TYPE, headers=headers
    )


def error_response(
    error: S3Error, *, resource: str, request_id: str, with_body: bool
) -> web.Response:
    """Return the S3 error response; HEAD requests and 304 get the status without a body."""
    if not with_body or error.http_status == 304:
        return web.Response(status=error.http_status)
    root = ET.Element("Error")
    add(root, "Code", error.code)
    add(root, "Message", error.message)
    add(root, "Resource", resource)
    add(root, "RequestId", request_id)
    return web.Response(
        status=error.http_status, body=serialize(root), content_type=XML_CONTENT_TYPE
    )
