"""Notifications to a run about things it started elsewhere: children, external signals and
cancellations, and due timers. Each is recorded once, only while the run waits for it."""

from __future__ import annotations

from typing import Any

from ..transition import Transition
from .common import HandlerEnv, open_run, stale


def handle_child_event(tr: Transition, cmd: dict[str, Any], a: dict[str, Any], env: HandlerEnv) -> None:
    event_type = cmd["payload"][0]
    run = open_run(tr, cmd["run_id"])
    if run is None:
        return stale(tr, event_type, f"parent run {cmd['run_id']} is not open")
    child = run.children.get(a["initiated_event_id"])
    if child is None:
        return stale(tr, event_type, f"no pending child initiated at event {a['initiated_event_id']}")
    if event_type in ("ChildWorkflowExecutionStarted", "StartChildWorkflowExecutionFailed"):
        if child.started_event_id:
            return stale(tr, event_type, "the child already started")
        tr.add(event_type, dict(a))
    else:
        started_event_id = child.started_event_id
        if not started_event_id:  # the close overtook the start notification: record both, in order
            started_event_id = tr.add("ChildWorkflowExecutionStarted", {
                "domain": a["domain"], "workflow_id": a["workflow_id"], "run_id": a["run_id"],
                "workflow_type": a["workflow_type"], "initiated_event_id": a["initiated_event_id"],
                "started_event_id": 0})["event_id"]
        tr.add(event_type, {**a, "started_event_id": started_event_id})
    tr.schedule_decision_if_needed()


def handle_external_result(tr: Transition, cmd: dict[str, Any], a: dict[str, Any], env: HandlerEnv) -> None:
    event_type = cmd["payload"][0]
    run = open_run(tr, cmd["run_id"])
    if run is None:
        return stale(tr, event_type, f"run {cmd['run_id']} is not open")
    pending = run.signals_out if "Signal" in event_type else run.cancels_out
    if a["initiated_event_id"] not in pending:
        return stale(tr, event_type, f"nothing pending at event {a['initiated_event_id']}")
    tr.add(event_type, dict(a))
    tr.schedule_decision_if_needed()


def handle_fire_timer(tr: Transition, cmd: dict[str, Any], a: dict[str, Any], env: HandlerEnv) -> None:
    from .timeouts import FIRE_KINDS  # noqa: PLC0415 - timeouts imports this module's siblings

    handler = FIRE_KINDS.get(a["kind"])
    if handler is None:
        return stale(tr, "FireTimer", f"unknown timer kind {a['kind']!r}")
    handler(tr, cmd, a, env)
