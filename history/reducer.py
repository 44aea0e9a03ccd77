"""`apply(state, event) -> state`: the one pure function that gives history its meaning.

Dispatches on the event's type to one small function per event (`_on_<EventName>`); an event type
with no function raises `UnknownEventError` rather than being skipped. Inputs are never mutated:
each function returns a new `RunState` with copies of the collections it changes (objects are
copied with `state.copy_with`, a `dataclasses.replace` made cheap: this runs once per event).

Used by the history processor (live state and restore), the derived processors, `describe` and
the audit replayer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

from immutables import Map

from . import search_attributes
from .ids import child_start_command_id, derive_run_id
from .state import (
    CLOSE_EVENTS,
    DECISION_TRIGGERING_EVENTS,
    ActivityInfo,
    ChildInfo,
    DecisionInfo,
    ExecutionState,
    RunState,
    TimerInfo,
    copy_with,
)

if TYPE_CHECKING:
    from kadence.schemas.records import (
        ActivityTaskCanceled,
        ActivityTaskCancelRequested,
        ActivityTaskCompleted,
        ActivityTaskFailed,
        ActivityTaskRetrying,
        ActivityTaskScheduled,
        ActivityTaskStarted,
        ActivityTaskTimedOut,
        ChildWorkflowExecutionCanceled,
        ChildWorkflowExecutionCompleted,
        ChildWorkflowExecutionFailed,
        ChildWorkflowExecutionStarted,
        ChildWorkflowExecutionTerminated,
        ChildWorkflowExecutionTimedOut,
        DecisionTaskCompleted,
        DecisionTaskScheduled,
        ExternalWorkflowExecutionCancelRequested,
        ExternalWorkflowExecutionClosed,
        ExternalWorkflowExecutionSignaled,
        HistoryEvent,
        HistoryTransition,
        RequestCancelExternalWorkflowExecutionFailed,
        RequestCancelExternalWorkflowExecutionInitiated,
        SignalExternalWorkflowExecutionFailed,
        SignalExternalWorkflowExecutionInitiated,
        StartChildWorkflowExecutionFailed,
        StartChildWorkflowExecutionInitiated,
        TimerCanceled,
        TimerFired,
        TimerStarted,
        UpsertWorkflowMemo,
        UpsertWorkflowSearchAttributes,
        WatchExternalWorkflowExecutionFailed,
        WatchExternalWorkflowExecutionInitiated,
        WorkflowExecutionSignaled,
        WorkflowExecutionStarted,
        WorkflowExecutionUpdateAccepted,
        WorkflowExecutionUpdateCompleted,
        WorkflowExecutionWatched,
    )

    from .state import CloseAttributes

    #: The events that end a pending child (its start failed, or it closed).
    ChildClosed: TypeAlias = (
        StartChildWorkflowExecutionFailed
        | ChildWorkflowExecutionCompleted
        | ChildWorkflowExecutionFailed
        | ChildWorkflowExecutionCanceled
        | ChildWorkflowExecutionTimedOut
        | ChildWorkflowExecutionTerminated
    )
    #: The events that end a pending outgoing signal or cancel request.
    OutgoingDone: TypeAlias = (
        SignalExternalWorkflowExecutionFailed
        | ExternalWorkflowExecutionSignaled
        | RequestCancelExternalWorkflowExecutionFailed
        | ExternalWorkflowExecutionCancelRequested
    )

#: Earlier runs remembered per workflow id (for idempotence of restores and `describe`).
MAX_CHAIN = 64
EVENT_OVERHEAD_BYTES = 64
#: What an event's Avro encoding adds to its text and payload bytes: varints (event id, timestamp),
#: union indexes, length prefixes and a payload's encoding name (~30 bytes for a signal).
FRAMING_BYTES = 32

#: What an event changes in its run: `RunState` field name -> new value (see `state.copy_with`).
Changes: TypeAlias = dict[str, Any]
#: The rule of one event type: (run, event, the event's attributes) -> changes. The attributes
#: are the body of the event type the rule is registered for in `_HANDLERS` (typed `Any` there:
#: the table pairs each type with its body; each rule declares the body it reads).
Rule: TypeAlias = Callable[[RunState, "HistoryEvent", Any], Changes]


class UnknownEventError(ValueError):
    """The reducer has no meaning for this event type (or the event names a run it does not know)."""


def apply(state: ExecutionState, event: HistoryEvent) -> ExecutionState:
    attributes = event["attributes"]
    if attributes[0] == "WorkflowExecutionStarted":
        return _start_run(state, event, attributes[1])
    event_type, attrs = attributes
    run = state.current
    if run is None or run.run_id != event["run_id"]:
        raise UnknownEventError(
            f"event {event['event_id']} {event_type} names run {event['run_id']}, "
            f"not the current run of {state.workflow_id}"
        )
    handler = _HANDLERS.get(event_type)
    if handler is None:
        raise UnknownEventError(f"no reducer for event type {event_type}")
    changes = handler(run, event, attrs)
    changes["next_event_id"] = event["event_id"] + 1
    changes["last_event_time"] = max(run.last_event_time, event["timestamp"])
    changes["history_size"] = run.history_size + event_size(attrs)
    changes["full_history_bytes"] = run.full_history_bytes + full_history_event_bytes(event)
    if event_type in DECISION_TRIGGERING_EVENTS:
        changes["unhandled_events"] = changes.get("unhandled_events", run.unhandled_events) + 1
    return copy_with(state, {"current": copy_with(run, changes)})


def fold(events: Iterable[HistoryEvent], state: ExecutionState | None = None) -> ExecutionState | None:
    """Fold events of one workflow id (in history order) into its state."""
    for event in events:
        if state is None:
            state = ExecutionState(event["domain"], event["workflow_id"])
        state = apply(state, event)
    return state


def fold_transition(
    state: ExecutionState | None, transition: HistoryTransition
) -> tuple[ExecutionState | None, list[HistoryEvent]]:
    """Apply a HistoryTransition idempotently: events already applied (a duplicate record) are skipped.

    Returns the new state and the events that were new.
    """
    fresh: list[HistoryEvent] = []
    for event in transition["events"]:
        if state is not None and already_applied(state, event):
            continue
        if state is None:
            state = ExecutionState(event["domain"], event["workflow_id"])
        state = apply(state, event)
        fresh.append(event)
    return state, fresh


def already_applied(state: ExecutionState, event: HistoryEvent) -> bool:
    run_id = event["run_id"]
    cur = state.current
    if cur is not None and cur.run_id == run_id:
        return event["event_id"] < cur.next_event_id
    return state.knows_run(run_id)


def event_size(attrs: Mapping[str, Any]) -> int:
    """Approximate bytes of an event: payload bytes plus a fixed overhead (deterministic, cheap)."""
    size = EVENT_OVERHEAD_BYTES
    for key in ("input", "result", "details"):
        p = attrs.get(key)
        if p is not None:
            size += len(p["data"])
    failure = attrs.get("failure")
    if failure is not None:
        size += len(failure["message"]) + len(failure.get("stack") or "")
    return size


def full_history_event_bytes(event: HistoryEvent) -> int:
    """`event_size`, plus the event's ids and top-level text (identity, request id, names...) and
    FRAMING_BYTES beyond the 64 bytes of overhead it counts. A signal of a 12-character workflow id
    encodes to 129 bytes: `event_size` 65, this 131. A signal of a 1,000-character workflow id
    encodes to ~1.1 KB, which this counts (within 5%) and `event_size` does not."""
    attrs: Mapping[str, Any] = event["attributes"][1]
    text = len(event["domain"]) + len(event["workflow_id"]) + len(event["run_id"])
    for value in attrs.values():
        if type(value) is str:
            text += len(value) if value.isascii() else len(value.encode())
    return event_size(attrs) + max(0, text + FRAMING_BYTES - EVENT_OVERHEAD_BYTES)


# -- run lifecycle -------------------------------------------------------------------------------


def _start_run(state: ExecutionState, event: HistoryEvent, a: WorkflowExecutionStarted) -> ExecutionState:
    previous = state.previous_runs
    if state.current is not None:
        previous = (previous + ((state.current.run_id, state.current.status),))[-MAX_CHAIN:]
    watchers, kept = _carried(state.current, a)
    run = RunState(
        run_id=event["run_id"],
        first_run_id=a["first_run_id"],
        workflow_type=a["workflow_type"],
        task_list=a["task_list"],
        task_timeout_ms=a["task_timeout_ms"],
        run_timeout_ms=a["run_timeout_ms"],
        execution_timeout_ms=a["execution_timeout_ms"],
        execution_deadline_ms=a["execution_deadline_ms"],
        start_time=event["timestamp"],
        request_id=a["request_id"],
        input=a["input"],
        parent=a["parent"],
        retry_policy=a["retry_policy"],
        attempt=a["attempt"],
        memo=dict(a["memo"]),
        search_attributes=search_attributes.decode(a.get("search_attributes") or {}),
        next_event_id=event["event_id"] + 1,
        history_size=event_size(a),
        full_history_bytes=full_history_event_bytes(event),
        last_event_time=event["timestamp"],
        watchers=watchers,
        kept_children=kept,
    )
    return copy_with(state, {"current": run, "previous_runs": previous})


def _carried(
    before: RunState | None, a: WorkflowExecutionStarted
) -> tuple[tuple[WorkflowExecutionWatched, ...], tuple[ChildInfo, ...]]:
    """What the next run of a chain takes over from the run it continues (continue-as-new, retry):
    the watchers (told at the chain's final close), and with keep_children the open children (their
    parent close policy applies when the chain ends; docs/protocol.md, "Watching another workflow's
    close")."""
    if (
        before is None
        or not a.get("continued_execution_run_id")
        or a["continued_execution_run_id"] != before.run_id
    ):
        return (), ()
    close = before.close
    if close is None or not close.get("keep_children"):
        return before.watchers, ()
    kept = tuple(
        copy_with(c, {"parent_run_id": c.parent_run_id or before.run_id}) for c in before.children.values()
    )
    return before.watchers, before.kept_children + kept


def _close(status: str) -> Rule:
    def on_close(run: RunState, event: HistoryEvent, a: CloseAttributes) -> Changes:
        return {
            "status": status,
            "close_event_id": event["event_id"],
            "close_time": event["timestamp"],
            "close": a,
            "close_type": event["attributes"][0],
            "decision": None,
        }

    return on_close


def _on_memo(run: RunState, event: HistoryEvent, a: UpsertWorkflowMemo) -> Changes:
    return {"memo": {**run.memo, **a["memo"]}}


def _on_search_attributes(run: RunState, event: HistoryEvent, a: UpsertWorkflowSearchAttributes) -> Changes:
    return {"search_attributes": search_attributes.merge(run.search_attributes, a["search_attributes"])}


# -- decision tasks -----------------------------------------------------------------------------


def _on_decision_scheduled(run: RunState, event: HistoryEvent, a: DecisionTaskScheduled) -> Changes:
    return {
        "decision": DecisionInfo(
            event["event_id"],
            a["attempt"],
            a["task_list"],
            a["start_to_close_timeout_ms"],
            event["timestamp"],
        ),
        "decision_attempt": a["attempt"],
    }


def _on_decision_started(run: RunState, event: HistoryEvent, a: object) -> Changes:
    assert run.decision is not None, "DecisionTaskStarted without a scheduled decision task"
    started = copy_with(run.decision, {"started_event_id": event["event_id"]})
    return {"decision": started, "unhandled_events": 0, "unseen_signals": ()}


def _on_decision_completed(run: RunState, event: HistoryEvent, a: DecisionTaskCompleted) -> Changes:
    return {
        "decision": None,
        "decision_attempt": 1,
        "last_completed_started_event_id": a["started_event_id"],
        "decision_failure": None,
    }


def _on_decision_failed(run: RunState, event: HistoryEvent, a: Mapping[str, Any]) -> Changes:
    # The code saw none of this attempt's events as handled: a new decision task is needed.
    if event["attributes"][0] == "DecisionTaskTimedOut":
        failure = {
            "cause": f"TIMED_OUT_{a.get('timeout_type', '')}",
            "message": "the decision task timed out",
        }
    elif a.get("base_run_id"):  # a reset: this run starts deciding afresh after its copied prefix
        return {
            "decision": None,
            "decision_attempt": 1,
            "unhandled_events": max(run.unhandled_events, 1),
            "decision_failure": None,
            "reset_attached": tuple((r["run_id"], r["last_event_id"]) for r in a["reset_attached"]),
        }
    else:
        details = a.get("failure") or {}
        failure = {"cause": str(a.get("cause", "")), "message": str(details.get("message", ""))}
    return {
        "decision": None,
        "decision_attempt": run.decision_attempt + 1,
        "unhandled_events": max(run.unhandled_events, 1),
        "decision_failure": failure,
    }


# -- activities ---------------------------------------------------------------------------------


def _on_activity_scheduled(run: RunState, event: HistoryEvent, a: ActivityTaskScheduled) -> Changes:
    eid = event["event_id"]
    info = ActivityInfo(eid, a["activity_id"], a["activity_type"], a["task_list"], a, event["timestamp"])
    return {
        "activities": {**run.activities, eid: info},
        "activity_ids": {**run.activity_ids, a["activity_id"]: eid},
    }


def _on_activity_started(run: RunState, event: HistoryEvent, a: ActivityTaskStarted) -> Changes:
    info = run.activities.get(a["scheduled_event_id"])
    if info is None:
        return {}
    started = copy_with(info, {"attempt": a["attempt"]})
    return {"activities": {**run.activities, info.scheduled_event_id: started}}


def _on_activity_closed(
    run: RunState,
    event: HistoryEvent,
    a: ActivityTaskCompleted | ActivityTaskFailed | ActivityTaskTimedOut | ActivityTaskCanceled,
) -> Changes:
    info = run.activities.get(a["scheduled_event_id"])
    if info is None:
        return {}
    activities = dict(run.activities)
    del activities[info.scheduled_event_id]
    ids = dict(run.activity_ids)
    ids.pop(info.activity_id, None)
    return {"activities": activities, "activity_ids": ids}


def _on_activity_cancel_requested(
    run: RunState, event: HistoryEvent, a: ActivityTaskCancelRequested
) -> Changes:
    eid = run.activity_ids.get(a["activity_id"])
    if eid is None:
        return {}
    requested = {"cancel_requested": True, "cancel_requested_event_id": event["event_id"]}
    return {"activities": {**run.activities, eid: copy_with(run.activities[eid], requested)}}


def _on_activity_retrying(run: RunState, event: HistoryEvent, a: ActivityTaskRetrying) -> Changes:
    info = run.activities.get(a["scheduled_event_id"])
    if info is None:
        return {}
    retried = copy_with(
        info, {"attempt": a["attempt"] + 1, "attempt_time": event["timestamp"] + a["backoff_ms"]}
    )
    return {"activities": {**run.activities, info.scheduled_event_id: retried}}


# -- timers -------------------------------------------------------------------------------------


def _on_timer_started(run: RunState, event: HistoryEvent, a: TimerStarted) -> Changes:
    info = TimerInfo(a["timer_id"], event["event_id"], event["timestamp"] + a["start_to_fire_timeout_ms"])
    return {"timers": {**run.timers, a["timer_id"]: info}}


def _on_timer_closed(run: RunState, event: HistoryEvent, a: TimerFired | TimerCanceled) -> Changes:
    if a["timer_id"] not in run.timers:
        return {}
    timers = dict(run.timers)
    del timers[a["timer_id"]]
    return {"timers": timers}


# -- children -----------------------------------------------------------------------------------


def _on_child_initiated(
    run: RunState, event: HistoryEvent, a: StartChildWorkflowExecutionInitiated
) -> Changes:
    eid = event["event_id"]
    first_run_id = derive_run_id(a["domain"], a["workflow_id"], child_start_command_id(run.run_id, eid))
    info = ChildInfo(
        eid, a["domain"], a["workflow_id"], a["workflow_type"], a["parent_close_policy"], first_run_id
    )
    return {"children": {**run.children, eid: info}}


def _on_child_started(run: RunState, event: HistoryEvent, a: ChildWorkflowExecutionStarted) -> Changes:
    info = run.children.get(a["initiated_event_id"])
    if info is None:
        return {}
    changes: dict[str, Any] = {"run_id": a["run_id"], "started_event_id": event["event_id"]}
    if a.get("attached"):  # watched, not owned: pinned to no chain, no parent close policy
        changes.update(attached=True, first_run_id="")
    started = copy_with(info, changes)
    return {"children": {**run.children, info.initiated_event_id: started}}


def _on_child_closed(run: RunState, event: HistoryEvent, a: ChildClosed) -> Changes:
    if a["initiated_event_id"] not in run.children:
        return {}
    children = dict(run.children)
    del children[a["initiated_event_id"]]
    return {"children": children}


# -- signals and cancellation, in and out ---------------------------------------------------------


def _on_signaled(run: RunState, event: HistoryEvent, a: WorkflowExecutionSignaled) -> Changes:
    # every field spelled out: the processor's own record and the one decoded from Avro (defaults
    # filled in) must fold to equal states
    signal: WorkflowExecutionSignaled = {
        "signal_name": a["signal_name"],
        "input": a.get("input"),
        "identity": a.get("identity", ""),
        "request_id": a["request_id"],
        "carried_from_run_id": a.get("carried_from_run_id", ""),
    }
    changes: Changes = {"unseen_signals": (*run.unseen_signals, signal)}
    if a["request_id"]:
        ids = run.signal_request_ids
        if not isinstance(ids, Map):  # a state stored before the ids were a Map (a frozenset)
            ids = Map((rid, None) for rid in ids)
        changes["signal_request_ids"] = ids.set(a["request_id"], None)
    return changes


def _on_cancel_requested(run: RunState, event: HistoryEvent, a: object) -> Changes:
    return {"cancel_requested": True}


def _on_update(
    run: RunState, event: HistoryEvent, a: WorkflowExecutionUpdateAccepted | WorkflowExecutionUpdateCompleted
) -> Changes:
    return {"updates": {**run.updates, a["update_id"]: a}}


def _outgoing(kind: str) -> Rule:
    def on_initiated(
        run: RunState,
        event: HistoryEvent,
        a: SignalExternalWorkflowExecutionInitiated | RequestCancelExternalWorkflowExecutionInitiated,
    ) -> Changes:
        return {kind: {**getattr(run, kind), event["event_id"]: a}}

    return on_initiated


def _outgoing_done(kind: str) -> Rule:
    def on_done(run: RunState, event: HistoryEvent, a: OutgoingDone) -> Changes:
        pending: dict[int, object] = getattr(run, kind)
        if a["initiated_event_id"] not in pending:
            return {}
        rest = dict(pending)
        del rest[a["initiated_event_id"]]
        return {kind: rest}

    return on_done


def _on_watch_initiated(
    run: RunState, event: HistoryEvent, a: WatchExternalWorkflowExecutionInitiated
) -> Changes:
    return {"watches_out": {**run.watches_out, event["event_id"]: a}}


def _on_watch_done(
    run: RunState,
    event: HistoryEvent,
    a: WatchExternalWorkflowExecutionFailed | ExternalWorkflowExecutionClosed,
) -> Changes:
    if a["initiated_event_id"] not in run.watches_out:
        return {}
    rest = dict(run.watches_out)
    del rest[a["initiated_event_id"]]
    return {"watches_out": rest}


def _on_watched(run: RunState, event: HistoryEvent, a: WorkflowExecutionWatched) -> Changes:
    # every field spelled out: the processor's record and the decoded one fold to equal states
    w = a["watcher"]
    watched: WorkflowExecutionWatched = {
        "watcher": {
            "domain": w["domain"],
            "workflow_id": w["workflow_id"],
            "run_id": w["run_id"],
            "initiated_event_id": w["initiated_event_id"],
        },
        "as_child": a.get("as_child", False),
        "request_id": a.get("request_id", ""),
    }
    return {"watchers": (*run.watchers, watched)}


def _nothing(run: RunState, event: HistoryEvent, a: object) -> Changes:
    return {}


_HANDLERS: dict[str, Rule] = {
    **{event_type: _close(status) for event_type, status in CLOSE_EVENTS.items()},
    "DecisionTaskScheduled": _on_decision_scheduled,
    "DecisionTaskStarted": _on_decision_started,
    "DecisionTaskCompleted": _on_decision_completed,
    "DecisionTaskTimedOut": _on_decision_failed,
    "DecisionTaskFailed": _on_decision_failed,
    "ActivityTaskScheduled": _on_activity_scheduled,
    "ActivityTaskStarted": _on_activity_started,
    "ActivityTaskCompleted": _on_activity_closed,
    "ActivityTaskFailed": _on_activity_closed,
    "ActivityTaskTimedOut": _on_activity_closed,
    "ActivityTaskCanceled": _on_activity_closed,
    "ActivityTaskCancelRequested": _on_activity_cancel_requested,
    "ActivityTaskRetrying": _on_activity_retrying,
    "RequestCancelActivityTaskFailed": _nothing,
    "TimerStarted": _on_timer_started,
    "TimerFired": _on_timer_closed,
    "TimerCanceled": _on_timer_closed,
    "CancelTimerFailed": _nothing,
    "MarkerRecorded": _nothing,
    "UpsertWorkflowMemo": _on_memo,
    "UpsertWorkflowSearchAttributes": _on_search_attributes,
    "WorkflowExecutionSignaled": _on_signaled,
    "WorkflowExecutionCancelRequested": _on_cancel_requested,
    "WorkflowExecutionUpdateAccepted": _on_update,
    "WorkflowExecutionUpdateCompleted": _on_update,
    "StartChildWorkflowExecutionInitiated": _on_child_initiated,
    "StartChildWorkflowExecutionFailed": _on_child_closed,
    "ChildWorkflowExecutionStarted": _on_child_started,
    "ChildWorkflowExecutionCompleted": _on_child_closed,
    "ChildWorkflowExecutionFailed": _on_child_closed,
    "ChildWorkflowExecutionCanceled": _on_child_closed,
    "ChildWorkflowExecutionTimedOut": _on_child_closed,
    "ChildWorkflowExecutionTerminated": _on_child_closed,
    "SignalExternalWorkflowExecutionInitiated": _outgoing("signals_out"),
    "SignalExternalWorkflowExecutionFailed": _outgoing_done("signals_out"),
    "ExternalWorkflowExecutionSignaled": _outgoing_done("signals_out"),
    "RequestCancelExternalWorkflowExecutionInitiated": _outgoing("cancels_out"),
    "RequestCancelExternalWorkflowExecutionFailed": _outgoing_done("cancels_out"),
    "ExternalWorkflowExecutionCancelRequested": _outgoing_done("cancels_out"),
    "WatchExternalWorkflowExecutionInitiated": _on_watch_initiated,
    "WatchExternalWorkflowExecutionFailed": _on_watch_done,
    "ExternalWorkflowExecutionClosed": _on_watch_done,
    "WorkflowExecutionWatched": _on_watched,
}
