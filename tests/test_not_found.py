"""Signal, cancel and terminate of a workflow that has no open run fail with `WorkflowNotFoundError`
(issue 12, item 4; Temporal's NotFound), answered by the engine through the broker; the same
commands to an open run return once recorded (history events asserted)."""

from __future__ import annotations

import pytest

from kadence import WorkflowNotFoundError, workflow
from kadence.failures import WorkflowFailureError


@workflow.defn
class Gate:
    def __init__(self) -> None:
        self.opened = False

    @workflow.signal
    def open(self) -> None:
        self.opened = True

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.opened)
        return "through"


def test_commands_to_an_unknown_workflow_are_not_found(client) -> None:
    handle = client.get_handle("nobody-home")
    with pytest.raises(WorkflowNotFoundError) as signaled:
        handle.signal("open")
    assert signaled.value.workflow_id == "nobody-home"
    assert "SignalWorkflowExecution" in str(signaled.value) and "not found" in str(signaled.value)
    with pytest.raises(WorkflowNotFoundError, match="RequestCancelWorkflowExecution"):
        handle.cancel("why not")
    with pytest.raises(WorkflowNotFoundError, match="TerminateWorkflowExecution"):
        handle.terminate("why not")
    assert handle.history() == []  # nothing was recorded for the unknown id


def test_a_closed_run_is_not_found_and_an_open_one_is_signaled(client, worker) -> None:
    worker(workflows=[Gate])
    handle = client.start_workflow(Gate.run, id="gate", task_list="default")
    handle.signal(Gate.open)  # returns once recorded
    assert handle.result(timeout=60) == "through"
    kinds = [e["attributes"][0] for e in handle.history()]
    assert kinds.count("WorkflowExecutionSignaled") == 1
    assert kinds[-1] == "WorkflowExecutionCompleted"

    with pytest.raises(WorkflowNotFoundError):
        handle.signal(Gate.open)
    with pytest.raises(WorkflowNotFoundError):
        handle.terminate("too late")
    assert [e["attributes"][0] for e in handle.history()] == kinds  # the closed run is untouched

    other = client.start_workflow(Gate.run, id="gate-2", task_list="default")
    other.terminate("stop", details={"by": "test"})
    with pytest.raises(WorkflowFailureError, match="terminated: stop"):
        other.result(timeout=60)
    assert other.history()[-1]["attributes"][0] == "WorkflowExecutionTerminated"
