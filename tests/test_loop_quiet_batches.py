"""Batches with no outputs commit no transaction; their offsets follow in an offsets-only one
(streams/loop.py, OFFSETS_LAG_SECONDS), and a new instance with an empty store loses nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from kadence.streams import loop as stream_loop
from kadence.streams.clients import make_consumer, make_producer
from kadence.streams.loop import ProcessorRunner
from kadence.streams.processing import Context, InRecord, OutRecord, Processor
from kadence.streams.settings import Settings
from kadence.streams.topics import TopicSpec, ensure_topics

pytestmark = pytest.mark.timeout(120)


class Quiet(Processor):
    """Counts records in state; emits (the count so far) only for records whose value is b"emit"."""

    name = "quiet"

    def __init__(self, settings: Settings) -> None:
        self.input_topic = f"{settings.prefix}quiet-in"
        self.out_topic = f"{settings.prefix}quiet-out"

    def process(self, record: InRecord, ctx: Context) -> None:
        count = self._count(ctx)
        if record.value == b"emit":
            ctx.emit(OutRecord(self.out_topic, b"n", b"%d" % count))

    def restore(self, record: InRecord, ctx: Context) -> int | None:
        self._count(ctx)  # no changelog: the state is a fold of the input
        return None

    @staticmethod
    def _count(ctx: Context) -> int:
        count = int(ctx.state.get(b"n") or b"0") + 1
        ctx.state.put(b"n", b"%d" % count)
        return count


def _wait(cond: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _outputs(settings: Settings, proc: Quiet, last: int) -> list[int]:
    """Every output, read until `last` is seen (or 30 s), then until the topic is quiet."""
    consumer = make_consumer(settings, f"reader-{time.time_ns()}")
    consumer.assign([TopicPartition(proc.out_topic, 0, 0)])
    out: list[int] = []
    idle, deadline = 0, time.monotonic() + 30
    while idle < 10 and time.monotonic() < deadline:
        m = consumer.poll(0.05)
        if m is None:
            idle += 1 if last in out else 0
        elif m.error() is None:
            out.append(int(m.value()))
    consumer.close()
    return out


#: The lag window of this test: long enough that a slow machine still processes the quiet records
#: inside it (1 s, the default, was tight for a loaded broker).
LAG_S = 4.0


def test_quiet_batches_skip_the_transaction_and_their_offsets_follow(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream_loop, "OFFSETS_LAG_SECONDS", LAG_S)
    settings = settings.with_(partitions=1, state_dir=str(tmp_path / "a"))
    proc = Quiet(settings)
    ensure_topics(settings, [TopicSpec(proc.input_topic, 1, {}), TopicSpec(proc.out_topic, 1, {})])
    producer = make_producer(settings)

    def send(*values: bytes) -> None:
        for v in values:
            producer.produce(proc.input_topic, v, b"k", partition=0)
        producer.flush(10)

    runner = ProcessorRunner(settings, proc)
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    thread.start()
    try:
        _wait(lambda: runner.assigned == [0], "assignment")
        send(b"quiet")  # the first quiet batch after a second without a commit commits its offsets
        _wait(lambda: runner.processed >= 1, "the first record")
        time.sleep(0.2)
        before = runner.transactions
        t_sent = time.monotonic()
        send(b"quiet", b"quiet")
        _wait(lambda: runner.processed >= 3, "3 records")
        assert runner.transactions == before  # processed, published nothing, committed nothing
        _wait(lambda: runner.transactions == before + 1, "the offsets-only transaction", timeout=LAG_S + 10)
        # not before the lag window (which opened at the last commit, before t_sent - 0.2) closed
        assert time.monotonic() - t_sent >= LAG_S - 0.5 and not runner._lagging
        send(b"quiet", b"emit")
        _wait(lambda: runner.processed >= 5, "5 records")
        assert runner.transactions == before + 2  # the publishing batch, offsets included
    finally:
        stop.set()
        thread.join(30)
    # A new instance with an empty store resumes from the group offset: the fold is rebuilt from
    # input (outputs suppressed) and nothing is published twice.
    send(b"quiet", b"emit")
    fresh = ProcessorRunner(settings.with_(state_dir=str(tmp_path / "b")), Quiet(settings))
    stop2 = threading.Event()
    thread2 = threading.Thread(target=fresh.run, args=(stop2,), daemon=True)
    thread2.start()
    try:
        _wait(lambda: fresh.processed >= 2, "the new instance to process the 2 new records")
    finally:
        stop2.set()
        thread2.join(30)
    # Reading the group offset back is unreliable on Tansu, so the proof is the outputs: the new
    # instance's count includes every record (7), and anything it re-emitted is a duplicate (5).
    outputs = _outputs(settings, proc, last=7)
    assert outputs[0] == 5 and outputs[-1] == 7 and set(outputs) == {5, 7}
