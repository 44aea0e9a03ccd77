"""Activity task results from workers: record the attempt's outcome, or drop it as stale."""

from __future__ import annotations

from typing import Any

from history import ActivityInfo

from ..transition import Transition
from .common import HandlerEnv, open_run, payload_too_large, stale, token_of


def _pending(tr: Transition, a: dict[str, Any]) -> ActivityInfo | None:
    token = token_of(a, "a")
    run = open_run(tr, token.run_id)
    if run is None:
        stale(tr, "activity result", f"run {token.run_id} is not open")
        return None
    info = run.activities.get(token.scheduled_event_id)
    if info is None or info.attempt != token.attempt:
        stale(tr, "activity result", f"token {a['task_token']} is not a pending attempt")
        return None
    return info


def _started(tr: Transition, info: ActivityInfo, identity: str) -> int:
    event = tr.add("ActivityTaskStarted", {"scheduled_event_id": info.scheduled_event_id, "identity": identity,
                                           "request_id": "", "attempt": info.attempt, "last_failure": None})
    return event["event_id"]


def handle_activity_completed(tr: Transition, cmd: dict[str, Any], a: dict[str, Any], env: HandlerEnv) -> None:
    info = _pending(tr, a)
    if info is None:
        return
    too_large = payload_too_large(env, a["result"])
    started = _started(tr, info, a["identity"])
    if too_large:
        tr.add("ActivityTaskFailed", {"scheduled_event_id": info.scheduled_event_id, "started_event_id": started,
                                      "identity": a["identity"], "failure": {
                                          "type": "PayloadTooLarge", "message": f"activity result rejected: {too_large}",
                                          "stack": "", "non_retryable": True, "details": None, "cause": None}})
    else:
        tr.add("ActivityTaskCompleted", {"scheduled_event_id": info.scheduled_event_id, "started_event_id": started,
                                         "result": a["result"], "identity": a["identity"]})
    tr.schedule_decision_if_needed()


def handle_activity_failed(tr: Transition, cmd: dict[str, Any], a: dict[str, Any], env: HandlerEnv) -> None:
    info = _pending(tr, a)
    if info is None:
        return
    started = _started(tr, info, a["identity"])
    tr.add("ActivityTaskFailed", {"scheduled_event_id": info.scheduled_event_id, "started_event_id": started,
                                  "failure": a["failure"], "identity": a["identity"]})
    tr.schedule_decision_if_needed()


def handle_activity_canceled(tr: Transition, cmd: dict[str, Any], a: dict[str, Any], env: HandlerEnv) -> None:
    info = _pending(tr, a)
    if info is None:
        return
    started = _started(tr, info, a["identity"])
    tr.add("ActivityTaskCanceled", {"scheduled_event_id": info.scheduled_event_id, "started_event_id": started,
                                    "latest_cancel_requested_event_id": 0, "details": a["details"], "identity": a["identity"]})
    tr.schedule_decision_if_needed()


def handle_heartbeat(tr: Transition, cmd: dict[str, Any], a: dict[str, Any], env: HandlerEnv) -> None:
    """Heartbeats record nothing in history; a heartbeat for a stale attempt is dropped."""
    _pending(tr, a)
