"""The topic policy (streams/topics.py, docs/brokers.md §4) on a real broker, and what protects restore.

- On the session broker (Tansu by default, Apache Kafka with --kafka=apache): the topics are created
  with the policy; `check_layout` (every processor's start, `kadence topics check`) refuses a
  `history` that can lose records.
- On an Apache Kafka node of this module's own (skipped only without Java; marked slow), whose
  retention sweeps run every 300 ms so that a topic given a 300 ms retention loses its old segments
  while the test watches:
  * `commands`, the topic the policy lets shrink, loses its old segments under a running engine;
    the engine then restarts warm (state dirs kept) and cold (state dirs gone) and every workflow,
    old and new, goes on;
  * a `history` forced to a finite retention loses records: a cold restore raises
    `LogStartMovedError` naming the gap and the way out instead of rebuilding a partial state;
  * commands deleted before the history processor read them: the same error, and its way out (move
    the group's offset) works;
  * the largest record Kadence's producers send is accepted on every topic, and a workflow with a
    2 MB argument completes (Kafka's default max.message.bytes, ~1 MiB, would refuse its history).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from kadence import Client, Worker, activity, workflow
from kadence.processors.derived import DerivedProcessor
from kadence.processors.history import HistoryProcessor
from kadence.processors.server import InProcessEngine
from kadence.streams.clients import make_admin, make_producer, murmur2_partition, producer_config
from kadence.streams.errors import LogStartMovedError
from kadence.streams.loop import ProcessorRunner
from kadence.streams.processing import Processor
from kadence.streams.restore import PartitionReader
from kadence.streams.serde import serde
from kadence.streams.settings import Settings, kafka_broker_settings
from kadence.streams.topics import (
    DAY_MS,
    HOUR_MS,
    MAX_MESSAGE_BYTES,
    TopicLayoutError,
    check_layout,
    check_policy,
    core_topics,
    ensure_core_topics,
    ensure_topics,
    min_insync_replicas,
    task_topic,
    topic_configs,
    topic_policy,
)

TASK_LIST = "policy"


# --- workflows ------------------------------------------------------------------------------------


@activity.defn
def double(n: int) -> int:
    return 2 * n


@activity.defn
def size_of(text: str) -> int:
    return len(text)


@workflow.defn
class Doubler:
    @workflow.run
    async def run(self, n: int) -> int:
        result: int = await workflow.execute_activity(double, n, start_to_close_timeout=10)
        return result


@workflow.defn
class Tally:
    """Adds up `add` signals until `close`: its state lives only in history once its start command is gone."""

    def __init__(self) -> None:
        self.total = 0
        self.closed = False

    @workflow.signal
    def add(self, n: int) -> None:
        self.total += n

    @workflow.signal
    def close(self) -> None:
        self.closed = True

    @workflow.run
    async def run(self, start: int) -> int:
        await workflow.wait_condition(lambda: self.closed)
        result: int = await workflow.execute_activity(double, start + self.total, start_to_close_timeout=10)
        return result


@workflow.defn
class Measure:
    @workflow.run
    async def run(self, text: str) -> int:
        result: int = await workflow.execute_activity(size_of, text, start_to_close_timeout=30)
        return result


# --- the policy, on any broker ----------------------------------------------------------------------


def test_the_policy_per_topic() -> None:
    s = Settings(prefix="p.")
    specs = {spec.name: spec.configs for spec in [*core_topics(s), task_topic(s, "x")]}
    forever = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}
    assert forever.items() <= specs["p.history"].items()
    assert forever.items() <= specs["p.dead-letters"].items()
    assert "segment.ms" not in specs["p.history"]
    for name in ("p.commands", "p.completions", "p.tasks.x"):
        assert specs[name]["retention.ms"] == str(7 * DAY_MS)
        assert specs[name]["segment.ms"] == str(DAY_MS)
    assert specs["p.query-results"]["retention.ms"] == str(HOUR_MS)
    assert specs["p.query-results"]["segment.ms"] == str(HOUR_MS // 6)
    # the visibility index: one row per run, only the latest matters (docs/visibility.md)
    assert {"cleanup.policy": "compact", "retention.ms": "-1"}.items() <= specs["p.visibility"].items()
    for name, configs in specs.items():
        # compacted: the visibility index and the engine secret (one value per key); nothing else
        assert configs["cleanup.policy"] == (
            "compact" if name in ("p.visibility", "p.engine-secret") else "delete"
        )
        assert configs["retention.bytes"] == "-1"
        assert configs["max.message.bytes"] == str(MAX_MESSAGE_BYTES)
        assert configs["min.insync.replicas"] == "1"


def test_topic_configs_override_the_policy_and_replication_sets_min_insync() -> None:
    s = Settings(
        prefix="p.", replication_factor=3, topic_configs={"retention.ms": "1000", "compression.type": "zstd"}
    )
    history = next(spec for spec in core_topics(s) if spec.name == "p.history").configs
    assert history["retention.ms"] == "1000" and history["compression.type"] == "zstd"
    assert history["min.insync.replicas"] == "2"
    assert [min_insync_replicas(rf) for rf in (1, 2, 3, 5)] == [1, 1, 2, 2]
    assert topic_policy(s, "tasks")["min.insync.replicas"] == "2"


def test_topics_take_every_record_the_producers_send() -> None:
    assert producer_config(Settings())["message.max.bytes"] == MAX_MESSAGE_BYTES


def test_topics_are_created_with_the_policy(settings: Settings) -> None:
    ensure_core_topics(settings, [TASK_LIST])
    specs = [*core_topics(settings), task_topic(settings, TASK_LIST)]
    found = topic_configs(settings, [s.name for s in specs])
    for spec in specs:
        for key, value in spec.configs.items():
            assert found[spec.name].get(key) == value, (spec.name, key)
    assert check_policy(settings) == []
    assert check_layout(settings) == settings.partitions


@pytest.mark.parametrize(
    "override",
    [{"retention.ms": str(30 * DAY_MS)}, {"retention.bytes": str(1 << 30)}, {"cleanup.policy": "compact"}],
    ids=["retention.ms", "retention.bytes", "compact"],
)
def test_a_history_that_can_lose_records_is_refused(make_settings, override: dict[str, str]) -> None:
    settings = make_settings(topic_configs=override)
    with pytest.raises(TopicLayoutError) as caught:
        ensure_core_topics(settings)  # what every processor runs at start
    text = str(caught.value)
    key = next(iter(override))
    assert f"{settings.history_topic}: {key}={override[key]}" in text
    assert "kafka-configs.sh" in text and f"--entity-name {settings.history_topic}" in text
    with pytest.raises(TopicLayoutError):
        check_layout(settings)  # `kadence topics check`


def test_expiring_dead_letters_is_only_a_warning(make_settings, caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings()
    specs = core_topics(settings)
    for spec in specs:
        if spec.name == settings.dead_letters_topic:
            spec.configs["retention.ms"] = str(DAY_MS)
    ensure_topics(settings, specs)
    with caplog.at_level(logging.WARNING, logger="kadence.streams.topics"):
        assert check_layout(settings) == settings.partitions
    assert f"{settings.dead_letters_topic}: retention.ms={DAY_MS}" in caplog.text


# --- Apache Kafka: retention really deletes -----------------------------------------------------------

#: Retention sweeps every 300 ms from the start (Kafka's defaults: every 5 min, first after 30 s).
FAST_RETENTION = {
    "log.retention.check.interval.ms": "300",
    "log.initial.task.delay.ms": "0",
    "log.segment.delete.delay.ms": "1000",
}


@pytest.fixture(scope="module")
def apache() -> Iterator[str]:
    from kadence.streams.apache_kafka import ApacheKafkaBroker, KafkaSetupError, java_binary

    try:
        java_binary()
    except KafkaSetupError as exc:
        pytest.skip(str(exc))
    with ApacheKafkaBroker(extra_config=FAST_RETENTION) as broker:
        yield broker.bootstrap


@pytest.fixture
def kafka_settings(apache: str, tmp_path: Path) -> Settings:
    return kafka_broker_settings(
        apache,
        prefix=f"t{uuid.uuid4().hex[:10]}.",
        state_dir=str(tmp_path / "state"),
        partitions=2,
        task_partitions=1,
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )


def shrink(settings: Settings, topic: str, ms: int = 300) -> None:
    """Give `topic` a `ms` retention and segments rolled every `ms`, as an operator would."""
    entries = [
        ConfigEntry(k, str(ms), incremental_operation=AlterConfigOpType.SET)
        for k in ("retention.ms", "segment.ms")
    ]
    admin = make_admin(settings)  # kept referenced: a collected AdminClient fails its futures
    futures = admin.incremental_alter_configs(
        [ConfigResource(ResourceType.TOPIC, topic, incremental_configs=entries)]
    )
    for fut in futures.values():
        fut.result(30)


def log_starts(settings: Settings, topic: str) -> dict[int, tuple[int, int]]:
    """partition -> (first offset the broker holds, high watermark)."""
    consumer = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": "probe"})
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), 10, False)
            for p in range(settings.partitions)
        }
    finally:
        consumer.close()


def caught_up(settings: Settings, processor: str = "history") -> bool:
    """Has `processor`'s group committed every offset of its input (`commands` for history)?"""
    topic = settings.commands_topic if processor == "history" else settings.history_topic
    consumer = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": settings.group(processor)})
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in range(settings.partitions)], 10)
        highs = [
            consumer.get_watermark_offsets(TopicPartition(topic, c.partition), 10, False)[1]
            for c in committed
        ]
        return all(c.offset >= high for c, high in zip(committed, highs, strict=True) if high > 0)
    finally:
        consumer.close()


def wait_until(
    what: str, check: Callable[[], bool], timeout: float = 60.0, tick: Callable[[], None] = lambda: None
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        tick()
        time.sleep(0.2)


def run_until_error(settings: Settings, processor: Processor, timeout: float = 60.0) -> BaseException | None:
    """Run one processor instance until it raises (returned) or every partition is assigned (None)."""
    runner = ProcessorRunner(settings, processor)
    stop = threading.Event()
    failure: list[BaseException] = []

    def target() -> None:
        try:
            runner.run(stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            failure.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not failure and len(runner.assigned) < settings.partitions and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # an assignment that fails may still be on its way out
    stop.set()
    thread.join(30)
    assert not thread.is_alive()
    if not failure and len(runner.assigned) < settings.partitions and time.monotonic() >= deadline:
        raise AssertionError("the processor neither failed nor got its partitions")
    return failure[0] if failure else None


class Deployment:
    """Engine (in-process) + one worker + a client on `settings`; `restart(cold=...)` keeps or drops
    the processors' state dir."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = Client(settings)
        self.engine = InProcessEngine(settings).start()
        self.worker = Worker(
            self.client, TASK_LIST, workflows=[Doubler, Tally, Measure], activities=[double, size_of]
        ).start()

    def restart(self, cold: bool) -> None:
        # Down no longer than the retention: what is on `commands` now (a liveness FireTimer the
        # history processor sent itself, the markers after it) is processed and committed first.
        # Else a retention of 300 ms deletes it while the engine restarts, which is the error
        # (LogStartMovedError) the tests below provoke on purpose, not here (seen once in CI).
        # The retention is raised first: a record the engine sends itself after the check (one
        # was seen in CI twice) stays until the restarted engine reads it. What the test needs
        # deleted was deleted before the restart (its callers wait for that).
        shrink(self.settings, self.settings.commands_topic, ms=DAY_MS)
        wait_until("the history processor to commit all of commands", lambda: caught_up(self.settings))
        self.engine.stop()
        if cold:
            shutil.rmtree(self.settings.state_dir)
        self.engine = InProcessEngine(self.settings).start()

    def restored(self) -> dict[str, int]:
        return {r.processor.name: r.restored for r in self.engine.runners}

    def doublers(self, first: int, n: int) -> None:
        handles = [
            self.client.start_workflow(Doubler.run, i, id=f"d-{i}", task_list=TASK_LIST)
            for i in range(first, first + n)
        ]
        assert [h.result(timeout=60) for h in handles] == [2 * i for i in range(first, first + n)]

    def close(self) -> None:
        self.worker.stop(5)
        self.engine.stop()
        self.client.close()


@pytest.mark.slow
def test_commands_lose_old_segments_and_the_engine_still_restarts_warm_and_cold(
    kafka_settings: Settings,
) -> None:
    settings = kafka_settings
    ensure_core_topics(settings, [TASK_LIST])
    shrink(settings, settings.commands_topic)
    app = Deployment(settings)
    try:
        tallies = [
            app.client.start_workflow(Tally.run, 100 * k, id=f"tally-{k}", task_list=TASK_LIST)
            for k in range(4)
        ]
        for h in tallies:
            h.signal(Tally.add, 1)
        app.doublers(0, 10)
        batch = iter(range(10, 10_000, 4))
        # every partition of commands loses its first segments while the engine runs
        wait_until(
            "commands lost old segments on every partition",
            lambda: all(low > 0 for low, _ in log_starts(settings, settings.commands_topic).values()),
            tick=lambda: app.doublers(next(batch), 4),
        )
        for h in tallies:
            h.signal(Tally.add, 10)
        time.sleep(1.0)  # processed, and older than the retention
        wait_until(
            "the start commands are gone",
            lambda: all(low == high for low, high in log_starts(settings, settings.commands_topic).values()),
        )

        app.restart(cold=False)  # state dirs kept: restore from the checkpoints
        for h in tallies[:2]:
            h.signal(Tally.close)
        assert [h.result(timeout=60) for h in tallies[:2]] == [2 * (100 * k + 11) for k in range(2)]

        time.sleep(1.0)
        app.restart(cold=True)  # state dirs gone: history from offset 0, derived refolds history
        restored = app.restored()
        assert restored["history"] > 0 and restored["derived"] > 0, restored
        for h in tallies[2:]:
            h.signal(Tally.close)
        assert [h.result(timeout=60) for h in tallies[2:]] == [2 * (100 * k + 11) for k in range(2, 4)]
        app.doublers(20_000, 6)
        # every workflow's history is whole: its start is still there, though its command is not
        for h in tallies:
            events = [e["attributes"][0] for e in app.client.get_handle(h.id).history()]
            assert events[0] == "WorkflowExecutionStarted" and events[-1] == "WorkflowExecutionCompleted"
        assert all(low > 0 for low, _ in log_starts(settings, settings.commands_topic).values())
    finally:
        app.close()


@pytest.mark.slow
def test_a_history_that_lost_records_stops_a_cold_restore_with_the_way_out(kafka_settings: Settings) -> None:
    settings = kafka_settings
    ensure_core_topics(settings, [TASK_LIST])
    app = Deployment(settings)
    try:
        app.doublers(0, 8)
        shrink(settings, settings.history_topic)  # what the policy forbids
        batch = iter(range(8, 10_000, 4))
        wait_until(
            "history lost old segments on every partition",
            lambda: all(low > 0 for low, _ in log_starts(settings, settings.history_topic).values()),
            tick=lambda: app.doublers(next(batch), 4),
        )
    finally:
        app.close()
    with pytest.raises(TopicLayoutError, match="retention.ms=300"):
        check_layout(settings)  # refused at every processor's start and by `kadence topics check`

    shutil.rmtree(settings.state_dir)  # cold: both must read history from offset 0
    for make in (HistoryProcessor, DerivedProcessor):
        error = run_until_error(settings, make(settings))
        assert isinstance(error, LogStartMovedError), error
        text = str(error)
        assert f"needs {settings.history_topic}[" in text and "from offset 0" in text
        assert "retention.ms=-1" in text and "state cannot be rebuilt" in text


@pytest.mark.slow
def test_commands_deleted_before_they_were_processed_are_an_error_with_a_way_out(
    kafka_settings: Settings,
) -> None:
    settings = kafka_settings
    ensure_core_topics(settings, [TASK_LIST])
    client = Client(settings)
    try:
        for i in range(6):  # nobody processes these
            client.start_workflow(Doubler.run, i, id=f"lost-{i}", task_list=TASK_LIST)
        shrink(settings, settings.commands_topic)
        wait_until(
            "the unprocessed commands are deleted",
            lambda: all(
                low == high > 0 for low, high in log_starts(settings, settings.commands_topic).values()
            ),
        )

        error = run_until_error(settings, HistoryProcessor(settings))
        assert isinstance(error, LogStartMovedError), error
        text = str(error)
        group = settings.group("history")
        assert f"needs {settings.commands_topic}[" in text and "from offset 0" in text
        assert f"kafka-consumer-groups.sh --bootstrap-server <broker> --group {group}" in text

        # The way out, for an operator who accepts the loss: the group's offset past the gap.
        consumer = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": group})
        consumer.commit(
            offsets=[
                TopicPartition(settings.commands_topic, p, low)
                for p, (low, _) in log_starts(settings, settings.commands_topic).items()
            ],
            asynchronous=False,
        )
        consumer.close()
        assert run_until_error(settings, HistoryProcessor(settings)) is None
    finally:
        client.close()


@pytest.mark.slow
def test_a_restore_read_below_the_log_start_raises_instead_of_jumping(kafka_settings: Settings) -> None:
    """The restore reader and the loop read with auto.offset.reset=error: a start the broker no longer
    holds (deleted between the check and the fetch) raises; it never silently jumps to the earliest."""
    settings = kafka_settings
    ensure_core_topics(settings)
    producer = make_producer(settings)
    for _ in range(10):
        producer.produce(settings.commands_topic, key=b"k", value=b"x", partition=0)
        producer.flush()
        time.sleep(0.05)
    shrink(settings, settings.commands_topic)
    wait_until(
        "offset 0 is deleted",
        lambda: log_starts(settings, settings.commands_topic)[0][0] > 0,
        tick=lambda: (producer.produce(settings.commands_topic, value=b"x", partition=0), producer.flush()),
    )
    reader = PartitionReader(settings, settings.group("probe.restore"), "test", on_stuck=lambda: None)
    assert reader.log_start(settings.commands_topic, 0) > 0
    with pytest.raises(LogStartMovedError, match=r"out of range"):
        for _ in reader.read(settings.commands_topic, 0, 0, None):
            pass


@pytest.mark.slow
def test_the_largest_record_is_accepted_on_every_topic(kafka_settings: Settings) -> None:
    settings = kafka_settings
    ensure_core_topics(settings, [TASK_LIST])
    app = Deployment(settings)
    try:
        # Over Kafka's default max.message.bytes (1 MiB), under the engine's payload limit (2 MiB):
        # its start command, history transition and decision task each carry it.
        text = "y" * 1_500_000
        handle = app.client.start_workflow(Measure.run, text, id="big", task_list=TASK_LIST)
        assert handle.result(timeout=60) == len(text)
    finally:
        app.close()

    raw = settings.with_(prefix=f"raw{uuid.uuid4().hex[:8]}.")  # other topics: no reader chokes on these
    ensure_core_topics(raw, [TASK_LIST])
    producer = make_producer(raw)
    value = b"x" * (MAX_MESSAGE_BYTES - 4096)  # the producer's own limit counts the record's overhead
    failures: list[object] = []
    for spec in [*core_topics(raw), task_topic(raw, TASK_LIST)]:
        producer.produce(
            spec.name,
            key=b"big",
            value=value,
            on_delivery=lambda err, msg: failures.append(err) if err is not None else None,
        )
    assert producer.flush(60) == 0
    assert failures == []


@pytest.mark.slow
def test_a_partition_whose_last_transaction_expired_restarts(kafka_settings: Settings) -> None:
    """The last records of a commands partition are a transaction (a derived processor's command,
    a liveness FireTimer) and its commit marker, then the partition stays idle past the retention:
    the broker deletes the marker too. The history processor counts the marker as processed once
    its consumer passes it (ProcessorRunner._pass_control_records), so its committed offset is not
    left before the new log start and the restart is not taken for a gap."""
    settings = kafka_settings
    ensure_core_topics(settings, [TASK_LIST])
    app = Deployment(settings)
    try:
        app.doublers(0, 6)
        codec = serde()
        producer = make_producer(settings, **{"transactional.id": f"{settings.prefix}test-txn"})
        producer.init_transactions()
        wids = {
            murmur2_partition(f"nobody-{i}".encode(), settings.partitions): f"nobody-{i}" for i in range(50)
        }
        assert len(wids) == settings.partitions
        producer.begin_transaction()
        for wid in wids.values():  # a signal to a workflow that does not exist: processed, no effect
            command = {
                "command_id": uuid.uuid4().hex,
                "domain": "default",
                "workflow_id": wid,
                "run_id": "",
                "timestamp": int(time.time() * 1000),
                "payload": (
                    "SignalWorkflowExecution",
                    {
                        "signal_name": "poke",
                        "input": None,
                        "identity": "t",
                        "request_id": uuid.uuid4().hex,
                        "external": None,
                    },
                ),
            }
            producer.produce(
                settings.commands_topic,
                key=wid.encode(),
                value=codec.encode("Command", command),
                headers=codec.headers("Command"),
            )
        producer.commit_transaction()
        # the history processor processes them and, idle, passes the markers and commits
        wait_until("the history processor to pass the markers", lambda: caught_up(settings))
        shrink(settings, settings.commands_topic)
        wait_until(
            "commands is empty, its markers deleted too",
            lambda: all(
                low == high > 0 for low, high in log_starts(settings, settings.commands_topic).values()
            ),
        )
        app.restart(cold=True)
        app.doublers(100, 6)
        app.restart(cold=False)
        app.doublers(200, 6)
    finally:
        app.close()
