"""Issue 14, item 8, end to end through the broker: a client's cancel reason reaches the workflow
(code and history) and a parent's view of its canceled child; start failures carry a typed cause
(`StartFailureCause`) as well as the text, for clients and for parents."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from kadence import Client, StartFailureCause, workflow
from kadence.failures import (
    CanceledError,
    ChildWorkflowError,
    WorkflowAlreadyStartedError,
    WorkflowFailureError,
)
from kadence.schemas import registry

pytestmark = pytest.mark.timeout(180)

TL = "causes"


@workflow.defn
class Stoppable:
    """Returns the reason it was cancelled with (a clean stop), or ends canceled when asked to."""

    @workflow.run
    async def run(self, end_canceled: bool) -> str:
        try:
            await workflow.wait_condition(lambda: False)
        except BaseException:
            if end_canceled:
                raise
            return f"stopped: {workflow.cancel_reason()}"
        return "unreachable"


@workflow.defn
class Parent:
    @workflow.run
    async def run(self, child_id: str) -> dict[str, Any]:
        try:
            await workflow.execute_child_workflow(Stoppable.run, True, id=child_id)
        except ChildWorkflowError as err:
            assert isinstance(err.cause, CanceledError)
            return {"message": str(err.cause), "details": err.cause.details}
        return {}


@workflow.defn
class Quick:
    @workflow.run
    async def run(self) -> str:
        return "done"


@workflow.defn
class StartsTwice:
    """Starts the same child id twice: the second start is refused while the first runs."""

    @workflow.run
    async def run(self, child_id: str) -> dict[str, str]:
        first = await workflow.start_child_workflow(Stoppable.run, False, id=child_id)
        try:
            await workflow.start_child_workflow(Stoppable.run, False, id=child_id)
        except WorkflowAlreadyStartedError as err:
            first.cancel()
            return {"cause_type": err.cause_type.value, "reason": err.reason}
        return {}


def history(client: Client, workflow_id: str) -> list[dict[str, Any]]:
    return client.get_handle(workflow_id).history()


def attrs_of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [a for k, a in (e["attributes"] for e in events) if k == kind]


def wait_for(client: Client, workflow_id: str, kind: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if attrs_of(history(client, workflow_id), kind):
            return
        time.sleep(0.2)
    raise AssertionError(f"no {kind} in {workflow_id} after {timeout}s")


def test_cancel_reason_reaches_workflow_code_history_and_client(client: Client, worker: Any) -> None:
    worker(TL, [Stoppable])
    clean = client.start_workflow(Stoppable.run, False, id="stop-clean", task_list=TL)
    wait_for(client, "stop-clean", "DecisionTaskCompleted")
    clean.cancel("customer asked")
    assert clean.result(timeout=60) == "stopped: customer asked"  # seen by workflow code
    (requested,) = attrs_of(history(client, "stop-clean"), "WorkflowExecutionCancelRequested")
    assert requested["cause"] == "customer asked"

    canceled = client.start_workflow(Stoppable.run, True, id="stop-canceled", task_list=TL)
    wait_for(client, "stop-canceled", "DecisionTaskCompleted")
    canceled.cancel("out of stock")
    with pytest.raises(WorkflowFailureError) as info:
        canceled.result(timeout=60)
    assert info.value.status == "CANCELED"
    assert isinstance(info.value.cause, CanceledError) and info.value.cause.details == "out of stock"
    assert "out of stock" in str(info.value)
    (closed,) = attrs_of(history(client, "stop-canceled"), "WorkflowExecutionCanceled")
    assert json.loads(closed["details"]["data"]) == "out of stock"


def test_cancel_reason_reaches_the_parent_of_a_canceled_child(client: Client, worker: Any) -> None:
    worker(TL, [Stoppable, Parent])
    parent = client.start_workflow(Parent.run, "kid", id="mom", task_list=TL)
    wait_for(client, "kid", "DecisionTaskCompleted")
    client.get_handle("kid").cancel("recalled")
    assert parent.result(timeout=60) == {
        "message": "child workflow canceled: recalled",
        "details": "recalled",
    }
    (child_canceled,) = attrs_of(history(client, "mom"), "ChildWorkflowExecutionCanceled")
    assert json.loads(child_canceled["details"]["data"]) == "recalled"


def test_start_failures_carry_a_typed_cause(client: Client, worker: Any) -> None:
    worker(TL, [Stoppable, Quick, StartsTwice])
    running = client.start_workflow(Stoppable.run, False, id="dup", task_list=TL)
    wait_for(client, "dup", "DecisionTaskStarted")
    with pytest.raises(WorkflowAlreadyStartedError) as already:
        client.start_workflow(Stoppable.run, False, id="dup", task_list=TL).result(timeout=30)
    assert already.value.cause_type is StartFailureCause.WORKFLOW_ALREADY_RUNNING
    assert "already running" in already.value.reason
    running.cancel("done testing")
    running.result(timeout=60)

    # Both id-reuse refusals, worded differently, have the one cause to branch on.
    client.execute_workflow(Quick.run, id="quick", task_list=TL, result_timeout=60)
    for policy in ("REJECT_DUPLICATE", "ALLOW_DUPLICATE_FAILED_ONLY"):
        with pytest.raises(WorkflowAlreadyStartedError) as refused:
            client.start_workflow(Quick.run, id="quick", task_list=TL, id_reuse_policy=policy).result(
                timeout=30
            )
        assert (
            refused.value.cause_type is StartFailureCause.ID_REUSE_REJECTED and policy in refused.value.reason
        )

    # A parent's refused child start: the event and the exception carry the enum.
    assert client.execute_workflow(StartsTwice.run, "twin", id="twins", task_list=TL, result_timeout=60) == {
        "cause_type": "WORKFLOW_ALREADY_RUNNING",
        "reason": "workflow execution already running (run id " + history(client, "twin")[0]["run_id"] + ")",
    }
    (failed,) = attrs_of(history(client, "twins"), "StartChildWorkflowExecutionFailed")
    assert failed["cause_type"] == "WORKFLOW_ALREADY_RUNNING" and "already running" in failed["cause"]


def test_python_enum_matches_the_schema_enum() -> None:
    symbols = registry().raw["StartFailureCause"]["symbols"]
    assert [c.value for c in StartFailureCause] == symbols
    assert StartFailureCause.of("SOMETHING_NEWER") is StartFailureCause.UNSPECIFIED
