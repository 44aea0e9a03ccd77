"""Child workflows, external signals/cancels and child cancellation types on hand-built histories."""

from __future__ import annotations

import asyncio
import json

import pytest

from kadence import workflow
from kadence.failures import ChildWorkflowError, WorkflowAlreadyStartedError, to_failure
from kadence.testing import WorkflowDriver


def kinds(decisions: list[dict]) -> list[str]:
    return [d["attributes"][0] for d in decisions]


def attrs(decision: dict) -> dict:
    return decision["attributes"][1]


def result_of(decision: dict):
    assert decision["attributes"][0] == "CompleteWorkflowExecutionDecision", decision
    return json.loads(attrs(decision)["result"]["data"])


@workflow.defn
class Child:
    @workflow.run
    async def run(self, x: int) -> int:
        return x * 2

    @workflow.signal
    def poke(self, v: str) -> None:
        pass


@workflow.defn
class Parent:
    @workflow.run
    async def run(self) -> list:
        handle = await workflow.start_child_workflow(Child.run, 21, id="kid", task_list="kids")
        await handle.signal(Child.poke, "hi")
        out: list = [handle.id, handle.run_id, await handle.result()]
        try:
            await workflow.execute_child_workflow("Child", 1)
        except ChildWorkflowError as err:
            out += [type(err.cause).__name__, err.cause.type, err.cause.message]
        return out


def test_child_start_started_signal_completed_failed() -> None:
    d = WorkflowDriver(Parent)
    (start,) = d.decide()
    a = attrs(start)
    assert kinds([start]) == ["StartChildWorkflowExecutionDecision"]
    assert (a["workflow_id"], a["workflow_type"], a["task_list"], a["parent_close_policy"]) == (
        "kid",
        "Child",
        "kids",
        "TERMINATE",
    )
    assert d.next() == []  # not started yet: no handle
    d.builder.child_started("kid", "kid-run")
    (sig,) = d.next()
    assert attrs(sig)["workflow_id"] == "kid" and attrs(sig)["run_id"] == "kid-run"
    assert attrs(sig)["child_workflow_only"] is True and attrs(sig)["signal_name"] == "poke"
    d.builder.external_signaled(d.builder.initiated[-1], "kid")
    d.builder.child_completed("kid", 42, "kid-run")
    (second,) = d.next()
    default_id = attrs(second)["workflow_id"]
    assert default_id.startswith("wf-1/child-2-") and attrs(second)["task_list"] == ""
    d.builder.child_started(default_id)
    try:
        raise RuntimeError("kid broke")
    except RuntimeError as exc:
        d.builder.child_failed(default_id, to_failure(exc))
    assert result_of(d.next()[0]) == ["kid", "kid-run", 42, "ApplicationError", "RuntimeError", "kid broke"]
    d.replay()


def test_child_start_failed_raises_workflow_already_started() -> None:
    @workflow.defn(name="StartFails")
    class StartFails:
        @workflow.run
        async def run(self) -> str:
            try:
                await workflow.start_child_workflow(Child.run, 1, id="dup")
            except WorkflowAlreadyStartedError as err:
                return err.reason
            return "started"

    d = WorkflowDriver(StartFails)
    d.decide()
    d.builder.child_start_failed("dup", "WORKFLOW_ALREADY_RUNNING")
    assert result_of(d.next()[0]) == "WORKFLOW_ALREADY_RUNNING"
    d.replay()


def _cancel_parent(ctype: workflow.ChildWorkflowCancellationType) -> type:
    @workflow.defn(name=f"Canceller{ctype.value}")
    class Canceller:
        @workflow.run
        async def run(self) -> str:
            handle = await workflow.start_child_workflow(Child.run, 1, id="c", cancellation_type=ctype)
            task = asyncio.ensure_future(handle.result())
            await asyncio.sleep(0)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                return "cancelled"
            return "not cancelled"

    return Canceller


def _started(ctype: workflow.ChildWorkflowCancellationType) -> WorkflowDriver:
    d = WorkflowDriver(_cancel_parent(ctype))
    d.decide()
    d.builder.child_started("c", "c-run")
    return d


def test_cancel_child_abandon_sends_nothing_and_raises_at_once() -> None:
    d = _started(workflow.ChildWorkflowCancellationType.ABANDON)
    (done,) = d.next()
    assert result_of(done) == "cancelled"
    d.replay()


def test_cancel_child_try_cancel_requests_and_raises_at_once() -> None:
    d = _started(workflow.ChildWorkflowCancellationType.TRY_CANCEL)
    req, done = d.next()
    assert kinds([req]) == ["RequestCancelExternalWorkflowExecutionDecision"]
    assert (attrs(req)["workflow_id"], attrs(req)["run_id"], attrs(req)["child_workflow_only"]) == (
        "c",
        "c-run",
        True,
    )
    assert result_of(done) == "cancelled"
    d.replay()


def test_cancel_child_wait_requested() -> None:
    d = _started(workflow.ChildWorkflowCancellationType.WAIT_CANCELLATION_REQUESTED)
    assert kinds(d.next()) == ["RequestCancelExternalWorkflowExecutionDecision"]
    d.builder.external_cancel_requested(d.builder.initiated[-1], "c")
    assert result_of(d.next()[0]) == "cancelled"
    d.replay()


def test_cancel_child_wait_completed() -> None:
    d = _started(workflow.ChildWorkflowCancellationType.WAIT_CANCELLATION_COMPLETED)
    assert kinds(d.next()) == ["RequestCancelExternalWorkflowExecutionDecision"]
    d.builder.external_cancel_requested(d.builder.initiated[-1], "c")
    assert d.next() == []  # still waiting for the child to close
    d.builder.child_canceled("c", "c-run")
    assert result_of(d.next()[0]) == "cancelled"
    d.replay()


def test_cancel_before_child_started_sends_request_once_started() -> None:
    @workflow.defn(name="EarlyCancel")
    class EarlyCancel:
        @workflow.run
        async def run(self) -> str:
            with workflow.CancellationScope() as scope:
                task = asyncio.ensure_future(workflow.execute_child_workflow(Child.run, 1, id="e"))
            await asyncio.sleep(0)
            scope.cancel()
            try:
                await task
            except asyncio.CancelledError:
                return "cancelled"
            return "no"

    d = WorkflowDriver(EarlyCancel)
    assert kinds(d.decide()) == ["StartChildWorkflowExecutionDecision"]
    d.builder.child_started("e", "e-run")
    (req,) = d.next()
    assert (
        kinds([req]) == ["RequestCancelExternalWorkflowExecutionDecision"] and attrs(req)["run_id"] == "e-run"
    )
    d.builder.child_canceled("e", "e-run")
    assert result_of(d.next()[0]) == "cancelled"
    d.replay()


def test_external_handle_signal_failure_and_cancel() -> None:
    @workflow.defn(name="Ext")
    class Ext:
        @workflow.run
        async def run(self) -> str:
            h = workflow.get_external_workflow_handle("other")
            await h.cancel()
            try:
                await h.signal("hello", 1)
            except Exception as err:  # noqa: BLE001
                return str(err)
            return "signaled"

    d = WorkflowDriver(Ext)
    (cancel,) = d.decide()
    assert kinds([cancel]) == ["RequestCancelExternalWorkflowExecutionDecision"]
    assert attrs(cancel)["child_workflow_only"] is False
    d.builder.external_cancel_requested(d.builder.initiated[-1], "other")
    (sig,) = d.next()
    assert attrs(sig)["signal_name"] == "hello"
    d.builder.external_signal_failed(d.builder.initiated[-1], "other", "EXTERNAL_WORKFLOW_NOT_FOUND")
    assert "EXTERNAL_WORKFLOW_NOT_FOUND" in result_of(d.next()[0])
    d.replay()


def test_child_handle_query_is_refused_with_a_pointer_to_the_client() -> None:
    @workflow.defn(name="Querier")
    class Querier:
        @workflow.run
        async def run(self) -> None:
            handle = await workflow.start_child_workflow(Child.run, 1, id="q")
            handle.query("anything")

    d = WorkflowDriver(Querier)
    d.decide()
    d.builder.child_started("q")
    (fail,) = d.next()
    assert (
        "use the client" in attrs(fail)["failure"]["message"]
        or "with the client" in attrs(fail)["failure"]["message"]
    )


@pytest.mark.parametrize("bad", ["activity", "timer"])
def test_operations_outside_workflow_code_are_refused(bad: str) -> None:
    with pytest.raises(RuntimeError, match="not in workflow code"):
        if bad == "activity":
            workflow.start_activity("x", start_to_close_timeout=1)
        else:
            workflow.now()
