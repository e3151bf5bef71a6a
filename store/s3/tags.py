"""Object tag sets: their limits, the x-amz-tagging header and the Tagging document.

An object's tags are one entry of its system metadata, TAGS_ENTRY, whose value is
the URL-encoded form of the x-amz-tagging header with the tags sorted by key. An
object without tags has no entry, and the entry is never sent as a header.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl, quote, urlencode

from store.s3.api_errors import S3Error
from store.s3.xmlcodec import child_text, parse_document

TAGS_ENTRY = "x-amz-tagging"
TAGGING_HEADER = "x-amz-tagging"
TAGGING_COUNT_HEADER = "x-amz-tagging-count"
TAGGING_DIRECTIVE_HEADER = "x-amz-tagging-directive"
# Amazon S3's limits for object and bucket tags.
MAX_OBJECT_TAGS = 10
MAX_BUCKET_TAGS = 50
MAX_KEY_CHARS = 128
MAX_VALUE_CHARS = 256

Tags = list[tuple[str, str]]


def parse_header(value: str) -> Tags:
    """Return the tags of an x-amz-tagging header ("k1=v1&k2"), checked and sorted by key."""
    # A key without "=" is a tag with an empty value, as S3 reads it.
    return checked(parse_qsl(value, keep_blank_values=True))


def parse_document_tags(document: bytes, max_tags: int = MAX_OBJECT_TAGS) -> Tags:
    """Return the tags of a Tagging document (Put*Tagging), checked and sorted by key."""
    root = parse_document(document, "Tagging")
    tag_set = root.find("TagSet")
    if tag_set is None:
        raise S3Error("MalformedXML", "The Tagging document has no TagSet; send <Tagging><TagSet>")
    pairs = []
    for tag in tag_set.findall("Tag"):
        key = child_text(tag, "Key")
        if key is None:
            raise S3Error(
                "MalformedXML", "A Tag of the Tagging document has no Key; give each Tag one"
            )
        pairs.append((key, child_text(tag, "Value") or ""))
    return checked(pairs, max_tags)


def checked(pairs: Tags, max_tags: int = MAX_OBJECT_TAGS) -> Tags:
    """Return the tags sorted by key, or raise InvalidTag over S3's limits or for a repeated key."""
    if len(pairs) > max_tags:
        kind = "Object" if max_tags == MAX_OBJECT_TAGS else "Bucket"
        raise _invalid(f"{kind} tags cannot be greater than {max_tags}, got {len(pairs)}")
    seen: set[str] = set()
    for key, value in pairs:
        if not 1 <= len(key) <= MAX_KEY_CHARS:
            raise _invalid(
                f"The TagKey you have provided is invalid: {key[:40]!r} has {len(key)} "
                f"characters, use 1 to {MAX_KEY_CHARS}"
            )
        if len(value) > MAX_VALUE_CHARS:
            raise _invalid(
                f"The TagValue you have provided is invalid: the value of {key[:40]!r} has "
                f"{len(value)} characters, use at most {MAX_VALUE_CHARS}"
            )
        if key in seen:
            raise _invalid(f"Cannot provide multiple Tags with the same key {key[:40]!r}")
        seen.add(key)
    return sorted(pairs)


def entry_value(tags: Tags) -> str:
    """Return the stored form of a tag set."""
    return urlencode(tags, quote_via=quote)


def stored_tags(entries: Mapping[str, str], name: str = TAGS_ENTRY) -> Tags:
    """Return the tags stored under `name`: an object's system metadata or a bucket's settings."""
    value = entries.get(name, "")
    return parse_qsl(value, keep_blank_values=True) if value else []


def entry_of_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Return the system metadata entry for a write's x-amz-tagging header, if any."""
    value = headers.get(TAGGING_HEADER)
    tags = parse_header(value) if value is not None else []
    return {TAGS_ENTRY: entry_value(tags)} if tags else {}


def entry_of_copy(headers: Mapping[str, str], source: Mapping[str, str]) -> dict[str, str]:
    """Return the tags entry of a copy: the source's, or the request's with REPLACE."""
    directive = headers.get(TAGGING_DIRECTIVE_HEADER, "COPY").upper()
    if directive == "REPLACE":
        return entry_of_headers(headers)
    if directive != "COPY":
        raise S3Error(
            "InvalidArgument",
            f"Unknown tagging directive {directive[:40]!r}; use COPY or REPLACE",
        )
    value = source.get(TAGS_ENTRY)
    return {TAGS_ENTRY: value} if value else {}


def count_header(system_metadata: Mapping[str, str]) -> dict[str, str]:
    """Return x-amz-tagging-count for a GET or HEAD of an object with tags."""
    tags = stored_tags(system_metadata)
    return {TAGGING_COUNT_HEADER: str(len(tags))} if tags else {}


def _invalid(message: str) -> S3Error:
    return S3Error("InvalidTag", message)
