"""Transient decision attempts, step by step, on the history processor in memory (no broker):
what each answer writes, what each task carries, and that the fold of what was written is the
processor's live state. The broker-level behaviour is in tests/test_decision_failures.py."""

from __future__ import annotations

from typing import Any

import pytest

import kadence.processors.history.processor as history_processor
from kadence.history import fold
from kadence.processors.history import HistoryProcessor
from kadence.processors.store import transient_key
from kadence.streams.serde import serde
from kadence.streams.settings import Settings
from tests.support.memory_context import ENGINE_SECRET, MemoryContext, in_record
from tests.test_reducer_property import start_cmd

SERDE = serde()


@pytest.fixture(autouse=True)
def _no_admin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history_processor, "ensure_topics", lambda *a, **k: None)


class Engine:
    def __init__(self) -> None:
        self.settings = Settings(partitions=1, engine_secret=ENGINE_SECRET)
        self.proc = HistoryProcessor(self.settings)
        self.ctx = MemoryContext()
        self.history: list[dict[str, Any]] = []
        self.n = 0

    def send(self, payload_type: str, attrs: dict[str, Any], after_ms: int = 10) -> list[dict[str, Any]]:
        """Process one command; returns the decision tasks it dispatched (new history is kept)."""
        self.n += 1
        self.ctx.now_ms += after_ms
        cmd = {
            "command_id": f"c{self.n}",
            "domain": "default",
            "workflow_id": "w",
            "run_id": "",
            "timestamp": 0,
            "payload": (payload_type, attrs),
        }
        record = in_record(
            self.settings.commands_topic,
            b"w",
            SERDE.encode("Command", cmd),
            timestamp_ms=self.ctx.now_ms,
            signed=True,
        )
        self.proc.process(record, self.ctx)
        return self._outputs()

    def punctuate(self, after_ms: int) -> list[dict[str, Any]]:
        """Let time pass; the processor's own commands (fires) are processed; returns the tasks."""
        self.ctx.now_ms += after_ms
        self.proc.punctuate(0, self.ctx)
        tasks = []
        for out in self.ctx.take():
            assert out.topic == self.settings.commands_topic
            self.n += 1
            record = in_record(out.topic, out.key, out.value, timestamp_ms=self.ctx.now_ms, signed=True)
            self.proc.process(record, self.ctx)
            tasks += self._outputs()
        return tasks

    def _outputs(self) -> list[dict[str, Any]]:
        tasks = []
        for out in self.ctx.take():
            if out.topic == self.settings.history_topic:
                self.history += SERDE.decode(out.value)[1]["events"]
            elif out.topic.startswith(self.settings.tasks_topic("")):
                tasks.append(SERDE.decode(out.value)[1]["task"][1])
        return tasks

    def failed(self, task: dict[str, Any], message: str) -> list[dict[str, Any]]:
        failure = {
            "type": "Boom",
            "message": message,
            "stack": "",
            "non_retryable": False,
            "details": None,
            "cause": None,
        }
        return self.send(
            "RespondDecisionTaskFailed",
            {
                "task_token": task["task_token"],
                "cause": "WORKFLOW_ERROR",
                "failure": failure,
                "identity": "wk",
            },
        )

    def kinds(self) -> list[str]:
        return [e["attributes"][0] for e in self.history]

    def live(self) -> Any:
        return self.proc.store.load(self.ctx.state, "default", "w")


def test_repeats_write_nothing_a_new_failure_and_the_completion_write_what_the_task_carried() -> None:
    e = Engine()
    (first,) = e.send(*start_cmd("ALLOW_DUPLICATE", "r1"))
    assert first["attempt"] == 1 and e.kinds()[-1] == "DecisionTaskStarted"

    # The first failure is recorded; attempt 2 goes out at once, transient.
    (second,) = e.failed(first, "boom")
    assert e.kinds()[3:] == ["DecisionTaskFailed"]
    assert second["attempt"] == 2 and second["full_history"]
    assert (second["scheduled_event_id"], second["started_event_id"]) == (5, 6)
    assert second["task_token"].endswith("/5/2") and second["history_length"] == 6
    carried = second["events"][-2:]
    assert [ev["event_id"] for ev in second["events"]] == [1, 2, 3, 4, 5, 6]
    assert [ev["attributes"][0] for ev in carried] == ["DecisionTaskScheduled", "DecisionTaskStarted"]
    assert carried[0]["attributes"][1]["attempt"] == 2

    # The same failure again: nothing written; attempt 3 at once, attempt 4 after the backoff.
    (third,) = e.failed(second, "boom")
    assert third["task_token"].endswith("/5/3") and len(e.history) == 4
    assert e.failed(third, "boom") == [] and len(e.history) == 4
    assert e.punctuate(1000) == []  # backoff of attempt 4: 1.6 s
    (fourth,) = e.punctuate(700)
    assert fourth["task_token"].endswith("/5/4") and len(e.history) == 4
    assert e.failed(third, "boom") == []  # a stale answer (attempt 3 is over)
    assert fold(e.history) == e.live()  # the live state is the fold of history

    # Another failure: the attempt's Scheduled and Started, as its task carried them, then Failed.
    assert e.failed(fourth, "another message") == []
    assert e.kinds()[4:] == ["DecisionTaskScheduled", "DecisionTaskStarted", "DecisionTaskFailed"]
    assert e.history[4:6] == fourth["events"][-2:]
    assert e.live().current.decision_failure == {"cause": "WORKFLOW_ERROR", "message": "another message"}
    (fifth,) = e.punctuate(4000)  # backoff of attempt 5: 3.2 s
    assert fifth["task_token"].endswith("/8/5")

    # The completion writes Scheduled(attempt 5)/Started (what the worker saw, time included).
    completed = e.send(
        "RespondDecisionTaskCompleted",
        {
            "task_token": fifth["task_token"],
            "decisions": [{"attributes": ("CompleteWorkflowExecutionDecision", {"result": None})}],
            "identity": "wk",
        },
        after_ms=500,
    )
    assert completed == []
    assert e.kinds()[7:] == [
        "DecisionTaskScheduled",
        "DecisionTaskStarted",
        "DecisionTaskCompleted",
        "WorkflowExecutionCompleted",
    ]
    assert e.history[7:9] == fifth["events"][-2:]
    assert e.history[9]["timestamp"] == e.ctx.now_ms > e.history[8]["timestamp"]
    assert [ev["event_id"] for ev in e.history] == list(range(1, 12))
    assert fold(e.history) == e.live()
    assert e.ctx.state.get(transient_key("default", "w")) is None  # nothing left behind


def test_a_signal_ends_the_transient_phase_and_a_timeout_repeats_silently() -> None:
    e = Engine()
    (first,) = e.send(*start_cmd("ALLOW_DUPLICATE", "r1"))
    (second,) = e.failed(first, "boom")
    (normal,) = e.send(
        "SignalWorkflowExecution",
        {"signal_name": "sig", "input": None, "identity": "", "request_id": "s1", "external": None},
    )
    assert e.kinds()[4:] == ["WorkflowExecutionSignaled", "DecisionTaskScheduled", "DecisionTaskStarted"]
    assert normal["task_token"].endswith("/6/2")  # the recorded attempt
    assert e.failed(second, "boom") == [] and len(e.history) == 7  # the transient answer is stale

    # The normal task times out (recorded); the transient retries time out silently.
    e.send("FireTimer", {"kind": "decision_timeout", "event_id": 6, "attempt": 2, "timer_id": ""})
    assert e.kinds()[-1] == "DecisionTaskTimedOut" and len(e.history) == 8
    out = e._outputs()
    assert out == []
    tasks = e.punctuate(10_000 + 10)  # start-to-close of the transient attempt 3 (10 s default)
    assert [t["attempt"] for t in tasks] == [4] and len(e.history) == 8
    assert fold(e.history) == e.live()


def test_a_store_without_the_attempt_retries_at_the_recorded_count_on_assignment() -> None:
    """A store rebuilt from history has no transient attempt: on assignment the run's retry is due
    at once, at the attempt history records (the count starts over; the run does not stall)."""
    e = Engine()
    (first,) = e.send(*start_cmd("ALLOW_DUPLICATE", "r1"))
    (second,) = e.failed(first, "boom")
    (third,) = e.failed(second, "boom")
    assert e.failed(third, "boom") == []  # attempt 4 waits for its backoff
    e.ctx.state.delete(transient_key("default", "w"))
    e.proc.on_assigned(0, e.ctx)
    assert e._outputs() == []
    (again,) = e.punctuate(50)
    assert again["task_token"].endswith("/5/2") and len(e.history) == 4
    # With the record kept (a restart on the same store), an outstanding attempt is sent again as is.
    e.proc.on_assigned(0, e.ctx)
    (resent,) = e._outputs()
    assert resent == again
