"""Workflows and activities of the timer/timeout/retry tests; also served by a worker subprocess
(`kadence worker tests.support.timeout_workflows`) that the tests kill with SIGKILL.

Behaviour that must differ between the killed worker and its successor keys on the attempt
number, or on KADENCE_TEST_HANG (set only in the subprocess), never on wall-clock luck.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from kadence import activity, workflow
from kadence.failures import ApplicationError

TASK_LIST = "timeouts"


@activity.defn
def slow_then_fast(marker_dir: str) -> str:
    """Attempt 1 outlives its start-to-close timeout; attempt 2 answers at once."""
    if activity.info().attempt == 1:
        time.sleep(8)
        return "too late"
    return f"done on attempt {activity.info().attempt}"


@activity.defn
def heartbeating(marker_dir: str) -> str:
    """On the worker that will be killed (KADENCE_TEST_DOOMED) it heartbeats until killed; anywhere
    else (the successor) a retry finishes at once, a redelivered first attempt only after its
    heartbeat timeout has fired."""
    if os.environ.get("KADENCE_TEST_DOOMED"):
        Path(marker_dir, "started").write_text(str(os.getpid()))
        deadline = time.monotonic() + 120  # bounded even if nobody kills it
        while time.monotonic() < deadline:
            activity.heartbeat("alive")
            time.sleep(0.1)
    elif activity.info().attempt == 1:
        time.sleep(3)  # a redelivered first attempt must not beat its heartbeat timeout (1 s)
    return f"finished on attempt {activity.info().attempt} by pid {os.getpid()}"


@workflow.defn
class Sleeper:
    @workflow.run
    async def run(self, seconds: float) -> str:
        await workflow.sleep(seconds)
        return "woke"


@workflow.defn
class ConditionWaiter:
    def __init__(self) -> None:
        self.go = False

    @workflow.signal
    def proceed(self) -> None:
        self.go = True

    @workflow.run
    async def run(self, timeout: float) -> str:
        try:
            await workflow.wait_condition(lambda: self.go, timeout=timeout)
            return "condition met"
        except TimeoutError:
            return "timed out"


RETRY_FAST = workflow.RetryPolicy(initial_interval=0.1, backoff_coefficient=1.0, maximum_attempts=5)
#: Survives the group rebalance after a worker dies (a few seconds without any worker on the list).
RETRY_PATIENT = workflow.RetryPolicy(initial_interval=0.5, backoff_coefficient=1.5, maximum_attempts=20)


@workflow.defn
class RetryingActivity:
    @workflow.run
    async def run(self, marker_dir: str) -> str:
        return await workflow.execute_activity(
            slow_then_fast, marker_dir, start_to_close_timeout=4, retry_policy=RETRY_FAST
        )


@workflow.defn
class HeartbeatWorkflow:
    @workflow.run
    async def run(self, marker_dir: str) -> str:
        return await workflow.execute_activity(
            heartbeating,
            marker_dir,
            start_to_close_timeout=60,
            heartbeat_timeout=1,
            retry_policy=RETRY_PATIENT,
        )


@workflow.defn
class FlakyChild:
    """Fails on its first two attempts (runs), succeeds on the third."""

    @workflow.run
    async def run(self) -> str:
        attempt = workflow.info().attempt
        if attempt < 3:
            raise ApplicationError(f"flaky failure on attempt {attempt}", type="Flaky")
        return f"succeeded on attempt {attempt}"


@workflow.defn
class RetryParent:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_child_workflow(
            FlakyChild.run, id=f"{workflow.info().workflow_id}-child", retry_policy=RETRY_FAST
        )


@workflow.defn
class NeverEnding:
    @workflow.run
    async def run(self) -> str:
        await workflow.sleep(3600)
        return "never"


@workflow.defn
class TimeoutParent:
    @workflow.run
    async def run(self) -> str:
        try:
            await workflow.execute_child_workflow(
                NeverEnding.run, id=f"{workflow.info().workflow_id}-child", execution_timeout=0.5
            )
        except Exception as err:  # noqa: BLE001 - the test checks the type via its name
            return f"{type(err).__name__} caused by {type(err.__cause__).__name__}"
        return "child finished"


@workflow.defn
class HangOnce:
    """In the worker subprocess (KADENCE_TEST_HANG set) the first decision never answers."""

    @workflow.run
    async def run(self) -> str:
        if os.environ.get("KADENCE_TEST_HANG"):
            time.sleep(3600)  # noqa: ASYNC251 - deliberately wedges the doomed worker
        return "answered by a healthy worker"


WORKFLOWS = [
    Sleeper,
    ConditionWaiter,
    RetryingActivity,
    HeartbeatWorkflow,
    FlakyChild,
    RetryParent,
    NeverEnding,
    TimeoutParent,
    HangOnce,
]
ACTIVITIES = [slow_then_fast, heartbeating]
