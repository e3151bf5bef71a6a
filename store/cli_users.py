"""storectl user: add, list and remove the users who sign S3 requests."""

from __future__ import annotations

import argparse
import json

from store.cli_objects import connect
from store.tables import format_table

DEFAULT_TIMEOUT_S = 30.0


def _timeout_s(args: argparse.Namespace) -> float:
    return args.timeout_s if args.timeout_s is not None else DEFAULT_TIMEOUT_S


def user_add(args: argparse.Namespace) -> int:
    """Create a user and print its key pair, the only time the secret is shown."""
    with connect(args) as client:
        user = client.create_user(args.name, timeout_s=_timeout_s(args))
    if args.json:
        print(
            json.dumps(
                {"name": user.name, "access_key": user.access_key, "secret_key": user.secret_key}
            )
        )
        return 0
    print(f"created user {user.name}")
    print(f"access key: {user.access_key}")
    print(f"secret key: {user.secret_key}")
    print("the secret key is not shown again; keep it now")
    return 0


def user_ls(args: argparse.Namespace) -> int:
    with connect(args) as client:
        users = client.list_users(timeout_s=_timeout_s(args))
    if args.json:
        print(
            json.dumps(
                [
                    {"name": u.name, "access_key": u.access_key, "created": u.created.isoformat()}
                    for u in users
                ]
            )
        )
        return 0
    rows = [
        [u.name, u.access_key, u.created.astimezone().strftime("%Y-%m-%d %H:%M:%S")] for u in users
    ]
    print(format_table(["USER", "ACCESS KEY", "CREATED"], rows))
    return 0


def user_rm(args: argparse.Namespace) -> int:
    with connect(args) as client:
        client.delete_user(args.name, timeout_s=_timeout_s(args))
    print(f"removed user {args.name}")
    return 0
