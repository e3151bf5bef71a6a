"""Tests of store/s3/chunked.py: aws-chunked decoding in the three STREAMING-* modes and
plain bodies with a signed SHA-256.

Unsigned trailer bodies come from botocore's own AwsChunkedWrapper and from a boto3
client. Signed bodies come from the AWS documentation's example and from the
specification-following encoder in s3_support, whose output for the documentation's
seed matches the published chunk signatures.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import zlib
from collections.abc import Sequence
from typing import Any
from unittest import mock

import awscrt.checksums
import pytest
from aiohttp.streams import StreamReader
from aiohttp.test_utils import make_mocked_request
from botocore.httpchecksum import (
    AwsChunkedWrapper,
    Crc32Checksum,
    CrtCrc32cChecksum,
    CrtCrc64NvmeChecksum,
    Sha256Checksum,
)

from store.checksum import crc32c
from store.s3 import (
    AuthResult,
    AuthType,
    AwsChunkedDecoder,
    ParsedRequest,
    PayloadMode,
    PayloadReader,
    PlainPayloadReader,
    S3AuthError,
    open_payload_reader,
    verify,
)

from .s3_support import (
    AMZ_DATE,
    DOC_ACCESS_KEY,
    DOC_TIME,
    SCOPE,
    SECRET_KEY,
    SIGNING_TIME,
    ChunkSigningContext,
    PieceSource,
    boto3_client,
    capture,
    encode_signed_chunks,
    freeze_botocore_clock,
    lookup_secret,
    path_url,
    run,
    sign_chunks,
    sign_streaming,
    spec_signing_key,
    split_evenly,
    to_parsed,
    trailer_section,
    trailer_signature,
)

KIB = 1024
MIB = 1024 * KIB
ENDPOINT = "https://127.0.0.1:9443"
SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    freeze_botocore_clock(monkeypatch)


async def collect(reader: PayloadReader, received: list[bytes] | None = None) -> bytes:
    """Read a whole body; `received` gets every piece yielded before an error."""
    pieces = received if received is not None else []
    async for piece in reader:
        pieces.append(piece)
    return b"".join(pieces)


def decode(reader: PayloadReader) -> bytes:
    return run(collect(reader))


def decode_error(reader: PayloadReader) -> tuple[S3AuthError, bytes]:
    """Decode until the reader raises; return the error and the bytes yielded before it."""
    received: list[bytes] = []
    with pytest.raises(S3AuthError) as caught:
        run(collect(reader, received))
    return caught.value, b"".join(received)


def payload_of(size_bytes: int) -> bytes:
    """Return `size_bytes` of varied content, so that a moved or swapped chunk is visible."""
    block = hashlib.sha256(str(size_bytes).encode()).digest()
    return (block * (size_bytes // len(block) + 1))[:size_bytes]


# The AWS documentation's chunked upload example: 65 KiB of "a" in a 64 KiB and a 1 KiB chunk.

DOC_DATA = b"a" * 66560
DOC_SIGNED_BODY = (
    b"10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n"
    + b"a" * 65536
    + b"\r\n400;chunk-signature="
    + b"0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n"
    + b"a" * 1024
    + b"\r\n0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n"
    + b"\r\n"
)
DOC_TRAILER_BODY = (
    b"10000;chunk-signature=b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2\r\n"
    + b"a" * 65536
    + b"\r\n400;chunk-signature="
    + b"1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7\r\n"
    + b"a" * 1024
    + b"\r\n0;chunk-signature=2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992\r\n"
    + b"x-amz-checksum-crc32c:sOO8/Q==\r\n"
    + b"x-amz-trailer-signature:"
    + b"d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n"
    + b"\r\n"
)
DOC_SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
DOC_TRAILER_SEED = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"


def doc_request(trailer: bool) -> ParsedRequest:
    if trailer:
        signed_headers = (
            "content-encoding;host;x-amz-content-sha256;x-amz-date;"
            "x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer"
        )
        seed = DOC_TRAILER_SEED
        extra = [
            ("x-amz-content-sha256", SIGNED_TRAILER),
            ("x-amz-trailer", "x-amz-checksum-crc32c"),
        ]
    else:
        signed_headers = (
            "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
            "x-amz-decoded-content-length;x-amz-storage-class"
        )
        seed = DOC_SEED
        extra = [("x-amz-content-sha256", SIGNED), ("Content-Length", "66824")]
    credential = f"{DOC_ACCESS_KEY}/20130524/us-east-1/s3/aws4_request"
    authorization = (
        f"AWS4-HMAC-SHA256 Credential={credential},SignedHeaders={signed_headers},Signature={seed}"
    )
    headers = [
        ("Host", "s3.amazonaws.com"),
        ("x-amz-date", "20130524T000000Z"),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ("Authorization", authorization),
        ("Content-Encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", "66560"),
        *extra,
    ]
    return ParsedRequest.from_target("PUT", "/examplebucket/chunkObject.txt", headers)


def doc_reader(trailer: bool, body: bytes, piece_size: int = 1000) -> PayloadReader:
    request = doc_request(trailer)
    auth = verify(request, lookup_secret, DOC_TIME)
    return open_payload_reader(PieceSource(body, piece_size), auth, request.headers)


@pytest.mark.parametrize("piece_size", [1, 7, 1000, 65536, 1 << 20])
def test_aws_example_signed_chunks(piece_size: int) -> None:
    assert len(DOC_SIGNED_BODY) == 66824
    reader = doc_reader(False, DOC_SIGNED_BODY, piece_size)
    assert decode(reader) == DOC_DATA
    assert reader.complete
    assert reader.decoded_length_bytes == 66560
    assert reader.trailers == {}


@pytest.mark.parametrize("piece_size", [1, 13, 4096, 1 << 20])
def test_aws_example_signed_trailer(piece_size: int) -> None:
    reader = doc_reader(True, DOC_TRAILER_BODY, piece_size)
    assert decode(reader) == DOC_DATA
    assert reader.complete
    assert reader.trailers == {"x-amz-checksum-crc32c": "sOO8/Q=="}
    computed = base64.b64encode(crc32c(DOC_DATA).to_bytes(4, "big")).decode()
    assert computed == "sOO8/Q=="


def test_aws_example_matches_test_encoder() -> None:
    context = ChunkSigningContext(
        spec_signing_key("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "20130524"),
        "20130524T000000Z",
        "20130524/us-east-1/s3/aws4_request",
        DOC_SEED,
    )
    chunks = [b"a" * 65536, b"a" * 1024]
    assert encode_signed_chunks(chunks, context) == DOC_SIGNED_BODY

    trailer_context = ChunkSigningContext(
        context.signing_key, context.amz_date, context.scope, DOC_TRAILER_SEED
    )
    trailers = [("x-amz-checksum-crc32c", "sOO8/Q==")]
    assert encode_signed_chunks(chunks, trailer_context, trailers) == DOC_TRAILER_BODY


def test_aws_example_tampered_byte() -> None:
    second_chunk_at = DOC_SIGNED_BODY.index(b"400;chunk-signature")
    data_at = DOC_SIGNED_BODY.index(b"\r\n", second_chunk_at) + 2 + 100
    tampered = DOC_SIGNED_BODY[:data_at] + b"b" + DOC_SIGNED_BODY[data_at + 1 :]
    error, received = decode_error(doc_reader(False, tampered))
    assert error.code == "SignatureDoesNotMatch"
    assert error.http_status == 403
    assert "chunk 2" in error.message
    assert received == b"a" * 65536


def test_aws_example_blank_line_before_trailers() -> None:
    final_at = DOC_TRAILER_BODY.index(b"x-amz-checksum-crc32c")
    variant = DOC_TRAILER_BODY[:final_at] + b"\r\n" + DOC_TRAILER_BODY[final_at:]
    reader = doc_reader(True, variant)
    assert decode(reader) == DOC_DATA
    assert reader.trailers == {"x-amz-checksum-crc32c": "sOO8/Q=="}


def test_aws_example_without_closing_blank_line() -> None:
    reader = doc_reader(True, DOC_TRAILER_BODY.removesuffix(b"\r\n"))
    assert decode(reader) == DOC_DATA
    assert reader.complete


# Signed chunks from a botocore-signed request and the test encoder.


def signed_upload(
    chunks: Sequence[bytes],
    *,
    trailers: Sequence[tuple[str, str]] | None = None,
    declared_length: int | None = None,
) -> tuple[AuthResult, ParsedRequest, ChunkSigningContext]:
    """Sign a streaming PUT with botocore and return its AuthResult and chunk context."""
    length = sum(len(chunk) for chunk in chunks) if declared_length is None else declared_length
    headers = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(length)}
    literal = SIGNED
    if trailers is not None:
        literal = SIGNED_TRAILER
        headers["x-amz-trailer"] = ",".join(name for name, _ in trailers)
    signed, seed = sign_streaming(path_url(ENDPOINT, "bucket/key"), literal, headers)
    request = to_parsed(signed)
    auth = verify(request, lookup_secret, SIGNING_TIME)
    context = ChunkSigningContext(spec_signing_key(SECRET_KEY, AMZ_DATE[:8]), AMZ_DATE, SCOPE, seed)
    return auth, request, context


def signed_reader(
    body: bytes, auth: AuthResult, request: ParsedRequest, piece_size: int = 4096, **kwargs: Any
) -> PayloadReader:
    return open_payload_reader(PieceSource(body, piece_size), auth, request.headers, **kwargs)


@pytest.mark.parametrize(
    ("size_bytes", "chunk_size"),
    [(0, 8 * KIB), (1, 8 * KIB), (100 * KIB, 8 * KIB), (200 * KIB, 64 * KIB), (70_000, 65_536)],
)
@pytest.mark.parametrize("with_trailer", [False, True])
def test_signed_chunks_round_trip(size_bytes: int, chunk_size: int, with_trailer: bool) -> None:
    payload = payload_of(size_bytes)
    chunks = split_evenly(payload, chunk_size)
    checksum = base64.b64encode(hashlib.sha256(payload).digest()).decode()
    trailers = [("x-amz-checksum-sha256", checksum)] if with_trailer else None
    auth, request, context = signed_upload(chunks, trailers=trailers)
    assert auth.signing_key == context.signing_key
    assert auth.seed_signature == context.seed_signature
    body = encode_signed_chunks(chunks, context, trailers)

    reader = signed_reader(body, auth, request)
    assert decode(reader) == payload
    assert reader.complete
    assert reader.decoded_length_bytes == size_bytes
    assert reader.trailers == (dict(trailers) if trailers else {})


def test_bad_chunk_signature_withholds_bytes() -> None:
    chunks = [payload_of(10 * KIB), payload_of(11 * KIB), payload_of(12 * KIB)]
    auth, request, context = signed_upload(chunks)
    frames = sign_chunks(chunks, context)
    frames[1].signature = "0" * 64
    body = b"".join(frame.encode() for frame in frames) + b"\r\n"
    error, received = decode_error(signed_reader(body, auth, request))
    assert error.code == "SignatureDoesNotMatch"
    assert received == chunks[0]
    assert error.string_to_sign is not None
    assert error.string_to_sign.startswith("AWS4-HMAC-SHA256-PAYLOAD\n")


def test_signed_chunk_tampered_data() -> None:
    chunks = [payload_of(9 * KIB), payload_of(9 * KIB)]
    auth, request, context = signed_upload(chunks)
    frames = sign_chunks(chunks, context)
    frames[0].data = bytes([frames[0].data[0] ^ 1]) + frames[0].data[1:]
    body = b"".join(frame.encode() for frame in frames) + b"\r\n"
    error, received = decode_error(signed_reader(body, auth, request))
    assert error.code == "SignatureDoesNotMatch"
    assert received == b""


@pytest.mark.parametrize("change", ["swap", "drop", "repeat"])
def test_signed_chunks_out_of_order(change: str) -> None:
    chunks = [payload_of(8 * KIB), payload_of(9 * KIB), payload_of(10 * KIB)]
    auth, request, context = signed_upload(chunks)
    frames = sign_chunks(chunks, context)
    if change == "swap":
        frames[0], frames[1] = frames[1], frames[0]
    elif change == "drop":
        del frames[1]
    else:
        frames.insert(1, frames[0])
    body = b"".join(frame.encode() for frame in frames) + b"\r\n"
    error, _ = decode_error(signed_reader(body, auth, request))
    assert error.code == "SignatureDoesNotMatch"


def test_signed_final_chunk_bad_signature() -> None:
    chunks = [payload_of(8 * KIB)]
    auth, request, context = signed_upload(chunks)
    frames = sign_chunks(chunks, context)
    frames[-1].signature = frames[0].signature
    body = b"".join(frame.encode() for frame in frames) + b"\r\n"
    reader = signed_reader(body, auth, request)
    error, received = decode_error(reader)
    assert error.code == "SignatureDoesNotMatch"
    assert received == chunks[0]
    assert not reader.complete


def test_signed_chunk_without_signature_extension() -> None:
    chunks = [payload_of(8 * KIB)]
    auth, request, context = signed_upload(chunks)
    body = encode_signed_chunks(chunks, context).replace(b";chunk-signature=", b";other=", 1)
    error, received = decode_error(signed_reader(body, auth, request))
    assert error.code == "InvalidArgument"
    assert "chunk-signature" in error.message
    assert received == b""


def test_signed_chunk_extra_extension_ignored() -> None:
    chunks = [payload_of(8 * KIB)]
    auth, request, context = signed_upload(chunks)
    body = encode_signed_chunks(chunks, context)
    body = body.replace(b";chunk-signature=", b"; x=1 ;chunk-signature=")
    assert decode(signed_reader(body, auth, request)) == chunks[0]


def test_signed_mode_rejects_trailers() -> None:
    chunks = [payload_of(8 * KIB)]
    auth, request, context = signed_upload(chunks)
    body = encode_signed_chunks(chunks, context).removesuffix(b"\r\n") + b"x-amz-meta-a:b\r\n\r\n"
    error, _ = decode_error(signed_reader(body, auth, request))
    assert error.code == "InvalidArgument"
    assert "TRAILER" in error.message


def signed_trailer_body(
    chunks: Sequence[bytes],
    context: ChunkSigningContext,
    trailers: Sequence[tuple[str, str]],
    signed_trailers: Sequence[tuple[str, str]],
) -> bytes:
    """Encode signed chunks with `trailers`, but with the signature of `signed_trailers`."""
    frames = sign_chunks(chunks, context)
    body = b"".join(frame.encode() for frame in frames)
    signature = trailer_signature(signed_trailers, context, frames[-1].signature)
    return body + trailer_section(trailers, signature)


def test_signed_trailer_tampered_value() -> None:
    chunks = [payload_of(8 * KIB)]
    trailers = [("x-amz-checksum-crc32", "AAAAAA==")]
    auth, request, context = signed_upload(chunks, trailers=trailers)
    body = signed_trailer_body(chunks, context, trailers, [("x-amz-checksum-crc32", "BBBBBB==")])
    error, received = decode_error(signed_reader(body, auth, request))
    assert error.code == "SignatureDoesNotMatch"
    assert "trailing headers" in error.message
    assert received == chunks[0]


def test_signed_trailer_missing_signature() -> None:
    chunks = [payload_of(8 * KIB)]
    trailers = [("x-amz-checksum-crc32", "AAAAAA==")]
    auth, request, context = signed_upload(chunks, trailers=trailers)
    frames = sign_chunks(chunks, context)
    body = b"".join(frame.encode() for frame in frames) + trailer_section(trailers, None)
    error, _ = decode_error(signed_reader(body, auth, request))
    assert error.code == "MalformedTrailerError"
    assert "x-amz-trailer-signature" in error.message


def test_signed_trailer_missing_declared_trailer() -> None:
    chunks = [payload_of(8 * KIB)]
    declared = [("x-amz-checksum-crc32", "AAAAAA=="), ("x-amz-checksum-sha1", "x")]
    auth, request, context = signed_upload(chunks, trailers=declared)
    body = encode_signed_chunks(chunks, context, declared[:1])
    error, _ = decode_error(signed_reader(body, auth, request))
    assert error.code == "MalformedTrailerError"
    assert "x-amz-checksum-sha1" in error.message


# Unsigned chunks with a trailing checksum, as botocore encodes them.


def crc64nvme_b64(data: bytes) -> str:
    return base64.b64encode(awscrt.checksums.crc64nvme(data).to_bytes(8, "big")).decode()


CHECKSUMS = {
    "crc32": (Crc32Checksum, lambda data: zlib.crc32(data).to_bytes(4, "big")),
    "crc32c": (CrtCrc32cChecksum, lambda data: crc32c(data).to_bytes(4, "big")),
    "crc64nvme": (
        CrtCrc64NvmeChecksum,
        lambda data: awscrt.checksums.crc64nvme(data).to_bytes(8, "big"),
    ),
    "sha256": (Sha256Checksum, lambda data: hashlib.sha256(data).digest()),
}


def unsigned_trailer_auth() -> AuthResult:
    return AuthResult(None, AuthType.ANONYMOUS, PayloadMode.STREAMING_UNSIGNED_TRAILER)


def botocore_chunked(payload: bytes, algorithm: str | None, chunk_size: int) -> bytes:
    checksum_cls = CHECKSUMS[algorithm][0] if algorithm else None
    wrapper = AwsChunkedWrapper(
        io.BytesIO(payload),
        checksum_cls=checksum_cls,
        checksum_name=f"x-amz-checksum-{algorithm}",
        chunk_size=chunk_size,
    )
    return bytes(wrapper.read())


@pytest.mark.parametrize("algorithm", list(CHECKSUMS))
@pytest.mark.parametrize(
    ("size_bytes", "chunk_size"),
    [(0, 1024), (1, 1024), (100_000, 8192), (3 * MIB + 5, 1 * MIB)],
)
def test_unsigned_trailer_from_botocore(algorithm: str, size_bytes: int, chunk_size: int) -> None:
    payload = payload_of(size_bytes)
    body = botocore_chunked(payload, algorithm, chunk_size)
    trailer_name = f"x-amz-checksum-{algorithm}"
    reader = AwsChunkedDecoder(
        PieceSource(body, 50_000),
        unsigned_trailer_auth(),
        decoded_content_length_bytes=size_bytes,
        declared_trailers=[trailer_name],
    )
    assert decode(reader) == payload
    assert reader.complete
    expected = base64.b64encode(CHECKSUMS[algorithm][1](payload)).decode()
    assert reader.trailers == {trailer_name: expected}


def test_unsigned_trailer_boto3_put() -> None:
    client = boto3_client(ENDPOINT)
    payload = payload_of(300 * KIB)
    request, body = capture(
        lambda: client.put_object(
            Bucket="bucket", Key="a b/ü", Body=payload, ChecksumAlgorithm="CRC64NVME"
        )
    )
    parsed = to_parsed(request)
    auth = verify(parsed, lookup_secret, SIGNING_TIME)
    assert auth.payload_mode is PayloadMode.STREAMING_UNSIGNED_TRAILER
    reader = open_payload_reader(PieceSource(body, 7777), auth, parsed.headers)
    assert decode(reader) == payload
    assert reader.trailers == {"x-amz-checksum-crc64nvme": crc64nvme_b64(payload)}


def test_unsigned_chunk_streams_in_bounded_pieces() -> None:
    payload = payload_of(3 * MIB)
    body = botocore_chunked(payload, "crc32", 3 * MIB)
    reader = AwsChunkedDecoder(
        PieceSource(body, 1 << 20),
        unsigned_trailer_auth(),
        declared_trailers=["x-amz-checksum-crc32"],
    )
    sizes: list[int] = []

    async def consume() -> None:
        async for piece in reader:
            sizes.append(len(piece))

    run(consume())
    assert sum(sizes) == len(payload)
    assert max(sizes) <= 64 * KIB


def test_unsigned_trailer_missing() -> None:
    body = botocore_chunked(b"data", None, 1024)
    assert body.endswith(b"0\r\n\r\n")
    reader = AwsChunkedDecoder(
        PieceSource(body), unsigned_trailer_auth(), declared_trailers=["x-amz-checksum-crc32"]
    )
    error, received = decode_error(reader)
    assert error.code == "MalformedTrailerError"
    assert "x-amz-checksum-crc32" in error.message
    assert received == b"data"
    assert not reader.complete


def test_unsigned_trailer_not_declared() -> None:
    body = botocore_chunked(b"data", "crc32", 1024)
    error, _ = decode_error(AwsChunkedDecoder(PieceSource(body), unsigned_trailer_auth()))
    assert error.code == "MalformedTrailerError"
    assert "not declared" in error.message


def test_unsigned_trailer_without_trailers() -> None:
    body = botocore_chunked(b"data", None, 2)
    reader = AwsChunkedDecoder(PieceSource(body), unsigned_trailer_auth())
    assert decode(reader) == b"data"
    assert reader.trailers == {}


def test_unsigned_trailer_with_signature_line() -> None:
    body = botocore_chunked(b"data", "crc32", 1024).removesuffix(b"\r\n")
    body += b"x-amz-trailer-signature:" + b"0" * 64 + b"\r\n\r\n"
    reader = AwsChunkedDecoder(
        PieceSource(body), unsigned_trailer_auth(), declared_trailers=["x-amz-checksum-crc32"]
    )
    error, _ = decode_error(reader)
    assert error.code == "MalformedTrailerError"


def test_unsigned_trailer_with_space_after_colon() -> None:
    body = b"4\r\ndata\r\n0\r\nX-Amz-Checksum-CRC32: AAAAAA==\r\n\r\n"
    reader = AwsChunkedDecoder(
        PieceSource(body), unsigned_trailer_auth(), declared_trailers=["x-amz-checksum-crc32"]
    )
    assert decode(reader) == b"data"
    assert reader.trailers == {"x-amz-checksum-crc32": "AAAAAA=="}


@pytest.mark.parametrize(
    "trailer_lines",
    [
        b"no-colon-here\r\n",
        b"bad name:value\r\n",
        b"x-amz-checksum-crc32:a\r\nx-amz-checksum-crc32:b\r\n",
        b"".join(b"x-amz-meta-%d:v\r\n" % index for index in range(40)),
    ],
)
def test_unsigned_trailer_malformed(trailer_lines: bytes) -> None:
    body = b"4\r\ndata\r\n0\r\n" + trailer_lines + b"\r\n"
    reader = AwsChunkedDecoder(PieceSource(body), unsigned_trailer_auth())
    error, _ = decode_error(reader)
    assert error.code == "MalformedTrailerError"


# Lengths, truncation and framing errors.


def test_decoded_length_larger_than_body() -> None:
    body = botocore_chunked(b"0123456789", "crc32", 4)
    reader = AwsChunkedDecoder(
        PieceSource(body),
        unsigned_trailer_auth(),
        decoded_content_length_bytes=11,
        declared_trailers=["x-amz-checksum-crc32"],
    )
    error, received = decode_error(reader)
    assert error.code == "IncompleteBody"
    assert "11" in error.message
    assert received == b"0123456789"


def test_decoded_length_smaller_than_body() -> None:
    body = botocore_chunked(b"0123456789", "crc32", 4)
    reader = AwsChunkedDecoder(
        PieceSource(body),
        unsigned_trailer_auth(),
        decoded_content_length_bytes=6,
        declared_trailers=["x-amz-checksum-crc32"],
    )
    error, received = decode_error(reader)
    assert error.code == "InvalidArgument"
    assert "x-amz-decoded-content-length" in error.message
    assert received == b"0123"


def test_signed_decoded_length_mismatch() -> None:
    chunks = [payload_of(8 * KIB), payload_of(8 * KIB)]
    auth, request, context = signed_upload(chunks, declared_length=8 * KIB + 1)
    error, received = decode_error(
        signed_reader(encode_signed_chunks(chunks, context), auth, request)
    )
    assert error.code == "InvalidArgument"
    assert received == chunks[0]


def truncations(body: bytes) -> list[bytes]:
    """Every prefix of a short body, and prefixes at a stride for a long one."""
    stride = 1 if len(body) < 2000 else 97
    return [body[:length] for length in range(0, len(body), stride)]


def test_truncated_signed_body() -> None:
    chunks = [payload_of(300), payload_of(200)]
    auth, request, context = signed_upload(chunks)
    body = encode_signed_chunks(chunks, context)
    for prefix in truncations(body):
        error, _ = decode_error(signed_reader(prefix, auth, request, piece_size=64))
        assert error.code == "IncompleteBody", (len(prefix), error.message)


def test_truncated_signed_trailer_body() -> None:
    chunks = [payload_of(300)]
    trailers = [("x-amz-checksum-crc32", "AAAAAA==")]
    auth, request, context = signed_upload(chunks, trailers=trailers)
    body = encode_signed_chunks(chunks, context, trailers)
    # Without the closing CRLF the body is still complete; see the AWS example test.
    for prefix in truncations(body.removesuffix(b"\r\n")):
        error, _ = decode_error(signed_reader(prefix, auth, request, piece_size=64))
        assert error.code in ("IncompleteBody", "MalformedTrailerError"), len(prefix)


def test_truncated_unsigned_body() -> None:
    body = botocore_chunked(payload_of(5000), "crc32", 1000)
    closing_at = body.rindex(b"x-amz-checksum-crc32")
    for prefix in truncations(body[:closing_at]):
        reader = AwsChunkedDecoder(
            PieceSource(prefix, 64),
            unsigned_trailer_auth(),
            decoded_content_length_bytes=5000,
            declared_trailers=["x-amz-checksum-crc32"],
        )
        error, _ = decode_error(reader)
        assert error.code in ("IncompleteBody", "MalformedTrailerError"), len(prefix)


def test_oversized_chunk_rejected_early() -> None:
    chunks = [payload_of(200 * KIB)]
    auth, request, context = signed_upload(chunks)
    source = PieceSource(encode_signed_chunks(chunks, context), 4096)
    reader = open_payload_reader(source, auth, request.headers, max_chunk_size_bytes=100 * KIB)
    error, received = decode_error(reader)
    assert error.code == "InvalidArgument"
    assert str(200 * KIB) in error.message
    assert received == b""
    assert source.bytes_consumed <= 4096


def test_default_chunk_limit_is_16_mib() -> None:
    body = b"1000001\r\n"
    error, _ = decode_error(AwsChunkedDecoder(PieceSource(body), unsigned_trailer_auth()))
    assert error.code == "InvalidArgument"
    assert str(16 * MIB) in error.message


@pytest.mark.parametrize(
    "body",
    [
        b"zz\r\ndata\r\n0\r\n\r\n",
        b"0x4\r\ndata\r\n0\r\n\r\n",
        b"+4\r\ndata\r\n0\r\n\r\n",
        b"-4\r\ndata\r\n0\r\n\r\n",
        b"4_0\r\ndata\r\n0\r\n\r\n",
        b"\r\ndata\r\n0\r\n\r\n",
        b"11111111111111111\r\n",
        b"4\ndata\r\n0\r\n\r\n",
        b"4\r\ndataXX0\r\n\r\n",
        b"4\r\ndata\r\n0\r\n\r\nextra",
        b"4\r\ndata\r\n0\r\n\r\n0\r\n\r\n",
        b"a" * 5000,
    ],
)
def test_malformed_framing(body: bytes) -> None:
    reader = AwsChunkedDecoder(PieceSource(body, 100), unsigned_trailer_auth())
    error, _ = decode_error(reader)
    assert error.code == "InvalidArgument", error.message
    assert error.http_status == 400


def test_empty_body_is_incomplete() -> None:
    error, _ = decode_error(AwsChunkedDecoder(PieceSource(b""), unsigned_trailer_auth()))
    assert error.code == "IncompleteBody"


def test_uppercase_hex_size() -> None:
    body = b"A\r\n0123456789\r\n0\r\n\r\n"
    assert decode(AwsChunkedDecoder(PieceSource(body), unsigned_trailer_auth())) == b"0123456789"


# Plain bodies.


def plain(
    data: bytes, expected_sha256: str | None, content_length: int | None, piece_size: int = 1000
) -> PlainPayloadReader:
    return PlainPayloadReader(
        PieceSource(data, piece_size),
        expected_sha256=expected_sha256,
        content_length_bytes=content_length,
    )


def test_plain_signed_payload() -> None:
    data = payload_of(100_000)
    reader = plain(data, hashlib.sha256(data).hexdigest(), len(data))
    assert decode(reader) == data
    assert reader.complete
    assert reader.decoded_length_bytes == len(data)


def test_plain_payload_hash_mismatch() -> None:
    data = payload_of(10_000)
    reader = plain(data, hashlib.sha256(b"other").hexdigest(), len(data))
    error, received = decode_error(reader)
    assert error.code == "XAmzContentSHA256Mismatch"
    assert error.http_status == 400
    assert received == data
    assert not reader.complete


def test_plain_uppercase_expected_hash() -> None:
    data = b"abc"
    assert decode(plain(data, hashlib.sha256(data).hexdigest().upper(), 3)) == data


def test_plain_body_shorter_than_content_length() -> None:
    error, _ = decode_error(plain(b"12345", None, 10))
    assert error.code == "IncompleteBody"
    assert "10" in error.message


def test_plain_stops_at_content_length() -> None:
    source = PieceSource(b"0123456789-next-request", 4)
    reader = PlainPayloadReader(source, expected_sha256=None, content_length_bytes=10)
    assert decode(reader) == b"0123456789"
    assert source.bytes_consumed == 10


def test_plain_unsigned_without_length() -> None:
    assert decode(plain(b"x" * 5000, None, None)) == b"x" * 5000


def test_open_plain_reader_from_headers() -> None:
    data = b"hello"
    auth = AuthResult(
        "AKID",
        AuthType.AUTHORIZATION_HEADER,
        PayloadMode.SIGNED_PAYLOAD,
        hashlib.sha256(data).hexdigest(),
    )
    reader = open_payload_reader(PieceSource(data), auth, {"Content-Length": "5"})
    assert isinstance(reader, PlainPayloadReader)
    assert decode(reader) == data


@pytest.mark.parametrize("header", ["content-length", "x-amz-decoded-content-length"])
@pytest.mark.parametrize("value", ["-1", "ten", "1e3", "１"])
def test_invalid_length_header(header: str, value: str) -> None:
    mode = PayloadMode.STREAMING_UNSIGNED_TRAILER
    if header == "content-length":
        mode = PayloadMode.UNSIGNED_PAYLOAD
    auth = AuthResult(None, AuthType.ANONYMOUS, mode)
    with pytest.raises(S3AuthError) as caught:
        open_payload_reader(PieceSource(b""), auth, {header: value})
    assert caught.value.code == "InvalidArgument"
    assert header in caught.value.message


def test_reader_iterates_once() -> None:
    reader = plain(b"abc", None, 3)
    assert decode(reader) == b"abc"
    with pytest.raises(RuntimeError):
        reader.__aiter__()


def test_signed_decoder_needs_signing_fields() -> None:
    auth = AuthResult(None, AuthType.ANONYMOUS, PayloadMode.STREAMING_SIGNED)
    with pytest.raises(ValueError, match="signing fields"):
        AwsChunkedDecoder(PieceSource(b""), auth)


# An aiohttp StreamReader as the source, fed while the decoder waits.


async def decode_from_stream_reader(body: bytes, auth: AuthResult, request: ParsedRequest) -> bytes:
    stream = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())

    async def feed() -> None:
        for start in range(0, len(body), 3000):
            stream.feed_data(body[start : start + 3000])
            await asyncio.sleep(0)
        stream.feed_eof()

    feeder = asyncio.create_task(feed())
    decoded = await collect(open_payload_reader(stream, auth, request.headers))
    await feeder
    return decoded


def test_aiohttp_stream_reader_source() -> None:
    request = doc_request(True)
    auth = verify(request, lookup_secret, DOC_TIME)
    assert run(decode_from_stream_reader(DOC_TRAILER_BODY, auth, request)) == DOC_DATA


def test_aiohttp_stream_reader_truncated() -> None:
    request = doc_request(False)
    auth = verify(request, lookup_secret, DOC_TIME)
    with pytest.raises(S3AuthError) as caught:
        run(decode_from_stream_reader(DOC_SIGNED_BODY[:40_000], auth, request))
    assert caught.value.code == "IncompleteBody"


def test_aiohttp_request_end_to_end() -> None:
    chunks = [payload_of(20 * KIB), payload_of(5 * KIB)]
    trailers = [("x-amz-checksum-crc32", "AAAAAA==")]
    _, signed_request, context = signed_upload(chunks, trailers=trailers)
    body = encode_signed_chunks(chunks, context, trailers)

    async def handle() -> tuple[AuthResult, bytes, dict[str, str]]:
        loop = asyncio.get_running_loop()
        stream = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=loop)
        stream.feed_data(body)
        stream.feed_eof()
        request = make_mocked_request(
            "PUT",
            signed_request.raw_path,
            headers=signed_request.headers.copy(),
            payload=stream,
        )
        auth = verify(ParsedRequest.from_aiohttp(request), lookup_secret, SIGNING_TIME)
        reader = open_payload_reader(request.content, auth, request.headers)
        return auth, await collect(reader), reader.trailers

    auth, decoded, received_trailers = run(handle())
    assert auth.payload_mode is PayloadMode.STREAMING_SIGNED_TRAILER
    assert decoded == b"".join(chunks)
    assert received_trailers == dict(trailers)
