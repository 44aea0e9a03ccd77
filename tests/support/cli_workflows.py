"""Workflows of the CLI tests (tests/test_cli.py), in the shape `kadence worker` and `kadence replay` take.

`Greeter` waits for `greet` signals (a query lists them), then runs one activity and returns its
result. `Parked` leaves an activity and a child pending for `describe` by sending both to a task
list no worker polls. `Failing` fails with an application error; `Flaky` fails (retryably) until
its attempt number reaches the one it is given.
"""

from __future__ import annotations

from kadence import activity, workflow
from kadence.failures import ApplicationError

TASK_LIST = "cli"
#: No worker ever polls this task list: work sent there stays pending.
IDLE_TASK_LIST = "cli-idle"


@activity.defn
def shout(text: str) -> str:
    return text.upper()


@workflow.defn
class Greeter:
    def __init__(self) -> None:
        self.names: list[str] = []
        self.done = False

    @workflow.signal
    def greet(self, name: str) -> None:
        self.names.append(name)

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.query
    def greeted(self, separator: str = ",") -> str:
        return separator.join(self.names)

    @workflow.run
    async def run(self, prefix: str, wanted: int) -> str:
        """Waits for `wanted` greetings (or `finish`), then shouts them."""
        await workflow.wait_condition(lambda: len(self.names) >= wanted or self.done)
        text = f"{prefix}: {' '.join(self.names)}".strip()
        result: str = await workflow.execute_activity(shout, text, start_to_close_timeout=10)
        return result


@workflow.defn
class Idle:
    """A child that never gets a decision (its task list has no worker)."""

    @workflow.run
    async def run(self) -> None:
        return None


@workflow.defn
class Parked:
    @workflow.run
    async def run(self) -> str:
        child = workflow.start_child_workflow(
            Idle.run, id=f"{workflow.info().workflow_id}-child", task_list=IDLE_TASK_LIST
        )
        pending = workflow.start_activity(
            "never-run", "x", task_list=IDLE_TASK_LIST, start_to_close_timeout=600
        )
        await child
        await pending
        return "unreachable"


@workflow.defn
class Failing:
    @workflow.run
    async def run(self, message: str) -> str:
        raise ApplicationError(message, type="CliBoom", non_retryable=True)


@workflow.defn
class Flaky:
    @workflow.run
    async def run(self, succeed_on: int) -> int:
        attempt = workflow.info().attempt
        if attempt < succeed_on:
            raise ApplicationError(f"attempt {attempt} fails", type="CliFlaky")
        return attempt


WORKFLOWS = [Greeter, Idle, Parked, Failing, Flaky]
ACTIVITIES = [shout]
