"""A local cluster of real server processes, for `storectl cluster`, tests and benchmarks.

Layout under the cluster directory:

    cluster.json          roles, ids, addresses and pids of every process, and the
                          S3 endpoint with the root user's keys (so it is mode 0600)
    meta-0/ ...           metaserver directories (RocksDB shards)
    data-0/ ...           dataserver directories (chunk files)
    s3-0/                 the S3 gateway's server.json
    logs/<name>.log       each process's log

Each server writes DIR/server.json once it listens; the cluster waits for
that file and then for a gRPC response before it counts the server as up.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from store._pb import common_pb2 as pb
from store._pb import data_pb2, data_pb2_grpc, meta_pb2, meta_pb2_grpc
from store.durable import write_file_atomic
from store.errors import InvalidArgument, Unavailable
from store.rpc import CHANNEL_OPTIONS
from store.serving import SERVER_FILE
from store.shardmap import format_shard_ranges

log = logging.getLogger(__name__)

CLUSTER_FILE = "cluster.json"
# The key of the S3 gateway in cluster.json.
S3_RECORD_KEY = "s3"
# The name of the user that the metaserver creates with the cluster.
ROOT_USER_NAME = "root"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


class StartupFailed(Unavailable):
    """A server process exited before it listened; `log_path` is its log file."""

    def __init__(self, message: str, log_path: Path) -> None:
        super().__init__(message)
        self.log_path = log_path


@dataclass
class ManagedProcess:
    """One server process the cluster started (or found in cluster.json)."""

    role: str
    name: str
    directory: Path
    args: list[str]
    log_path: Path
    address: str = ""
    server_id: str = ""
    pid: int = 0
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, detach: bool) -> None:
        """Start the process; a previous server.json is removed so readiness is unambiguous."""
        (self.directory / SERVER_FILE).unlink(missing_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self.popen = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=detach,
            )
        self.pid = self.popen.pid
        log.info("started %s pid=%d", self.name, self.pid)

    def wait_listening(self, deadline_s: float) -> None:
        """Wait until the process wrote its server.json; raise if it exits first."""
        path = self.directory / SERVER_FILE
        while time.monotonic() < deadline_s:
            if self.popen is not None and self.popen.poll() is not None:
                raise StartupFailed(
                    f"{self.name} exited with code {self.popen.returncode} during startup; "
                    f"see {self.log_path}:\n{tail(self.log_path)}",
                    self.log_path,
                )
            if path.exists():
                record = json.loads(path.read_text())
                if record.get("pid") == self.pid:
                    self.address = record["address"]
                    self.server_id = record["id"]
                    return
            time.sleep(0.02)
        raise Unavailable(
            f"{self.name} did not start within {START_TIMEOUT_S}s; see {self.log_path}"
        )

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return pid_alive(self.pid)

    def signal(self, signum: int) -> None:
        if self.pid and self.alive():
            os.kill(self.pid, signum)

    def wait_exit(self, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if not self.alive():
                if self.popen is not None:
                    self.popen.wait()
                return True
            time.sleep(0.02)
        return False

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM, then SIGKILL if the process is still running after `timeout_s`."""
        if not self.alive():
            return
        self.signal(signal.SIGTERM)
        if not self.wait_exit(timeout_s):
            log.warning(
                "%s pid=%d ignored SIGTERM for %.0fs; killing it", self.name, self.pid, timeout_s
            )
            self.kill()

    def kill(self) -> None:
        """SIGKILL the process and reap it."""
        self.signal(signal.SIGKILL)
        self.wait_exit(STOP_TIMEOUT_S)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "id": self.server_id,
            "address": self.address,
            "pid": self.pid,
            "dir": str(self.directory),
            "log": str(self.log_path),
            "args": self.args,
        }

    @classmethod
    def from_json(cls, role: str, record: dict[str, Any]) -> ManagedProcess:
        return cls(
            role=role,
            name=record["name"],
            directory=Path(record["dir"]),
            args=list(record["args"]),
            log_path=Path(record["log"]),
            address=record["address"],
            server_id=record["id"],
            pid=int(record["pid"]),
        )


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # kill(0) succeeds for a zombie too, so /proc shows whether it has exited.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class LocalCluster:
    """Metaservers and dataservers started as separate processes on 127.0.0.1."""

    def __init__(
        self,
        root: Path,
        *,
        dataservers: int = 4,
        shards: int = 16,
        metaservers: int = 1,
        host: str = "127.0.0.1",
        meta_args: list[str] | None = None,
        data_args: list[str] | None = None,
        log_level: str = "info",
        python: str = sys.executable,
        s3_listen: str | None = None,
        s3_args: list[str] | None = None,
        domains: list[str] | None = None,
    ) -> None:
        if dataservers < 0 or not 1 <= metaservers <= shards:
            raise InvalidArgument(
                f"need dataservers >= 0 and 1 <= metaservers <= shards; got shards={shards}, "
                f"dataservers={dataservers}, metaservers={metaservers}"
            )
        self.root = root.resolve()
        self.host = host
        self.shards = shards
        self.log_level = log_level
        self.python = python
        self.meta_args = list(meta_args or [])
        self.data_args = list(data_args or [])
        # Failure domain labels by dataserver index; by default each is its own domain.
        self.domains = list(domains or [])
        self._metaserver_count = metaservers
        self._previous_addresses = _recorded_addresses(self.root / CLUSTER_FILE)
        self.metaservers: list[ManagedProcess] = [self._metaserver_spec(0, metaservers)]
        self.dataservers: list[ManagedProcess] = []
        self._dataserver_count = dataservers
        # S3 gateways; `start` starts one on `s3_listen` when it is set.
        self.gateways: list[ManagedProcess] = []
        self.s3_listen = s3_listen
        self.s3_args = list(s3_args or [])
        # The root user's (access key, secret key), read from the metaserver with the gateway.
        self.root_keys: tuple[str, str] | None = None

    @property
    def processes(self) -> list[ManagedProcess]:
        """Every process of the cluster: metaservers, dataservers and gateways."""
        return self.metaservers + self.dataservers + self.gateways

    # Process specs.

    def _metaserver_spec(self, index: int, count: int) -> ManagedProcess:
        """Metaserver `index` of `count` serves an equal share of the shards; 0 is the primary."""
        directory = self.root / f"meta-{index}"
        first = self.shards * index // count
        last = self.shards * (index + 1) // count
        args = [
            self.python,
            "-m",
            "metaserver.main",
            "--dir",
            str(directory),
            "--listen",
            self._listen_address(f"meta-{index}"),
            "--shard-count",
            str(self.shards),
            "--shards",
            format_shard_ranges(list(range(first, last))),
            "--log-level",
            self.log_level,
            *self.meta_args,
        ]
        if index > 0:
            args += ["--primary", self.meta_address]
        return ManagedProcess(
            "metaserver", f"meta-{index}", directory, args, self.root / "logs" / f"meta-{index}.log"
        )

    def _dataserver_spec(self, index: int, extra: list[str]) -> ManagedProcess:
        directory = self.root / f"data-{index}"
        args = [
            self.python,
            "-m",
            "dataserver.main",
            "--dir",
            str(directory),
            "--listen",
            self._listen_address(f"data-{index}"),
            "--meta",
            self.meta_address,
            "--domain",
            self.domains[index] if index < len(self.domains) else f"data-{index}",
            "--log-level",
            self.log_level,
            *self.data_args,
            *extra,
        ]
        return ManagedProcess(
            "dataserver", f"data-{index}", directory, args, self.root / "logs" / f"data-{index}.log"
        )

    def _gateway_spec(self, index: int, listen: str, extra: list[str]) -> ManagedProcess:
        name = f"s3-{index}"
        directory = self.root / name
        args = [
            self.python,
            "-m",
            "store.s3.server",
            "--listen",
            listen,
            "--meta",
            ",".join(m.address for m in self.metaservers),
            "--dir",
            str(directory),
            "--log-level",
            self.log_level,
            *self.s3_args,
            *extra,
        ]
        return ManagedProcess("s3", name, directory, args, self.root / "logs" / f"{name}.log")

    def default_s3_listen(self) -> str:
        """Return the gateway address of the last run in this directory if free, else port 0."""
        return self._listen_address("s3-0")

    def _pin_listen_address(self, process: ManagedProcess) -> None:
        """Make a restart of `process` bind the address it has now (see _pin_listen_address)."""
        _pin_listen_address(process)

    def _listen_address(self, name: str) -> str:
        """Return the address `name` had in the last run in this directory, if still free.

        A cluster restarted in the same directory keeps its addresses, so clients and
        scripts that saved them still work; otherwise the OS picks a free port.
        """
        address = self._previous_addresses.get(name)
        if address is None:
            return f"{self.host}:0"
        host, port = address.rsplit(":", 1)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((host, int(port)))
        except (OSError, ValueError):
            return f"{self.host}:0"
        return address

    @property
    def meta_address(self) -> str:
        address = self.metaservers[0].address
        if not address:
            raise Unavailable("the metaserver has not started")
        return address

    # Lifecycle.

    def start(self, detach: bool = False, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start every process; wait until all respond and every dataserver registered."""
        self.root.mkdir(parents=True, exist_ok=True)
        deadline_s = time.monotonic() + timeout_s
        try:
            primary = self.metaservers[0]
            self._start_listening(primary, detach, deadline_s)
            for index in range(1, self._metaserver_count):
                self.metaservers.append(self._metaserver_spec(index, self._metaserver_count))
            for process in self.metaservers[1:]:
                self._start_listening(process, detach, deadline_s)
            for index in range(self._dataserver_count):
                self.dataservers.append(self._dataserver_spec(index, []))
            for process in self.dataservers:
                process.directory.mkdir(parents=True, exist_ok=True)
                process.start(detach)
            for process in self.dataservers:
                process.wait_listening(deadline_s)
                self._pin_listen_address(process)
            self.wait_ready(deadline_s)
            if self.s3_listen is not None:
                self._start_gateway(self.s3_listen, [], detach, deadline_s)
        except BaseException:
            self.stop()
            raise
        self.write_cluster_file()

    def add_gateway(
        self,
        listen: str = "127.0.0.1:0",
        extra_args: list[str] | None = None,
        timeout_s: float = START_TIMEOUT_S,
    ) -> ManagedProcess:
        """Start an S3 gateway on the running cluster and wait until it listens."""
        deadline_s = time.monotonic() + timeout_s
        process = self._start_gateway(listen, list(extra_args or []), False, deadline_s)
        self.write_cluster_file()
        return process

    def _start_gateway(
        self, listen: str, extra: list[str], detach: bool, deadline_s: float
    ) -> ManagedProcess:
        process = self._gateway_spec(len(self.gateways), listen, extra)
        self.gateways.append(process)
        self._start_listening(process, detach, deadline_s)
        self.root_keys = self.read_root_keys()
        return process

    def read_root_keys(self) -> tuple[str, str]:
        """Return the root user's (access key, secret key) from the primary metaserver."""
        with grpc.insecure_channel(self.meta_address, options=CHANNEL_OPTIONS) as channel:
            stub = meta_pb2_grpc.MetaServiceStub(channel)
            users = stub.ListUsers(meta_pb2.ListUsersRequest(), timeout=5)
            roots = [user for user in users.users if user.name == ROOT_USER_NAME]
            if not roots:
                raise Unavailable(f"the metaserver at {self.meta_address} has no root user")
            request = meta_pb2.GetCredentialsRequest(access_key=roots[0].access_key)
            record = stub.GetCredentials(request, timeout=5)
        return record.access_key, record.secret_key

    @property
    def s3_endpoint(self) -> str:
        """Return the http URL of the first S3 gateway."""
        if not self.gateways or not self.gateways[0].address:
            raise Unavailable("the cluster has no S3 gateway running")
        return f"http://{self.gateways[0].address}"

    def _start_listening(self, process: ManagedProcess, detach: bool, deadline_s: float) -> None:
        process.directory.mkdir(parents=True, exist_ok=True)
        process.start(detach)
        process.wait_listening(deadline_s)
        # Later starts reuse the port so clients find the server again after a restart.
        self._pin_listen_address(process)

    def add_dataserver(
        self,
        extra_args: list[str] | None = None,
        timeout_s: float = START_TIMEOUT_S,
        domain: str = "",
        detach: bool = False,
    ) -> ManagedProcess:
        """Start one more dataserver and wait until it registered."""
        index = len(self.dataservers)
        if domain:
            self.domains += [f"data-{i}" for i in range(len(self.domains), index)]
            self.domains[index:] = [domain]
        process = self._dataserver_spec(index, list(extra_args or []))
        process.directory.mkdir(parents=True, exist_ok=True)
        self.dataservers.append(process)
        deadline_s = time.monotonic() + timeout_s
        process.start(detach=detach)
        process.wait_listening(deadline_s)
        self._pin_listen_address(process)
        self.wait_ready(deadline_s)
        self.write_cluster_file()
        return process

    def restart(self, process: ManagedProcess, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start a stopped or killed process again with the same directory and address."""
        if process.alive():
            raise InvalidArgument(f"{process.name} pid={process.pid} is still running")
        deadline_s = time.monotonic() + timeout_s
        process.start(detach=False)
        process.wait_listening(deadline_s)
        self.wait_ready(deadline_s)
        self.write_cluster_file()

    def wait_ready(self, deadline_s: float) -> pb.ClusterMap:
        """Wait until every running server answers and every running dataserver is up in the map."""
        cluster_map = pb.ClusterMap()
        while True:
            try:
                cluster_map = self._probe()
                up = {d.id for d in cluster_map.dataservers if d.state == pb.DATASERVER_STATE_UP}
                wanted = {d.server_id for d in self.dataservers if d.alive()}
                if wanted <= up:
                    return cluster_map
                problem = f"dataservers not yet up: {sorted(wanted - up)}"
            except (grpc.RpcError, Unavailable) as exc:
                problem = str(exc)
            if time.monotonic() > deadline_s:
                raise Unavailable(f"cluster at {self.root} is not ready: {problem}")
            time.sleep(0.05)

    def _probe(self) -> pb.ClusterMap:
        for process in self.metaservers + self.dataservers:
            if not process.alive():
                if process.role == "metaserver":
                    raise Unavailable(f"{process.name} is not running; see {process.log_path}")
                continue
        with grpc.insecure_channel(self.meta_address, options=CHANNEL_OPTIONS) as channel:
            stub = meta_pb2_grpc.MetaServiceStub(channel)
            cluster_map: pb.ClusterMap = stub.GetClusterMap(
                meta_pb2.GetClusterMapRequest(), timeout=2
            )
        registered = {m.id for m in cluster_map.metaservers}
        missing = [p.name for p in self.metaservers if p.server_id not in registered]
        if missing:
            raise Unavailable(f"metaservers not yet registered: {missing}")
        for process in self.dataservers:
            if process.alive():
                with grpc.insecure_channel(process.address, options=CHANNEL_OPTIONS) as channel:
                    data_pb2_grpc.DataServiceStub(channel).GetStatus(
                        data_pb2.DataserverStatusRequest(), timeout=2
                    )
        return cluster_map

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop gateways, dataservers, then metaservers (SIGTERM, then SIGKILL after timeout_s)."""
        for process in self.gateways:
            process.stop(timeout_s)
        for process in self.dataservers:
            process.signal(signal.SIGTERM)
        for process in self.dataservers:
            process.stop(timeout_s)
        for process in self.metaservers:
            process.stop(timeout_s)

    # cluster.json.

    def write_cluster_file(self) -> None:
        record = {
            "dir": str(self.root),
            "shards": self.shards,
            "meta": self.meta_address,
            "metaservers": [p.to_json() for p in self.metaservers],
            "dataservers": [p.to_json() for p in self.dataservers],
        }
        if self.gateways:
            record[S3_RECORD_KEY] = self._gateway_record()
        # The file may hold the root secret key, so only its owner may read it.
        data = json.dumps(record, indent=2).encode() + b"\n"
        write_file_atomic(self.root / CLUSTER_FILE, data, mode=0o600)

    def _gateway_record(self) -> dict[str, Any]:
        """Describe the first gateway: its endpoint, the root keys, and its process."""
        gateway = self.gateways[0]
        access_key, secret_key = self.root_keys or ("", "")
        return {
            "endpoint": f"http://{gateway.address}",
            "access_key": access_key,
            "secret_key": secret_key,
            **gateway.to_json(),
        }

    @classmethod
    def load(cls, root: Path) -> LocalCluster:
        """Rebuild the cluster object of a running cluster from DIR/cluster.json."""
        path = root / CLUSTER_FILE
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            raise InvalidArgument(
                f"no cluster at {root}: {path} does not exist; start one with "
                f"`storectl cluster up --dir {root}`"
            ) from None
        cluster = cls(Path(record["dir"]), dataservers=0, shards=int(record["shards"]))
        cluster.metaservers = [
            ManagedProcess.from_json("metaserver", m) for m in record["metaservers"]
        ]
        cluster.dataservers = [
            ManagedProcess.from_json("dataserver", d) for d in record["dataservers"]
        ]
        gateway = record.get(S3_RECORD_KEY)
        if gateway:
            cluster.gateways = [ManagedProcess.from_json("s3", gateway)]
            cluster.root_keys = (gateway.get("access_key", ""), gateway.get("secret_key", ""))
        return cluster


def _recorded_addresses(path: Path) -> dict[str, str]:
    """Return the address of each process name in a cluster.json, or {} without one."""
    try:
        record = json.loads(path.read_text())
        processes = record["metaservers"] + record["dataservers"]
        if record.get(S3_RECORD_KEY):
            processes.append(record[S3_RECORD_KEY])
        return {p["name"]: p["address"] for p in processes if p.get("address")}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _pin_listen_address(process: ManagedProcess) -> None:
    """Replace a port-0 --listen argument with the address the process actually bound."""
    args = process.args
    index = args.index("--listen")
    args[index + 1] = process.address
