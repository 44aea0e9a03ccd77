"""Kafka security end to end: SASL/SCRAM-SHA-512 over TLS and ACLs with Kafka's own authorizer.

The test starts its own secured Apache Kafka node (`streams.secured_kafka`: a CA and a broker
certificate made with openssl, SASL_SSL only, StandardAuthorizer) with two principals and the ACLs
of `streams.acls`: the engine may do everything under the deployment's prefix; the client (used
by the client, the worker and the CLI here) may write `commands` and read what a client reads.

- the engine runs as `kadence server` runs it (one process per processor, the principal's
  librdkafka properties in their environment), the worker and the client in this process, the
  CLI as a subprocess with a properties file;
- the client principal starts, queries and signals a workflow that completes (its history is
  asserted), and is refused writes to `history` and the engine-internal commands, and the
  engine's transactional ids;
- it may write `commands`, but an engine-only command it forges there (a `FireTimer` of the run's
  execution timeout) is dead-lettered for want of the engine's signature and the run completes;
  it cannot read the engine secret that signs them (`<prefix>engine-secret`);
- a worker whose principal may not write `commands` says so once, at ERROR, and sends its answers
  again with backoff instead of in a tight loop.

Apache Kafka only (it needs the JVM and the jars `--kafka=apache` uses); skipped on other brokers.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin._acl import AclOperation
from prometheus_client import REGISTRY

from kadence.client import Client
from kadence.processors.server import ServerProcesses
from kadence.samples import account_opening as sample
from kadence.streams.acls import client_acls, create_acls, engine_acls
from kadence.streams.clients import make_admin, make_consumer, make_producer, producer_config
from kadence.streams.serde import serde
from kadence.streams.settings import Settings, kafka_broker_settings
from kadence.streams.signing import SIGNATURE_HEADER
from kadence.streams.topics import ensure_core_topics
from kadence.worker import Worker
from tests.support.kafka_only import java_missing

#: READER: a principal that may read tasks like a worker but not write `commands`.
ENGINE, CLIENT, READER = "engine", "client", "reader"


@pytest.fixture(scope="module")
def secured(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.getfixturevalue("broker_kind") != "apache":
        pytest.skip(
            "needs Apache Kafka (--kafka=apache): the test starts its own SASL_SSL node with ACLs, "
            "which the embedded Tansu broker does not support"
        )
    why = java_missing()
    if why is not None:
        pytest.skip(why)
    from kadence.streams.secured_kafka import SecuredApacheKafka

    users = {ENGINE: uuid.uuid4().hex, CLIENT: uuid.uuid4().hex, READER: uuid.uuid4().hex}
    with SecuredApacheKafka(users=users) as kafka:
        yield kafka


def _settings(kafka: Any, user: str, prefix: str, state_dir: Path) -> Settings:
    return kafka_broker_settings(
        kafka.bootstrap,
        prefix=prefix,
        state_dir=str(state_dir),
        partitions=2,
        task_partitions=1,
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
        kafka_config=kafka.client_config(user),
    )


@pytest.fixture
def deployment(secured: Any, tmp_path: Path) -> Iterator[tuple[Settings, Settings, ServerProcesses]]:
    """The engine's and the client's Settings on one prefix with their ACLs, the topics created by
    the engine principal, and the engine running as that principal."""
    prefix = f"s{uuid.uuid4().hex[:8]}."
    engine = _settings(secured, ENGINE, prefix, tmp_path / "state")
    client = _settings(secured, CLIENT, prefix, tmp_path / "client-state")
    admin = secured.admin()
    create_acls(admin, engine_acls(engine, f"User:{ENGINE}") + client_acls(client, f"User:{CLIENT}"))
    ensure_core_topics(engine, [sample.TASK_LIST])
    # `kadence server`'s processes: the principal's properties reach them through Settings.to_env
    server = ServerProcesses(engine, log_level="WARNING")
    server.start()
    try:
        yield engine, client, server
    finally:
        server.stop()
        for component, proc in server.procs.items():
            assert proc.returncode in (0, -15), f"{component} exited with {proc.returncode}"


def _produce_one(settings: Settings, topic: str, **extra: Any) -> KafkaError | None:
    """Produce one record as `settings`' principal; the delivery error (None: delivered)."""
    producer = make_producer(settings, **{"message.timeout.ms": 10000, **extra})
    errors: list[KafkaError | None] = []
    producer.produce(topic, key=b"forged", value=b"forged", on_delivery=lambda err, _m: errors.append(err))
    producer.flush(20)
    assert errors, f"no delivery report for {topic}"
    return errors[0]


def test_client_principal_runs_a_workflow_and_cannot_write_engine_topics(deployment: Any) -> None:
    engine, client_settings, _server = deployment
    client = Client(client_settings)
    worker = Worker(client, sample.TASK_LIST, workflows=sample.WORKFLOWS, activities=sample.ACTIVITIES)
    worker.start()
    try:
        assert worker.assigned.wait(60), "the worker (client principal) never got its task partitions"
        handle = client.start_workflow(
            sample.AccountOpeningWorkflow.run, "ada", id="secure-ada", task_list=sample.TASK_LIST
        )
        deadline = time.monotonic() + 60
        status = ""
        while "waiting for a plan" not in status:
            assert time.monotonic() < deadline, f"the query never saw the workflow wait (last {status!r})"
            status = handle.query(sample.AccountOpeningWorkflow.current_status, timeout=30)
            time.sleep(0.1)
        # The client principal may write `commands`, but not what only the engine sends there.
        _forge_workflow_timeout(client_settings, engine, "secure-ada")
        handle.signal(sample.AccountOpeningWorkflow.choose_plan, "premium")
        result = handle.result(timeout=60)
        assert result["plan"] == "premium" and result["account"] == "acct-ada-premium"
        events = handle.history()
        types = [e["attributes"][0] for e in events]
        assert types[0] == "WorkflowExecutionStarted" and types[-1] == "WorkflowExecutionCompleted"
        assert types.count("ActivityTaskCompleted") == 2
        assert "WorkflowExecutionSignaled" in types
        assert "WorkflowExecutionTimedOut" not in types
    finally:
        worker.stop(5)
        client.close()

    # The client principal may not write what only the engine writes...
    for topic in (engine.history_topic, engine.completions_topic, engine.dead_letters_topic):
        err = _produce_one(client_settings, topic)
        assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (topic, err)
    # ...nor take over an engine instance's transactional id (which would fence it).
    conf = producer_config(client_settings)
    conf["transactional.id"] = engine.transactional_id("history", 0)
    with pytest.raises(KafkaException) as refused:
        Producer(conf).init_transactions(20)
    assert refused.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    # The engine principal can (the same produce is accepted: the ACLs, not the records, refused).
    assert _produce_one(engine, engine.dead_letters_topic) is None
    # The key that signs engine-only commands: the engine provisioned it; the client cannot read it.
    secret_topic = engine.engine_secret_topic
    assert _read_first(engine, secret_topic, 30) is not None
    assert _read_first(client_settings, secret_topic, 10) is None
    metadata = make_admin(client_settings).list_topics(secret_topic, timeout=20).topics[secret_topic]
    assert metadata.error is not None and metadata.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def _read_first(settings: Settings, topic: str, wait_s: float) -> bytes | None:
    """The first record of partition 0 of `topic` as `settings`' principal; None if none came."""
    consumer = make_consumer(settings, settings.group("client-security-test"))
    consumer.assign([TopicPartition(topic, 0, 0)])
    try:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is not None and m.error() is None:
                return m.value()
        return None
    finally:
        consumer.close()


def _forge_workflow_timeout(client_settings: Settings, engine: Settings, workflow_id: str) -> None:
    """Send the FireTimer of `workflow_id`'s execution timeout as the client principal (delivered:
    the ACLs let it write `commands`) and wait for the engine to dead-letter it with the reason."""
    codec = serde()
    command_id = f"forged-{uuid.uuid4().hex}"
    fire = {"kind": "workflow_timeout", "event_id": 1, "attempt": 0, "timer_id": ""}
    record = {
        "command_id": command_id,
        "domain": "default",
        "workflow_id": workflow_id,
        "run_id": "",
        "timestamp": int(time.time() * 1000),
        "payload": ("FireTimer", fire),
    }
    producer = make_producer(client_settings)
    errors: list[KafkaError | None] = []
    producer.produce(
        client_settings.commands_topic,
        key=workflow_id.encode(),
        value=codec.encode("Command", record),
        headers=list(codec.headers("Command")),
        on_delivery=lambda err, _m: errors.append(err),
    )
    producer.flush(20)
    assert errors == [None], errors
    consumer = make_consumer(engine, engine.group("dead-letter-check"))  # as the engine principal
    consumer.assign([TopicPartition(engine.dead_letters_topic, 0, 0)])
    dead: dict[str, Any] | None = None
    deadline = time.monotonic() + 60
    try:
        while dead is None:
            assert time.monotonic() < deadline, "the forged FireTimer was not dead-lettered"
            m = consumer.poll(0.5)
            if m is not None and m.error() is None:
                letter = codec.decode(m.value())[1]
                if command_id.encode() in (letter["value"] or b""):
                    dead = letter
    finally:
        consumer.close()
    assert "FireTimer is an engine-internal command" in dead["reason"], dead["reason"]
    assert f"no valid engine signature ({SIGNATURE_HEADER} header)" in dead["reason"], dead["reason"]


def test_a_worker_refused_by_the_acls_backs_off_and_says_so_once(
    deployment: Any, secured: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker whose principal may read its tasks but not write `commands`: its answer is refused
    (TOPIC_AUTHORIZATION_FAILED, which no retry cures). It logs one ERROR naming the topic and the
    missing permission, counts each refusal, and sends again with backoff (not every poll)."""
    engine, client_settings, _server = deployment
    reader = _settings(secured, READER, engine.prefix, Path(engine.state_dir).parent / "reader-state")
    create_acls(
        secured.admin(),
        [
            b
            for b in client_acls(reader, f"User:{READER}")
            if not (b.name == reader.commands_topic and b.operation == AclOperation.WRITE)
        ],
    )
    client, reader_client = Client(client_settings), Client(reader)
    worker = Worker(reader_client, sample.TASK_LIST, workflows=sample.WORKFLOWS, activities=sample.ACTIVITIES)
    labels = {
        "task_list": sample.TASK_LIST,
        "topic": reader.commands_topic,
        "error": "TOPIC_AUTHORIZATION_FAILED",
    }

    def refusals() -> float:
        return REGISTRY.get_sample_value("kadence_worker_answers_refused_total", labels) or 0.0

    before = refusals()
    caplog.set_level(logging.ERROR, logger="kadence.worker")
    worker.start()
    try:
        assert worker.assigned.wait(60), "the worker never got its task partitions"
        client.start_workflow(
            sample.AccountOpeningWorkflow.run, "eve", id="refused-eve", task_list=sample.TASK_LIST
        )
        deadline = time.monotonic() + 60
        while refusals() == before:
            assert time.monotonic() < deadline, "the worker's answer was never refused"
            time.sleep(0.1)
        # Backoff 0.5, 1, 2, 4 s: about 5 rounds in 6 s, each sending every answer held (the
        # decision and its eager activity's); sent again on every poll, that would be hundreds.
        time.sleep(6)
        count = refusals() - before
    finally:
        worker.stop(5)
        reader_client.close()
        client.close()
    assert 1 <= count <= 15, f"{count} refusals in about 6 s: not backing off"
    errors = [
        r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and "refuses" in r.getMessage()
    ]
    assert len(errors) == 1, errors
    assert reader.commands_topic in errors[0] and "may not write" in errors[0], errors[0]


def test_cli_takes_the_principal_from_a_properties_file(deployment: Any, tmp_path: Path) -> None:
    """`kadence start/query/signal/result --kafka-config-file` as the client principal; a wrong
    password exits 3 with the broker's refusal of the login, not a bare "transport failure"."""
    _engine, client_settings, _server = deployment
    props = tmp_path / "client.properties"
    props.write_text("".join(f"{k}={v}\n" for k, v in client_settings.kafka_config.items()))
    common = [
        "--bootstrap", client_settings.bootstrap, "--prefix", client_settings.prefix,
        "--connect-timeout", "20",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("KADENCE_")}

    def cli(*args: str, config: str = str(props)) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kadence.cli", args[0], *common, *args[1:], "--kafka-config-file", config],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    client = Client(client_settings)
    worker = Worker(client, sample.TASK_LIST, workflows=sample.WORKFLOWS, activities=sample.ACTIVITIES)
    worker.start()
    try:
        started = cli(
            "start", "AccountOpeningWorkflow", "--id", "cli-bob", "--task-list", sample.TASK_LIST,
            "--input", '"bob"',
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        shown = cli("query", "cli-bob", "current_status")
        assert shown.returncode == 0, shown.stderr
        sig = cli("signal", "cli-bob", "choose_plan", "--input", '"basic"')
        assert sig.returncode == 0, sig.stderr
        done = cli("result", "cli-bob", "--timeout", "60")
        assert done.returncode == 0 and "acct-bob-basic" in done.stdout, done.stderr
    finally:
        worker.stop(5)
        client.close()
    wrong = tmp_path / "wrong.properties"
    wrong.write_text(props.read_text().replace(client_settings.kafka_config["sasl.password"], "wrong"))
    denied = cli("describe", "cli-bob", "--connect-timeout", "5", config=str(wrong))
    assert denied.returncode == 3, denied.stderr
    assert "authentication" in denied.stderr.lower(), denied.stderr
