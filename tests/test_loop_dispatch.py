"""Dispatch records (OutRecord.dispatch): sent before the batch's transaction, outside it, and
delivered before its commit; a failed delivery aborts and redoes the batch; a batch right after a
commit waits `Settings.txn_settle_ms` (streams/transaction.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, TopicPartition

from kadence.streams.clients import make_consumer, make_producer
from kadence.streams.loop import ProcessorRunner
from kadence.streams.processing import Context, InRecord, OutRecord, Processor
from kadence.streams.settings import Settings
from kadence.streams.topics import TopicSpec, ensure_topics
from kadence.streams.transaction import Transactions

pytestmark = pytest.mark.timeout(120)


class Dispatching(Processor):
    """Counts records in state; for each one emits `<value>:<count>` to `out` (in the transaction)
    and `<value>` to `tasks` (a dispatch record)."""

    name = "dispatching"

    def __init__(self, settings: Settings) -> None:
        self.input_topic = f"{settings.prefix}dispatch-in"
        self.out_topic = f"{settings.prefix}dispatch-out"
        self.tasks_topic = f"{settings.prefix}dispatch-tasks"

    def process(self, record: InRecord, ctx: Context) -> None:
        count = int(ctx.state.get(b"n") or b"0") + 1
        ctx.state.put(b"n", b"%d" % count)
        assert record.value is not None
        ctx.emit(OutRecord(self.out_topic, b"k", record.value + b":%d" % count))
        ctx.emit(OutRecord(self.tasks_topic, b"k", record.value, dispatch=True))

    def restore(self, record: InRecord, ctx: Context) -> int | None:
        return None


class GatedTransactions(Transactions):
    """Holds each batch between the dispatch delivery and the commit until `gate` is set; fails
    the first dispatch delivery when `fail_first` is set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.at_gate = threading.Event()
        self.fail_first = False

    def dispatch(self, out: Sequence[OutRecord]) -> None:
        super().dispatch(out)
        if self.fail_first:
            self.fail_first = False
            self.dispatch_delivered(KafkaError(KafkaError._MSG_TIMED_OUT), None)  # a failed delivery report

    def await_dispatch(self) -> None:
        super().await_dispatch()
        self.at_gate.set()
        assert self.gate.wait(30)


class GatedRunner(ProcessorRunner):
    transactions_class = GatedTransactions
    txn: GatedTransactions


def _wait(cond: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class Reader:
    def __init__(self, settings: Settings, topic: str) -> None:
        self.consumer = make_consumer(settings, f"reader-{time.time_ns()}")  # read_committed
        self.consumer.assign([TopicPartition(topic, 0, 0)])
        self.values: list[bytes] = []

    def read(self, idle_polls: int = 10) -> list[bytes]:
        idle = 0
        while idle < idle_polls:
            m = self.consumer.poll(0.05)
            if m is None:
                idle += 1
            elif m.error() is None:
                self.values.append(m.value())
        return self.values

    def read_until(self, n: int, timeout: float = 30) -> list[bytes]:
        """At least `n` records (a new consumer may take a while to fetch), then any extras."""
        deadline = time.monotonic() + timeout
        while len(self.values) < n and time.monotonic() < deadline:
            self.read(idle_polls=1)
        return self.read()


@pytest.fixture
def setup(settings: Settings, tmp_path: Path, request: pytest.FixtureRequest):
    """The runner on one partition; `request.param` (indirect parametrization): Settings changes."""
    settings = settings.with_(partitions=1, state_dir=str(tmp_path), **getattr(request, "param", {}))
    proc = Dispatching(settings)
    ensure_topics(
        settings, [TopicSpec(t, 1, {}) for t in (proc.input_topic, proc.out_topic, proc.tasks_topic)]
    )
    runner = GatedRunner(settings, proc)
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    thread.start()
    producer = make_producer(settings)

    def send(value: bytes) -> None:
        producer.produce(proc.input_topic, value, b"k", partition=0)
        producer.flush(10)

    _wait(lambda: runner.assigned == [0], "assignment")
    yield settings, proc, runner, send
    runner.txn.gate.set()
    stop.set()
    thread.join(30)


def test_a_dispatch_record_is_readable_before_its_batch_commits(setup) -> None:
    settings, proc, runner, send = setup
    tasks, out = Reader(settings, proc.tasks_topic), Reader(settings, proc.out_topic)
    runner.txn.gate.set()
    send(b"w")  # a warm-up batch: both readers are proven to be fetching
    assert tasks.read_until(1) == [b"w"] and out.read_until(1) == [b"w:1"]
    runner.txn.gate.clear()
    runner.txn.at_gate.clear()
    send(b"a")
    assert runner.txn.at_gate.wait(30)  # delivered, transaction still open
    _wait(lambda: tasks.read(idle_polls=1) == [b"w", b"a"], "the dispatch record, before the commit")
    assert out.read() == [b"w:1"]  # the transactional output is not visible yet
    runner.txn.gate.set()
    _wait(lambda: out.read(idle_polls=1) == [b"w:1", b"a:2"], "the transactional output after the commit")
    assert runner.transactions >= 2 and runner.aborts == 0


def test_a_failed_dispatch_aborts_and_redoes_the_batch(setup) -> None:
    settings, proc, runner, send = setup
    runner.txn.gate.set()
    runner.txn.fail_first = True
    send(b"b")
    _wait(lambda: runner.processed >= 1, "the redone batch")
    send(b"c")
    _wait(lambda: runner.processed >= 2, "the next record")
    assert runner.aborts == 1
    # The redo sent the dispatch record again (the same bytes: readers de-duplicate); the state
    # counted the record once, so the next record is the second (Tansu shows aborted transactional
    # records too, hence the set).
    assert Reader(settings, proc.tasks_topic).read_until(3) == [b"b", b"b", b"c"]
    outputs = Reader(settings, proc.out_topic).read_until(2)
    assert set(outputs) <= {b"b:1", b"c:2"} and outputs[-1] == b"c:2"


@pytest.mark.parametrize("setup", [{"txn_settle_ms": 2000}], indirect=True)
def test_a_batch_right_after_a_commit_waits_the_settle_time_and_its_dispatch_does_not(setup) -> None:
    settings, proc, runner, send = setup
    tasks, out = Reader(settings, proc.tasks_topic), Reader(settings, proc.out_topic)
    runner.txn.gate.set()
    send(b"a")
    assert out.read_until(1) == [b"a:1"]
    committed = time.monotonic()
    assert runner.txn.settle_waits == 0  # nothing committed offsets before the first batch
    send(b"b")  # fetched well within 2 s of the commit
    _wait(lambda: tasks.read(idle_polls=1) == [b"a", b"b"], "the dispatch record, sent before the wait")
    dispatched = time.monotonic()
    assert out.read_until(2) == [b"a:1", b"b:2"]
    assert runner.txn.settle_waits == 1 and 0.5 < runner.txn.settle_wait_s <= 2.0
    assert time.monotonic() - committed >= 1.0 > dispatched - committed
    assert runner.aborts == 0


def test_without_a_settle_time_no_batch_waits(setup) -> None:
    settings, proc, runner, send = setup
    assert settings.txn_settle_ms == 0
    out = Reader(settings, proc.out_topic)
    runner.txn.gate.set()
    for i, v in enumerate((b"a", b"b", b"c")):
        send(v)
        assert out.read_until(i + 1)[-1] == v + b":%d" % (i + 1)
    assert runner.txn.settle_waits == 0 and runner.txn.settle_wait_s == 0.0
