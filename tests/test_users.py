"""Users and key pairs kept by the primary metaserver."""

from __future__ import annotations

import pytest

import store

from .support import ClusterFactory


def test_user_lifecycle(client: store.Client) -> None:
    created = client.create_user("user-lifecycle")
    assert created.access_key.startswith("STOR"), f"unexpected access key {created.access_key}"
    assert len(created.secret_key) == 40, "generated secret has the wrong length"
    listed = {user.name: user for user in client.list_users()}
    assert "user-lifecycle" in listed and "root" in listed, f"users listed: {sorted(listed)}"
    assert listed["user-lifecycle"].secret_key == "", "a listing revealed a secret key"
    found = client.get_credentials(created.access_key)
    assert found.secret_key == created.secret_key, "looked-up secret differs"
    with pytest.raises(store.AlreadyExists):
        client.create_user("user-lifecycle")
    client.delete_user("user-lifecycle")
    with pytest.raises(store.NotFound):
        client.get_credentials(created.access_key)
    with pytest.raises(store.NotFound):
        client.delete_user("user-lifecycle")


@pytest.mark.parametrize("name", ["", "has space", "x" * 65, "slash/no"])
def test_user_name_rules(client: store.Client, name: str) -> None:
    with pytest.raises(store.InvalidArgument):
        client.create_user(name)


def test_root_cannot_be_removed(client: store.Client) -> None:
    with pytest.raises(store.InvalidArgument):
        client.delete_user("root")


def test_root_keys_from_environment(
    cluster_factory: ClusterFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STORE_ROOT_ACCESS_KEY and STORE_ROOT_SECRET_KEY set the root keys of a new cluster."""
    monkeypatch.setenv("STORE_ROOT_ACCESS_KEY", "ROOTACCESSKEY0000001")
    monkeypatch.setenv("STORE_ROOT_SECRET_KEY", "rootSecretKey00000000000000000000000001")
    cluster = cluster_factory(dataservers=1)
    with store.Client(cluster.meta_address) as client:
        root = client.get_credentials("ROOTACCESSKEY0000001")
    assert root.name == "root", f"the environment's key belongs to {root.name}"
    assert root.secret_key == "rootSecretKey00000000000000000000000001"
