"""Due timers and timeouts, fired by the timers processor. Each checks that what it would act on
is still pending (same event id and attempt); otherwise the fire is stale and dropped."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from kadence.history import ActivityInfo
from kadence.schemas.records import (
    Command,
    DecisionTaskTimedOut,
    FireTimer,
    TimeoutType,
    TimerFired,
    WorkflowExecutionTimedOut,
)

from .. import transient
from ..transition import Transition
from .activities import activity_timed_out
from .common import HandlerEnv, open_run, stale

#: What fires a FireTimer command of one kind (`FIRE_KINDS`).
FireHandler: TypeAlias = Callable[[Transition, Command, FireTimer, HandlerEnv], None]


def _user_timer(tr: Transition, cmd: Command, a: FireTimer, env: HandlerEnv) -> None:
    run = open_run(tr, cmd["run_id"])
    timer = run.timers.get(a["timer_id"]) if run is not None else None
    if timer is None or timer.started_event_id != a["event_id"]:
        return stale(tr, "timer fire", f"timer {a['timer_id']!r} is not pending")
    fired: TimerFired = {"timer_id": a["timer_id"], "started_event_id": timer.started_event_id}
    tr.add(("TimerFired", fired))
    tr.schedule_decision_if_needed()


def _decision_retry(tr: Transition, cmd: Command, a: FireTimer, env: HandlerEnv) -> None:
    """The backoff of a failed decision task is over: its next attempt goes out, transient (fired
    by the timers processor for a recorded failure, by the history processor for a transient one)."""
    run = open_run(tr, cmd["run_id"])
    t = tr.transient
    if transient.current(t, run):
        assert t is not None
        if t.outstanding or t.attempt != a["attempt"]:
            return stale(tr, "decision retry", "another attempt of the decision task is out or due")
        return transient.send(tr, t.attempt)
    if not transient.in_streak(run) or run is None or run.decision_attempt != a["attempt"]:
        return stale(tr, "decision retry", "the decision task is no longer waiting for a retry")
    transient.send(tr, run.decision_attempt)


def _decision_timeout(tr: Transition, cmd: Command, a: FireTimer, env: HandlerEnv) -> None:
    run = open_run(tr, cmd["run_id"])
    d = run.decision if run is not None else None
    if run is not None and d is None and transient.matches(tr, run, a["event_id"], a["attempt"]):
        t = tr.transient
        assert t is not None
        if run.decision_failure == transient.TIMED_OUT:  # timed out again: nothing recorded
            return transient.send(tr, t.attempt + 1)
        transient.record(tr)  # a new failure: recorded with its Scheduled and Started
        run = tr.run
        assert run is not None
        d = run.decision
    if (
        d is None
        or d.scheduled_event_id != a["event_id"]
        or d.attempt != a["attempt"]
        or not d.started_event_id
    ):
        return stale(tr, "decision timeout", "the decision task is no longer outstanding")
    timed_out: DecisionTaskTimedOut = {
        "scheduled_event_id": d.scheduled_event_id,
        "started_event_id": d.started_event_id,
        "timeout_type": "START_TO_CLOSE",
    }
    tr.add(("DecisionTaskTimedOut", timed_out))
    transient.send(tr, d.attempt + 1)  # another worker (or the restarted one) gets attempt + 1, transient


def _pending_attempt(tr: Transition, cmd: Command, a: FireTimer, what: str) -> ActivityInfo | None:
    run = open_run(tr, cmd["run_id"])
    info = run.activities.get(a["event_id"]) if run is not None else None
    if info is None or (a["attempt"] and info.attempt != a["attempt"]):
        stale(tr, what, "the activity attempt is no longer pending")
        return None
    return info


def _activity_timeout(timeout_type: TimeoutType, retryable: bool) -> FireHandler:
    def fire(tr: Transition, cmd: Command, a: FireTimer, env: HandlerEnv) -> None:
        info = _pending_attempt(tr, cmd, a, f"activity {timeout_type} timeout")
        if info is not None:
            activity_timed_out(tr, info, timeout_type, retryable)

    return fire


def _activity_retry(tr: Transition, cmd: Command, a: FireTimer, env: HandlerEnv) -> None:
    """The backoff of a retry is over: dispatch the next attempt (nothing is recorded)."""
    info = _pending_attempt(tr, cmd, a, "activity retry")
    if info is not None:
        tr.dispatches.append(("activity", cmd["run_id"], info.scheduled_event_id))


def _workflow_backoff(tr: Transition, cmd: Command, a: FireTimer, env: HandlerEnv) -> None:
    """A retried (or delayed continue-as-new) run's first decision task is due."""
    run = open_run(tr, cmd["run_id"])
    if run is None or run.decision is not None or run.last_completed_started_event_id:
        return stale(tr, "workflow backoff", "the run already has its first decision task")
    tr.schedule_decision(full_history=True)


def _workflow_timeout(timeout_type: TimeoutType) -> FireHandler:
    def fire(tr: Transition, cmd: Command, a: FireTimer, env: HandlerEnv) -> None:
        run = open_run(tr, cmd["run_id"])
        if run is None:
            return stale(tr, f"{timeout_type} timeout", "the run is closed")
        timed_out: WorkflowExecutionTimedOut = {"timeout_type": timeout_type}
        tr.add(("WorkflowExecutionTimedOut", timed_out))

    return fire


FIRE_KINDS: dict[str, FireHandler] = {
    "timer": _user_timer,
    "decision_retry": _decision_retry,
    "decision_timeout": _decision_timeout,
    "activity_timeout": _activity_timeout("START_TO_CLOSE", retryable=True),
    "heartbeat_timeout": _activity_timeout("HEARTBEAT", retryable=True),
    "activity_schedule_to_close": _activity_timeout("SCHEDULE_TO_CLOSE", retryable=False),
    "schedule_to_start_timeout": _activity_timeout("SCHEDULE_TO_START", retryable=False),
    "activity_retry": _activity_retry,
    "workflow_backoff": _workflow_backoff,
    "workflow_timeout": _workflow_timeout("EXECUTION"),
    "run_timeout": _workflow_timeout("RUN"),
}
