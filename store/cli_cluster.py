"""`storectl cluster up|down|status`: a local development cluster and its status."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from store.cluster import (
    CLUSTER_FILE,
    S3_RECORD_KEY,
    LocalCluster,
    ManagedProcess,
    StartupFailed,
    pid_alive,
)
from store.discovery import DEFAULT_CLUSTER_DIR, resolve_meta_address
from store.errors import InvalidArgument, StoreError, Unavailable
from store.s3.config import DEFAULT_REGION
from store.status import collect_status, format_status
from store.tables import format_table

log = logging.getLogger(__name__)

DEFAULT_DATASERVERS = 4
DEFAULT_SHARDS = 16
LOCK_FILE = "cluster.lock"
# How often a foreground cluster checks that its processes still run.
WATCH_INTERVAL_S = 1.0


# Processes recorded in cluster.json.


def process_cmdline(pid: int) -> list[str] | None:
    """Return the command line of `pid`, or None when /proc has no record of it."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="surrogateescape") for part in raw.split(b"\0") if part]


def is_recorded_process(process: ManagedProcess) -> bool:
    """Return True when the recorded pid runs and is still the command cluster.json recorded.

    The command check keeps `cluster down` from signalling an unrelated program that reused
    the pid after the server exited.
    """
    if not pid_alive(process.pid):
        return False
    if not Path("/proc").is_dir():
        # NOTE: without /proc (macOS) the pid alone identifies the process.
        return True
    cmdline = process_cmdline(process.pid)
    return cmdline is not None and _without_listen(cmdline) == _without_listen(process.args)


def _without_listen(args: list[str]) -> list[str]:
    """Drop the --listen value: cluster.json records the bound port where the command had 0."""
    if "--listen" not in args[:-1]:
        return args
    index = args.index("--listen")
    return args[:index] + args[index + 2 :]


def running_processes(cluster: LocalCluster) -> list[ManagedProcess]:
    return [p for p in cluster.processes if is_recorded_process(p)]


def load_previous(directory: Path) -> LocalCluster | None:
    """Return the cluster recorded in DIR/cluster.json, or None when there is none."""
    if not (directory / CLUSTER_FILE).exists():
        return None
    try:
        return LocalCluster.load(directory)
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidArgument(
            f"cannot read {directory / CLUSTER_FILE}: {exc!r}; remove it if no cluster runs there"
        ) from None


@contextlib.contextmanager
def directory_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on DIR so two `cluster up` runs cannot start in the same place."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / LOCK_FILE).open("a") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InvalidArgument(
                f"another `storectl cluster up` is running in {directory}; stop it first, "
                "or choose another --dir"
            ) from None
        yield


# cluster up.


def cluster_up(args: argparse.Namespace) -> int:
    directory: Path = args.dir
    with directory_lock(directory):
        previous = load_previous(directory)
        _reject_running(directory, previous)
        cluster = LocalCluster(
            directory,
            dataservers=_pick(args.dataservers, previous, "dataservers", DEFAULT_DATASERVERS),
            shards=_pick(args.shards, previous, "shards", DEFAULT_SHARDS),
            metaservers=_pick(args.metaservers, previous, "metaservers", 1),
            log_level=args.log_level,
        )
        if not args.no_s3:
            cluster.s3_listen = args.s3 or cluster.default_s3_listen()
            if args.s3_workers > 1:
                cluster.s3_args = ["--workers", str(args.s3_workers)]
        created = previous is None
        if args.detach:
            _start(cluster, detach=True, timeout_s=args.timeout_s)
            _print_started(cluster, directory, created)
            print(f"stop it with: storectl cluster down --dir {directory}")
            return 0
        # Handlers first: a signal that arrives during the start stops the cluster after it.
        stop_requested = _catch_stop_signals()
        _start(cluster, detach=False, timeout_s=args.timeout_s)
        _print_started(cluster, directory, created)
        return _run_foreground(cluster, stop_requested)


def _reject_running(directory: Path, previous: LocalCluster | None) -> None:
    if previous is None:
        return
    running = running_processes(previous)
    if running:
        pids = ", ".join(f"{p.name} pid={p.pid}" for p in running)
        raise InvalidArgument(
            f"a cluster is already running in {directory} ({pids}); stop it with "
            f"`storectl cluster down --dir {directory}` or choose another --dir"
        )


def _pick(requested: int | None, previous: LocalCluster | None, setting: str, default: int) -> int:
    """Return the requested count, else the count of the cluster that last ran in DIR."""
    if requested is not None:
        return requested
    if previous is None:
        return default
    if setting == "shards":
        return previous.shards
    if setting == "metaservers":
        return len(previous.metaservers)
    return len(previous.dataservers)


def _start(cluster: LocalCluster, detach: bool, timeout_s: float) -> None:
    """Start the cluster. On failure, name the last error its logs recorded during this start."""
    log_directory = cluster.root / "logs"
    log_sizes = {path: _file_size(path) for path in log_directory.glob("*.log")}
    try:
        cluster.start(detach=detach, timeout_s=timeout_s)
    except StoreError as error:
        summary = str(error).splitlines()[0].rstrip(":")
        failed_log = error.log_path if isinstance(error, StartupFailed) else None
        last_error = _last_log_error(log_directory, log_sizes, failed_log)
        if last_error:
            summary = f"{summary}; the log says: {last_error}"
        raise Unavailable(summary) from error


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _last_log_error(
    log_directory: Path, log_sizes: dict[Path, int], failed_log: Path | None = None
) -> str:
    """Return the last ERROR line written to the logs after `log_sizes`.

    The log of the process that failed, when the error names it, comes first, and
    its last line counts even without the ERROR level, because a server that
    rejects its arguments exits with argparse's message alone.
    """
    paths = sorted(log_directory.glob("*.log"))
    if failed_log is not None:
        paths = [failed_log, *(path for path in paths if path != failed_log)]
    for path in paths:
        lines = _new_lines(path, log_sizes.get(path, 0))
        errors = [line for line in lines if " ERROR " in line]
        if errors:
            return errors[-1].split(" ERROR ", 1)[1]
        if path == failed_log and lines:
            return lines[-1]
    return ""


def _new_lines(path: Path, offset_bytes: int) -> list[str]:
    """Return the non-empty lines written to `path` after `offset_bytes`."""
    try:
        with path.open("rb") as file:
            file.seek(offset_bytes)
            text = file.read().decode(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()]


def _print_started(cluster: LocalCluster, directory: Path, created: bool) -> None:
    rows = [[p.role, p.name, p.server_id, p.address, p.pid] for p in cluster.processes]
    print(
        f"cluster started in {directory}: {_count(len(cluster.metaservers), 'metaserver')}, "
        f"{_count(len(cluster.dataservers), 'dataserver')}, {_count(cluster.shards, 'shard')}"
    )
    print(format_table(["ROLE", "NAME", "ID", "ADDRESS", "PID"], rows))
    print(f"metaserver address: {cluster.meta_address}")
    if cluster.gateways:
        print(f"S3 endpoint: {cluster.s3_endpoint}")
        if created and cluster.root_keys is not None:
            access_key, secret_key = cluster.root_keys
            print(f"root access key: {access_key}")
            print(f"root secret key: {secret_key}")
            print(
                f"the keys are shown only now; they are also in {directory / CLUSTER_FILE} "
                "(readable by you only)"
            )
    print(f"logs: {cluster.root / 'logs'}")


def _catch_stop_signals() -> threading.Event:
    """Turn SIGINT and SIGTERM into an event that the foreground loop checks."""
    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop_requested.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    return stop_requested


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _run_foreground(cluster: LocalCluster, stop_requested: threading.Event) -> int:
    """Keep the cluster running until SIGINT or SIGTERM, or until the metaserver exits."""
    print("running in the foreground; press Ctrl-C to stop the cluster", flush=True)

    reported: set[str] = set()
    status = 0
    while not stop_requested.wait(WATCH_INTERVAL_S):
        exited = [p for p in cluster.processes if not p.alive()]
        for process in exited:
            if process.name not in reported:
                reported.add(process.name)
                code = process.popen.returncode if process.popen else None
                print(
                    f"{process.name} pid={process.pid} exited with code {code}; "
                    f"see {process.log_path}",
                    file=sys.stderr,
                    flush=True,
                )
        if any(p.role == "metaserver" for p in exited):
            print("the metaserver exited; stopping the cluster", file=sys.stderr)
            status = 1
            break

    cluster.stop()
    print(f"cluster in {cluster.root} stopped")
    return status


# cluster down.


def cluster_down(args: argparse.Namespace) -> int:
    directory: Path = args.dir
    cluster = load_previous(directory)
    if cluster is None:
        raise InvalidArgument(
            f"no cluster at {directory}: {directory / CLUSTER_FILE} does not exist; "
            "pass the --dir that `storectl cluster up` used"
        )
    running = running_processes(cluster)
    if not running:
        print(f"the cluster in {directory} is not running; nothing to stop")
        return 0
    # Gateways first, so they take no request the cluster cannot serve, then dataservers,
    # so none of them heartbeats into a stopped metaserver.
    gateways = [p for p in running if p.role == "s3"]
    dataservers = [p for p in running if p.role == "dataserver"]
    metaservers = [p for p in running if p.role == "metaserver"]
    failed = (
        _stop_group(gateways, args.timeout_s)
        + _stop_group(dataservers, args.timeout_s)
        + _stop_group(metaservers, args.timeout_s)
    )
    if failed:
        names = ", ".join(f"{p.name} pid={p.pid}" for p in failed)
        raise Unavailable(f"could not stop {names}; check them with `ps -p PID`")
    print(f"cluster in {directory} stopped")
    return 0


def _stop_group(processes: list[ManagedProcess], timeout_s: float) -> list[ManagedProcess]:
    """Send SIGTERM, then SIGKILL to those still running after `timeout_s`; return the rest."""
    for process in processes:
        _send(process, signal.SIGTERM)
    deadline_s = time.monotonic() + timeout_s
    waiting = list(processes)
    while waiting and time.monotonic() < deadline_s:
        for process in [p for p in waiting if not pid_alive(p.pid)]:
            print(f"stopped {process.name} pid={process.pid}")
            waiting.remove(process)
        time.sleep(0.05)
    for process in waiting:
        print(f"{process.name} pid={process.pid} ignored SIGTERM for {timeout_s:.0f}s; killing it")
        _send(process, signal.SIGKILL)
    survivors = []
    deadline_s = time.monotonic() + timeout_s
    for process in waiting:
        while pid_alive(process.pid) and time.monotonic() < deadline_s:
            time.sleep(0.05)
        if pid_alive(process.pid):
            survivors.append(process)
        else:
            print(f"killed {process.name} pid={process.pid}")
    return survivors


def _send(process: ManagedProcess, signum: int) -> None:
    try:
        os.kill(process.pid, signum)
    except ProcessLookupError:
        pass


# cluster status.


def cluster_status(args: argparse.Namespace) -> int:
    address = resolve_meta_address(args.meta, args.dir)
    status = collect_status(address, args.timeout_s)
    gateway = _gateway_status(args)
    if gateway is not None:
        status["s3"] = gateway
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print(format_status(status))
        if gateway is not None:
            state = "running" if gateway["running"] else "not running"
            print(f"\nS3 gateway: {gateway['endpoint']} pid={gateway['pid']} ({state})")
    return 0


def cluster_env(args: argparse.Namespace) -> int:
    """Print `export` lines that point storectl, the aws CLI and boto3 at the cluster."""
    path = args.dir / CLUSTER_FILE
    if not path.exists():
        raise InvalidArgument(
            f"no cluster at {args.dir}: {path} does not exist; "
            "pass the --dir that `storectl cluster up` used"
        )
    record = json.loads(path.read_text())
    variables = {"STORE_META": record["meta"]}
    gateway = record.get(S3_RECORD_KEY)
    if gateway:
        variables |= {
            "AWS_ENDPOINT_URL": gateway["endpoint"],
            "AWS_ACCESS_KEY_ID": gateway["access_key"],
            "AWS_SECRET_ACCESS_KEY": gateway["secret_key"],
            "AWS_DEFAULT_REGION": DEFAULT_REGION,
        }
    for name, value in variables.items():
        print(f"export {name}={shlex.quote(value)}")
    if not gateway:
        print(f"# the cluster in {args.dir} has no S3 gateway (started with --no-s3)")
    return 0


def _gateway_status(args: argparse.Namespace) -> dict[str, object] | None:
    """Return the S3 gateway recorded in the cluster directory, without its keys."""
    if args.meta:
        return None
    directory = args.dir if args.dir is not None else DEFAULT_CLUSTER_DIR
    try:
        cluster = load_previous(directory)
    except InvalidArgument:
        return None
    if cluster is None or not cluster.gateways:
        return None
    gateway = cluster.gateways[0]
    return {
        "endpoint": f"http://{gateway.address}",
        "pid": gateway.pid,
        "running": is_recorded_process(gateway),
    }
