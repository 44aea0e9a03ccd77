"""Each sample is also a test (issue 4): it runs through the broker and its history is checked."""

from __future__ import annotations

from examples import detached_child, hello_cancel_child, hello_child, order_processing


def types_of(client, workflow_id: str) -> list[str]:
    return [e["attributes"][0] for e in client.get_handle(workflow_id).history()]


def test_hello_child(client, worker) -> None:
    worker(hello_child.TASK_LIST, hello_child.WORKFLOWS, hello_child.ACTIVITIES)
    assert hello_child.run_sample(client, "hc") == "Hello, World!"
    parent = types_of(client, "hc")
    assert (
        parent.index("StartChildWorkflowExecutionInitiated")
        < parent.index("ChildWorkflowExecutionStarted")
        < parent.index("ChildWorkflowExecutionCompleted")
    )
    child_start = client.get_handle("hc-child").history()[0]["attributes"][1]
    assert child_start["parent"]["workflow_id"] == "hc" and child_start["task_list"] == hello_child.TASK_LIST


def test_hello_cancel_child(client, worker) -> None:
    worker(hello_cancel_child.TASK_LIST, hello_cancel_child.WORKFLOWS, hello_cancel_child.ACTIVITIES)
    assert hello_cancel_child.run_sample(client, "hcc") == "child hcc-child cancelled"
    parent = types_of(client, "hcc")
    assert "RequestCancelExternalWorkflowExecutionInitiated" in parent
    assert "ExternalWorkflowExecutionCancelRequested" in parent and "ChildWorkflowExecutionCanceled" in parent
    child = types_of(client, "hcc-child")
    assert "WorkflowExecutionCancelRequested" in child and "ActivityTaskCompleted" in child  # cleanup ran
    assert child[-1] == "WorkflowExecutionCanceled"


def test_order_processing(client, worker) -> None:
    for task_list, (workflows, activities) in order_processing.TASK_LISTS.items():
        worker(task_list, workflows, activities)
    result = order_processing.run_sample(client, "op")
    assert result["good"] == {
        "order": "op-1",
        "status": "COMPLETED",
        "payment": "payment-op-1",
        "reservation": "reservation-op-1-bookx2",
        "label": "label-shipment-op-1",
    }
    declined = result["declined"]
    assert declined["status"] == "COMPENSATED" and list(declined["failed"]) == ["payment"]
    assert "CardDeclined" in declined["failed"]["payment"]
    assert declined["compensations"] == ["released reservation-op-2-lampx1"]
    parent = types_of(client, "op-2")
    assert parent.count("StartChildWorkflowExecutionInitiated") == 3
    assert (
        parent.count("ChildWorkflowExecutionCompleted") == 2
        and parent.count("ChildWorkflowExecutionFailed") == 1
    )
    inventory_start = client.get_handle("op-1-inventory").history()[0]["attributes"][1]
    assert inventory_start["task_list"] == "inventory"


def test_detached_child_outlives_parent(client, worker) -> None:
    worker(detached_child.TASK_LIST, detached_child.WORKFLOWS, detached_child.ACTIVITIES)
    result = detached_child.run_sample(client, "su")
    assert result == {"parent": "signed up ada", "child": "reminded ada"}
    parent = types_of(client, "su")
    assert parent[-2:] == ["StartChildWorkflowExecutionInitiated", "WorkflowExecutionCompleted"]
    child = types_of(client, "su-reminder")
    assert child[-1] == "WorkflowExecutionCompleted" and "WorkflowExecutionTerminated" not in child


def test_long_running_sample(client, worker) -> None:
    from examples import long_running

    worker(long_running.TASK_LIST, long_running.WORKFLOWS, long_running.ACTIVITIES)
    assert long_running.run_sample(client, "lr", batches=25) == {
        "batches_done": 25,
        "total": sum(10 * b for b in range(1, 26)),
    }
    runs = {e["run_id"] for e in client.get_handle("lr").history()}
    assert len(runs) == 3


def test_versioning_sample(client) -> None:
    from examples import versioning

    # The sample runs its own workers: version 1, stopped while its run is open, then version 2.
    assert versioning.run_sample(client, "ver") == {
        "ver-old": "charged ver-old",
        "ver-new": "charged ver-new, receipt sent",
    }
    assert "MarkerRecorded" not in types_of(client, "ver-old")
    new = types_of(client, "ver-new")
    assert new.index("MarkerRecorded") < new.index("ActivityTaskScheduled")


def test_update_sample(client, worker) -> None:
    from examples import update

    worker(update.TASK_LIST, update.WORKFLOWS, update.ACTIVITIES)
    assert update.run_sample(client, "upd") == {
        "counts": [1, 2],
        "refused": "ValueError: tea is in the cart already",
        "reserved": ["reserved tea", "reserved cups"],
        "items": ["tea", "cups"],
    }
    kinds = types_of(client, "upd")
    assert kinds.count("WorkflowExecutionUpdateAccepted") == 3  # the refused one left no event
    assert kinds.count("WorkflowExecutionUpdateCompleted") == 3
