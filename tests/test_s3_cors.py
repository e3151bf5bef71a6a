"""Bucket CORS rules through boto3, and the preflight and actual requests a browser sends."""

from __future__ import annotations

from typing import Any

import pytest
import urllib3
from botocore.exceptions import ClientError

from .s3gw_support import GatewayInfo, error_code, object_url, s3_client

APP = "https://app.example"
RULES = {
    "CORSRules": [
        {
            "ID": "uploads",
            "AllowedOrigins": ["https://*.example"],
            "AllowedMethods": ["PUT", "POST"],
            "AllowedHeaders": ["content-type", "x-amz-*"],
            "ExposeHeaders": ["ETag"],
            "MaxAgeSeconds": 600,
        },
        {"AllowedOrigins": ["*"], "AllowedMethods": ["GET", "HEAD"]},
    ]
}


def _options(gateway: GatewayInfo, bucket: str, **headers: str) -> urllib3.BaseHTTPResponse:
    url = object_url(gateway, bucket, "photo.jpg")
    return urllib3.request("OPTIONS", url, headers=headers, timeout=30)


def test_put_get_delete_rules(s3: Any, s3_bucket: str) -> None:
    with pytest.raises(ClientError) as before:
        s3.get_bucket_cors(Bucket=s3_bucket)

    s3.put_bucket_cors(Bucket=s3_bucket, CORSConfiguration=RULES)
    stored = s3.get_bucket_cors(Bucket=s3_bucket)["CORSRules"]
    s3.delete_bucket_cors(Bucket=s3_bucket)
    with pytest.raises(ClientError) as after:
        s3.get_bucket_cors(Bucket=s3_bucket)

    assert before.value.response["Error"]["Code"] == "NoSuchCORSConfiguration"
    assert stored == RULES["CORSRules"]
    assert after.value.response["Error"]["Code"] == "NoSuchCORSConfiguration"


def test_invalid_rules(s3: Any, s3_bucket: str) -> None:
    cases = {
        "unknown method": {"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]},
        "two wildcards": {"AllowedOrigins": ["https://*.*.example"], "AllowedMethods": ["GET"]},
    }

    for name, rule in cases.items():
        with pytest.raises(ClientError) as error:
            s3.put_bucket_cors(Bucket=s3_bucket, CORSConfiguration={"CORSRules": [rule]})
        assert error.value.response["Error"]["Code"] == "InvalidRequest", name
    with pytest.raises(ClientError):
        s3.get_bucket_cors(Bucket=s3_bucket)


def test_preflight(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    """The first matching rule allows a preflight; others get 403, as do buckets without rules."""
    without_rules = _options(
        gateway, s3_bucket, Origin=APP, **{"Access-Control-Request-Method": "PUT"}
    )
    s3.put_bucket_cors(Bucket=s3_bucket, CORSConfiguration=RULES)

    upload = _options(
        gateway,
        s3_bucket,
        Origin=APP,
        **{
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "Content-Type, X-Amz-Meta-Owner",
        },
    )
    read = _options(
        gateway, s3_bucket, Origin="https://other.site", **{"Access-Control-Request-Method": "GET"}
    )
    denied = {
        "other origin": {"Origin": "https://evil.site", "Access-Control-Request-Method": "PUT"},
        "other method": {"Origin": APP, "Access-Control-Request-Method": "DELETE"},
        "other header": {
            "Origin": APP,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "authorization-extra",
        },
    }
    no_origin = _options(gateway, s3_bucket, **{"Access-Control-Request-Method": "GET"})

    assert (without_rules.status, error_code(without_rules.data)) == (403, "AccessForbidden")
    assert upload.status == 200, upload.data
    assert upload.headers["Access-Control-Allow-Origin"] == APP
    assert upload.headers["Access-Control-Allow-Methods"] == "PUT, POST"
    assert upload.headers["Access-Control-Allow-Headers"] == "Content-Type, X-Amz-Meta-Owner"
    assert upload.headers["Access-Control-Expose-Headers"] == "ETag"
    assert upload.headers["Access-Control-Max-Age"] == "600"
    assert read.status == 200
    assert read.headers["Access-Control-Allow-Origin"] == "*"
    for name, headers in denied.items():
        reply = _options(gateway, s3_bucket, **headers)
        assert (reply.status, error_code(reply.data)) == (403, "AccessForbidden"), name
    assert no_origin.status == 400


def test_actual_request_headers(gateway: GatewayInfo, s3: Any, s3_bucket: str) -> None:
    """A signed request with Origin gets the matching rule's headers, on errors too."""
    s3.put_bucket_cors(Bucket=s3_bucket, CORSConfiguration=RULES)
    browser = s3_client(gateway)

    def add_origin(request: Any, **_: Any) -> None:
        request.headers["Origin"] = APP

    browser.meta.events.register("before-sign.s3.*", add_origin)
    put = browser.put_object(Bucket=s3_bucket, Key="k", Body=b"data")
    with pytest.raises(ClientError) as missing:
        browser.head_object(Bucket=s3_bucket, Key="absent")
    plain = s3.put_object(Bucket=s3_bucket, Key="k2", Body=b"data")

    put_headers = put["ResponseMetadata"]["HTTPHeaders"]
    assert put_headers["access-control-allow-origin"] == APP
    assert put_headers["access-control-expose-headers"] == "ETag"
    missing_headers = missing.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert missing_headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-origin" not in plain["ResponseMetadata"]["HTTPHeaders"]
