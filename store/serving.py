"""Process plumbing shared by the metaserver, the dataserver and the S3 gateway."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import grpc.aio

from store.callstream import StreamedHandlers
from store.durable import write_file_atomic
from store.errors import InvalidArgument
from store.rpc import SERVER_OPTIONS

log = logging.getLogger(__name__)

SERVER_FILE = "server.json"
# How long Server.stop lets calls in progress finish before it cancels them.
STOP_GRACE_S = 2.0
EVENT_LOOPS = ("uvloop", "asyncio")
_WILDCARD_HOSTS = {"0.0.0.0", "::", "[::]", ""}


def add_loop_argument(parser: argparse.ArgumentParser) -> None:
    """Add --loop, which chooses the event loop a server runs on."""
    parser.add_argument(
        "--loop",
        choices=EVENT_LOOPS,
        default="uvloop",
        help="event loop (default: uvloop)",
    )


def run_on_loop(main: Coroutine[Any, Any, None], loop: str) -> None:
    """Run `main` to completion on the event loop that `loop` names (see EVENT_LOOPS)."""
    if loop == "uvloop":
        import uvloop

        uvloop.run(main)
    else:
        asyncio.run(main)


def loop_name() -> str:
    """Return the name of the running event loop's package, for the start log line."""
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def split_address(address: str) -> tuple[str, int]:
    """Split "host:port" (or "[v6]:port"), raising InvalidArgument with the expected form."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise InvalidArgument(
            f"invalid address {address!r}; expected HOST:PORT, like 127.0.0.1:7000"
        )
    return host, int(port_text)


async def start_grpc_server(
    listen: str, advertise: str | None, register: Callable[[grpc.aio.Server], None]
) -> tuple[grpc.aio.Server, str]:
    """Start a gRPC server on `listen` (port 0 picks one); return it and its public address."""
    host, _ = split_address(listen)
    server = grpc.aio.server(options=SERVER_OPTIONS)
    register(server)
    try:
        port = server.add_insecure_port(listen)
    except RuntimeError as exc:
        raise InvalidArgument(f"cannot listen on {listen}: {exc}; is the port in use?") from None
    if port == 0:
        raise InvalidArgument(f"cannot listen on {listen}; is the port in use?")
    await server.start()
    if advertise:
        split_address(advertise)
        return server, advertise
    if host in _WILDCARD_HOSTS:
        host = socket.gethostname()
    return server, f"{host}:{port}"


async def stop_grpc_server(server: grpc.aio.Server, streams: StreamedHandlers) -> None:
    """Stop a server whose `streams` serve calls on streams, ending the idle ones first.

    Server.stop would otherwise wait all of STOP_GRACE_S for the streams that
    clients keep open between calls.
    """
    streams.close()
    await server.stop(grace=STOP_GRACE_S)


def write_server_file(directory: Path, role: str, server_id: str, address: str) -> None:
    """Record role, id, address and pid in DIR/server.json for storectl and scripts."""
    record = {
        "role": role,
        "id": server_id,
        "address": address,
        "pid": os.getpid(),
        "started_unix_ms": int(time.time() * 1000),
    }
    write_file_atomic(directory / SERVER_FILE, json.dumps(record, indent=2).encode() + b"\n")


async def wait_for_stop_signal() -> str:
    """Wait for SIGTERM or SIGINT and return its name."""
    loop = asyncio.get_running_loop()
    stopped: asyncio.Future[str] = loop.create_future()

    def on_signal(signum: int) -> None:
        if not stopped.done():
            stopped.set_result(signal.Signals(signum).name)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    return await stopped
