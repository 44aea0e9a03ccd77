"""Steps 3-5 of the batch protocol (docs/processing-loop.md): one slot's producers and its Kafka
transaction. `ProcessorRunner` (streams.loop) decides what to commit; `Transactions` publishes it.

- Dispatch outputs (`OutRecord.dispatch`: tasks for workers) go first, through a second producer
  outside the transaction (not idempotent, see `dispatch`).
- If the previous commit was less than `Settings.txn_settle_ms` ago, wait for the rest of it
  (Apache Kafka refuses a transaction that adds partitions before that commit's markers are
  written, and librdkafka retries it only 20 ms later: docs/brokers.md §3).
- `begin_transaction`; the other outputs and dead letters are produced (a delivery callback only
  on the last changelog record of each partition: its offset + 1 is the next changelog
  checkpoint); `flush`.
- `send_offsets_to_transaction(next input offsets, group metadata)`; the dispatch producer is
  flushed: a dispatch record that failed to deliver aborts the batch (the runner redoes it,
  dispatch included).
- `commit_transaction`.
Step 6 (the RocksDB WriteBatch per partition) is the runner's, with the changelog positions
`commit` returns.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from .clients import make_producer
from .errors import LoopFatalError, TransactionAborted, retry
from .processing import ConsumedMessage, OutRecord
from .settings import Settings

log = logging.getLogger(__name__)

#: Timeout of one `send_offsets_to_transaction` call (it is retried while retriable, up to
#: errors.RETRY_SECONDS), and how much longer than that a call may block before the instance gives
#: up on its producer. librdkafka (2.16 included) can block in that call forever, past its timeout,
#: when the group coordinator went away during the call: confluentinc/librdkafka#5456 (the
#: coordinator request's timeout is never checked) and #5511. Seen on every restart of a
#: single-node Apache Kafka under load (tests/test_kafka_only_failover.py): the processor stopped
#: for good, with nothing in its log. Past the grace the call raises `LoopFatalError`: the
#: supervisor restarts the instance, whose fresh producer fences the stuck one.
SEND_OFFSETS_TIMEOUT_S = 10.0
HUNG_CALL_GRACE_S = 5.0


class _Bounded:
    """Runs a blocking librdkafka call on a helper thread (daemon, made at the first call) and
    waits for it at most `limit` seconds: a call that hangs past its own timeout (a librdkafka
    bug) becomes a `LoopFatalError` instead of a processor that stops silently. The helper thread
    of a hung call stays blocked; the instance is to be restarted anyway."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _serve(jobs: queue.SimpleQueue[Callable[[], None] | None]) -> None:
        while (job := jobs.get()) is not None:
            job()

    def close(self) -> None:
        """End the helper thread once the calls before are done (a hung one keeps it, as above).
        A later call starts a new thread with a queue of its own."""
        if self._thread is not None:
            self._jobs.put(None)
            self._jobs = queue.SimpleQueue()
            self._thread = None

    def call(self, limit: float, fn: Callable[..., Any], *args: Any) -> Any:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._serve, args=(self._jobs,), name=self.name, daemon=True
            )
            self._thread.start()
        done = threading.Event()
        box: dict[str, Any] = {}

        def job() -> None:
            try:
                box["value"] = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                box["error"] = exc
            finally:
                done.set()

        self._jobs.put(job)
        if not done.wait(limit):
            raise LoopFatalError(
                f"{self.name}: {getattr(fn, '__name__', fn)} did not return within {limit:.1f}s although its "
                "timeout is shorter (librdkafka confluentinc/librdkafka#5456, #5511: the group coordinator "
                "went away during the call); restarting the instance"
            )
        if "error" in box:
            raise box["error"]
        return box.get("value")


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


class Transactions:
    """The transactional producer of one slot (`transactional_id`) and its dispatch producer."""

    def __init__(
        self, settings: Settings, transactional_id: str, input_topic: str, changelog_topic: str | None
    ) -> None:
        self.settings = settings
        self.transactional_id = transactional_id
        #: The topic whose offsets `commit` sends to the transaction.
        self.input_topic = input_topic
        #: The topic whose delivered positions `commit` returns (None: no changelog).
        self.changelog_topic = changelog_topic
        self._producer: Any = None
        self._dispatcher: Any = None  # the producer of dispatch records, made at the first one
        self._dispatch_error: KafkaError | None = None
        self._bounded = _Bounded(f"{transactional_id}.send-offsets")
        #: time.monotonic() before which the next transaction does not produce (Settings.txn_settle_ms).
        self._settled_at = 0.0
        #: Counters for logs, tests and benchmarks.
        self.transactions = 0
        self.aborts = 0
        #: Transactions that waited for the previous commit to settle, and the seconds they waited.
        self.settle_waits = 0
        self.settle_wait_s = 0.0

    def start(self) -> None:
        """Step 0: a producer with the slot's transactional id, then `init_transactions`. This
        fences a zombie of the same slot and, on Tansu, unblocks read_committed readers that a
        killed instance of this slot left behind."""
        # 60 s unless `Settings.kafka_config` sets transaction.timeout.ms: on Apache Kafka it bounds how
        # long read_committed readers wait behind a transaction a killed instance left open
        # (the broker aborts it then), so a deployment may well lower it.
        timeout = self.settings.kafka_config.get("transaction.timeout.ms", 60_000)
        self._producer = make_producer(
            self.settings, **{"transactional.id": self.transactional_id, "transaction.timeout.ms": timeout}
        )
        retry(self._producer.init_transactions, 30.0)

    def refence(self) -> None:
        """`start` again: aborts a transaction of a dead instance that is still open (on Tansu a
        kill can leave one open past our first `init_transactions`, e.g. when the dead instance's
        last produce reached the loaded broker after it; it blocks read_committed readers, a
        restore among them). Only while no transaction of ours is open (restore runs before any
        batch)."""
        self.start()

    def close(self) -> None:
        """Flush both producers (5 s at most each) and release them."""
        if self._producer is not None:
            self._producer.flush(5)
        if self._dispatcher is not None:
            self._dispatcher.flush(5)
        self._producer = self._dispatcher = None  # librdkafka handles close when released
        self._bounded.close()

    def commit(
        self, out: Sequence[OutRecord], offsets: dict[int, int] | None, group_metadata: Callable[[], Any]
    ) -> dict[int, int]:
        """Steps 3-5: produce `out`, commit the next input `offsets` (partition -> offset; None or
        empty: none) in the transaction with `group_metadata()` (the input consumer's).

        Returns changelog partition -> next changelog offset, for the partitions `out` wrote to.
        Raises `TransactionAborted` after an abort, `LoopFatalError` when fatal."""
        producer = self._producer
        delivered: dict[int, int] = {}
        dispatched = [o for o in out if o.dispatch]
        if dispatched:
            self.dispatch(dispatched)
            out = [o for o in out if not o.dispatch]
        self._settle()
        try:
            producer.begin_transaction()
            self._produce(out, delivered)
            while retry(producer.flush, 30.0):
                pass
            if offsets:
                topic = self.input_topic
                retry(
                    self._bounded.call,
                    SEND_OFFSETS_TIMEOUT_S + HUNG_CALL_GRACE_S,
                    producer.send_offsets_to_transaction,
                    [TopicPartition(topic, p, o) for p, o in offsets.items()],
                    group_metadata(),
                    SEND_OFFSETS_TIMEOUT_S,
                )
            if dispatched:
                self.await_dispatch()
            retry(producer.commit_transaction, 30.0)
            self.transactions += 1
            if self.settings.txn_settle_ms:
                self._settled_at = time.monotonic() + self.settings.txn_settle_ms / 1000
        except KafkaException as exc:
            self._on_error(exc.args[0], offsets)
        return delivered

    def _settle(self) -> None:
        """Wait until `Settings.txn_settle_ms` after the previous commit. Dispatch records have
        left already: only the transaction waits. On Apache Kafka a transaction that adds a
        partition while the previous commit's markers are still being written is refused
        (CONCURRENT_TRANSACTIONS) and librdkafka retries it 20 ms later (docs/brokers.md §3)."""
        wait = self._settled_at - time.monotonic()
        if wait > 0:
            time.sleep(wait)
            self.settle_waits += 1
            self.settle_wait_s += wait

    def dispatch(self, out: Sequence[OutRecord]) -> None:
        """Step 3, first part: dispatch records, outside the transaction (OutRecord.dispatch)."""
        if self._dispatcher is None:
            # Not idempotent: Tansu slows down with every producer id it hands out, and a retried
            # duplicate is harmless here (readers de-duplicate); one request in flight keeps the
            # order. linger 0: a dispatch record is on somebody's critical path (batches still
            # form under load while a request is in flight).
            self._dispatcher = make_producer(
                self.settings,
                **{
                    "client.id": f"{self.transactional_id}.dispatch",
                    "linger.ms": 0,
                    "enable.idempotence": False,
                    "max.in.flight.requests.per.connection": 1,
                },
            )
        on_delivery = self.dispatch_delivered
        for o in out:
            _produce_one(self._dispatcher, o, on_delivery)
        self._dispatcher.poll(0)

    def dispatch_delivered(self, err: KafkaError | None, _msg: Message | None) -> None:
        """Delivery report of a dispatch record: a failure aborts the batch in `await_dispatch`."""
        if err is not None:
            self._dispatch_error = err

    def await_dispatch(self) -> None:
        """Step 4, second part: every dispatch record is delivered before the input offsets are
        committed, or the batch is aborted and redone (dispatch records included)."""
        while self._dispatcher.flush(30.0):
            pass
        err, self._dispatch_error = self._dispatch_error, None
        if err is not None:
            log.warning("%s: a dispatch record was not delivered (%s)", self.transactional_id, err)
            self._abort(err)

    def _produce(self, out: Sequence[OutRecord], delivered: dict[int, int]) -> None:
        changelog = self.changelog_topic
        last: dict[int | None, int] = {}
        if changelog is not None:
            for i, o in enumerate(out):
                if o.topic == changelog:
                    last[o.partition] = i
        tracked = set(last.values())

        def on_delivery(err: KafkaError | None, msg: ConsumedMessage) -> None:
            if err is None:  # a delivered message has its partition and offset
                delivered[msg.partition()] = msg.offset() + 1

        producer = self._producer
        for i, o in enumerate(out):
            _produce_one(producer, o, on_delivery if i in tracked else None)

    def _on_error(self, err: KafkaError, offsets: dict[int, int] | None) -> NoReturn:
        if err.fatal() or not err.txn_requires_abort():
            raise LoopFatalError(f"{self.transactional_id}: transaction failed: {err}")
        log.warning(
            "%s: aborting transaction (%s) for %s",
            self.transactional_id,
            err,
            ", ".join(f"{self.input_topic}[{p}]@{o}" for p, o in (offsets or {}).items()),
        )
        self._abort(err)

    def _abort(self, cause: KafkaError) -> NoReturn:
        """Abort the open transaction; raises `TransactionAborted` carrying `cause` (the loop counts
        an abort a record caused: streams.failed_inputs)."""
        self.aborts += 1
        try:
            retry(self._producer.abort_transaction, 30.0)
        except KafkaException as exc:
            raise LoopFatalError(f"{self.transactional_id}: abort failed: {exc.args[0]}") from exc
        raise TransactionAborted(cause)


__all__ = ["Transactions"]
