"""Poison input goes to dead-letters (in the processing transaction); its neighbours are processed."""

from __future__ import annotations

import json
import threading
import time

import pytest
from confluent_kafka import TopicPartition

from bench.counting import CountingProcessor, counts_topic, ensure_counting_topics, input_topic, produce_input
from kadence.streams.clients import make_consumer
from kadence.streams.loop import ProcessorRunner
from kadence.streams.serde import TYPE_HEADER, serde
from kadence.streams.settings import Settings
from tests.support.dedupe import IdempotentReader, header

pytestmark = pytest.mark.timeout(120)


def _read_dead_letters(settings: Settings, want: int, deadline_s: float) -> list[dict]:
    consumer = make_consumer(settings, f"{settings.prefix}dl-reader")
    consumer.assign([TopicPartition(settings.dead_letters_topic, 0, 0)])
    found: list[dict] = []
    deadline = time.monotonic() + deadline_s
    try:
        while len(found) < want and time.monotonic() < deadline:
            for m in consumer.consume(100, 0.2):
                if m.error() is None:
                    assert dict(m.headers())[TYPE_HEADER] == b"DeadLetter"
                    record_type, record = serde().decode(m.value())
                    assert record_type == "DeadLetter"
                    found.append(record)
    finally:
        consumer.close()
    return found


def test_poison_records_land_in_dead_letters_and_neighbours_are_processed(settings: Settings) -> None:
    ensure_counting_topics(settings)
    poison = b"\xff\xfe not utf-8"
    records = [(b"a", b"1"), (b"a", poison), (b"a", b"2"), (None, b"keyless"), (b"a", b"3")]
    produce_input(settings, records)

    stop = threading.Event()
    runner = ProcessorRunner(settings, CountingProcessor(settings), slot=0)
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    thread.start()
    try:
        dead = _read_dead_letters(settings, 2, 60)
        with IdempotentReader(settings, counts_topic(settings), lambda r: header(r, "src")) as reader:
            counts: list[dict] = []
            deadline = time.monotonic() + 60
            while len(counts) < 3 and time.monotonic() < deadline:
                counts += [json.loads(r.value) for r in reader.read_available(5)]
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()

    by_reason = {d["reason"].split(":")[0]: d for d in dead}
    assert set(by_reason) == {"not UTF-8", "record has no key"}, dead
    bad = by_reason["not UTF-8"]
    assert (bad["topic"], bad["key"], bad["value"], bad["processor"]) == (
        input_topic(settings),
        b"a",
        poison,
        "counting",
    )
    keyless = by_reason["record has no key"]
    assert (keyless["key"], keyless["value"]) == (None, b"keyless")
    # all "a" records share one partition; the keyless one comes after the poison wherever it lands
    assert bad["offset"] == 1
    assert keyless["topic"] == input_topic(settings) and keyless["offset"] >= 0
    # the three good "a" records were counted 1, 2, 3, with their own source offsets
    assert sorted(c["count"] for c in counts) == [1, 2, 3]
    assert {c["key"] for c in counts} == {"a"}
    assert runner.dead_letters == 2
