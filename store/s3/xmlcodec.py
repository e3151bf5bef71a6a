"""S3 XML documents: building response bodies and parsing request bodies.

Responses use the S3 namespace, as Amazon S3 sends them. Request bodies are parsed
without their namespace, because clients send them with or without it. A document
type declaration is rejected, so no entity is ever expanded.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from store.s3.api_errors import S3Error

S3_NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
XML_CONTENT_TYPE = "application/xml"
# The largest request document read: a CompleteMultipartUpload of 10,000 parts with
# checksums, or a DeleteObjects of 1,000 keys of 1,024 bytes, stays well below it.
MAX_REQUEST_XML_BYTES = 4 * 1024 * 1024

Value = str | int | bool | None


def new_document(root_name: str) -> ET.Element:
    return ET.Element(root_name, xmlns=S3_NAMESPACE)


def add(parent: ET.Element, name: str, value: Value = None) -> ET.Element:
    """Append a child element; a bool becomes "true"/"false", None an empty element."""
    child = ET.SubElement(parent, name)
    if isinstance(value, bool):
        child.text = "true" if value else "false"
    elif value is not None:
        child.text = str(value)
    return child


def add_fields(parent: ET.Element, fields: Iterable[tuple[str, Value]]) -> None:
    """Append one child per (name, value) pair, skipping pairs whose value is None."""
    for name, value in fields:
        if value is not None:
            add(parent, name, value)


def serialize(root: ET.Element) -> bytes:
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


# Text rendering, for documents of thousands of elements (a listing page), where
# building and serializing an ElementTree costs more than the rest of the request.


def text_element(name: str, value: Value = None) -> str:
    """Render one element as `add` and `serialize` would: the text escaped as ElementTree does."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        return f"<{name} />"
    else:
        text = escape(str(value))
    return f"<{name}>{text}</{name}>"


def text_document(root_name: str, children: Iterable[str]) -> bytes:
    """Join rendered children into a document, with the declaration `serialize` writes."""
    head = f"<?xml version='1.0' encoding='utf-8'?>\n<{root_name} xmlns=\"{S3_NAMESPACE}\">"
    text = head + "".join(children) + f"</{root_name}>"
    return text.encode("utf-8", "xmlcharrefreplace")


def iso_time(moment: datetime) -> str:
    """Format a time as S3 XML does: 2009-10-12T17:50:30.000Z."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def parse_document(body: bytes, root_name: str) -> ET.Element:
    """Parse a request document whose root must be `root_name`; raise MalformedXML."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise _malformed(f"the {root_name} document must not contain a DTD or entities")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as error:
        raise _malformed(f"the {root_name} document is not well-formed XML: {error}") from None
    _strip_namespaces(root)
    if root.tag != root_name:
        raise _malformed(f"the document root is <{root.tag}>, expected <{root_name}>")
    return root


def child_text(element: ET.Element, name: str) -> str | None:
    """Return the text of the first child named `name` ("" when empty), or None."""
    child = element.find(name)
    if child is None:
        return None
    return child.text or ""


def _strip_namespaces(root: ET.Element) -> None:
    for element in root.iter():
        if isinstance(element.tag, str) and element.tag.startswith("{"):
            element.tag = element.tag.split("}", 1)[1]


def _malformed(detail: str) -> S3Error:
    return S3Error(
        "MalformedXML",
        "The XML you provided was not well-formed or did not validate against our "
        f"published schema: {detail}",
    )
