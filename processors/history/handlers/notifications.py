"""Notifications to a run about things it started elsewhere: children, external signals and
cancellations, and due timers. Each is recorded once, only while the run waits for it.

A child or external notification is recorded as itself: its payload branch (record type and
record) is also a branch of `HistoryEventAttributes`, so the decoded payload becomes the event's
attributes."""

from __future__ import annotations

from kadence.schemas.records import (
    ChildWorkflowExecutionCanceled,
    ChildWorkflowExecutionCompleted,
    ChildWorkflowExecutionFailed,
    ChildWorkflowExecutionStarted,
    ChildWorkflowExecutionTerminated,
    ChildWorkflowExecutionTimedOut,
    Command,
    ExternalWorkflowExecutionCancelRequested,
    ExternalWorkflowExecutionSignaled,
    FireTimer,
    RequestCancelExternalWorkflowExecutionFailed,
    SignalExternalWorkflowExecutionFailed,
    StartChildWorkflowExecutionFailed,
)

from ..transition import Transition
from .common import HandlerEnv, reporting_run, stale


def handle_child_event(
    tr: Transition,
    cmd: Command,
    a: StartChildWorkflowExecutionFailed
    | ChildWorkflowExecutionStarted
    | ChildWorkflowExecutionCompleted
    | ChildWorkflowExecutionFailed
    | ChildWorkflowExecutionCanceled
    | ChildWorkflowExecutionTimedOut
    | ChildWorkflowExecutionTerminated,
    env: HandlerEnv,
) -> None:
    notification = cmd["payload"]
    event_type = notification[0]
    run = reporting_run(tr, cmd["run_id"], a["initiated_event_id"])
    if run is None:
        return stale(tr, event_type, f"parent run {cmd['run_id']} is not open")
    child = run.children.get(a["initiated_event_id"])
    if child is None:
        return stale(tr, event_type, f"no pending child initiated at event {a['initiated_event_id']}")
    match notification:
        case ("ChildWorkflowExecutionStarted" | "StartChildWorkflowExecutionFailed", _) as started_or_failed:
            if child.started_event_id:
                return stale(tr, event_type, "the child already started")
            tr.add(started_or_failed)
        case (
            "ChildWorkflowExecutionCompleted"
            | "ChildWorkflowExecutionFailed"
            | "ChildWorkflowExecutionCanceled"
            | "ChildWorkflowExecutionTimedOut"
            | "ChildWorkflowExecutionTerminated",
            closed,
        ) as close:
            started_event_id = child.started_event_id
            if not started_event_id:  # the close overtook the start notification: record both, in order
                started: ChildWorkflowExecutionStarted = {
                    "domain": closed["domain"],
                    "workflow_id": closed["workflow_id"],
                    "run_id": closed["run_id"],
                    "workflow_type": closed["workflow_type"],
                    "initiated_event_id": closed["initiated_event_id"],
                    "started_event_id": 0,
                }
                started_event_id = tr.add(("ChildWorkflowExecutionStarted", started))["event_id"]
            closed["started_event_id"] = started_event_id  # the decoded command is this handler's to complete
            tr.add(close)
    tr.schedule_decision_if_needed()


def handle_external_result(
    tr: Transition,
    cmd: Command,
    a: SignalExternalWorkflowExecutionFailed
    | ExternalWorkflowExecutionSignaled
    | RequestCancelExternalWorkflowExecutionFailed
    | ExternalWorkflowExecutionCancelRequested,
    env: HandlerEnv,
) -> None:
    result = cmd["payload"]
    event_type = result[0]
    run = reporting_run(tr, cmd["run_id"], a["initiated_event_id"])
    if run is None:
        return stale(tr, event_type, f"run {cmd['run_id']} is not open")
    pending = run.signals_out if "Signal" in event_type else run.cancels_out
    if a["initiated_event_id"] not in pending:
        return stale(tr, event_type, f"nothing pending at event {a['initiated_event_id']}")
    match result:
        case (
            "SignalExternalWorkflowExecutionFailed"
            | "ExternalWorkflowExecutionSignaled"
            | "RequestCancelExternalWorkflowExecutionFailed"
            | "ExternalWorkflowExecutionCancelRequested",
            _,
        ) as outcome:
            tr.add(outcome)
    tr.schedule_decision_if_needed()


def handle_fire_timer(tr: Transition, cmd: Command, a: FireTimer, env: HandlerEnv) -> None:
    from .timeouts import FIRE_KINDS  # noqa: PLC0415 - timeouts imports this module's siblings

    handler = FIRE_KINDS.get(a["kind"])
    if handler is None:
        return stale(tr, "FireTimer", f"unknown timer kind {a['kind']!r}")
    handler(tr, cmd, a, env)
