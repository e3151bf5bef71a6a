"""The policy of a browser-based upload (POST Object): its document, conditions and signature.

An HTML form that uploads to a bucket carries a base64 JSON policy, which the form's
builder signed with a user's secret key:

    {"expiration": "2026-12-01T12:00:00.000Z",
     "conditions": [{"bucket": "photos"}, ["starts-with", "$key", "user/"],
                    ["content-length-range", 1, 10485760]]}

Every form field but the file, the policy, the signature and x-ignore-* ones must be
named by a condition, and every condition must hold. Field names are case-insensitive.
The signature is Signature Version 4 (x-amz-algorithm, x-amz-credential, x-amz-date,
x-amz-signature) or Version 2 (AWSAccessKeyId, signature) over the base64 policy text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from store.s3 import signing
from store.s3.api_errors import S3Error

# Form fields that no condition needs to name.
_UNCONDITIONED_FIELDS = frozenset(
    {"file", "policy", "x-amz-signature", "signature", "awsaccesskeyid"}
)
# Prefixes of fields that no condition needs to name: ignored ones, and the checksums of
# the file, which the upload verifies instead.
_UNCONDITIONED_PREFIXES = ("x-ignore-", "x-amz-checksum-")
# ISO 8601 in UTC or with an offset, as S3 requires: 2026-12-01T12:00:00.000Z.
_EXPIRATION = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


@dataclass
class Policy:
    """A parsed policy: when it expires and what the form's fields must be."""

    expiration: datetime
    # (lowercase field name, operator, value): operator "eq" or "starts-with".
    conditions: list[tuple[str, str, str]] = field(default_factory=list)
    # The file's smallest and largest allowed sizes, from content-length-range.
    min_bytes: int = 0
    max_bytes: int | None = None

    def named_fields(self) -> set[str]:
        return {name for name, _, _ in self.conditions}


def parse_policy(encoded: str) -> Policy:
    """Decode and parse the base64 policy, raising InvalidPolicyDocument when it is malformed."""
    try:
        document = json.loads(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError):
        raise _invalid_document("the policy is not base64 of a JSON document") from None
    if not isinstance(document, dict):
        raise _invalid_document("the policy must be a JSON object")
    if "expiration" not in document:
        raise _invalid_document("the policy has no 'expiration' (the name is case-sensitive)")
    if not isinstance(document.get("conditions"), list):
        raise _invalid_document("the policy has no 'conditions' list (the name is case-sensitive)")
    policy = Policy(_parse_expiration(document["expiration"]))
    for condition in document["conditions"]:
        _add_condition(policy, condition)
    return policy


def _parse_expiration(value: Any) -> datetime:
    text = str(value)
    try:
        if not _EXPIRATION.fullmatch(text):
            raise ValueError(text)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _invalid_document(
            f"Invalid 'expiration' value {str(value)[:40]!r}; use an ISO 8601 time such as "
            "2026-12-01T12:00:00.000Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _add_condition(policy: Policy, condition: Any) -> None:
    if isinstance(condition, dict):
        if not condition:
            raise _invalid_document("a condition is an empty object; name a field and its value")
        for name, value in condition.items():
            policy.conditions.append((str(name).lower(), "eq", _text(value)))
        return
    if not isinstance(condition, list) or not condition:
        raise _invalid_document(f"the condition {str(condition)[:60]} is not an object or a list")
    operator = str(condition[0]).lower()
    if operator == "content-length-range":
        policy.min_bytes, policy.max_bytes = _length_range(condition)
        return
    if operator not in ("eq", "starts-with") or len(condition) != 3:
        raise _invalid_document(
            f'the condition {str(condition)[:60]} must be ["eq" or "starts-with", '
            '"$field", value] or ["content-length-range", min, max]'
        )
    name = str(condition[1])
    if not name.startswith("$"):
        raise _invalid_document(f"the field {name[:40]!r} of a condition must start with '$'")
    policy.conditions.append((name[1:].lower(), operator, _text(condition[2])))


def _length_range(condition: list[Any]) -> tuple[int, int]:
    try:
        low, high = (int(bound) for bound in condition[1:])
    except (TypeError, ValueError):
        raise _invalid_document(
            f"content-length-range needs two integers, got {str(condition[1:])[:60]}"
        ) from None
    if not 0 <= low <= high:
        raise _invalid_document(
            f"content-length-range [{low}, {high}] must satisfy 0 <= min <= max"
        )
    return low, high


def _text(value: Any) -> str:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise _invalid_document(f"the condition value {str(value)[:40]} must be a string")


def check_fields(policy: Policy, fields: Mapping[str, str], now: datetime) -> None:
    """Raise AccessDenied unless the policy is current and the fields meet its conditions.

    `fields` maps lowercase field names to values, with "bucket" set to the bucket name.
    """
    if now >= policy.expiration:
        raise _policy_denied("Policy expired.")
    for name, operator, value in policy.conditions:
        sent = fields.get(name)
        met = sent is not None and (sent == value if operator == "eq" else sent.startswith(value))
        if not met:
            raise _policy_denied(f'Policy Condition failed: ["{operator}", "${name}", "{value}"]')
    named = policy.named_fields()
    extra = sorted(
        name
        for name in fields
        if name not in named
        and name not in _UNCONDITIONED_FIELDS
        and not name.startswith(_UNCONDITIONED_PREFIXES)
    )
    if extra:
        raise _policy_denied(f"Extra input fields: {', '.join(extra)}")


def check_size(policy: Policy, size_bytes: int, *, final: bool) -> None:
    """Raise EntityTooLarge or, once the whole file is in (`final`), EntityTooSmall."""
    if policy.max_bytes is not None and size_bytes > policy.max_bytes:
        raise S3Error(
            "EntityTooLarge",
            f"Your proposed upload exceeds the maximum allowed size of {policy.max_bytes} "
            "bytes set by the policy's content-length-range",
        )
    if final and size_bytes < policy.min_bytes:
        raise S3Error(
            "EntityTooSmall",
            f"Your proposed upload of {size_bytes} bytes is smaller than the minimum of "
            f"{policy.min_bytes} bytes set by the policy's content-length-range",
        )


@dataclass(frozen=True)
class FormSignature:
    """The signer and signature of a form's policy, and the way to recompute it."""

    access_key: str
    signature: str
    # Signature Version 4 only: the credential scope's date, region and service.
    scope: tuple[str, str, str] | None

    def expected(self, secret_key: str, encoded_policy: str) -> str:
        if self.scope is None:
            digest = hmac.new(secret_key.encode(), encoded_policy.encode(), hashlib.sha1)
            return base64.b64encode(digest.digest()).decode()
        key = signing.derive_signing_key(secret_key, *self.scope)
        return signing.sign(key, encoded_policy)


def form_signature(fields: Mapping[str, str]) -> FormSignature:
    """Read the signature fields of a form; InvalidArgument when one is missing or malformed."""
    if "x-amz-signature" in fields:
        algorithm = fields.get("x-amz-algorithm", "")
        if algorithm != signing.ALGORITHM:
            raise _missing_field("x-amz-algorithm", f"with the value {signing.ALGORITHM}")
        parts = fields.get("x-amz-credential", "").split("/")
        if len(parts) != 5 or parts[4] != signing.SCOPE_TERMINATOR or not fields.get("x-amz-date"):
            raise _missing_field(
                "x-amz-credential", "as KEY/YYYYMMDD/REGION/s3/aws4_request, and x-amz-date,"
            )
        return FormSignature(parts[0], fields["x-amz-signature"], (parts[1], parts[2], parts[3]))
    if "signature" in fields:
        if not fields.get("awsaccesskeyid"):
            raise _missing_field("AWSAccessKeyId", "with the signature")
        return FormSignature(fields["awsaccesskeyid"], fields["signature"], None)
    raise _missing_field("x-amz-signature", "(or signature, for Signature Version 2)")


def _missing_field(name: str, detail: str) -> S3Error:
    return S3Error(
        "InvalidArgument", f"Bucket POST must contain a field named '{name}' {detail}".strip()
    )


def _invalid_document(detail: str) -> S3Error:
    return S3Error("InvalidPolicyDocument", f"Invalid Policy: {detail}")


def _policy_denied(detail: str) -> S3Error:
    return S3Error("AccessDenied", f"Invalid according to Policy: {detail}")
