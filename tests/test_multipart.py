"""Multipart uploads through the SDK on real processes."""

from __future__ import annotations

import base64
import hashlib

import awscrt.checksums as crt
import pytest

import store
from store.cluster import LocalCluster

from .support import CHUNK_SIZE_BYTES, MIB, ClusterFactory, chunk_files, make_data, wait_until

PART_BYTES = 5 * MIB


def multipart_etag(parts: list[bytes]) -> str:
    digests = b"".join(hashlib.md5(part).digest() for part in parts)
    return f"{hashlib.md5(digests).hexdigest()}-{len(parts)}"


def test_multipart_round_trip(client: store.Client, bucket: str) -> None:
    """Parts uploaded out of order complete into one object, byte for byte."""
    parts = [make_data(PART_BYTES, seed=800), make_data(PART_BYTES, seed=801), b"tail" * 10]
    upload_id = client.create_multipart_upload(
        bucket, "mp", content_type="application/x-tar", metadata={"origin": "test"}
    )
    etags = {}
    for number in (3, 1, 2):
        result = client.upload_part(bucket, "mp", upload_id, number, parts[number - 1])
        assert result.etag == hashlib.md5(parts[number - 1]).hexdigest(), "part ETag is not MD5"
        etags[number] = result.etag

    info = client.complete_multipart_upload(bucket, "mp", upload_id, sorted(etags.items()))

    whole = b"".join(parts)
    assert info.etag == multipart_etag(parts), "multipart ETag differs from S3's formula"
    assert client.get(bucket, "mp") == whole, "completed object differs"
    stat = client.stat(bucket, "mp")
    assert stat.content_type == "application/x-tar", "content type was not kept"
    assert stat.metadata == {"origin": "test"}, "user metadata was not kept"
    assert [p.size_bytes for p in stat.parts] == [len(p) for p in parts], "part sizes differ"
    boundary = PART_BYTES - 7
    assert client.get(bucket, "mp", offset=boundary, length=14) == whole[boundary : boundary + 14]


def test_multipart_replaced_part(client: store.Client, bucket: str) -> None:
    """Uploading a part number again replaces the part."""
    upload_id = client.create_multipart_upload(bucket, "again")
    client.upload_part(bucket, "again", upload_id, 1, b"first version")
    second = client.upload_part(bucket, "again", upload_id, 1, b"second version")
    listed = client.list_parts(bucket, "again", upload_id)
    assert [p.etag for p in listed.parts] == [second.etag], "the replaced part is still listed"
    client.complete_multipart_upload(bucket, "again", upload_id, [(1, second.etag)])
    assert client.get(bucket, "again") == b"second version", "the old part's bytes were used"


@pytest.mark.parametrize(
    ("listing", "error"),
    [
        ("descending", store.InvalidPartOrder),
        ("wrong-etag", store.InvalidPart),
        ("missing", store.InvalidPart),
        ("small-first", store.EntityTooSmall),
    ],
)
def test_complete_rejects_bad_lists(
    client: store.Client, bucket: str, listing: str, error: type[Exception]
) -> None:
    """A bad part list fails with S3's error, and the upload stays usable."""
    upload_id = client.create_multipart_upload(bucket, "bad")
    one = client.upload_part(bucket, "bad", upload_id, 1, b"a" * 100)
    two = client.upload_part(bucket, "bad", upload_id, 2, b"b" * 100)
    parts = {
        "descending": [(2, two.etag), (1, one.etag)],
        "wrong-etag": [(1, "0" * 32)],
        "missing": [(1, one.etag), (3, two.etag)],
        "small-first": [(1, one.etag), (2, two.etag)],
    }[listing]
    with pytest.raises(error):
        client.complete_multipart_upload(bucket, "bad", upload_id, parts)
    with pytest.raises(store.NoSuchKey):
        client.stat(bucket, "bad")
    small_ok = client.complete_multipart_upload(
        bucket, "bad", upload_id, [(1, one.etag), (2, two.etag)], min_part_size_bytes=0
    )
    assert small_ok.size_bytes == 200, "the upload did not complete after the failed attempt"


def test_complete_retry_returns_object(client: store.Client, bucket: str) -> None:
    """A repeated complete returns the object it made, unless the list or object changed."""
    upload_id = client.create_multipart_upload(bucket, "retried")
    first_part = client.upload_part(bucket, "retried", upload_id, 1, b"a" * 100)
    second_part = client.upload_part(bucket, "retried", upload_id, 2, b"b" * 100)
    parts = [(1, first_part.etag), (2, second_part.etag)]
    first = client.complete_multipart_upload(
        bucket, "retried", upload_id, parts, min_part_size_bytes=0
    )

    again = client.complete_multipart_upload(
        bucket, "retried", upload_id, parts, min_part_size_bytes=0
    )
    assert again.etag == first.etag, "the retry returned another ETag"
    assert again.version_id == first.version_id == upload_id, "the retry made a new version"
    assert again.modified == first.modified, "the retry wrote the object again"
    assert client.get(bucket, "retried") == b"a" * 100 + b"b" * 100

    with pytest.raises(store.NoSuchUpload):
        client.complete_multipart_upload(bucket, "retried", upload_id, parts[:1])
    with pytest.raises(store.NoSuchUpload):
        client.complete_multipart_upload(
            bucket, "retried", upload_id, [(1, first_part.etag), (2, "0" * 32)]
        )
    client.put(bucket, "retried", b"replaced")
    with pytest.raises(store.NoSuchUpload):
        client.complete_multipart_upload(bucket, "retried", upload_id, parts)
    assert client.get(bucket, "retried") == b"replaced", "a stale retry changed the object"


def test_abort_then_calls_fail(client: store.Client, bucket: str) -> None:
    upload_id = client.create_multipart_upload(bucket, "aborted")
    client.upload_part(bucket, "aborted", upload_id, 1, b"data")
    client.abort_multipart_upload(bucket, "aborted", upload_id)
    with pytest.raises(store.NoSuchUpload):
        client.upload_part(bucket, "aborted", upload_id, 2, b"more")
    with pytest.raises(store.NoSuchUpload):
        client.complete_multipart_upload(bucket, "aborted", upload_id, [(1, "")])
    with pytest.raises(store.NoSuchUpload):
        client.list_parts(bucket, "aborted", upload_id)


def test_list_uploads_pages(client: store.Client, bucket: str) -> None:
    """Uploads list by key then upload id, page by page, with prefix and markers."""
    created = sorted(
        (key, client.create_multipart_upload(bucket, key))
        for key in ["a/1", "a/2", "a/2", "b/1", "c"]
    )
    pages = []
    key_marker, id_marker = "", ""
    for _ in range(10):
        page = client.list_multipart_uploads(
            bucket, key_marker=key_marker, upload_id_marker=id_marker, max_uploads=2
        )
        pages.append(page)
        if not page.truncated:
            break
        key_marker, id_marker = page.next_key_marker, page.next_upload_id_marker
    listed = [(u.key, u.upload_id) for page in pages for u in page.uploads]
    assert sorted(listed, key=lambda item: (item[0], bytes.fromhex(item[1]))) == listed
    assert sorted(listed) == created, "the pages do not list every upload once"
    prefixed = client.list_multipart_uploads(bucket, prefix="a/")
    assert [u.key for u in prefixed.uploads] == ["a/1", "a/2", "a/2"], "prefix filter failed"
    after_key = client.list_multipart_uploads(bucket, key_marker="a/2")
    assert [u.key for u in after_key.uploads] == ["b/1", "c"], "key marker did not skip a/2"


def test_composite_and_full_object_checksums(client: store.Client, bucket: str) -> None:
    parts = [make_data(PART_BYTES, seed=810), make_data(1000, seed=811)]
    for algorithm, checksum_type in (("crc32c", "COMPOSITE"), ("crc64nvme", "FULL_OBJECT")):
        key = f"sum-{algorithm}"
        upload_id = client.create_multipart_upload(
            bucket, key, checksum_algorithm=algorithm, checksum_type=checksum_type
        )
        listed = []
        for number, data in enumerate(parts, 1):
            result = client.upload_part(
                bucket, key, upload_id, number, data, checksum_algorithms=[algorithm]
            )
            listed.append((number, result.etag))
        info = client.complete_multipart_upload(bucket, key, upload_id, listed)
        function = getattr(crt, algorithm)
        width = 8 if algorithm == "crc64nvme" else 4
        values = [function(part).to_bytes(width, "big") for part in parts]
        if checksum_type == "COMPOSITE":
            want = base64.b64encode(function(b"".join(values)).to_bytes(width, "big")).decode()
            want += "-2"
        else:
            want = base64.b64encode(function(b"".join(parts)).to_bytes(width, "big")).decode()
        assert info.checksums == {algorithm: want}, f"{checksum_type} {algorithm} checksum"
        assert info.checksum_type == checksum_type


def test_unused_parts_are_collected(cluster_factory: ClusterFactory) -> None:
    """Parts left out of the completion, and aborted parts, are deleted from dataservers."""
    meta_args = ["--gc-delay-s", "0", "--gc-interval-s", "0.2"]
    cluster: LocalCluster = cluster_factory(dataservers=2, meta_args=meta_args)
    with store.Client(cluster.meta_address) as client:
        client.create_bucket("parts")
        upload_id = client.create_multipart_upload("parts", "obj")
        kept_data = make_data(2 * CHUNK_SIZE_BYTES, 820)
        kept = client.upload_part("parts", "obj", upload_id, 1, kept_data)
        client.upload_part("parts", "obj", upload_id, 2, make_data(3 * CHUNK_SIZE_BYTES, 821))
        client.complete_multipart_upload("parts", "obj", upload_id, [(1, kept.etag)])

        def total_chunks() -> int:
            return sum(len(chunk_files(process)) for process in cluster.dataservers)

        kept_chunks = client.stat("parts", "obj").chunk_count
        assert kept_chunks > 0, "the completed object has no chunks"
        wait_until(
            lambda: total_chunks() == kept_chunks, timeout_s=20, description="unused part deleted"
        )
        assert client.get("parts", "obj") == kept_data, "the completed object differs"

        aborted = client.create_multipart_upload("parts", "gone")
        client.upload_part("parts", "gone", aborted, 1, make_data(CHUNK_SIZE_BYTES, 822))
        client.abort_multipart_upload("parts", "gone", aborted)
        wait_until(
            lambda: total_chunks() == kept_chunks, timeout_s=20, description="aborted part deleted"
        )
