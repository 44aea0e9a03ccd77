"""HelloChild: a parent starts a child workflow and waits for its result."""

from __future__ import annotations

from kadence import Client, activity, workflow


@activity.defn
def compose_greeting(greeting: str, name: str) -> str:
    return f"{greeting}, {name}!"


@workflow.defn
class GreetingChild:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(compose_greeting, "Hello", name, start_to_close_timeout=10)


@workflow.defn
class GreetingParent:
    @workflow.run
    async def run(self, name: str) -> str:
        # execute_child_workflow = start + wait for the result (the child runs on its own history).
        return await workflow.execute_child_workflow(
            GreetingChild.run, name, id=f"{workflow.info().workflow_id}-child"
        )


WORKFLOWS = [GreetingParent, GreetingChild]
ACTIVITIES = [compose_greeting]
TASK_LIST = "hello-child"


def run_sample(client: Client, workflow_id: str = "hello-child") -> str:
    return client.execute_workflow(GreetingParent.run, "World", id=workflow_id, task_list=TASK_LIST)


if __name__ == "__main__":
    from ._runner import main

    main(run_sample, {TASK_LIST: (WORKFLOWS, ACTIVITIES)})
