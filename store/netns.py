"""A cluster whose servers and clients run as separate hosts in Linux network namespaces.

Each host (metaserver, dataserver, S3 gateway, client) gets a network namespace
of its own with one interface, eth0, whose peer joins a bridge. The bridge sits
in a dedicated namespace too, so the root namespace's firewall never filters the
traffic between hosts. The process that builds the network reaches the hosts
through one more veth pair from the root namespace:

    root ns: sn<pid>-<n> 10.77.N.1 ──┐
                                     │      stns-<pid>-<n>-net: bridge br0
    stns-<pid>-<n>-metaserver  eth0 ─┤ 10.77.N.2
    stns-<pid>-<n>-dataserver1 eth0 ─┤ 10.77.N.11 ...
    stns-<pid>-<n>-s3          eth0 ─┤ 10.77.N.51
    stns-<pid>-<n>-client1     eth0 ─┘ 10.77.N.101 ...

<n> numbers the networks of one process, since several may exist at once.

Addresses come from one free /24 of 10.77.0.0/16 and exist only inside these
namespaces plus the one root-side veth. A `tc` token bucket on both ends of each
host's link caps what the host sends and receives, as a NIC would; client hosts
are uncapped unless asked for a cap.

The servers run the commands of docker-compose.yml: the same console scripts
and flags, with each host's address where the file names a service
(metaserver_command, dataserver_command and gateway_command build them, and
tests/test_compose.py checks them against the file). Client hosts run whatever
command they are given, such as `storectl` or `python -m store.loadgen`, and the
cluster tracks and stops those processes too.

Creating namespaces needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN);
`require_netns()` raises NetnsUnavailable with the reason where they are missing.

By hand, as root:  python -m store.netns up --dataservers 3 --rate-mbit 100 --s3 --clients 1
"""

from __future__ import annotations

import argparse
import atexit
import ipaddress
import itertools
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from store.cluster import (
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    LocalCluster,
    ManagedProcess,
    pid_alive,
    tail,
)
from store.errors import InvalidArgument, StoreError
from store.shardmap import format_shard_ranges

log = logging.getLogger(__name__)

# Each run takes one /24 of this range; nothing outside the namespaces uses it.
ADDRESS_RANGE = ipaddress.IPv4Network("10.77.0.0/16")
NAMESPACE_PREFIX = "stns-"
BRIDGE_NAME = "br0"
# The ports of docker-compose.yml.
META_PORT = 7000
DATA_PORT = 7100
S3_PORT = 9000
# The address the servers bind, as in docker-compose.yml: every address of their host.
ANY_ADDRESS = "0.0.0.0"
# Worker processes of each S3 gateway, as in docker-compose.yml.
S3_WORKERS = 2
# Host numbers inside the /24: .1 is the root namespace, then metaservers, dataservers,
# gateways and clients.
META_HOST_FIRST = 2
DATA_HOST_FIRST = 11
S3_HOST_FIRST = 51
CLIENT_HOST_FIRST = 101
DATA_HOST_MAX = S3_HOST_FIRST - DATA_HOST_FIRST
S3_HOST_MAX = CLIENT_HOST_FIRST - S3_HOST_FIRST
CLIENT_HOST_MAX = 254 - CLIENT_HOST_FIRST
DEFAULT_RATE_MBIT = 100
# A client host's default cap: 0 means uncapped, so clients never limit what servers send.
DEFAULT_CLIENT_RATE_MBIT = 0
# More than one 64 KiB GSO packet, which tbf would otherwise have to split into segments.
TBF_BURST_BYTES = 128 * 1024
TBF_LATENCY_MS = 50
COMMAND_TIMEOUT_S = 10.0
CLIENT_RUN_TIMEOUT_S = 60.0


class NetnsUnavailable(StoreError):
    """Network namespaces cannot be created here (not root, or no `ip`/`tc`)."""

    code = "NetnsUnavailable"


class ClientCommandFailed(StoreError):
    """A command run in a client host exited with a nonzero status or timed out."""

    code = "ClientCommandFailed"


def run_ip(args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ip` or `tc` with `args`; raise NetnsUnavailable with its stderr when `check` fails."""
    result = subprocess.run(
        args, capture_output=True, text=True, check=False, timeout=COMMAND_TIMEOUT_S
    )
    if check and result.returncode != 0:
        raise NetnsUnavailable(
            f"`{' '.join(args)}` failed with exit status {result.returncode}: "
            f"{result.stderr.strip()}"
        )
    return result


def require_netns() -> None:
    """Raise NetnsUnavailable saying why this process cannot build a namespace network."""
    if os.geteuid() != 0:
        raise NetnsUnavailable(
            f"network namespaces need root, but this process runs as uid {os.geteuid()}; "
            "run as root (or with CAP_NET_ADMIN and CAP_SYS_ADMIN)"
        )
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        raise NetnsUnavailable(f"{missing} not found on PATH; install iproute2")
    probe = f"{NAMESPACE_PREFIX}{os.getpid()}-probe"
    run_ip(["ip", "netns", "add", probe])
    run_ip(["ip", "netns", "del", probe])


def netns_unavailable_reason() -> str:
    """Return why namespaces cannot be used here, or "" when they can."""
    try:
        require_netns()
    except NetnsUnavailable as exc:
        return str(exc)
    return ""


# The commands of docker-compose.yml. Each takes the address that stands for a compose
# service name (the host's address here, the service name in the compose file), so
# tests/test_compose.py can build the file's commands with them and compare.


def metaserver_command(directory: str, host: str, shard_count: int) -> list[str]:
    """Return the `metaserver` service's command, advertising `host`."""
    return [
        "store-metaserver",
        "--dir",
        directory,
        "--listen",
        f"{ANY_ADDRESS}:{META_PORT}",
        "--advertise",
        f"{host}:{META_PORT}",
        "--shard-count",
        str(shard_count),
    ]


def dataserver_command(
    number: int, directory: str, host: str, meta: str, domain: str = ""
) -> list[str]:
    """Return the `dataserverN` service's command: id dsN, in domain dataserverN by default."""
    return [
        "store-dataserver",
        "--dir",
        directory,
        "--listen",
        f"{ANY_ADDRESS}:{DATA_PORT}",
        "--advertise",
        f"{host}:{DATA_PORT}",
        "--meta",
        meta,
        "--id",
        f"ds{number}",
        "--domain",
        domain or f"dataserver{number}",
    ]


def gateway_command(meta: str) -> list[str]:
    """Return the `s3` service's command."""
    return [
        "store-s3",
        "--listen",
        f"{ANY_ADDRESS}:{S3_PORT}",
        "--meta",
        meta,
        "--workers",
        str(S3_WORKERS),
    ]


def program_path(name: str) -> str:
    """Return the path of console script `name`: beside this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise NetnsUnavailable(
            f"{name} is neither beside {sys.executable} nor on PATH; install the project "
            "into this interpreter's environment (`make install`)"
        )
    return found


def pick_subnet() -> ipaddress.IPv4Network:
    """Return the first /24 of ADDRESS_RANGE that no root namespace route or address overlaps.

    NOTE: two runs that start at the same moment can still pick the same /24, and
    the second then fails to add its root-side address.
    """
    output = run_ip(["ip", "-4", "-o", "route", "show", "table", "all"]).stdout
    output += run_ip(["ip", "-4", "-o", "addr", "show"]).stdout
    used = [
        ipaddress.ip_network(match, strict=False)
        for match in re.findall(r"\b(\d+\.\d+\.\d+\.\d+(?:/\d+)?)", output)
    ]
    for subnet in ADDRESS_RANGE.subnets(new_prefix=24):
        if not any(subnet.overlaps(network) for network in used if network.prefixlen > 0):
            return subnet
    raise NetnsUnavailable(f"every /24 of {ADDRESS_RANGE} is in use in the root namespace")


@dataclass
class Host:
    """One host namespace whose eth0 joins the bridge through the interface `port`."""

    name: str
    namespace: str
    address: str
    port: str
    # The cap of each direction of the link, where 0 means uncapped.
    rate_mbit: int


def namespace_pids(namespace: str) -> list[int]:
    """Return the processes that run in `namespace` (`ip netns pids`)."""
    result = run_ip(["ip", "netns", "pids", namespace], check=False)
    return [int(word) for word in result.stdout.split() if word.isdigit()]


def kill_namespace_processes(namespace: str, timeout_s: float = STOP_TIMEOUT_S) -> list[int]:
    """SIGKILL every process left in `namespace` and wait until they are gone; return them.

    The harness stops its processes by pid first, so this only finds what escaped
    that: children a server started, or processes of a run killed with SIGKILL.
    """
    pids = namespace_pids(namespace)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline_s = time.monotonic() + timeout_s
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline_s:
        time.sleep(0.02)
    return pids


_network_numbers = itertools.count()


class HostNetwork:
    """The namespaces, veth pairs and bridge of one run, which `close()` deletes."""

    def __init__(self, rate_mbit: int = DEFAULT_RATE_MBIT) -> None:
        require_netns()
        # Several networks may exist at once in one process, so each gets a number too.
        number = next(_network_numbers)
        self.prefix = f"{NAMESPACE_PREFIX}{os.getpid()}-{number}-"
        self.bridge_namespace = f"{self.prefix}net"
        # An interface name has at most 15 characters: "sn", 7 digits of pid, "-", number.
        self.root_link = f"sn{os.getpid()}-{number}"
        self.rate_mbit = rate_mbit
        self.hosts: dict[str, Host] = {}
        self.namespaces: list[str] = []
        self.subnet = pick_subnet()
        try:
            self._create_bridge()
        except BaseException:
            self.close()
            raise

    def _create_bridge(self) -> None:
        self._add_namespace(self.bridge_namespace)
        bridge = ["ip", "-n", self.bridge_namespace]
        run_ip([*bridge, "link", "add", BRIDGE_NAME, "type", "bridge"])
        run_ip([*bridge, "link", "set", BRIDGE_NAME, "up"])
        # The root side of the client link; its address adds the route to the subnet.
        peer = ["peer", "name", "root", "netns", self.bridge_namespace]
        run_ip(["ip", "link", "add", self.root_link, "type", "veth", *peer])
        run_ip([*bridge, "link", "set", "root", "master", BRIDGE_NAME, "up"])
        run_ip(["ip", "addr", "add", f"{self.address_of(1)}/24", "dev", self.root_link])
        run_ip(["ip", "link", "set", self.root_link, "up"])
        log.info("network up bridge_ns=%s subnet=%s", self.bridge_namespace, self.subnet)

    def _add_namespace(self, namespace: str) -> None:
        run_ip(["ip", "netns", "add", namespace])
        self.namespaces.append(namespace)
        run_ip(["ip", "-n", namespace, "link", "set", "lo", "up"])

    def address_of(self, host_number: int) -> str:
        assert 0 < host_number < 255, f"host number {host_number} is outside the /24"
        return str(self.subnet.network_address + host_number)

    def add_host(self, name: str, host_number: int, rate_mbit: int | None = None) -> Host:
        """Create namespace PREFIX+name with eth0 on the bridge, capped at `rate_mbit` each way.

        `rate_mbit` None is the network's rate, and 0 leaves the link uncapped.
        """
        assert name not in self.hosts, f"host {name} exists already"
        rate = self.rate_mbit if rate_mbit is None else rate_mbit
        if rate < 0:
            raise InvalidArgument(f"rate_mbit={rate} for host {name} is negative; use 0 for none")
        namespace = self.prefix + name
        port = f"h{host_number}"
        host = Host(name, namespace, self.address_of(host_number), port, rate)
        self._add_namespace(namespace)
        peer = ["peer", "name", "eth0", "netns", namespace]
        run_ip(["ip", "-n", self.bridge_namespace, "link", "add", port, "type", "veth", *peer])
        run_ip(["ip", "-n", self.bridge_namespace, "link", "set", port, "master", BRIDGE_NAME])
        run_ip(["ip", "-n", self.bridge_namespace, "link", "set", port, "up"])
        run_ip(["ip", "-n", namespace, "addr", "add", f"{host.address}/24", "dev", "eth0"])
        run_ip(["ip", "-n", namespace, "link", "set", "eth0", "up"])

        # Egress of eth0 is what the host sends, and egress of its bridge port is what it receives.
        if rate > 0:
            self._limit_rate(namespace, "eth0", rate)
            self._limit_rate(self.bridge_namespace, port, rate)
        self.hosts[name] = host
        log.info(
            "host up name=%s ns=%s address=%s rate_mbit=%s",
            name,
            namespace,
            host.address,
            rate or "uncapped",
        )
        return host

    @staticmethod
    def _limit_rate(namespace: str, device: str, rate_mbit: int) -> None:
        bucket = ["rate", f"{rate_mbit}mbit", "burst", str(TBF_BURST_BYTES)]
        bucket += ["latency", f"{TBF_LATENCY_MS}ms"]
        run_ip(["tc", "-n", namespace, "qdisc", "add", "dev", device, "root", "tbf", *bucket])

    def exec_prefix(self, name: str) -> list[str]:
        """Return the argv prefix that runs a command inside host `name`."""
        return ["ip", "netns", "exec", self.hosts[name].namespace]

    def cut(self, name: str) -> None:
        """Cut host `name` off the bridge: its packets are dropped, as on a pulled cable."""
        host = self.hosts[name]
        run_ip(["ip", "-n", self.bridge_namespace, "link", "set", host.port, "down"])
        log.info("partition cut host=%s address=%s", name, host.address)

    def heal(self, name: str) -> None:
        """Reconnect host `name` to the bridge."""
        host = self.hosts[name]
        run_ip(["ip", "-n", self.bridge_namespace, "link", "set", host.port, "up"])
        log.info("partition healed host=%s address=%s", name, host.address)

    def close(self) -> None:
        """Kill what still runs in the namespaces, then delete them; their veths go with them."""
        for namespace in reversed(self.namespaces):
            killed = kill_namespace_processes(namespace)
            if killed:
                log.warning("killed pids %s left in ns=%s", killed, namespace)
            result = run_ip(["ip", "netns", "del", namespace], check=False)
            if result.returncode != 0:
                log.warning("failed to delete ns=%s: %s", namespace, result.stderr.strip())
        self.namespaces.clear()
        self.hosts.clear()
        # Deleting the bridge namespace deletes the root-side veth too, unless setup failed halfway.
        if run_ip(["ip", "link", "show", self.root_link], check=False).returncode == 0:
            run_ip(["ip", "link", "del", self.root_link], check=False)


def remove_stale_namespaces() -> list[str]:
    """Delete namespaces left by runs whose process no longer exists (after a SIGKILL).

    Processes still running in such a namespace were started by that run (its servers
    outlive it when it is killed with SIGKILL), so they are killed first.
    """
    removed = []
    listing = run_ip(["ip", "netns", "list"]).stdout
    for namespace in re.findall(rf"^({NAMESPACE_PREFIX}(\d+)-\S+)", listing, re.MULTILINE):
        name, pid = namespace
        if not pid_alive(int(pid)):
            kill_namespace_processes(name)
            run_ip(["ip", "netns", "del", name], check=False)
            removed.append(name)
    return removed


def stop_popen(popen: subprocess.Popen[str], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM a process, SIGKILL it after `timeout_s`, and reap it."""
    if popen.poll() is None:
        popen.terminate()
        try:
            popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("pid=%d ignored SIGTERM for %.0fs; killing it", popen.pid, timeout_s)
            popen.kill()
            popen.wait()
    for stream in (popen.stdin, popen.stdout, popen.stderr):
        if stream is not None:
            stream.close()


class ClientHost:
    """A client host of a NetnsCluster: runs commands in its namespace, which the cluster stops.

    Servers in the cluster are reached at the addresses of the cluster map
    (`cluster.meta_address`, `cluster.s3_endpoint`), exactly as from another machine.
    """

    def __init__(self, cluster: NetnsCluster, host: Host) -> None:
        self._cluster = cluster
        self.host = host
        self.processes: list[subprocess.Popen[str]] = []

    @property
    def name(self) -> str:
        return self.host.name

    @property
    def address(self) -> str:
        return self.host.address

    def command(self, argv: Sequence[str]) -> list[str]:
        """Return `argv` prefixed so that it runs in this host."""
        return [*self._cluster.network.exec_prefix(self.host.name), *argv]

    def python(self, *args: str) -> list[str]:
        """Return an argv that runs this interpreter with `args` (such as "-m", "store.cli")."""
        return [sys.executable, *args]

    def start(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | None = subprocess.PIPE,
    ) -> subprocess.Popen[str]:
        """Start `argv` in this host and return the process; the cluster stops it on close.

        The first word names a console script of this environment (`storectl`, `aws`)
        or an executable path. `env`, when given, is the whole environment, as for
        subprocess.Popen. stdout is a text pipe unless the `stdout` argument names another target;
        stderr goes to logs/<host>-<n>.log under the cluster directory.
        """
        argv = list(argv)
        if argv and "/" not in argv[0]:
            argv[0] = program_path(argv[0])
        log_path = self._log_path(len(self.processes) + 1)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log_file:
            popen = subprocess.Popen(
                self.command(argv),
                stdin=stdin,
                stdout=stdout,
                stderr=log_file,
                env=dict(env) if env is not None else None,
                text=True,
            )
        self.processes.append(popen)
        log.info("client %s started pid=%d: %s", self.host.name, popen.pid, " ".join(argv))
        return popen

    def log_path(self, popen: subprocess.Popen[str]) -> Path:
        """Return the stderr log of a process that `start` returned."""
        return self._log_path(self.processes.index(popen) + 1)

    def _log_path(self, number: int) -> Path:
        return self._cluster.root / "logs" / f"{self.host.name}-{number}.log"

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        timeout_s: float = CLIENT_RUN_TIMEOUT_S,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` in this host to its end and return it with its stdout and stderr.

        Raises ClientCommandFailed when it runs longer than `timeout_s` (it is killed)
        or, with `check`, exits nonzero; the message contains the end of its stderr.
        """
        popen = self.start(
            argv, env=env, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL
        )
        try:
            stdout, _ = popen.communicate(input, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            stop_popen(popen)
            raise ClientCommandFailed(
                f"`{' '.join(argv)}` in client host {self.host.name} ran over {timeout_s}s; "
                f"stderr:\n{tail(self.log_path(popen))}"
            ) from None
        stderr = self.log_path(popen).read_text(errors="replace")
        if check and popen.returncode != 0:
            raise ClientCommandFailed(
                f"`{' '.join(argv)}` in client host {self.host.name} exited with status "
                f"{popen.returncode}; stderr:\n{tail(self.log_path(popen))}"
            )
        return subprocess.CompletedProcess(list(argv), popen.returncode, stdout, stderr)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop every process this host started that still runs."""
        for popen in self.processes:
            stop_popen(popen, timeout_s)


class NetnsCluster(LocalCluster):
    """A LocalCluster whose every server runs in a host namespace of a HostNetwork.

    The servers run the docker-compose.yml commands (see metaserver_command): the
    metaserver on port 7000, dataservers `dsN` in domain `dataserverN` on port
    7100, gateways on port 9000 with two workers, each advertising its host
    address. The cluster's meta_args, data_args and s3_args follow the compose
    flags, and with more than one metaserver each gets --shards (and the
    secondaries --primary). `add_client_host` adds client hosts. `close()` stops
    the client processes and the servers and deletes the network; it also runs
    at interpreter exit, so an exception or Ctrl-C leaves nothing behind.
    """

    def __init__(
        self,
        root: Path,
        *,
        dataservers: int = 3,
        rate_mbit: int = DEFAULT_RATE_MBIT,
        **options: object,
    ) -> None:
        if not 0 <= dataservers <= DATA_HOST_MAX:
            raise InvalidArgument(f"dataservers={dataservers} is outside 0..{DATA_HOST_MAX}")
        self.clients: list[ClientHost] = []
        self.network = HostNetwork(rate_mbit)
        atexit.register(self.close)
        try:
            super().__init__(root, dataservers=dataservers, **options)  # type: ignore[arg-type]
        except BaseException:
            self.close()
            raise

    def _in_host(self, role: str, name: str, host: Host, argv: list[str]) -> ManagedProcess:
        """Describe server `name` running `argv` (a console script and flags) inside `host`."""
        directory = self.root / name
        if self.log_level != "info":
            argv += ["--log-level", self.log_level]
        args = [*self.network.exec_prefix(host.name), program_path(argv[0]), *argv[1:]]
        return ManagedProcess(role, name, directory, args, self.root / "logs" / f"{name}.log")

    def _metaserver_spec(self, index: int, count: int) -> ManagedProcess:
        host_name = "metaserver" if index == 0 else f"metaserver{index + 1}"
        host = self.network.add_host(host_name, META_HOST_FIRST + index)
        name = f"meta-{index}"
        argv = metaserver_command(str(self.root / name), host.address, self.shards)
        if count > 1:
            first = self.shards * index // count
            last = self.shards * (index + 1) // count
            argv += ["--shards", format_shard_ranges(list(range(first, last)))]
        if index > 0:
            argv += ["--primary", self.meta_address]
        return self._in_host("metaserver", name, host, [*argv, *self.meta_args])

    def _dataserver_spec(self, index: int, extra: list[str]) -> ManagedProcess:
        number = index + 1
        host = self.network.add_host(f"dataserver{number}", DATA_HOST_FIRST + index)
        name = f"data-{index}"
        domain = self.domains[index] if index < len(self.domains) else ""
        argv = dataserver_command(number, str(self.root / name), host.address, self.meta_address)
        if domain:
            argv[argv.index("--domain") + 1] = domain
        return self._in_host("dataserver", name, host, [*argv, *self.data_args, *extra])

    def _gateway_spec(self, index: int, listen: str, extra: list[str]) -> ManagedProcess:
        """Start a gateway host; `listen` is ignored, since every gateway binds port 9000."""
        if index >= S3_HOST_MAX:
            raise InvalidArgument(f"at most {S3_HOST_MAX} gateway hosts fit the address plan")
        host = self.network.add_host(
            "s3" if index == 0 else f"s3-{index + 1}", S3_HOST_FIRST + index
        )
        name = f"s3-{index}"
        argv = gateway_command(",".join(m.address for m in self.metaservers))
        # --dir is the harness's own: the gateway writes server.json there once it listens.
        argv += ["--dir", str(self.root / name), *self.s3_args, *extra]
        return self._in_host("s3", name, host, argv)

    def _pin_listen_address(self, process: ManagedProcess) -> None:
        """Keep --listen as the compose file has it: every host binds the same fixed port."""
        if process.role == "s3":
            # The gateway's server.json records its --listen address, 0.0.0.0:9000.
            process.address = f"{self.host_of(process).address}:{S3_PORT}"

    def restart(self, process: ManagedProcess, timeout_s: float = START_TIMEOUT_S) -> None:
        super().restart(process, timeout_s)
        if process.role == "s3":
            self._pin_listen_address(process)
            self.write_cluster_file()

    def default_s3_listen(self) -> str:
        return f"{ANY_ADDRESS}:{S3_PORT}"

    def add_client_host(
        self, name: str = "", rate_mbit: int = DEFAULT_CLIENT_RATE_MBIT
    ) -> ClientHost:
        """Add a client host (uncapped unless `rate_mbit` > 0) and return it.

        Its processes see the cluster only through its own link, as a client on
        another machine would, and close() stops them.
        """
        if len(self.clients) >= CLIENT_HOST_MAX:
            raise InvalidArgument(f"at most {CLIENT_HOST_MAX} client hosts fit the address plan")
        name = name or f"client{len(self.clients) + 1}"
        host = self.network.add_host(name, CLIENT_HOST_FIRST + len(self.clients), rate_mbit)
        client = ClientHost(self, host)
        self.clients.append(client)
        return client

    def host_of(self, process: ManagedProcess) -> Host:
        """Return the host that `process` runs in."""
        namespace = process.args[process.args.index("exec") + 1]
        hosts = [h for h in self.network.hosts.values() if h.namespace == namespace]
        assert len(hosts) == 1, f"{process.name} runs in {namespace}, which is not a host"
        return hosts[0]

    def cut(self, process: ManagedProcess | ClientHost) -> None:
        """Cut the host of a server process, or a client host, off the network."""
        self.network.cut(self._host_name(process))

    def heal(self, process: ManagedProcess | ClientHost) -> None:
        """Reconnect the host of a server process, or a client host."""
        self.network.heal(self._host_name(process))

    def _host_name(self, process: ManagedProcess | ClientHost) -> str:
        if isinstance(process, ClientHost):
            return process.name
        return self.host_of(process).name

    def close(self) -> None:
        """Stop the clients' processes, then the servers by pid, then delete the namespaces.

        Safe to call twice.
        """
        try:
            for client in self.clients:
                client.stop()
            self.stop()
        finally:
            self.network.close()
            atexit.unregister(self.close)

    def __enter__(self) -> NetnsCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _raise_system_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m store.netns",
        description="Run a cluster with each server in a network namespace of its own (root only).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start a cluster and keep it until Ctrl-C or SIGTERM")
    up.add_argument("--dir", type=Path, help="cluster directory (default: a new temp dir)")
    up.add_argument("--dataservers", type=int, default=3, help="dataserver hosts")
    up.add_argument("--rate-mbit", type=int, default=DEFAULT_RATE_MBIT, help="cap per host, Mbit/s")
    up.add_argument("--s3", action="store_true", help="also start an S3 gateway host")
    up.add_argument("--clients", type=int, default=0, help="client hosts to add (uncapped)")
    commands.add_parser("clean", help="delete namespaces left by runs that were killed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    if args.command == "clean":
        print("removed:", " ".join(remove_stale_namespaces()) or "nothing")
        return 0
    signal.signal(signal.SIGTERM, _raise_system_exit)
    root = args.dir or Path(tempfile.mkdtemp(prefix="store-netns-"))
    s3_listen = f"{ANY_ADDRESS}:{S3_PORT}" if args.s3 else None
    with NetnsCluster(
        root, dataservers=args.dataservers, rate_mbit=args.rate_mbit, s3_listen=s3_listen
    ) as cluster:
        cluster.start()
        for _ in range(args.clients):
            cluster.add_client_host()
        print(f"metaserver {cluster.meta_address}; cluster.json in {root}")
        for host in cluster.network.hosts.values():
            rate = f"{host.rate_mbit} Mbit/s" if host.rate_mbit else "uncapped"
            print(f"  {host.name:12} {host.address:15} ns={host.namespace} {rate}")
        print(
            f"try: .venv/bin/storectl cluster status --meta {cluster.meta_address}; Ctrl-C stops it"
        )
        if cluster.clients:
            prefix = " ".join(cluster.network.exec_prefix(cluster.clients[0].name))
            command = f".venv/bin/storectl ls --meta {cluster.meta_address}"
            print(f"or from a client host: {prefix} {command}")
        try:
            while all(p.alive() for p in cluster.processes):
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        print("stopping", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
