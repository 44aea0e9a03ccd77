"""Apache Kafka 4.4.0 (KRaft) started from Python: one node and a three-node cluster.

These tests start their own JVMs (independent of the session broker chosen with --kafka) and check
the broker behaviours the engine's Apache Kafka mode relies on and Tansu lacks: aborted records are
invisible to read_committed readers, a dead producer's transaction is aborted after its
transaction.timeout.ms, data survives a restart, and acks=all writes continue after the leader of a
partition is killed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kadence.streams.apache_kafka import (
    KAFKA_JAR,
    ApacheKafkaBroker,
    ApacheKafkaCluster,
    default_lib_dir,
    ensure_kafka_jars,
)

_JARS_CACHED = (default_lib_dir() / KAFKA_JAR).exists()
pytestmark = pytest.mark.skipif(
    shutil.which("java") is None or (shutil.which("mvn") is None and not _JARS_CACHED),
    reason="Apache Kafka needs `java` (and `mvn` to fetch its jars once)",
)


def _topic(admin: AdminClient, partitions: int = 1, rf: int = 1) -> str:
    name = f"t{uuid.uuid4().hex[:10]}"
    admin.create_topics([NewTopic(name, partitions, rf)], operation_timeout=30)[name].result(60)
    return name


def _consume(
    bootstrap: str,
    topic: str,
    expect: int,
    timeout: float = 20.0,
    isolation: str = "read_committed",
    partition: int = 0,
) -> list[bytes]:
    """Read `topic`/`partition` from the start until `expect` values arrived or `timeout` passed."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"g{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, partition, 0)])
        values: list[bytes] = []
        deadline = time.monotonic() + timeout
        while len(values) < expect and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                values.append(msg.value())
        return values
    finally:
        consumer.close()


def _produce(bootstrap: str, topic: str, values: list[bytes], **config: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, **config})
    errors: list[object] = []
    for v in values:
        producer.produce(topic, v, partition=0, on_delivery=lambda err, _m: err and errors.append(err))
    assert producer.flush(30) == 0
    assert errors == []


@pytest.fixture(scope="module")
def broker() -> Iterator[ApacheKafkaBroker]:
    t0 = time.monotonic()
    lib = ensure_kafka_jars()
    print(f"\nKafka jars ready in {time.monotonic() - t0:.1f}s ({lib})")
    with ApacheKafkaBroker() as b:
        print(
            f"Apache Kafka single node started in {b.startup_seconds:.2f}s on {b.bootstrap}; log {b.log_path}"
        )
        yield b


@pytest.fixture
def admin(broker: ApacheKafkaBroker) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def test_produce_consume(broker: ApacheKafkaBroker, admin: AdminClient) -> None:
    topic = _topic(admin)
    values = [f"v{i}".encode() for i in range(100)]
    _produce(broker.bootstrap, topic, values, acks="all")
    assert _consume(broker.bootstrap, topic, 100) == values
    assert broker.log_path is not None and broker.log_path.exists()


def test_auto_create_is_off(broker: ApacheKafkaBroker, admin: AdminClient) -> None:
    md = admin.list_topics(f"missing{uuid.uuid4().hex[:8]}", timeout=10)
    assert all(t.error is not None for t in md.topics.values())


def test_aborted_record_is_invisible_to_read_committed(broker: ApacheKafkaBroker, admin: AdminClient) -> None:
    topic = _topic(admin)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": f"tx-{topic}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, b"aborted", partition=0)
    assert producer.flush(30) == 0  # in the log: abort_transaction() drops records not yet sent
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, b"committed", partition=0)
    producer.commit_transaction(30)
    assert _consume(broker.bootstrap, topic, 1) == [b"committed"]
    everything = _consume(broker.bootstrap, topic, 2, timeout=3, isolation="read_uncommitted")
    assert everything == [b"aborted", b"committed"]


# A producer that opens a transaction, writes one record, makes sure the broker has it, and dies
# without ending the transaction (SIGKILL: no atexit, no abort).
DYING_PRODUCER = """
import os, signal, sys
from confluent_kafka import Producer
bootstrap, topic, txid = sys.argv[1:4]
p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txid, "transaction.timeout.ms": 5000})
p.init_transactions(30)
p.begin_transaction()
p.produce(topic, b"doomed", partition=0)
assert p.flush(30) == 0
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_dead_producers_transaction_is_aborted_after_its_timeout(
    broker: ApacheKafkaBroker, admin: AdminClient
) -> None:
    topic = _topic(admin)
    proc = subprocess.run(
        [sys.executable, "-c", DYING_PRODUCER, broker.bootstrap, topic, f"dying-{topic}"],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == -9, proc.stderr.decode()
    died = time.monotonic()
    # Committed after the open transaction: read_committed readers see it only once the open
    # transaction ends (the last stable offset is stuck below the doomed record until then).
    _produce(broker.bootstrap, topic, [b"after"], acks="all")
    got = _consume(broker.bootstrap, topic, 1, timeout=30)
    waited = time.monotonic() - died
    print(
        f"\nread_committed reader unblocked {waited:.1f}s after the producer died "
        "(transaction.timeout.ms=5000)"
    )
    assert got == [b"after"]
    assert 3.0 < waited < 15.0
    everything = _consume(broker.bootstrap, topic, 2, timeout=3, isolation="read_uncommitted")
    assert everything == [b"doomed", b"after"]


def test_restart_keeps_data_and_ports(broker: ApacheKafkaBroker, admin: AdminClient) -> None:
    topic = _topic(admin)
    _produce(broker.bootstrap, topic, [b"a", b"b"], acks="all")
    port, data_dir = broker.port, broker.data_dir
    broker.restart()
    print(f"\nrestart (SIGTERM) ready in {broker.startup_seconds:.2f}s")
    assert (broker.port, broker.data_dir) == (port, data_dir)
    assert _consume(broker.bootstrap, topic, 2) == [b"a", b"b"]


@pytest.mark.slow
def test_kill_and_start_keeps_acknowledged_records(broker: ApacheKafkaBroker, admin: AdminClient) -> None:
    """SIGKILL loses no acknowledged record (the page cache outlives the process). The new process
    re-registers only once the dead one's broker session expires (broker.session.timeout.ms, 9 s)."""
    topic = _topic(admin)
    _produce(broker.bootstrap, topic, [b"x", b"y"], acks="all")
    pid = broker.pid
    broker.kill()
    assert pid is not None and not _alive(pid)
    broker.start()
    print(f"\nrestart after SIGKILL ready in {broker.startup_seconds:.2f}s")
    assert _consume(broker.bootstrap, topic, 2) == [b"x", b"y"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.mark.slow
def test_cluster_leader_kill_moves_leadership_and_acks_all_continues() -> None:
    with ApacheKafkaCluster() as cluster:
        print(
            f"\nthree-node cluster started in {cluster.startup_seconds:.2f}s "
            f"(nodes {[round(n.startup_seconds, 2) for n in cluster]})"
        )
        assert len(cluster.admin().list_topics(timeout=10).brokers) == 3
        topic = f"t{uuid.uuid4().hex[:10]}"
        cluster.create_topic(topic, partitions=3)  # replication factor 3, min.insync.replicas 2
        leader = cluster.leader(topic, 0)
        assert leader in (1, 2, 3)

        producer = Producer(
            {
                "bootstrap.servers": cluster.bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
            }
        )
        acked: list[float] = []
        errors: list[object] = []

        def on_delivery(err: object, _msg: object) -> None:
            (errors.append(err) if err else acked.append(time.monotonic()))

        stop = threading.Event()

        def produce() -> None:
            i = 0
            while not stop.is_set():
                producer.produce(topic, str(i).encode(), partition=0, on_delivery=on_delivery)
                producer.poll(0.005)
                i += 1

        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        try:
            time.sleep(1.5)
            killed_at = time.monotonic()
            cluster.kill(leader)
            new_leader = cluster.wait_for_leader(topic, 0, not_in=[leader], timeout=60)
            moved_after = time.monotonic() - killed_at
            deadline = time.monotonic() + 30
            while not any(t > killed_at + moved_after for t in acked) and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.0)
        finally:
            stop.set()
            thread.join(10)
        assert producer.flush(30) == 0
        around = [t for t in acked if t >= killed_at - 1.0]
        pause = max(b - a for a, b in zip(around, around[1:], strict=False))
        print(
            f"leader {leader} killed: node {new_leader} leads after {moved_after:.2f}s; "
            f"longest gap between acks {pause:.2f}s; {len(acked)} acked, {len(errors)} errors"
        )
        assert errors == []
        assert any(t > killed_at + moved_after for t in acked), "no write was acknowledged after the failover"
        assert new_leader != leader

        restarted = cluster.start_node(leader)
        print(f"node {leader} back in {restarted:.2f}s")
        assert len(cluster.admin().list_topics(timeout=10).brokers) == 3
        values = _consume(cluster.bootstrap, topic, len(acked), timeout=30, isolation="read_uncommitted")
        assert len(values) == len(acked)  # idempotent acks=all: nothing lost, nothing duplicated
        assert [int(v) for v in values] == list(range(len(values)))
