"""HelloCancelChild: a parent starts a long child, then cancels it; the child cleans up and ends
Canceled, and the parent's await raises a cancellation error it handles."""

from __future__ import annotations

import asyncio

from kadence import Client, activity, workflow


@activity.defn
def release_resources(owner: str) -> str:
    return f"released resources of {owner}"


@workflow.defn
class LongChild:
    def __init__(self) -> None:
        self.cleanup = ""

    @workflow.run
    async def run(self) -> str:
        try:
            await workflow.sleep(3600)  # a durable timer: cancelled below
            return "finished"
        except asyncio.CancelledError:
            self.cleanup = await workflow.execute_activity(
                release_resources, workflow.info().workflow_id, start_to_close_timeout=10
            )
            raise


@workflow.defn
class CancellingParent:
    @workflow.run
    async def run(self) -> str:
        child = await workflow.start_child_workflow(LongChild.run, id=f"{workflow.info().workflow_id}-child")
        task = asyncio.ensure_future(child.result())
        await workflow.sleep(0.2)
        task.cancel()  # RequestCancelExternalWorkflowExecution; waits for the child to close (default type)
        try:
            await task
        except asyncio.CancelledError:
            return f"child {child.id} cancelled"
        return "child finished before the cancellation"


WORKFLOWS = [CancellingParent, LongChild]
ACTIVITIES = [release_resources]
TASK_LIST = "hello-cancel-child"


def run_sample(client: Client, workflow_id: str = "hello-cancel-child") -> str:
    return client.execute_workflow(CancellingParent.run, id=workflow_id, task_list=TASK_LIST)


if __name__ == "__main__":
    from ._runner import main

    main(run_sample, {TASK_LIST: (WORKFLOWS, ACTIVITIES)})
