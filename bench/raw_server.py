"""A trivial grpc.aio server: the raw ceiling that the store's figures are compared against.

Methods of service rawbench.Raw, all on raw bytes (no protobuf):

    Download  unary-stream: request "COUNT,SIZE"; streams COUNT messages of SIZE bytes
    Upload    stream-unary: counts the bytes of every message; replies with the total
    Echo      unary-unary: returns the request

It uses the store's own server options (message size limits, keepalive) and
allocator tuning (store.memory.tune_malloc, which every store process
applies), so the comparison isolates what the store adds on top of grpcio.
Prints the bound port on stdout, then serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator

import grpc
import grpc.aio

from store.memory import tune_malloc
from store.rpc import SERVER_OPTIONS

SERVICE = "rawbench.Raw"
MAX_DOWNLOAD_MESSAGES = 1 << 16


def parse_download_request(request: bytes) -> tuple[int, int]:
    count_text, _, size_text = request.decode().partition(",")
    count, size = int(count_text), int(size_text)
    if not (0 < count <= MAX_DOWNLOAD_MESSAGES and 0 < size <= 16 << 20):
        raise ValueError(f"invalid download request {request!r}")
    return count, size


class RawService:
    def __init__(self) -> None:
        self._payloads: dict[int, bytes] = {}

    def _payload(self, size: int) -> bytes:
        payload = self._payloads.get(size)
        if payload is None:
            payload = self._payloads[size] = os.urandom(size)
        return payload

    async def download(
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        count, size = parse_download_request(request)
        payload = self._payload(size)
        for _ in range(count):
            yield payload

    async def upload(
        self, request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> bytes:
        total_bytes = 0
        async for message in request_iterator:
            total_bytes += len(message)
        return str(total_bytes).encode()

    async def echo(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request


def handler(service: RawService) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Download": grpc.unary_stream_rpc_method_handler(service.download),
            "Upload": grpc.stream_unary_rpc_method_handler(service.upload),
            "Echo": grpc.unary_unary_rpc_method_handler(service.echo),
        },
    )


async def serve(listen: str) -> None:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers((handler(RawService()),))
    port = server.add_insecure_port(listen)
    await server.start()
    print(port, flush=True)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    await stopped.wait()
    await server.stop(grace=1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--listen", default="127.0.0.1:0", help="HOST:PORT to serve on; port 0 picks a free port"
    )
    args = parser.parse_args()
    if not args.listen.startswith("127.0.0.1:"):
        sys.exit(f"--listen {args.listen} must be on 127.0.0.1; benchmarks stay on loopback")
    tune_malloc()
    asyncio.run(serve(args.listen))


if __name__ == "__main__":
    main()
