"""storectl: run a local cluster and work with buckets and objects from the shell.

    storectl cluster up --detach          start a cluster in .store-dev
    storectl node ls                      list the dataservers and their state
    storectl node drain ID                move every chunk off a dataserver
    storectl shard ls                     list metadata shards and their metaservers
    storectl shard move 5 meta-1          move shard 5 to the local metaserver meta-1
    storectl bucket create photos
    storectl put cat.jpg photos/cat.jpg
    storectl ls photos
    storectl cluster down

Object commands find the metaserver through --meta HOST:PORT, else --dir DIR
(its cluster.json), else the STORE_META environment variable, else
.store-dev/cluster.json.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from store import cli_cluster, cli_nodes, cli_objects, cli_shards, cli_users
from store.cluster import START_TIMEOUT_S, STOP_TIMEOUT_S
from store.discovery import DEFAULT_CLUSTER_DIR, META_ENV_VAR
from store.errors import StoreError, Unavailable
from store.log import LEVELS, setup_logging

log = logging.getLogger("storectl")

PROG = "storectl"
STATUS_TIMEOUT_S = 10.0
DIR_HELP = f"cluster directory (default: {DEFAULT_CLUSTER_DIR})"
Handler = Callable[[argparse.Namespace], int]


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must not be negative")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be a positive number of seconds")
    return value


# Parser.


def add_common(parser: argparse.ArgumentParser, timeout_help: str, handler: Handler) -> None:
    parser.add_argument("--timeout-s", type=positive_float, default=None, help=timeout_help)
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log the SDK's progress to stderr"
    )
    parser.set_defaults(handler=handler, parser=parser)


def add_address(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--meta", metavar="HOST:PORT", help="metaserver address")
    group.add_argument(
        "--dir",
        type=Path,
        default=None,
        help=f"cluster directory whose cluster.json names the metaserver (default: the "
        f"metaserver in ${META_ENV_VAR} when it is set, else {DEFAULT_CLUSTER_DIR})",
    )


def add_cluster_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cluster = commands.add_parser("cluster", help="start, stop and inspect a local cluster")
    actions = cluster.add_subparsers(dest="action", required=True, metavar="ACTION")

    up = actions.add_parser(
        "up", help="start metaservers, dataservers and an S3 gateway on 127.0.0.1"
    )
    up.add_argument("--dir", type=Path, default=DEFAULT_CLUSTER_DIR, help=DIR_HELP)
    up.add_argument(
        "--dataservers",
        type=non_negative_int,
        default=None,
        help="dataserver processes (default: as many as last ran in DIR, else "
        f"{cli_cluster.DEFAULT_DATASERVERS})",
    )
    up.add_argument(
        "--shards",
        type=positive_int,
        default=None,
        help="metadata shards, fixed when the cluster is created (default: as in DIR, else "
        f"{cli_cluster.DEFAULT_SHARDS})",
    )
    up.add_argument(
        "--metaservers",
        type=positive_int,
        default=None,
        help="metaserver processes sharing the shards; the first is the primary (default: as "
        "many as last ran in DIR, else 1)",
    )
    up.add_argument(
        "--detach",
        action="store_true",
        help="exit once every server responds and leave the cluster running",
    )
    s3 = up.add_mutually_exclusive_group()
    s3.add_argument(
        "--s3",
        metavar="HOST:PORT",
        default=None,
        help="address of the S3 gateway (default: as in DIR, else 127.0.0.1 and a free port)",
    )
    s3.add_argument("--no-s3", action="store_true", help="start no S3 gateway")
    up.add_argument(
        "--s3-workers",
        type=positive_int,
        default=1,
        help="worker processes of the S3 gateway, sharing its port (default: 1)",
    )
    up.add_argument("--log-level", default="info", choices=LEVELS, help="servers' log level")
    add_common(up, f"seconds to wait for every server (default: {START_TIMEOUT_S:.0f})", _up)

    down = actions.add_parser("down", help="stop the cluster recorded in DIR/cluster.json")
    down.add_argument("--dir", type=Path, default=DEFAULT_CLUSTER_DIR, help=DIR_HELP)
    add_common(
        down,
        f"seconds each server gets to exit after SIGTERM before SIGKILL "
        f"(default: {STOP_TIMEOUT_S:.0f})",
        _down,
    )

    env = actions.add_parser(
        "env", help='print exports for the aws CLI and storectl: eval "$(storectl cluster env)"'
    )
    env.add_argument("--dir", type=Path, default=DEFAULT_CLUSTER_DIR, help=DIR_HELP)
    # It reads only DIR/cluster.json, so it takes neither a timeout nor --verbose.
    env.set_defaults(handler=cli_cluster.cluster_env, parser=env, timeout_s=None, verbose=False)

    status = actions.add_parser("status", help="show the cluster map and per-shard figures")
    add_address(status)
    status.add_argument("--json", action="store_true", help="print JSON instead of tables")
    add_common(status, f"seconds each RPC may take (default: {STATUS_TIMEOUT_S:.0f})", _status)


def add_node_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    node = commands.add_parser("node", help="list, add, drain and remove dataservers")
    actions = node.add_subparsers(dest="action", required=True, metavar="ACTION")
    timeout_help = f"seconds the command may take (default: {cli_nodes.DEFAULT_TIMEOUT_S:.0f})"
    add = actions.add_parser(
        "add",
        help="start one more dataserver in the local cluster of DIR (on another host, start "
        "store-dataserver --meta ADDRESS there instead)",
    )
    add.add_argument("--domain", help="failure domain label (default: the dataserver's name)")
    add.add_argument("--dir", type=Path, default=DEFAULT_CLUSTER_DIR, help=DIR_HELP)
    add_common(add, timeout_help, cli_nodes.node_add)
    drain = actions.add_parser(
        "drain", help="move every chunk off a dataserver and give it no new ones"
    )
    drain.add_argument("id", metavar="ID", help="dataserver id, as `storectl node ls` shows")
    drain.add_argument("--cancel", action="store_true", help="stop draining")
    remove = actions.add_parser(
        "remove",
        aliases=["rm"],
        help="forget a stopped dataserver; rejected while it stores chunks that layouts name",
    )
    remove.add_argument("id", metavar="ID", help="dataserver id, as `storectl node ls` shows")
    for parser, handler in ((drain, cli_nodes.node_drain), (remove, cli_nodes.node_remove)):
        add_address(parser)
        add_common(parser, timeout_help, handler)
    listing = actions.add_parser(
        "ls", help="list dataservers: state, seconds since heartbeat, capacity, chunks"
    )
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_address(listing)
    add_common(
        listing,
        f"seconds the command may take (default: {cli_nodes.DEFAULT_TIMEOUT_S:.0f})",
        cli_nodes.node_ls,
    )


def add_shard_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    shard = commands.add_parser("shard", help="list metadata shards and move them")
    actions = shard.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "ls", help="list shards: the metaserver serving each, its state, keys and size"
    )
    move = actions.add_parser(
        "move",
        help="move a shard to another metaserver; its writes wait while its data is copied",
    )
    move.add_argument("shard", metavar="SHARD", type=non_negative_int, help="shard number")
    move.add_argument(
        "target",
        metavar="TO",
        help="id or address of the metaserver to serve the shard (or, in a local cluster, its "
        "name such as meta-1)",
    )
    for parser, handler, timeout_s in (
        (listing, cli_shards.shard_ls, cli_shards.DEFAULT_LS_TIMEOUT_S),
        (move, cli_shards.shard_move, cli_shards.DEFAULT_MOVE_TIMEOUT_S),
    ):
        parser.add_argument("--json", action="store_true", help="print JSON instead of text")
        add_address(parser)
        add_common(parser, f"seconds the command may take (default: {timeout_s:.0f})", handler)


def add_bucket_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    metadata_timeout = (
        f"seconds the command may take (default: {cli_objects.DEFAULT_TIMEOUT_S:.0f})"
    )
    bucket = commands.add_parser("bucket", help="create, delete and list buckets")
    actions = bucket.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a bucket")
    create.add_argument("name", metavar="NAME")
    create.add_argument(
        "--scheme",
        default="",
        help="protection of the bucket's objects, fixed at creation: ec:K+M (erasure coding, "
        "such as ec:4+2), rep:N (N copies) or auto (default: the cluster's default scheme)",
    )
    remove = actions.add_parser("rm", help="delete an empty bucket")
    remove.add_argument("name", metavar="NAME")
    listing = actions.add_parser("ls", help="list buckets")
    for parser, handler in (
        (create, cli_objects.bucket_create),
        (remove, cli_objects.bucket_rm),
        (listing, cli_objects.bucket_ls),
    ):
        add_address(parser)
        add_common(parser, metadata_timeout, handler)


def add_user_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    timeout = f"seconds the command may take (default: {cli_users.DEFAULT_TIMEOUT_S:.0f})"
    user = commands.add_parser("user", help="add, list and remove S3 users and their keys")
    actions = user.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="create a user and print its new key pair once")
    add.add_argument("name", metavar="NAME", help="user name: 1 to 64 letters, digits or _.@+=,-")
    listing = actions.add_parser("ls", help="list users and their access keys")
    remove = actions.add_parser(
        "rm",
        help="remove a user and its keys; gateways reject the keys once their cache of "
        "them expires (store-s3 --credential-ttl-s, 5 s by default)",
    )
    remove.add_argument("name", metavar="NAME")
    for parser, handler in (
        (add, cli_users.user_add),
        (listing, cli_users.user_ls),
        (remove, cli_users.user_rm),
    ):
        parser.add_argument("--json", action="store_true", help="print JSON")
        add_address(parser)
        add_common(parser, timeout, handler)


def add_object_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    metadata_timeout = (
        f"seconds the command may take (default: {cli_objects.DEFAULT_TIMEOUT_S:.0f})"
    )
    transfer_timeout = (
        "seconds the whole transfer may take (default: no limit; each chunk transfer still "
        "times out on its own)"
    )
    object_key = cli_objects.parse_object_key

    ls = commands.add_parser("ls", help="list keys under BUCKET/PREFIX, or buckets")
    ls.add_argument(
        "path", nargs="?", type=cli_objects.parse_object_path, metavar="BUCKET[/PREFIX]"
    )
    ls.add_argument(
        "-r", "--recursive", action="store_true", help="list every key instead of grouping at /"
    )
    add_address(ls)
    add_common(ls, metadata_timeout + " for each page", cli_objects.ls)

    put = commands.add_parser("put", help="upload FILE (- for stdin) as BUCKET/KEY")
    put.add_argument("file", metavar="FILE")
    put.add_argument(
        "path",
        type=cli_objects.parse_object_path,
        metavar="BUCKET/KEY",
        help="a KEY that is empty or ends with / gets FILE's name appended",
    )
    put.add_argument("--content-type", default="", help="default: guessed from the key")
    add_address(put)
    add_common(put, transfer_timeout, cli_objects.put)

    get = commands.add_parser("get", help="download BUCKET/KEY to FILE (- for stdout)")
    get.add_argument("path", type=object_key, metavar="BUCKET/KEY")
    get.add_argument("file", metavar="FILE", help="a file, a directory, or - for stdout")
    add_address(get)
    add_common(get, transfer_timeout, cli_objects.get)

    stat = commands.add_parser("stat", help="show an object's metadata")
    stat.add_argument("path", type=object_key, metavar="BUCKET/KEY")
    add_address(stat)
    add_common(stat, metadata_timeout, cli_objects.stat)

    rm = commands.add_parser("rm", help="delete an object")
    rm.add_argument("path", type=object_key, metavar="BUCKET/KEY")
    add_address(rm)
    add_common(rm, metadata_timeout, cli_objects.rm)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_cluster_commands(commands)
    add_node_commands(commands)
    add_shard_commands(commands)
    add_bucket_commands(commands)
    add_user_commands(commands)
    add_object_commands(commands)
    return parser


# Handlers that fill in defaults which depend on the command.


def _up(args: argparse.Namespace) -> int:
    args.timeout_s = args.timeout_s or START_TIMEOUT_S
    return cli_cluster.cluster_up(args)


def _down(args: argparse.Namespace) -> int:
    args.timeout_s = args.timeout_s or STOP_TIMEOUT_S
    return cli_cluster.cluster_down(args)


def _status(args: argparse.Namespace) -> int:
    args.timeout_s = args.timeout_s or STATUS_TIMEOUT_S
    return cli_cluster.cluster_status(args)


# Entry point.


def run(argv: list[str] | None = None) -> int:
    """Run one storectl command and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging("info" if args.verbose else "warning")
    try:
        status: int = args.handler(args)
        # Flush here so that a closed pipe raises inside this try, not at exit.
        sys.stdout.flush()
        return status
    except cli_objects.UsageError as error:
        command_parser: argparse.ArgumentParser = args.parser
        command_parser.error(str(error))
    except StoreError as error:
        lines = str(error).splitlines() or [type(error).__name__]
        print(f"{PROG}: error: {lines[0]}", file=sys.stderr)
        for line in lines[1:]:
            log.info("%s", line)
        placement = "placement needs" in str(error)
        if isinstance(error, Unavailable) and args.command != "cluster" and not placement:
            print(
                f"{PROG}: is the cluster running? `{PROG} cluster status` shows it; --meta or "
                "--dir choose which cluster to use",
                file=sys.stderr,
            )
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader closed the pipe, as `head` does. The "Note on SIGPIPE" in Python's signal
        # docs advises pointing stdout at devnull so that the flush at exit does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as error:
        # A local file that cannot be read or written, such as a missing folder.
        where = f": {error.filename}" if error.filename else ""
        print(f"{PROG}: error: {error.strerror or error}{where}", file=sys.stderr)
        return 1


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
