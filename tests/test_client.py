"""The client against a real broker: the commands it writes, and how it reads outcomes and answers.

No engine runs here: each test plays the engine's part by reading `commands` and producing the
`completions` / `query-results` / `history` records the protocol (docs/protocol.md) specifies.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from kadence import workflow
from kadence.client import Client, WorkflowHandle
from kadence.converter import default_converter
from kadence.failures import QueryError, TimeoutError, WorkflowAlreadyStartedError, WorkflowFailureError
from kadence.history import describe_state, fold
from kadence.streams.clients import make_consumer, make_producer, murmur2_partition
from kadence.streams.serde import TYPE_HEADER, serde
from kadence.streams.settings import Settings
from kadence.streams.topics import ensure_core_topics

pytestmark = pytest.mark.timeout(90)


@dataclass
class Greeting:
    text: str
    count: int


@workflow.defn
class Greeter:
    @workflow.run
    async def run(self, name: str) -> Greeting:
        return Greeting(f"hello {name}", 1)

    @workflow.signal(name="approve-order")
    def approve(self, who: str) -> None: ...

    @workflow.query
    def progress(self, verbose: str) -> dict[str, int]:
        return {}


@pytest.fixture
def client(settings: Settings):
    ensure_core_topics(settings)
    with Client(settings, identity="test-client") as c:
        yield c


class CommandReader:
    """Reads `commands` from the beginning, every partition, as the history processor would."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.consumer = make_consumer(settings, settings.group(f"reader-{uuid.uuid4().hex}"))
        self.consumer.assign(
            [TopicPartition(settings.commands_topic, p, OFFSET_BEGINNING) for p in range(settings.partitions)]
        )

    def next(self, timeout: float = 20.0) -> tuple[Any, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.consumer.poll(0.1)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            record_type, command = serde().decode(msg.value())
            assert record_type == "Command"
            return msg, command
        raise AssertionError(f"no command within {timeout}s")

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture
def commands(settings: Settings, client: Client):
    reader = CommandReader(settings)
    yield reader
    reader.close()


_PRODUCERS: dict[str, Any] = {}


@pytest.fixture(scope="module", autouse=True)
def _drop_producers():
    yield
    for producer in _PRODUCERS.values():
        producer.flush(5)
    _PRODUCERS.clear()  # before the session's broker stops, so no client retries a dead port


def produce(settings: Settings, topic: str, key: str, record_type: str, record: dict[str, Any]) -> None:
    """Produce one record as the engine would (one producer per broker: each new one costs ~0.5 s)."""
    producer = _PRODUCERS.get(settings.bootstrap)
    if producer is None:
        producer = _PRODUCERS[settings.bootstrap] = make_producer(settings)
    codec = serde()
    producer.produce(
        topic, key=key.encode(), value=codec.encode(record_type, record), headers=codec.headers(record_type)
    )
    assert producer.flush(10) == 0


def outcome(workflow_id: str, run_id: str, status: str, **fields: Any) -> dict[str, Any]:
    base = {
        "domain": "default",
        "workflow_id": workflow_id,
        "run_id": run_id,
        "first_run_id": run_id,
        "request_id": "",
        "status": status,
        "result": None,
        "failure": None,
        "new_run_id": "",
        "reason": "",
        "close_event_id": 0,
        "timestamp": int(time.time() * 1000),
        "workflow_type": "Greeter",
        "parent": None,
    }
    base.update(fields)
    return base


def unwrap(value: Any) -> Any:
    """Decoded unions of records are `(type name, record)` tuples; the converter takes the record."""
    return value[1] if isinstance(value, tuple) else value


def payload(value: Any) -> dict[str, Any]:
    return default_converter.to_payload(value)


# --- start ---------------------------------------------------------------------------------------


def test_start_workflow_produces_a_start_command(
    settings: Settings, client: Client, commands: CommandReader
) -> None:
    handle = client.start_workflow(
        Greeter.run,
        "world",
        3,
        id="order-17",
        task_list="orders",
        execution_timeout=60,
        run_timeout=timedelta(seconds=30.5),
        retry_policy=workflow.RetryPolicy(maximum_attempts=3),
        memo={"customer": "c-9"},
    )
    assert isinstance(handle, WorkflowHandle) and handle.id == "order-17" and handle.run_id is None
    msg, command = commands.next()
    assert msg.key() == b"order-17"
    assert msg.partition() == murmur2_partition(b"order-17", settings.partitions)
    assert dict(msg.headers())[TYPE_HEADER] == b"Command"
    assert len(command["command_id"]) == 32 and int(command["command_id"], 16) >= 0
    assert command["domain"] == "default" and command["workflow_id"] == "order-17" and command["run_id"] == ""
    assert abs(command["timestamp"] - time.time() * 1000) < 60_000
    kind, start = command["payload"]
    assert kind == "StartWorkflowExecution"
    assert start["workflow_type"] == "Greeter" and start["task_list"] == "orders"
    assert default_converter.args_from_payload(unwrap(start["input"])) == ["world", 3]
    assert start["execution_timeout_ms"] == 60_000 and start["run_timeout_ms"] == 30_500
    assert start["task_timeout_ms"] == 10_000
    assert start["id_reuse_policy"] == "ALLOW_DUPLICATE_FAILED_ONLY"
    assert unwrap(start["retry_policy"])["maximum_attempts"] == 3
    assert unwrap(start["retry_policy"])["initial_interval_ms"] == 1000
    assert default_converter.from_payload(unwrap(start["memo"]["customer"])) == "c-9"
    assert start["request_id"] == handle.start_request_id and len(start["request_id"]) == 32
    assert start["identity"] == "test-client" and start["parent"] is None

    # A type name and the class work too; an explicit request id is kept (it de-duplicates retries).
    client.start_workflow(
        "Other",
        id="o-2",
        task_list="t",
        request_id="req-fixed",
        id_reuse_policy=workflow.IdReusePolicy.REJECT_DUPLICATE,
    )
    client.start_workflow(Greeter, "x", id="o-3", task_list="t", retry_policy={"maximum_attempts": 2})
    seen = {}
    for _ in range(2):
        _, cmd = commands.next()
        seen[cmd["workflow_id"]] = cmd["payload"][1]
    assert seen["o-2"]["workflow_type"] == "Other" and seen["o-2"]["request_id"] == "req-fixed"
    assert seen["o-2"]["id_reuse_policy"] == "REJECT_DUPLICATE"
    assert seen["o-3"]["workflow_type"] == "Greeter"
    assert unwrap(seen["o-3"]["retry_policy"]) == {
        "initial_interval_ms": 1000,
        "backoff_coefficient": 2.0,
        "maximum_interval_ms": 0,
        "maximum_attempts": 2,
        "non_retryable_error_types": [],
        "expiration_ms": 0,
    }


def test_start_workflow_rejects_bad_options(client: Client) -> None:
    with pytest.raises(ValueError, match="id_reuse_policy"):
        client.start_workflow("W", id="x", task_list="t", id_reuse_policy="SOMETIMES")
    with pytest.raises(ValueError, match="unknown fields"):
        client.start_workflow("W", id="x", task_list="t", retry_policy={"max_attempts": 3})
    with pytest.raises(TypeError, match="not a workflow"):
        client.start_workflow(object(), id="x", task_list="t")


def test_connect_builds_settings(kafka_bootstrap: str) -> None:
    client = Client.connect(kafka_bootstrap, prefix="p1.", partitions=8, domain="billing", identity="me")
    assert client.settings.bootstrap == kafka_bootstrap and client.settings.prefix == "p1."
    assert client.settings.partitions == 8 and client.domain == "billing" and client.identity == "me"
    assert client.data_converter is default_converter
    client.close()


# --- result ----------------------------------------------------------------------------------------


def test_result_returns_the_decoded_result(settings: Settings, client: Client) -> None:
    handle = client.start_workflow("Greeter", "world", id="wf-ok", task_list="t")
    # An older run of the same id, closed before: not this handle's run.
    produce(
        settings,
        settings.completions_topic,
        "wf-ok",
        "WorkflowOutcome",
        outcome("wf-ok", "old-run", "COMPLETED", result=payload("stale"), request_id="other"),
    )
    produce(
        settings,
        settings.completions_topic,
        "wf-ok",
        "WorkflowOutcome",
        outcome(
            "wf-ok",
            "run-1",
            "COMPLETED",
            result=payload({"greeting": "hello world"}),
            request_id=handle.start_request_id,
        ),
    )
    assert handle.result(timeout=20) == {"greeting": "hello world"}
    assert handle.run_id == "run-1"
    # A handle to a run by id reads the same outcome.
    assert client.get_handle("wf-ok", run_id="old-run").result(timeout=10) == "stale"


def test_result_is_decoded_to_the_run_methods_return_type(settings: Settings, client: Client) -> None:
    handle = client.start_workflow(Greeter.run, "ada", id="wf-typed", task_list="t")
    produce(
        settings,
        settings.completions_topic,
        "wf-typed",
        "WorkflowOutcome",
        outcome(
            "wf-typed",
            "run-1",
            "COMPLETED",
            result=payload(Greeting("hello ada", 2)),
            request_id=handle.start_request_id,
        ),
    )
    assert handle.result(timeout=20) == Greeting("hello ada", 2)
    assert client.get_handle("wf-typed", run_id="run-1").result(timeout=5) == {
        "text": "hello ada",
        "count": 2,
    }


def test_result_follows_continue_as_new(settings: Settings, client: Client) -> None:
    handle = client.start_workflow("Greeter", id="wf-can", task_list="t")
    # The last run's outcome arrives first: order in the topic does not matter.
    produce(
        settings,
        settings.completions_topic,
        "wf-can",
        "WorkflowOutcome",
        outcome("wf-can", "run-3", "COMPLETED", first_run_id="run-1", result=payload(3)),
    )
    produce(
        settings,
        settings.completions_topic,
        "wf-can",
        "WorkflowOutcome",
        outcome(
            "wf-can", "run-1", "CONTINUED_AS_NEW", new_run_id="run-2", request_id=handle.start_request_id
        ),
    )
    produce(
        settings,
        settings.completions_topic,
        "wf-can",
        "WorkflowOutcome",
        outcome("wf-can", "run-2", "CONTINUED_AS_NEW", first_run_id="run-1", new_run_id="run-3"),
    )
    assert handle.result(timeout=20) == 3
    assert handle.run_id == "run-3"
    assert client.get_handle("wf-can", run_id="run-1").result(timeout=5, follow_runs=False) is None


def test_result_raises_workflow_failure_with_cause(settings: Settings, client: Client) -> None:
    handle = client.start_workflow("Greeter", id="wf-fail", task_list="t")
    failure = {
        "type": "ValueError",
        "message": "card declined",
        "stack": "Traceback ...",
        "non_retryable": True,
        "details": None,
        "cause": {
            "type": "IOError",
            "message": "gateway down",
            "stack": "",
            "non_retryable": False,
            "details": None,
            "cause": None,
        },
    }
    produce(
        settings,
        settings.completions_topic,
        "wf-fail",
        "WorkflowOutcome",
        outcome("wf-fail", "run-f", "FAILED", failure=failure, request_id=handle.start_request_id),
    )
    with pytest.raises(WorkflowFailureError) as info:
        handle.result(timeout=20)
    err = info.value
    assert err.status == "FAILED" and "card declined" in str(err)
    assert err.cause.type == "ValueError" and err.cause.message == "card declined" and err.cause.non_retryable
    assert err.cause.__cause__.type == "IOError" and err.cause.__cause__.message == "gateway down"

    produce(
        settings,
        settings.completions_topic,
        "wf-term",
        "WorkflowOutcome",
        outcome("wf-term", "run-t", "TERMINATED", reason="operator said so"),
    )
    with pytest.raises(WorkflowFailureError, match="operator said so") as info:
        client.get_handle("wf-term", run_id="run-t").result(timeout=20)
    assert info.value.status == "TERMINATED"


def test_result_raises_already_started_for_its_rejected_request(settings: Settings, client: Client) -> None:
    first = client.start_workflow("Greeter", id="wf-dup", task_list="t")
    second = client.start_workflow("Greeter", id="wf-dup", task_list="t", id_reuse_policy="REJECT_DUPLICATE")
    produce(
        settings,
        settings.completions_topic,
        "wf-dup",
        "WorkflowOutcome",
        outcome(
            "wf-dup",
            "",
            "START_REJECTED",
            first_run_id="",
            request_id=second.start_request_id,
            reason="workflow is already running",
        ),
    )
    with pytest.raises(WorkflowAlreadyStartedError, match="already running") as info:
        second.result(timeout=20)
    assert info.value.workflow_id == "wf-dup"
    # The other start of the same id is not affected by that rejection.
    with pytest.raises(TimeoutError):
        first.result(timeout=1.5)


def test_result_of_a_handle_without_run_id_uses_the_latest_run_in_history(
    settings: Settings, client: Client
) -> None:
    wid = "wf-latest"
    for run_id, first_id in (("run-a", 1), ("run-b", 1)):
        produce(
            settings,
            settings.history_topic,
            wid,
            "HistoryTransition",
            transition(wid, [started_event(wid, run_id, first_id)]),
        )
    produce(
        settings,
        settings.completions_topic,
        wid,
        "WorkflowOutcome",
        outcome(wid, "run-a", "COMPLETED", result=payload("a")),
    )
    produce(
        settings,
        settings.completions_topic,
        wid,
        "WorkflowOutcome",
        outcome(wid, "run-b", "COMPLETED", result=payload("b")),
    )
    handle = client.get_handle(wid)
    assert handle.result(timeout=20) == "b" and handle.run_id == "run-b"


# --- queries -------------------------------------------------------------------------------------


def _answer_next_query(settings: Settings, commands: CommandReader, answer: dict[str, Any]) -> dict[str, Any]:
    msg, command = commands.next()
    kind, query = command["payload"]
    assert kind == "QueryWorkflow"
    produce(
        settings,
        query["reply_topic"],
        query["query_id"],
        "QueryResult",
        {"query_id": query["query_id"], **answer},
    )
    return {"key": msg.key(), "command": command, "query": query}


def test_query_returns_the_answer(settings: Settings, client: Client, commands: CommandReader) -> None:
    handle = client.get_handle("wf-q")
    seen: dict[str, Any] = {}
    # Another client's answer on the same topic (a different query id) must not be taken.
    produce(
        settings,
        settings.query_results_topic,
        "someone-else",
        "QueryResult",
        {"query_id": "someone-else", "result": payload("wrong"), "error": None},
    )
    responder = threading.Thread(
        target=lambda: seen.update(
            _answer_next_query(settings, commands, {"result": payload({"step": 4}), "error": None})
        )
    )
    responder.start()
    assert handle.query(Greeter.progress, "verbose", timeout=20) == {"step": 4}
    responder.join()
    assert seen["key"] == b"wf-q" and seen["command"]["workflow_id"] == "wf-q"
    assert seen["query"]["query_type"] == "progress"
    assert seen["query"]["reply_topic"] == settings.query_results_topic
    assert default_converter.args_from_payload(unwrap(seen["query"]["args"])) == ["verbose"]


def test_query_error_and_timeout_raise_query_error(
    settings: Settings, client: Client, commands: CommandReader
) -> None:
    handle = client.get_handle("wf-q2")
    error = {
        "type": "KeyError",
        "message": "unknown query type 'nope'",
        "stack": "",
        "non_retryable": True,
        "details": None,
        "cause": None,
    }
    responder = threading.Thread(
        target=_answer_next_query, args=(settings, commands, {"result": None, "error": error})
    )
    responder.start()
    with pytest.raises(QueryError, match="unknown query type 'nope'") as info:
        handle.query("nope", timeout=20)
    responder.join()
    assert info.value.__cause__.type == "KeyError"

    started = time.monotonic()
    with pytest.raises(QueryError, match=r"no answer within 0.5s"):
        handle.query("progress", timeout=0.5)
    assert time.monotonic() - started < 10


# --- signal / cancel / terminate -----------------------------------------------------------------


def test_signal_cancel_terminate_produce_their_commands(
    settings: Settings, client: Client, commands: CommandReader
) -> None:
    handle = client.get_handle("wf-s")
    # no engine runs here: the commands are read back as sent (answers: tests/test_not_found.py)
    handle.signal(Greeter.approve, "alice", request_id="sig-1", answer_timeout=None)
    handle.signal("poke", answer_timeout=None)
    handle.cancel("customer asked", answer_timeout=None)
    handle.terminate("stuck", details={"ticket": 42}, answer_timeout=None)
    client.get_handle("wf-s", run_id="run-9").cancel(answer_timeout=None)

    got = [commands.next() for _ in range(5)]
    for msg, command in got:
        assert msg.key() == b"wf-s" and msg.partition() == murmur2_partition(b"wf-s", settings.partitions)
        assert command["workflow_id"] == "wf-s" and command["domain"] == "default"
    (_, sig), (_, poke), (_, cancel), (_, term), (_, cancel_run) = got
    assert sig["payload"][0] == "SignalWorkflowExecution" and sig["run_id"] == ""
    assert sig["payload"][1]["signal_name"] == "approve-order" and sig["payload"][1]["request_id"] == "sig-1"
    assert default_converter.args_from_payload(unwrap(sig["payload"][1]["input"])) == ["alice"]
    assert sig["payload"][1]["identity"] == "test-client"
    assert poke["payload"][1]["signal_name"] == "poke" and len(poke["payload"][1]["request_id"]) == 32
    assert cancel["payload"] == (
        "RequestCancelWorkflowExecution",
        {
            "cause": "customer asked",
            "identity": "test-client",
            "request_id": cancel["payload"][1]["request_id"],
            "first_execution_run_id": "",
            "external": None,
        },
    )
    assert term["payload"][0] == "TerminateWorkflowExecution" and term["payload"][1]["reason"] == "stuck"
    assert default_converter.from_payload(unwrap(term["payload"][1]["details"])) == {"ticket": 42}
    assert cancel_run["run_id"] == "run-9"
    assert len({c["command_id"] for _, c in got}) == 5


# --- history / describe --------------------------------------------------------------------------


def event(wid: str, run_id: str, event_id: int, kind: str, attrs: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "timestamp": 1_700_000_000_000 + event_id,
        "domain": "default",
        "workflow_id": wid,
        "run_id": run_id,
        "attributes": (kind, attrs),
    }


def started_event(wid: str, run_id: str, event_id: int = 1, request_id: str = "") -> dict[str, Any]:
    return event(
        wid,
        run_id,
        event_id,
        "WorkflowExecutionStarted",
        {
            "workflow_type": "Greeter",
            "task_list": "t",
            "input": None,
            "execution_timeout_ms": 0,
            "run_timeout_ms": 0,
            "task_timeout_ms": 10000,
            "retry_policy": None,
            "memo": {},
            "request_id": request_id,
            "identity": "",
            "first_run_id": run_id,
            "continued_execution_run_id": "",
            "parent": None,
            "attempt": 1,
            "execution_deadline_ms": 0,
            "initiator": "",
            "continued_failure": None,
            "last_completion_result": None,
        },
    )


def transition(wid: str, events: list[dict[str, Any]], domain: str = "default") -> dict[str, Any]:
    return {
        "domain": domain,
        "workflow_id": wid,
        "command_id": uuid.uuid4().hex,
        "source_partition": 0,
        "source_offset": 0,
        "events": events,
    }


def _full_event(wid: str, run_id: str, event_id: int, kind: str, **attrs: Any) -> dict[str, Any]:
    """An event with every attribute field filled from the schema defaults plus `attrs`."""
    from kadence import schemas

    raw = schemas.registry().raw[kind]
    filled: dict[str, Any] = {}
    for f in raw["fields"]:
        if f["name"] in attrs:
            filled[f["name"]] = attrs[f["name"]]
        elif "default" in f:
            filled[f["name"]] = f["default"]
        else:
            filled[f["name"]] = 0 if f["type"] in ("long", "int") else ""
    return event(wid, run_id, event_id, kind, filled)


def test_history_and_describe_read_the_owning_partition(settings: Settings, client: Client) -> None:
    wid = "wf-hist"
    e = _full_event
    run1 = [
        started_event(wid, "r1", 1, request_id="req-h"),
        e(wid, "r1", 2, "ActivityTaskScheduled", activity_id="1", activity_type="charge", task_list="t"),
        e(
            wid,
            "r1",
            3,
            "WorkflowExecutionContinuedAsNew",
            new_execution_run_id="r2",
            workflow_type="Greeter",
            task_list="t",
        ),
    ]
    run2 = [
        started_event(wid, "r2", 1),
        e(wid, "r2", 2, "ActivityTaskScheduled", activity_id="1", activity_type="charge", task_list="t"),
        e(wid, "r2", 3, "ActivityTaskScheduled", activity_id="2", activity_type="ship", task_list="t"),
        e(wid, "r2", 4, "ActivityTaskCompleted", scheduled_event_id=2, started_event_id=0),
        e(
            wid,
            "r2",
            5,
            "StartChildWorkflowExecutionInitiated",
            domain="default",
            workflow_id="child",
            workflow_type="C",
            task_list="t",
            parent_close_policy="TERMINATE",
            id_reuse_policy="ALLOW_DUPLICATE_FAILED_ONLY",
        ),
        e(wid, "r2", 6, "TimerStarted", timer_id="t1", start_to_fire_timeout_ms=1000),
    ]
    produce(settings, settings.history_topic, wid, "HistoryTransition", transition(wid, run1[:2]))
    produce(settings, settings.history_topic, wid, "HistoryTransition", transition(wid, run1[2:] + run2[:1]))
    produce(settings, settings.history_topic, wid, "HistoryTransition", transition(wid, run2[1:]))
    # Duplicates (a redelivered transition), another domain and another workflow id are not its history.
    produce(settings, settings.history_topic, wid, "HistoryTransition", transition(wid, run2[1:]))
    produce(
        settings, settings.history_topic, wid, "HistoryTransition", transition(wid, run1[:1], domain="other")
    )
    other = next(
        f"other-{i}"
        for i in range(1000)
        if murmur2_partition(f"other-{i}".encode(), settings.partitions)
        == murmur2_partition(wid.encode(), settings.partitions)
    )
    produce(
        settings,
        settings.history_topic,
        other,
        "HistoryTransition",
        transition(other, [started_event(other, "x1")]),
    )

    handle = client.get_handle(wid)
    events = handle.history()
    assert [(ev["run_id"], ev["event_id"]) for ev in events] == [("r1", 1), ("r1", 2), ("r1", 3)] + [
        ("r2", i) for i in range(1, 7)
    ]
    assert events[0]["attributes"][0] == "WorkflowExecutionStarted"
    assert [ev["event_id"] for ev in handle.history(run_id="r1")] == [1, 2, 3]

    # describe() folds the history with the engine's reducer, as `kadence describe` does.
    summary = handle.describe()
    assert summary is not None and summary == describe_state(fold(events))
    assert summary["workflow_id"] == wid and summary["domain"] == "default"
    assert summary["workflow_type"] == "Greeter"
    assert summary["status"] == "RUNNING" and summary["run_id"] == "r2" and summary["chain"] == ["r1", "r2"]
    assert summary["pending_activities"] == 1 and summary["pending_children"] == ["child"]
    assert summary["pending_timers"] == 1 and summary["history_length"] == 6
    assert summary["decision_outstanding"] is False and summary["close"] is None
    pinned = client.get_handle(wid, run_id="r1").describe()
    assert pinned is not None and pinned["run_id"] == "r1" and pinned["chain"] == ["r1"]
    assert pinned["status"] == "CONTINUED_AS_NEW" and pinned["close"] == "WorkflowExecutionContinuedAsNew"
    assert pinned["pending_activities"] == 1 and pinned["history_length"] == 3

    # A start handle finds its run in history by its request id while the run is still open.
    start_handle = WorkflowHandle(client, wid, start_request_id="req-h")
    with pytest.raises(TimeoutError):
        start_handle.result(timeout=5)  # room for the history scan on a slow machine; the run stays open
    assert start_handle.run_id == "r1"


def test_describe_of_a_workflow_id_without_history(client: Client) -> None:
    assert client.get_handle("never-started").history() == []
    assert client.get_handle("never-started").describe() is None
