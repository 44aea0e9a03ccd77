"""Issue 12, item 1, on the loop itself (the counting processor, a real broker): a record whose
processing raises is dead-lettered with the error; a record whose output no producer could send is
dead-lettered; a record that makes the batch's transaction fail (an output to a topic that cannot
exist) or that stops the instance again and again is set aside after a bounded number of tries,
counted in a file a restarted instance reads; neighbours are processed, nothing is retried forever."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from bench.counting import CountingProcessor, counts_topic, ensure_counting_topics, produce_input
from kadence.streams.errors import LoopFatalError
from kadence.streams.failed_inputs import MAX_ATTEMPTS
from kadence.streams.loop import MAX_OUTPUT_BYTES, ProcessorRunner
from kadence.streams.processing import Context, InRecord, OutRecord
from kadence.streams.settings import Settings
from tests.support.dedupe import IdempotentReader, header
from tests.support.raw import Raw

pytestmark = pytest.mark.timeout(240)


class TrappedCounting(CountingProcessor):
    """Counts like CountingProcessor, except for a few values that misbehave on purpose."""

    def __init__(self, settings: Settings, kills: list[int]) -> None:
        super().__init__(settings)
        self.kills = kills

    def process(self, record: InRecord, ctx: Context) -> None:
        if record.value == b"bug":
            raise ZeroDivisionError("a processor bug that this record triggers")
        if record.value == b"huge":
            ctx.emit(
                OutRecord(
                    self.changelog_topic, record.key, b"x" * (MAX_OUTPUT_BYTES + 1), (), record.partition
                )
            )
            return
        if record.value == b"kill":  # stops the instance, the way a fatal produce error does
            self.kills.append(record.offset)
            refused = KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
            raise LoopFatalError("this record stops the instance") from refused
        if record.value == b"no-topic":  # no producer could send it (it would wait, then fail its batch)
            ctx.emit(OutRecord("not a valid topic!", record.key, b"x"))
        super().process(record, ctx)


def _run_restarting(settings: Settings, kills: list[int], until: Any, limit_s: float = 150.0) -> int:
    """Run the processor as its supervisor would: a new instance whenever one stops. Returns the
    number of instances that stopped."""
    stopped = 0
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        stop = threading.Event()
        runner = ProcessorRunner(settings, TrappedCounting(settings, kills), slot=0)
        errors: list[BaseException] = []

        def run(
            r: ProcessorRunner = runner, s: threading.Event = stop, e: list[BaseException] = errors
        ) -> None:
            try:
                r.run(s)
            except BaseException as exc:  # noqa: BLE001 - the "supervisor" notes and restarts
                e.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        while thread.is_alive() and not until():
            thread.join(0.2)
        if thread.is_alive():
            stop.set()
            thread.join(30)
            return stopped
        assert errors and isinstance(errors[0], LoopFatalError), errors
        stopped += 1
    raise AssertionError("the processor never got past its bad input")


def test_bad_records_are_set_aside_and_neighbours_counted(settings: Settings) -> None:
    s = settings.with_(partitions=1)
    ensure_counting_topics(s)
    values = [b"1", b"bug", b"2", b"huge", b"3", b"kill", b"4", b"no-topic", b"5"]
    produce_input(s, [(b"k", v) for v in values])
    raw = Raw(s)
    kills: list[int] = []
    counts: list[dict[str, Any]] = []
    with IdempotentReader(s, counts_topic(s), lambda r: header(r, "src")) as reader:

        def done() -> bool:
            counts.extend(json.loads(r.value) for r in reader.read_available(0.05))
            return len(counts) >= 5 and len(raw.read(s.dead_letters_topic, 1)) >= 4

        started = time.monotonic()
        stopped = _run_restarting(s, kills, done)
    elapsed = time.monotonic() - started
    dead = {d["offset"]: d for d in raw.read(s.dead_letters_topic, 1)}
    raw.close()
    assert sorted(c["count"] for c in counts) == [1, 2, 3, 4, 5]
    assert sorted(dead) == [1, 3, 5, 7], dead
    assert "ZeroDivisionError" in dead[1]["reason"] and dead[1]["value"] == b"bug"
    assert f"more than the largest record the engine produces ({MAX_OUTPUT_BYTES}" in dead[3]["reason"]
    assert dead[5]["reason"].startswith(f"set aside after it stopped the processor {MAX_ATTEMPTS} times")
    assert "this record stops the instance" in dead[5]["reason"]
    assert "'not a valid topic!', which is not a valid Kafka topic name" in dead[7]["reason"], dead[7]
    # the killing record was tried once in its batch, then MAX_ATTEMPTS - 1 more times alone
    assert kills == [5] * MAX_ATTEMPTS and stopped == MAX_ATTEMPTS
    assert not list((Path(s.state_dir) / "failed-inputs").glob("*.json"))  # done: the record is gone
    print(f"\nTABLE | set aside after {MAX_ATTEMPTS} tries | {stopped} instance stops | {elapsed:.2f} s")
