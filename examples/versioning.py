"""Versioning: change the code under running workflows with `workflow.patched` (docs/versioning.md).

`Checkout` charges an order, then waits for the `ship` signal. Version 2 sends a receipt with the
charge (a different activity): a run that charged on version 1 must keep the old branch when it is
replayed on version 2, and a run started on version 2 takes the new one. The four versions are the
life of one patch:

1. `CheckoutV1`: the code before the change.
2. `CheckoutV2`: `if workflow.patched("receipt")`: new branch, old branch kept for the old runs.
3. `CheckoutV3`: `workflow.deprecate_patch("receipt")` once no open run took the old branch.
4. `CheckoutV4`: the call removed once no open run lacks the marker.

`run_sample` does the deployment: a worker on version 1 starts an order, is stopped, and a worker on
version 2 takes over while the order is still open; then a second order starts on version 2.
"""

from __future__ import annotations

import time

from kadence import Client, Worker, activity, workflow


@activity.defn
def charge(order: str) -> str:
    return f"charged {order}"


@activity.defn
def charge_with_receipt(order: str) -> str:
    return f"charged {order}, receipt sent"


@workflow.defn(name="Checkout")
class CheckoutV1:
    def __init__(self) -> None:
        self.shipped = False

    @workflow.signal
    def ship(self) -> None:
        self.shipped = True

    @workflow.run
    async def run(self, order: str) -> str:
        charged = await workflow.execute_activity(charge, order, start_to_close_timeout=10)
        await workflow.wait_condition(lambda: self.shipped)
        return charged


@workflow.defn(name="Checkout")
class CheckoutV2:
    def __init__(self) -> None:
        self.shipped = False

    @workflow.signal
    def ship(self) -> None:
        self.shipped = True

    @workflow.run
    async def run(self, order: str) -> str:
        if workflow.patched("receipt"):
            charged = await workflow.execute_activity(charge_with_receipt, order, start_to_close_timeout=10)
        else:
            charged = await workflow.execute_activity(charge, order, start_to_close_timeout=10)
        await workflow.wait_condition(lambda: self.shipped)
        return charged


@workflow.defn(name="Checkout")
class CheckoutV3:
    def __init__(self) -> None:
        self.shipped = False

    @workflow.signal
    def ship(self) -> None:
        self.shipped = True

    @workflow.run
    async def run(self, order: str) -> str:
        workflow.deprecate_patch("receipt")
        charged = await workflow.execute_activity(charge_with_receipt, order, start_to_close_timeout=10)
        await workflow.wait_condition(lambda: self.shipped)
        return charged


@workflow.defn(name="Checkout")
class CheckoutV4:
    def __init__(self) -> None:
        self.shipped = False

    @workflow.signal
    def ship(self) -> None:
        self.shipped = True

    @workflow.run
    async def run(self, order: str) -> str:
        charged = await workflow.execute_activity(charge_with_receipt, order, start_to_close_timeout=10)
        await workflow.wait_condition(lambda: self.shipped)
        return charged


#: The code deployed at the end of the sample (what `kadence replay --module examples.versioning` checks).
WORKFLOWS = [CheckoutV2]
ACTIVITIES = [charge, charge_with_receipt]
TASK_LIST = "checkout"


def wait_for_event(client: Client, workflow_id: str, event_type: str, timeout: float = 30.0) -> None:
    """Block until the workflow's history holds an `event_type` event."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(e["attributes"][0] == event_type for e in client.get_handle(workflow_id).history()):
            return
        time.sleep(0.2)
    raise TimeoutError(f"no {event_type} in the history of {workflow_id} after {timeout}s")


def run_sample(client: Client, workflow_id: str = "checkout") -> dict[str, str]:
    old_id, new_id = f"{workflow_id}-old", f"{workflow_id}-new"
    v1 = Worker(client, TASK_LIST, workflows=[CheckoutV1], activities=ACTIVITIES).start()
    try:
        client.start_workflow(CheckoutV1.run, old_id, id=old_id, task_list=TASK_LIST)
        wait_for_event(client, old_id, "ActivityTaskCompleted")  # charged, now waiting for `ship`
    finally:
        v1.stop(5)
    # The deployment: version 2 takes over the open run (it replays its history) and new runs.
    with Worker(client, TASK_LIST, workflows=[CheckoutV2], activities=ACTIVITIES):
        client.start_workflow(CheckoutV2.run, new_id, id=new_id, task_list=TASK_LIST)
        wait_for_event(client, new_id, "ActivityTaskCompleted")
        for wid in (old_id, new_id):
            client.get_handle(wid).signal(CheckoutV2.ship)
        return {wid: client.get_handle(wid).result(timeout=30) for wid in (old_id, new_id)}


if __name__ == "__main__":
    from ._runner import main

    main(run_sample, {})
