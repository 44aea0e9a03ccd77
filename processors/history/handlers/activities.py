"""Activity task results from workers: record the attempt's outcome (or its retry), or drop it as
stale; heartbeats; and what a recorded cancel request does to a pending activity.

Cancellation (docs/protocol.md, "Activity cancellation"): RequestCancelActivityTask records
ActivityTaskCancelRequested. An attempt that is running goes on until the worker answers: a
heartbeat that asks for an answer (`reply_topic`) is answered on the query-results topic while
the attempt's cancel is requested (or once it is no longer pending), and the worker stops the
activity, which answers RespondActivityTaskCanceled (ActivityTaskCanceled), or completes or fails
if it ignores the request. An activity waiting for a retry's backoff runs nothing: it is canceled
at once. A cancel-requested activity is not retried.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

from kadence.history import ActivityInfo
from kadence.history.answers import CANCEL_REQUESTED, NOT_PENDING, heartbeat_answer
from kadence.history.retry import retry_delay_ms, timeout_failure
from kadence.schemas.records import (
    ActivityTaskCanceled,
    ActivityTaskCompleted,
    ActivityTaskFailed,
    ActivityTaskRetrying,
    ActivityTaskStarted,
    ActivityTaskTimedOut,
    Command,
    Failure,
    RecordActivityTaskHeartbeat,
    RespondActivityTaskCanceled,
    RespondActivityTaskCompleted,
    RespondActivityTaskFailed,
    TimeoutType,
)

from ..transition import Transition
from .common import HandlerEnv, open_run, payload_too_large, stale, token_of

#: A worker's answer to (or heartbeat of) an activity attempt.
ActivityAnswer: TypeAlias = (
    RespondActivityTaskCompleted
    | RespondActivityTaskFailed
    | RespondActivityTaskCanceled
    | RecordActivityTaskHeartbeat
)


def _pending(tr: Transition, a: ActivityAnswer) -> ActivityInfo | None:
    info, why = _pending_attempt(tr, a)
    if info is None:
        stale(tr, "activity result", why)
    return info


def _pending_attempt(tr: Transition, a: ActivityAnswer) -> tuple[ActivityInfo | None, str]:
    """The pending attempt the answer's token names, or None and why not."""
    token = token_of(a["task_token"], "a")
    run = open_run(tr, token.run_id)
    if run is None:
        return None, f"run {token.run_id} is not open"
    info = run.activities.get(token.scheduled_event_id)
    if info is None or info.attempt != token.attempt:
        return None, f"token {a['task_token']} is not a pending attempt"
    if a.get("activity_id") and a["activity_id"] != info.activity_id:
        # an eager execution whose predicted event id went to another activity
        return None, f"token {a['task_token']} names activity {info.activity_id!r}, not {a['activity_id']!r}"
    return info, ""


def request_cancel(tr: Transition, scheduled_event_id: int, cancel_requested_event_id: int) -> None:
    """After ActivityTaskCancelRequested (a RequestCancelActivityTask decision): an activity waiting
    for a retry's backoff runs nothing, so it is canceled at once; a running attempt is told by its
    next heartbeat (`handle_heartbeat`) and its answer closes the activity."""
    run = tr.run
    assert run is not None
    info = run.activities.get(scheduled_event_id)
    if info is None or info.attempt_time <= tr.now_ms:
        return  # running (attempts are dispatched when scheduled, or when their backoff ends)
    canceled: ActivityTaskCanceled = {
        "scheduled_event_id": scheduled_event_id,
        "started_event_id": 0,
        "latest_cancel_requested_event_id": cancel_requested_event_id,
        "details": None,
        "identity": "",
    }
    tr.add(("ActivityTaskCanceled", canceled))


def _started(tr: Transition, info: ActivityInfo, identity: str, last_failure: Failure | None = None) -> int:
    started: ActivityTaskStarted = {
        "scheduled_event_id": info.scheduled_event_id,
        "identity": identity,
        "request_id": "",
        "attempt": info.attempt,
        "last_failure": last_failure,
    }
    return tr.add(("ActivityTaskStarted", started))["event_id"]


def retry_or_close(
    tr: Transition,
    info: ActivityInfo,
    failure: Failure,
    identity: str,
    timeout_type: TimeoutType | Literal[""] = "",
) -> None:
    """The attempt failed (or timed out): retry per the activity's retry policy, or record the final
    outcome. A retry is recorded as ActivityTaskRetrying (the workflow is not woken); the next
    attempt is dispatched now, or by the timers processor after the backoff."""
    s2close = info.scheduled["schedule_to_close_timeout_ms"]
    delay = (
        None  # a cancel-requested activity is not retried (as in Temporal): its failure is final
        if info.cancel_requested
        else retry_delay_ms(
            info.scheduled["retry_policy"],
            info.attempt,
            failure,
            tr.now_ms,
            info.scheduled_time + s2close if s2close else 0,
        )
    )
    if delay is not None:
        run = tr.run
        assert run is not None
        retrying: ActivityTaskRetrying = {
            "scheduled_event_id": info.scheduled_event_id,
            "attempt": info.attempt,
            "failure": failure,
            "timeout_type": timeout_type,
            "backoff_ms": delay,
            "identity": identity,
        }
        tr.add(("ActivityTaskRetrying", retrying))
        if delay == 0:
            tr.dispatches.append(("activity", run.run_id, info.scheduled_event_id))
        return
    started = _started(tr, info, identity)
    if timeout_type:
        timed_out: ActivityTaskTimedOut = {
            "scheduled_event_id": info.scheduled_event_id,
            "started_event_id": started,
            "timeout_type": timeout_type,
            "last_failure": failure,
        }
        tr.add(("ActivityTaskTimedOut", timed_out))
    else:
        failed: ActivityTaskFailed = {
            "scheduled_event_id": info.scheduled_event_id,
            "started_event_id": started,
            "failure": failure,
            "identity": identity,
        }
        tr.add(("ActivityTaskFailed", failed))
    tr.schedule_decision_if_needed()


def handle_activity_completed(
    tr: Transition, cmd: Command, a: RespondActivityTaskCompleted, env: HandlerEnv
) -> None:
    info = _pending(tr, a)
    if info is None:
        return
    too_large = payload_too_large(env, a["result"])
    if too_large:
        retry_or_close(
            tr,
            info,
            {
                "type": "PayloadTooLarge",
                "message": f"activity result rejected: {too_large}",
                "stack": "",
                "non_retryable": True,
                "details": None,
                "cause": None,
            },
            a["identity"],
        )
        return
    started = _started(tr, info, a["identity"])
    completed: ActivityTaskCompleted = {
        "scheduled_event_id": info.scheduled_event_id,
        "started_event_id": started,
        "result": a["result"],
        "identity": a["identity"],
    }
    tr.add(("ActivityTaskCompleted", completed))
    tr.schedule_decision_if_needed()


def handle_activity_failed(
    tr: Transition, cmd: Command, a: RespondActivityTaskFailed, env: HandlerEnv
) -> None:
    info = _pending(tr, a)
    if info is not None:
        retry_or_close(tr, info, a["failure"], a["identity"])


def handle_activity_canceled(
    tr: Transition, cmd: Command, a: RespondActivityTaskCanceled, env: HandlerEnv
) -> None:
    info = _pending(tr, a)
    if info is None:
        return
    started = _started(tr, info, a["identity"])
    canceled: ActivityTaskCanceled = {
        "scheduled_event_id": info.scheduled_event_id,
        "started_event_id": started,
        "latest_cancel_requested_event_id": info.cancel_requested_event_id,
        "details": a["details"],
        "identity": a["identity"],
    }
    tr.add(("ActivityTaskCanceled", canceled))
    tr.schedule_decision_if_needed()


def handle_heartbeat(tr: Transition, cmd: Command, a: RecordActivityTaskHeartbeat, env: HandlerEnv) -> None:
    """Heartbeats record nothing in history (the processor's liveness tracker notes them). One that
    asks for an answer (`reply_topic`, checked on entry) is answered when its attempt should stop:
    its cancel was requested, or it is no longer pending. Otherwise nothing is sent."""
    info, why = _pending_attempt(tr, a)
    if info is not None:
        tr.heartbeat = (info.scheduled_event_id, info.attempt)
    else:
        stale(tr, "activity heartbeat", why)
    reply_topic = a.get("reply_topic")
    if not reply_topic:
        return
    if info is None:
        answer = heartbeat_answer(cmd["command_id"], NOT_PENDING, why)
    elif info.cancel_requested:
        answer = heartbeat_answer(
            cmd["command_id"], CANCEL_REQUESTED, f"activity {info.activity_id}: cancel requested"
        )
    else:
        return
    tr.query_results.append((reply_topic, answer))


def activity_timed_out(
    tr: Transition, info: ActivityInfo, timeout_type: TimeoutType, retryable: bool = True
) -> None:
    failure = timeout_failure("activity", timeout_type, f"{info.activity_type} (attempt {info.attempt})")
    if retryable:
        retry_or_close(tr, info, failure, "", timeout_type)
        return
    started = _started(tr, info, "")
    timed_out: ActivityTaskTimedOut = {
        "scheduled_event_id": info.scheduled_event_id,
        "started_event_id": started,
        "timeout_type": timeout_type,
        "last_failure": failure,
    }
    tr.add(("ActivityTaskTimedOut", timed_out))
    tr.schedule_decision_if_needed()
