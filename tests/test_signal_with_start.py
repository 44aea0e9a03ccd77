"""Signal-with-start (issue 14, item 3), end to end through the broker: from the client and from
workflow code for a workflow that is not a child; the signal is in history before the first decision
task, an open run gets the signal instead, a retried request is one signal, and a refused start is
reported with its cause."""

from __future__ import annotations

import time
from typing import Any

import pytest

from kadence import Client, workflow
from kadence.failures import ApplicationError, WorkflowAlreadyStartedError

pytestmark = pytest.mark.timeout(180)

TL = "sws"


@workflow.defn
class Inbox:
    def __init__(self) -> None:
        self.items: list[str] = []

    @workflow.signal
    def add(self, item: str) -> None:
        self.items.append(item)

    @workflow.run
    async def run(self, expected: int) -> dict[str, Any]:
        before_first_await = list(self.items)  # signals recorded before the first decision task
        await workflow.wait_condition(lambda: len(self.items) >= expected)
        return {"first": before_first_await, "items": self.items}


@workflow.defn
class Dispatcher:
    """Signal-with-start of Inbox workflows (not its children) from workflow code."""

    @workflow.run
    async def run(self, target: str, items: list[str]) -> list[str]:
        for item in items:
            await workflow.signal_with_start_workflow(
                Inbox.run, len(items), id=target, signal=Inbox.add, signal_args=[item]
            )
        return items


@workflow.defn
class RefusedDispatcher:
    @workflow.run
    async def run(self, target: str) -> str:
        try:
            await workflow.signal_with_start_workflow(
                Inbox.run,
                1,
                id=target,
                signal="add",
                signal_args=["late"],
                id_reuse_policy=workflow.IdReusePolicy.REJECT_DUPLICATE,
            )
        except ApplicationError as err:
            return f"refused: {err}"
        return "signalled"


def events_of(client: Client, workflow_id: str) -> list[dict[str, Any]]:
    return client.get_handle(workflow_id).history()


def wait_for(client: Client, workflow_id: str, event_type: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(e["attributes"][0] == event_type for e in events_of(client, workflow_id)):
            return
        time.sleep(0.2)
    raise AssertionError(f"no {event_type} in {workflow_id} after {timeout}s")


def test_client_signal_with_start(client: Client, worker: Any) -> None:
    worker(TL, [Inbox])
    first = client.signal_with_start(
        Inbox.run, 3, signal=Inbox.add, signal_args=["a"], id="box", task_list=TL
    )
    wait_for(client, "box", "DecisionTaskCompleted")
    # The run is open: these signal it (Temporal SDK style options), nothing starts.
    second = client.start_workflow(
        Inbox.run, 3, id="box", task_list=TL, start_signal="add", start_signal_args=["b"]
    )
    retried = client.start_workflow(
        Inbox.run,
        3,
        id="box",
        task_list=TL,
        start_signal="add",
        start_signal_args=["b"],
        request_id=second.start_request_id,
    )
    client.get_handle("box").signal(Inbox.add, "c")
    expected = {"first": ["a"], "items": ["a", "b", "c"]}  # the retried request was one signal
    assert first.result(timeout=60) == expected
    assert second.result(timeout=30) == expected and retried.result(timeout=30) == expected
    assert first.run_id == second.run_id == retried.run_id

    events = events_of(client, "box")
    kinds = [e["attributes"][0] for e in events]
    assert kinds[:4] == [
        "WorkflowExecutionStarted",
        "WorkflowExecutionSignaled",  # before the first decision task
        "DecisionTaskScheduled",
        "DecisionTaskStarted",
    ]
    assert kinds.count("WorkflowExecutionStarted") == 1 and kinds.count("WorkflowExecutionSignaled") == 3
    signaled = [a for k, a in (e["attributes"] for e in events) if k == "WorkflowExecutionSignaled"]
    assert [s["request_id"] for s in signaled[:2]] == [first.start_request_id, second.start_request_id]
    assert client.data_converter.args_from_payload(signaled[0]["input"], [str]) == ["a"]


def test_client_signal_with_start_after_close_follows_id_reuse_policy(client: Client, worker: Any) -> None:
    worker(TL, [Inbox])
    assert client.signal_with_start(
        Inbox.run, 1, signal="add", signal_args=["a"], id="once", task_list=TL
    ).result(timeout=60) == {"first": ["a"], "items": ["a"]}
    refused = client.signal_with_start(Inbox.run, 1, signal="add", signal_args=["b"], id="once", task_list=TL)
    with pytest.raises(WorkflowAlreadyStartedError, match="ALLOW_DUPLICATE_FAILED_ONLY"):
        refused.result(timeout=30)
    again = client.signal_with_start(
        Inbox.run,
        1,
        signal="add",
        signal_args=["c"],
        id="once",
        task_list=TL,
        id_reuse_policy="ALLOW_DUPLICATE",
    )
    assert again.result(timeout=60) == {"first": ["c"], "items": ["c"]}
    runs = {e["run_id"] for e in events_of(client, "once")}
    assert len(runs) == 2
    signals = [
        a for k, a in (e["attributes"] for e in events_of(client, "once")) if k == "WorkflowExecutionSignaled"
    ]
    assert len(signals) == 2  # the refused one left no event


def test_signal_with_start_from_workflow_code(client: Client, worker: Any) -> None:
    worker(TL, [Inbox, Dispatcher, RefusedDispatcher])
    assert client.execute_workflow(Dispatcher.run, "inbox-w", ["x", "y"], id="disp", task_list=TL) == [
        "x",
        "y",
    ]
    assert client.get_handle("inbox-w").result(timeout=60) == {"first": ["x"], "items": ["x", "y"]}

    sender = events_of(client, "disp")
    initiated = [
        a for k, a in (e["attributes"] for e in sender) if k == "SignalExternalWorkflowExecutionInitiated"
    ]
    assert len(initiated) == 2 and all(a["start"]["workflow_type"] == "Inbox" for a in initiated)
    assert initiated[0]["start"]["task_list"] == TL
    assert [e["attributes"][0] for e in sender].count("ExternalWorkflowExecutionSignaled") == 2

    target = events_of(client, "inbox-w")
    kinds = [e["attributes"][0] for e in target]
    assert kinds[:3] == ["WorkflowExecutionStarted", "WorkflowExecutionSignaled", "DecisionTaskScheduled"]
    assert kinds.count("WorkflowExecutionStarted") == 1  # the second signal-with-start found it open
    assert target[0]["attributes"][1]["parent"] is None  # not a child of the dispatcher

    # The target closed; REJECT_DUPLICATE refuses the start and the sender sees the cause.
    result = client.execute_workflow(RefusedDispatcher.run, "inbox-w", id="disp-refused", task_list=TL)
    assert result.startswith("refused:") and "REJECT_DUPLICATE" in result
    refused = [e["attributes"][0] for e in events_of(client, "disp-refused")]
    assert "SignalExternalWorkflowExecutionFailed" in refused
    assert len({e["run_id"] for e in events_of(client, "inbox-w")}) == 1
