"""store-metaserver: the sharded metadata service and cluster map authority."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import sys
import time
import uuid
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc.aio
import rocksdict

from metaserver.catalog import BucketCatalog, BucketMirror, Buckets
from metaserver.follower import PrimaryLink
from metaserver.gc import GarbageCollector, GcSettings
from metaserver.membership import FailureTimeouts, Membership
from metaserver.meta_scrub import MetaScrubber, MetaScrubSettings
from metaserver.repair import Repairer, RepairSettings
from metaserver.rocks import RocksEnv
from metaserver.service import MetaService, ServiceSettings
from metaserver.shard_host import ShardHost
from metaserver.shard_move import MOVE_LEASE_S
from metaserver.users import UserDirectory
from store import callstream, scheme
from store._pb import common_pb2 as pb
from store._pb import meta_pb2_grpc
from store.callstream import StreamedHandlers
from store.channels import META_SERVICE
from store.durable import write_file_atomic
from store.errors import InvalidArgument
from store.limits import (
    DEFAULT_CHUNK_SIZE_BYTES,
    DEFAULT_INLINE_MAX_BYTES,
    DEFAULT_SHARD_COUNT,
    MAX_CHUNK_SIZE_BYTES,
    MAX_INLINE_MAX_BYTES,
    MIN_CHUNK_SIZE_BYTES,
)
from store.log import LEVELS, setup_logging
from store.memory import tune_gc, tune_malloc
from store.serving import (
    add_loop_argument,
    loop_name,
    run_on_loop,
    start_grpc_server,
    stop_grpc_server,
    wait_for_stop_signal,
    write_server_file,
)
from store.shardmap import format_shard_ranges, parse_shard_ranges

log = logging.getLogger("metaserver")

IDENTITY_FILE = "metaserver.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="store-metaserver", description=__doc__)
    parser.add_argument("--dir", required=True, type=Path, help="directory for the RocksDB shards")
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
    parser.add_argument("--id", default=None, help="metaserver id (default: generated and kept)")
    parser.add_argument(
        "--shard-count",
        type=int,
        default=DEFAULT_SHARD_COUNT,
        help="total metadata shards in the cluster, fixed when it is created",
    )
    parser.add_argument(
        "--shards", default=None, help="shards this process serves, like 0-7 (default: all)"
    )
    parser.add_argument(
        "--primary",
        default=None,
        help="HOST:PORT of the primary metaserver; makes this process a secondary that serves "
        "--shards and follows the primary's bucket catalog and cluster map",
    )
    parser.add_argument(
        "--primary-heartbeat-s",
        type=float,
        default=1.0,
        help="seconds between a secondary's heartbeats to the primary",
    )
    parser.add_argument(
        "--chunk-size-bytes",
        type=int,
        default=DEFAULT_CHUNK_SIZE_BYTES,
        help="default chunk size of new objects",
    )
    parser.add_argument(
        "--inline-max-bytes",
        type=int,
        default=DEFAULT_INLINE_MAX_BYTES,
        help="objects up to this size are stored in the metadata record",
    )
    parser.add_argument(
        "--default-scheme",
        default=scheme.AUTO,
        help="protection of buckets created without a scheme: ec:K+M, rep:N, or auto (4+2 "
        "from seven failure domains, 2+1 from three, else one copy per domain)",
    )
    parser.add_argument(
        "--dataserver-suspect-s",
        type=float,
        default=3.0,
        help="seconds without a heartbeat before a dataserver is marked suspect and gets no "
        "new chunks; below --dataserver-timeout-s and above the dataservers' "
        "--heartbeat-interval-s",
    )
    parser.add_argument(
        "--dataserver-timeout-s",
        type=float,
        default=10.0,
        help="seconds without a heartbeat before a dataserver is marked down",
    )
    parser.add_argument(
        "--dataserver-out-s",
        type=float,
        default=600.0,
        help="seconds a dataserver stays down before it is marked out: its chunks are to be "
        "rebuilt elsewhere and it no longer counts toward the cluster size",
    )
    parser.add_argument(
        "--gc-interval-s", type=float, default=5.0, help="seconds between garbage collection passes"
    )
    parser.add_argument(
        "--gc-delay-s",
        type=float,
        default=60.0,
        help="seconds replaced or deleted chunks are kept for running readers",
    )
    parser.add_argument(
        "--upload-grace-s",
        type=float,
        default=3600.0,
        help="seconds before an uncommitted upload is abandoned and its chunks deleted",
    )
    parser.add_argument(
        "--upload-settle-s",
        type=float,
        default=60.0,
        help="seconds after deleting an abandoned upload's chunks before deleting them once "
        "more, to catch chunk writes that were still running",
    )
    parser.add_argument(
        "--repair-interval-s",
        type=float,
        default=5.0,
        help="seconds between repair passes over this metaserver's shards",
    )
    parser.add_argument(
        "--repair-bandwidth-bytes-s",
        type=int,
        default=64 * 1024 * 1024,
        help="bytes per second repair may read and write (0: no limit)",
    )
    parser.add_argument(
        "--shard-move-lease-s",
        type=int,
        default=MOVE_LEASE_S,
        help="seconds a shard move may hold the shard's writes (primary only); a move not "
        "finished by then is abandoned and the shard serves writes at its source again",
    )
    parser.add_argument(
        "--repair-intent-s",
        type=float,
        default=3600.0,
        help="seconds before the chunks of a repair that never finished are deleted; a repair "
        "of one object must finish within half of it",
    )
    parser.add_argument(
        "--meta-scrub-interval-s",
        type=float,
        default=86400.0,
        help="seconds between passes that check every chunk a layout names exists on its "
        "dataserver (0: never)",
    )
    parser.add_argument(
        "--meta-scrub-chunks-s",
        type=float,
        default=20_000.0,
        help="chunks per second the metadata scrub checks at most",
    )
    add_loop_argument(parser)
    parser.add_argument("--log-level", default="info", choices=LEVELS)
    return parser.parse_args(argv)


def validate(args: argparse.Namespace) -> None:
    """Raise InvalidArgument naming the first bad flag, its value and its bound."""
    checks = [
        ("--chunk-size-bytes", args.chunk_size_bytes, MIN_CHUNK_SIZE_BYTES, MAX_CHUNK_SIZE_BYTES),
        (
            "--inline-max-bytes",
            args.inline_max_bytes,
            0,
            min(MAX_INLINE_MAX_BYTES, args.chunk_size_bytes - 1),
        ),
    ]
    try:
        scheme.check(args.default_scheme)
    except InvalidArgument as error:
        raise InvalidArgument(f"--default-scheme: {error}") from None
    for flag, value, low, high in checks:
        if not low <= value <= high:
            raise InvalidArgument(f"{flag} {value} must be between {low} and {high}")
    failure_timeouts(args).validate()
    if args.meta_scrub_interval_s < 0:
        raise InvalidArgument(
            f"--meta-scrub-interval-s {args.meta_scrub_interval_s} must not be negative"
        )
    if args.meta_scrub_chunks_s <= 0:
        raise InvalidArgument(f"--meta-scrub-chunks-s {args.meta_scrub_chunks_s} must be positive")
    if args.repair_bandwidth_bytes_s < 0:
        raise InvalidArgument(
            f"--repair-bandwidth-bytes-s {args.repair_bandwidth_bytes_s} must not be negative"
        )
    for flag, value in (
        ("--repair-interval-s", args.repair_interval_s),
        ("--repair-intent-s", args.repair_intent_s),
        ("--gc-interval-s", args.gc_interval_s),
        ("--upload-grace-s", args.upload_grace_s),
        ("--upload-settle-s", args.upload_settle_s),
        ("--shard-move-lease-s", args.shard_move_lease_s),
    ):
        if value <= 0:
            raise InvalidArgument(f"{flag} {value} must be positive")
    if args.gc_delay_s < 0:
        raise InvalidArgument(f"--gc-delay-s {args.gc_delay_s} must not be negative")


def failure_timeouts(args: argparse.Namespace) -> FailureTimeouts:
    return FailureTimeouts(
        suspect_s=args.dataserver_suspect_s,
        down_s=args.dataserver_timeout_s,
        out_s=args.dataserver_out_s,
    )


def load_identity(directory: Path, wanted_id: str | None) -> str:
    path = directory / IDENTITY_FILE
    if path.exists():
        stored = str(json.loads(path.read_text())["id"])
        if wanted_id and wanted_id != stored:
            raise InvalidArgument(f"--id {wanted_id} does not match id {stored} stored in {path}")
        return stored
    server_id = wanted_id or f"ms-{uuid.uuid4().hex[:12]}"
    record = {"id": server_id, "created_unix_ms": int(time.time() * 1000)}
    write_file_atomic(path, json.dumps(record).encode() + b"\n")
    return server_id


def cluster_config(system_db: rocksdict.Rdict, args: argparse.Namespace) -> pb.ClusterMap:
    """Load the cluster's fixed settings, creating them on the first start."""
    stored = Membership.load_config(system_db)
    wanted = pb.ClusterMap(
        shard_count=args.shard_count,
        chunk_size_bytes=args.chunk_size_bytes,
        inline_max_bytes=args.inline_max_bytes,
        default_scheme=args.default_scheme,
    )
    if stored is None:
        wanted.cluster_id = uuid.uuid4().hex
        Membership.store_config(system_db, wanted)
        log.info("created cluster id=%s shards=%d", wanted.cluster_id, wanted.shard_count)
        return wanted
    if stored.shard_count != args.shard_count:
        raise InvalidArgument(
            f"--shard-count {args.shard_count} differs from the {stored.shard_count} shards this "
            f"cluster was created with in {args.dir}; the shard count cannot change"
        )
    wanted.cluster_id = stored.cluster_id
    if wanted != stored:
        Membership.store_config(system_db, wanted)
        log.info(
            "cluster defaults changed chunk_size=%d inline_max=%d default_scheme=%s",
            wanted.chunk_size_bytes,
            wanted.inline_max_bytes,
            wanted.default_scheme,
        )
    return wanted


async def serve(args: argparse.Namespace) -> None:
    args.dir.mkdir(parents=True, exist_ok=True)
    server_id = load_identity(args.dir, args.id)
    env = RocksEnv()
    system_db = env.open(args.dir / "system")
    flag_shards = parse_shard_ranges(args.shards or f"0-{args.shard_count - 1}", args.shard_count)
    executor = ThreadPoolExecutor(
        max_workers=min(max(len(flag_shards), 4), 32), thread_name_prefix="shard-write"
    )
    info = pb.MetaserverInfo(id=server_id, primary=args.primary is None)
    host = ShardHost(args.dir, env, executor, system_db, info, args.shard_count)
    host.open_initial(flag_shards)
    shards = host.serving

    buckets: Buckets
    cluster: Membership | PrimaryLink
    users: UserDirectory | None = None
    if args.primary is None:
        buckets = BucketCatalog(system_db)
        cluster = Membership(system_db, cluster_config(system_db, args), failure_timeouts(args))
        users = UserDirectory(system_db)
        users.ensure_root()
    else:
        buckets = BucketMirror()
        cluster = PrimaryLink(args.primary, info, buckets, args.primary_heartbeat_s, 5.0)

    gc_settings = GcSettings(
        interval_s=args.gc_interval_s,
        delay_s=args.gc_delay_s,
        upload_grace_s=args.upload_grace_s,
        upload_settle_s=args.upload_settle_s,
    )
    collector = GarbageCollector(shards, cluster, gc_settings)
    repair_settings = RepairSettings(
        interval_s=args.repair_interval_s,
        bandwidth_bytes_s=args.repair_bandwidth_bytes_s,
        intent_s=args.repair_intent_s,
    )
    repairer = Repairer(shards, cluster, repair_settings, args.gc_delay_s)
    scrubber = MetaScrubber(
        shards,
        cluster,
        MetaScrubSettings(args.meta_scrub_interval_s, args.meta_scrub_chunks_s),
        repairer.wake,
    )
    repairer.scrubber = scrubber
    service = MetaService(
        server_id,
        host,
        buckets,
        cluster,
        collector,
        ServiceSettings(
            gc_delay_s=args.gc_delay_s,
            started_unix_ms=int(time.time() * 1000),
            shard_move_lease_s=args.shard_move_lease_s,
        ),
        users,
        repairer,
    )
    streams = StreamedHandlers()

    def register(grpc_server: grpc.aio.Server) -> None:
        meta_pb2_grpc.add_MetaServiceServicer_to_server(service, grpc_server)
        callstream.register_service(grpc_server, streams, META_SERVICE, service)

    server, address = await start_grpc_server(args.listen, args.advertise, register)
    service.address = info.address = address

    tasks = []
    follow_map = functools.partial(host.reconcile, server_id=server_id)
    if isinstance(cluster, Membership):
        cluster.register_metaserver(info)
        tasks.append(asyncio.create_task(watch_dataservers(cluster), name="failure-detector"))
    else:
        await cluster.register(deadline_s=60.0)
        check_follower_config(cluster.config, args)
        cluster.on_map = follow_map
        tasks.append(asyncio.create_task(cluster.run(), name="primary-link"))
    follow_map(cluster.cluster_map())
    host.start()
    # Background work starts once the map is known: with an empty one, a secondary's repair
    # would take every chunk for lost. Repair and scrub also give the dataservers the
    # suspect time to come back after a cluster restart, so they do not report chunks on
    # dataservers that are still starting as unreadable.
    repairer.start(address)
    grace_s = args.dataserver_suspect_s
    tasks += [
        asyncio.create_task(collector.run(), name="gc"),
        asyncio.create_task(_after(grace_s, repairer.run()), name="repair"),
        asyncio.create_task(_after(grace_s, scrubber.run()), name="metadata-scrub"),
    ]
    write_server_file(args.dir, "metaserver", server_id, address)
    log.info(
        "metaserver started id=%s address=%s dir=%s shards=%s of %d role=%s epoch=%d loop=%s",
        server_id,
        address,
        args.dir,
        format_shard_ranges(sorted(shards)) or "none",
        args.shard_count,
        "primary" if info.primary else f"secondary of {args.primary}",
        cluster.epoch,
        loop_name(),
    )

    signal_name = await wait_for_stop_signal()
    log.info("metaserver stopping id=%s on %s", server_id, signal_name)
    await stop_grpc_server(server, streams)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await host.close()
    await collector.close()
    await repairer.close()
    await scrubber.close()
    await service.close()
    if isinstance(cluster, PrimaryLink):
        await cluster.close()
    executor.shutdown(wait=True)
    system_db.close()
    log.info("metaserver stopped id=%s", server_id)


async def _after(delay_s: float, work: Coroutine[Any, Any, None]) -> None:
    await asyncio.sleep(delay_s)
    await work


def check_follower_config(config: pb.ClusterMap, args: argparse.Namespace) -> None:
    """Raise InvalidArgument when a secondary's flags disagree with the primary's cluster."""
    if config.shard_count != args.shard_count:
        raise InvalidArgument(
            f"--shard-count {args.shard_count} differs from the primary's {config.shard_count}"
        )


async def watch_dataservers(membership: Membership) -> None:
    """Mark dataservers suspect, down and out as their heartbeats stay missing."""
    # A state changes at most a quarter of the suspect time after its deadline.
    interval_s = min(1.0, membership.timeouts.suspect_s / 4)
    while True:
        await asyncio.sleep(interval_s)
        membership.check_timeouts()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(args.log_level)
    tune_malloc()
    tune_gc()
    try:
        validate(args)
        run_on_loop(serve(args), args.loop)
    except InvalidArgument as exc:
        log.error("%s", exc)
        sys.exit(2)


if __name__ == "__main__":
    main()
