"""Reset (issue 14, item 6): a new run from a prefix of the current run's history, end to end
through the broker, asserting both runs' histories: the copied prefix, the reset marker, the
reapplied signals, the old run's close, and children started before the point staying attached
(Temporal refuses a reset with pending children, temporal#705 and #3624)."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from typing import Any

import pytest

from kadence import Replayer, activity, workflow
from kadence.failures import KadenceError, WorkflowNotFoundError
from kadence.samples import order_processing as op
from tests.test_cli import cli  # noqa: F401 - the fixture: the CLI in this process, on the test's topics


@activity.defn
def step(n: int) -> int:
    return n


@workflow.defn
class Noted:
    """Runs an activity, then waits for two notes (signals)."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    @workflow.signal
    def note(self, text: str) -> None:
        self.notes.append(text)

    @workflow.run
    async def run(self) -> dict[str, Any]:
        got = await workflow.execute_activity(step, 7, start_to_close_timeout=10)
        await workflow.wait_condition(lambda: len(self.notes) >= 2)
        return {"step": got, "notes": self.notes, "run_id": workflow.info().run_id}


def runs_of(client, workflow_id: str) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in client.get_handle(workflow_id).history():
        runs[e["run_id"]].append(e)
    return dict(runs)


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["attributes"][0] for e in events]


def wait_for(predicate, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("reapply", [True, False])
def test_reset_to_the_first_decision_copies_the_prefix_and_reapplies_signals(client, worker, reapply) -> None:
    worker("default", [Noted], [step])
    handle = client.start_workflow(Noted.run, id="noted", task_list="default")
    wait_for(lambda: "ActivityTaskCompleted" in kinds(handle.history()), what="the activity")
    old_run = handle.history()[0]["run_id"]
    handle.signal(Noted.note, "before reset")
    wait_for(
        lambda: kinds(handle.history()).count("DecisionTaskCompleted") >= 3, what="the signal's decision"
    )

    new_run = client.reset("noted", "first_decision", reason="fixing a bug", reapply_signals=reapply)
    assert new_run != old_run
    runs = runs_of(client, "noted")
    old, new = runs[old_run], runs[new_run]
    # the old run: terminated by the reset, naming the new run and the last event it copies
    kind, closed = old[-1]["attributes"]
    assert kind == "WorkflowExecutionTerminated"
    assert closed["new_execution_run_id"] == new_run and closed["reset_last_event_id"] == 3
    assert closed["reason"] == "reset to event 4: fixing a bug"
    # the new run: events 1-3 copied (ids, times, attributes), then the reset marker
    assert [(e["event_id"], e["timestamp"], e["attributes"]) for e in new[:3]] == [
        (e["event_id"], e["timestamp"], e["attributes"]) for e in old[:3]
    ]
    marker = new[3]["attributes"]
    assert marker[0] == "DecisionTaskFailed" and marker[1]["cause"] == "RESET_WORKFLOW"
    assert marker[1]["base_run_id"] == old_run
    assert marker[1]["reset_attached"] == [{"run_id": old_run, "last_event_id": 3}]
    signaled = [e["attributes"][1] for e in new if e["attributes"][0] == "WorkflowExecutionSignaled"]
    if reapply:
        assert [s["carried_from_run_id"] for s in signaled] == [old_run]
        assert kinds(new)[4] == "WorkflowExecutionSignaled"  # before the new run's first decision
    else:
        assert signaled == []

    handle.signal(Noted.note, "after reset")
    if not reapply:
        handle.signal(Noted.note, "again")
    result = client.get_handle("noted").result(timeout=60)
    expected = ["before reset", "after reset"] if reapply else ["after reset", "again"]
    assert result == {"step": 7, "notes": expected, "run_id": new_run}
    assert handle.result(timeout=10) == result  # the old run's handle follows the reset
    # the new run decided again from the point: it scheduled the activity anew
    assert kinds(runs_of(client, "noted")[new_run]).count("ActivityTaskScheduled") == 1
    (replayed,) = Replayer([Noted]).replay(runs_of(client, "noted")[new_run])  # raises on divergence
    assert replayed.run_id == new_run


def test_reset_refusals_name_the_reason(client, worker) -> None:
    worker("default", [Noted], [step])
    handle = client.start_workflow(Noted.run, id="refused", task_list="default")
    wait_for(lambda: "ActivityTaskCompleted" in kinds(handle.history()), what="the activity")
    with pytest.raises(KadenceError, match="event 2 is DecisionTaskScheduled"):
        client.reset("refused", 2)
    with pytest.raises(KadenceError, match="has no event 999"):
        client.reset("refused", 999)
    with pytest.raises(WorkflowNotFoundError):
        client.reset("no-such-workflow", "last_decision")
    assert kinds(handle.history())[-1] != "WorkflowExecutionTerminated"  # nothing happened to it


#: Holds the shipping child's courier booking until the test lets it go.
_COURIER = threading.Event()


@activity.defn(name="book_courier")
def slow_book_courier(order_id: str) -> str:
    assert _COURIER.wait(110)
    return f"shipment-{order_id}"


@workflow.defn(name="ShippingWorkflow")
class HeldShipping:
    """The sample's ShippingWorkflow, with time to wait for the courier (`_COURIER`)."""

    @workflow.run
    async def run(self, order: op.Order) -> str:
        shipment = await workflow.execute_activity(slow_book_courier, order.id, start_to_close_timeout=120)
        return await workflow.execute_activity(op.print_label, shipment, start_to_close_timeout=10)


#: The sample's order workflows and activities, with the held courier.
ORDER_WORKFLOWS = [op.OrderProcessingWorkflow, op.PaymentWorkflow, HeldShipping]
ORDER_ACTIVITIES = [a for a in op.ACTIVITIES if a is not op.book_courier] + [slow_book_courier]


def _order_workers(worker) -> None:
    worker(op.TASK_LIST, ORDER_WORKFLOWS, ORDER_ACTIVITIES)
    worker("inventory", op.INVENTORY_WORKFLOWS, op.INVENTORY_ACTIVITIES)


def _start_order(client, order_id: str):
    _COURIER.clear()
    handle = client.start_workflow(
        op.OrderProcessingWorkflow.run,
        op.Order(order_id, "book", 2, 30.0),
        id=order_id,
        task_list=op.TASK_LIST,
    )

    def payment_and_inventory_seen() -> bool:  # ...and a decision task completed after both
        ks = kinds(handle.history())
        done = [i for i, k in enumerate(ks) if k == "ChildWorkflowExecutionCompleted"]
        return len(done) == 2 and "DecisionTaskCompleted" in ks[done[-1] :]

    wait_for(payment_and_inventory_seen, 60, "payment and inventory")
    return handle


def test_reset_with_a_running_child_keeps_it_attached_to_the_new_run(client, worker) -> None:
    _order_workers(worker)
    handle = _start_order(client, "order-r1")
    old_run = handle.history()[0]["run_id"]
    new_run = client.reset("order-r1", "last_decision", reason="re-decide")
    _COURIER.set()
    result = handle.result(timeout=60)
    assert result["status"] == "COMPLETED" and result["label"] == "label-shipment-order-r1"

    runs = runs_of(client, "order-r1")
    terminated = runs[old_run][-1]["attributes"]
    assert terminated[0] == "WorkflowExecutionTerminated" and terminated[1]["new_execution_run_id"] == new_run
    new = runs[new_run]
    # the shipping child started before the point: its close reached the new run
    shipping = [
        e["attributes"][1]
        for e in new
        if e["attributes"][0] == "ChildWorkflowExecutionCompleted"
        and e["attributes"][1]["workflow_id"] == "order-r1-shipping"
    ]
    assert len(shipping) == 1 and shipping[0]["initiated_event_id"] <= terminated[1]["reset_last_event_id"]
    assert kinds(new)[-1] == "WorkflowExecutionCompleted"
    assert kinds(new).count("StartChildWorkflowExecutionInitiated") == 3  # all three copied, none again
    # the child was neither terminated nor started twice: one run, completed
    child_runs = runs_of(client, "order-r1-shipping")
    assert len(child_runs) == 1
    assert kinds(next(iter(child_runs.values())))[-1] == "WorkflowExecutionCompleted"
    (replayed,) = Replayer(ORDER_WORKFLOWS).replay(new)  # raises on divergence
    assert replayed.run_id == new_run


def test_reset_before_the_children_started_applies_their_parent_close_policy(client, worker) -> None:
    _order_workers(worker)
    handle = _start_order(client, "order-r2")
    old_run = handle.history()[0]["run_id"]
    new_run = client.reset("order-r2", "first_decision")
    # the running shipping child was started after the point: TERMINATE (its default policy)
    wait_for(
        lambda: any(
            kinds(evs)[-1] == "WorkflowExecutionTerminated"
            for evs in runs_of(client, "order-r2-shipping").values()
        ),
        60,
        "the old shipping child's termination",
    )
    _COURIER.set()
    result = handle.result(timeout=60)
    new = runs_of(client, "order-r2")[new_run]
    # the new run started its children again: shipping (terminated) may run again, payment and
    # inventory (completed) may not under the children's default id reuse policy
    assert result["status"] == "COMPENSATED" and set(result["failed"]) == {"payment", "inventory"}
    assert all("ALLOW_DUPLICATE_FAILED_ONLY" in why for why in result["failed"].values())
    assert new[3]["attributes"][1]["reset_attached"] == [{"run_id": old_run, "last_event_id": 3}]
    assert kinds(new).count("StartChildWorkflowExecutionInitiated") == 3  # started again by the new run
    shipping_runs = runs_of(client, "order-r2-shipping")
    assert sorted(kinds(evs)[-1] for evs in shipping_runs.values()) == [
        "WorkflowExecutionCompleted",
        "WorkflowExecutionTerminated",
    ]


def test_kadence_reset_from_the_cli(cli, client, worker) -> None:  # noqa: F811 - the fixture
    worker("default", [Noted], [step])
    handle = client.start_workflow(Noted.run, id="cli-reset", task_list="default")
    wait_for(lambda: "ActivityTaskCompleted" in kinds(handle.history()), what="the activity")
    old_run = handle.history()[0]["run_id"]
    bad = cli("reset cli-reset --to 2")
    assert bad.code != 0 and "event 2 is DecisionTaskScheduled" in bad.err
    ran = cli("reset cli-reset --to first_decision --reason cli --no-reapply-signals -o json")
    assert ran.code == 0, ran.err
    printed = json.loads(ran.out)
    assert printed["workflow_id"] == "cli-reset" and printed["new_run_id"] != old_run
    closed = runs_of(client, "cli-reset")[old_run][-1]["attributes"]
    assert (
        closed[0] == "WorkflowExecutionTerminated"
        and closed[1]["new_execution_run_id"] == printed["new_run_id"]
    )
    assert closed[1]["reason"] == "reset to event 4: cli"
