"""Decision task results: validate the decisions, record them as events, schedule what follows."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

from kadence.history import RunState, search_attributes
from kadence.history.decisions import CLOSE_DECISIONS, DECISION_EVENTS, activity_scheduled_attrs
from kadence.history.ids import continued_run_id
from kadence.history.retry import retry_delay_ms
from kadence.history.validation import decision_problem
from kadence.schemas.records import (
    ActivityTaskCancelRequested,
    CancelTimerDecision,
    CancelTimerFailed,
    CancelWorkflowExecutionDecision,
    Command,
    CompleteWorkflowExecutionDecision,
    CompleteWorkflowUpdateDecision,
    ContinueAsNewWorkflowExecutionDecision,
    DecisionAttributes,
    DecisionTaskCompleted,
    DecisionTaskFailed,
    Failure,
    FailWorkflowExecutionDecision,
    MarkerRecorded,
    RecordMarkerDecision,
    RequestCancelActivityTaskDecision,
    RequestCancelActivityTaskFailed,
    RequestCancelExternalWorkflowExecutionDecision,
    RequestCancelExternalWorkflowExecutionInitiated,
    RespondDecisionTaskCompleted,
    RespondDecisionTaskFailed,
    ScheduleActivityTaskDecision,
    SignalExternalWorkflowExecutionDecision,
    SignalExternalWorkflowExecutionInitiated,
    StartChildWorkflowExecutionDecision,
    StartChildWorkflowExecutionInitiated,
    StartTimerDecision,
    TimerCanceled,
    TimerStarted,
    UpsertWorkflowMemo,
    UpsertWorkflowMemoDecision,
    UpsertWorkflowSearchAttributes,
    UpsertWorkflowSearchAttributesDecision,
    WatchExternalWorkflowExecutionDecision,
    WatchExternalWorkflowExecutionInitiated,
    WorkflowExecutionCanceled,
    WorkflowExecutionCompleted,
    WorkflowExecutionContinuedAsNew,
    WorkflowExecutionFailed,
    WorkflowExecutionSignaled,
    WorkflowExecutionStarted,
)

from .. import transient
from ..transition import Transition
from .activities import request_cancel
from .common import HandlerEnv, log, open_run, payload_too_large, stale, token_of
from .updates import record_update_completed

#: A decision's handler: (transition, the decision's attributes, the DecisionTaskCompleted event
#: id, env). It records the decision as the event `history.decisions.DECISION_EVENTS` names. The
#: attributes are the body of the decision type the handler is registered for (`_records`).
DecisionHandler: TypeAlias = Callable[[Transition, Any, int, HandlerEnv], None]


def _current_decision(
    tr: Transition, a: RespondDecisionTaskCompleted | RespondDecisionTaskFailed
) -> RunState | None:
    token = token_of(a["task_token"], "d")
    run = open_run(tr, token.run_id)
    if run is None:
        stale(tr, "decision result", f"run {token.run_id} is not open")
        return None
    d = run.decision
    if d is None and transient.matches(tr, run, token.scheduled_event_id, token.attempt):
        return run  # the transient attempt out (..transient): none of its events is in history yet
    if (
        d is None
        or d.scheduled_event_id != token.scheduled_event_id
        or d.attempt != token.attempt
        or not d.started_event_id
    ):
        stale(tr, "decision result", f"token {a['task_token']} is not the outstanding decision task")
        return None
    return run


def handle_decision_completed(
    tr: Transition, cmd: Command, a: RespondDecisionTaskCompleted, env: HandlerEnv
) -> None:
    run = _current_decision(tr, a)
    if run is None:
        return
    decisions = [d["attributes"] for d in a["decisions"]]
    cause = _validate(run, decisions, env)
    is_transient = run.decision is None  # nothing was appended since it went out: no unseen events
    if (
        cause is None
        and not is_transient
        and run.unhandled_events > 0
        and _closes_over_unseen_events(run, decisions)
    ):
        cause = (
            "UNHANDLED_DECISION",
            "events arrived after the decision task started; the close decision is refused",
        )
    if is_transient:
        if cause is not None and _repeats(tr, run, cause[0], cause[1], env):
            return
        transient.record(tr)  # its Scheduled and Started, as the worker saw them
        run = tr.run
        assert run is not None
    d = run.decision
    assert d is not None
    if cause is not None:
        failed: DecisionTaskFailed = {
            "scheduled_event_id": d.scheduled_event_id,
            "started_event_id": d.started_event_id,
            "cause": cause[0],
            "identity": a["identity"],
            "failure": {
                "type": cause[0],
                "message": cause[1],
                "stack": "",
                "non_retryable": False,
                "details": None,
                "cause": None,
            },
        }
        tr.add(("DecisionTaskFailed", failed))
        transient.send(tr, d.attempt + 1)  # at once, as before; later attempts are transient
        return
    completed_attrs: DecisionTaskCompleted = {
        "scheduled_event_id": d.scheduled_event_id,
        "started_event_id": d.started_event_id,
        "identity": a["identity"],
    }
    completed = tr.add(("DecisionTaskCompleted", completed_attrs))
    dtc = completed["event_id"]
    for name, attrs in decisions:
        _DECISIONS[name](tr, attrs, dtc, env)
        if tr.run is None or tr.run.run_id != run.run_id:
            break  # continued as new: the rest belongs to no run
        if not tr.run.is_open:
            break
    current = tr.run
    if current is not None and current.run_id == run.run_id and current.is_open:
        if a["force_new_decision"] and current.decision is None:
            tr.schedule_decision()
        else:
            tr.schedule_decision_if_needed()


def _closes_over_unseen_events(run: RunState, decisions: list[DecisionAttributes]) -> bool:
    """Whether the decisions close the run over events its code has not seen, which refuses them.

    A continue-as-new over unseen *signals* only is the exception: they are carried to the next
    run (`continue_as_new`), so a workflow that continues as new under a steady stream of signals
    is never refused (temporal#8097, #1289). Anything else unseen (a completion, a cancel request)
    still refuses the close, as in Temporal: the code must see it first."""
    closing = [name for name, _ in decisions if name in CLOSE_DECISIONS]
    if not closing:
        return False
    only_signals = run.unhandled_events == len(run.unseen_signals)
    return not (only_signals and closing == ["ContinueAsNewWorkflowExecutionDecision"])


def handle_decision_failed(
    tr: Transition, cmd: Command, a: RespondDecisionTaskFailed, env: HandlerEnv
) -> None:
    run = _current_decision(tr, a)
    if run is None:
        return
    if a["cause"] == "CACHE_MISS":  # resend with full history; nothing recorded
        tr.dispatches.append(("decision" if run.decision else "transient_decision", run.run_id, True))
        return
    failure = a["failure"]
    if run.decision is None:  # a transient attempt
        if _repeats(tr, run, a["cause"], failure.get("message") if failure else None, env):
            return
        transient.record(tr)  # a different failure: recorded with its Scheduled and Started
        run = tr.run
        assert run is not None
    d = run.decision
    assert d is not None
    log.warning(
        "decision task failed for %s run %s: %s %s",
        tr.workflow_id,
        run.run_id,
        a["cause"],
        failure.get("message", "") if failure else "",
    )
    failed: DecisionTaskFailed = {
        "scheduled_event_id": d.scheduled_event_id,
        "started_event_id": d.started_event_id,
        "cause": a["cause"],
        "failure": failure,
        "identity": a["identity"],
    }
    tr.add(("DecisionTaskFailed", failed))
    # A few immediate retries; after that with backoff (a run whose code keeps failing waits
    # visibly with the recorded cause instead of spinning). The retries are transient attempts.
    transient.retry(tr, d.attempt + 1, d.attempt <= env.config.immediate_decision_retries)


def _repeats(tr: Transition, run: RunState, cause: str, message: str | None, env: HandlerEnv) -> bool:
    """A transient attempt failed as the recorded failure did: nothing is written, the next
    attempt goes out (at once, or after its backoff). False for a different failure."""
    t = tr.transient
    assert t is not None
    if transient.failure_of(cause, message) != run.decision_failure:
        return False
    log.info(
        "decision task attempt %d failed again for %s run %s: %s",
        t.attempt,
        tr.workflow_id,
        run.run_id,
        cause,
    )
    transient.retry(tr, t.attempt + 1, t.attempt <= env.config.immediate_decision_retries)
    return True


def _validate(run: RunState, decisions: list[DecisionAttributes], env: HandlerEnv) -> tuple[str, str] | None:
    activity_ids = set(run.activity_ids)
    timer_ids = set(run.timers)
    children = len(run.children)
    payload_bytes = 0
    for decision in decisions:
        name = decision[0]
        if name not in _DECISIONS:
            return "UNKNOWN_DECISION", f"unknown decision {name}"
        fields: Mapping[str, Any] = decision[1]  # the payloads any decision type may carry
        too_large = payload_too_large(env, fields.get("input"), fields.get("result"), fields.get("details"))
        if too_large:
            return "BAD_PAYLOAD", f"{name}: {too_large}"
        problem = decision_problem(name, fields)
        if problem:
            return "BAD_DECISION_ATTRIBUTES", problem
        payload_bytes += sum(
            len(p["data"]) for p in (fields.get("input"), fields.get("result"), fields.get("details")) if p
        )
        if payload_bytes > env.config.max_decision_payload_bytes:
            return "BAD_PAYLOAD", (
                f"the decisions carry {payload_bytes} payload bytes together, more than the limit of "
                f"{env.config.max_decision_payload_bytes} bytes for one decision task completion"
            )
        attributes = fields.get("search_attributes")
        if attributes:
            upsert = name == "UpsertWorkflowSearchAttributesDecision"
            bad = search_attributes.invalid(attributes, allow_unset=upsert)
            if bad:
                return "BAD_SEARCH_ATTRIBUTES", f"{name}: {bad}"
        if decision[0] == "ScheduleActivityTaskDecision":
            a = decision[1]
            if a["activity_id"] in activity_ids:
                return (
                    "BAD_SCHEDULE_ACTIVITY_ATTRIBUTES",
                    f"activity id {a['activity_id']!r} is already pending",
                )
            if not (a["start_to_close_timeout_ms"] or a["schedule_to_close_timeout_ms"]):
                return "BAD_SCHEDULE_ACTIVITY_ATTRIBUTES", (
                    f"activity {a['activity_type']!r} needs start_to_close_timeout or "
                    "schedule_to_close_timeout"
                )
            activity_ids.add(a["activity_id"])
        elif decision[0] == "StartTimerDecision":
            timer_id = decision[1]["timer_id"]
            if timer_id in timer_ids:
                return "BAD_START_TIMER_ATTRIBUTES", f"timer id {timer_id!r} is already pending"
            timer_ids.add(timer_id)
        elif decision[0] == "StartChildWorkflowExecutionDecision":
            children += 1
            if children > env.config.max_pending_children:
                return "PENDING_CHILDREN_LIMIT_EXCEEDED", (
                    f"more than {env.config.max_pending_children} pending child workflows in one run"
                )
    return None


# -- one function per decision type, each registered for the decision it records -------------------

_DECISIONS: dict[str, DecisionHandler] = {}


def _records(decision_type: str) -> Callable[[DecisionHandler], DecisionHandler]:
    """Register the handler of `decision_type`; it records the decision as the event that
    `history.decisions.DECISION_EVENTS` names."""

    def register(handler: DecisionHandler) -> DecisionHandler:
        _DECISIONS[decision_type] = handler
        return handler

    return register


@_records("ScheduleActivityTaskDecision")
def _schedule_activity(tr: Transition, a: ScheduleActivityTaskDecision, dtc: int, env: HandlerEnv) -> None:
    run = tr.run
    assert run is not None
    event = tr.add(("ActivityTaskScheduled", activity_scheduled_attrs(a, run.task_list, dtc)))
    if a.get("eager_scheduled_event_id") == event["event_id"]:
        # The deciding worker is running attempt 1 already (docs/protocol.md, eager activities):
        # no task to send; start-to-close runs from now and the heartbeat deadline is armed as
        # for a dispatched attempt, so a lost worker costs one of those timeouts.
        tr.dispatches.append(("eager_activity", run.run_id, event["event_id"]))
        return
    tr.dispatches.append(("activity", run.run_id, event["event_id"]))


@_records("RequestCancelActivityTaskDecision")
def _cancel_activity(tr: Transition, a: RequestCancelActivityTaskDecision, dtc: int, env: HandlerEnv) -> None:
    run = tr.run
    assert run is not None
    scheduled = run.activity_ids.get(a["activity_id"])
    if scheduled is None:
        failed: RequestCancelActivityTaskFailed = {
            "activity_id": a["activity_id"],
            "cause": "ACTIVITY_ID_UNKNOWN",
            "decision_task_completed_event_id": dtc,
        }
        tr.add(("RequestCancelActivityTaskFailed", failed))
        return
    request: ActivityTaskCancelRequested = {
        "activity_id": a["activity_id"],
        "decision_task_completed_event_id": dtc,
    }
    requested = tr.add(("ActivityTaskCancelRequested", request))
    # A running attempt hears of it by its heartbeat; one waiting for a retry is canceled now.
    request_cancel(tr, scheduled, requested["event_id"])


@_records("StartTimerDecision")
def _start_timer(tr: Transition, a: StartTimerDecision, dtc: int, env: HandlerEnv) -> None:
    started: TimerStarted = {
        "timer_id": a["timer_id"],
        "start_to_fire_timeout_ms": a["start_to_fire_timeout_ms"],
        "decision_task_completed_event_id": dtc,
    }
    tr.add(("TimerStarted", started))


@_records("CancelTimerDecision")
def _cancel_timer(tr: Transition, a: CancelTimerDecision, dtc: int, env: HandlerEnv) -> None:
    run = tr.run
    assert run is not None
    timer = run.timers.get(a["timer_id"])
    if timer is None:
        failed: CancelTimerFailed = {
            "timer_id": a["timer_id"],
            "cause": "TIMER_ID_UNKNOWN",
            "decision_task_completed_event_id": dtc,
        }
        tr.add(("CancelTimerFailed", failed))
        return
    canceled: TimerCanceled = {
        "timer_id": a["timer_id"],
        "started_event_id": timer.started_event_id,
        "decision_task_completed_event_id": dtc,
        "identity": "",
    }
    tr.add(("TimerCanceled", canceled))


@_records("RecordMarkerDecision")
def _record_marker(tr: Transition, a: RecordMarkerDecision, dtc: int, env: HandlerEnv) -> None:
    marker: MarkerRecorded = {
        "marker_name": a["marker_name"],
        "details": a["details"],
        "decision_task_completed_event_id": dtc,
    }
    tr.add(("MarkerRecorded", marker))


@_records("UpsertWorkflowMemoDecision")
def _upsert_memo(tr: Transition, a: UpsertWorkflowMemoDecision, dtc: int, env: HandlerEnv) -> None:
    upsert: UpsertWorkflowMemo = {"memo": a["memo"], "decision_task_completed_event_id": dtc}
    tr.add(("UpsertWorkflowMemo", upsert))


@_records("UpsertWorkflowSearchAttributesDecision")
def _upsert_search_attributes(
    tr: Transition, a: UpsertWorkflowSearchAttributesDecision, dtc: int, env: HandlerEnv
) -> None:
    upsert: UpsertWorkflowSearchAttributes = {
        "search_attributes": a["search_attributes"],
        "decision_task_completed_event_id": dtc,
    }
    tr.add(("UpsertWorkflowSearchAttributes", upsert))


@_records("StartChildWorkflowExecutionDecision")
def _start_child(tr: Transition, a: StartChildWorkflowExecutionDecision, dtc: int, env: HandlerEnv) -> None:
    run = tr.run
    assert run is not None
    initiated: StartChildWorkflowExecutionInitiated = {
        "domain": a["domain"] or tr.domain,
        "workflow_id": a["workflow_id"],
        "workflow_type": a["workflow_type"],
        "task_list": a["task_list"] or run.task_list,
        "input": a["input"],
        "execution_timeout_ms": a["execution_timeout_ms"],
        "run_timeout_ms": a["run_timeout_ms"],
        "task_timeout_ms": a["task_timeout_ms"] or run.task_timeout_ms or 10_000,
        "retry_policy": a["retry_policy"],
        "memo": a["memo"],
        "parent_close_policy": a["parent_close_policy"],
        "id_reuse_policy": a["id_reuse_policy"],
        "decision_task_completed_event_id": dtc,
        "control": a["control"],
        "search_attributes": a.get("search_attributes", {}),
        "id_conflict_policy": a.get("id_conflict_policy", "FAIL"),
    }
    tr.add(("StartChildWorkflowExecutionInitiated", initiated))


@_records("SignalExternalWorkflowExecutionDecision")
def _signal_external(
    tr: Transition, a: SignalExternalWorkflowExecutionDecision, dtc: int, env: HandlerEnv
) -> None:
    initiated: SignalExternalWorkflowExecutionInitiated = {
        "domain": a["domain"] or tr.domain,
        "workflow_id": a["workflow_id"],
        "run_id": a["run_id"],
        "signal_name": a["signal_name"],
        "input": a["input"],
        "child_workflow_only": a["child_workflow_only"],
        "control": a["control"],
        "decision_task_completed_event_id": dtc,
        "start": a.get("start"),
    }
    tr.add(("SignalExternalWorkflowExecutionInitiated", initiated))


@_records("RequestCancelExternalWorkflowExecutionDecision")
def _cancel_external(
    tr: Transition, a: RequestCancelExternalWorkflowExecutionDecision, dtc: int, env: HandlerEnv
) -> None:
    initiated: RequestCancelExternalWorkflowExecutionInitiated = {
        "domain": a["domain"] or tr.domain,
        "workflow_id": a["workflow_id"],
        "run_id": a["run_id"],
        "child_workflow_only": a["child_workflow_only"],
        "control": a["control"],
        "decision_task_completed_event_id": dtc,
    }
    tr.add(("RequestCancelExternalWorkflowExecutionInitiated", initiated))


@_records("WatchExternalWorkflowExecutionDecision")
def _watch_external(
    tr: Transition, a: WatchExternalWorkflowExecutionDecision, dtc: int, env: HandlerEnv
) -> None:
    initiated: WatchExternalWorkflowExecutionInitiated = {
        "domain": a["domain"] or tr.domain,
        "workflow_id": a["workflow_id"],
        "run_id": a["run_id"],
        "decision_task_completed_event_id": dtc,
        "control": a["control"],
    }
    tr.add(("WatchExternalWorkflowExecutionInitiated", initiated))


@_records("CompleteWorkflowExecutionDecision")
def _complete(tr: Transition, a: CompleteWorkflowExecutionDecision, dtc: int, env: HandlerEnv) -> None:
    completed: WorkflowExecutionCompleted = {"result": a["result"], "decision_task_completed_event_id": dtc}
    tr.add(("WorkflowExecutionCompleted", completed))


@_records("FailWorkflowExecutionDecision")
def _fail(tr: Transition, a: FailWorkflowExecutionDecision, dtc: int, env: HandlerEnv) -> None:
    run = tr.run
    assert run is not None
    delay = retry_delay_ms(run.retry_policy, run.attempt, a["failure"], tr.now_ms, run.execution_deadline_ms)
    if delay is not None:  # a retry is a new run of the same id; the parent still sees one execution
        continue_as_new(
            tr,
            {"backoff_ms": delay},
            dtc,
            initiator="RETRY_POLICY",
            failure=a["failure"],
            attempt=run.attempt + 1,
        )
        return
    failed: WorkflowExecutionFailed = {"failure": a["failure"], "decision_task_completed_event_id": dtc}
    tr.add(("WorkflowExecutionFailed", failed))


@_records("CompleteWorkflowUpdateDecision")
def _complete_update(tr: Transition, a: CompleteWorkflowUpdateDecision, dtc: int, env: HandlerEnv) -> None:
    record_update_completed(tr, a, dtc)


@_records("CancelWorkflowExecutionDecision")
def _cancel(tr: Transition, a: CancelWorkflowExecutionDecision, dtc: int, env: HandlerEnv) -> None:
    canceled: WorkflowExecutionCanceled = {"details": a["details"], "decision_task_completed_event_id": dtc}
    tr.add(("WorkflowExecutionCanceled", canceled))


@_records("ContinueAsNewWorkflowExecutionDecision")
def _continue_as_new(
    tr: Transition, a: ContinueAsNewWorkflowExecutionDecision, dtc: int, env: HandlerEnv
) -> None:
    continue_as_new(tr, a, dtc, initiator="DECIDER")


def continue_as_new(
    tr: Transition,
    a: ContinueAsNewWorkflowExecutionDecision,
    dtc: int,
    *,
    initiator: str,
    failure: Failure | None = None,
    attempt: int = 1,
) -> None:
    """Close the run and start the next one of the chain in the same transition (never one without the other).

    Also how a failure the run's retry policy retries is recorded (initiator RETRY_POLICY)."""
    run = tr.run
    assert run is not None
    new_run_id = continued_run_id(tr.domain, tr.workflow_id, run.run_id)
    # What the next run is: the decision's value, else the closing run's.
    workflow_type = a.get("workflow_type") or run.workflow_type
    task_list = a.get("task_list") or run.task_list
    input_ = a.get("input", run.input)
    run_timeout_ms = a.get("run_timeout_ms") or run.run_timeout_ms
    task_timeout_ms = a.get("task_timeout_ms") or run.task_timeout_ms
    retry_policy = a.get("retry_policy") or run.retry_policy
    memo = a.get("memo")
    if memo is None:
        memo = run.memo
    attributes = a.get("search_attributes")
    if attributes is None:  # carried over, as Temporal does
        attributes = search_attributes.encode(run.search_attributes)
    continued: WorkflowExecutionContinuedAsNew = {
        "new_execution_run_id": new_run_id,
        "workflow_type": workflow_type,
        "task_list": task_list,
        "input": input_,
        "execution_timeout_ms": run.execution_timeout_ms,
        "run_timeout_ms": run_timeout_ms,
        "task_timeout_ms": task_timeout_ms,
        "retry_policy": retry_policy,
        "memo": memo,
        "decision_task_completed_event_id": dtc,
        "initiator": initiator,
        "failure": failure,
        "backoff_ms": a.get("backoff_ms", 0),
        "keep_children": a.get("keep_children", False),
        "search_attributes": attributes,
    }
    tr.add(("WorkflowExecutionContinuedAsNew", continued))
    started: WorkflowExecutionStarted = {
        "workflow_type": workflow_type,
        "task_list": task_list,
        "input": input_,
        "execution_timeout_ms": run.execution_timeout_ms,
        "run_timeout_ms": run_timeout_ms,
        "task_timeout_ms": task_timeout_ms,
        "retry_policy": retry_policy,
        "memo": memo,
        "request_id": run.request_id,
        "identity": "",
        "first_run_id": run.first_run_id,
        "continued_execution_run_id": run.run_id,
        "parent": run.parent,
        "attempt": attempt,
        "execution_deadline_ms": run.execution_deadline_ms,
        "initiator": initiator,
        "continued_failure": failure,
        "last_completion_result": None,
        "search_attributes": attributes,
    }
    tr.add(("WorkflowExecutionStarted", started), run_id=new_run_id)
    if initiator == "DECIDER":
        for signal in run.unseen_signals:  # in the order received; the closing run's code never saw them
            carried: WorkflowExecutionSignaled = {**signal, "carried_from_run_id": run.run_id}
            tr.add(("WorkflowExecutionSignaled", carried))
    if not a.get("backoff_ms"):
        tr.schedule_decision(full_history=True)
    # else: the timers processor schedules the first decision task when the backoff is over


if set(_DECISIONS) != set(DECISION_EVENTS):  # a decision type without a handler, or a handler of none
    raise ImportError(
        f"decision handlers {sorted(_DECISIONS)} do not match history.decisions.DECISION_EVENTS "
        f"{sorted(DECISION_EVENTS)}"
    )
