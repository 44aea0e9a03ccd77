"""The engine's processors on a real broker, with the test playing the worker (raw records):
histories, tasks and outcomes are asserted record by record, independent of the SDK."""

from __future__ import annotations

import pytest

from kadence.processors.server import InProcessEngine
from tests.support.raw import Raw, close_with, complete, decide, payload, schedule_activity, start_child


@pytest.fixture
def engine(settings):
    with InProcessEngine(settings) as eng:
        yield eng


@pytest.fixture
def raw(settings, engine):
    r = Raw(settings)
    yield r
    r.close()


def test_workflow_with_one_activity(raw: Raw) -> None:
    raw.start("hello-1")
    d1 = raw.task("tl", "DecisionTask", "hello-1")
    assert d1["full_history"] and [e["attributes"][0] for e in d1["events"]] == [
        "WorkflowExecutionStarted",
        "DecisionTaskScheduled",
        "DecisionTaskStarted",
    ]
    decide(raw, d1, schedule_activity("1", "greet"))
    act = raw.task("tl", "ActivityTask", "hello-1")
    assert act["activity_type"] == "greet"
    raw.send(
        "hello-1",
        "RespondActivityTaskCompleted",
        {"task_token": act["task_token"], "result": payload(b'"hi"'), "identity": "t"},
        run_id=act["run_id"],
    )
    d2 = raw.task("tl", "DecisionTask", "hello-1", after=d1["started_event_id"])
    assert not d2["full_history"] and d2["previous_started_event_id"] == 3
    assert [e["event_id"] for e in d2["events"]] == [4, 5, 6, 7, 8, 9]
    decide(raw, d2, complete(b'"done"'))
    outcome = raw.outcome("hello-1")
    assert outcome["status"] == "COMPLETED" and outcome["result"]["data"] == b'"done"'
    assert raw.event_types("hello-1") == [
        "WorkflowExecutionStarted",
        "DecisionTaskScheduled",
        "DecisionTaskStarted",
        "DecisionTaskCompleted",
        "ActivityTaskScheduled",
        "ActivityTaskStarted",
        "ActivityTaskCompleted",
        "DecisionTaskScheduled",
        "DecisionTaskStarted",
        "DecisionTaskCompleted",
        "WorkflowExecutionCompleted",
    ]


def test_child_workflow_round_trip(raw: Raw) -> None:
    raw.start("parent-1")
    d1 = raw.task("tl", "DecisionTask", "parent-1")
    decide(raw, d1, start_child("child-1", task_list="kids"))
    child_task = raw.task("kids", "DecisionTask", "child-1")
    started = child_task["events"][0]["attributes"][1]
    assert started["parent"]["workflow_id"] == "parent-1" and started["parent"]["initiated_event_id"] == 5
    d2 = raw.task("tl", "DecisionTask", "parent-1", after=d1["started_event_id"])
    assert [e["attributes"][0] for e in d2["events"]][-3:] == [
        "ChildWorkflowExecutionStarted",
        "DecisionTaskScheduled",
        "DecisionTaskStarted",
    ]
    decide(raw, d2)  # nothing to do until the child closes
    decide(raw, child_task, complete(b"42"))
    d3 = raw.task("tl", "DecisionTask", "parent-1", after=d2["started_event_id"])
    closed = [e for e in d3["events"] if e["attributes"][0] == "ChildWorkflowExecutionCompleted"]
    assert closed and closed[0]["attributes"][1]["result"]["data"] == b"42"
    assert closed[0]["attributes"][1]["started_event_id"] > 0
    decide(raw, d3, complete())
    assert raw.outcome("parent-1")["status"] == "COMPLETED"


def test_parent_close_terminates_child(raw: Raw) -> None:
    raw.start("p2")
    d1 = raw.task("tl", "DecisionTask", "p2")
    decide(raw, d1, start_child("p2-child"), start_child("p2-abandoned", parent_close_policy="ABANDON"))
    raw.task("tl", "DecisionTask", "p2-child")
    raw.task("tl", "DecisionTask", "p2-abandoned")
    parent = close_with(raw, "tl", "p2", d1["started_event_id"], complete())
    assert parent["status"] == "COMPLETED"
    child = raw.outcome("p2-child")
    assert child["status"] == "TERMINATED" and "TERMINATE" in child["reason"]
    raw.wait_for(
        raw.settings.history_topic,
        lambda t: (
            t["workflow_id"] == "p2-child"
            and any(e["attributes"][0] == "WorkflowExecutionTerminated" for e in t["events"])
        ),
    )
    assert "WorkflowExecutionTerminated" not in raw.event_types("p2-abandoned")


def test_start_rejected_for_running_id(raw: Raw) -> None:
    raw.start("dup-1")
    raw.task("tl", "DecisionTask", "dup-1")
    request_id = raw.start("dup-1")
    rejected = raw.wait_for(raw.settings.completions_topic, lambda r: r["request_id"] == request_id)
    assert rejected["status"] == "START_REJECTED" and "already running" in rejected["reason"]


def _history_events(raw: Raw, workflow_id: str, count: int) -> list[dict]:
    raw.wait_for(
        raw.settings.history_topic,
        lambda t: any(e["workflow_id"] == workflow_id and e["event_id"] >= count for e in t["events"]),
    )
    return raw.events(workflow_id)


def _activity_tasks(raw: Raw, workflow_id: str) -> list[dict]:
    return [
        r["task"][1]
        for r in raw.read(raw.settings.tasks_topic("tl"), raw.settings.task_partitions)
        if r["task"][0] == "ActivityTask" and r["task"][1]["workflow_id"] == workflow_id
    ]


def test_eager_activity_is_not_dispatched_and_its_answer_is_recorded(raw: Raw) -> None:
    """docs/protocol.md "Eager activities": the prediction holds, so no ActivityTask is sent."""
    raw.start("eager-1")
    d1 = raw.task("tl", "DecisionTask", "eager-1")
    decide(raw, d1, schedule_activity("1", "greet", eager_scheduled_event_id=5))
    token = f"a/default/eager-1/{d1['run_id']}/5/1"
    raw.send(
        "eager-1",
        "RespondActivityTaskCompleted",
        {"task_token": token, "result": payload(b'"hi"'), "identity": "deciding-worker", "activity_id": "1"},
        run_id=d1["run_id"],
        command_id=f"{token}/eager-completed",
    )
    d2 = raw.task("tl", "DecisionTask", "eager-1", after=d1["started_event_id"])
    assert [(e["event_id"], e["attributes"][0]) for e in d2["events"]][:4] == [
        (4, "DecisionTaskCompleted"),
        (5, "ActivityTaskScheduled"),
        (6, "ActivityTaskStarted"),
        (7, "ActivityTaskCompleted"),
    ]
    assert d2["events"][2]["attributes"][1]["identity"] == "deciding-worker"
    assert d2["events"][3]["attributes"][1]["result"]["data"] == b'"hi"'
    decide(raw, d2, complete())
    assert raw.outcome("eager-1")["status"] == "COMPLETED"
    assert _activity_tasks(raw, "eager-1") == []


def test_eager_prediction_missed_dispatches_and_drops_the_eager_answers(raw: Raw) -> None:
    """A signal arrived while the decision task was out: every id shifted by one. Both activities
    are dispatched; the eager answer for activity 2 names event 6, which is activity 1's: refused
    by its activity id, so each activity's result is its own."""
    raw.start("eager-2")
    d1 = raw.task("tl", "DecisionTask", "eager-2")
    raw.send(
        "eager-2",
        "SignalWorkflowExecution",
        {"signal_name": "s", "input": None, "identity": "", "request_id": "sig", "external": None},
        run_id=d1["run_id"],
    )
    assert _history_events(raw, "eager-2", 4)[3]["attributes"][0] == "WorkflowExecutionSignaled"
    # the worker predicts 4 = DecisionTaskCompleted, so 5 and 6; they become 6 and 7
    decide(
        raw,
        d1,
        schedule_activity("1", "greet", eager_scheduled_event_id=5),
        schedule_activity("2", "greet", eager_scheduled_event_id=6),
    )
    run_id = d1["run_id"]
    for activity_id, predicted in (("1", 5), ("2", 6)):
        token = f"a/default/eager-2/{run_id}/{predicted}/1"
        raw.send(
            "eager-2",
            "RespondActivityTaskCompleted",
            {
                "task_token": token,
                "result": payload(f'"eager {activity_id}"'.encode()),
                "identity": "eager",
                "activity_id": activity_id,
            },
            run_id=run_id,
            command_id=f"{token}/eager-completed",
        )
    tasks = {}
    while len(tasks) < 2:
        tasks.update({t["activity_id"]: t for t in _activity_tasks(raw, "eager-2")})
    assert {a: t["scheduled_event_id"] for a, t in tasks.items()} == {"1": 6, "2": 7}
    for activity_id, task in sorted(tasks.items()):
        raw.send(
            "eager-2",
            "RespondActivityTaskCompleted",
            {
                "task_token": task["task_token"],
                "result": payload(f'"task {activity_id}"'.encode()),
                "identity": "dispatched",
                "activity_id": activity_id,
            },
            run_id=run_id,
        )
    events = _history_events(raw, "eager-2", 12)
    done = {
        e["attributes"][1]["scheduled_event_id"]: e["attributes"][1]["result"]["data"]
        for e in events
        if e["attributes"][0] == "ActivityTaskCompleted"
    }
    assert done == {6: b'"task 1"', 7: b'"task 2"'}


def test_eager_attempt_that_never_answers_times_out_on_its_heartbeat(raw: Raw) -> None:
    """The deciding worker died before its first heartbeat: the heartbeat deadline was armed at
    schedule time, as for a dispatched attempt (not only start-to-close, 60 s here)."""
    raw.start("eager-3")
    d1 = raw.task("tl", "DecisionTask", "eager-3")
    decide(
        raw,
        d1,
        schedule_activity(
            "1", "greet", timeout_ms=60_000, heartbeat_timeout_ms=500, eager_scheduled_event_id=5
        ),
    )
    timed_out = raw.wait_for(
        raw.settings.history_topic,
        lambda t: any(
            e["workflow_id"] == "eager-3"
            and e["attributes"][0] in ("ActivityTaskRetrying", "ActivityTaskTimedOut")
            for e in t["events"]
        ),
        timeout=15,
    )
    (event,) = [
        e
        for e in timed_out["events"]
        if e["attributes"][0] in ("ActivityTaskRetrying", "ActivityTaskTimedOut")
    ]
    assert (
        event["attributes"][1]["scheduled_event_id"] == 5
        and event["attributes"][1]["timeout_type"] == "HEARTBEAT"
    )
