"""A trivial in-memory S3 server: the ceiling that the boto3 client alone allows.

    .venv/bin/python bench/s3_null_server.py [--listen 127.0.0.1:18380] [--loop uvloop]

It serves just the requests that s3bench.py sends, with no authentication,
no durability and no MD5 of PutObject bodies, so nearly all of the CPU time of a
benchmark run against it is the client's. Run s3bench.py against it to see how
fast boto3 can go on this machine; a real server can only be slower.

Objects are kept in memory because s3bench.py checks the SHA-256 of every GET and
stops the run on a mismatch, so a fixed GET body cannot stand in for them. Keeping
a body costs one join of its pieces.

What each request gets:
- PutObject: 200 and a fixed ETag. s3bench.py notes "etag!=md5" for it and goes on.
- UploadPart: 200 and the MD5 ETag, computed in a worker thread, because s3bench.py
  checks it. CompleteMultipartUpload joins the parts.
- GetObject (with a Range or without), HeadObject, DeleteObject, DeleteObjects.
- ListObjectsV2 with Prefix, Delimiter, MaxKeys, ContinuationToken and StartAfter.
- CreateBucket, HeadBucket, DeleteBucket, and an empty ListMultipartUploads.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import hashlib
import re
import uuid
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote
from xml.sax.saxutils import escape

from aiohttp import web

# The ETag of every PutObject: the server computes no MD5 for them.
PUT_ETAG = '"00000000000000000000000000000000"'
# Every listed key carries a LastModified, as real servers send one, because parsing
# it is a large part of the client's cost of a listing.
LAST_MODIFIED = "2026-01-01T00:00:00.000Z"
XML_HEADERS = {"Content-Type": "application/xml"}
RANGE_PATTERN = re.compile(r"bytes=(\d+)-(\d*)$")
XML_NAMESPACE = "{http://s3.amazonaws.com/doc/2006-03-01/}"


@dataclass
class Bucket:
    objects: dict[str, bytes] = field(default_factory=dict)
    # The object keys in order, for listing; None after a change until the next listing.
    sorted_keys: list[str] | None = None
    # Upload id -> part number -> (body, MD5 digest).
    uploads: dict[str, dict[int, tuple[bytes, bytes]]] = field(default_factory=dict)

    def put(self, key: str, body: bytes) -> None:
        if key not in self.objects:
            self.sorted_keys = None
        self.objects[key] = body

    def delete(self, key: str) -> None:
        if self.objects.pop(key, None) is not None:
            self.sorted_keys = None

    def keys(self) -> list[str]:
        if self.sorted_keys is None:
            self.sorted_keys = sorted(self.objects)
        return self.sorted_keys


class NullS3:
    """The request handler and the buckets it keeps in memory."""

    def __init__(self) -> None:
        self.buckets: dict[str, Bucket] = {}

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.headers.get("Expect", "").lower() == "100-continue":
            # botocore waits up to a second for this before it sends a PUT body.
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
        bucket_name, _, key = request.path.lstrip("/").partition("/")
        if not bucket_name:
            return web.Response(status=501)
        if not key:
            return await self.bucket_request(request, bucket_name)
        bucket = self.buckets.get(bucket_name)
        if bucket is None:
            return error(404, "NoSuchBucket")
        return await self.object_request(request, bucket, key)

    async def bucket_request(self, request: web.BaseRequest, name: str) -> web.StreamResponse:
        if request.method == "PUT":
            self.buckets.setdefault(name, Bucket())
            return web.Response(status=200)
        bucket = self.buckets.get(name)
        if bucket is None:
            return error(404, "NoSuchBucket")
        if request.method == "HEAD":
            return web.Response(status=200)
        if request.method == "DELETE":
            del self.buckets[name]
            return web.Response(status=204)
        if request.method == "POST" and "delete" in request.query:
            return delete_objects(bucket, await read_body(request))
        if request.method == "GET" and "uploads" in request.query:
            return xml("<ListMultipartUploadsResult></ListMultipartUploadsResult>")
        if request.method == "GET":
            return list_objects_v2(bucket, request.query)
        return web.Response(status=501)

    async def object_request(
        self, request: web.BaseRequest, bucket: Bucket, key: str
    ) -> web.StreamResponse:
        query = request.query
        if "uploadId" in query:
            return await multipart_request(request, bucket, key, query["uploadId"])
        if request.method == "PUT":
            bucket.put(key, await read_body(request))
            return web.Response(status=200, headers={"ETag": PUT_ETAG})
        if request.method == "POST" and "uploads" in query:
            upload_id = uuid.uuid4().hex
            bucket.uploads[upload_id] = {}
            return xml(
                "<InitiateMultipartUploadResult>"
                f"<Key>{escape(key)}</Key><UploadId>{upload_id}</UploadId>"
                "</InitiateMultipartUploadResult>"
            )
        if request.method == "DELETE":
            bucket.delete(key)
            return web.Response(status=204)
        body = bucket.objects.get(key)
        if body is None:
            return error(404, "NoSuchKey")
        if request.method == "HEAD":
            return web.Response(
                status=200, headers={"ETag": PUT_ETAG, "Content-Length": str(len(body))}
            )
        if request.method == "GET":
            return get_object(body, request.headers.get("Range"))
        return web.Response(status=501)


async def read_body(request: web.BaseRequest) -> bytes:
    """Return the whole request body, with no size limit (request.read() stops at 1 MiB)."""
    return await request.content.read()


def get_object(body: bytes, range_header: str | None) -> web.Response:
    if range_header is None:
        return web.Response(body=body, headers={"ETag": PUT_ETAG})
    match = RANGE_PATTERN.match(range_header)
    if match is None:
        return error(416, "InvalidRange")
    first = int(match.group(1))
    last = min(int(match.group(2)) if match.group(2) else len(body) - 1, len(body) - 1)
    headers = {"ETag": PUT_ETAG, "Content-Range": f"bytes {first}-{last}/{len(body)}"}
    return web.Response(status=206, body=body[first : last + 1], headers=headers)


async def multipart_request(
    request: web.BaseRequest, bucket: Bucket, key: str, upload_id: str
) -> web.StreamResponse:
    parts = bucket.uploads.get(upload_id)
    if parts is None:
        return error(404, "NoSuchUpload")
    if request.method == "PUT":
        body = await read_body(request)
        md5 = await asyncio.to_thread(lambda: hashlib.md5(body).digest())
        parts[int(request.query["partNumber"])] = (body, md5)
        return web.Response(status=200, headers={"ETag": f'"{md5.hex()}"'})
    if request.method == "DELETE":
        del bucket.uploads[upload_id]
        return web.Response(status=204)
    if request.method == "POST":
        await read_body(request)
        del bucket.uploads[upload_id]
        numbers = sorted(parts)
        bucket.put(key, b"".join(parts[number][0] for number in numbers))
        md5s = b"".join(parts[number][1] for number in numbers)
        etag = f'"{hashlib.md5(md5s).hexdigest()}-{len(numbers)}"'
        return xml(
            "<CompleteMultipartUploadResult>"
            f"<Key>{escape(key)}</Key><ETag>{etag}</ETag>"
            "</CompleteMultipartUploadResult>"
        )
    return web.Response(status=501)


@dataclass
class Page:
    keys: list[str] = field(default_factory=list)
    common_prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    # The last key or common prefix listed: the next page starts after it.
    last: str = ""


def select_page(bucket: Bucket, prefix: str, delimiter: str, max_keys: int, after: str) -> Page:
    keys = bucket.keys()
    index = bisect.bisect_right(keys, after) if after else bisect.bisect_left(keys, prefix)
    page = Page()
    while index < len(keys) and len(page.keys) + len(page.common_prefixes) < max_keys:
        key = keys[index]
        if not key.startswith(prefix):
            break
        cut = key.find(delimiter, len(prefix)) if delimiter else -1
        if cut < 0:
            page.keys.append(key)
            page.last = key
            index += 1
            continue
        common = key[: cut + len(delimiter)]
        page.common_prefixes.append(common)
        # Skip every key under this common prefix.
        page.last = common + "\U0010ffff"
        index = bisect.bisect_left(keys, page.last)
    page.truncated = index < len(keys) and keys[index].startswith(prefix)
    return page


def list_objects_v2(bucket: Bucket, query: Mapping[str, str]) -> web.Response:
    """Build the ListObjectsV2 reply; the continuation token is the previous page's last key."""
    prefix = query.get("prefix", "")
    max_keys = int(query.get("max-keys", "1000"))
    after = query.get("continuation-token") or query.get("start-after") or ""
    page = select_page(bucket, prefix, query.get("delimiter", ""), max_keys, after)

    url_encode = query.get("encoding-type") == "url"
    contents = []
    for key in page.keys:
        name = quote(key, safe="/") if url_encode else escape(key)
        contents.append(
            f"<Contents><Key>{name}</Key><LastModified>{LAST_MODIFIED}</LastModified>"
            f"<ETag>{PUT_ETAG}</ETag><Size>{len(bucket.objects[key])}</Size>"
            "<StorageClass>STANDARD</StorageClass></Contents>"
        )
    for common in page.common_prefixes:
        contents.append(f"<CommonPrefixes><Prefix>{escape(common)}</Prefix></CommonPrefixes>")
    token = ""
    if page.truncated:
        token = f"<NextContinuationToken>{escape(page.last)}</NextContinuationToken>"
    encoding = "<EncodingType>url</EncodingType>" if url_encode else ""
    return xml(
        f"<ListBucketResult><Prefix>{escape(prefix)}</Prefix>"
        f"<KeyCount>{len(page.keys) + len(page.common_prefixes)}</KeyCount>"
        f"<MaxKeys>{max_keys}</MaxKeys>{encoding}"
        f"<IsTruncated>{'true' if page.truncated else 'false'}</IsTruncated>{token}"
        f"{''.join(contents)}</ListBucketResult>"
    )


def delete_objects(bucket: Bucket, document: bytes) -> web.Response:
    root = ElementTree.fromstring(document)
    for element in root.iter():
        if element.tag in ("Key", XML_NAMESPACE + "Key") and element.text:
            bucket.delete(element.text)
    return xml("<DeleteResult></DeleteResult>")


def xml(text: str) -> web.Response:
    return web.Response(body=text.encode(), headers=XML_HEADERS)


def error(status: int, code: str) -> web.Response:
    return web.Response(
        status=status, body=f"<Error><Code>{code}</Code></Error>".encode(), headers=XML_HEADERS
    )


async def serve(host: str, port: int) -> None:
    server = web.Server(NullS3().handle, access_log=None)
    runner = web.ServerRunner(server)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    print(f"null S3 server listening on http://{host}:{port}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", default="127.0.0.1:18380", help="HOST:PORT to serve on")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args()
    host, port = args.listen.rsplit(":", 1)
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(serve(host, int(port)))
    else:
        asyncio.run(serve(host, int(port)))


if __name__ == "__main__":
    main()
