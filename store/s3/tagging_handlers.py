"""Put, Get and DeleteObjectTagging, and the same for buckets.

Changing an object's tags rewrites its metadata record in its shard, in place
(UpdateObjectMetadata): the data, ETag and Last-Modified stay. A bucket's tags are
one of its settings (UpdateBucketSettings), in the form of an object's.
"""

from __future__ import annotations

from aiohttp import web

from store.s3.access import authorize_bucket
from store.s3.api_errors import S3Error
from store.s3.body import RequestBody
from store.s3.bucket_handlers import bucket_info
from store.s3.context import RequestContext
from store.s3.object_handlers import verify_document_digests
from store.s3.object_reads import check_version
from store.s3.responses import xml_response
from store.s3.tags import (
    MAX_BUCKET_TAGS,
    TAGS_ENTRY,
    Tags,
    entry_value,
    parse_document_tags,
    stored_tags,
)
from store.s3.xmlcodec import MAX_REQUEST_XML_BYTES, add, new_document

# A Tagging document of 50 tags at S3's limits is under 120 KiB, even with every character
# a 4-byte one or escaped.
MAX_TAGGING_XML_BYTES = 256 * 1024
BUCKET_SETTING = "tagging"
assert MAX_TAGGING_XML_BYTES <= MAX_REQUEST_XML_BYTES


async def put_object_tagging(context: RequestContext) -> web.StreamResponse:
    await authorize_bucket(context.client, context.user, context.bucket)
    check_version(context.query)
    document = await RequestBody(context).read_all(MAX_TAGGING_XML_BYTES)
    verify_document_digests(context.headers, document)
    tags = parse_document_tags(document)
    # The update removes before it sets, so an empty TagSet leaves no entry.
    await context.client.update_system_metadata(
        context.bucket,
        context.key,
        set_entries={TAGS_ENTRY: entry_value(tags)} if tags else {},
        remove_entries=[TAGS_ENTRY],
    )
    return web.Response(status=200)


async def get_object_tagging(context: RequestContext) -> web.StreamResponse:
    await authorize_bucket(context.client, context.user, context.bucket)
    check_version(context.query)
    info = await context.client.stat(context.bucket, context.key)
    return _tagging_document(stored_tags(info.system_metadata))


def _tagging_document(tags: Tags) -> web.Response:
    root = new_document("Tagging")
    tag_set = add(root, "TagSet")
    for key, value in tags:
        tag = add(tag_set, "Tag")
        add(tag, "Key", key)
        add(tag, "Value", value)
    return xml_response(root)


async def delete_object_tagging(context: RequestContext) -> web.StreamResponse:
    await authorize_bucket(context.client, context.user, context.bucket)
    check_version(context.query)
    await context.client.update_system_metadata(
        context.bucket, context.key, remove_entries=[TAGS_ENTRY]
    )
    return web.Response(status=204)


async def put_bucket_tagging(context: RequestContext) -> web.StreamResponse:
    await bucket_info(context)
    document = await RequestBody(context).read_all(MAX_TAGGING_XML_BYTES)
    verify_document_digests(context.headers, document)
    tags = parse_document_tags(document, MAX_BUCKET_TAGS)
    await context.client.update_bucket_settings(
        context.bucket,
        set_entries={BUCKET_SETTING: entry_value(tags)} if tags else {},
        remove_entries=[BUCKET_SETTING],
    )
    return web.Response(status=204)


async def get_bucket_tagging(context: RequestContext) -> web.StreamResponse:
    info = await bucket_info(context)
    tags = stored_tags(info.settings, BUCKET_SETTING)
    if not tags:
        raise S3Error("NoSuchTagSet", "The TagSet does not exist", http_status=404)
    return _tagging_document(tags)


async def delete_bucket_tagging(context: RequestContext) -> web.StreamResponse:
    await bucket_info(context)
    await context.client.update_bucket_settings(context.bucket, remove_entries=[BUCKET_SETTING])
    return web.Response(status=204)
