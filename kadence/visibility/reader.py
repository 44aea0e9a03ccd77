"""Tail the compacted `visibility` topic into memory: the latest row of every run, all partitions.

One consumer thread, `assign`ed every partition from the beginning (no group, nothing committed),
keeps `rows[key]` = the last row read for that key (what compaction would keep). `sync()` makes a
read as fresh as the topic is *now*: it asks the broker for each partition's end offset and waits
until the thread has read up to it. So a list sees every row the derived processor had committed
when the list began (docs/visibility.md, "Freshness").
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any, cast

from confluent_kafka import OFFSET_BEGINNING, IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]  # re-exported untyped

from kadence.failures import KadenceError
from kadence.schemas.records import VisibilityRecord
from kadence.streams.clients import make_admin, make_consumer
from kadence.streams.serde import SerdeError, serde
from kadence.streams.settings import Settings

log = logging.getLogger("kadence.visibility")

_LATEST: Any = OffsetSpec.latest()  # type: ignore[no-untyped-call]  # untyped in confluent-kafka


class VisibilityReader:
    """The latest visibility row of every run, read from the topic by a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.visibility_topic
        self._cond = threading.Condition()
        self._rows: dict[bytes, VisibilityRecord] = {}
        self._stop = threading.Event()
        group = settings.group(f"visibility-{uuid.uuid4().hex}")
        self._consumer = make_consumer(settings, group, **{"enable.partition.eof": True})
        md = self._consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
        if md is None or md.error is not None or not md.partitions:
            self._consumer.close()
            raise KadenceError(
                f"topic {self.topic} does not exist; create the topics first (`kadence topics create`)"
            )
        self.partitions = sorted(md.partitions)
        #: Per partition, the offset up to which the thread has read (next offset to read).
        self._position: dict[int, int] = dict.fromkeys(self.partitions, 0)
        #: Asks the broker for the partitions' end offsets (sync).
        self._admin = make_admin(settings)
        self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in self.partitions])
        self._thread = threading.Thread(target=self._run, name="kadence-visibility", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        codec = serde()
        try:
            while not self._stop.is_set():
                messages = self._consumer.consume(500, 0.1)
                if not messages:
                    continue
                with self._cond:
                    for msg in messages:
                        err = msg.error()
                        partition = cast(int, msg.partition())
                        if err is not None:
                            if err.code() == KafkaError._PARTITION_EOF:
                                self._position[partition] = max(self._position[partition], msg.offset() or 0)
                            else:
                                log.warning("%s: consumer error %s", self.topic, err)
                            continue
                        offset = cast(int, msg.offset())
                        self._position[partition] = max(self._position[partition], offset + 1)
                        key = msg.key()
                        try:
                            _, row = codec.decode(msg.value(), expected="VisibilityRecord")
                        except SerdeError as exc:
                            log.warning(
                                "%s[%d]@%d: skipping unreadable row: %s", self.topic, partition, offset, exc
                            )
                            continue
                        if key is not None:
                            self._rows[key] = cast(VisibilityRecord, row)
                    self._cond.notify_all()
        finally:
            self._consumer.close()

    def sync(self, timeout: float = 10.0) -> bool:
        """Wait until every row committed to the topic before this call has been read. Returns False
        (the rows read so far stay usable) when that takes longer than `timeout` seconds."""
        deadline = time.monotonic() + timeout
        # One ListOffsets request for every partition; read_committed: the last stable offset.
        try:
            futures = self._admin.list_offsets(
                {TopicPartition(self.topic, p): _LATEST for p in self.partitions},
                isolation_level=IsolationLevel.READ_COMMITTED,
                request_timeout=max(0.1, timeout),
            )
            ends = {tp.partition: future.result().offset for tp, future in futures.items()}
        except KafkaException as exc:  # e.g. a leader moving: answer from the rows read so far
            log.warning(
                "visibility: cannot read the end offsets of %s (%s); the list may be stale", self.topic, exc
            )
            return False
        with self._cond:
            while any(self._position[p] < end for p, end in ends.items()):
                left = deadline - time.monotonic()
                if left <= 0:
                    behind = {
                        p: end - self._position[p] for p, end in ends.items() if self._position[p] < end
                    }
                    log.warning("visibility: not caught up after %.1fs (records behind: %s)", timeout, behind)
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def rows(self) -> list[VisibilityRecord]:
        """A snapshot of the latest row of every run read so far."""
        with self._cond:
            return list(self._rows.values())

    def close(self) -> None:
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(5)
