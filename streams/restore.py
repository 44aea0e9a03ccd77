"""Restore on assignment: bring a partition's RocksDB store up to date and find where its input
resumes (docs/processing-loop.md, "Restore rules").

- With a changelog: changelog partition p is read from the store's changelog checkpoint to its end
  (the end offset seen in this consumer's fetch responses: Tansu's ListOffsets "latest" is wrong)
  through `processor.restore`, and input resumes at max(store input checkpoint, highest restored
  input offset + 1, committed group offset) (docs/deviations.md 14).
- Without a changelog the state is a fold of the input: input records from the store checkpoint K
  up to the committed offset C are fed to `processor.restore` (outputs suppressed), and input
  resumes at max(K, C).
The restored state and both checkpoints are written in one WriteBatch, every
RESTORE_COMMIT_EVERY records for a long restore (each a consistent point) and at the end.

`ProcessorRunner` (streams.loop) opens the store and calls `restore_partition`; nothing here holds
state between assignments.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import cast

from confluent_kafka import Consumer, TopicPartition

from .checkpoint import verify_store
from .clients import make_consumer
from .errors import LogStartMovedError, retry, usable, watermarks
from .processing import ConsumedMessage, PartitionContext, Processor, in_record, no_emit
from .settings import Settings
from .store import PartitionStore

log = logging.getLogger(__name__)

#: A restore commits its progress (state + both checkpoints) every this many records.
RESTORE_COMMIT_EVERY = 20_000
#: A restore that reads nothing for this long while short of the end offset fences the slot again.
RESTORE_STUCK_SECONDS = 10.0


def committed_offsets(consumer: Consumer, topic: str, partitions: list[int]) -> dict[int, int]:
    """The group's committed offsets of topic[p] for `partitions` (those that have one)."""
    tps = retry(consumer.committed, [TopicPartition(topic, p) for p in partitions], 30.0)
    return {tp.partition: tp.offset for tp in tps if tp.offset >= 0}


class PartitionReader:
    """Reads one partition of a topic from an offset, for a restore (read_committed, see
    `Settings.isolation_level`)."""

    def __init__(self, settings: Settings, group: str, owner: str, on_stuck: Callable[[], None]) -> None:
        """`group`: the consumers' group id (they `assign`, so it commits nothing); `owner`: the
        transactional id, for logs; `on_stuck`: called when a read is stuck short of the end
        offset for RESTORE_STUCK_SECONDS (an open transaction of a dead instance: fence it)."""
        self.settings = settings
        self.group = group
        self.owner = owner
        self.on_stuck = on_stuck

    def read(self, topic: str, p: int, start: int, stop: int | None) -> Iterator[tuple[ConsumedMessage, int]]:
        """Yield (record, next position) of topic[p] from `start` to `stop` (None: the end offset
        seen in this consumer's fetch responses). A fresh consumer each time: the cached watermark
        of an earlier assignment must not end a restore early."""
        # settings.isolation_level; a start below the log start raises (errors.usable), never jumps
        consumer = make_consumer(self.settings, self.group, **{"auto.offset.reset": "error"})
        tp = TopicPartition(topic, p)
        try:
            consumer.assign([TopicPartition(topic, p, start)])
            position = start
            end = stop
            waited_since = time.monotonic()
            while True:
                if end is None:
                    high = consumer.get_watermark_offsets(tp, cached=True)[1]
                    end = high if high >= 0 else None
                if end is not None and position >= end:
                    return
                msgs = consumer.consume(1000, 0.1)
                for raw in msgs:
                    if not usable(raw, self.owner):
                        continue
                    m = cast(ConsumedMessage, raw)  # error-free: topic, partition and offset are set
                    position = m.offset() + 1
                    if stop is not None and m.offset() >= stop:
                        return
                    yield m, position
                if not msgs and end is not None:
                    # transaction markers (Apache Kafka) take offsets: the fetch position passes them
                    position = max(position, consumer.position([tp])[0].offset)
                if msgs:
                    waited_since = time.monotonic()
                elif time.monotonic() - waited_since > RESTORE_STUCK_SECONDS:
                    log.warning(
                        "%s: restore of %s[%d] stuck at @%d (end %s): an open transaction? "
                        "fencing this slot again",
                        self.owner,
                        topic,
                        p,
                        position,
                        end,
                    )
                    self.on_stuck()
                    waited_since = time.monotonic()
        finally:
            consumer.close()

    def log_start(self, topic: str, p: int) -> int:
        """The first offset the broker still holds of topic[p] (ListOffsets "earliest")."""
        consumer = make_consumer(self.settings, self.group)
        try:
            return watermarks(consumer, TopicPartition(topic, p))[0]
        finally:
            consumer.close()


def _require(reader: PartitionReader, topic: str, p: int, needed: int, way_out: str) -> None:
    """Raise `LogStartMovedError` if topic[p] no longer holds offset `needed` (docs/brokers.md §4)."""
    low = reader.log_start(topic, p)
    if needed < low:
        raise LogStartMovedError(
            f"{reader.owner}: needs {topic}[{p}] from offset {needed}, but the broker deleted the records "
            f"before offset {low} (retention or delete-records). {way_out}"
        )


def restore_partition(
    processor: Processor, store: PartitionStore, p: int, committed: int | None, reader: PartitionReader
) -> tuple[int, int]:
    """Bring partition p's open `store` up to date (`committed`: the group's committed input
    offset, if any). Returns (the input offset to resume at, the number of records restored)."""
    verify_store(
        reader, store, processor.name, processor.input_topic, processor.changelog_topic, p, committed
    )
    if processor.changelog_topic is not None:
        changelog = processor.changelog_topic
        resume, count = _from_changelog(processor, changelog, store, p, committed or 0, reader)
    else:
        resume, count = _from_input(processor, store, p, committed or 0, reader)
    group = reader.settings.group(processor.name)
    _require(
        reader,
        processor.input_topic,
        p,
        resume,
        (
            f"Input resumes at {resume}, the first offset not known to be processed: the records from there to "
            "the log start were deleted before this processor read them (it was down longer than the topic's "
            "retention), or after it processed them with nothing left to prove it (its group offset expired). "
            "Raise the topic's retention.ms. If they were processed, or losing them is accepted, move the "
            f"group's offset to the log start and restart: kafka-consumer-groups.sh --bootstrap-server <broker> "
            f"--group {group} --topic {processor.input_topic}:{p} --reset-offsets --to-earliest --execute"
        ),
    )
    return resume, count


def _lost_state(topic: str, store: PartitionStore) -> str:
    return (
        f"This partition's state cannot be rebuilt without them. {topic} must keep every record "
        "(retention.ms=-1, retention.bytes=-1, cleanup.policy=delete: `kadence topics check`). The way "
        f"out is a copy of this partition's store ({store.path}) whose checkpoint is at or past the "
        "broker's first offset, or the topic's lost records put back."
    )


class RestoreContext(PartitionContext):
    """The context `processor.restore` gets: `emit` is refused, and `committed_offset` is the
    group's committed input offset of the partition when the restore began (0: none).

    Every input record below it was processed by a batch whose outputs had all been written
    before that offset was sent to its transaction (step 3 flushes before step 4): on Apache
    Kafka the transaction committed, since transactional offsets count only once committed; on a
    broker that shows aborted records (Tansu) they are in the log all the same. So a processor that
    re-sends the outputs of restored records, in case their transaction was cut short (the history
    processor's replies and outcomes), need not re-send those of records below it: they would
    only be duplicates, and on Kafka committed ones."""

    __slots__ = ("committed_offset",)

    def __init__(self, partition: int, store: PartitionStore, committed_offset: int = 0) -> None:
        super().__init__(partition, store.state, [])
        self.emit = no_emit
        self.committed_offset = committed_offset


def _restore_context(p: int, store: PartitionStore, committed: int = 0) -> RestoreContext:
    return RestoreContext(p, store, committed)


def _from_changelog(
    processor: Processor, topic: str, store: PartitionStore, p: int, committed: int, reader: PartitionReader
) -> tuple[int, int]:
    """Apply changelog[p] from the store's changelog checkpoint to its end."""
    restore = processor.restore
    ctx = _restore_context(p, store, committed)
    resume = max(store.input_offset or 0, committed)
    count = 0
    start = position = store.changelog_offset or 0
    _require(reader, topic, p, start, _lost_state(topic, store))
    for m, position in reader.read(topic, p, start, None):
        record = in_record(m)
        ctx.now_ms = record.timestamp_ms
        proven = restore(record, ctx)
        if proven is not None and proven + 1 > resume:
            resume = proven + 1
        count += 1
        if count % RESTORE_COMMIT_EVERY == 0:
            store.commit(input_offset=resume, changelog_offset=position)
    store.commit(input_offset=resume, changelog_offset=position)
    return resume, count


def _from_input(
    processor: Processor, store: PartitionStore, p: int, committed: int, reader: PartitionReader
) -> tuple[int, int]:
    """No changelog: refold input records [store checkpoint, committed offset) into the state."""
    restore = processor.restore
    ctx = _restore_context(p, store)
    start = store.input_offset or 0
    count = 0
    position = start
    if committed > start:
        _require(reader, processor.input_topic, p, start, _lost_state(processor.input_topic, store))
        for m, position in reader.read(processor.input_topic, p, start, committed):
            record = in_record(m)
            ctx.now_ms = record.timestamp_ms
            restore(record, ctx)
            count += 1
            if count % RESTORE_COMMIT_EVERY == 0:
                store.commit(input_offset=position)
    resume = max(start, committed)
    store.commit(input_offset=resume)
    return resume, count


__all__ = [
    "RESTORE_COMMIT_EVERY",
    "RESTORE_STUCK_SECONDS",
    "LogStartMovedError",
    "PartitionReader",
    "RestoreContext",
    "committed_offsets",
    "restore_partition",
]
