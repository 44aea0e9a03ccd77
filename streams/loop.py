"""The exactly-once (in effect) processing loop: Kafka transactions + RocksDB partition stores.

One `ProcessorRunner` runs one `Processor` (see `streams.processing`) as one member of the consumer
group `settings.group(processor.name)`, with the stable transactional id
`settings.transactional_id(processor.name, slot)`.

The batch protocol
------------------
0. Start: `init_transactions()` once. This fences a zombie of the same slot and, on Tansu, unblocks
   read_committed readers that a killed instance of this slot left behind.
1. Consume a batch of `processor.input_topic` (settings.isolation_level: read_committed on Kafka,
   read_uncommitted on Tansu, see Settings; no auto commit) of up to
   `batch_max_records`, waiting at most `batch_max_wait_ms` after its first record.
2. Process each record in offset order: `processor.process(record, ctx)` with `ctx.now_ms` = the
   record's timestamp. State writes go to the partition's overlay (nothing touches RocksDB);
   `ctx.emit` queues outputs. A `PoisonRecord` rolls back that record's state writes and
   outputs (overlay savepoint) and queues a `DeadLetter` record instead.
3. Dispatch outputs (`OutRecord.dispatch`: tasks for workers) go first, through a second
   producer outside the transaction (not idempotent: see `_dispatch`). Then `begin_transaction`,
   produce the other outputs and dead letters (a delivery callback only on the last changelog
   record of each partition: its offset + 1 is the next changelog checkpoint), `flush`.
4. `send_offsets_to_transaction(next offsets, group metadata)`; the dispatch producer is flushed:
   a dispatch record that failed to deliver aborts the batch (it is redone, dispatch included).
5. `commit_transaction`.
6. For each partition of the batch: write its pending state + checkpoint (next input offset, next
   changelog offset) in ONE RocksDB WriteBatch.
A batch with no outputs skips 3-5 (a transaction is three broker round trips, and most batches of
a derived fold publish nothing): step 6 records its progress, and its offsets ride with the next
transaction, or an offsets-only one within OFFSETS_LAG_SECONDS (and at shutdown). A reader that
resumes from the lagging group offset reprocesses records that produced nothing; processing is
deterministic, so they produce nothing again (the store checkpoint, when present, is ahead anyway).

Why each crash point is safe, even on a broker that leaks aborted records (Tansu):
- before 3: nothing left the process; the restart restores and reprocesses the same records.
- dispatch records delivered for a batch that then aborts (or whose instance dies) are the same
  case as leaked aborted records, on any broker: the redo sends byte-identical copies, and their
  readers (workers) de-duplicate by task token. What it buys: a worker sees its task after one
  produce round trip instead of after AddPartitionsToTxn, Produce, AddOffsetsToTxn,
  TxnOffsetCommit and EndTxn (measured: 4.2 ms median on the 2-core machine, docs/deviations.md).
- during 3-5 (transaction open or aborted): some prefix of the batch's records per partition may
  be in the log (Tansu shows aborted records to read_committed readers). Outputs are a
  deterministic function of input + state (DESIGN.md 5), so a leaked record is byte-identical to
  the one the redo produces: readers drop it by its id. On restore the changelog, leaked records
  included, is applied idempotently and input resumes after the highest input offset it proves
  processed, so the state never counts a record twice and never misses one it shows.
- after 5, before 6: the store is behind; restore replays the changelog from the store's changelog
  checkpoint and resumes input after the last applied offset (it is never earlier than the
  committed group offset).
- during 6: one WriteBatch is atomic, state and checkpoint cannot disagree.
Step 3 flushes before step 4, so committed (or leaked) offsets never cover records that were not
written: resuming at the group's committed offset is safe as well.

Restore on assignment (`on_assign`): open the partition's store; with a changelog, read changelog
partition p from the store's changelog checkpoint to its end (the high watermark from fetch
responses, tansu.md) through `processor.restore`, and resume input at max(store input checkpoint,
highest restored input offset + 1, committed group offset). Without a changelog the state is a fold
of the input: input records from the store checkpoint K up to the committed offset C are fed to
`restore` (outputs suppressed), and input resumes at max(K, C). The result is written in one
WriteBatch, then `processor.on_assigned` runs (its outputs are committed in a transaction at once).

Kafka errors by class: retriable -> the call is retried; txn_requires_abort -> abort, discard the
batch's pending state, `processor.on_revoked(p)` for its partitions, seek back to the batch's
first offsets and redo; fatal (e.g. PRODUCER_FENCED) -> `LoopFatalError` leaves `run` (the process
supervisor restarts the instance, whose `init_transactions` fences the other one).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Iterator, Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from .clients import make_consumer, make_producer
from .processing import InRecord, OutRecord, PoisonRecord, Processor
from .serde import serde
from .settings import Settings
from .store import Overlay, PartitionStore

log = logging.getLogger("kadence.streams.loop")

#: Kafka calls that fail with a retriable error are retried for this long before giving up.
RETRY_SECONDS = 60.0
#: A restore commits its progress (state + both checkpoints) every this many records.
RESTORE_COMMIT_EVERY = 20_000
#: A restore that reads nothing for this long while short of the end offset fences the slot again.
RESTORE_STUCK_SECONDS = 10.0
#: A batch with no outputs commits no transaction: its progress is in the store checkpoint, and
#: the group offset follows in an offsets-only transaction at most this much later.
OFFSETS_LAG_SECONDS = 1.0


class LoopFatalError(RuntimeError):
    """The instance cannot go on (fenced, fatal producer error, processor bug): restart it."""


class _Aborted(Exception):
    """The transaction was aborted; the caller redoes its work."""


class _Ctx:
    """The `Context` of one partition. `emit` is the batch output list's `append` (hot path)."""

    __slots__ = ("partition", "state", "now_ms", "emit")

    def __init__(self, partition: int, state: Overlay, out: list[OutRecord]) -> None:
        self.partition = partition
        self.state = state
        self.now_ms = 0
        self.emit: Callable[[OutRecord], None] = out.append


def _no_emit(record: OutRecord) -> None:
    raise RuntimeError("emit is not allowed in restore: restore only rebuilds state")


def _produce_one(producer: Any, o: OutRecord, on_delivery: Callable[..., None] | None) -> None:
    """Produce `o`, waiting for room while the producer's queue is full."""
    kwargs: dict[str, Any] = {}
    if o.partition is not None:
        kwargs["partition"] = o.partition
    if o.headers:
        kwargs["headers"] = list(o.headers)
    if o.timestamp_ms is not None:
        kwargs["timestamp"] = o.timestamp_ms
    if on_delivery is not None:
        kwargs["on_delivery"] = on_delivery
    while True:
        try:
            producer.produce(o.topic, o.value, o.key, **kwargs)
            return
        except BufferError:
            producer.poll(0.05)


def _in_record(m: Message) -> InRecord:
    headers = m.headers()
    return InRecord(m.topic(), m.partition(), m.offset(), m.key(), m.value(),
                    tuple(headers) if headers else (), m.timestamp()[1])


def _retry(fn: Callable[..., Any], *args: Any) -> Any:
    """Call `fn`, retrying retriable Kafka errors (not those that require an abort, nor fatal)."""
    deadline = time.monotonic() + RETRY_SECONDS
    delay = 0.05
    while True:
        try:
            return fn(*args)
        except KafkaException as exc:
            err = exc.args[0]
            if not err.retriable() or err.fatal() or err.txn_requires_abort() or time.monotonic() > deadline:
                raise
            log.info("retrying %s after retriable error: %s", getattr(fn, "__name__", fn), err)
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


class ProcessorRunner:
    """Runs one processor instance (one group member, one transactional id) until stopped."""

    def __init__(self, settings: Settings, processor: Processor, slot: int = 0,
                 batch_max_records: int | None = None, batch_max_wait_ms: int | None = None) -> None:
        self.settings = settings
        self.processor = processor
        self.slot = slot
        self.batch_max_records = batch_max_records or settings.batch_max_records
        wait_ms = settings.batch_max_wait_ms if batch_max_wait_ms is None else batch_max_wait_ms
        self.batch_max_wait_s = wait_ms / 1000.0
        self.group = settings.group(processor.name)
        self.transactional_id = settings.transactional_id(processor.name, slot)
        self._stores: dict[int, PartitionStore] = {}
        self._ctxs: dict[int, _Ctx] = {}
        self._next: dict[int, int] = {}
        self._out: list[OutRecord] = []
        self._producer: Any = None
        self._dispatcher: Any = None  # the producer of dispatch records, made at the first one
        self._dispatch_error: KafkaError | None = None
        self._consumer: Consumer | None = None
        self._next_punctuate = 0.0
        #: partition -> next input offset processed but not yet committed to the group (quiet batches)
        self._lagging: dict[int, int] = {}
        self._offsets_committed_at = 0.0
        #: Counters for logs, tests and benchmarks.
        self.processed = 0
        self.dead_letters = 0
        self.aborts = 0
        self.restored = 0
        self.transactions = 0

    # Lifecycle ---------------------------------------------------------------------------------
    @property
    def assigned(self) -> list[int]:
        return sorted(self._stores)

    def run(self, stop_event: threading.Event | None = None) -> None:
        """Process until `stop_event` is set. Raises `LoopFatalError` when the instance must restart."""
        stop = stop_event or threading.Event()
        self._start()
        try:
            while not stop.is_set():
                self._step()
        except KafkaException as exc:
            raise LoopFatalError(f"{self.transactional_id}: {exc.args[0]}") from exc
        finally:
            self._shutdown()

    def _start(self) -> None:
        s = self.settings
        self._producer = make_producer(s, **{"transactional.id": self.transactional_id,
                                             "transaction.timeout.ms": 60_000})
        _retry(self._producer.init_transactions, 30.0)
        self._consumer = make_consumer(s, self.group)  # settings.isolation_level
        self._consumer.subscribe([self.processor.input_topic], on_assign=self._on_assign,
                                 on_revoke=self._on_revoke, on_lost=self._on_revoke)
        log.info("%s started: group %s, input %s", self.transactional_id, self.group, self.processor.input_topic)

    def _shutdown(self) -> None:
        try:
            if self._lagging and self._consumer is not None:
                self._commit_lagging()
        except Exception as exc:  # noqa: BLE001 - the next owner resumes from the store or the group offset
            log.warning("%s: final offsets commit failed: %s", self.transactional_id, exc)
        try:
            if self._consumer is not None:
                self._consumer.close()  # leaves the group (fast rebalance); fires on_revoke
        except Exception as exc:  # noqa: BLE001 - shutting down: report, then release the stores
            log.warning("%s: consumer close failed: %s", self.transactional_id, exc)
        for p in list(self._stores):
            self._release(p)
        if self._producer is not None:
            self._producer.flush(5)
        if self._dispatcher is not None:
            self._dispatcher.flush(5)
        self._producer = self._dispatcher = self._consumer = None  # librdkafka handles close when released
        log.info("%s stopped after %d records (%d dead letters, %d aborts)",
                 self.transactional_id, self.processed, self.dead_letters, self.aborts)

    # The loop ----------------------------------------------------------------------------------
    def _step(self) -> None:
        interval = self.processor.punctuate_interval_ms
        if interval and self._stores and time.monotonic() >= self._next_punctuate:
            self._next_punctuate = time.monotonic() + interval / 1000.0
            self._punctuate()
        batch = self._collect()
        if batch:
            self._process_batch(batch)
        elif self._lagging and time.monotonic() - self._offsets_committed_at >= OFFSETS_LAG_SECONDS:
            self._commit_lagging()

    def _collect(self) -> list[Message]:
        """Step 1: up to batch_max_records, waiting at most batch_max_wait after the first record.

        `Consumer.consume(n, timeout)` blocks for the whole timeout unless n records arrive, which
        would add its timeout to every hop of an idle engine. So: `poll` returns on the first
        record, then `consume(n, 0)` drains only what is already queued. Under load records queue
        up while the previous batch is processed, so batches grow by themselves.
        """
        consumer = self._consumer
        assert consumer is not None
        limit = self.batch_max_records
        interval = self.processor.punctuate_interval_ms
        first = consumer.poll(min(0.1, interval / 1000.0) if interval else 0.1)  # punctuation stays on time
        if first is None:
            return []
        batch = self._checked([first] + consumer.consume(limit - 1, 0))
        deadline = time.monotonic() + self.batch_max_wait_s
        while len(batch) < limit:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            more = consumer.poll(left)
            if more is None:
                break
            batch.extend(self._checked([more] + consumer.consume(limit - len(batch) - 1, 0)))
        return batch

    def _checked(self, msgs: list[Message]) -> list[Message]:
        for m in msgs:
            if m.error() is not None:
                return [m for m in msgs if self._keep(m)]
        return msgs

    def _keep(self, m: Message) -> bool:
        err = m.error()
        if err is None:
            return True
        if err.fatal():
            raise LoopFatalError(f"{self.transactional_id}: consumer error {err}")
        log.warning("%s: consumer error on %s[%s]: %s", self.transactional_id, m.topic(), m.partition(), err)
        return False

    def _process_batch(self, batch: list[Message]) -> None:
        """Steps 2-6 for one batch; an aborted transaction seeks back and the batch is redone."""
        out = self._out
        out.clear()
        firsts: dict[int, int] = {}
        nexts = self._next
        ctxs = self._ctxs
        process = self.processor.process
        for m in batch:
            p = m.partition()
            offset = m.offset()
            expected = nexts.get(p)
            if expected is None or offset < expected:
                continue  # revoked, or fetched before a seek back: not ours to process now
            if p not in firsts:
                firsts[p] = offset
            ctx = ctxs[p]
            record = _in_record(m)
            ctx.now_ms = record.timestamp_ms
            state = ctx.state
            state.mark()
            mark = len(out)
            try:
                process(record, ctx)
            except PoisonRecord as exc:
                state.rollback()
                del out[mark:]
                out.append(self._dead_letter(record, exc.reason))
            nexts[p] = offset + 1
        if not firsts:
            return
        offsets = {p: nexts[p] for p in firsts}
        done = sum(offsets[p] - firsts[p] for p in firsts)
        if not out and time.monotonic() - self._offsets_committed_at < OFFSETS_LAG_SECONDS:
            # Nothing to publish (e.g. a derived fold with no effect): no transaction, which is
            # three broker round trips. The store checkpoint holds the progress; the group offset
            # lags by at most OFFSETS_LAG_SECONDS, and a reader resuming from it reprocesses only
            # records that produced nothing, which (deterministically) produce nothing again.
            self._flush_stores(offsets, {})
            self._lagging.update(offsets)
            self.processed += done
            return
        try:
            self._transact(out, {**self._lagging, **offsets})
        except _Aborted:
            self._rewind(firsts)
            return
        self.processed += done
        self._lagging.clear()
        self._offsets_committed_at = time.monotonic()

    def _commit_lagging(self) -> None:
        """An offsets-only transaction for the quiet batches' progress (see OFFSETS_LAG_SECONDS)."""
        lagging = {p: o for p, o in self._lagging.items() if p in self._stores}
        self._lagging.clear()
        self._offsets_committed_at = time.monotonic()
        if lagging:
            try:
                self._transact([], lagging)
            except _Aborted:
                self._lagging.update(lagging)  # nothing to redo: retried on the next quiet step

    def _dead_letter(self, record: InRecord, reason: str) -> OutRecord:
        log.warning("%s: dead letter %s[%d]@%d: %s", self.processor.name, record.topic, record.partition,
                    record.offset, reason)
        self.dead_letters += 1
        codec = serde()
        value = codec.encode("DeadLetter", {
            "topic": record.topic, "partition": record.partition, "offset": record.offset,
            "key": record.key, "value": record.value, "reason": reason,
            "processor": self.processor.name, "timestamp": record.timestamp_ms})
        return OutRecord(self.settings.dead_letters_topic, record.key, value,
                         tuple(codec.headers("DeadLetter")), timestamp_ms=record.timestamp_ms)

    def _rewind(self, firsts: dict[int, int]) -> None:
        assert self._consumer is not None
        for p, offset in firsts.items():
            if p not in self._stores:
                continue
            self._next[p] = offset
            try:
                self._consumer.seek(TopicPartition(self.processor.input_topic, p, offset))
            except KafkaException as exc:
                log.warning("%s: seek %s[%d]@%d failed (%s); the partition will be reassigned",
                            self.transactional_id, self.processor.input_topic, p, offset, exc)

    # The transaction (steps 3-6) ---------------------------------------------------------------
    def _transact(self, out: Sequence[OutRecord], offsets: dict[int, int] | None) -> None:
        """Produce `out`, commit `offsets` of the input in the transaction, then flush the stores.

        Raises `_Aborted` after an abort (pending state discarded), `LoopFatalError` when fatal."""
        producer = self._producer
        delivered: dict[int, int] = {}
        dispatched = [o for o in out if o.dispatch]
        if dispatched:
            self._dispatch(dispatched)
            out = [o for o in out if not o.dispatch]
        try:
            producer.begin_transaction()
            self._produce(out, delivered)
            while _retry(producer.flush, 30.0):
                pass
            if offsets:
                assert self._consumer is not None
                topic = self.processor.input_topic
                _retry(producer.send_offsets_to_transaction,
                       [TopicPartition(topic, p, o) for p, o in offsets.items()],
                       self._consumer.consumer_group_metadata(), 30.0)
            if dispatched:
                self._await_dispatch(offsets)
            _retry(producer.commit_transaction, 30.0)
            self.transactions += 1
        except KafkaException as exc:
            self._on_txn_error(exc.args[0], offsets)
        self._flush_stores(offsets or {}, delivered)

    def _dispatch(self, out: Sequence[OutRecord]) -> None:
        """Step 3, first part: dispatch records, outside the transaction (OutRecord.dispatch)."""
        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                self._dispatch_error = err

        if self._dispatcher is None:
            # Not idempotent: Tansu slows down with every producer id it hands out, and a retried
            # duplicate is harmless here (readers de-duplicate); one request in flight keeps the
            # order. linger 0: a dispatch record is on somebody's critical path (batches still
            # form under load while a request is in flight).
            self._dispatcher = make_producer(self.settings, **{
                "client.id": f"{self.transactional_id}.dispatch", "linger.ms": 0, "enable.idempotence": False,
                "max.in.flight.requests.per.connection": 1})
        for o in out:
            _produce_one(self._dispatcher, o, on_delivery)
        self._dispatcher.poll(0)

    def _await_dispatch(self, offsets: dict[int, int] | None) -> None:
        """Step 4, second part: every dispatch record is delivered before the input offsets are
        committed, or the batch is aborted and redone (dispatch records included)."""
        while self._dispatcher.flush(30.0):
            pass
        err, self._dispatch_error = self._dispatch_error, None
        if err is not None:
            log.warning("%s: a dispatch record was not delivered (%s)", self.transactional_id, err)
            self._abort(offsets)

    def _produce(self, out: Sequence[OutRecord], delivered: dict[int, int]) -> None:
        changelog = self.processor.changelog_topic
        last: dict[int | None, int] = {}
        if changelog is not None:
            for i, o in enumerate(out):
                if o.topic == changelog:
                    last[o.partition] = i
        tracked = set(last.values())

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                delivered[msg.partition()] = msg.offset() + 1

        producer = self._producer
        for i, o in enumerate(out):
            _produce_one(producer, o, on_delivery if i in tracked else None)

    def _on_txn_error(self, err: KafkaError, offsets: dict[int, int] | None) -> None:
        if err.fatal() or not err.txn_requires_abort():
            raise LoopFatalError(f"{self.transactional_id}: transaction failed: {err}")
        log.warning("%s: aborting transaction (%s) for %s", self.transactional_id, err,
                    ", ".join(f"{self.processor.input_topic}[{p}]@{o}" for p, o in (offsets or {}).items()))
        self._abort(offsets)

    def _abort(self, offsets: dict[int, int] | None) -> None:
        """Abort the open transaction and discard the batch's pending state; raises `_Aborted`."""
        self.aborts += 1
        try:
            _retry(self._producer.abort_transaction, 30.0)
        except KafkaException as exc:
            raise LoopFatalError(f"{self.transactional_id}: abort failed: {exc.args[0]}") from exc
        for p, store in self._stores.items():
            if store.state.dirty or (offsets and p in offsets):
                store.discard()
                self.processor.on_revoked(p)
        raise _Aborted()

    def _flush_stores(self, offsets: dict[int, int], delivered: dict[int, int]) -> None:
        """Step 6: one WriteBatch per touched partition (state + checkpoints)."""
        for p, store in self._stores.items():
            if p in offsets or p in delivered or store.state.dirty:
                store.commit(input_offset=offsets.get(p), changelog_offset=delivered.get(p))

    # Punctuation -------------------------------------------------------------------------------
    def _punctuate(self) -> None:
        out = self._out
        out.clear()
        now = int(time.time() * 1000)
        for p, ctx in list(self._ctxs.items()):
            ctx.now_ms = now
            ctx.state.mark()
            self.processor.punctuate(p, ctx)
        if out or any(s.state.dirty for s in self._stores.values()):
            try:
                self._transact(out, None)
            except _Aborted:
                pass  # punctuation is wall-clock driven: the next interval redoes it

    # Assignment and restore --------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        committed = self._committed([tp.partition for tp in partitions])
        for tp in partitions:
            tp.offset = self._open_and_restore(tp.partition, committed.get(tp.partition))
        consumer.assign(partitions)
        log.info("%s assigned %s", self.transactional_id,
                 ", ".join(f"{tp.topic}[{tp.partition}]@{tp.offset}" for tp in partitions))
        for tp in partitions:
            self._call_on_assigned(tp.partition)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            if tp.partition in self._stores:
                self._release(tp.partition)
        log.info("%s revoked %s", self.transactional_id,
                 ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions))

    def _release(self, p: int) -> None:
        self.processor.on_revoked(p)
        self._lagging.pop(p, None)  # the next owner resumes from the store or the group offset
        self._next.pop(p, None)
        self._ctxs.pop(p, None)
        store = self._stores.pop(p)
        store.close()

    def _committed(self, partitions: list[int]) -> dict[int, int]:
        assert self._consumer is not None
        topic = self.processor.input_topic
        tps = _retry(self._consumer.committed, [TopicPartition(topic, p) for p in partitions], 30.0)
        return {tp.partition: tp.offset for tp in tps if tp.offset >= 0}

    def _open_and_restore(self, p: int, committed: int | None) -> int:
        """Open partition p's store, bring it up to date, return the input offset to resume at."""
        s = self.settings
        store = PartitionStore(s.state_dir, self.processor.name, s.prefix, p)
        self._stores[p] = store
        self._ctxs[p] = _Ctx(p, store.state, self._out)
        started = time.monotonic()
        if self.processor.changelog_topic is not None:
            resume, count = self._restore_changelog(p, store, committed or 0)
        else:
            resume, count = self._restore_input(p, store, committed or 0)
        self._next[p] = resume
        self.restored += count
        log.info("%s restored %s[%d]: %d records in %.2fs, input resumes at %s[%d]@%d", self.transactional_id,
                 self.processor.changelog_topic or self.processor.input_topic, p, count,
                 time.monotonic() - started, self.processor.input_topic, p, resume)
        return resume

    def _restore_changelog(self, p: int, store: PartitionStore, committed: int) -> tuple[int, int]:
        topic = self.processor.changelog_topic
        assert topic is not None
        restore = self.processor.restore
        ctx = _Ctx(p, store.state, [])
        ctx.emit = _no_emit
        resume = max(store.input_offset or 0, committed)
        count = 0
        start = position = store.changelog_offset or 0
        for m, position in self._read(topic, p, start, None):
            record = _in_record(m)
            ctx.now_ms = record.timestamp_ms
            proven = restore(record, ctx)
            if proven is not None and proven + 1 > resume:
                resume = proven + 1
            count += 1
            if count % RESTORE_COMMIT_EVERY == 0:
                store.commit(input_offset=resume, changelog_offset=position)
        store.commit(input_offset=resume, changelog_offset=position)
        return resume, count

    def _restore_input(self, p: int, store: PartitionStore, committed: int) -> tuple[int, int]:
        """No changelog: refold input records [store checkpoint, committed offset) into the state."""
        restore = self.processor.restore
        ctx = _Ctx(p, store.state, [])
        ctx.emit = _no_emit
        start = store.input_offset or 0
        count = 0
        position = start
        if committed > start:
            for m, position in self._read(self.processor.input_topic, p, start, committed):
                record = _in_record(m)
                ctx.now_ms = record.timestamp_ms
                restore(record, ctx)
                count += 1
                if count % RESTORE_COMMIT_EVERY == 0:
                    store.commit(input_offset=position)
        resume = max(start, committed)
        store.commit(input_offset=resume)
        return resume, count

    def _read(self, topic: str, p: int, start: int, stop: int | None) -> Iterator[tuple[Message, int]]:
        """Yield (record, next position) of topic[p] from `start` to `stop` (None: the end offset
        seen in this consumer's fetch responses). A fresh consumer each time: the cached watermark
        of an earlier assignment must not end a restore early."""
        consumer = make_consumer(self.settings, f"{self.group}.restore")  # settings.isolation_level
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
                for m in msgs:
                    if not self._keep(m):
                        continue
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
                    log.warning("%s: restore of %s[%d] stuck at @%d (end %s): an open transaction? "
                                "fencing this slot again", self.transactional_id, topic, p, position, end)
                    self._refence()
                    waited_since = time.monotonic()
        finally:
            consumer.close()

    def _refence(self) -> None:
        """A new producer of this slot's transactional id, `init_transactions` again: aborts a
        transaction of a dead instance that is still open (on Tansu a kill can leave one open
        past our first `init_transactions`, e.g. when the dead instance's last produce reached
        the loaded broker after it; it blocks read_committed readers, this restore among them).
        Only called while no transaction of ours is open (restore runs before any batch)."""
        self._producer = make_producer(self.settings, **{"transactional.id": self.transactional_id,
                                                         "transaction.timeout.ms": 60_000})
        _retry(self._producer.init_transactions, 30.0)

    def _call_on_assigned(self, p: int) -> None:
        ctx = self._ctxs.get(p)
        if ctx is None:
            return
        out = self._out
        out.clear()
        ctx.now_ms = int(time.time() * 1000)
        self.processor.on_assigned(p, ctx)
        if out or ctx.state.dirty:
            try:
                self._transact(list(out), None)
            except _Aborted:
                log.warning("%s: on_assigned outputs of partition %d aborted; they are redone at the next "
                            "assignment", self.transactional_id, p)


# Running a processor as a process --------------------------------------------------------------
def run_forever(settings: Settings, processor: Processor, slot: int = 0, *,
                batch_max_records: int | None = None, batch_max_wait_ms: int | None = None) -> int:
    """Run until SIGTERM/SIGINT (handlers installed when called from the main thread).
    Returns a process exit code: 0 after a clean stop, 1 after a fatal error."""
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    runner = ProcessorRunner(settings, processor, slot, batch_max_records, batch_max_wait_ms)
    try:
        runner.run(stop)
    except LoopFatalError as exc:
        log.error("%s", exc)
        return 1
    return 0


def _parser(description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--bootstrap", help="Kafka bootstrap servers (default: KADENCE_BOOTSTRAP)")
    ap.add_argument("--prefix", help="topic/group/transactional id prefix (default: KADENCE_PREFIX)")
    ap.add_argument("--state-dir", help="RocksDB state folder (default: KADENCE_STATE_DIR)")
    ap.add_argument("--partitions", type=int)
    ap.add_argument("--slot", type=int, default=0, help="stable instance slot: names the transactional id")
    ap.add_argument("--batch-max-records", type=int)
    ap.add_argument("--batch-max-wait-ms", type=int)
    ap.add_argument("--session-timeout-ms", type=int)
    ap.add_argument("--heartbeat-interval-ms", type=int)
    ap.add_argument("--log-level", default=os.environ.get("KADENCE_LOG_LEVEL", "INFO"))
    return ap


def processor_main(make_processor: Callable[[Settings], Processor], argv: Sequence[str] | None = None, *,
                   prepare: Callable[[Settings], None] | None = None, description: str = "") -> int:
    """`main` of a processor module: parse the standard options, `prepare` (e.g. create topics),
    run until SIGTERM. Use as `sys.exit(processor_main(MyProcessor))`."""
    args = _parser(description).parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    keys = ("bootstrap", "prefix", "state_dir", "partitions", "session_timeout_ms", "heartbeat_interval_ms")
    settings = Settings.from_env(**{k: getattr(args, k) for k in keys if getattr(args, k) is not None})
    if prepare is not None:
        prepare(settings)
    return run_forever(settings, make_processor(settings), args.slot,
                       batch_max_records=args.batch_max_records, batch_max_wait_ms=args.batch_max_wait_ms)


def spawn(module: str, settings: Settings, slot: int = 0, *, batch_max_records: int | None = None,
          batch_max_wait_ms: int | None = None, **popen: Any) -> subprocess.Popen:
    """Start `python -m module` (a module whose main is `processor_main`) for `settings` and `slot`."""
    cmd = [sys.executable, "-m", module, "--bootstrap", settings.bootstrap, "--prefix", settings.prefix,
           "--state-dir", settings.state_dir, "--partitions", str(settings.partitions), "--slot", str(slot),
           "--session-timeout-ms", str(settings.session_timeout_ms),
           "--heartbeat-interval-ms", str(settings.heartbeat_interval_ms)]
    if batch_max_records is not None:
        cmd += ["--batch-max-records", str(batch_max_records)]
    if batch_max_wait_ms is not None:
        cmd += ["--batch-max-wait-ms", str(batch_max_wait_ms)]
    # Every other setting (fetch wait, linger, batch sizes...) travels as KADENCE_* variables.
    popen["env"] = {**(popen.get("env") or os.environ), **settings.to_env()}
    return subprocess.Popen(cmd, **popen)


__all__ = ["ProcessorRunner", "LoopFatalError", "run_forever", "processor_main", "spawn"]
