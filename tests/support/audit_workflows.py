"""Workflows `tests/test_audit.py` runs and audits: activities, a failure, children, a signal wait,
search attributes and continue-as-new, so the audit compares every part of the state."""

from __future__ import annotations

from datetime import timedelta

from kadence import ApplicationError, activity, workflow

TASK_LIST = "audit"


@activity.defn
def double(n: int) -> int:
    return 2 * n


@workflow.defn(name="AuditChild")
class AuditChild:
    @workflow.run
    async def run(self, n: int) -> int:
        return await workflow.execute_activity(double, n, start_to_close_timeout=timedelta(seconds=10))


@workflow.defn(name="AuditOrder")
class AuditOrder:
    def __init__(self) -> None:
        self.approved = False

    @workflow.signal
    def approve(self) -> None:
        self.approved = True

    @workflow.run
    async def run(self, n: int, wait_for_approval: bool) -> int:
        workflow.upsert_search_attributes({"Stage": "started"})
        doubled = await workflow.execute_activity(double, n, start_to_close_timeout=timedelta(seconds=10))
        children = [
            await workflow.execute_child_workflow(
                AuditChild.run,
                doubled + i,
                id=f"{workflow.info().workflow_id}-{workflow.info().run_id[:6]}-c{i}",
            )
            for i in range(2)
        ]
        if wait_for_approval:
            await workflow.wait_condition(lambda: self.approved)
        if n < 0:
            raise ApplicationError("negative order", non_retryable=True)
        if n == 7:
            workflow.continue_as_new(8, wait_for_approval)
        return sum(children)


WORKFLOWS = [AuditOrder, AuditChild]
ACTIVITIES = [double]
