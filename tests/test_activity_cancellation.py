"""Activity cancellation reaches the running activity (issue 14, item 7), end to end through the
broker: a heartbeat is answered "cancel requested", a sync activity sees `activity.is_cancelled()`,
an async one gets `asyncio.CancelledError`, and each `ActivityCancellationType` behaves as in
Temporal. Each test asserts the history events and what the workflow saw."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from kadence import activity, workflow
from kadence.failures import ActivityError
from kadence.workflow import ActivityCancellationType as ACT
from kadence.workflow import RetryPolicy

TASK_LIST = "act-cancel"
#: The activities' heartbeat timeout: heartbeats go at most every min(1 s, timeout / 2) = 0.5 s.
HEARTBEAT_TIMEOUT = 1.0

#: What the activities saw, by workflow id (the worker runs in this process).
seen: dict[str, dict] = {}
seen_lock = threading.Lock()


def note(**kv) -> None:
    with seen_lock:
        seen.setdefault(activity.info().workflow_id, {}).update(kv)


@activity.defn
def sync_until_cancelled() -> str:
    """Heartbeats until told to stop, then acknowledges the cancel."""
    note(started=time.monotonic())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        activity.heartbeat()
        if activity.is_cancelled():
            note(cancelled=time.monotonic())
            raise activity.CancelledError("stopped at request")
        time.sleep(0.02)
    return "never cancelled"


@activity.defn
async def async_until_cancelled() -> str:
    note(started=time.monotonic())
    try:
        for _ in range(1500):
            activity.heartbeat()
            await asyncio.sleep(0.02)
    except asyncio.CancelledError:
        note(cancelled=time.monotonic(), is_cancelled=activity.is_cancelled())
        raise
    return "never cancelled"


@activity.defn
def sync_ignores_cancel(seconds: float) -> str:
    """Heartbeats for `seconds`, noting whether it was told of a cancel, then completes anyway."""
    note(started=time.monotonic())
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        activity.heartbeat()
        if activity.is_cancelled() and "cancelled" not in seen.get(activity.info().workflow_id, {}):
            note(cancelled=time.monotonic())
        time.sleep(0.02)
    note(finished=time.monotonic(), told=activity.is_cancelled())
    return "finished anyway"


#: Set by the restart test: its activity heartbeats once, then waits for this before going on.
resume = threading.Event()


@activity.defn
def sync_pauses_then_heartbeats() -> str:
    note(started=time.monotonic())
    activity.heartbeat()
    resume.wait(60)
    return sync_until_cancelled()


ACTIVITIES = {
    "pauses": sync_pauses_then_heartbeats,
    "sync": sync_until_cancelled,
    "async": async_until_cancelled,
    "ignores": sync_ignores_cancel,
}


@workflow.defn
class CancelsItsActivity:
    """Starts an activity with the given cancellation type, cancels it on the signal `cancel`, and
    returns what its await gave. `linger`: seconds of durable timer after that (so the activity's
    own outcome is recorded while the run is open)."""

    def __init__(self) -> None:
        self.cancel_now = False

    @workflow.signal
    def cancel(self) -> None:
        self.cancel_now = True

    @workflow.run
    async def run(
        self, kind: str, which: str, linger: float, heartbeat_timeout: float = HEARTBEAT_TIMEOUT
    ) -> dict:
        args = [3.0] if which == "ignores" else []
        task = workflow.start_activity(
            ACTIVITIES[which],
            *args,
            start_to_close_timeout=60,
            heartbeat_timeout=heartbeat_timeout,
            retry_policy=RetryPolicy(maximum_attempts=1),
            cancellation_type=ACT(kind),
        )
        await workflow.wait_condition(lambda: self.cancel_now)
        task.cancel()
        try:
            saw = {"result": await task}
        except asyncio.CancelledError:
            saw = {"cancelled": True}
        except ActivityError as err:
            saw = {"activity_error": type(err.cause).__name__}
        if linger:
            await workflow.sleep(linger)
        return saw


@pytest.fixture
def served(client, worker):
    worker(TASK_LIST, [CancelsItsActivity], list(ACTIVITIES.values()))
    return client


def kinds(events: list[dict]) -> list[str]:
    return [e["attributes"][0] for e in events]


def first(events: list[dict], kind: str) -> dict:
    return next(e for e in events if e["attributes"][0] == kind)


def run_and_cancel(client, wid: str, kind: str, which: str, linger: float = 0.0):
    """Start the workflow, wait until its activity runs, signal the cancel; return the result, the
    history, and seconds from the cancel signal to the activity seeing the cancel (or None)."""
    handle = client.start_workflow(CancelsItsActivity.run, kind, which, linger, id=wid, task_list=TASK_LIST)
    deadline = time.monotonic() + 30
    while "started" not in seen.get(wid, {}):
        assert time.monotonic() < deadline, "the activity never started"
        time.sleep(0.02)
    time.sleep(0.3)  # it has heartbeated at least once
    signalled = time.monotonic()
    handle.signal(CancelsItsActivity.cancel)
    result = handle.result(timeout=60)
    events = handle.history()
    cancelled = seen[wid].get("cancelled")
    return result, events, (cancelled - signalled if cancelled else None)


@pytest.mark.parametrize("which", ["sync", "async"])
def test_try_cancel_reaches_the_activity_and_the_workflow_goes_on_at_once(served, which) -> None:
    wid = f"try-{which}"
    result, events, latency = run_and_cancel(served, wid, "TRY_CANCEL", which, linger=2.0)
    print(f"TRY_CANCEL {which}: the activity saw the cancel {latency:.3f} s after the signal")
    assert result == {"cancelled": True}
    ks = kinds(events)
    requested = first(events, "ActivityTaskCancelRequested")
    timer = first(events, "TimerStarted")
    canceled = first(events, "ActivityTaskCanceled")
    # The workflow went on in the very decision that requested the cancel (its timer was decided
    # with it), before the activity had answered.
    dtc = requested["attributes"][1]["decision_task_completed_event_id"]
    assert timer["attributes"][1]["decision_task_completed_event_id"] == dtc
    assert requested["event_id"] < timer["event_id"] < canceled["event_id"]
    # The activity acknowledged: ActivityTaskCanceled with the worker's details, after a Started.
    attrs = canceled["attributes"][1]
    assert attrs["started_event_id"] > 0 and attrs["identity"]
    if which == "sync":
        assert b"stopped at request" in attrs["details"]["data"]
    else:
        assert seen[wid]["is_cancelled"] is True
    assert "ActivityTaskCompleted" not in ks and "ActivityTaskFailed" not in ks
    assert ks[-1] == "WorkflowExecutionCompleted"
    # Heartbeats go every 0.5 s; the news takes one heartbeat and a round trip through the engine.
    assert latency is not None and latency < 3.0


def test_wait_cancellation_completed_waits_for_the_activity_to_acknowledge(served) -> None:
    wid = "wait-ack"
    result, events, latency = run_and_cancel(served, wid, "WAIT_CANCELLATION_COMPLETED", "sync")
    print(f"WAIT_CANCELLATION_COMPLETED: the activity saw the cancel {latency:.3f} s after the signal")
    assert result == {"cancelled": True}
    ks = kinds(events)
    requested = first(events, "ActivityTaskCancelRequested")
    canceled = first(events, "ActivityTaskCanceled")
    assert requested["event_id"] < canceled["event_id"]
    assert canceled["attributes"][1]["latest_cancel_requested_event_id"] == requested["event_id"]
    # The workflow decided nothing between the request and the activity's answer: the decision
    # after the request is the one that saw ActivityTaskCanceled, and it completed the run.
    between = ks[requested["event_id"] : canceled["event_id"] - 1]  # (Started is written with the outcome)
    assert between == ["ActivityTaskStarted"], between
    assert ks[canceled["event_id"] :] == [
        "DecisionTaskScheduled",
        "DecisionTaskStarted",
        "DecisionTaskCompleted",
        "WorkflowExecutionCompleted",
    ]
    assert latency is not None and latency < 3.0


def test_wait_cancellation_completed_gets_the_result_of_an_activity_that_ignores_it(served) -> None:
    wid = "wait-ignored"
    result, events, latency = run_and_cancel(served, wid, "WAIT_CANCELLATION_COMPLETED", "ignores")
    # Told (is_cancelled turned True), it finished anyway: Completed, and the await gave its result.
    assert seen[wid]["told"] is True and latency is not None
    assert result == {"result": "finished anyway"}
    ks = kinds(events)
    requested = first(events, "ActivityTaskCancelRequested")
    completed = first(events, "ActivityTaskCompleted")
    assert requested["event_id"] < completed["event_id"]
    assert "ActivityTaskCanceled" not in ks
    assert ks[-1] == "WorkflowExecutionCompleted"
    assert first(events, "WorkflowExecutionCompleted")["event_id"] > completed["event_id"]


def test_abandon_sends_no_request_and_the_activity_runs_on(served) -> None:
    wid = "abandon"
    result, events, latency = run_and_cancel(served, wid, "ABANDON", "ignores", linger=4.0)
    assert result == {"cancelled": True}
    ks = kinds(events)
    assert "ActivityTaskCancelRequested" not in ks and "ActivityTaskCanceled" not in ks
    assert latency is None and seen[wid]["told"] is False  # never told: no request was sent
    timer = first(events, "TimerStarted")
    completed = first(events, "ActivityTaskCompleted")
    # The await raised at once (the timer after it was decided before the activity finished); the
    # activity's completion is recorded, and the code ignored it.
    assert timer["event_id"] < completed["event_id"]
    assert completed["attributes"][1]["result"]["data"] == b'"finished anyway"'
    assert ks[-1] == "WorkflowExecutionCompleted"


def test_a_heartbeat_of_an_activity_nobody_cancels_gets_no_answer(served) -> None:
    """The channel is quiet unless there is news: an activity that ignores nothing it is never told."""
    handle = served.start_workflow(
        CancelsItsActivity.run, "TRY_CANCEL", "ignores", 0.0, id="quiet", task_list=TASK_LIST
    )
    deadline = time.monotonic() + 30
    while "finished" not in seen.get("quiet", {}):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert seen["quiet"]["told"] is False
    handle.signal(CancelsItsActivity.cancel)
    assert handle.result(timeout=30) == {"result": "finished anyway"}
    assert "ActivityTaskCancelRequested" not in kinds(handle.history())


def test_a_cancel_request_reaches_the_activity_across_a_restart_of_the_engine(
    served, engine, settings
) -> None:
    """The request is history (cancel_requested is folded from it); the answer is soft state. The
    engine is stopped after ActivityTaskCancelRequested is recorded and before the activity
    heartbeats again: the restored history processor answers its next heartbeat."""
    from kadence.processors.server import InProcessEngine

    wid = "restart"
    handle = served.start_workflow(
        CancelsItsActivity.run,
        "WAIT_CANCELLATION_COMPLETED",
        "pauses",
        0.0,
        20.0,
        id=wid,
        task_list=TASK_LIST,
    )
    deadline = time.monotonic() + 30
    while "started" not in seen.get(wid, {}):
        assert time.monotonic() < deadline, "the activity never started"
        time.sleep(0.02)
    handle.signal(CancelsItsActivity.cancel)
    while "ActivityTaskCancelRequested" not in kinds(handle.history()):
        assert time.monotonic() < deadline, "no cancel request recorded"
        time.sleep(0.05)
    engine.stop()
    restarted = InProcessEngine(settings).start()
    try:
        resume.set()
        assert handle.result(timeout=60) == {"cancelled": True}
    finally:
        restarted.stop()
    events = handle.history()
    requested = first(events, "ActivityTaskCancelRequested")
    canceled = first(events, "ActivityTaskCanceled")
    assert requested["event_id"] < canceled["event_id"] and canceled["attributes"][1]["identity"]
    assert "cancelled" in seen[wid]
    assert kinds(events)[-1] == "WorkflowExecutionCompleted"
