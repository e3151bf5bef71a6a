"""Cross-origin resource sharing (CORS): a bucket's rules, preflight requests and the
Access-Control-* headers of actual requests.

A web page on another origin may call the gateway from a browser (fetch, XHR) only
when the bucket's CORS rules allow it. Before a non-simple request, the browser sends
an unsigned OPTIONS preflight. The reply comes from the first rule that matches its
Origin, its Access-Control-Request-Method and every header of
Access-Control-Request-Headers. A signed request that carries Origin gets the
headers of the first rule that matches its origin and method.

The rules are a bucket setting ("cors"), kept as JSON in the bucket's record.
"""

from __future__ import annotations

import json
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from aiohttp import web

from store.errors import NoSuchBucket, StoreError
from store.s3.api_errors import S3Error
from store.s3.body import RequestBody
from store.s3.bucket_handlers import bucket_info
from store.s3.context import RequestContext
from store.s3.object_handlers import verify_document_digests
from store.s3.responses import xml_response
from store.s3.xmlcodec import add, child_text, new_document, parse_document

log = logging.getLogger(__name__)

SETTING = "cors"
# Amazon S3's limits for a CORS configuration.
MAX_RULES = 100
MAX_CONFIGURATION_BYTES = 64 * 1024
METHODS = ("GET", "PUT", "POST", "DELETE", "HEAD")
_VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"


@dataclass
class Rule:
    """One CORSRule: which origins may use which methods and headers."""

    origins: list[str]
    methods: list[str]
    headers: list[str] = field(default_factory=list)
    expose_headers: list[str] = field(default_factory=list)
    max_age_s: int | None = None
    rule_id: str | None = None

    def allows(self, origin: str, method: str, request_headers: list[str]) -> bool:
        return (
            method in self.methods
            and any(_matches(pattern, origin) for pattern in self.origins)
            and all(
                any(_matches(pattern.lower(), name.lower()) for pattern in self.headers)
                for name in request_headers
            )
        )

    def response_headers(self, origin: str) -> dict[str, str]:
        """Return the Access-Control-* headers that this rule gives a request from `origin`."""
        any_origin = self.origins == ["*"]
        headers = {
            "Access-Control-Allow-Origin": "*" if any_origin else origin,
            "Access-Control-Allow-Methods": ", ".join(self.methods),
            "Vary": _VARY,
        }
        if not any_origin:
            headers["Access-Control-Allow-Credentials"] = "true"
        if self.expose_headers:
            headers["Access-Control-Expose-Headers"] = ", ".join(self.expose_headers)
        if self.max_age_s is not None:
            headers["Access-Control-Max-Age"] = str(self.max_age_s)
        return headers


def _matches(pattern: str, value: str) -> bool:
    """Match a rule's origin or header, which may contain one '*' wildcard."""
    if "*" not in pattern:
        return pattern == value
    return (
        re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), value) is not None
    )


def parse_configuration(document: bytes) -> list[Rule]:
    """Parse a CORSConfiguration document, raising MalformedXML or InvalidRequest if wrong."""
    root = parse_document(document, "CORSConfiguration")
    elements = root.findall("CORSRule")
    if not 1 <= len(elements) <= MAX_RULES:
        raise S3Error(
            "MalformedXML",
            f"A CORSConfiguration has 1 to {MAX_RULES} CORSRule elements, not {len(elements)}",
        )
    return [_parse_rule(element) for element in elements]


def _parse_rule(element: ET.Element) -> Rule:
    def texts(name: str) -> list[str]:
        return [(child.text or "").strip() for child in element.findall(name)]

    rule = Rule(
        origins=texts("AllowedOrigin"),
        methods=texts("AllowedMethod"),
        headers=texts("AllowedHeader"),
        expose_headers=texts("ExposeHeader"),
        rule_id=child_text(element, "ID"),
    )
    if not rule.origins or not rule.methods:
        raise S3Error(
            "MalformedXML", "Each CORSRule needs at least one AllowedOrigin and one AllowedMethod"
        )
    for method in rule.methods:
        if method not in METHODS:
            raise S3Error(
                "InvalidRequest",
                f"Found unsupported HTTP method in CORS config. Unsupported method is "
                f"{method[:20]}; use {', '.join(METHODS)}",
            )
    for value in rule.origins + rule.headers:
        if value.count("*") > 1:
            raise S3Error(
                "InvalidRequest",
                f"AllowedOrigin and AllowedHeader may contain one wildcard '*': {value[:80]!r}",
            )
    max_age = child_text(element, "MaxAgeSeconds")
    if max_age is not None:
        if not max_age.strip().isdigit():
            raise S3Error("MalformedXML", f"MaxAgeSeconds {max_age[:20]!r} must be an integer")
        rule.max_age_s = int(max_age)
    return rule


def stored_rules(settings: Mapping[str, str]) -> list[Rule]:
    value = settings.get(SETTING)
    return [Rule(**entry) for entry in json.loads(value)] if value else []


def _encoded(rules: list[Rule]) -> str:
    return json.dumps([asdict(rule) for rule in rules], separators=(",", ":"))


def first_match(
    rules: list[Rule], origin: str, method: str, request_headers: list[str]
) -> Rule | None:
    return next((rule for rule in rules if rule.allows(origin, method, request_headers)), None)


# Handlers.


async def put_bucket_cors(context: RequestContext) -> web.StreamResponse:
    await bucket_info(context)
    document = await RequestBody(context).read_all(MAX_CONFIGURATION_BYTES)
    verify_document_digests(context.headers, document)
    rules = parse_configuration(document)
    await context.client.update_bucket_settings(
        context.bucket, set_entries={SETTING: _encoded(rules)}
    )
    return web.Response(status=200)


async def get_bucket_cors(context: RequestContext) -> web.StreamResponse:
    info = await bucket_info(context)
    rules = stored_rules(info.settings)
    if not rules:
        raise S3Error(
            "NoSuchCORSConfiguration", "The CORS configuration does not exist", http_status=404
        )
    root = new_document("CORSConfiguration")
    for rule in rules:
        element = add(root, "CORSRule")
        if rule.rule_id is not None:
            add(element, "ID", rule.rule_id)
        for tag, values in (
            ("AllowedHeader", rule.headers),
            ("AllowedMethod", rule.methods),
            ("AllowedOrigin", rule.origins),
            ("ExposeHeader", rule.expose_headers),
        ):
            for value in values:
                add(element, tag, value)
        if rule.max_age_s is not None:
            add(element, "MaxAgeSeconds", rule.max_age_s)
    return xml_response(root)


async def delete_bucket_cors(context: RequestContext) -> web.StreamResponse:
    await bucket_info(context)
    await context.client.update_bucket_settings(context.bucket, remove_entries=[SETTING])
    return web.Response(status=204)


async def preflight(context: RequestContext) -> web.StreamResponse:
    """Reply to an OPTIONS preflight from the bucket's rules (preflights are never signed)."""
    origin = context.headers.get("Origin")
    if not origin:
        raise S3Error(
            "BadRequest", "Insufficient information. Origin request header needed.", http_status=400
        )
    method = context.headers.get("Access-Control-Request-Method", "")
    if method not in METHODS:
        raise S3Error(
            "BadRequest",
            f"Invalid Access-Control-Request-Method {method[:20]!r}; use one of "
            f"{', '.join(METHODS)}",
            http_status=400,
        )

    requested = [
        name.strip()
        for name in context.headers.get("Access-Control-Request-Headers", "").split(",")
        if name.strip()
    ]

    try:
        info = await context.client.head_bucket(context.bucket)
    except NoSuchBucket:
        raise _forbidden("CORSResponse: Bucket not found") from None
    rules = stored_rules(info.settings)
    if not rules:
        raise _forbidden("CORSResponse: CORS is not enabled for this bucket.")

    rule = first_match(rules, origin, method, requested)
    if rule is None:
        raise _forbidden(
            "CORSResponse: This CORS request is not allowed: no rule allows the origin "
            f"{origin[:80]!r}, the method {method} and the headers {', '.join(requested)}"
        )
    headers = rule.response_headers(origin)
    if requested:
        headers["Access-Control-Allow-Headers"] = ", ".join(requested)
    return web.Response(status=200, headers=headers)


async def actual_request_headers(context: RequestContext) -> dict[str, str]:
    """Return the Access-Control-* headers for a request that carries Origin.

    They come from the first rule of the bucket that allows the origin and method. When
    no rule does, only Vary is sent, since the reply depends on Origin. A failed lookup
    of the bucket gives none.
    """
    origin = context.headers.get("Origin")
    if not origin or context.location.bucket is None:
        return {}
    try:
        info = await context.client.head_bucket(context.location.bucket)
    except StoreError as error:
        # The request itself reports a missing bucket or an unreachable metaserver.
        log.info("request_id=%s CORS lookup failed: %s", context.request_id, error)
        return {}
    rules = stored_rules(info.settings)
    if not rules:
        return {}
    rule = first_match(rules, origin, context.request.method, [])
    return rule.response_headers(origin) if rule is not None else {"Vary": _VARY}


def _forbidden(message: str) -> S3Error:
    return S3Error("AccessForbidden", message, http_status=403)
