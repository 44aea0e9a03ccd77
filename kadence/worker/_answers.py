"""How the worker answers: one idempotent producer for every answer, and the task offsets it may commit.

Every answer names the task it answers (`tp`, `offset`; `None` for an answer to no task on this
worker's topic: eager attempts, dead letters). That task's offset becomes committable once the
answer's delivery is reported, and only up to the lowest task still in flight on its partition
(at-least-once; answers are idempotent by command id). An answer that is not delivered is sent
again from the poll thread; one the broker refuses (no write permission, a record it will never
take) is sent again with backoff, and the refusal is logged at ERROR once and counted.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaError, TopicPartition

from kadence.history.commands import command_record
from kadence.history.ids import heartbeat_task_token
from kadence.streams.clients import make_consumer
from kadence.streams.dead_letters import dead_letter_record
from kadence.streams.errors import RECORD_CAUSED_CODES
from kadence.streams.metrics import DEAD_LETTERS
from kadence.streams.serde import SerdeError, serde
from kadence.streams.settings import Settings

from ._metrics import ANSWERS_REFUSED

log = logging.getLogger("kadence.worker")

#: Delivery errors that sending the same record again will not cure by itself: the principal's
#: permissions or login, or a record the broker will never take. (librdkafka reports delivery errors
#: without its `retriable` flag, so the codes are named here.)
_AUTH_ERRORS = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError._AUTHENTICATION,  # noqa: SLF001 - librdkafka's local error codes
    }
)
REFUSALS = _AUTH_ERRORS | RECORD_CAUSED_CODES
#: Backoff of answers the broker refused: doubling from the first to the cap.
REFUSED_BACKOFF_S = (0.5, 30.0)

#: A task's (topic, partition).
TP = tuple[str, int]


class Offsets:
    """Per partition: offsets in flight; the committable offset is the lowest in flight (or next)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inflight: dict[TP, set[int]] = collections.defaultdict(set)
        self._next: dict[TP, int] = {}
        self._committed: dict[TP, int] = {}

    def begin(self, tp: TP, offset: int) -> None:
        with self._lock:
            self._inflight[tp].add(offset)
            self._next[tp] = max(self._next.get(tp, 0), offset + 1)

    def done(self, tp: TP, offset: int) -> None:
        with self._lock:
            self._inflight[tp].discard(offset)

    def pending(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._inflight.values())

    def to_commit(self, only: set[TP] | None = None) -> list[TopicPartition]:
        out = []
        with self._lock:
            for tp, nxt in self._next.items():
                if only is not None and tp not in only:
                    continue
                inflight = self._inflight.get(tp)
                offset = min(inflight) if inflight else nxt
                if self._committed.get(tp) != offset:
                    self._committed[tp] = offset
                    out.append(TopicPartition(tp[0], tp[1], offset))
        return out

    def forget_all(self) -> None:
        with self._lock:
            self._inflight.clear()
            self._next.clear()
            self._committed.clear()

    def forget(self, tps: set[TP]) -> None:
        with self._lock:
            for tp in tps:
                self._inflight.pop(tp, None)
                self._next.pop(tp, None)
                self._committed.pop(tp, None)


class Outbox:
    """The worker's answers on their way to Kafka (thread-safe: activity threads answer too).

    `producer` is set when the worker starts. `flush_retries()` (poll thread) sends again what
    was not delivered.
    """

    def __init__(self, settings: Settings, task_list: str, identity: str, offsets: Offsets) -> None:
        self.settings = settings
        self.task_list = task_list
        self.identity = identity
        self.offsets = offsets
        self.producer: Any = None
        self._serde = serde()
        self._retry: collections.deque[tuple[str, str, bytes, Any, TP | None, int]] = collections.deque()
        #: After a refusal: no retry before `_retry_at` (monotonic), the delay doubling up to a cap.
        self._backoff_s = 0.0
        self._retry_at = 0.0
        #: (topic, error code) refusals logged since that topic last took an answer: logged once.
        self._reported: set[tuple[str, int]] = set()

    def produce(
        self, topic: str, key: str, record_type: str, record: Mapping[str, Any], tp: TP | None, offset: int
    ) -> None:
        value = self._serde.encode(record_type, record)
        self.send(topic, key, value, self._serde.headers(record_type), tp, offset)

    def send(self, topic: str, key: str, value: bytes, headers: Any, tp: TP | None, offset: int) -> None:
        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                if err.code() in REFUSALS:
                    self._refused(topic, err)
                else:
                    log.warning(
                        "worker %s: answer to %s not delivered (%s); retrying", self.task_list, topic, err
                    )
                self._retry.append((topic, key, value, headers, tp, offset))
                return
            if self._reported:  # the topic takes answers again: its refusals are over
                self._reported = {r for r in self._reported if r[0] != topic}
                if not self._reported:
                    self._backoff_s = 0.0
            if tp is not None:
                self.offsets.done(tp, offset)

        while True:
            try:
                self.producer.produce(
                    topic, key=key.encode(), value=value, headers=headers, on_delivery=delivered
                )
                return
            except BufferError:
                self.producer.poll(0.01)

    def _refused(self, topic: str, err: Any) -> None:
        """The broker refused an answer: back off (it is sent again, later) and say so once."""
        first, cap = REFUSED_BACKOFF_S
        self._backoff_s = min(cap, max(first, self._backoff_s * 2))
        self._retry_at = time.monotonic() + self._backoff_s
        ANSWERS_REFUSED.labels(self.task_list, topic, err.name()).inc()
        if (topic, err.code()) in self._reported:
            return
        self._reported.add((topic, err.code()))
        why = (
            f"This worker's Kafka principal may not write {topic}: grant it WRITE on the topic "
            '(kadence.streams.acls.client_acls; README, "Security")'
            if err.code() in _AUTH_ERRORS
            else "The broker will not take this record as it is"
        )
        log.error(
            "worker %s: the broker refuses answers to %s: %s. %s. The answers are kept and sent again "
            "with backoff (up to every %.0f s); their tasks stay uncommitted until they are delivered",
            self.task_list,
            topic,
            err,
            why,
            cap,
        )

    def flush_retries(self) -> None:
        if not self._retry or time.monotonic() < self._retry_at:
            return
        while self._retry:
            self.send(*self._retry.popleft())

    def command(
        self,
        task: Mapping[str, Any],
        ptype: str,
        payload: dict[str, Any],
        command_id: str,
        tp: TP | None,
        offset: int,
    ) -> None:
        """Answer `task` with a `ptype` command; `command_id` from `history.ids` (`answer_command_id`)."""
        payload.setdefault("identity", self.identity)
        rec = command_record(
            command_id=command_id,
            domain=task["domain"],
            workflow_id=task["workflow_id"],
            run_id=task["run_id"],
            timestamp=int(time.time() * 1000),
            payload_type=ptype,
            attrs=payload,
        )
        self.produce(self.settings.commands_topic, task["workflow_id"], "Command", rec, tp, offset)

    def dead_letter(self, msg: Any, reason: str) -> None:
        rec = dead_letter_record(  # a bounded copy of the task record
            topic=msg.topic(),
            partition=msg.partition(),
            offset=msg.offset(),
            key=msg.key(),
            value=msg.value(),
            reason=reason,
            processor=f"worker.{self.task_list}",
            timestamp=int(time.time() * 1000),
        )
        DEAD_LETTERS.labels(f"worker.{self.task_list}").inc()
        log.warning(
            "worker %s: %s[%d]@%d is not a Task (%s): dead-lettered",
            self.task_list,
            msg.topic(),
            msg.partition(),
            msg.offset(),
            reason,
        )
        self.produce(
            self.settings.dead_letters_topic,
            (rec["key"] or b"").decode(errors="replace"),
            "DeadLetter",
            rec,
            None,
            0,
        )


class HeartbeatAnswers:
    """The history processor's answers to this worker's activity heartbeats (docs/protocol.md,
    "Activity cancellation"): a heartbeat names `query-results` as its reply topic, and is answered
    there (key and `query_id` = its command id) only when its attempt should stop.

    One consumer, started by the first heartbeat, assigned every partition of `query-results` at
    its end offsets (answers to earlier heartbeats are of no use: every heartbeat of a
    cancel-requested attempt is answered again), no group membership, nothing committed. Each
    answer whose query id is a heartbeat command id calls `on_answer(task token, error type,
    message)`; the rest (query results for clients) is skipped unread.
    """

    def __init__(
        self, settings: Settings, task_list: str, on_answer: Callable[[str, str, str], None]
    ) -> None:
        self.settings = settings
        self.task_list = task_list
        self.on_answer = on_answer
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        """Start reading (idempotent, does not wait)."""
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(
                target=self._run, name=f"kadence-heartbeat-answers-{self.task_list}", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        topic = self.settings.query_results_topic
        consumer = make_consumer(
            self.settings, self.settings.group(f"worker.{self.task_list}-hb-{uuid.uuid4().hex}")
        )
        codec = serde()
        try:
            while not self._stop.is_set():  # assign at the end of every partition, once they are known
                try:
                    md = consumer.list_topics(topic, timeout=5).topics.get(topic)
                    if md is not None and md.error is None and md.partitions:
                        ends = [
                            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
                            for p in md.partitions
                        ]
                        consumer.assign(
                            [
                                TopicPartition(topic, p, hi)
                                for p, (_, hi) in zip(md.partitions, ends, strict=True)
                            ]
                        )
                        break
                except Exception as exc:  # noqa: BLE001 - the broker is away: try again
                    log.warning("worker %s: cannot read %s yet (%s); retrying", self.task_list, topic, exc)
                self._stop.wait(1.0)
            while not self._stop.is_set():
                msg = consumer.poll(0.1)
                if msg is None or msg.error() is not None:
                    continue
                key = (msg.key() or b"").decode(errors="replace")
                token = heartbeat_task_token(key)
                if token is None:
                    continue  # a query result for a client
                try:
                    _, answer = codec.decode(msg.value(), expected="QueryResult")
                except SerdeError as exc:
                    log.warning("worker %s: unreadable heartbeat answer %s: %s", self.task_list, key, exc)
                    continue
                error = answer.get("error") or {}
                self.on_answer(token, error.get("type", ""), error.get("message", ""))
        except Exception:  # noqa: BLE001 - a reader that stops must say why (activities go on, uncancelled)
            log.exception("worker %s: the heartbeat answer reader stopped", self.task_list)
        finally:
            consumer.close()
