"""The Kadence client: start workflows and talk to running ones, over Kafka topics only.

Writes go to `<prefix>commands` (keyed by workflow id, murmur2 partitioner, idempotent producer,
flushed before the call returns). Outcomes come from `<prefix>completions` and query answers from
`<prefix>query-results`: each is read by one background consumer thread per client, started on
first use at the end offsets of that moment; the client keeps the outcomes its live handles watch
and a few recent ones, and reads an older one back from the one partition its workflow id maps to
(docs/protocol.md, "What a client reads"). `history()` and `describe()` read the one partition of
`<prefix>history` that owns the workflow id; `describe()` folds it with the engine's reducer.
Ids and the Command record come from `kadence.history` (ids, commands). The Kafka side (producer,
readers, indexes) is one `ClientConnection`, shared by the client and its handles.

```python
with Client.connect("127.0.0.1:9092") as client:
    handle = client.start_workflow(HelloWorkflow.run, "world", id="hello-1", task_list="default")
    print(handle.result(timeout=30))
```
"""

from __future__ import annotations

import enum
import functools
import logging
import os
import socket
import threading
import time
import uuid
import weakref
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import fields as dataclass_fields
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, Required, TypedDict, TypeVar, Unpack, cast, overload

from confluent_kafka import IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]  # re-exported untyped

from kadence._command_producer import CommandProducer
from kadence._names import query_name, signal_name, update_name, workflow_type_name
from kadence._runtime_defn import id_reuse_policy_value, retry_record, return_hint_of, to_ms
from kadence.converter import JSONConverter, default_converter
from kadence.failures import (
    CanceledError,
    KadenceError,
    QueryError,
    StartFailureCause,
    TimeoutError,  # kadence's: a subclass of the builtin one
    UpdateFailedError,
    UpdateRejectedError,
    WorkflowAlreadyStartedError,
    WorkflowFailureError,
    WorkflowNotFoundError,
    from_failure,
)
from kadence.history import describe_state, fold
from kadence.history.answers import ANSWER_STATUSES, NOT_FOUND, REFUSED
from kadence.history.commands import command_record
from kadence.history.ids import new_command_id, new_query_id, new_request_id, update_answer_id
from kadence.history.live import DECISION_ATTEMPT_QUERY
from kadence.history.search_attributes import encode as search_attributes_record
from kadence.history.validation import InvalidField, command_problem
from kadence.streams.checkpoint import topic_id
from kadence.streams.clients import make_admin, make_consumer, murmur2_partition
from kadence.streams.serde import SerdeError, serde
from kadence.streams.settings import Settings, kafka_config_from_env
from kadence.visibility import CountResult, ListPage, Visibility, WorkflowExecutionInfo
from kadence.visibility import parse as parse_query

if TYPE_CHECKING:
    from kadence.schemas.records import HistoryEvent

log = logging.getLogger("kadence.client")

#: Statuses of a closed run that end a handle's `result()` with an error.
FAILED_STATUSES = ("FAILED", "CANCELED", "TERMINATED", "TIMED_OUT")
START_REJECTED = "START_REJECTED"
CONTINUED_AS_NEW = "CONTINUED_AS_NEW"

Seconds = float | int | timedelta

#: The result of a workflow; `S` its class (self of its run method); `A1`.. its arguments.
R = TypeVar("R")
S = TypeVar("S")
A1 = TypeVar("A1")
A2 = TypeVar("A2")
A3 = TypeVar("A3")


class StartWorkflowOptions(TypedDict, total=False):
    """The keyword options of `Client.start_workflow` (as type checkers see them)."""

    id: Required[str]
    task_list: Required[str]
    execution_timeout: Seconds | None
    run_timeout: Seconds | None
    task_timeout: Seconds | None
    id_reuse_policy: str
    retry_policy: Any
    memo: dict[str, Any] | None
    request_id: str | None
    search_attributes: Mapping[str, Any] | None
    start_signal: Any
    start_signal_args: Sequence[Any]


class ExecuteWorkflowOptions(StartWorkflowOptions, total=False):
    """The keyword options of `Client.execute_workflow`."""

    result_timeout: float | None
    result_type: Any


#: How often a client's reader of completions or query results checks that its topic is the same.
READER_CHECK_S = 5.0
#: How long a signal, cancel or terminate waits for the engine's answer by default.
ANSWER_TIMEOUT_S = 30.0
#: How many times a reset is sent (with one command id) while no answer comes.
RESET_SENDS = 3


class _NoAnswer(KadenceError):
    """A command was sent and the engine did not answer in time."""


#: How many outcomes of workflow ids no live handle watches a client keeps (the oldest go first).
RECENT_OUTCOMES = 256
#: How long a wait for an outcome goes without one before it reads the id's partition back again.
OUTCOME_RECHECK_S = 10.0
#: The longest a read back of one `completions` partition may take (within a `result()` timeout).
READ_BACK_TIMEOUT_S = 30.0

#: Where reads "from the beginning" start: offset 0, not OFFSET_BEGINNING, whose lookup cost a
#: consumer's first fetch about 0.5 s on the embedded broker; a log that starts later (retention)
#: answers out of range and the consumer resets to its earliest offset (`auto.offset.reset`).
FIRST_OFFSET = 0

_LATEST: Any = OffsetSpec.latest()  # type: ignore[no-untyped-call]  # untyped in confluent-kafka


def _now_ms() -> int:
    return int(time.time() * 1000)


def _record(value: Any) -> Any:
    """A record from a union value: serde returns ``(type name, record)`` for unions of records."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        return value[1]
    return value


def _failure(value: Any) -> dict[str, Any] | None:
    """A Failure record as plain dicts down its cause chain (what `from_failure` reads)."""
    failure = _record(value)
    if failure is None:
        return None
    return {**failure, "details": _record(failure.get("details")), "cause": _failure(failure.get("cause"))}


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


# ---------------------------------------------------------------------------------------------
# Background readers
# ---------------------------------------------------------------------------------------------


class _TopicReader:
    """One consumer thread over every partition of a topic, from its end, decoding records.

    It uses `assign` (no group membership, nothing committed) at the end offsets that one
    ListOffsets request (read_committed: the last stable offsets) gives while the reader starts, so
    no record written after `ClientConnection.reader` returned is missed and none written before is
    read: a client's start-up read no longer grows with the topic. Tansu's "latest" can be short of
    the true end, never past it (docs/brokers.md 2.6): a few records are read again, which readers
    de-duplicate anyway. What was written before the reader started is read on demand, one
    partition at a time (`read_back`). `caught_up` is set once every partition has reported
    end-of-partition once, as seen in fetch responses.
    """

    def __init__(
        self,
        settings: Settings,
        topic: str,
        record_type: str,
        on_record: Callable[[int, int, dict[str, Any]], None],
        on_positions: Callable[[dict[int, int]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self._record_type = record_type
        self._on_record = on_record
        self._on_positions = on_positions
        self._stop = threading.Event()
        self.caught_up = threading.Event()
        #: Records the live consumer decoded; records `read_back` read (any key) and its reads by partition.
        self.records_read = 0
        self.backfill_records_read = 0
        self.backfill_reads: Counter[int] = Counter()
        self._consumer = make_consumer(
            settings, settings.group(f"client-{uuid.uuid4().hex}"), **{"enable.partition.eof": True}
        )
        md = self._consumer.list_topics(topic, timeout=10).topics.get(topic)
        if md is None or md.error is not None or not md.partitions:
            self._consumer.close()
            raise KadenceError(
                f"topic {topic} does not exist; create the topics first (`kadence topics create`)"
            )
        self.partitions = sorted(md.partitions)
        self._at_eof: set[int] = set()
        #: The topic's id, checked every READER_CHECK_S: another id (a broker that came back
        #: empty, the topic recreated) and the reader starts again from the beginning, where the
        #: new records are, instead of waiting at an offset the new topic has not reached.
        self._admin = make_admin(settings)
        self._topic_id = topic_id(self._admin, topic)
        self._checked_at = time.monotonic()
        #: Where the live consumer started, per partition: the end offsets when the reader started.
        self.start_offsets = self._end_offsets()
        if on_positions is not None:
            on_positions(dict(self.start_offsets))
        self._consumer.assign([TopicPartition(topic, p, self.start_offsets[p]) for p in self.partitions])
        self._thread = threading.Thread(target=self._run, name=f"kadence-client-{topic}", daemon=True)
        self._thread.start()

    def _end_offsets(self) -> dict[int, int]:
        """Every partition's end offset (read_committed: the last stable offset), in one request;
        the beginning (0) when the broker does not answer: slower to read, never a record missed."""
        isolation = (
            IsolationLevel.READ_COMMITTED
            if self.settings.isolation_level == "read_committed"
            else IsolationLevel.READ_UNCOMMITTED
        )
        for attempt in range(3):
            try:
                futures = self._admin.list_offsets(
                    {TopicPartition(self.topic, p): _LATEST for p in self.partitions},
                    isolation_level=isolation,
                    request_timeout=10,
                )
                return {tp.partition: max(0, int(f.result().offset)) for tp, f in futures.items()}
            except KafkaException as exc:  # e.g. no leader yet, a moment after a broker restart
                if attempt == 2:
                    log.warning("%s: no end offsets (%s); reading it from the beginning", self.topic, exc)
                time.sleep(0.2)
        return dict.fromkeys(self.partitions, 0)

    def _run(self) -> None:
        codec = serde()
        try:
            while not self._stop.is_set():
                if time.monotonic() - self._checked_at >= READER_CHECK_S:
                    self._check_topic()
                msg = self._consumer.poll(0.1)
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        self._at_eof.add(msg.partition())  # type: ignore[arg-type]  # (set on every EOF)
                        if len(self._at_eof) == len(self.partitions):
                            self.caught_up.set()
                    else:
                        log.warning("%s: consumer error %s", self.topic, err)
                    continue
                try:
                    _, record = codec.decode(msg.value(), expected=self._record_type)
                except SerdeError as exc:
                    log.warning(
                        "%s[%d]@%d: skipping unreadable record: %s",
                        msg.topic(),
                        msg.partition(),
                        msg.offset(),
                        exc,
                    )
                    continue
                self.records_read += 1
                self._on_record(msg.partition() or 0, msg.offset() or 0, record)
        finally:
            self._consumer.close()

    def _check_topic(self) -> None:
        self._checked_at = time.monotonic()
        current = topic_id(self._admin, self.topic)
        if current is None or current == self._topic_id:
            return
        if self._topic_id is not None:
            log.warning(
                "%s is another topic now (id %s, was %s: the broker restarted empty or the topic was "
                "recreated); reading it from the beginning",
                self.topic,
                current,
                self._topic_id,
            )
            if self._on_positions is not None:
                self._on_positions(dict.fromkeys(self.partitions, 0))
            self._consumer.assign([TopicPartition(self.topic, p, FIRST_OFFSET) for p in self.partitions])
        self._topic_id = current

    def read_back(self, partition: int, until: int, key: bytes, timeout: float) -> list[dict[str, Any]]:
        """The records of `key` in `partition` before offset `until` (in log order), read from the
        beginning by a consumer of their own: what was written before the live consumer started,
        or what it read and did not keep. Other keys' records are skipped undecoded."""
        self.backfill_reads[partition] += 1
        if until <= 0:
            return []
        consumer = make_consumer(
            self.settings,
            self.settings.group(f"client-backfill-{uuid.uuid4().hex}"),
            **{"enable.partition.eof": True},
        )
        codec = serde()
        found: list[dict[str, Any]] = []
        try:
            consumer.assign([TopicPartition(self.topic, partition, FIRST_OFFSET)])
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"reading {self.topic}[{partition}] up to offset {until} took longer than {timeout:g}s",
                        "",
                    )
                msg = consumer.poll(min(0.2, left))
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        if (msg.offset() or 0) >= until:
                            return found
                        continue  # Tansu's fetch can report a short end: read on
                    raise KadenceError(f"reading {self.topic}[{partition}]: {err}")
                offset = msg.offset() or 0
                if offset >= until:
                    return found
                self.backfill_records_read += 1
                if msg.key() == key:
                    try:
                        _, record = codec.decode(msg.value(), expected=self._record_type)
                    except SerdeError as exc:
                        log.warning(
                            "%s[%d]@%d: skipping unreadable record: %s", self.topic, partition, offset, exc
                        )
                    else:
                        found.append(record)
                if offset + 1 >= until:
                    return found
        finally:
            consumer.close()

    def close(self) -> None:
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(5)


class _Outcomes:
    """The outcomes of one workflow id a client keeps, in the order read, by run and by start request."""

    __slots__ = ("by_request", "by_run", "outcomes", "_seen")

    def __init__(self) -> None:
        self.outcomes: list[dict[str, Any]] = []
        self.by_run: dict[str, dict[str, Any]] = {}
        self.by_request: dict[str, dict[str, Any]] = {}
        self._seen: set[tuple[str, str, str]] = set()

    def add(self, outcome: dict[str, Any]) -> bool:
        """Index `outcome`; False for one seen before (redelivery, leaked aborted write, read back)."""
        run_id, request_id = outcome["run_id"], outcome["request_id"]
        ident = (run_id, request_id, outcome["status"])
        if ident in self._seen or (run_id and outcome["status"] != START_REJECTED and run_id in self.by_run):
            return False
        self._seen.add(ident)
        if run_id and outcome["status"] != START_REJECTED:
            self.by_run[run_id] = outcome
        # Runs continued from a start carry its request id too: the start's own run is the chain's
        # first (run_id == first_run_id), else the earliest seen.
        if request_id and (
            request_id not in self.by_request or (run_id and run_id == outcome["first_run_id"])
        ):
            self.by_request[request_id] = outcome
        self.outcomes.append(outcome)
        return True


class _Completions:
    """The `WorkflowOutcome` records a client keeps, by workflow id, then by run and start request.

    Kept: every outcome of the workflow ids some live `WorkflowHandle` watches (from the handle's
    creation to its collection), plus the last RECENT_OUTCOMES outcomes of other ids (so a
    `result()` right after a handle is dropped needs no read), and the answers awaited by command
    id. Everything else is read and dropped: a client's memory does not grow with the topic.
    `positions` is, per partition, the offset after the last record handed over by the reader:
    everything of a watched id from there on will be kept, so `read_back` up to it completes it.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        #: Notified on answers and on every new outcome, for waiters of no particular id.
        self.cond = threading.Condition(self._lock)
        #: One condition per watched id, on the same lock: an outcome wakes the handles waiting for
        #: its id, not every waiting thread (with 50 workflows in flight, `notify_all` on one
        #: condition woke 50 threads per outcome, and the client spent most of its CPU there).
        self._id_conds: dict[tuple[str, str], threading.Condition] = {}
        self._watchers: dict[tuple[str, str], int] = {}
        self._kept: dict[tuple[str, str], _Outcomes] = {}
        self._recent: OrderedDict[tuple[str, str], _Outcomes] = OrderedDict()
        self._recent_count = 0
        self._positions: dict[int, int] = {}
        #: Bumped on every new outcome: a waiter that saw version v sleeps only while it is still v.
        self.version = 0
        #: Answers (history.answers) to the commands this client waits for, by command id.
        self._wanted: set[str] = set()
        self._answers: dict[str, dict[str, Any]] = {}

    # -- what is kept ----------------------------------------------------------------------------
    def watch(self, domain: str, wid: str) -> bool:
        """Keep the outcomes of `wid` from now until as many `unwatch` calls. True when the reader is
        running, i.e. every outcome of `wid` written from now on will be kept."""
        key = (domain, wid)
        with self.cond:
            count = self._watchers.get(key, 0)
            self._watchers[key] = count + 1
            if count == 0:
                self._id_conds[key] = threading.Condition(self._lock)
                entry = self._recent.pop(key, None)
                if entry is not None:
                    self._recent_count -= len(entry.outcomes)
                self._kept[key] = entry if entry is not None else _Outcomes()
            return bool(self._positions)

    def unwatch(self, domain: str, wid: str) -> None:
        key = (domain, wid)
        with self.cond:
            count = self._watchers.get(key, 0) - 1
            if count > 0:
                self._watchers[key] = count
                return
            self._watchers.pop(key, None)
            self._id_conds.pop(key, None)
            entry = self._kept.pop(key, None)
            if entry is not None and entry.outcomes:
                self._remember(key, entry)

    def condition(self, domain: str, wid: str) -> threading.Condition:
        """The condition notified when an outcome of `wid` arrives: its own while it is watched."""
        with self.cond:
            return self._id_conds.get((domain, wid), self.cond)

    def _notify(self, key: tuple[str, str]) -> None:
        self.version += 1
        own = self._id_conds.get(key)
        if own is not None:
            own.notify_all()
        self.cond.notify_all()

    def _remember(self, key: tuple[str, str], entry: _Outcomes) -> None:
        """Put an unwatched id's outcomes last in the recent ones; drop the oldest beyond the bound."""
        self._recent[key] = entry
        self._recent_count += len(entry.outcomes)
        while self._recent_count > RECENT_OUTCOMES:
            _, old = self._recent.popitem(last=False)
            self._recent_count -= len(old.outcomes)

    def retained_outcomes(self) -> int:
        """How many outcomes this client holds now (watched ids' and recent ones)."""
        with self.cond:
            return self._recent_count + sum(len(e.outcomes) for e in self._kept.values())

    def set_positions(self, positions: dict[int, int]) -> None:
        with self.cond:
            self._positions = dict(positions)

    def position(self, partition: int) -> int:
        with self.cond:
            return self._positions.get(partition, 0)

    # -- answers ---------------------------------------------------------------------------------
    def expect_answer(self, command_id: str) -> None:
        with self.cond:
            self._wanted.add(command_id)

    def wait_answer(self, command_id: str, timeout: float) -> dict[str, Any] | None:
        """The engine's answer to command `command_id` (after `expect_answer`), or None in time."""
        deadline = time.monotonic() + timeout
        with self.cond:
            try:
                while command_id not in self._answers:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    self.cond.wait(left)
                return self._answers.pop(command_id)
            finally:
                self._wanted.discard(command_id)

    # -- outcomes --------------------------------------------------------------------------------
    def add(self, partition: int, offset: int, outcome: dict[str, Any]) -> None:
        """An outcome the reader read at `partition`@`offset`."""
        with self.cond:
            self._positions[partition] = offset + 1
            if outcome["status"] in ANSWER_STATUSES:  # no run's outcome: kept only if awaited
                if outcome["request_id"] in self._wanted:
                    self._answers[outcome["request_id"]] = outcome
                    self.cond.notify_all()
                return
            key = (outcome["domain"], outcome["workflow_id"])
            entry = self._kept.get(key)
            if entry is not None:
                added = entry.add(outcome)
            else:
                entry = self._recent.pop(key, None)
                if entry is not None:
                    self._recent_count -= len(entry.outcomes)
                else:
                    entry = _Outcomes()
                added = entry.add(outcome)
                self._remember(key, entry)
            if added:
                self._notify(key)

    def add_read_back(self, domain: str, wid: str, earlier: list[dict[str, Any]]) -> None:
        """Outcomes of `wid` read back from before `position`: they go before the ones kept."""
        key = (domain, wid)
        with self.cond:
            merged = _Outcomes()
            for outcome in earlier:
                if outcome["status"] not in ANSWER_STATUSES:
                    merged.add(outcome)
            entry = self._kept.get(key)
            if entry is None:  # not watched (a handle dropped meanwhile): among the recent ones
                entry = self._recent.pop(key, None)
                if entry is not None:
                    self._recent_count -= len(entry.outcomes)
            for outcome in entry.outcomes if entry is not None else ():
                merged.add(outcome)
            if key in self._kept:
                self._kept[key] = merged
            elif merged.outcomes:
                self._remember(key, merged)
            self._notify(key)

    def _entry(self, domain: str, wid: str) -> _Outcomes | None:
        key = (domain, wid)
        entry = self._kept.get(key)
        return entry if entry is not None else self._recent.get(key)

    def by_run(self, domain: str, wid: str, run_id: str) -> dict[str, Any] | None:
        with self.cond:
            entry = self._entry(domain, wid)
            return entry.by_run.get(run_id) if entry is not None else None

    def by_request(self, domain: str, wid: str, request_id: str) -> dict[str, Any] | None:
        with self.cond:
            entry = self._entry(domain, wid)
            return entry.by_request.get(request_id) if entry is not None else None

    def latest_run(self, domain: str, wid: str) -> dict[str, Any] | None:
        """The last closed run of the workflow id kept here (read back first: `WorkflowHandle`)."""
        with self.cond:
            entry = self._entry(domain, wid)
            outcomes = [o for o in (entry.outcomes if entry else []) if o["status"] != START_REJECTED]
            return outcomes[-1] if outcomes else None


class _QueryResults:
    """QueryResult records of the queries this client is waiting for, by query id."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self._wanted: set[str] = set()
        self._results: dict[str, dict[str, Any]] = {}

    def expect(self, query_id: str) -> None:
        with self.cond:
            self._wanted.add(query_id)

    def add(self, result: dict[str, Any]) -> None:
        with self.cond:
            if result["query_id"] in self._wanted:
                self._results.setdefault(result["query_id"], result)
                self.cond.notify_all()

    def wait(self, query_id: str, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        with self.cond:
            try:
                while query_id not in self._results:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    self.cond.wait(left)
                return self._results.pop(query_id)
            finally:
                self._wanted.discard(query_id)


# ---------------------------------------------------------------------------------------------
# Client and handles
# ---------------------------------------------------------------------------------------------


class ClientConnection:
    """A client's side of Kafka, shared by the client and its handles (thread-safe): the producer
    of Commands, the readers of `completions` and `query-results` (started on first use) and
    their indexes, and reads of a workflow's history partition."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        #: Outcomes read from `completions`, by run, start request and workflow id.
        self.completions = _Completions()
        #: Answers read from `query-results` to the queries being waited for.
        self.query_results = _QueryResults()
        self._lock = threading.Lock()
        self._producer = CommandProducer(settings)  # connects on the first command
        self._readers: dict[str, _TopicReader] = {}
        self._closed = False

    def close(self) -> None:
        with self._lock:
            self._closed = True
            readers, self._readers = list(self._readers.values()), {}
        for reader in readers:
            reader.close()
        self._producer.close(10)

    def send(
        self,
        domain: str,
        workflow_id: str,
        run_id: str,
        payload: tuple[str, dict[str, Any]],
        command_id: str | None = None,
    ) -> str:
        """Produce one Command keyed by the workflow id and wait for its delivery. Returns its id."""
        command_id = command_id or new_command_id()
        command = command_record(
            command_id=command_id,
            domain=domain,
            workflow_id=workflow_id,
            run_id=run_id,
            timestamp=_now_ms(),
            payload_type=payload[0],
            attrs=payload[1],
        )
        problem = command_problem(command)  # the engine's own entry rules: an early, readable error
        if problem is not None:
            raise InvalidField(f"invalid {payload[0]} command: {problem}")
        codec = serde()
        value = codec.encode("Command", command)
        with self._lock:
            if self._closed:
                raise KadenceError("the client is closed")
        # delivered, or an error that says why (broker unreachable: BrokerUnreachableError)
        self._producer.send(
            self.settings.commands_topic,
            workflow_id.encode(),
            value,
            codec.headers("Command"),
            f"{payload[0]} for workflow {workflow_id!r}",
        )
        return command_id

    def reader(self, topic: str) -> _TopicReader:
        """The reader of `completions` or `query-results` (started now if it is not running)."""
        with self._lock:
            if self._closed:
                raise KadenceError("the client is closed")
            reader = self._readers.get(topic)
            if reader is None:
                if topic == self.settings.completions_topic:
                    reader = _TopicReader(
                        self.settings,
                        topic,
                        "WorkflowOutcome",
                        self.completions.add,
                        self.completions.set_positions,
                    )
                else:
                    results = self.query_results
                    reader = _TopicReader(
                        self.settings, topic, "QueryResult", lambda _p, _o, record: results.add(record)
                    )
                self._readers[topic] = reader
            return reader

    def read_back_outcomes(self, domain: str, workflow_id: str, timeout: float = READ_BACK_TIMEOUT_S) -> int:
        """Add the outcomes of `workflow_id` that the reader of `completions` has passed (written
        before it started, or read while nothing kept them) to the ones kept: a read of the one
        partition the id maps to (murmur2, as the history processor's producer), up to where the
        reader is, so nothing is missed in between. Call it while a handle watches the id. Returns
        how many outcomes of the id it found."""
        reader = self.reader(self.settings.completions_topic)
        key = workflow_id.encode()
        partition = murmur2_partition(key, len(reader.partitions))
        until = self.completions.position(partition)
        records = reader.read_back(partition, until, key, timeout)
        mine = [r for r in records if r["domain"] == domain and r["workflow_id"] == workflow_id]
        self.completions.add_read_back(domain, workflow_id, mine)
        return len(mine)

    def history_events(self, domain: str, workflow_id: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Every HistoryEvent of the workflow id in `domain`, read from its history partition."""
        topic = self.settings.history_topic
        consumer = make_consumer(
            self.settings,
            self.settings.group(f"client-history-{uuid.uuid4().hex}"),
            **{"enable.partition.eof": True},
        )
        try:
            md = consumer.list_topics(topic, timeout=10).topics.get(topic)
            if md is None or md.error is not None or not md.partitions:
                raise KadenceError(
                    f"topic {topic} does not exist; create the topics first (`kadence topics create`)"
                )
            partition = murmur2_partition(workflow_id.encode(), len(md.partitions))
            consumer.assign([TopicPartition(topic, partition, FIRST_OFFSET)])
            events: list[dict[str, Any]] = []
            seen: set[tuple[str, int]] = set()
            codec = serde()
            deadline = time.monotonic() + timeout
            while True:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"reading {topic}[{partition}] took longer than {timeout}s", "")
                msg = consumer.poll(0.2)
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        return events
                    raise KadenceError(f"reading {topic}[{partition}]: {err}")
                if msg.key() != workflow_id.encode():
                    continue
                try:
                    _, transition = codec.decode(msg.value(), expected="HistoryTransition")
                except SerdeError as exc:
                    log.warning(
                        "%s[%d]@%d: skipping unreadable record: %s", topic, partition, msg.offset(), exc
                    )
                    continue
                if transition["domain"] != domain or transition["workflow_id"] != workflow_id:
                    continue
                for event in transition["events"]:
                    ident = (event["run_id"], event["event_id"])
                    if ident not in seen:  # idempotent: a duplicated transition adds nothing
                        seen.add(ident)
                        events.append(event)
        finally:
            consumer.close()


class UpdateStage(str, enum.Enum):
    """How far `start_update` waits: the update is accepted (recorded), or completed too."""

    ACCEPTED = "ACCEPTED"
    COMPLETED = "COMPLETED"


class Client:
    """Connection to a Kadence deployment (a Kafka cluster and a topic prefix) for one domain.

    Thread-safe. Close it (or use it as a context manager) to stop its reader threads.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        domain: str = "default",
        identity: str | None = None,
        data_converter: JSONConverter | None = None,
    ) -> None:
        self.settings: Settings = settings if settings is not None else Settings.from_env()
        self.domain: str = domain
        self.identity: str = identity or f"{os.getpid()}@{socket.gethostname()}"
        self.data_converter: JSONConverter = data_converter or default_converter
        self._conn = ClientConnection(self.settings)
        self._visibility: Visibility | None = None

    @property
    def connection(self) -> ClientConnection:
        """The client's Kafka side (producer, readers and their indexes), shared with its handles."""
        return self._conn

    @classmethod
    def connect(cls, bootstrap: str, prefix: str = "kadence.", **kw: Any) -> Client:
        """A client for `bootstrap`; keyword arguments go to `Settings` or to the client as they name.
        Without `kafka_config`, the librdkafka properties of the environment apply
        (`KADENCE_KAFKA_CONFIG_FILE`, `KADENCE_KAFKA_<PROPERTY>`: security settings, README)."""
        setting_names = {f.name for f in dataclass_fields(Settings)}
        settings_kw = {k: v for k, v in kw.items() if k in setting_names}
        client_kw = {k: v for k, v in kw.items() if k not in setting_names}
        settings_kw.setdefault("kafka_config", kafka_config_from_env())
        return cls(Settings(bootstrap=bootstrap, prefix=prefix, **settings_kw), **client_kw)

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        if self._visibility is not None:
            self._visibility.close()
        self._conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- starting --------------------------------------------------------------------------------
    @overload
    def start_workflow(
        self, workflow: Callable[[S], Awaitable[R]], **options: Unpack[StartWorkflowOptions]
    ) -> WorkflowHandle[R]: ...
    @overload
    def start_workflow(
        self, workflow: Callable[[S, A1], Awaitable[R]], a1: A1, /, **options: Unpack[StartWorkflowOptions]
    ) -> WorkflowHandle[R]: ...
    @overload
    def start_workflow(
        self,
        workflow: Callable[[S, A1, A2], Awaitable[R]],
        a1: A1,
        a2: A2,
        /,
        **options: Unpack[StartWorkflowOptions],
    ) -> WorkflowHandle[R]: ...
    @overload
    def start_workflow(
        self,
        workflow: Callable[[S, A1, A2, A3], Awaitable[R]],
        a1: A1,
        a2: A2,
        a3: A3,
        /,
        **options: Unpack[StartWorkflowOptions],
    ) -> WorkflowHandle[R]: ...
    @overload
    def start_workflow(
        self,
        workflow: Callable[..., Awaitable[R]],
        a1: Any,
        a2: Any,
        a3: Any,
        a4: Any,
        /,
        *args: Any,
        **options: Unpack[StartWorkflowOptions],
    ) -> WorkflowHandle[R]: ...
    @overload
    def start_workflow(
        self, workflow: str | type[Any], /, *args: Any, **options: Unpack[StartWorkflowOptions]
    ) -> WorkflowHandle[Any]: ...
    def start_workflow(
        self,
        workflow: Any,
        *args: Any,
        id: str,
        task_list: str,  # noqa: A002 - Temporal's name
        execution_timeout: Seconds | None = None,
        run_timeout: Seconds | None = None,
        task_timeout: Seconds | None = None,
        id_reuse_policy: str = "ALLOW_DUPLICATE_FAILED_ONLY",
        retry_policy: Any = None,
        memo: dict[str, Any] | None = None,
        request_id: str | None = None,
        search_attributes: Mapping[str, Any] | None = None,
        start_signal: Any = None,
        start_signal_args: Sequence[Any] = (),
    ) -> WorkflowHandle[Any]:
        """Produce a StartWorkflowExecution command; return a handle (its run id is learned later).

        `workflow` is a @workflow.defn class, its @workflow.run method or a type name (type checkers
        see the arguments of a run method, up to three, and its result type). Timeouts are
        seconds or timedeltas (None = none; task timeout 10 s). `id_reuse_policy` is a name or a
        `workflow.IdReusePolicy`; `retry_policy` a `workflow.RetryPolicy` (anything with
        `to_record()`) or a dict of RetryPolicy record fields. A repeated `request_id` is a no-op
        on the server (the same run is reported again). `search_attributes`: name -> str (keyword),
        `workflow.Text`, int, float, bool, aware datetime or list of str; anything else raises
        `kadence.workflow.SearchAttributeError` before anything is sent.

        `start_signal` (a @workflow.signal method or its name) makes it a *signal-with-start*: if a
        run of `id` is open, it gets the signal and nothing starts (unless `id_reuse_policy` is
        TERMINATE_IF_RUNNING); otherwise a run starts as above, with the signal recorded before its
        first decision task, so the signal handler runs before the run method. The handle follows
        whichever run got the signal. See also `signal_with_start`.
        """
        id_reuse_policy = id_reuse_policy_value(id_reuse_policy)
        recorded_attributes = search_attributes_record(search_attributes or {})
        fresh_request = not request_id
        request_id = request_id or new_request_id()
        conv = self.data_converter
        start = {
            "workflow_type": workflow_type_name(workflow),
            "task_list": task_list,
            "input": conv.args_to_payload(args),
            "execution_timeout_ms": to_ms(execution_timeout),
            "run_timeout_ms": to_ms(run_timeout),
            "task_timeout_ms": to_ms(task_timeout) if task_timeout is not None else 10_000,
            "id_reuse_policy": id_reuse_policy,
            "retry_policy": retry_record(retry_policy),
            "memo": {k: conv.to_payload(v) for k, v in (memo or {}).items()},
            "request_id": request_id,
            "identity": self.identity,
            "parent": None,
            "cron_schedule": "",
            "search_attributes": recorded_attributes,
            "signal_name": signal_name(start_signal) if start_signal is not None else "",
            "signal_input": conv.args_to_payload(start_signal_args) if start_signal is not None else None,
            "signal_sender": None,
        }
        handle: WorkflowHandle[Any] = WorkflowHandle(
            self,
            id,
            start_request_id=request_id,
            result_type=return_hint_of(workflow),
            _new_start=fresh_request,
        )
        self._conn.send(self.domain, id, "", ("StartWorkflowExecution", start))
        return handle

    def signal_with_start(
        self,
        workflow: Any,
        *args: Any,
        signal: Any,
        signal_args: Sequence[Any] = (),
        id: str,
        task_list: str,  # noqa: A002
        **options: Any,
    ) -> WorkflowHandle[Any]:
        """Signal the open run of `id`, or start `workflow(*args)` with that signal delivered before
        its first decision: `start_workflow(..., start_signal=signal, start_signal_args=signal_args)`."""
        return self.start_workflow(
            workflow,
            *args,
            id=id,
            task_list=task_list,
            start_signal=signal,
            start_signal_args=signal_args,
            **options,
        )

    @overload
    def execute_workflow(
        self, workflow: Callable[[S], Awaitable[R]], **options: Unpack[ExecuteWorkflowOptions]
    ) -> R: ...
    @overload
    def execute_workflow(
        self, workflow: Callable[[S, A1], Awaitable[R]], a1: A1, /, **options: Unpack[ExecuteWorkflowOptions]
    ) -> R: ...
    @overload
    def execute_workflow(
        self,
        workflow: Callable[[S, A1, A2], Awaitable[R]],
        a1: A1,
        a2: A2,
        /,
        **options: Unpack[ExecuteWorkflowOptions],
    ) -> R: ...
    @overload
    def execute_workflow(
        self,
        workflow: Callable[[S, A1, A2, A3], Awaitable[R]],
        a1: A1,
        a2: A2,
        a3: A3,
        /,
        **options: Unpack[ExecuteWorkflowOptions],
    ) -> R: ...
    @overload
    def execute_workflow(
        self,
        workflow: Callable[..., Awaitable[R]],
        a1: Any,
        a2: Any,
        a3: Any,
        a4: Any,
        /,
        *args: Any,
        **options: Unpack[ExecuteWorkflowOptions],
    ) -> R: ...
    @overload
    def execute_workflow(
        self, workflow: str | type[Any], /, *args: Any, **options: Unpack[ExecuteWorkflowOptions]
    ) -> Any: ...
    def execute_workflow(
        self,
        workflow: Any,
        *args: Any,
        id: str,
        task_list: str,  # noqa: A002
        result_timeout: float | None = None,
        result_type: Any = None,
        **options: Any,
    ) -> Any:
        """Start a workflow and wait for its result (following continue-as-new)."""
        self._conn.reader(self.settings.completions_topic)  # running before the start: no read back
        handle = self.start_workflow(workflow, *args, id=id, task_list=task_list, **options)
        return handle.result(timeout=result_timeout, result_type=result_type)

    # -- visibility (docs/visibility.md) ----------------------------------------------------------
    @property
    def visibility(self) -> Visibility:
        """The client's view of the visibility index (a reader of the topic starts on first use)."""
        if self._visibility is None:
            self._visibility = Visibility(self.settings, self.domain, self.data_converter)
        return self._visibility

    def list_workflows(self, query: str = "", *, page_size: int = 100) -> Iterator[WorkflowExecutionInfo]:
        """The runs of this domain that match `query` (Temporal's filter language, e.g.
        `WorkflowType = 'Order' AND ExecutionStatus = 'Running' ORDER BY StartTime DESC`), fetched
        `page_size` at a time. Raises `QueryError` (with the position) for a malformed query."""
        parse_query(query)  # a malformed query fails here, not at the first next()
        return self.visibility.list(query, page_size)

    def list_workflows_page(
        self, query: str = "", *, page_size: int = 100, next_page_token: bytes | None = None
    ) -> ListPage:
        """One page of `list_workflows`, and the token of the next (None on the last page)."""
        return self.visibility.list_page(query, page_size, next_page_token)

    def count_workflows(self, query: str = "", *, group_by: str | None = None) -> CountResult:
        """How many runs match; `group_by="ExecutionStatus"` also counts them per status."""
        return self.visibility.count(query, group_by)

    def get_handle(self, workflow_id: str, run_id: str | None = None) -> WorkflowHandle[Any]:
        """A handle to a workflow id (its latest run) or to one run of it."""
        return WorkflowHandle(self, workflow_id, run_id=run_id or None)

    def reset(
        self,
        workflow_id: str,
        to: int | str = "last_decision",
        *,
        run_id: str | None = None,
        reason: str = "",
        reapply_signals: bool = True,
    ) -> str:
        """Reset the workflow's current run (`run_id`, if given, must name it) to `to`: a
        DecisionTaskCompleted event id, "first_decision" or "last_decision". Returns the new run's
        id; see `WorkflowHandle.reset`."""
        return self.get_handle(workflow_id, run_id).reset(to, reason=reason, reapply_signals=reapply_signals)

    # -- update-with-start (docs/updates.md) ------------------------------------------------------
    def start_update_with_start(
        self,
        update: Any,
        *update_args: Any,
        start_workflow: Any,
        start_args: Sequence[Any] = (),
        id: str,  # noqa: A002
        task_list: str,
        id_conflict_policy: str = "USE_EXISTING",
        update_id: str | None = None,
        wait_for_stage: UpdateStage | str = UpdateStage.ACCEPTED,
        timeout: float = 30.0,
        **start_options: Any,
    ) -> UpdateHandle:
        """Start `start_workflow(*start_args)` as `id` and send it the update. `id_conflict_policy`:
        USE_EXISTING (a run of `id` is open: the update goes to it) or FAIL (raise the start's
        `WorkflowAlreadyStartedError`). Two steps, the start recorded first: not atomic."""
        if id_conflict_policy not in ("USE_EXISTING", "FAIL"):
            raise ValueError(f"id_conflict_policy must be USE_EXISTING or FAIL, not {id_conflict_policy!r}")
        self._conn.reader(self.settings.completions_topic)  # running before the start: no read back
        handle = self.start_workflow(start_workflow, *start_args, id=id, task_list=task_list, **start_options)
        try:
            handle.wait_started(timeout)
        except WorkflowAlreadyStartedError as err:
            running = err.cause_type is StartFailureCause.WORKFLOW_ALREADY_RUNNING
            if id_conflict_policy == "FAIL" or not running:
                raise
            handle = self.get_handle(id)
        return handle.start_update(
            update, *update_args, id=update_id, wait_for_stage=wait_for_stage, timeout=timeout
        )

    def execute_update_with_start(
        self, update: Any, *update_args: Any, result_type: Any = None, timeout: float = 30.0, **options: Any
    ) -> Any:
        """`start_update_with_start(..., wait_for_stage=COMPLETED)` and the update's result."""
        handle = self.start_update_with_start(
            update, *update_args, wait_for_stage=UpdateStage.COMPLETED, timeout=timeout, **options
        )
        return handle.result(timeout=timeout, result_type=result_type)


class UpdateHandle:
    """An update sent to a workflow (`WorkflowHandle.start_update`): `result()` waits for its outcome.

    The client drives the protocol (docs/updates.md): a validation (a QueryWorkflow with the
    update id, run on a worker; a rejection records nothing), then UpdateWorkflowExecution, which
    the history processor records once per update id and answers, as it answers the completion,
    on this client's query-results topic. Waiting re-sends the same update id now and then: the
    processor answers a known id from its state, so a lost answer or a restarted engine costs a
    retry, never a second execution."""

    #: Re-send the update this often while waiting for an answer.
    RESEND_EVERY_S = 5.0

    def __init__(
        self,
        client: Client,
        workflow_id: str,
        run_id: str,
        update_id: str,
        name: str,
        args: Sequence[Any],
    ) -> None:
        self.client = client
        self._conn = client.connection
        self.workflow_id = workflow_id
        self._run_id = run_id
        self.id = update_id
        self.name = name
        self._input = client.data_converter.args_to_payload(args)
        self._outcome: dict[str, Any] | None = None

    def _send(self, command: str, body: dict[str, Any]) -> None:
        self._conn.send(self.client.domain, self.workflow_id, self._run_id, (command, body))

    def _ask(self, answer_id: str, send: Callable[[], None], deadline: float, what: str) -> dict[str, Any]:
        """Send (again every RESEND_EVERY_S) until `answer_id` is answered."""
        results = self._conn.query_results
        self._conn.reader(self.client.settings.query_results_topic)
        while True:
            results.expect(answer_id)
            send()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"update {self.name!r} ({self.id}) of workflow {self.workflow_id!r}: no {what} answer", ""
                )
            answer = results.wait(answer_id, min(left, self.RESEND_EVERY_S))
            if answer is not None:
                return answer

    def accept(self, deadline: float) -> None:
        """Validate, then record the update (`start_update`); raises `UpdateRejectedError`."""
        validated_id = update_answer_id(self.id, "validated")
        validated = self._ask(
            validated_id,
            lambda: self._send(
                "QueryWorkflow",
                {
                    "query_id": validated_id,
                    "query_type": self.name,
                    "args": self._input,
                    "reply_topic": self.client.settings.query_results_topic,
                    "update_id": self.id,
                },
            ),
            deadline,
            "validation",
        )
        if validated["error"] is not None:
            cause = from_failure(_failure(validated["error"]))
            raise UpdateRejectedError(
                f"update {self.name!r} of workflow {self.workflow_id!r} rejected: {cause}", cause
            )
        self._conn.query_results.expect(update_answer_id(self.id, "completed"))
        accepted = self._ask(update_answer_id(self.id, "accepted"), self._send_update, deadline, "acceptance")
        if accepted["error"] is not None:
            cause = from_failure(_failure(accepted["error"]))
            raise UpdateRejectedError(
                f"update {self.name!r} of workflow {self.workflow_id!r} not accepted: {cause}", cause
            )

    def _send_update(self) -> None:
        client = self.client
        self._send(
            "UpdateWorkflowExecution",
            {
                "update_id": self.id,
                "update_name": self.name,
                "input": self._input,
                "identity": client.identity,
                "reply_topic": client.settings.query_results_topic,
            },
        )

    def wait_completed(self, deadline: float) -> dict[str, Any]:
        """The completion answer (a QueryResult record), waiting until `deadline` (monotonic)."""
        if self._outcome is None:
            completed = update_answer_id(self.id, "completed")
            results = self._conn.query_results
            results.expect(completed)
            answer = results.wait(completed, max(0.0, min(deadline - time.monotonic(), self.RESEND_EVERY_S)))
            if answer is None:  # not yet, or the answer was lost: ask again (answered from state)
                answer = self._ask(completed, self._send_update, deadline, "completion")
            self._outcome = answer
        return self._outcome

    def result(self, timeout: float | None = 30.0, result_type: Any = None) -> Any:
        """The update's result; `UpdateFailedError` (cause: the handler's error) if it raised."""
        outcome = self.wait_completed(time.monotonic() + (timeout if timeout is not None else 1e9))
        if outcome["error"] is not None:
            cause = from_failure(_failure(outcome["error"]))
            raise UpdateFailedError(
                f"update {self.name!r} of workflow {self.workflow_id!r} failed: {cause}", cause
            )
        return self.client.data_converter.from_payload(_record(outcome["result"]), result_type)


class WorkflowHandle(Generic[R]):
    """A workflow id (and maybe one run of it) to wait on, signal, query, cancel or terminate.

    `R`: the workflow's result type (`result()`), as type checkers see it."""

    def __init__(
        self,
        client: Client,
        workflow_id: str,
        *,
        run_id: str | None = None,
        start_request_id: str | None = None,
        result_type: Any = None,
        _new_start: bool = False,
    ) -> None:
        self.client = client
        self._conn = client.connection
        self.id = workflow_id
        #: The run this handle follows: given, or learned when the run is seen (None until then).
        self.run_id: str | None = run_id
        #: The run the handle was made for explicitly (commands target it); None = the current run.
        self._pinned_run_id = run_id
        self.start_request_id = start_request_id
        #: Type the result is decoded to when `result()` is not given one (the run method's return hint).
        self.result_type = result_type
        # The client keeps this id's outcomes while the handle lives (docs/protocol.md, "What a
        # client reads"); those written before are read back from their partition when needed.
        completions = self._conn.completions
        watching = completions.watch(client.domain, workflow_id)
        weakref.finalize(self, completions.unwatch, client.domain, workflow_id)
        #: True once no outcome this handle may wait for can be missing from the client's index:
        #: read back, or a start with a new request id (`_new_start`, made before it is sent) watched
        #: by a running reader, whose outcomes are all written after it (a given id may be a retry).
        self._complete = watching and _new_start

    def __repr__(self) -> str:
        return f"WorkflowHandle(id={self.id!r}, run_id={self.run_id!r})"

    # -- result ----------------------------------------------------------------------------------
    def result(self, timeout: float | None = None, *, follow_runs: bool = True, result_type: Any = None) -> R:
        """Wait for the run's outcome, following continue-as-new to the final run, and decode it.

        Raises `WorkflowFailureError` (status FAILED/CANCELED/TERMINATED/TIMED_OUT, cause = the
        failure), `WorkflowAlreadyStartedError` (this handle's start was rejected) or
        `kadence.TimeoutError` (a builtin `TimeoutError`) when `timeout` seconds pass first.
        """
        client, conn = self.client, self._conn
        conn.reader(client.settings.completions_topic)  # from its start on, this id's outcomes are kept
        deadline = _deadline(timeout)
        run_id = self._resolve_run(deadline)
        while True:
            outcome = self._wait(
                functools.partial(conn.completions.by_run, client.domain, self.id, run_id),
                deadline,
                f"run {run_id} of workflow {self.id!r} to close",
            )
            status = outcome["status"]
            if status in (CONTINUED_AS_NEW, "TERMINATED") and follow_runs and outcome["new_run_id"]:
                # (a terminated run that names a new run was reset into it: `reset`)
                run_id = outcome["new_run_id"]
                self.run_id = run_id
                continue
            if status == "COMPLETED":
                hint = result_type if result_type is not None else self.result_type
                result: R = client.data_converter.from_payload(_record(outcome["result"]), hint)
                return result
            if status in FAILED_STATUSES:
                cause: BaseException | None = from_failure(_failure(outcome["failure"]))
                if status == "CANCELED" and outcome["result"] is not None:  # details: the cancel reason
                    details = client.data_converter.from_payload(_record(outcome["result"]))
                    cause = CanceledError(f"workflow canceled: {details}", details=details)
                detail = outcome["reason"] or (str(cause) if cause is not None else "")
                raise WorkflowFailureError(
                    f"workflow {self.id!r} run {run_id} {status.lower().replace('_', ' ')}"
                    + (f": {detail}" if detail else ""),
                    cause,
                    status=status,
                )
            if status == CONTINUED_AS_NEW:  # follow_runs=False
                return None  # type: ignore[return-value]
            raise KadenceError(f"workflow {self.id!r} run {run_id}: unknown outcome status {status!r}")

    def _wait(self, probe: Callable[[], Any], deadline: float | None, what: str) -> Any:
        cond = self._conn.completions.condition(self.client.domain, self.id)
        recheck_at = time.monotonic() + OUTCOME_RECHECK_S
        while True:
            with cond:
                found = probe()
                if found is not None:
                    return found
                if self._complete:  # only what the reader reads from now on can answer
                    left = _remaining(deadline)
                    if left == 0.0:
                        raise TimeoutError(f"timed out waiting for {what}", "")
                    until_recheck = recheck_at - time.monotonic()
                    if until_recheck > 0:
                        cond.wait(until_recheck if left is None else min(left, until_recheck))
                        continue
            if not self._complete:
                self._read_back(deadline)
                continue
            # Nothing for OUTCOME_RECHECK_S: read this id's partition back once more. The embedded
            # broker's fetch can skip a record of a transaction still open when a later record is
            # fetched (docs/deviations.md 15); a read from the start of the partition finds it.
            recheck_at = time.monotonic() + OUTCOME_RECHECK_S
            left = _remaining(deadline)
            timeout = READ_BACK_TIMEOUT_S if left is None else min(max(left, 0.1), READ_BACK_TIMEOUT_S)
            if self._conn.read_back_outcomes(self.client.domain, self.id, timeout) and probe() is not None:
                log.warning(
                    "%s: found by reading its completions partition back, not by the live reader "
                    "(a fetch skipped it: docs/deviations.md 15)",
                    what,
                )

    def _read_back(self, deadline: float | None) -> None:
        """Once per handle: read back this id's outcomes written before the client kept them."""
        if self._complete:
            return
        left = _remaining(deadline)
        if left == 0.0:
            raise TimeoutError(f"timed out reading the outcomes of workflow {self.id!r}", "")
        timeout = READ_BACK_TIMEOUT_S if left is None else min(left, READ_BACK_TIMEOUT_S)
        self._conn.read_back_outcomes(self.client.domain, self.id, timeout)
        self._complete = True

    def wait_started(self, timeout: float | None = 30.0) -> str:
        """The run id of this handle's run once it is seen (its start recorded); raises
        `WorkflowAlreadyStartedError` when this handle's start was rejected."""
        self._conn.reader(self.client.settings.completions_topic)  # a rejection is an outcome there
        return self._resolve_run(_deadline(timeout))

    def _resolve_run(self, deadline: float | None) -> str:
        """The run id this handle follows: given; or the run its start request created; or the latest.

        The start request is matched in `completions` (outcomes carry the request id) and, every
        few seconds while waiting, in the history partition (WorkflowExecutionStarted.request_id),
        which also finds the run while it is still open.
        """
        if self.run_id:
            return self.run_id
        client = self.client
        completions = self._conn.completions
        cond = completions.condition(client.domain, self.id)
        # A start this handle made usually closes before anyone needs its open run: wait on the
        # completions index first and scan the history partition (a whole-partition read) later.
        next_scan = time.monotonic() + 0.5 if self.start_request_id else 0.0
        scan_every = 1.0
        while True:
            with cond:
                version = completions.version
                if self.start_request_id:
                    outcome = completions.by_request(client.domain, self.id, self.start_request_id)
                    if outcome is not None:
                        if outcome["status"] == START_REJECTED:
                            raise WorkflowAlreadyStartedError(
                                self.id,
                                outcome["reason"] or "start rejected",
                                outcome.get("start_failure_cause", "UNSPECIFIED"),
                            )
                        self.run_id = outcome["run_id"]
                        return self.run_id
            if self.start_request_id and not self._complete:
                self._read_back(deadline)  # the start may be older than the client's reader
                continue
            if time.monotonic() >= next_scan:
                run_id = self._run_from_history(deadline)
                if run_id:
                    self.run_id = run_id
                    return run_id
                next_scan = time.monotonic() + scan_every
                scan_every = min(scan_every * 2, 8.0)
            left = _remaining(deadline)
            if left == 0.0:
                raise TimeoutError(f"timed out waiting for workflow {self.id!r} to be seen", "")
            with cond:
                if completions.version == version:
                    cond.wait(min(0.5, left) if left is not None else 0.5)

    def _run_from_history(self, deadline: float | None) -> str | None:
        client = self.client
        events = self._conn.history_events(client.domain, self.id)
        started = [e for e in events if e["attributes"][0] == "WorkflowExecutionStarted"]
        if self.start_request_id:
            # the run this start made, or (signal-with-start) the open run that got its signal
            for event in events:
                kind, attrs = event["attributes"]
                if kind in ("WorkflowExecutionStarted", "WorkflowExecutionSignaled") and (
                    attrs["request_id"] == self.start_request_id
                ):
                    run_id: str = event["run_id"]
                    return run_id
            return None
        if started:
            last: str = started[-1]["run_id"]
            return last
        # No history for this id (e.g. history read elsewhere): the latest closed run seen.
        self._read_back(deadline)
        latest = self._conn.completions.latest_run(client.domain, self.id)
        return latest["run_id"] if latest is not None else None

    # -- commands --------------------------------------------------------------------------------
    def signal(
        self,
        name_or_method: Any,
        *args: Any,
        request_id: str | None = None,
        answer_timeout: float | None = ANSWER_TIMEOUT_S,
    ) -> None:
        """Send a signal (a @workflow.signal method or its name); `request_id` de-duplicates retries.
        Returns once the engine recorded it; raises `WorkflowNotFoundError` when no open run of the
        workflow id exists (answers: docs/protocol.md). `answer_timeout=None`: return once the
        command is delivered to the broker, without waiting for the engine (no error then)."""
        client = self.client
        self._send_answered(
            (
                "SignalWorkflowExecution",
                {
                    "signal_name": signal_name(name_or_method),
                    "input": client.data_converter.args_to_payload(args),
                    "identity": client.identity,
                    "request_id": request_id or new_request_id(),
                    "external": None,
                },
            ),
            answer_timeout,
        )

    def cancel(self, reason: str = "", answer_timeout: float | None = ANSWER_TIMEOUT_S) -> None:
        """Request cancellation: the workflow sees it and decides how to finish. Raises
        `WorkflowNotFoundError` when no open run of the workflow id exists."""
        client = self.client
        self._send_answered(
            (
                "RequestCancelWorkflowExecution",
                {
                    "cause": reason,
                    "identity": client.identity,
                    "request_id": new_request_id(),
                    "first_execution_run_id": "",
                    "external": None,
                },
            ),
            answer_timeout,
        )

    def terminate(
        self, reason: str = "", details: Any = None, answer_timeout: float | None = ANSWER_TIMEOUT_S
    ) -> None:
        """End the run at once (no workflow code runs); `details` is any converter-encodable value.
        Raises `WorkflowNotFoundError` when no open run of the workflow id exists."""
        client = self.client
        self._send_answered(
            (
                "TerminateWorkflowExecution",
                {
                    "reason": reason,
                    "details": client.data_converter.to_payload(details) if details is not None else None,
                    "identity": client.identity,
                    "first_execution_run_id": "",
                },
            ),
            answer_timeout,
        )

    def reset(
        self,
        to: int | str = "last_decision",
        *,
        reason: str = "",
        reapply_signals: bool = True,
        answer_timeout: float = ANSWER_TIMEOUT_S,
    ) -> str:
        """Make a new run from a prefix of the current run's history and terminate the current run
        if it is open; returns the new run's id (docs/protocol.md, "Reset").

        `to`: a DecisionTaskCompleted event id of the run, or "first_decision" / "last_decision".
        The new run decides again from that point. Signals received after it are recorded in the
        new run too unless `reapply_signals` is false; children started before it stay attached
        to the new run, those started after it get their parent close policy. Raises
        `WorkflowNotFoundError` when the workflow (or the pinned run, if not current) is not found,
        `KadenceError` when the engine refuses (no such decision, ...)."""
        if isinstance(to, bool) or not isinstance(to, (int, str)):
            raise TypeError(f"to must be an event id or 'first_decision' / 'last_decision', not {to!r}")
        point = "" if isinstance(to, int) else to.upper()
        if point and point not in ("FIRST_DECISION", "LAST_DECISION"):
            raise ValueError(f"to must be an event id or 'first_decision' / 'last_decision', not {to!r}")
        if isinstance(to, int) and to <= 0:
            raise ValueError(f"to must be a positive event id, not {to}")
        payload = (
            "ResetWorkflowExecution",
            {
                "reset_event_id": to if isinstance(to, int) else 0,
                "reset_point": point,
                "reason": reason,
                "identity": self.client.identity,
                "reapply_signals": reapply_signals,
            },
        )
        # Sent again with the same command id while no answer comes (an engine restart can lose
        # one): the engine recognises the repeat and answers with the run the first one made.
        command_id = new_command_id()
        for attempt in range(RESET_SENDS):
            try:
                answer = self._send_answered(payload, answer_timeout, command_id=command_id)
                break
            except _NoAnswer:
                if attempt == RESET_SENDS - 1:
                    raise
        assert answer is not None
        new_run_id: str = answer["reason"]  # an accepted command's answer names the run
        return new_run_id

    def _send_answered(
        self, payload: tuple[str, dict[str, Any]], timeout: float | None, command_id: str | None = None
    ) -> dict[str, Any] | None:
        """Send a signal, cancel request, terminate or reset and wait for the engine's answer
        (history.answers), which it returns (None when not waited for)."""
        conn, client = self._conn, self.client
        if timeout is None:
            conn.send(client.domain, self.id, self._pinned_run_id or "", payload)
            return None
        conn.reader(client.settings.completions_topic)
        command_id = command_id or new_command_id()
        conn.completions.expect_answer(command_id)
        conn.send(client.domain, self.id, self._pinned_run_id or "", payload, command_id=command_id)
        answer = conn.completions.wait_answer(command_id, timeout)
        what = f"{payload[0]} of workflow {self.id!r}"
        if answer is None:
            raise _NoAnswer(
                f"{what}: sent, but the engine did not answer within {timeout}s (is `kadence server` running?)"
            )
        if answer["status"] == NOT_FOUND:
            run = f" run {self._pinned_run_id}" if self._pinned_run_id else ""
            raise WorkflowNotFoundError(
                self.id, f"{what}{run} in domain {client.domain!r}: {answer['reason'] or 'not found'}"
            )
        if answer["status"] == REFUSED:
            raise KadenceError(f"{what} refused: {answer['reason']}")
        return answer

    def query(self, name_or_method: Any, *args: Any, timeout: float = 5.0, result_type: Any = None) -> Any:
        """Ask the run's workflow code (on a worker) for a value; raises `QueryError` on error or no
        answer."""
        client, conn = self.client, self._conn
        query_type = query_name(name_or_method)
        conn.reader(client.settings.query_results_topic)
        query_id = new_query_id()
        conn.query_results.expect(query_id)
        conn.send(
            client.domain,
            self.id,
            self._pinned_run_id or "",
            (
                "QueryWorkflow",
                {
                    "query_id": query_id,
                    "query_type": query_type,
                    "args": client.data_converter.args_to_payload(args),
                    "reply_topic": client.settings.query_results_topic,
                },
            ),
        )
        answer = conn.query_results.wait(query_id, timeout)
        if answer is None:
            raise QueryError(
                f"query {query_type!r} on workflow {self.id!r}: no answer within {timeout}s "
                "(is a worker polling the workflow's task list, and the engine running?)"
            )
        if answer["error"] is not None:
            cause = from_failure(_failure(answer["error"]))
            error = QueryError(f"query {query_type!r} on workflow {self.id!r} failed: {cause}")
            error.__cause__ = cause
            raise error
        return client.data_converter.from_payload(_record(answer["result"]), result_type)

    # -- updates (docs/updates.md) ----------------------------------------------------------------
    def execute_update(
        self,
        update: Any,
        *args: Any,
        id: str | None = None,  # noqa: A002 - Temporal's name
        timeout: float = 30.0,
        result_type: Any = None,
    ) -> Any:
        """Run the update `update` (a @workflow.update method or its name) and return its result.

        Raises `UpdateRejectedError` when the validator refuses it (nothing is recorded),
        `UpdateFailedError` when its handler raised, `TimeoutError` when `timeout` passes first.
        `id` de-duplicates: the same update id is accepted and run once, and asking again answers
        with the first outcome."""
        handle = self.start_update(
            update, *args, id=id, wait_for_stage=UpdateStage.COMPLETED, timeout=timeout
        )
        return handle.result(timeout=timeout, result_type=result_type)

    def start_update(
        self,
        update: Any,
        *args: Any,
        id: str | None = None,  # noqa: A002
        wait_for_stage: UpdateStage | str = UpdateStage.ACCEPTED,
        timeout: float = 30.0,
    ) -> UpdateHandle:
        """Validate and record the update, and return once it reached `wait_for_stage`: ACCEPTED
        (validated and in history; the handler may still run) or COMPLETED (its outcome is in)."""
        stage = UpdateStage(wait_for_stage)
        handle = UpdateHandle(
            self.client, self.id, self._pinned_run_id or "", id or new_request_id(), update_name(update), args
        )
        handle.accept(time.monotonic() + timeout)
        if stage is UpdateStage.COMPLETED:
            handle.wait_completed(time.monotonic() + timeout)
        return handle

    # -- reading history -------------------------------------------------------------------------
    def history(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """HistoryEvent records of this workflow id's runs, in log order (one run if `run_id`)."""
        events = self._conn.history_events(self.client.domain, self.id)
        run_id = run_id or self._pinned_run_id
        return [e for e in events if e["run_id"] == run_id] if run_id else events

    def describe(self, attempt_timeout: float = 5.0) -> dict[str, Any] | None:
        """The history (of the pinned run, else of every run) folded by the engine's reducer
        (`kadence.history.fold`), as `kadence.history.describe_state` summarises it, the fields
        `kadence describe` prints: status, run chain, history length and bytes, pending work.
        None when the workflow id has no history in this domain.

        While the run's decision task keeps failing, its retries are transient attempts that
        history does not record (docs/protocol.md): `decision_attempt` is then the engine's count,
        asked with the built-in DECISION_ATTEMPT_QUERY, and `decision_attempt_recorded` the one
        history shows (the engine not answering within `attempt_timeout` seconds leaves both at that
        one)."""
        state = fold(cast("list[HistoryEvent]", self.history()))
        summary = describe_state(state) if state is not None else None
        if summary is not None:
            self.count_decision_attempts(summary, attempt_timeout)
        return summary

    def count_decision_attempts(self, summary: dict[str, Any], timeout: float = 5.0) -> None:
        """Put the engine's attempt count of a failing decision task into a `describe` summary
        (see `describe`); `kadence describe` uses it too. Nothing to do for a run whose decision
        task is not failing."""
        if summary["decision_failure"] is None or summary["status"] != "RUNNING":
            return
        summary["decision_attempt_recorded"] = summary["decision_attempt"]
        try:
            live = self.query(DECISION_ATTEMPT_QUERY, timeout=timeout)
        except QueryError:
            return
        if isinstance(live, dict) and isinstance(live.get("attempt"), int):
            summary["decision_attempt"] = max(live["attempt"], summary["decision_attempt"])


__all__ = ["Client", "WorkflowHandle", "ClientConnection", "StartWorkflowOptions", "ExecuteWorkflowOptions"]
