"""`AuditOrder` as changed code would be: it schedules the activity with a different type first,
so replaying AuditOrder's recorded runs diverges. `AuditChild` is unchanged (it still replays)."""

from __future__ import annotations

from datetime import timedelta

from kadence import activity, workflow

from .audit_workflows import AuditChild


@activity.defn
def triple(n: int) -> int:
    return 3 * n


@workflow.defn(name="AuditOrder")
class AuditOrder:
    @workflow.signal
    def approve(self) -> None:
        pass

    @workflow.run
    async def run(self, n: int, wait_for_approval: bool) -> int:
        workflow.upsert_search_attributes({"Stage": "started"})
        return await workflow.execute_activity(triple, n, start_to_close_timeout=timedelta(seconds=10))


WORKFLOWS = [AuditOrder, AuditChild]
