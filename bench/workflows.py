"""The benchmark workflows and activities, grouped by task list (what a bench worker serves).

OrderProcessing is the sample's (`examples.order_processing`); the counter is the LongRunning
sample (`examples.long_running`: continue-as-new every N batches).
"""

from __future__ import annotations

import asyncio

from examples import long_running, order_processing
from kadence import activity, workflow


# -- hello -----------------------------------------------------------------------------------------
@activity.defn
def say_hello(name: str) -> str:
    return f"hello {name}"


@workflow.defn
class HelloWorkflow:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(say_hello, name, start_to_close_timeout=10)


# -- fan-out ---------------------------------------------------------------------------------------
@activity.defn
def square(i: int) -> int:
    return i * i


@workflow.defn
class FanChildWorkflow:
    @workflow.run
    async def run(self, i: int) -> int:
        return await workflow.execute_activity(square, i, start_to_close_timeout=10)


@workflow.defn
class FanoutWorkflow:
    @workflow.run
    async def run(self, n: int) -> int:
        parent = workflow.info().workflow_id
        results = await asyncio.gather(
            *(
                workflow.execute_child_workflow(FanChildWorkflow.run, i, id=f"{parent}-child-{i}")
                for i in range(n)
            )
        )
        return sum(results)


# -- timers ----------------------------------------------------------------------------------------
@workflow.defn
class SleepWorkflow:
    @workflow.run
    async def run(self, seconds: float) -> float:
        await workflow.sleep(seconds)
        return seconds


# -- a long loop without continue-as-new -------------------------------------------------------------
@activity.defn
def increment(i: int) -> int:
    return i + 1


@workflow.defn
class LoopWorkflow:
    @workflow.run
    async def run(self, n: int) -> int:
        total = 0
        for _ in range(n):
            total = await workflow.execute_activity(increment, total, start_to_close_timeout=30)
        return total


BENCH_TASK_LIST = "bench"
#: task list -> (workflows, activities): what `bench.engine` workers serve.
TASK_LISTS = {
    BENCH_TASK_LIST: (
        [
            HelloWorkflow,
            FanoutWorkflow,
            FanChildWorkflow,
            SleepWorkflow,
            LoopWorkflow,
            long_running.LongRunningWorkflow,
        ],
        [say_hello, square, increment, long_running.process_batch],
    ),
    **order_processing.TASK_LISTS,
}
