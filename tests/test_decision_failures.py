"""A decision task that keeps failing (issue 12, item 9), through the broker.

The first failure of a streak is recorded; the retries are transient attempts (docs/protocol.md,
"A run's history"): a retry that fails the same way writes nothing, and `describe` shows the
failure and the engine's attempt count. An attempt that completes is written with its
DecisionTaskScheduled(attempt N) and DecisionTaskStarted, exactly as its task carried them; a
new event (a signal) turns the transient phase into a normal decision task; a restart of the
engine does not stall the run.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from kadence import Replayer, workflow
from kadence.cli._present import describe_fields
from kadence.history import fold


@workflow.defn
class Known:
    @workflow.run
    async def run(self) -> str:
        return "ok"


@workflow.defn
class LateType:
    """Registered only by the worker that starts late; returns the time its code saw, and the
    signals it got."""

    def __init__(self) -> None:
        self.signals: list[str] = []

    @workflow.signal
    def note(self, text: str) -> None:
        self.signals.append(text)

    @workflow.run
    async def run(self) -> dict[str, Any]:
        return {"now": workflow.now().isoformat(), "signals": self.signals}


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["attributes"][0] for e in events]


def wait_attempts(handle: Any, at_least: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        summary = handle.describe()
        if summary is not None and summary["decision_failure"] and summary["decision_attempt"] >= at_least:
            return summary  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, summary
        time.sleep(0.3)


def finish_with_late_worker(handle: Any, worker: Any, task_list: str) -> dict[str, Any]:
    """Start a worker that registers LateType; the run completes; its history replays."""
    worker(task_list, workflows=[LateType])
    result: dict[str, Any] = handle.result(timeout=60)
    events = handle.history()
    Replayer([LateType]).replay(events)  # raises NondeterminismError on divergence
    # The completed attempt's Started, written with its Completed, is the one its code ran at.
    completed = [e for e in events if e["attributes"][0] == "DecisionTaskCompleted"][-1]
    started = next(e for e in events if e["event_id"] == completed["attributes"][1]["started_event_id"])
    assert datetime.fromisoformat(result["now"]) == datetime.fromtimestamp(started["timestamp"] / 1000, UTC)
    return result


def test_a_repeated_failure_is_recorded_once_and_describe_counts_the_attempts(client, worker) -> None:
    task_list = "late-type"
    first = worker(task_list, workflows=[Known])  # does not know LateType: UNKNOWN_TYPE each attempt
    handle = client.start_workflow(LateType.run, id="unknown-type", task_list=task_list)
    summary = wait_attempts(handle, 6)
    assert summary["status"] == "RUNNING"
    assert summary["decision_failure"]["cause"] == "UNKNOWN_TYPE"
    assert "LateType" in summary["decision_failure"]["message"]
    assert summary["decision_attempt_recorded"] == 2  # history: attempt 1 failed, attempt 2 is next
    history = handle.history()
    assert kinds(history).count("DecisionTaskFailed") == 1
    assert kinds(history) == [
        "WorkflowExecutionStarted",
        "DecisionTaskScheduled",
        "DecisionTaskStarted",
        "DecisionTaskFailed",
    ]
    fields = describe_fields(fold(history))  # what `kadence describe` folds before asking the engine
    assert fields["decision_failure"]["cause"] == "UNKNOWN_TYPE" and fields["decision_attempt"] == 2
    # Attempts go on (one per 10 s at most now), history does not grow.
    later = wait_attempts(handle, summary["decision_attempt"] + 1)
    assert later["history_length"] == 4 and len(handle.history()) == 4

    first.stop(5)  # else it may still own the run's task partition
    finish_with_late_worker(handle, worker, task_list)
    events = handle.history()
    assert kinds(events) == [
        "WorkflowExecutionStarted",
        "DecisionTaskScheduled",
        "DecisionTaskStarted",
        "DecisionTaskFailed",
        "DecisionTaskScheduled",
        "DecisionTaskStarted",
        "DecisionTaskCompleted",
        "WorkflowExecutionCompleted",
    ]
    scheduled = events[4]["attributes"][1]
    assert scheduled["attempt"] > later["decision_attempt"] - 1 >= 6  # the attempt that completed
    assert events[5]["attributes"][1]["scheduled_event_id"] == events[4]["event_id"]
    done = handle.describe()
    assert done["decision_failure"] is None and done["decision_attempt"] == 1


def test_a_signal_during_the_transient_attempts_makes_a_normal_decision_task(client, worker) -> None:
    task_list = "late-type-signal"
    first = worker(task_list, workflows=[Known])
    handle = client.start_workflow(LateType.run, id="signalled", task_list=task_list)
    wait_attempts(handle, 4)
    assert kinds(handle.history()).count("DecisionTaskFailed") == 1
    handle.signal(LateType.note, "hello")
    deadline = time.monotonic() + 30
    while kinds(handle.history()).count("DecisionTaskFailed") < 2:  # the normal task fails, recorded
        assert time.monotonic() < deadline, kinds(handle.history())
        time.sleep(0.2)
    events = handle.history()
    assert kinds(events)[4:8] == [
        "WorkflowExecutionSignaled",
        "DecisionTaskScheduled",
        "DecisionTaskStarted",
        "DecisionTaskFailed",
    ]
    assert events[5]["attributes"][1]["attempt"] == 2  # the recorded count: attempts 1 and 2 are in history
    wait_attempts(handle, 5)
    assert len(handle.history()) == 8  # the new streak's repeats are transient again

    first.stop(5)
    result = finish_with_late_worker(handle, worker, task_list)
    assert result["signals"] == ["hello"]


def test_a_restart_of_the_engine_mid_streak_does_not_stall_the_run(client, worker, engine, settings) -> None:
    from kadence.processors.server import InProcessEngine

    task_list = "late-type-restart"
    first = worker(task_list, workflows=[Known])
    handle = client.start_workflow(LateType.run, id="restarted", task_list=task_list)
    before = wait_attempts(handle, 5)["decision_attempt"]
    engine.stop()
    restarted = InProcessEngine(settings).start()
    try:
        after = wait_attempts(handle, before + 1)  # the store kept the count; attempts go on
        assert after["decision_attempt"] > before
        assert kinds(handle.history()).count("DecisionTaskFailed") == 1
        first.stop(5)
        finish_with_late_worker(handle, worker, task_list)
    finally:
        restarted.stop()
