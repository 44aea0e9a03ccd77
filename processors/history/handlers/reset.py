"""Reset: a new run of a workflow made from a prefix of its current run's history.

The prefix ends at the DecisionTaskStarted that the chosen DecisionTaskCompleted answers, so the
new run's code decides again from that point. What the old run received after the point and what
it started before the point carry over; the rest is decided afresh (docs/protocol.md, "Reset"):

- the old run, if open, is terminated; its close names the new run, and the parent close policy
  applies only to the children it initiated after the point;
- the new run copies events 1..point (ids and times kept), then records DecisionTaskFailed
  (cause RESET_WORKFLOW, `base_run_id`), then, in the order the old run recorded them:
  the signals received after the point (unless `reapply_signals` is false), and what the
  children, signals and cancellations initiated before the point reported after it;
- children, signals and cancellations initiated before the point report to the new run from now
  on (`RunState.reset_attached`); activities pending at the point are dispatched again.

Temporal refuses a reset while children are pending (temporal#705, #3624); here they stay
attached.
"""

from __future__ import annotations

from typing import Any, cast

from kadence.history.answers import ACCEPTED, NOT_FOUND, REFUSED, command_answer
from kadence.history.ids import reset_run_id
from kadence.schemas.records import (
    Command,
    DecisionTaskFailed,
    HistoryEvent,
    HistoryEventAttributes,
    ResetWorkflowExecution,
    WorkflowExecutionTerminated,
)

from ..transition import Transition
from .common import HandlerEnv, log

#: Reset points a command may name instead of an event id.
RESET_POINTS = ("FIRST_DECISION", "LAST_DECISION")

#: Events recorded after the point that report on something initiated before it (by the attribute
#: `initiated_event_id`): they are facts about work the new run keeps, so they are copied.
_REPORTS = frozenset(
    {
        "ChildWorkflowExecutionStarted",
        "StartChildWorkflowExecutionFailed",
        "ChildWorkflowExecutionCompleted",
        "ChildWorkflowExecutionFailed",
        "ChildWorkflowExecutionCanceled",
        "ChildWorkflowExecutionTimedOut",
        "ChildWorkflowExecutionTerminated",
        "ExternalWorkflowExecutionSignaled",
        "SignalExternalWorkflowExecutionFailed",
        "ExternalWorkflowExecutionCancelRequested",
        "RequestCancelExternalWorkflowExecutionFailed",
    }
)


def _answer(tr: Transition, cmd: Command, status: str, reason: str) -> None:
    tr.outcome(command_answer(cmd, status, reason, tr.now_ms))


def _reset_event(events: list[HistoryEvent], a: ResetWorkflowExecution) -> HistoryEvent | str:
    """The DecisionTaskCompleted the command names, or why there is none."""
    completed = [e for e in events if e["attributes"][0] == "DecisionTaskCompleted"]
    if a["reset_event_id"]:
        chosen = next((e for e in events if e["event_id"] == a["reset_event_id"]), None)
        if chosen is None:
            return f"the run has no event {a['reset_event_id']}"
        if chosen["attributes"][0] != "DecisionTaskCompleted":
            return (
                f"event {a['reset_event_id']} is {chosen['attributes'][0]}; a reset point is a "
                "DecisionTaskCompleted event"
            )
        return chosen
    if a["reset_point"] not in RESET_POINTS:
        return f"reset point {a['reset_point']!r}: give an event id or one of {', '.join(RESET_POINTS)}"
    if not completed:
        return "the run has no completed decision task to reset to"
    return completed[0] if a["reset_point"] == "FIRST_DECISION" else completed[-1]


def handle_reset(tr: Transition, cmd: Command, a: ResetWorkflowExecution, env: HandlerEnv) -> None:
    run = tr.state.current if tr.state is not None else None
    if run is None or (cmd["run_id"] and cmd["run_id"] != run.run_id):
        what = f"run {cmd['run_id']} is not the current run" if run is not None else "workflow not found"
        _answer(tr, cmd, NOT_FOUND, f"reset of {tr.workflow_id}: {what}")
        return
    if run.reset_attached and run.run_id == reset_run_id(
        tr.domain, tr.workflow_id, run.reset_attached[-1][0], cmd["command_id"]
    ):
        _answer(tr, cmd, ACCEPTED, run.run_id)  # this command made the current run: a duplicate
        return
    assert tr.stored_events is not None, "the processor gives a reset the run's stored events"
    events = tr.stored_events(run.run_id)
    if not events or events[0]["event_id"] != 1:
        _answer(
            tr, cmd, REFUSED, f"reset of {tr.workflow_id}: the run's events are not in the engine's store"
        )
        return
    chosen = _reset_event(events, a)
    if isinstance(chosen, str):
        _answer(tr, cmd, REFUSED, f"reset of {tr.workflow_id}: {chosen}")
        return
    point = chosen["attributes"][1]["started_event_id"]  # type: ignore[typeddict-item]
    scheduled = chosen["attributes"][1]["scheduled_event_id"]  # type: ignore[typeddict-item]
    new_run_id = reset_run_id(tr.domain, tr.workflow_id, run.run_id, cmd["command_id"])
    why = f"reset to event {chosen['event_id']}" + (f": {a['reason']}" if a["reason"] else "")
    if run.is_open:
        terminated: WorkflowExecutionTerminated = {
            "reason": why,
            "details": None,
            "identity": a["identity"],
            "new_execution_run_id": new_run_id,
            "reset_last_event_id": point,
        }
        tr.add(("WorkflowExecutionTerminated", terminated))
    for event in events[:point]:
        tr.copy(event, new_run_id)
    failed: DecisionTaskFailed = {
        "scheduled_event_id": scheduled,
        "started_event_id": point,
        "cause": "RESET_WORKFLOW",
        "failure": {
            "type": "ResetWorkflow",
            "message": f"{why} of run {run.run_id}",
            "stack": "",
            "non_retryable": True,
            "details": None,
            "cause": None,
        },
        "identity": a["identity"],
        "base_run_id": run.run_id,
        "reset_attached": [{"run_id": r, "last_event_id": min(last, point)} for r, last in run.reset_attached]
        + [{"run_id": run.run_id, "last_event_id": point}],
    }
    tr.add(("DecisionTaskFailed", failed))
    _reapply(tr, events[point:], point, run.run_id, a["reapply_signals"])
    current = tr.run
    assert current is not None
    for scheduled_event_id, info in current.activities.items():
        if info.dispatch_time <= tr.now_ms:  # (a retry in its backoff is dispatched by its timer)
            tr.dispatches.append(("activity", new_run_id, scheduled_event_id))
    tr.schedule_decision(full_history=True)
    log.info("reset %s run %s to event %d: new run %s", tr.workflow_id, run.run_id, point, new_run_id)
    _answer(tr, cmd, ACCEPTED, new_run_id)


def _reapply(tr: Transition, after: list[HistoryEvent], point: int, base_run_id: str, signals: bool) -> None:
    """Record in the new run what the base run recorded after the point and the new run keeps."""
    renumbered: dict[int, int] = {}  # base run event id -> the copy's id (for started_event_id)
    for event in after:
        kind = event["attributes"][0]
        attrs = cast(dict[str, Any], event["attributes"][1])
        if kind == "WorkflowExecutionSignaled" and signals:
            body = {**attrs, "carried_from_run_id": base_run_id}
        elif kind in _REPORTS and 0 < attrs.get("initiated_event_id", 0) <= point:
            body = dict(attrs)
            if "started_event_id" in body:
                body["started_event_id"] = renumbered.get(body["started_event_id"], body["started_event_id"])
        else:
            continue
        copied = tr.add(cast(HistoryEventAttributes, (kind, body)))
        renumbered[event["event_id"]] = copied["event_id"]
