"""LongRunning: process batch after batch; when history grows large (or every N batches), continue
as new with the running state, so each run's history stays small."""

from __future__ import annotations

from dataclasses import dataclass

from kadence import Client, activity, workflow


@dataclass
class Progress:
    batches_done: int = 0
    total: int = 0


@activity.defn
def process_batch(batch: int) -> int:
    return batch * 10  # items processed in this batch


@workflow.defn
class LongRunningWorkflow:
    @workflow.run
    async def run(self, target_batches: int, progress: Progress, batches_per_run: int = 10) -> Progress:
        for _ in range(batches_per_run):
            if progress.batches_done >= target_batches:
                return progress
            progress.total += await workflow.execute_activity(
                process_batch, progress.batches_done + 1, start_to_close_timeout=10
            )
            progress.batches_done += 1
            if workflow.info().continue_as_new_suggested:
                break
        if progress.batches_done >= target_batches:
            return progress
        workflow.continue_as_new(target_batches, progress, batches_per_run)


WORKFLOWS = [LongRunningWorkflow]
ACTIVITIES = [process_batch]
TASK_LIST = "long-running"


def run_sample(client: Client, workflow_id: str = "long-running", batches: int = 50) -> dict:
    result = client.execute_workflow(
        LongRunningWorkflow.run,
        batches,
        Progress(),
        10,
        id=workflow_id,
        task_list=TASK_LIST,
        result_type=Progress,
    )
    return {"batches_done": result.batches_done, "total": result.total}


if __name__ == "__main__":
    from ._runner import main

    main(run_sample, {TASK_LIST: (WORKFLOWS, ACTIVITIES)})
