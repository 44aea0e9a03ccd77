"""DetachedChild (ParentClosePolicy.ABANDON): the parent starts a child and completes at once; the
child outlives it (and still starts even though the parent closed first)."""

from __future__ import annotations

from kadence import Client, activity, workflow


@activity.defn
def send_reminder(customer: str) -> str:
    return f"reminded {customer}"


@workflow.defn
class ReminderChild:
    @workflow.run
    async def run(self, customer: str) -> str:
        await workflow.sleep(0.5)
        return await workflow.execute_activity(send_reminder, customer, start_to_close_timeout=10)


@workflow.defn
class SignupParent:
    @workflow.run
    async def run(self, customer: str) -> str:
        # Not awaited: the start decision and the parent's completion go out in the same decision task.
        workflow.start_child_workflow(
            ReminderChild.run,
            customer,
            id=f"{workflow.info().workflow_id}-reminder",
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
        )
        return f"signed up {customer}"


WORKFLOWS = [SignupParent, ReminderChild]
ACTIVITIES = [send_reminder]
TASK_LIST = "detached"


def run_sample(client: Client, workflow_id: str = "signup") -> dict:
    parent = client.execute_workflow(SignupParent.run, "ada", id=workflow_id, task_list=TASK_LIST)
    child = client.get_handle(f"{workflow_id}-reminder").result(timeout=30)
    return {"parent": parent, "child": child}


if __name__ == "__main__":
    from ._runner import main

    main(run_sample, {TASK_LIST: (WORKFLOWS, ACTIVITIES)})
