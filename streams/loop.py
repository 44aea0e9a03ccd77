"""The exactly-once (in effect) processing loop: Kafka transactions + RocksDB partition stores.

One `ProcessorRunner` runs one `Processor` (see `streams.processing`) as one member of the consumer
group `settings.group(processor.name)`, with the stable transactional id
`settings.transactional_id(processor.name, slot)`. This module holds the batch loop and decides
what each batch commits; the other parts of the loop live beside it:
- `streams.transaction`: steps 0 and 3-5, the slot's producers and its Kafka transaction;
- `streams.restore`: restore of a partition's store on assignment;
- `streams.errors`: `LoopFatalError`, retries of retriable Kafka errors;
- `streams.launch`: a processor as a process (`run_forever`, `processor_main`, `spawn`).

The batch protocol (docs/processing-loop.md)
--------------------------------------------
0. Start: `init_transactions()` once. This fences a zombie of the same slot and, on Tansu, unblocks
   read_committed readers that a killed instance of this slot left behind.
1. Consume a batch of `processor.input_topic` (`settings.isolation_level`, read_committed by
   default; no auto commit) of up to `batch_max_records`, waiting at most `batch_max_wait_ms`
   after its first record.
2. Process each record in offset order: `processor.process(record, ctx)` with `ctx.now_ms` = the
   record's timestamp. State writes go to the partition's overlay (nothing touches RocksDB);
   `ctx.emit` queues outputs. A `PoisonRecord` rolls back that record's state writes and
   outputs (overlay savepoint) and queues a `DeadLetter` record instead.
3. Dispatch outputs (`OutRecord.dispatch`: tasks for workers) go first, through a second
   producer outside the transaction. Then `begin_transaction`, produce the other outputs and dead
   letters, `flush`.
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
  TxnOffsetCommit and EndTxn (measured: 4.2 ms median on the 2-core machine, docs/deviations.md 19).
- during 3-5 (transaction open or aborted): some prefix of the batch's records per partition may
  be in the log (Tansu shows aborted records to read_committed readers). Outputs are a
  deterministic function of input + state (`streams.processing`), so a leaked record is
  byte-identical to the one the redo produces: readers drop it by its id. On restore the
  changelog, leaked records included, is applied idempotently and input resumes after the highest
  input offset it proves processed, so the state never counts a record twice and never misses one
  it shows.
- after 5, before 6: the store is behind; restore replays the changelog from the store's changelog
  checkpoint and resumes input after the last applied offset (it is never earlier than the
  committed group offset).
- during 6: one WriteBatch is atomic, state and checkpoint cannot disagree.
Step 3 flushes before step 4, so committed (or leaked) offsets never cover records that were not
written: resuming at the group's committed offset is safe as well.

An aborted transaction (`TransactionAborted`) discards the batch's pending state, calls
`processor.on_revoked(p)` for its partitions, seeks back to the batch's first offsets and redoes
it; `LoopFatalError` leaves `run` (the process supervisor restarts the instance).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Sequence
from typing import Any, cast

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from . import metrics
from .clients import make_consumer
from .dead_letters import dead_letter_record
from .errors import LoopFatalError, TransactionAborted, is_infrastructure, record_caused, usable
from .failed_inputs import FailedInputs
from .group_watch import GroupWatch
from .processing import (
    ConsumedMessage,
    InRecord,
    OutRecord,
    PartitionContext,
    PoisonRecord,
    Processor,
    in_record,
)
from .restore import PartitionReader, committed_offsets, restore_partition
from .serde import serde
from .settings import MAX_MESSAGE_BYTES, Settings
from .store import PartitionStore
from .transaction import Transactions

log = logging.getLogger(__name__)

#: A batch with no outputs commits no transaction: its progress is in the store checkpoint, and
#: the group offset follows in an offsets-only transaction at most this much later.
OFFSETS_LAG_SECONDS = 1.0
#: The largest output the loop hands to a producer: key + value + headers, less the record's own
#: overhead that librdkafka counts against `message.max.bytes`. A record whose processing emits a
#: larger one is dead-lettered (its batch would fail on every retry).
MAX_OUTPUT_BYTES = MAX_MESSAGE_BYTES - 4096


#: Kafka's rule for topic names; an output to another name would wait in the producer until its
#: delivery times out, then fail its batch on every retry.
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
_valid_topics: set[str] = set()


def output_problem(o: OutRecord) -> str | None:
    """Why `o` cannot be produced (no valid topic name, or bigger than MAX_OUTPUT_BYTES), or None."""
    if o.topic not in _valid_topics:
        if not _TOPIC_NAME.fullmatch(o.topic):
            return f"an output record names {o.topic[:300]!r}, which is not a valid Kafka topic name"
        _valid_topics.add(o.topic)
    size = len(o.value) + len(o.key or b"") + sum(len(k) + len(v) for k, v in o.headers)
    if size <= MAX_OUTPUT_BYTES:
        return None
    return (
        f"an output record for {o.topic} would be {size} bytes, more than the largest record the engine "
        f"produces ({MAX_OUTPUT_BYTES} bytes; MAX_MESSAGE_BYTES = {MAX_MESSAGE_BYTES})"
    )


#: On a broker whose read_committed fetch can skip the records of a transaction still open before a
#: later record (Tansu: docs/deviations.md 15), a gap of two or more offsets in an input partition
#: is re-read until it has stood this long: a transaction's markers leave gaps too, but records the
#: consumer skipped come in on a re-read once their transaction commits.
GAP_CONFIRM_SECONDS = 0.3


def _skips_open_transactions(consumer: Consumer) -> bool:
    """Whether the broker is the embedded Tansu (its cluster id), whose fetches can skip the
    records of an open transaction (docs/deviations.md 15)."""
    try:
        cluster_id = consumer.list_topics(timeout=10).cluster_id or ""
    except KafkaException:
        return False
    return cluster_id.startswith("tansu")


class ProcessorRunner:
    """Runs one processor instance (one group member, one transactional id) until stopped."""

    #: The slot's producers and transaction (a subclass may hook steps 3-5 by subclassing it).
    transactions_class: type[Transactions] = Transactions

    def __init__(
        self,
        settings: Settings,
        processor: Processor,
        slot: int = 0,
        batch_max_records: int | None = None,
        batch_max_wait_ms: int | None = None,
    ) -> None:
        self.settings = settings
        self.processor = processor
        self.slot = slot
        self.batch_max_records = batch_max_records or settings.batch_max_records
        wait_ms = settings.batch_max_wait_ms if batch_max_wait_ms is None else batch_max_wait_ms
        self.batch_max_wait_s = wait_ms / 1000.0
        self.group = settings.group(processor.name)
        self.transactional_id = settings.transactional_id(processor.name, slot)
        self.txn = self.transactions_class(
            settings, self.transactional_id, processor.input_topic, processor.changelog_topic
        )
        # A restore stuck behind a dead instance's open transaction fences the slot again.
        self._restore_reader = PartitionReader(
            settings, f"{self.group}.restore", self.transactional_id, on_stuck=self.txn.refence
        )
        self._stores: dict[int, PartitionStore] = {}
        #: Inputs that stopped an instance, counted across restarts (streams.failed_inputs).
        self.failed_inputs = FailedInputs(settings.state_dir, f"{settings.prefix}{processor.name}")
        self._ctxs: dict[int, PartitionContext] = {}
        #: partition -> the next input offset to process (records below it are dropped: a seek back)
        self._next: dict[int, int] = {}
        #: Partitions sought back by an abort whose redo has not delivered a record yet: the
        #: consumer's position may still be the one from before the seek, so it says nothing about
        #: what lies between (see _pass_control_records).
        self._rewound: set[int] = set()
        #: partition -> (next offset expected, offset seen after a gap, when first seen): gaps being
        #: confirmed on a broker that can skip open transactions' records (GAP_CONFIRM_SECONDS).
        self._gaps: dict[int, tuple[int, int, float]] = {}
        self._verify_gaps = False
        #: Re-reads of an input gap (a broker that can skip open transactions' records).
        self.gap_rereads = 0
        self._out: list[OutRecord] = []
        self._consumer: Consumer | None = None
        self._next_punctuate = 0.0
        #: partition -> next input offset processed but not yet committed to the group (quiet batches)
        self._lagging: dict[int, int] = {}
        self._offsets_committed_at = 0.0
        #: Notices an input consumer that stays out of its group (streams.group_watch).
        self.group_watch = GroupWatch()
        #: Counters for logs, tests and benchmarks (transactions and aborts: see `txn`).
        self.processed = 0
        self.dead_letters = 0
        self.restored = 0
        # Prometheus children bound once (streams.metrics): the hooks below are one call each.
        name = processor.name
        self._m_batch = metrics.BATCH_SIZE.labels(name)
        self._m_processed = metrics.RECORDS_PROCESSED.labels(name)
        self._m_commit = metrics.TRANSACTION_COMMIT_LATENCY.labels(name)
        self._m_aborts = metrics.TRANSACTION_ABORTS.labels(name)
        self._m_dead = metrics.DEAD_LETTERS.labels(name)
        self._m_lag: dict[int, Any] = {}
        self._lag_at = 0.0

    @property
    def transactions(self) -> int:
        """Transactions committed."""
        return self.txn.transactions

    @property
    def aborts(self) -> int:
        """Transactions aborted."""
        return self.txn.aborts

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
        self.txn.start()
        # settings.isolation_level; every assignment sets its offset, so an out-of-range one (records
        # deleted by retention) raises LogStartMovedError (errors.usable) instead of jumping to earliest
        self._consumer = make_consumer(
            self.settings,
            self.group,
            **{"auto.offset.reset": "error", **self.group_watch.consumer_config()},
        )
        self.group_watch.reset()
        self._verify_gaps = _skips_open_transactions(self._consumer)
        self._consumer.subscribe(
            [self.processor.input_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        log.info(
            "%s started: group %s, input %s", self.transactional_id, self.group, self.processor.input_topic
        )

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
        self.txn.close()
        self._consumer = None  # librdkafka handles close when released
        log.info(
            "%s stopped after %d records (%d dead letters, %d aborts)",
            self.transactional_id,
            self.processed,
            self.dead_letters,
            self.aborts,
        )

    def _check_group(self) -> None:
        down = self.group_watch.stuck()
        if down is not None:
            raise LoopFatalError(
                f"{self.transactional_id}: the input consumer has not been a member of group {self.group} "
                f"for {down:.0f}s (librdkafka group state {self.group_watch.state!r}); restarting the instance"
            )

    # The loop ----------------------------------------------------------------------------------
    def _step(self) -> None:
        interval = self.processor.punctuate_interval_ms
        if interval and self._stores and time.monotonic() >= self._next_punctuate:
            self._next_punctuate = time.monotonic() + interval / 1000.0
            self._punctuate()
        if time.monotonic() >= self._lag_at:
            self._lag_at = time.monotonic() + metrics.LAG_INTERVAL_S
            assert self._consumer is not None
            metrics.update_lag(
                self._consumer, self.processor.input_topic, self._next, self._m_lag, self.processor.name
            )
        batch = self._collect()
        if batch:
            try:
                self._process_batch(batch)
            except Exception as exc:
                self._note_failed_batch(batch, exc)
                raise
            return
        self._pass_control_records()
        if self._lagging and time.monotonic() - self._offsets_committed_at >= OFFSETS_LAG_SECONDS:
            self._commit_lagging()
        self._check_group()

    def _pass_control_records(self) -> None:
        """Idle: where the consumer's position is past the next offset to process, only records the
        consumer skips lie between (Apache Kafka's transaction markers, aborted records): count them
        processed, as Kafka Streams does. Otherwise the committed offset stays before the marker
        that ends the input's last transaction, and once retention deletes it (a partition idle for
        longer than the topic's retention) the resume offset is out of range (LogStartMovedError)."""
        assert self._consumer is not None
        nexts = self._next
        topic = self.processor.input_topic
        for tp in self._consumer.position([TopicPartition(topic, p) for p in self._stores]):
            if tp.partition in self._rewound:
                continue  # the position may predate the seek back: the records in between are unread
            expected = nexts.get(tp.partition)
            if expected is not None and tp.offset > expected:
                nexts[tp.partition] = tp.offset
                self._stores[tp.partition].commit(input_offset=tp.offset)
                self._lagging[tp.partition] = tp.offset

    def _collect(self) -> list[ConsumedMessage]:
        """Step 1: up to batch_max_records, waiting at most batch_max_wait after the first record.

        `Consumer.consume(n, timeout)` blocks for the whole timeout unless n records arrive, which
        would add its timeout to every hop of an idle engine. So: `poll` returns on the first
        record, then `consume(n, 0)` drains only what is already queued. Under load records queue
        up while the previous batch is processed, so batches grow by themselves.
        """
        consumer = self._consumer
        assert consumer is not None
        interval = self.processor.punctuate_interval_ms
        first = consumer.poll(min(0.1, interval / 1000.0) if interval else 0.1)  # punctuation stays on time
        if first is None:
            return []
        # after the poll: an assignment (it runs inside poll) may have found inputs that stopped an
        # instance, which are then processed one record per batch (streams.failed_inputs)
        limit = 1 if self.failed_inputs.isolating else self.batch_max_records
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

    def _checked(self, msgs: list[Message]) -> list[ConsumedMessage]:
        """`msgs` without those that carry a consumer error (`errors.usable`)."""
        for m in msgs:
            if m.error() is not None:
                return cast(list[ConsumedMessage], [m for m in msgs if usable(m, self.transactional_id)])
        return cast(list[ConsumedMessage], msgs)

    def _process_batch(self, batch: list[ConsumedMessage]) -> None:
        """Steps 2-6 for one batch; an aborted transaction seeks back and the batch is redone."""
        out = self._out
        out.clear()
        firsts: dict[int, int] = {}
        nexts = self._next
        ctxs = self._ctxs
        process = self.processor.process
        deferred: set[int] = set()
        for m in batch:
            p = m.partition()
            offset = m.offset()
            expected = nexts.get(p)
            if expected is None or offset < expected or p in deferred:
                continue  # revoked, or fetched before a seek back: not ours to process now
            if self._verify_gaps and offset - expected >= 2 and not self._gap_confirmed(p, expected, offset):
                deferred.add(p)  # re-read from `expected`: records the fetch skipped may come in
                continue
            if p not in firsts:
                firsts[p] = offset
                self._rewound.discard(p)
            ctx = ctxs[p]
            record = in_record(m)
            ctx.now_ms = record.timestamp_ms
            state = ctx.state
            state.mark()
            mark = len(out)
            try:
                set_aside = self.failed_inputs.set_aside(p, offset) if self.failed_inputs.isolating else None
                if set_aside is not None:
                    raise PoisonRecord(set_aside)
                process(record, ctx)
                for o in out[mark:]:
                    too_large = output_problem(o)
                    if too_large is not None:
                        raise PoisonRecord(too_large)
            except PoisonRecord as exc:
                state.rollback()
                del out[mark:]
                out.append(self._dead_letter(record, exc.reason))
            except Exception as exc:
                if is_infrastructure(exc):
                    raise
                # Processing is deterministic: an error on this record recurs on every retry. Its
                # writes are undone and the processor's caches of the partition dropped.
                log.exception("%s: processing %s[%d]@%d failed", self.processor.name, record.topic, p, offset)
                state.rollback()
                del out[mark:]
                self.processor.on_revoked(p)
                out.append(self._dead_letter(record, f"{self.processor.name} failed on this record: {exc!r}"))
            nexts[p] = offset + 1
        if deferred:
            self._reread(deferred)
        if not firsts:
            return
        offsets = {p: nexts[p] for p in firsts}
        done = sum(offsets[p] - firsts[p] for p in firsts)
        self._m_batch.observe(len(batch))
        self._m_processed.inc(done)
        if not out and time.monotonic() - self._offsets_committed_at < OFFSETS_LAG_SECONDS:
            # Nothing to publish (e.g. a derived fold with no effect): no transaction, which is
            # three broker round trips. The store checkpoint holds the progress; the group offset
            # lags by at most OFFSETS_LAG_SECONDS, and a reader resuming from it reprocesses only
            # records that produced nothing, which (deterministically) produce nothing again.
            self._flush_stores(offsets, {})
            self._lagging.update(offsets)
            self.processed += done
            self._passed(offsets)
            return
        try:
            self._transact(out, {**self._lagging, **offsets})
        except TransactionAborted as exc:
            if record_caused(exc):  # redone one record at a time; the culprit is set aside
                spans = {p: (first, offsets[p] - 1) for p, first in firsts.items()}
                self.failed_inputs.record(spans, f"transaction aborted: {exc.args[0]}")
            self._rewind(firsts)
            return
        self.processed += done
        self._passed(offsets)
        self._lagging.clear()
        self._offsets_committed_at = time.monotonic()

    def _gap_confirmed(self, p: int, expected: int, offset: int) -> bool:
        """True once the gap [expected, offset) of partition p has stood GAP_CONFIRM_SECONDS."""
        now = time.monotonic()
        seen = self._gaps.get(p)
        if seen is None or seen[:2] != (expected, offset):
            self._gaps[p] = (expected, offset, now)
            return False
        if now - seen[2] < GAP_CONFIRM_SECONDS:
            return False
        del self._gaps[p]
        log.debug("%s: gap %s[%d]@%d..%d confirmed (markers)", self.transactional_id,
                  self.processor.input_topic, p, expected, offset - 1)  # fmt: skip
        return True

    def _reread(self, partitions: set[int]) -> None:
        """Seek `partitions` back to their next offset to process (a gap to confirm)."""
        assert self._consumer is not None
        self.gap_rereads += len(partitions)
        for p in partitions:
            self._rewound.add(p)
            self._consumer.seek(TopicPartition(self.processor.input_topic, p, self._next[p]))
        time.sleep(0.01)  # a re-read right away would mostly fetch the same answer

    def _passed(self, offsets: dict[int, int]) -> None:
        if self.failed_inputs.isolating:
            for p, offset in offsets.items():
                self.failed_inputs.passed(p, offset)

    def _note_failed_batch(self, batch: list[ConsumedMessage], exc: Exception) -> None:
        """A batch leaves with an error that stops the instance: when a record caused it, count the
        attempt where the next instance sees it (streams.failed_inputs)."""
        if not record_caused(exc):
            return
        spans: dict[int, tuple[int, int]] = {}
        for m in batch:
            p, offset = m.partition(), m.offset()
            first, last = spans.get(p, (offset, offset))
            spans[p] = (min(first, offset), max(last, offset))
        try:
            self.failed_inputs.record(spans, f"{type(exc).__name__}: {exc}")
        except OSError as err:
            log.error("%s: could not record the failed input: %s", self.transactional_id, err)

    def _commit_lagging(self) -> None:
        """An offsets-only transaction for the quiet batches' progress (see OFFSETS_LAG_SECONDS)."""
        lagging = {p: o for p, o in self._lagging.items() if p in self._stores}
        self._lagging.clear()
        self._offsets_committed_at = time.monotonic()
        if lagging:
            try:
                self._transact([], lagging)
            except TransactionAborted:
                self._lagging.update(lagging)  # nothing to redo: retried on the next quiet step

    def _dead_letter(self, record: InRecord, reason: str) -> OutRecord:
        log.warning(
            "%s: dead letter %s[%d]@%d: %s",
            self.processor.name,
            record.topic,
            record.partition,
            record.offset,
            reason,
        )
        self.dead_letters += 1
        self._m_dead.inc()
        codec = serde()
        letter = dead_letter_record(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            reason=reason,
            processor=self.processor.name,
            timestamp=record.timestamp_ms,
        )
        encoded = codec.encode("DeadLetter", letter)
        return OutRecord(
            self.settings.dead_letters_topic,
            letter["key"],
            encoded,
            tuple(codec.headers("DeadLetter")),
            timestamp_ms=record.timestamp_ms,
        )

    def _rewind(self, firsts: dict[int, int]) -> None:
        assert self._consumer is not None
        for p, offset in firsts.items():
            if p not in self._stores:
                continue
            self._next[p] = offset
            self._rewound.add(p)
            try:
                self._consumer.seek(TopicPartition(self.processor.input_topic, p, offset))
            except KafkaException as exc:
                # Without the seek the batch would never be redone (its records are behind the
                # consumer): restart the instance, which resumes from its checkpoint instead.
                raise LoopFatalError(
                    f"{self.transactional_id}: seek back to {self.processor.input_topic}[{p}]@{offset} after "
                    f"an aborted transaction failed ({exc}); restarting the instance"
                ) from exc

    # Committing (steps 3-6) --------------------------------------------------------------------
    def _transact(self, out: Sequence[OutRecord], offsets: dict[int, int] | None) -> None:
        """Produce `out`, commit `offsets` of the input in the transaction, then flush the stores.

        Raises `TransactionAborted` after an abort (the pending state of the batch's partitions
        discarded), `LoopFatalError` when fatal."""
        started = time.perf_counter()
        try:
            delivered = self.txn.commit(out, offsets, self._group_metadata)
        except TransactionAborted:
            self._m_aborts.inc()
            self._discard(offsets)
            raise
        self._m_commit.observe(time.perf_counter() - started)
        self._flush_stores(offsets or {}, delivered)

    def _group_metadata(self) -> Any:
        assert self._consumer is not None
        return self._consumer.consumer_group_metadata()

    def _discard(self, offsets: dict[int, int] | None) -> None:
        """After an abort: drop the pending state of the partitions the transaction covered."""
        for p, store in self._stores.items():
            if store.state.dirty or (offsets and p in offsets):
                store.discard()
                self.processor.on_revoked(p)

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
        self._drop_oversized(out, "punctuate")
        if out or any(s.state.dirty for s in self._stores.values()):
            with contextlib.suppress(TransactionAborted):  # wall-clock driven: the next interval redoes it
                self._transact(out, None)

    def _drop_oversized(self, out: list[OutRecord], where: str) -> None:
        """Outputs made outside `process` (no input record to dead-letter) that no producer could
        send are left out, with an error: one would otherwise stop the instance at every try."""
        keep = []
        for o in out:
            too_large = output_problem(o)
            if too_large is None:
                keep.append(o)
            else:
                log.error("%s: %s: not sent: %s", self.transactional_id, where, too_large)
        out[:] = keep

    # Assignment (restore: streams.restore) -----------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        committed = committed_offsets(
            consumer, self.processor.input_topic, [tp.partition for tp in partitions]
        )
        for tp in partitions:
            tp.offset = self._open_and_restore(tp.partition, committed.get(tp.partition))
        consumer.assign(partitions)
        log.info(
            "%s assigned %s",
            self.transactional_id,
            ", ".join(f"{tp.topic}[{tp.partition}]@{tp.offset}" for tp in partitions),
        )
        for tp in partitions:
            self._call_on_assigned(tp.partition)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            if tp.partition in self._stores:
                self._release(tp.partition)
        log.info(
            "%s revoked %s",
            self.transactional_id,
            ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions),
        )

    def _release(self, p: int) -> None:
        self.processor.on_revoked(p)
        metrics.forget_lag(self.processor.input_topic, (p,), self._m_lag, self.processor.name)
        self._lagging.pop(p, None)  # the next owner resumes from the store or the group offset
        self._next.pop(p, None)
        self._rewound.discard(p)
        self._gaps.pop(p, None)
        self._ctxs.pop(p, None)
        self.failed_inputs.forget(p)
        store = self._stores.pop(p)
        store.close()

    def _open_and_restore(self, p: int, committed: int | None) -> int:
        """Open partition p's store, bring it up to date, return the input offset to resume at."""
        s = self.settings
        store = PartitionStore(s.state_dir, self.processor.name, s.prefix, p)
        self._stores[p] = store
        self._ctxs[p] = PartitionContext(p, store.state, self._out)
        started = time.monotonic()
        resume, count = restore_partition(self.processor, store, p, committed, self._restore_reader)
        self._next[p] = resume
        self.failed_inputs.load(p)
        self.restored += count
        log.info(
            "%s restored %s[%d]: %d records in %.2fs, input resumes at %s[%d]@%d",
            self.transactional_id,
            self.processor.changelog_topic or self.processor.input_topic,
            p,
            count,
            time.monotonic() - started,
            self.processor.input_topic,
            p,
            resume,
        )
        return resume

    def _call_on_assigned(self, p: int) -> None:
        ctx = self._ctxs.get(p)
        if ctx is None:
            return
        out = self._out
        out.clear()
        ctx.now_ms = int(time.time() * 1000)
        self.processor.on_assigned(p, ctx)
        self._drop_oversized(out, "on_assigned")
        if out or ctx.state.dirty:
            try:
                self._transact(list(out), None)
            except TransactionAborted:
                log.warning(
                    "%s: on_assigned outputs of partition %d aborted; they are redone at the next assignment",
                    self.transactional_id,
                    p,
                )


__all__ = ["ProcessorRunner", "OFFSETS_LAG_SECONDS"]
