"""Static checks of docker-compose.yml and the Dockerfile against the real programs.

No Docker engine runs in CI, so these tests check what a `docker compose up` would
execute: every command names a console script of pyproject.toml, and the program's
own argparse parser accepts its flags. The network-namespace harness (store.netns)
must run the same commands, so they are also compared with the harness's; the
running harness is compared in tests/test_netns.py.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import re
import shlex
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import dataserver.main
import metaserver.main
from store import cli, netns
from store.cluster import LocalCluster
from store.s3 import server as s3_server

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

PARSERS: dict[str, Callable[[list[str]], argparse.Namespace]] = {
    "store-metaserver": metaserver.main.parse_args,
    "store-dataserver": dataserver.main.parse_args,
    "storectl": lambda argv: cli.build_parser().parse_args(argv),
    "store-s3": lambda argv: s3_server.build_parser().parse_args(argv),
}


def console_scripts() -> dict[str, str]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return dict(tomllib.load(file)["project"]["scripts"])


def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    return services


def as_argv(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def service_argv(service: dict[str, Any]) -> list[str]:
    """Return what the container runs: entrypoint followed by command."""
    return as_argv(service.get("entrypoint")) + as_argv(service.get("command"))


def parse_command(argv: list[str]) -> argparse.Namespace:
    """Parse `argv` with the real parser of its program; fail the test on any rejection."""
    assert argv, "empty command"
    program, *flags = argv
    assert program in console_scripts(), (
        f"{program!r} is not a console script of pyproject.toml: {sorted(console_scripts())}"
    )
    try:
        args = PARSERS[program](flags)
    except SystemExit as exit_error:
        pytest.fail(f"{program} rejected its flags {flags} (exit status {exit_error.code})")
    if program == "store-metaserver":
        metaserver.main.validate(args)
    return args


def services_running(program: str) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose_services().items()
        if service_argv(service)[:1] == [program]
    }


def test_checker_rejects_unknown_flag() -> None:
    with pytest.raises(pytest.fail.Exception, match="rejected its flags"):
        parse_command(["store-dataserver", "--dir", "/data", "--meta", "m:7000", "--bogus"])


def test_checker_rejects_unknown_program() -> None:
    with pytest.raises(AssertionError, match="not a console script"):
        parse_command(["store-gateway", "--dir", "/data"])


def test_checker_rejects_invalid_value() -> None:
    with pytest.raises(pytest.fail.Exception, match="rejected its flags"):
        parse_command(["store-metaserver", "--dir", "/data", "--shard-count", "many"])


@pytest.mark.parametrize("name", sorted(compose_services()))
def test_service_command_parses(name: str) -> None:
    argv = service_argv(compose_services()[name])
    parse_command(argv)


def test_compose_has_one_metaserver_four_dataservers() -> None:
    assert len(services_running("store-metaserver")) == 1
    assert len(services_running("store-dataserver")) == 4


def test_gateway_points_at_metaserver() -> None:
    (meta_name, meta_service), *_ = services_running("store-metaserver").items()
    meta_address = parse_command(service_argv(meta_service)).advertise
    gateways = services_running("store-s3")
    assert len(gateways) == 1
    for name, service in gateways.items():
        args = parse_command(service_argv(service))
        assert args.meta == meta_address, f"{name} --meta {args.meta} is not {meta_address}"
        assert meta_name in as_argv(service.get("depends_on")), f"{name} must depend on it"
        port = args.listen.rpartition(":")[2]
        assert f"{port}:{port}" in service["ports"], f"{name} does not publish port {port}"


def test_dataservers_point_at_metaserver() -> None:
    (meta_name, meta_service), *_ = services_running("store-metaserver").items()
    meta_args = parse_command(service_argv(meta_service))
    meta_host, _, meta_port = meta_args.advertise.rpartition(":")
    assert meta_host == meta_name
    for name, service in services_running("store-dataserver").items():
        args = parse_command(service_argv(service))
        host, _, port = args.meta.rpartition(":")
        assert host == meta_name, f"{name} --meta {args.meta} does not name {meta_name}"
        assert port == meta_port, f"{name} --meta {args.meta} does not use port {meta_port}"
        assert meta_name in as_argv(service.get("depends_on")), f"{name} must depend on it"


def test_dataservers_advertise_own_name() -> None:
    for name, service in services_running("store-dataserver").items():
        args = parse_command(service_argv(service))
        assert args.advertise.rpartition(":")[0] == name


def test_dataserver_ids_unique() -> None:
    ids = [
        parse_command(service_argv(service)).id
        for service in services_running("store-dataserver").values()
    ]
    assert None not in ids
    assert len(set(ids)) == len(ids)


def test_servers_keep_dir_on_named_volume() -> None:
    declared = set(yaml.safe_load(COMPOSE_FILE.read_text())["volumes"])
    servers = services_running("store-metaserver") | services_running("store-dataserver")
    used = []
    for name, service in servers.items():
        directory = str(parse_command(service_argv(service)).dir)
        mounts = dict(v.split(":", 1)[::-1] for v in service["volumes"])
        assert directory in mounts, f"{name} has no volume at its --dir {directory}"
        assert mounts[directory] in declared, f"{name} volume {mounts[directory]} not declared"
        used.append(mounts[directory])
    assert len(set(used)) == len(used), "two servers share a volume"


def harness_command(name: str, meta_service: str) -> list[str]:
    """Return the harness's command for compose service `name`, with service names as hosts.

    The harness passes its host's address where the compose file has a service
    name, and its own directory for the volume at /data.
    """
    meta = f"{meta_service}:{netns.META_PORT}"
    program = service_argv(compose_services()[name])[0]
    if program == "store-metaserver":
        shard_count = inspect.signature(LocalCluster.__init__).parameters["shards"].default
        return netns.metaserver_command("/data", name, shard_count)
    if program == "store-dataserver":
        match = re.fullmatch(r"dataserver(\d+)", name)
        assert match, f"dataserver service {name} is not named dataserverN as the harness's hosts"
        return netns.dataserver_command(int(match[1]), "/data", name, meta)
    assert program == "store-s3", f"service {name} runs {program}, which the harness does not"
    return netns.gateway_command(meta)


SERVER_PROGRAMS = ("store-metaserver", "store-dataserver", "store-s3")


@pytest.mark.parametrize(
    "name",
    sorted(
        name
        for name, service in compose_services().items()
        if service_argv(service)[0] in SERVER_PROGRAMS
    ),
)
def test_netns_harness_runs_the_compose_command(name: str) -> None:
    """The harness runs each server service's program with the same flags, hosts aside."""
    (meta_service, _), *_ = services_running("store-metaserver").items()
    compose_argv = service_argv(compose_services()[name])
    assert harness_command(name, meta_service) == compose_argv, (
        f"store/netns.py runs another command than service {name} of docker-compose.yml"
    )


def test_netns_harness_default_topology_matches_compose() -> None:
    """The harness's port plan and shard count are the compose file's."""
    (meta_name, meta_service), *_ = services_running("store-metaserver").items()
    meta_args = parse_command(service_argv(meta_service))
    assert meta_args.advertise == f"{meta_name}:{netns.META_PORT}"
    shard_count = inspect.signature(LocalCluster.__init__).parameters["shards"].default
    assert meta_args.shard_count == shard_count, "the harness's default shard count differs"
    for service in services_running("store-dataserver").values():
        args = parse_command(service_argv(service))
        assert args.listen == f"0.0.0.0:{netns.DATA_PORT}"
    (gateway,) = services_running("store-s3").values()
    assert parse_command(service_argv(gateway)).listen == f"0.0.0.0:{netns.S3_PORT}"


def test_console_scripts_importable() -> None:
    for name, target in console_scripts().items():
        module_name, _, function_name = target.partition(":")
        module = importlib.import_module(module_name)
        assert callable(getattr(module, function_name, None)), f"{name} -> {target} is missing"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """Return (INSTRUCTION, arguments) pairs, with continuation lines joined."""
    instructions = []
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_dockerfile_base_image() -> None:
    froms = [rest for keyword, rest in dockerfile_instructions() if keyword == "FROM"]
    assert froms == ["python:3.11-slim"]


def test_dockerfile_installs_with_pip() -> None:
    runs = [rest for keyword, rest in dockerfile_instructions() if keyword == "RUN"]
    assert any("pip install ." in run for run in runs)


def test_dockerfile_copies_existing_paths() -> None:
    for keyword, rest in dockerfile_instructions():
        if keyword == "COPY":
            *sources, _destination = rest.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY source {source} does not exist"


def test_dockerfile_entry_points_parse() -> None:
    commands = [
        json.loads(rest)
        for keyword, rest in dockerfile_instructions()
        if keyword in ("CMD", "ENTRYPOINT")
    ]
    assert commands, "the Dockerfile has no CMD or ENTRYPOINT"
    for argv in commands:
        parse_command(argv)
