"""The policy document of browser-based uploads, parsed and checked without a server."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from store.s3.api_errors import S3Error
from store.s3.post_policy import check_fields, check_size, parse_policy

NOW = datetime(2026, 12, 6, tzinfo=UTC)


def _encoded(document: Any) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


def _policy(conditions: list[Any], expiration: str = "2026-12-07T00:00:00.000Z") -> str:
    return _encoded({"expiration": expiration, "conditions": conditions})


@pytest.mark.parametrize(
    "encoded",
    [
        pytest.param("not base64!", id="not base64"),
        pytest.param(_encoded(["a list"]), id="not an object"),
        pytest.param(_encoded({"conditions": []}), id="no expiration"),
        pytest.param(_encoded({"expiration": "2026-12-07T00:00:00Z"}), id="no conditions"),
        pytest.param(_policy([], "2026-12-07 00:00:00+00:00"), id="expiration without T"),
        pytest.param(_policy([{}]), id="empty condition"),
        pytest.param(_policy([["eq", "key", "k"]]), id="field without $"),
        pytest.param(_policy([["in", "$key", "k"]]), id="unknown operator"),
        pytest.param(_policy([["content-length-range", 0]]), id="range of one bound"),
        pytest.param(_policy([["content-length-range", 5, 1]]), id="range reversed"),
        pytest.param(_policy([{"key": ["a"]}]), id="list value"),
    ],
)
def test_malformed_policies(encoded: str) -> None:
    with pytest.raises(S3Error) as error:
        parse_policy(encoded)

    assert error.value.code == "InvalidPolicyDocument"
    assert error.value.http_status == 400


def test_conditions_and_fields() -> None:
    policy = parse_policy(
        _policy(
            [
                {"BUCKET": "photos"},
                ["Starts-With", "$Key", "user/"],
                ["eq", "$x-amz-meta-tag", "a"],
                ["content-length-range", "2", "4"],
            ]
        )
    )
    fields = {"bucket": "photos", "key": "user/a.jpg", "x-amz-meta-tag": "a"}
    cases = {
        "other bucket": {**fields, "bucket": "other"},
        "other prefix": {**fields, "key": "admin/a.jpg"},
        "missing field": {"bucket": "photos", "key": "user/a.jpg"},
        "extra field": {**fields, "acl": "private"},
    }

    check_fields(policy, {**fields, "x-ignore-note": "n", "x-amz-checksum-crc32": "AAAAAA=="}, NOW)
    for name, sent in cases.items():
        with pytest.raises(S3Error) as error:
            check_fields(policy, sent, NOW)
        assert error.value.code == "AccessDenied", name
    with pytest.raises(S3Error, match="Policy expired"):
        check_fields(policy, fields, datetime(2026, 12, 8, tzinfo=UTC))
    check_size(policy, 4, final=True)
    with pytest.raises(S3Error) as large:
        check_size(policy, 5, final=False)
    with pytest.raises(S3Error) as small:
        check_size(policy, 1, final=True)
    assert large.value.code == "EntityTooLarge"
    assert small.value.code == "EntityTooSmall"
