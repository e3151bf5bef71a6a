"""store-dataserver: stores chunks on local disk and serves them over gRPC."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
import uuid
from pathlib import Path

import grpc.aio

from dataserver.badchunks import BadChunkReporter
from dataserver.chunkstore import ChunkStore
from dataserver.heartbeat import Heartbeater
from dataserver.scrub import Scrubber
from dataserver.service import DataService
from store import callstream, datapath
from store._pb import data_pb2_grpc
from store.callstream import StreamedHandlers
from store.channels import DATA_SERVICE
from store.durable import write_file_atomic
from store.errors import InvalidArgument
from store.limits import MIB
from store.log import LEVELS, setup_logging
from store.memory import tune_malloc
from store.serving import (
    add_loop_argument,
    loop_name,
    run_on_loop,
    start_grpc_server,
    stop_grpc_server,
    wait_for_stop_signal,
    write_server_file,
)

log = logging.getLogger("dataserver")

IDENTITY_FILE = "dataserver.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="store-dataserver", description=__doc__)
    parser.add_argument("--dir", required=True, type=Path, help="directory for chunk files")
    parser.add_argument(
        "--listen",
        default="127.0.0.1:0",
        help="HOST:PORT to serve gRPC on; port 0 picks a free port",
    )
    parser.add_argument(
        "--advertise",
        default=None,
        help="HOST:PORT that clients use to reach this server (default: --listen)",
    )
    parser.add_argument(
        "--meta", required=True, help="HOST:PORT of the metaserver to register with"
    )
    parser.add_argument(
        "--id",
        default=None,
        help="dataserver id; generated and kept in DIR on first start when omitted",
    )
    parser.add_argument(
        "--domain", default="", help="failure domain label, such as the host or rack name"
    )
    parser.add_argument(
        "--capacity-bytes",
        type=int,
        default=0,
        help="bytes of chunk data to accept at most (0: the whole file system)",
    )
    parser.add_argument(
        "--reserve-bytes",
        type=int,
        default=64 << 20,
        help="free bytes to keep on the file system; writes beyond fail with RESOURCE_EXHAUSTED",
    )
    parser.add_argument(
        "--heartbeat-interval-s",
        type=float,
        default=1.0,
        help="seconds between heartbeats to the metaserver",
    )
    parser.add_argument(
        "--rpc-timeout-s",
        type=float,
        default=5.0,
        help="timeout in seconds of each call to the metaserver",
    )
    parser.add_argument(
        "--scrub-bandwidth-bytes-s",
        type=int,
        default=32 * MIB,
        help="bytes per second that scrub reads to verify chunk CRCs (default 32 MiB/s)",
    )
    parser.add_argument(
        "--scrub-interval-s",
        type=float,
        default=24 * 3600.0,
        help="seconds from the end of one scrub pass to the start of the next; 0 disables scrub",
    )
    add_loop_argument(parser)
    parser.add_argument("--log-level", default="info", choices=LEVELS)
    args = parser.parse_args(argv)
    if args.scrub_interval_s < 0:
        parser.error(
            f"--scrub-interval-s {args.scrub_interval_s} is negative; give seconds, or 0 to "
            "disable scrub"
        )
    if args.scrub_bandwidth_bytes_s <= 0:
        parser.error(
            f"--scrub-bandwidth-bytes-s {args.scrub_bandwidth_bytes_s} must be positive; "
            "disable scrub with --scrub-interval-s 0"
        )
    return args


def load_identity(directory: Path, wanted_id: str | None) -> str:
    """Return this dataserver's id, creating DIR/dataserver.json on the first start."""
    path = directory / IDENTITY_FILE
    if path.exists():
        stored = json.loads(path.read_text())["id"]
        if wanted_id and wanted_id != stored:
            raise InvalidArgument(
                f"--id {wanted_id} does not match id {stored} stored in {path}; use the stored "
                "id or a fresh directory"
            )
        return str(stored)
    dataserver_id = wanted_id or f"ds-{uuid.uuid4().hex[:12]}"
    record = {"id": dataserver_id, "created_unix_ms": int(time.time() * 1000)}
    write_file_atomic(path, json.dumps(record).encode() + b"\n")
    return dataserver_id


def start_scrubber(
    args: argparse.Namespace, store: ChunkStore, dataserver_id: str
) -> Scrubber | None:
    """Return the scrubber, or None when --scrub-interval-s is 0."""
    if args.scrub_interval_s == 0:
        log.info("scrub disabled by --scrub-interval-s 0")
        return None
    reporter = BadChunkReporter(args.meta, dataserver_id, args.rpc_timeout_s)
    return Scrubber(store, reporter, args.scrub_bandwidth_bytes_s, args.scrub_interval_s)


async def serve(args: argparse.Namespace) -> None:
    args.dir.mkdir(parents=True, exist_ok=True)
    dataserver_id = load_identity(args.dir, args.id)
    store = ChunkStore(args.dir, args.capacity_bytes, args.reserve_bytes)
    await asyncio.to_thread(store.recover)

    service = DataService(store, dataserver_id, "", args.domain)

    streams = StreamedHandlers()

    def register(grpc_server: grpc.aio.Server) -> None:
        data_pb2_grpc.add_DataServiceServicer_to_server(service, grpc_server)
        callstream.register_service(grpc_server, streams, DATA_SERVICE, service)
        datapath.register(
            grpc_server,
            streams,
            service.write,
            service.write_whole,
            service.read,
            service.read_blocks,
        )

    server, address = await start_grpc_server(args.listen, args.advertise, register)
    service.address = address
    write_server_file(args.dir, "dataserver", dataserver_id, address)
    log.info(
        "dataserver started id=%s address=%s dir=%s meta=%s loop=%s",
        dataserver_id,
        address,
        args.dir,
        args.meta,
        loop_name(),
    )

    heartbeater = Heartbeater(
        args.meta, service.info, args.heartbeat_interval_s, args.rpc_timeout_s
    )
    heartbeat_task = asyncio.create_task(heartbeater.run(), name="heartbeat")
    scrubber = start_scrubber(args, store, dataserver_id)
    service.scrubber = scrubber
    scrub_task = asyncio.create_task(scrubber.run(), name="scrub") if scrubber else None
    signal_name = await wait_for_stop_signal()
    log.info("dataserver stopping id=%s on %s", dataserver_id, signal_name)
    heartbeat_task.cancel()
    if scrub_task is not None and scrubber is not None:
        scrub_task.cancel()
        await asyncio.gather(scrub_task, return_exceptions=True)
        scrubber.close()
        await scrubber.reporter.close()
    await stop_grpc_server(server, streams)
    await heartbeater.close()
    service.close()
    log.info("dataserver stopped id=%s", dataserver_id)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(args.log_level)
    tune_malloc()
    try:
        run_on_loop(serve(args), args.loop)
    except InvalidArgument as exc:
        log.error("%s", exc)
        sys.exit(2)


if __name__ == "__main__":
    main()
