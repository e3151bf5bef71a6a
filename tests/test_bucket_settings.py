"""Bucket settings (the S3 gateway's CORS rules, for one) on a cluster of two metaservers.

The primary keeps the bucket catalog. An update sent to the secondary is forwarded to
the primary, and both metaservers then return the new settings.
"""

from __future__ import annotations

import grpc

import store
from store._pb import meta_pb2, meta_pb2_grpc
from store.cluster import LocalCluster
from store.rpc import CHANNEL_OPTIONS

from .support import new_bucket_name, wait_until

SYNC_WAIT_S = 10.0


def _head(address: str, name: str) -> dict[str, str]:
    with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        stub = meta_pb2_grpc.MetaServiceStub(channel)
        record = stub.HeadBucket(meta_pb2.HeadBucketRequest(name=name), timeout=5)
    return dict(record.settings)


def _update(address: str, request: meta_pb2.UpdateBucketSettingsRequest) -> dict[str, str]:
    with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        stub = meta_pb2_grpc.MetaServiceStub(channel)
        return dict(stub.UpdateBucketSettings(request, timeout=5).settings)


def test_settings_reach_both_metaservers(
    two_meta_client: store.Client, _two_meta_cluster: LocalCluster
) -> None:
    name = new_bucket_name("settings")
    two_meta_client.create_bucket(name)
    primary, secondary = (process.address for process in _two_meta_cluster.metaservers)

    through_sdk = two_meta_client.update_bucket_settings(name, set_entries={"cors": "[1]"})
    forwarded = _update(
        secondary,
        meta_pb2.UpdateBucketSettingsRequest(
            name=name, set_settings={"other": "x"}, remove_settings=["cors"]
        ),
    )

    assert through_sdk.settings == {"cors": "[1]"}
    assert forwarded == {"other": "x"}
    for address in (primary, secondary):
        wait_until(lambda a=address: _head(a, name) == {"other": "x"}, SYNC_WAIT_S, address)
    assert two_meta_client.head_bucket(name).settings == {"other": "x"}
