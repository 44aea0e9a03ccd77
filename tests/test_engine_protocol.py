"""The engine's processors on a real broker, with the test playing the worker (raw records):
histories, tasks and outcomes are asserted record by record, independent of the SDK."""

from __future__ import annotations

import pytest

from processors.server import InProcessEngine
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
        "WorkflowExecutionStarted", "DecisionTaskScheduled", "DecisionTaskStarted"]
    decide(raw, d1, schedule_activity("1", "greet"))
    act = raw.task("tl", "ActivityTask", "hello-1")
    assert act["activity_type"] == "greet"
    raw.send("hello-1", "RespondActivityTaskCompleted", {"task_token": act["task_token"], "result": payload(b'"hi"'),
                                                         "identity": "t"}, run_id=act["run_id"])
    d2 = raw.task("tl", "DecisionTask", "hello-1", after=d1["started_event_id"])
    assert not d2["full_history"] and d2["previous_started_event_id"] == 3
    assert [e["event_id"] for e in d2["events"]] == [4, 5, 6, 7, 8, 9]
    decide(raw, d2, complete(b'"done"'))
    outcome = raw.outcome("hello-1")
    assert outcome["status"] == "COMPLETED" and outcome["result"]["data"] == b'"done"'
    assert raw.event_types("hello-1") == [
        "WorkflowExecutionStarted", "DecisionTaskScheduled", "DecisionTaskStarted", "DecisionTaskCompleted",
        "ActivityTaskScheduled", "ActivityTaskStarted", "ActivityTaskCompleted", "DecisionTaskScheduled",
        "DecisionTaskStarted", "DecisionTaskCompleted", "WorkflowExecutionCompleted"]


def test_child_workflow_round_trip(raw: Raw) -> None:
    raw.start("parent-1")
    d1 = raw.task("tl", "DecisionTask", "parent-1")
    decide(raw, d1, start_child("child-1", task_list="kids"))
    child_task = raw.task("kids", "DecisionTask", "child-1")
    started = child_task["events"][0]["attributes"][1]
    assert started["parent"]["workflow_id"] == "parent-1" and started["parent"]["initiated_event_id"] == 5
    d2 = raw.task("tl", "DecisionTask", "parent-1", after=d1["started_event_id"])
    assert [e["attributes"][0] for e in d2["events"]][-3:] == [
        "ChildWorkflowExecutionStarted", "DecisionTaskScheduled", "DecisionTaskStarted"]
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
    raw.wait_for(raw.settings.history_topic, lambda t: t["workflow_id"] == "p2-child" and any(
        e["attributes"][0] == "WorkflowExecutionTerminated" for e in t["events"]))
    assert "WorkflowExecutionTerminated" not in raw.event_types("p2-abandoned")


def test_start_rejected_for_running_id(raw: Raw) -> None:
    raw.start("dup-1")
    raw.task("tl", "DecisionTask", "dup-1")
    request_id = raw.start("dup-1")
    rejected = raw.wait_for(raw.settings.completions_topic, lambda r: r["request_id"] == request_id)
    assert rejected["status"] == "START_REJECTED" and "already running" in rejected["reason"]
