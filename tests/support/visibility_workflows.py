"""Workflows of tests/test_cli_visibility.py: Top starts Mid, Mid starts Leaf, Leaf waits for `release`."""

from __future__ import annotations

from kadence import workflow


@workflow.defn
class Leaf:
    def __init__(self) -> None:
        self.released = False

    @workflow.signal
    def release(self) -> None:
        self.released = True

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.released)
        return "leaf done"


@workflow.defn
class Mid:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_child_workflow(Leaf.run, id=f"{workflow.info().workflow_id}-leaf")


@workflow.defn
class Top:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_child_workflow(Mid.run, id=f"{workflow.info().workflow_id}-mid")


WORKFLOWS = [Top, Mid, Leaf]
