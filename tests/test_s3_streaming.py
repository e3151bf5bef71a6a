"""Bodies stream through the gateway: a large PUT and GET keep its memory to a few chunks."""

from __future__ import annotations

import hashlib
import http.client
from collections.abc import Iterator

from store.cluster import LocalCluster

from .s3gw_support import GatewayInfo, object_url, rss_peak_bytes, s3_client, sign
from .support import MIB

OBJECT_BYTES = 256 * MIB
PIECE_BYTES = MIB
# The gateway's memory may grow by this much while it moves OBJECT_BYTES each way:
# a window of 4 chunks (1 MiB each in the test cluster) in flight per direction, plus
# buffers of aiohttp and the SDK. Holding the object would take 256 MiB.
MAX_GROWTH_BYTES = 64 * MIB


def pattern_pieces() -> Iterator[bytes]:
    """Yield OBJECT_BYTES of a repeating, position-dependent pattern, one MiB at a time."""
    for index in range(OBJECT_BYTES // PIECE_BYTES):
        yield index.to_bytes(4, "big") * (PIECE_BYTES // 4)


def test_large_put_and_get_stay_small(cluster: LocalCluster) -> None:
    process = cluster.add_gateway()
    access_key, secret_key = cluster.read_root_keys()
    gateway = GatewayInfo(process, access_key, secret_key)
    try:
        s3_client(gateway).create_bucket(Bucket="streaming-test")
        baseline_bytes = rss_peak_bytes(process.pid)
        url = object_url(gateway, "streaming-test", "large.bin")
        headers = {"Content-Length": str(OBJECT_BYTES)}
        request = sign(gateway, "PUT", url, headers, payload="UNSIGNED-PAYLOAD")

        connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=300)
        connection.putrequest("PUT", "/streaming-test/large.bin", skip_accept_encoding=True)
        for name, value in request.headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        expected = hashlib.md5()
        for piece in pattern_pieces():
            expected.update(piece)
            connection.send(piece)
        put = connection.getresponse()
        put_body = put.read()
        assert put.status == 200, put_body
        assert put.getheader("ETag") == f'"{expected.hexdigest()}"'

        get_request = sign(gateway, "GET", url)
        connection.putrequest("GET", "/streaming-test/large.bin", skip_accept_encoding=True)
        for name, value in get_request.headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        get = connection.getresponse()
        received = hashlib.md5()
        size_bytes = 0
        while piece := get.read(PIECE_BYTES):
            received.update(piece)
            size_bytes += len(piece)
        connection.close()

        assert get.status == 200
        assert size_bytes == OBJECT_BYTES
        assert received.hexdigest() == expected.hexdigest()
        growth_bytes = rss_peak_bytes(process.pid) - baseline_bytes
        assert growth_bytes < MAX_GROWTH_BYTES, f"gateway memory grew by {growth_bytes} bytes"
        s3_client(gateway).delete_object(Bucket="streaming-test", Key="large.bin")
    finally:
        process.stop()
        cluster.gateways.remove(process)
