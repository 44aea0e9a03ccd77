"""The counting processor: the loop's reference workload (benchmarks and the kill tests).

Input `<prefix>count-input`: keyed records, UTF-8 values. State: count per key. For every input
record it emits one record to its changelog `<prefix>counts` at the input's partition: key = the
input key, value = JSON {"key", "count", "src": "<partition>:<offset>"}, header `src` = the same
source. A record without a key or with a non-UTF-8 value is poison (dead-letters).

Run as a process: `python -m bench.counting --bootstrap HOST:PORT --prefix P --state-dir D --slot N`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence

from kadence.streams.clients import make_producer
from kadence.streams.launch import processor_main
from kadence.streams.processing import Context, InRecord, OutRecord, PoisonRecord, Processor
from kadence.streams.settings import Settings
from kadence.streams.topics import TopicSpec, ensure_topics


def input_topic(settings: Settings) -> str:
    return f"{settings.prefix}count-input"


def counts_topic(settings: Settings) -> str:
    return f"{settings.prefix}counts"


def ensure_counting_topics(settings: Settings) -> None:
    """Input and changelog with `settings.partitions` partitions, plus dead-letters."""
    p = settings.partitions
    ensure_topics(
        settings,
        [
            TopicSpec(input_topic(settings), p, {}),
            TopicSpec(counts_topic(settings), p, {}),
            TopicSpec(settings.dead_letters_topic, 1, {}),
        ],
    )


def parse_src(src: bytes | str) -> tuple[int, int]:
    partition, offset = (src.decode() if isinstance(src, bytes) else src).split(":")
    return int(partition), int(offset)


class CountingProcessor(Processor):
    name = "counting"

    def __init__(self, settings: Settings) -> None:
        self.input_topic = input_topic(settings)
        self.changelog_topic = counts_topic(settings)

    def process(self, record: InRecord, ctx: Context) -> None:
        key = record.key
        if key is None:
            raise PoisonRecord("record has no key")
        try:
            text_key = key.decode()
            if record.value is not None:
                record.value.decode()
        except UnicodeDecodeError as exc:
            raise PoisonRecord(f"not UTF-8: {exc}") from exc
        state = ctx.state
        raw = state.get(key)
        count = int(raw) + 1 if raw is not None else 1
        state.put(key, b"%d" % count)
        src = f"{record.partition}:{record.offset}"
        value = json.dumps({"key": text_key, "count": count, "src": src}).encode()
        ctx.emit(
            OutRecord(
                self.changelog_topic,
                key,
                value,
                (("src", src.encode()),),
                record.partition,
                record.timestamp_ms,
            )
        )

    def restore(self, record: InRecord, ctx: Context) -> int | None:
        """Idempotent: a count only grows, so the max wins (a record applied twice changes nothing)."""
        data = json.loads(record.value or b"{}")
        key = record.key
        if key is None or "count" not in data:
            return None
        raw = ctx.state.get(key)
        if raw is None or int(raw) < data["count"]:
            ctx.state.put(key, b"%d" % data["count"])
        return parse_src(data["src"])[1]


def produce_input(settings: Settings, records: Iterable[tuple[bytes | None, bytes | None]]) -> int:
    """Produce (key, value) records to the input topic (murmur2 partitioning); returns the count."""
    producer = make_producer(settings)
    n = 0
    for key, value in records:
        while True:
            try:
                producer.produce(input_topic(settings), value, key)
                break
            except BufferError:
                producer.poll(0.05)
        n += 1
    if producer.flush(60):
        raise TimeoutError("input records not delivered within 60 s")
    return n


def main(argv: Sequence[str] | None = None) -> int:
    return processor_main(
        CountingProcessor,
        argv,
        prepare=ensure_counting_topics,
        description="Kadence counting processor (benchmark / kill-test workload)",
    )


if __name__ == "__main__":
    sys.exit(main())
