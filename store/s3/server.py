"""store-s3: the S3 gateway process.

    store-s3 --listen 127.0.0.1:9000 --meta 127.0.0.1:7000 [--domain s3.local] [--workers 4]

The gateway keeps no state, so any number can run side by side. With --workers N,
one supervisor process starts N worker processes that each bind the same port with
SO_REUSEPORT, so the kernel spreads connections over them. The supervisor restarts
a worker that dies and stops them all on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import multiprocessing.synchronize
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from aiohttp import web

from store.client import AsyncClient
from store.errors import StoreError, Unavailable
from store.log import LEVELS, setup_logging
from store.s3.app import handle
from store.s3.config import DEFAULT_REGION, DEFAULT_WINDOW_CHUNKS, GatewayConfig
from store.s3.context import Gateway
from store.s3.credentials import DEFAULT_TTL_S, CredentialCache
from store.s3.protocol import S3Server
from store.serving import (
    add_loop_argument,
    loop_name,
    run_on_loop,
    split_address,
    wait_for_stop_signal,
    write_server_file,
)

log = logging.getLogger("store.s3")

LISTEN_BACKLOG = 1024
CONNECT_TIMEOUT_S = 30.0
WORKER_START_TIMEOUT_S = 30.0
WORKER_STOP_TIMEOUT_S = 10.0
# Seconds in-flight requests get to finish after a stop signal.
SHUTDOWN_TIMEOUT_S = 5.0
SUPERVISE_INTERVAL_S = 0.5
SERVER_ROLE = "s3"


def listening_socket(host: str, port: int, *, listen: bool = True) -> socket.socket:
    """Bind (host, port) with SO_REUSEPORT, so other workers can bind the same port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host.strip("[]"), port))
        if listen:
            sock.listen(LISTEN_BACKLOG)
    except OSError as error:
        sock.close()
        raise Unavailable(
            f"cannot listen on {host}:{port}: {error.strerror}; is the port in use?"
        ) from None
    sock.setblocking(False)
    return sock


async def connect_client(config: GatewayConfig) -> AsyncClient:
    """Connect to the metaserver, waiting up to CONNECT_TIMEOUT_S for it to respond."""
    client = AsyncClient(
        config.meta, timeout_s=config.timeout_s, window_chunks=config.window_chunks
    )
    deadline_s = time.monotonic() + CONNECT_TIMEOUT_S
    while True:
        try:
            await client.connect()
            return client
        except Unavailable as error:
            if time.monotonic() > deadline_s:
                await client.close()
                raise Unavailable(
                    f"no metaserver responded at {config.meta} within {CONNECT_TIMEOUT_S:.0f}s: "
                    f"{error}; check --meta"
                ) from None
            log.info("waiting for the metaserver at %s: %s", config.meta, error)
            await asyncio.sleep(0.5)


async def serve(config: GatewayConfig, sock: socket.socket, on_ready: Callable[[], None]) -> None:
    """Serve S3 on `sock` until SIGTERM or SIGINT."""
    client = await connect_client(config)
    gateway = Gateway(client, CredentialCache(client, config.credential_ttl_s), config)
    server = S3Server(partial(handle, gateway))
    runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        site = web.SockSite(runner, sock, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await site.start()
        log.info(
            "s3 gateway listening on %s pid=%d meta=%s domain=%s loop=%s",
            config.listen,
            os.getpid(),
            config.meta,
            config.domain or "-",
            loop_name(),
        )
        on_ready()
        stop = await wait_for_stop_signal()
        log.info("received %s; stopping the s3 gateway pid=%d", stop, os.getpid())
    finally:
        await runner.cleanup()
        await client.close()


def run_loop(config: GatewayConfig, sock: socket.socket, on_ready: Callable[[], None]) -> None:
    """Run `serve` on the event loop that `config.loop` names."""
    run_on_loop(serve(config, sock, on_ready), config.loop)


# One process.


def run_single(config: GatewayConfig) -> None:
    host, port = split_address(config.listen)
    sock = listening_socket(host, port)
    address = _address_of(host, sock)

    def on_ready() -> None:
        if config.directory is not None:
            write_server_file(config.directory, SERVER_ROLE, f"s3-{address}", address)

    run_loop(_with_listen(config, address), sock, on_ready)


# A supervisor and its workers.


def worker_main(
    config: GatewayConfig, index: int, ready: multiprocessing.synchronize.Event
) -> None:
    """Run one worker: bind the shared port and serve until stopped."""
    setup_logging(config.log_level)
    host, port = split_address(config.listen)
    sock = listening_socket(host, port)
    log.info("worker %d pid=%d started", index, os.getpid())
    run_loop(config, sock, ready.set)


class Supervisor:
    """Starts the workers, restarts those that die, stops them all on a signal."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[multiprocessing.process.BaseProcess] = []
        self.stop_requested = False

    def start_worker(self, index: int) -> multiprocessing.process.BaseProcess:
        ready = self.context.Event()
        process = self.context.Process(
            target=worker_main, args=(self.config, index, ready), name=f"s3-worker-{index}"
        )
        process.start()
        if not ready.wait(WORKER_START_TIMEOUT_S):
            process.terminate()
            raise Unavailable(
                f"s3 worker {index} pid={process.pid} did not start within "
                f"{WORKER_START_TIMEOUT_S:.0f}s; see its log above"
            )
        return process

    def run(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        while not self.stop_requested:
            for index, process in enumerate(self.workers):
                if not process.is_alive() and not self.stop_requested:
                    log.error(
                        "s3 worker %d pid=%s exited with code %s; starting it again",
                        index,
                        process.pid,
                        process.exitcode,
                    )
                    self.workers[index] = self.start_worker(index)
            time.sleep(SUPERVISE_INTERVAL_S)
        self.stop()

    def _on_signal(self, signum: int, _frame: object) -> None:
        log.info(
            "received %s; stopping %d s3 workers", signal.Signals(signum).name, len(self.workers)
        )
        self.stop_requested = True

    def stop(self) -> None:
        for process in self.workers:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process in self.workers:
            process.join(WORKER_STOP_TIMEOUT_S)
            if process.is_alive():
                log.warning("s3 worker pid=%s ignored SIGTERM; killing it", process.pid)
                process.kill()
                process.join(WORKER_STOP_TIMEOUT_S)


def run_workers(config: GatewayConfig) -> None:
    host, port = split_address(config.listen)
    # Hold the port (bound, not listening, so it gets no connections) until the workers
    # listen on it. With port 0 this also picks the port they share.
    placeholder = listening_socket(host, port, listen=False)
    address = _address_of(host, placeholder)
    config = _with_listen(config, address)
    supervisor = Supervisor(config)
    try:
        for index in range(config.workers):
            supervisor.workers.append(supervisor.start_worker(index))
    except BaseException:
        supervisor.stop()
        raise
    finally:
        placeholder.close()
    log.info("s3 gateway listening on %s with %d workers", address, config.workers)
    if config.directory is not None:
        write_server_file(config.directory, SERVER_ROLE, f"s3-{address}", address)
    supervisor.run()


def _address_of(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    return f"{host}:{port}"


def _with_listen(config: GatewayConfig, address: str) -> GatewayConfig:
    fields = {**config.__dict__, "listen": address}
    return GatewayConfig(**fields)


# Command line.


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="store-s3", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--listen",
        required=True,
        metavar="HOST:PORT",
        help="address to serve S3 on (port 0 picks one)",
    )
    parser.add_argument(
        "--meta", required=True, metavar="HOST:PORT[,HOST:PORT]", help="metaserver address(es)"
    )
    parser.add_argument(
        "--domain",
        default=None,
        help="base domain of virtual-hosted-style requests (BUCKET.DOMAIN)",
    )
    parser.add_argument(
        "--region",
        default=DEFAULT_REGION,
        help=f"region this endpoint reports (default: {DEFAULT_REGION})",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes sharing the port (default: 1)"
    )
    add_loop_argument(parser)
    parser.add_argument(
        "--window-chunks",
        type=int,
        default=DEFAULT_WINDOW_CHUNKS,
        help=f"chunks one PUT or GET keeps in flight (default: {DEFAULT_WINDOW_CHUNKS})",
    )
    parser.add_argument(
        "--credential-ttl-s",
        type=float,
        default=DEFAULT_TTL_S,
        help=f"seconds a looked-up access key is cached (default: {DEFAULT_TTL_S:g})",
    )
    parser.add_argument(
        "--timeout-s",
        type=float,
        default=30.0,
        help="seconds a metadata call may take before the request fails with 503 (default: 30)",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="directory for server.json, written once the gateway listens",
    )
    parser.add_argument(
        "--log-level", default="info", choices=LEVELS, help="log level (debug logs every request)"
    )
    return parser


def config_from_args(args: argparse.Namespace) -> GatewayConfig:
    split_address(args.listen)
    for flag, value in (("--workers", args.workers), ("--window-chunks", args.window_chunks)):
        if value < 1:
            raise StoreError(f"{flag} {value} must be at least 1")
    return GatewayConfig(
        listen=args.listen,
        meta=args.meta,
        domain=args.domain.strip(".").lower() if args.domain else None,
        region=args.region,
        workers=args.workers,
        log_level=args.log_level,
        loop=args.loop,
        directory=args.dir,
        window_chunks=args.window_chunks,
        credential_ttl_s=args.credential_ttl_s,
        timeout_s=args.timeout_s,
    )


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        config = config_from_args(args)
        if config.directory is not None:
            config.directory.mkdir(parents=True, exist_ok=True)
        if config.workers == 1:
            run_single(config)
        else:
            run_workers(config)
    except StoreError as error:
        print(f"store-s3: error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
