"""The Kadence client: start workflows and talk to running ones, over Kafka topics only.

Writes go to `<prefix>commands` (keyed by workflow id, murmur2 partitioner, idempotent producer,
flushed before the call returns). Outcomes come from `<prefix>completions` and query answers from
`<prefix>query-results`: each is read by one background consumer thread per client, started on
first use, assigned every partition from the beginning (the embedded broker's "latest" offset is
unreliable) and indexed in memory. `history()` and `describe()` read the one partition of
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
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import fields as dataclass_fields
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, Required, TypedDict, TypeVar, Unpack, cast, overload

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

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
    """One consumer thread over every partition of a topic, from the beginning, decoding records.

    It uses `assign` (no group membership, nothing committed). `caught_up` is set once every
    partition has reported end-of-partition once, as seen in fetch responses.
    """

    def __init__(
        self, settings: Settings, topic: str, record_type: str, on_record: Callable[[dict[str, Any]], None]
    ) -> None:
        self.topic = topic
        self._record_type = record_type
        self._on_record = on_record
        self._stop = threading.Event()
        self.caught_up = threading.Event()
        self._consumer = make_consumer(
            settings, settings.group(f"client-{uuid.uuid4().hex}"), **{"enable.partition.eof": True}
        )
        md = self._consumer.list_topics(topic, timeout=10).topics.get(topic)
        if md is None or md.error is not None or not md.partitions:
            self._consumer.close()
            raise KadenceError(
                f"topic {topic} does not exist; create the topics first (`kadence topics create`)"
            )
        self._partitions = sorted(md.partitions)
        self._at_eof: set[int] = set()
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in self._partitions])
        #: The topic's id, checked every READER_CHECK_S: another id (a broker that came back
        #: empty, the topic recreated) and the reader starts again from the beginning, where the
        #: new records are, instead of waiting at an offset the new topic has not reached.
        self._admin = make_admin(settings)
        self._topic_id = topic_id(self._admin, topic)
        self._checked_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"kadence-client-{topic}", daemon=True)
        self._thread.start()

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
                        if len(self._at_eof) == len(self._partitions):
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
                self._on_record(record)
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
            self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in self._partitions])
        self._topic_id = current

    def close(self) -> None:
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(5)


class _Completions:
    """Index of `WorkflowOutcome` records by run, by start request id and by workflow id."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self._by_run: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._by_request: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._by_workflow: dict[tuple[str, str], list[dict[str, Any]]] = {}
        #: Bumped on every new outcome: a waiter that saw version v sleeps only while it is still v.
        self.version = 0
        #: Answers (history.answers) to the commands this client waits for, by command id.
        self._wanted: set[str] = set()
        self._answers: dict[str, dict[str, Any]] = {}

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

    def add(self, outcome: dict[str, Any]) -> None:
        domain, wid = outcome["domain"], outcome["workflow_id"]
        with self.cond:
            if outcome["status"] in ANSWER_STATUSES:  # no run's outcome: kept only if awaited
                if outcome["request_id"] in self._wanted:
                    self._answers[outcome["request_id"]] = outcome
                    self.cond.notify_all()
                return
            if outcome["run_id"] and outcome["status"] != START_REJECTED:
                key = (domain, wid, outcome["run_id"])
                if key in self._by_run:  # a duplicate (redelivery, leaked aborted write): same record
                    return
                self._by_run[key] = outcome
            if outcome["request_id"]:
                # Runs continued from a start carry its request id too: the start's own run is the
                # chain's first (run_id == first_run_id), else the earliest seen.
                key = (domain, wid, outcome["request_id"])
                if key not in self._by_request or (
                    outcome["run_id"] and outcome["run_id"] == outcome["first_run_id"]
                ):
                    self._by_request[key] = outcome
            self._by_workflow.setdefault((domain, wid), []).append(outcome)
            self.version += 1
            self.cond.notify_all()

    def by_run(self, domain: str, wid: str, run_id: str) -> dict[str, Any] | None:
        return self._by_run.get((domain, wid, run_id))

    def by_request(self, domain: str, wid: str, request_id: str) -> dict[str, Any] | None:
        return self._by_request.get((domain, wid, request_id))

    def latest_run(self, domain: str, wid: str) -> dict[str, Any] | None:
        """The last closed run of the workflow id that does not continue into a run seen here."""
        outcomes = [o for o in self._by_workflow.get((domain, wid), []) if o["status"] != START_REJECTED]
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
                    reader = _TopicReader(self.settings, topic, "WorkflowOutcome", self.completions.add)
                else:
                    reader = _TopicReader(self.settings, topic, "QueryResult", self.query_results.add)
                self._readers[topic] = reader
            return reader

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
            consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
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
        self._conn.send(self.domain, id, "", ("StartWorkflowExecution", start))
        return WorkflowHandle(self, id, start_request_id=request_id, result_type=return_hint_of(workflow))

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
        reader = conn.reader(client.settings.completions_topic)
        deadline = _deadline(timeout)
        # Outcomes already in the topic are indexed before the history partition is consulted.
        left = _remaining(deadline)
        reader.caught_up.wait(min(left, 5.0) if left is not None else 5.0)
        run_id = self._resolve_run(deadline)
        while True:
            outcome = self._wait(
                functools.partial(conn.completions.by_run, client.domain, self.id, run_id),
                deadline,
                f"run {run_id} of workflow {self.id!r} to close",
            )
            status = outcome["status"]
            if status == CONTINUED_AS_NEW and follow_runs and outcome["new_run_id"]:
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
        cond = self._conn.completions.cond
        with cond:
            while True:
                found = probe()
                if found is not None:
                    return found
                left = _remaining(deadline)
                if left == 0.0:
                    raise TimeoutError(f"timed out waiting for {what}", "")
                cond.wait(left)

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
        # A start this handle made usually closes before anyone needs its open run: wait on the
        # completions index first and scan the history partition (a whole-partition read) later.
        next_scan = time.monotonic() + 0.5 if self.start_request_id else 0.0
        scan_every = 1.0
        while True:
            with completions.cond:
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
            if time.monotonic() >= next_scan:
                run_id = self._run_from_history()
                if run_id:
                    self.run_id = run_id
                    return run_id
                next_scan = time.monotonic() + scan_every
                scan_every = min(scan_every * 2, 8.0)
            left = _remaining(deadline)
            if left == 0.0:
                raise TimeoutError(f"timed out waiting for workflow {self.id!r} to be seen", "")
            with completions.cond:
                if completions.version == version:
                    completions.cond.wait(min(0.5, left) if left is not None else 0.5)

    def _run_from_history(self) -> str | None:
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

    def _send_answered(self, payload: tuple[str, dict[str, Any]], timeout: float | None) -> None:
        """Send a signal, cancel request or terminate and wait for the engine's answer (history.answers)."""
        conn, client = self._conn, self.client
        if timeout is None:
            conn.send(client.domain, self.id, self._pinned_run_id or "", payload)
            return
        conn.reader(client.settings.completions_topic)
        command_id = new_command_id()
        conn.completions.expect_answer(command_id)
        conn.send(client.domain, self.id, self._pinned_run_id or "", payload, command_id=command_id)
        answer = conn.completions.wait_answer(command_id, timeout)
        what = f"{payload[0]} of workflow {self.id!r}"
        if answer is None:
            raise KadenceError(
                f"{what}: sent, but the engine did not answer within {timeout}s (is `kadence server` running?)"
            )
        if answer["status"] == NOT_FOUND:
            run = f" run {self._pinned_run_id}" if self._pinned_run_id else ""
            raise WorkflowNotFoundError(
                self.id, f"{what}{run} in domain {client.domain!r}: {answer['reason'] or 'not found'}"
            )
        if answer["status"] == REFUSED:
            raise KadenceError(f"{what} refused: {answer['reason']}")

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

    def describe(self) -> dict[str, Any] | None:
        """The history (of the pinned run, else of every run) folded by the engine's reducer
        (`kadence.history.fold`), as `kadence.history.describe_state` summarises it, the fields
        `kadence describe` prints: status, run chain, history length and bytes, pending work.
        None when the workflow id has no history in this domain."""
        state = fold(cast("list[HistoryEvent]", self.history()))
        return describe_state(state) if state is not None else None


__all__ = ["Client", "WorkflowHandle", "ClientConnection", "StartWorkflowOptions", "ExecuteWorkflowOptions"]
