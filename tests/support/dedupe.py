"""The idempotent consumer: an exactly-once *view* of a topic by record id (test support).

Kadence's outputs are deterministic and every record carries its identity
(docs/processing-loop.md, "Exactly-once in effect"), so a record that appears twice (a leaked
aborted transaction on Tansu, a redelivery after a crash) is an exact duplicate. A consumer gets
exactly-once in effect by dropping ids it has already seen:

    dedupe = Deduplicator(lambda r: header(r, "src"))
    fresh = [r for r in records if dedupe.accept(r)]

`IdempotentReader` does that for a whole topic: it reads every partition from the beginning up to
the end offsets seen in fetch responses (never ListOffsets "latest": Tansu's is wrong) and returns
only first sightings; call `read_available` again to continue where it stopped.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from confluent_kafka import TopicPartition

from kadence.streams.clients import make_consumer
from kadence.streams.processing import InRecord
from kadence.streams.settings import Settings
from kadence.streams.topics import partition_count

T = TypeVar("T")


class Deduplicator(Generic[T]):
    """Accepts each record id once. `max_ids` bounds memory (oldest ids forgotten first; use it
    only when duplicates are known to arrive within that many records)."""

    def __init__(self, id_of: Callable[[T], Hashable], max_ids: int | None = None) -> None:
        self.id_of = id_of
        self.max_ids = max_ids
        self._seen: OrderedDict[Hashable, None] = OrderedDict()
        self.accepted = 0
        self.duplicates = 0

    def accept(self, record: T) -> bool:
        """True the first time the record's id is seen, False for a duplicate."""
        rid = self.id_of(record)
        if rid in self._seen:
            self.duplicates += 1
            return False
        self._seen[rid] = None
        if self.max_ids is not None and len(self._seen) > self.max_ids:
            self._seen.popitem(last=False)
        self.accepted += 1
        return True

    def __contains__(self, rid: Hashable) -> bool:
        return rid in self._seen


def header(record: InRecord, name: str) -> bytes | None:
    """The first header `name` of a record, or None."""
    for key, value in record.headers:
        if key == name:
            return value
    return None


class IdempotentReader:
    """Reads a topic (all partitions, from the beginning) through a `Deduplicator`."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        id_of: Callable[[InRecord], Hashable],
        isolation_level: str = "read_committed",
    ) -> None:
        """`isolation_level="read_uncommitted"` also shows records of aborted transactions (audits
        of everything a topic holds, e.g. crash tests comparing every copy of a record)."""
        self.topic = topic
        self.dedupe: Deduplicator[InRecord] = Deduplicator(id_of)
        self._consumer = make_consumer(
            settings,
            f"{settings.prefix}reader-{uuid.uuid4().hex[:8]}",
            **{"isolation.level": isolation_level},
        )
        self._partitions = partition_count(settings, topic)
        self._position = {p: 0 for p in range(self._partitions)}
        self._consumer.assign([TopicPartition(topic, p, 0) for p in range(self._partitions)])

    @property
    def duplicates(self) -> int:
        return self.dedupe.duplicates

    @property
    def raw_count(self) -> int:
        return self.dedupe.accepted + self.dedupe.duplicates

    def read_available(self, timeout: float = 10.0) -> list[InRecord]:
        """First sightings among the records up to the end offsets seen now; waits at most
        `timeout` seconds for the end offsets to be known and reached."""
        ends = self._ends(timeout)
        fresh: list[InRecord] = []
        deadline = time.monotonic() + timeout
        while any(self._position[p] < end for p, end in ends.items()) and time.monotonic() < deadline:
            for m in self._consumer.consume(1000, 0.1):
                if m.error() is not None:
                    continue
                self._position[m.partition()] = m.offset() + 1
                headers = m.headers()
                record = InRecord(
                    m.topic(),
                    m.partition(),
                    m.offset(),
                    m.key(),
                    m.value(),
                    tuple(headers) if headers else (),
                    m.timestamp()[1],
                )
                if self.dedupe.accept(record):
                    fresh.append(record)
        return fresh

    def _ends(self, timeout: float) -> dict[int, int]:
        """End offsets from this consumer's fetch responses (consume once so they are fresh)."""
        deadline = time.monotonic() + timeout
        ends: dict[int, int] = {}
        while len(ends) < self._partitions and time.monotonic() < deadline:
            for p in range(self._partitions):
                high = self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), cached=True)[1]
                if high >= 0:
                    ends[p] = high
            if len(ends) < self._partitions:
                time.sleep(0.02)
        return ends

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> IdempotentReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Deduplicator", "IdempotentReader", "header"]
