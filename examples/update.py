"""Updates: a synchronous request to a running workflow (docs/updates.md).

A `Cart` takes items by update: the validator refuses an item that is already in it (the refusal
records nothing), the handler returns the new count. `reserve_all` is an async update that awaits
an activity per item; `checkout` (a signal) ends the run.
"""

from __future__ import annotations

from kadence import Client, UpdateRejectedError, UpdateStage, activity, workflow


@activity.defn
def reserve(item: str) -> str:
    return f"reserved {item}"


@workflow.defn
class Cart:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.closed = False

    @workflow.update
    def add(self, item: str) -> int:
        self.items.append(item)
        return len(self.items)

    @add.validator
    def check_add(self, item: str) -> None:
        if item in self.items:
            raise ValueError(f"{item} is in the cart already")

    @workflow.update
    async def reserve_all(self) -> list[str]:
        return [await workflow.execute_activity(reserve, i, start_to_close_timeout=10) for i in self.items]

    @workflow.signal
    def checkout(self) -> None:
        self.closed = True

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.wait_condition(lambda: self.closed)
        return self.items


WORKFLOWS = [Cart]
ACTIVITIES = [reserve]
TASK_LIST = "carts"


def run_sample(client: Client, workflow_id: str = "cart") -> dict[str, object]:
    cart = client.start_workflow(Cart.run, id=workflow_id, task_list=TASK_LIST)
    counts = [cart.execute_update(Cart.add, item, id=f"{workflow_id}-add-{item}") for item in ("tea", "cups")]
    try:
        cart.execute_update(Cart.add, "tea")
        refused = ""
    except UpdateRejectedError as err:
        refused = str(err.cause)
    reserving = cart.start_update(Cart.reserve_all, wait_for_stage=UpdateStage.ACCEPTED)
    reserved = reserving.result(timeout=30)
    cart.signal(Cart.checkout)
    return {"counts": counts, "refused": refused, "reserved": reserved, "items": cart.result(timeout=30)}


if __name__ == "__main__":
    from ._runner import main

    main(run_sample, {TASK_LIST: (WORKFLOWS, ACTIVITIES)})
