"""Fixtures that run real metaserver and dataserver processes on 127.0.0.1.

`cluster` and `client` share one cluster per session, for tests that only
touch their own bucket. `cluster_factory` starts a private cluster for a
test that kills processes, corrupts files or needs other server flags.
Every cluster is stopped at teardown, and the report of a failing test
carries the tail of every process log of the clusters it used.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

import store
from store.cluster import LocalCluster, tail

from .s3gw_support import DOMAIN as S3_DOMAIN
from .s3gw_support import GatewayInfo, s3_client
from .support import (
    BASE_META_ARGS,
    DATASERVER_COUNT,
    SHARD_COUNT,
    ClusterFactory,
    new_bucket_name,
)

LOG_TAIL_LINES = 30

_CLUSTERS_USED = pytest.StashKey[list[LocalCluster]]()


def _record_cluster(node: pytest.Item, cluster: LocalCluster) -> None:
    """Remember that the test at `node` uses `cluster`, for the logs in its failure report."""
    used = node.stash.setdefault(_CLUSTERS_USED, [])
    if cluster not in used:
        used.append(cluster)


def _log_tails(cluster: LocalCluster) -> str:
    parts = []
    for process in cluster.processes:
        state = "running" if process.alive() else "not running"
        parts.append(
            f"--- {process.name} pid={process.pid} ({state}), last {LOG_TAIL_LINES} lines of "
            f"{process.log_path}:\n{tail(process.log_path, LOG_TAIL_LINES)}"
        )
    return "\n".join(parts)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for cluster in item.stash.get(_CLUSTERS_USED, []):
            report.sections.append((f"process logs of cluster {cluster.root}", _log_tails(cluster)))
    return report


@pytest.fixture
def cluster_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ClusterFactory]:
    factory = ClusterFactory(tmp_path, lambda cluster: _record_cluster(request.node, cluster))
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture(scope="session")
def _shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        tmp_path_factory.mktemp("shared-cluster"),
        dataservers=DATASERVER_COUNT,
        shards=SHARD_COUNT,
        meta_args=BASE_META_ARGS,
    )
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def _shared_client(_shared_cluster: LocalCluster) -> Iterator[store.Client]:
    with store.Client(_shared_cluster.meta_address) as client:
        yield client


@pytest.fixture
def cluster(request: pytest.FixtureRequest, _shared_cluster: LocalCluster) -> LocalCluster:
    """The session's shared cluster, with the default GC delay. Change only your own bucket."""
    _record_cluster(request.node, _shared_cluster)
    return _shared_cluster


@pytest.fixture
def client(cluster: LocalCluster, _shared_client: store.Client) -> store.Client:
    """A blocking client of the shared cluster."""
    return _shared_client


@pytest.fixture
def bucket(client: store.Client) -> str:
    """A new, empty bucket in the shared cluster."""
    name = new_bucket_name("test")
    client.create_bucket(name)
    return name


@pytest.fixture(scope="session")
def _two_meta_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        tmp_path_factory.mktemp("two-meta-cluster"),
        dataservers=2,
        shards=SHARD_COUNT,
        metaservers=2,
        meta_args=BASE_META_ARGS,
    )
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def two_meta_client(
    request: pytest.FixtureRequest, _two_meta_cluster: LocalCluster
) -> Iterator[store.Client]:
    """A blocking client of a shared cluster whose 16 shards are split over 2 metaservers."""
    _record_cluster(request.node, _two_meta_cluster)
    with store.Client(_two_meta_cluster.meta_address) as client:
        yield client


# The S3 gateway of the shared cluster.


@pytest.fixture(scope="session")
def _shared_gateway(_shared_cluster: LocalCluster) -> GatewayInfo:
    process = _shared_cluster.add_gateway(extra_args=["--domain", S3_DOMAIN])
    access_key, secret_key = _shared_cluster.read_root_keys()
    return GatewayInfo(process, access_key, secret_key)


@pytest.fixture
def gateway(request: pytest.FixtureRequest, _shared_gateway: GatewayInfo) -> GatewayInfo:
    """An S3 gateway (store-s3) of the shared cluster, with the root user's keys."""
    _record_cluster(request.node, request.getfixturevalue("_shared_cluster"))
    return _shared_gateway


@pytest.fixture
def s3(gateway: GatewayInfo) -> Any:
    """A boto3 S3 client of the shared gateway, signed as root."""
    return s3_client(gateway)


@pytest.fixture
def s3_bucket(s3: Any) -> str:
    """A new, empty bucket created through the gateway."""
    name = new_bucket_name("s3")
    s3.create_bucket(Bucket=name)
    return name
