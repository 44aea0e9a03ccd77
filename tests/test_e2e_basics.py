"""Issue 3, end to end through the broker: SDK workflows and activities, the worker, the client
and the engine's processors. Each test asserts the outcome and the history events."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from kadence import activity, workflow
from kadence.failures import (
    ActivityError,
    ApplicationError,
    WorkflowAlreadyStartedError,
    WorkflowFailureError,
)


@activity.defn
def greet(name: str) -> str:
    return f"Hello, {name}!"


@activity.defn
def explode(reason: str) -> str:
    raise ValueError(f"exploded: {reason}")


@workflow.defn
class HelloWorkflow:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(greet, name, start_to_close_timeout=10)


@workflow.defn
class SignalQueryWorkflow:
    def __init__(self) -> None:
        self.names: list[str] = []
        self.done = False

    @workflow.signal
    def add_name(self, name: str) -> None:
        self.names.append(name)

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.query
    def names_so_far(self) -> list[str]:
        return list(self.names)

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.wait_condition(lambda: self.done)
        return self.names


@workflow.defn
class FailingActivityWorkflow:
    @workflow.run
    async def run(self) -> str:
        try:
            return await workflow.execute_activity(
                explode, "on purpose", start_to_close_timeout=timedelta(seconds=5)
            )
        except ActivityError as err:
            cause = err.cause
            assert isinstance(cause, ApplicationError)
            return f"caught {cause.type}: {cause.message}"


@workflow.defn
class WaitForeverWorkflow:
    @workflow.run
    async def run(self) -> str:
        try:
            await workflow.wait_condition(lambda: False)
        except asyncio.CancelledError:
            await workflow.execute_activity(greet, "cleanup", start_to_close_timeout=5)
            raise
        return "never"


def types_of(handle) -> list[str]:
    return [e["attributes"][0] for e in handle.history()]


def test_hello_workflow_with_one_activity(client, worker) -> None:
    worker("default", [HelloWorkflow], [greet])
    handle = client.start_workflow(HelloWorkflow.run, "Kadence", id="hello-1", task_list="default")
    assert handle.result(timeout=30) == "Hello, Kadence!"
    assert types_of(handle) == [
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


def test_signal_and_query(client, worker) -> None:
    worker("default", [SignalQueryWorkflow])
    handle = client.start_workflow(SignalQueryWorkflow.run, id="sq-1", task_list="default")
    handle.signal(SignalQueryWorkflow.add_name, "ada")
    handle.signal("add_name", "grace")
    for _ in range(100):
        if handle.query(SignalQueryWorkflow.names_so_far) == ["ada", "grace"]:
            break
    assert handle.query(SignalQueryWorkflow.names_so_far) == ["ada", "grace"]
    handle.signal(SignalQueryWorkflow.finish)
    assert handle.result(timeout=30) == ["ada", "grace"]
    signaled = [
        e["attributes"][1]["signal_name"]
        for e in handle.history()
        if e["attributes"][0] == "WorkflowExecutionSignaled"
    ]
    assert signaled == ["add_name", "add_name", "finish"]
    # Queries write nothing to history.
    assert "names_so_far" not in str(handle.history())


def test_activity_failure_is_a_typed_error(client, worker) -> None:
    worker("default", [FailingActivityWorkflow], [explode])
    result = client.execute_workflow(FailingActivityWorkflow.run, id="fail-1", task_list="default")
    assert result == "caught ValueError: exploded: on purpose"
    failed = [
        e["attributes"][1]
        for e in client.get_handle("fail-1").history()
        if e["attributes"][0] == "ActivityTaskFailed"
    ]
    assert failed[0]["failure"]["type"] == "ValueError" and "Traceback" in failed[0]["failure"]["stack"]


def test_duplicate_start_by_id_reuse_policy(client, worker) -> None:
    worker("default", [HelloWorkflow, SignalQueryWorkflow], [greet])
    running = client.start_workflow(SignalQueryWorkflow.run, id="dup", task_list="default")
    with pytest.raises(WorkflowAlreadyStartedError, match="already running"):
        client.start_workflow(SignalQueryWorkflow.run, id="dup", task_list="default").result(timeout=20)
    # TERMINATE_IF_RUNNING ends the running one and starts a new run.
    replacement = client.start_workflow(
        HelloWorkflow.run, "again", id="dup", task_list="default", id_reuse_policy="TERMINATE_IF_RUNNING"
    )
    assert replacement.result(timeout=30) == "Hello, again!"
    with pytest.raises(WorkflowFailureError) as err:
        running.result(timeout=20)
    assert err.value.status == "TERMINATED"
    # Closed COMPLETED: ALLOW_DUPLICATE_FAILED_ONLY and REJECT_DUPLICATE refuse, ALLOW_DUPLICATE admits.
    for policy in ("ALLOW_DUPLICATE_FAILED_ONLY", "REJECT_DUPLICATE"):
        with pytest.raises(WorkflowAlreadyStartedError):
            client.start_workflow(
                HelloWorkflow.run, "x", id="dup", task_list="default", id_reuse_policy=policy
            ).result(timeout=20)
    third = client.start_workflow(
        HelloWorkflow.run, "third", id="dup", task_list="default", id_reuse_policy="ALLOW_DUPLICATE"
    )
    assert third.result(timeout=30) == "Hello, third!"


def test_duplicate_request_id_is_a_no_op(client, worker) -> None:
    worker("default", [HelloWorkflow], [greet])
    first = client.start_workflow(
        HelloWorkflow.run, "once", id="req-1", task_list="default", request_id="same-request"
    )
    assert first.result(timeout=30) == "Hello, once!"
    again = client.start_workflow(
        HelloWorkflow.run, "once", id="req-1", task_list="default", request_id="same-request"
    )
    assert again.result(timeout=30) == "Hello, once!"
    starts = [e for e in first.history() if e["attributes"][0] == "WorkflowExecutionStarted"]
    assert len(starts) == 1


def test_terminate_and_cancel(client, worker) -> None:
    worker("default", [WaitForeverWorkflow], [greet])
    doomed = client.start_workflow(WaitForeverWorkflow.run, id="term-1", task_list="default")
    doomed.terminate("enough")
    with pytest.raises(WorkflowFailureError) as err:
        doomed.result(timeout=20)
    assert err.value.status == "TERMINATED"
    assert types_of(doomed)[-1] == "WorkflowExecutionTerminated"

    polite = client.start_workflow(WaitForeverWorkflow.run, id="cancel-1", task_list="default")
    polite.cancel("please stop")
    with pytest.raises(WorkflowFailureError) as err:
        polite.result(timeout=30)
    assert err.value.status == "CANCELED"
    kinds = types_of(polite)
    assert "WorkflowExecutionCancelRequested" in kinds and "ActivityTaskCompleted" in kinds  # cleanup ran
    assert kinds[-1] == "WorkflowExecutionCanceled"
