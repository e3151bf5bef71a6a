"""Checksums, Content-MD5 and stored headers on real processes."""

from __future__ import annotations

import base64
import hashlib

import awscrt.checksums as crt
import pytest

import store

from .support import CHUNK_SIZE_BYTES, make_data

SIZES = [0, 100, 3 * CHUNK_SIZE_BYTES + 5]


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def expected_values(data: bytes) -> dict[str, str]:
    return {
        "crc32": b64(crt.crc32(data).to_bytes(4, "big")),
        "crc32c": b64(crt.crc32c(data).to_bytes(4, "big")),
        "crc64nvme": b64(crt.crc64nvme(data).to_bytes(8, "big")),
        "sha1": b64(hashlib.sha1(data).digest()),
        "sha256": b64(hashlib.sha256(data).digest()),
    }


@pytest.mark.parametrize("size", SIZES)
def test_checksums_stored(client: store.Client, bucket: str, size: int) -> None:
    data = make_data(size, seed=900 + size % 97)
    want = expected_values(data)
    info = client.put(bucket, "sums", data, checksum_algorithms=list(want), compute_md5=True)
    assert info.checksums == want, "stored checksums differ from the reference values"
    assert info.etag == hashlib.md5(data).hexdigest(), "ETag is not the content's MD5"
    assert client.stat(bucket, "sums").checksums == want, "stat does not return the checksums"


@pytest.mark.parametrize("size", SIZES)
def test_expected_checksum_verified(client: store.Client, bucket: str, size: int) -> None:
    data = make_data(size, seed=910)
    good = expected_values(data)["crc64nvme"]
    client.put(bucket, "ok", data, expected_checksums={"crc64nvme": good})
    with pytest.raises(store.BadDigest) as caught:
        client.put(bucket, "bad", data, expected_checksums={"crc64nvme": "AAAAAAAAAAE="})
    assert "crc64nvme" in str(caught.value), f"error does not name the algorithm: {caught.value}"
    with pytest.raises(store.NoSuchKey):
        client.stat(bucket, "bad")


def test_content_md5_verified(client: store.Client, bucket: str) -> None:
    data = make_data(2 * CHUNK_SIZE_BYTES, seed=920)
    client.put(bucket, "md5", data, content_md5=b64(hashlib.md5(data).digest()))
    with pytest.raises(store.BadDigest):
        client.put(bucket, "md5", b"other" + data, content_md5=b64(hashlib.md5(data).digest()))
    assert client.get(bucket, "md5") == data, "a rejected put changed the object"


def test_checksum_read_after_stream(client: store.Client, bucket: str) -> None:
    """Expected values may arrive after the data, as a trailer does."""
    data = make_data(CHUNK_SIZE_BYTES + 10, seed=930)
    expected: dict[str, str] = {}

    def body() -> object:
        yield data[:1000]
        yield data[1000:]
        expected["crc32c"] = expected_values(data)["crc32c"]

    info = client.put(
        bucket, "late", body(), checksum_algorithms=["crc32c"], expected_checksums=expected
    )
    assert info.checksums["crc32c"] == expected["crc32c"], "late expected value was not used"


def test_system_metadata_round_trip(client: store.Client, bucket: str) -> None:
    headers = {
        "content-encoding": "gzip",
        "content-disposition": 'attachment; filename="a.txt"',
        "content-language": "en",
        "cache-control": "max-age=60",
        "expires": "Thu, 01 Dec 2094 16:00:00 GMT",
    }
    client.put(bucket, "headers", b"x", system_metadata=headers)
    assert client.stat(bucket, "headers").system_metadata == headers
    with pytest.raises(store.InvalidArgument):
        client.put(bucket, "headers", b"x", system_metadata={"x-unknown": "1"})


def test_unknown_algorithm_rejected(client: store.Client, bucket: str) -> None:
    with pytest.raises(store.InvalidArgument) as caught:
        client.put(bucket, "alg", b"x", checksum_algorithms=["md4"])
    assert "md4" in str(caught.value)
