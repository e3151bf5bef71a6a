"""A cluster whose servers run as separate hosts in Linux network namespaces.

Each host (metaserver, dataserver, S3 gateway) gets a network namespace of its
own with one interface, eth0, whose peer joins a bridge. The bridge sits in a
dedicated namespace too, so the root namespace's firewall never filters the
traffic between hosts. The process that builds the network (the client side)
reaches the hosts through one more veth pair from the root namespace:

    root ns: sn<pid> 10.77.N.1 ──┐
                                 │      stns-<pid>-net: bridge br0
    stns-<pid>-metaserver  eth0 ─┤ 10.77.N.2
    stns-<pid>-dataserver1 eth0 ─┤ 10.77.N.11 ...
    stns-<pid>-s3          eth0 ─┘ 10.77.N.51

Addresses come from one free /24 of 10.77.0.0/16 and exist only inside these
namespaces plus the one root-side veth. A `tc` token bucket on both ends of each
host's link caps what the host sends and receives, as a NIC would. The servers
run the commands of docker-compose.yml (same ports, --advertise, --id, --domain).

Creating namespaces needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN);
`require_netns()` raises NetnsUnavailable with the reason where they are missing.

By hand, as root:  python -m store.netns up --dataservers 3 --rate-mbit 100
"""

from __future__ import annotations

import argparse
import atexit
import ipaddress
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from store.cluster import LocalCluster, ManagedProcess, pid_alive
from store.errors import InvalidArgument, StoreError

log = logging.getLogger(__name__)

# Each run takes one /24 of this range; nothing outside the namespaces uses it.
ADDRESS_RANGE = ipaddress.IPv4Network("10.77.0.0/16")
NAMESPACE_PREFIX = "stns-"
BRIDGE_NAME = "br0"
META_PORT = 7000
DATA_PORT = 7100
S3_PORT = 9000
# Host numbers inside the /24: .1 is the root namespace, then metaservers, dataservers, gateways.
META_HOST_FIRST = 2
DATA_HOST_FIRST = 11
S3_HOST_FIRST = 51
DATA_HOST_MAX = S3_HOST_FIRST - DATA_HOST_FIRST
DEFAULT_RATE_MBIT = 100
# More than one 64 KiB GSO packet, which tbf would otherwise have to split into segments.
TBF_BURST_BYTES = 128 * 1024
TBF_LATENCY_MS = 50
COMMAND_TIMEOUT_S = 10.0


class NetnsUnavailable(StoreError):
    """Network namespaces cannot be created here (not root, or no `ip`/`tc`)."""

    code = "NetnsUnavailable"


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
    rate_mbit: int


class HostNetwork:
    """The namespaces, veth pairs and bridge of one run, which `close()` deletes."""

    def __init__(self, rate_mbit: int = DEFAULT_RATE_MBIT) -> None:
        require_netns()
        self.prefix = f"{NAMESPACE_PREFIX}{os.getpid()}-"
        self.bridge_namespace = f"{self.prefix}net"
        self.root_link = f"sn{os.getpid()}"
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
        """Create namespace PREFIX+name with eth0 on the bridge, capped at `rate_mbit` each way."""
        assert name not in self.hosts, f"host {name} exists already"
        rate = self.rate_mbit if rate_mbit is None else rate_mbit
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
        self._limit_rate(namespace, "eth0", rate)
        self._limit_rate(self.bridge_namespace, port, rate)
        self.hosts[name] = host
        log.info(
            "host up name=%s ns=%s address=%s rate_mbit=%d", name, namespace, host.address, rate
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
        """Delete every namespace this network created; their veths go with them."""
        for namespace in reversed(self.namespaces):
            result = run_ip(["ip", "netns", "del", namespace], check=False)
            if result.returncode != 0:
                log.warning("failed to delete ns=%s: %s", namespace, result.stderr.strip())
        self.namespaces.clear()
        self.hosts.clear()
        # Deleting the bridge namespace deletes the root-side veth too, unless setup failed halfway.
        if run_ip(["ip", "link", "show", self.root_link], check=False).returncode == 0:
            run_ip(["ip", "link", "del", self.root_link], check=False)


def remove_stale_namespaces() -> list[str]:
    """Delete namespaces left by runs whose process no longer exists (after a SIGKILL)."""
    removed = []
    listing = run_ip(["ip", "netns", "list"]).stdout
    for namespace in re.findall(rf"^({NAMESPACE_PREFIX}(\d+)-\S+)", listing, re.MULTILINE):
        name, pid = namespace
        if not pid_alive(int(pid)):
            run_ip(["ip", "netns", "del", name], check=False)
            removed.append(name)
    return removed


class NetnsCluster(LocalCluster):
    """A LocalCluster whose every server runs in a host namespace of a HostNetwork.

    The servers run the docker-compose.yml commands: metaserver on port 7000,
    dataservers `dsN` in domain `dataserverN` on port 7100, each advertising its
    host address. `close()` stops the processes and deletes the network; it also
    runs at interpreter exit, so an exception or Ctrl-C leaves nothing behind.
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
        self.network = HostNetwork(rate_mbit)
        atexit.register(self.close)
        try:
            super().__init__(root, dataservers=dataservers, **options)  # type: ignore[arg-type]
        except BaseException:
            self.close()
            raise

    def _in_host(
        self, process: ManagedProcess, host: Host, listen: str, advertise: bool
    ) -> ManagedProcess:
        """Run `process` inside `host`, listening on `listen` and advertising its host address."""
        args = process.args
        args[args.index("--listen") + 1] = listen
        if advertise:
            args += ["--advertise", f"{host.address}:{listen.rsplit(':', 1)[1]}"]
        process.args = self.network.exec_prefix(host.name) + args
        return process

    def _metaserver_spec(self, index: int, count: int) -> ManagedProcess:
        name = "metaserver" if index == 0 else f"metaserver{index + 1}"
        host = self.network.add_host(name, META_HOST_FIRST + index)
        process = super()._metaserver_spec(index, count)
        return self._in_host(process, host, f"0.0.0.0:{META_PORT}", advertise=True)

    def _dataserver_spec(self, index: int, extra: list[str]) -> ManagedProcess:
        number = index + 1
        if index >= len(self.domains):
            self.domains += [f"dataserver{i + 1}" for i in range(len(self.domains), number)]
        host = self.network.add_host(f"dataserver{number}", DATA_HOST_FIRST + index)
        process = super()._dataserver_spec(index, ["--id", f"ds{number}", *extra])
        return self._in_host(process, host, f"0.0.0.0:{DATA_PORT}", advertise=True)

    def _gateway_spec(self, index: int, listen: str, extra: list[str]) -> ManagedProcess:
        name = "s3" if index == 0 else f"s3-{index + 1}"
        host = self.network.add_host(name, S3_HOST_FIRST + index)
        process = super()._gateway_spec(index, listen, extra)
        # store-s3 has no --advertise, and its server.json records the --listen address.
        return self._in_host(process, host, f"{host.address}:{S3_PORT}", advertise=False)

    def default_s3_listen(self) -> str:
        return f"0.0.0.0:{S3_PORT}"

    def host_of(self, process: ManagedProcess) -> Host:
        """Return the host that `process` runs in."""
        namespace = process.args[process.args.index("exec") + 1]
        hosts = [h for h in self.network.hosts.values() if h.namespace == namespace]
        assert len(hosts) == 1, f"{process.name} runs in {namespace}, which is not a host"
        return hosts[0]

    def cut(self, process: ManagedProcess) -> None:
        """Cut the host of `process` off the network."""
        self.network.cut(self.host_of(process).name)

    def heal(self, process: ManagedProcess) -> None:
        """Reconnect the host of `process`."""
        self.network.heal(self.host_of(process).name)

    def close(self) -> None:
        """Stop every process by pid, then delete the namespaces. Safe to call twice."""
        try:
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
    commands.add_parser("clean", help="delete namespaces left by runs that were killed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    if args.command == "clean":
        print("removed:", " ".join(remove_stale_namespaces()) or "nothing")
        return 0
    signal.signal(signal.SIGTERM, _raise_system_exit)
    root = args.dir or Path(tempfile.mkdtemp(prefix="store-netns-"))
    s3_listen = f"0.0.0.0:{S3_PORT}" if args.s3 else None
    with NetnsCluster(
        root, dataservers=args.dataservers, rate_mbit=args.rate_mbit, s3_listen=s3_listen
    ) as cluster:
        cluster.start()
        print(f"metaserver {cluster.meta_address}; cluster.json in {root}")
        for host in cluster.network.hosts.values():
            print(f"  {host.name:12} {host.address:15} ns={host.namespace} {host.rate_mbit} Mbit/s")
        print(f"try: storectl --meta {cluster.meta_address} cluster status; Ctrl-C stops it")
        try:
            while all(p.alive() for p in cluster.processes):
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        print("stopping", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
