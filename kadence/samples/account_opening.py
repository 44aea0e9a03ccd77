"""The demo's workflow: activities, a signal and a query, then the flagship OrderProcessing."""

from __future__ import annotations

from typing import Any

from kadence import activity, workflow


@activity.defn
def check_credit(customer: str) -> int:
    return 700 + len(customer) * 7


@activity.defn
def open_account(customer: str, plan: str) -> str:
    return f"acct-{customer}-{plan}"


@workflow.defn
class AccountOpeningWorkflow:
    """Checks credit, waits for a human to choose a plan (signal), opens the account.
    `status` (a query) tells where it is without touching history."""

    def __init__(self) -> None:
        self.status = "checking credit"
        self.plan: str | None = None

    @workflow.signal
    def choose_plan(self, plan: str) -> None:
        self.plan = plan

    @workflow.query
    def current_status(self) -> str:
        return self.status

    @workflow.run
    async def run(self, customer: str) -> dict[str, Any]:
        score = await workflow.execute_activity(check_credit, customer, start_to_close_timeout=10)
        self.status = f"credit score {score}; waiting for a plan"
        await workflow.wait_condition(lambda: self.plan is not None)
        plan = self.plan or ""  # set: the condition above waited for it
        self.status = f"opening a {plan} account"
        account = await workflow.execute_activity(open_account, customer, plan, start_to_close_timeout=10)
        self.status = "done"
        return {"customer": customer, "score": score, "plan": self.plan, "account": account}


WORKFLOWS = [AccountOpeningWorkflow]
ACTIVITIES = [check_credit, open_account]
TASK_LIST = "demo"
