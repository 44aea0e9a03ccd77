"""Raw protocol helpers for integration tests: produce commands, read tasks/history/completions as
Avro records straight from the broker (the tests play the worker's or client's part)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import TopicPartition

from kadence.history.answers import ANSWER_STATUSES
from kadence.streams.clients import make_consumer, make_producer
from kadence.streams.serde import serde
from kadence.streams.settings import Settings
from kadence.streams.topics import ensure_topics, task_topic

SERDE = serde()
JSON = "json/plain"


def payload(data: bytes) -> dict[str, Any]:
    return {"encoding": JSON, "data": data}


class Raw:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = make_producer(settings)
        self._readers: dict[str, Any] = {}
        self._seen: dict[str, list[dict[str, Any]]] = {}

    def send(
        self,
        workflow_id: str,
        payload_type: str,
        attrs: dict[str, Any],
        run_id: str = "",
        domain: str = "default",
        command_id: str | None = None,
    ) -> None:
        record = {
            "command_id": command_id or uuid.uuid4().hex,
            "domain": domain,
            "workflow_id": workflow_id,
            "run_id": run_id,
            "timestamp": int(time.time() * 1000),
            "payload": (payload_type, attrs),
        }
        self.producer.produce(
            self.settings.commands_topic, key=workflow_id.encode(), value=SERDE.encode("Command", record)
        )
        self.producer.flush(10)

    def start(self, workflow_id: str, workflow_type: str = "W", task_list: str = "tl", **over: Any) -> str:
        request_id = over.pop("request_id", uuid.uuid4().hex)
        attrs = {
            "workflow_type": workflow_type,
            "task_list": task_list,
            "input": payload(b"[]"),
            "execution_timeout_ms": 0,
            "run_timeout_ms": 0,
            "task_timeout_ms": 0,
            "id_reuse_policy": "ALLOW_DUPLICATE_FAILED_ONLY",
            "retry_policy": None,
            "memo": {},
            "request_id": request_id,
            "identity": "test",
            "parent": None,
            "cron_schedule": "",
        }
        attrs.update(over)
        self.send(workflow_id, "StartWorkflowExecution", attrs, domain=over.get("domain", "default"))
        return request_id

    def _reader(self, topic: str, partitions: int) -> Any:
        if topic not in self._readers:
            consumer = make_consumer(self.settings, f"reader-{uuid.uuid4().hex}")
            consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
            self._readers[topic] = consumer
            self._seen[topic] = []
        return self._readers[topic]

    def read(self, topic: str, partitions: int | None = None) -> list[dict[str, Any]]:
        """Everything seen on `topic` so far (decoded), polling what is new."""
        consumer = self._reader(topic, partitions or self.settings.partitions)
        first = consumer.poll(0.02)
        while first is not None:
            for m in [first] + consumer.consume(500, 0):
                if m.error() is None:
                    self._seen[topic].append(SERDE.decode(m.value())[1])
            first = consumer.poll(0)
        return self._seen[topic]

    def wait_for(
        self,
        topic: str,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float = 20.0,
        partitions: int | None = None,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        checked = 0
        while time.monotonic() < deadline:
            records = self.read(topic, partitions)
            for rec in records[checked:]:
                if predicate(rec):
                    return rec
            checked = len(records)
        raise TimeoutError(f"no matching record on {topic} within {timeout}s")

    def task(
        self, task_list: str, kind: str, workflow_id: str, timeout: float = 20.0, after: int = 0
    ) -> dict[str, Any]:
        ensure_topics(self.settings, [task_topic(self.settings, task_list)])
        rec = self.wait_for(
            self.settings.tasks_topic(task_list),
            lambda r: (
                r["task"][0] == kind
                and r["task"][1]["workflow_id"] == workflow_id
                and r["task"][1].get("started_event_id", r["task"][1].get("scheduled_event_id", 0)) > after
            ),
            timeout,
            self.settings.task_partitions,
        )
        return rec["task"][1]

    def events(self, workflow_id: str, run_id: str | None = None) -> list[dict[str, Any]]:
        out: dict[tuple[str, int], dict[str, Any]] = {}
        for t in self.read(self.settings.history_topic):
            for e in t["events"]:
                if e["workflow_id"] == workflow_id and (run_id is None or e["run_id"] == run_id):
                    out.setdefault((e["run_id"], e["event_id"]), e)
        return sorted(out.values(), key=lambda e: (e["timestamp"], e["event_id"]))

    def event_types(self, workflow_id: str, run_id: str | None = None) -> list[str]:
        return [e["attributes"][0] for e in self.events(workflow_id, run_id)]

    def outcome(self, workflow_id: str, timeout: float = 20.0) -> dict[str, Any]:
        """The workflow's first outcome on `completions` (answers to signal/cancel/terminate
        commands share the topic: kadence.history.answers)."""
        return self.wait_for(
            self.settings.completions_topic,
            lambda r: r["workflow_id"] == workflow_id and r["status"] not in ANSWER_STATUSES,
            timeout,
        )

    def close(self) -> None:
        for consumer in self._readers.values():
            consumer.close()


def decide(raw: Raw, task: dict[str, Any], *decisions: tuple[str, dict[str, Any]]) -> None:
    raw.send(
        task["workflow_id"],
        "RespondDecisionTaskCompleted",
        {
            "task_token": task["task_token"],
            "decisions": [{"attributes": d} for d in decisions],
            "identity": "test",
            "force_new_decision": False,
        },
        run_id=task["run_id"],
        command_id=f"{task['task_token']}/completed",
    )


def close_with(
    raw: Raw,
    task_list: str,
    workflow_id: str,
    after: int,
    decision: tuple[str, dict[str, Any]],
    timeout: float = 20.0,
) -> dict[str, Any]:
    """Answer each new decision task with `decision` until the run closes (a close decision is
    refused with UNHANDLED_DECISION while new events keep arriving). Returns the outcome."""
    import time as _time

    deadline = _time.monotonic() + timeout
    task = raw.task(task_list, "DecisionTask", workflow_id, timeout=timeout, after=after)
    while _time.monotonic() < deadline:
        decide(raw, task, decision)
        after = task["started_event_id"]
        # Either the run closes, or the decision was refused and a new task comes: wait for
        # whichever happens (a fixed wait for the outcome failed on a slow machine).
        while _time.monotonic() < deadline:
            try:
                return raw.outcome(workflow_id, timeout=0.5)
            except TimeoutError:
                pass
            try:
                task = raw.task(task_list, "DecisionTask", workflow_id, timeout=0.5, after=after)
                break
            except TimeoutError:
                continue
    raise TimeoutError(f"{workflow_id} did not close")


def schedule_activity(
    activity_id: str, activity_type: str = "A", timeout_ms: int = 10_000, **over: Any
) -> tuple[str, dict[str, Any]]:
    attrs = {
        "activity_id": activity_id,
        "activity_type": activity_type,
        "task_list": "",
        "input": payload(b"[]"),
        "schedule_to_close_timeout_ms": 0,
        "schedule_to_start_timeout_ms": 0,
        "start_to_close_timeout_ms": timeout_ms,
        "heartbeat_timeout_ms": 0,
        "retry_policy": None,
    }
    attrs.update(over)
    return "ScheduleActivityTaskDecision", attrs


def complete(result: bytes = b'"ok"') -> tuple[str, dict[str, Any]]:
    return "CompleteWorkflowExecutionDecision", {"result": payload(result)}


def start_child(workflow_id: str, workflow_type: str = "C", **over: Any) -> tuple[str, dict[str, Any]]:
    attrs = {
        "domain": "",
        "workflow_id": workflow_id,
        "workflow_type": workflow_type,
        "task_list": "",
        "input": payload(b"[]"),
        "execution_timeout_ms": 0,
        "run_timeout_ms": 0,
        "task_timeout_ms": 0,
        "retry_policy": None,
        "memo": {},
        "parent_close_policy": "TERMINATE",
        "id_reuse_policy": "ALLOW_DUPLICATE_FAILED_ONLY",
        "control": "",
    }
    attrs.update(over)
    return "StartChildWorkflowExecutionDecision", attrs
