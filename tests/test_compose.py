"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

Every service must run something the project really has (the `kadence` console script and its
subcommands, `python -m` modules that exist), the brokers must form a KRaft cluster (one by
default, three with the `cluster` profile), and the topic layout must match `Settings`.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from kadence.streams.settings import Settings

REPO = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _kafka_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in SERVICES.items() if str(s.get("image", "")).startswith("apache/kafka:")}


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    return command.split() if isinstance(command, str) else list(command or [])


def _flag(command: list[str], name: str) -> str:
    assert name in command, f"{command} has no {name}"
    return command[command.index(name) + 1]


def _brokers(profile: str | None) -> list[str]:
    """Broker services started by `docker compose [--profile P] up`."""
    return [
        n
        for n, s in _kafka_services().items()
        if "broker" in _env(s)["KAFKA_PROCESS_ROLES"] and (not s.get("profiles") or profile in s["profiles"])
    ]


# --- the brokers ----------------------------------------------------------------------------------


def test_kafka_is_apache_kafka_in_kraft_mode() -> None:
    assert not [n for n in SERVICES if "zookeeper" in n.lower()]
    kafka = _kafka_services()
    assert "kafka" in kafka
    node_ids = [_env(s)["KAFKA_NODE_ID"] for s in kafka.values()]
    assert len(node_ids) == len(set(node_ids))
    cluster_ids = {_env(s)["CLUSTER_ID"] for s in kafka.values()}
    assert len(cluster_ids) == 1
    # Every voter is a service running the controller role with that node id, on its controller port.
    for service in kafka.values():
        for voter in _env(service)["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(","):
            node_id, address = voter.split("@")
            host, port = address.split(":")
            target = kafka[host]
            assert _env(target)["KAFKA_NODE_ID"] == node_id
            assert "controller" in _env(target)["KAFKA_PROCESS_ROLES"]
            assert f"CONTROLLER://:{port}" in _env(target)["KAFKA_LISTENERS"]
    for name, service in kafka.items():
        env = _env(service)
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # topics are created with their counts
        assert f"PLAINTEXT://{name}:9092" in env["KAFKA_ADVERTISED_LISTENERS"]


#: Broker settings Kadence depends on, as the test suite's Apache Kafka runs them
#: (kadence.streams.apache_kafka.SINGLE_NODE_DEFAULTS); the compose brokers must agree.
ENGINE_BROKER_SETTINGS = (
    "auto.create.topics.enable",
    "group.initial.rebalance.delay.ms",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms",
    "offsets.topic.replication.factor",
    "transaction.state.log.replication.factor",
    "transaction.state.log.min.isr",
    "share.coordinator.state.topic.replication.factor",
    "share.coordinator.state.topic.min.isr",
)


def _kafka_env_name(prop: str) -> str:
    """The apache/kafka image's variable for a server property (dots become underscores)."""
    return "KAFKA_" + prop.upper().replace(".", "_")


def test_the_brokers_run_the_kafka_version_and_settings_the_tests_run() -> None:
    from kadence.streams.apache_kafka import KAFKA_VERSION, SINGLE_NODE_DEFAULTS

    for name, service in _kafka_services().items():
        assert service["image"] == f"apache/kafka:{KAFKA_VERSION}", name
        env = _env(service)
        for prop in ENGINE_BROKER_SETTINGS:
            assert env.get(_kafka_env_name(prop)) == SINGLE_NODE_DEFAULTS[prop], (name, prop)


def test_the_processors_use_the_kafka_profile_and_a_session_the_broker_accepts() -> None:
    from kadence.streams.settings import KAFKA_BROKER_PROFILE

    defaults = Settings()
    broker_min_session = min(
        int(_env(s).get("KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS", "6000")) for s in _kafka_services().values()
    )
    for name in ("history", "derived", "worker"):
        env = _env(SERVICES[name])
        for knob, value in KAFKA_BROKER_PROFILE.items():
            assert int(env[f"KADENCE_{knob.upper()}"]) == value, (name, knob)
        session = int(env.get("KADENCE_SESSION_TIMEOUT_MS", defaults.session_timeout_ms))
        assert session >= broker_min_session, name  # else every JoinGroup fails INVALID_SESSION_TIMEOUT


def test_one_broker_by_default_and_three_with_the_cluster_profile() -> None:
    assert _brokers(None) == ["kafka"]
    assert len(_brokers("cluster")) == 3


# --- the Kadence services -------------------------------------------------------------------------


def test_the_expected_services_exist() -> None:
    assert {"topics", "history", "derived", "worker"} <= set(SERVICES)
    assert _command(SERVICES["history"])[:2] == ["kadence", "server"]
    assert _flag(_command(SERVICES["history"]), "--only") == "history"
    assert _flag(_command(SERVICES["derived"]), "--only") == "derived"
    assert _command(SERVICES["topics"])[:3] == ["kadence", "topics", "create"]
    assert _command(SERVICES["worker"]) == ["python", "-m", "examples.worker"]


def test_processors_and_worker_wait_for_the_topics() -> None:
    assert SERVICES["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in ("history", "derived", "worker"):
        assert SERVICES[name]["depends_on"]["topics"]["condition"] == "service_completed_successfully"


def test_every_bootstrap_names_a_broker_listener() -> None:
    listeners = {f"{n}:9092" for n in _kafka_services()}
    for name, service in SERVICES.items():
        command = _command(service)
        if "--bootstrap" in command:
            assert _flag(command, "--bootstrap") in listeners, name
        if "KADENCE_BOOTSTRAP" in _env(service):
            assert _env(service)["KADENCE_BOOTSTRAP"] in listeners, name


def test_topic_settings_match_the_code_defaults() -> None:
    defaults = Settings()
    assert int(_flag(_command(SERVICES["topics"]), "--partitions")) == defaults.partitions
    for name in ("history", "derived", "worker"):
        env = _env(SERVICES[name])
        assert env.get("KADENCE_PREFIX", defaults.prefix) == defaults.prefix
        if "KADENCE_PARTITIONS" in env:
            assert int(env["KADENCE_PARTITIONS"]) == defaults.partitions


@pytest.mark.parametrize("name", [n for n, s in SERVICES.items() if "build" in s])
def test_each_command_is_a_real_entry_point(name: str) -> None:
    command = _command(SERVICES[name])
    if command[0] == "kadence":
        assert PYPROJECT["project"]["scripts"]["kadence"] == "kadence.cli:main"
        from kadence.cli import build_parser

        args = build_parser().parse_args(command[1:])  # the real parser accepts the service's command
        if args.command == "server":
            from kadence.cli import COMPONENTS

            assert set(args.only.split(",")) <= set(COMPONENTS)
    elif command[:2] == ["python", "-m"]:
        module = command[2].split(".")
        as_file = REPO.joinpath(*module[:-1], module[-1] + ".py")
        as_package = REPO.joinpath(*module, "__main__.py")
        assert as_file.exists() or as_package.exists(), f"{command[2]} is not a module of the project"
        if module[0] != "kadence":  # not in the wheel: the image runs it from its copy of the repo
            dockerfile = (REPO / "Dockerfile").read_text()
            assert "WORKDIR /app" in dockerfile and "COPY . /app" in dockerfile, (
                f"{command[2]} is not in the image"
            )
    else:
        pytest.fail(f"service {name} runs {command}, which is neither the kadence CLI nor a project module")


def test_the_cli_has_the_documented_subcommands() -> None:
    cli = REPO / "kadence" / "cli" / "__init__.py"
    assert cli.exists(), "kadence/cli/ (the console script) does not exist yet"
    source = cli.read_text()  # its COMMANDS table names every subcommand
    for subcommand in ("server", "topics", "demo", "worker"):
        assert re.search(rf"[\"']{subcommand}[\"']", source), f"kadence/cli/ has no {subcommand!r} subcommand"


# --- the image ------------------------------------------------------------------------------------


def test_dockerfile_installs_the_project_on_python_311_slim() -> None:
    lines = [
        ln.strip()
        for ln in (REPO / "Dockerfile").read_text().splitlines()
        if ln.strip() and not ln.strip().startswith("#")
    ]
    assert lines[0] == "FROM python:3.11-slim"
    assert any(re.search(r"\bpip install \.(\s|$)", ln) for ln in lines)
    assert any(ln.startswith("COPY . ") for ln in lines)


def test_pip_install_ships_every_package_the_services_import() -> None:
    """`pip install .` in the image installs the packages [tool.setuptools] lists, each mapped from
    a folder of the repo by `package-dir`: every package folder of those must be listed."""
    setup = PYPROJECT["tool"]["setuptools"]
    listed = set(setup["packages"])
    found = set()
    for package, folder in setup["package-dir"].items():
        for init in (REPO / folder).glob("**/__init__.py"):
            relative = init.parent.relative_to(REPO / folder).parts
            found.add(".".join((package, *relative)))
    assert found == listed
    readme = PYPROJECT["project"].get("readme")
    if readme:
        assert (REPO / readme).exists(), f"pyproject names readme {readme!r}, which pip install . needs"
