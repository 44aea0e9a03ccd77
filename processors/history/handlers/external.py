"""Commands from outside a run: signal, cancel request, terminate, query."""

from __future__ import annotations

import json

from kadence.history import RunState
from kadence.history.answers import ACCEPTED, NOT_FOUND, REFUSED, command_answer
from kadence.history.ids import reply_command_id
from kadence.history.live import (
    DECISION_ATTEMPT_QUERY,
    LIVE_STATE_ENCODING,
    LIVE_STATE_QUERY,
    encode_live_state,
)
from kadence.schemas.records import (
    Command,
    CommandPayload,
    ExternalWorkflowExecutionCancelRequested,
    ExternalWorkflowExecutionSignaled,
    ParentExecution,
    QueryResult,
    QueryWorkflow,
    RequestCancelExternalWorkflowExecutionFailed,
    RequestCancelWorkflowExecution,
    SignalExternalWorkflowExecutionFailed,
    SignalWorkflowExecution,
    TerminateWorkflowExecution,
    WorkflowExecutionCancelRequested,
    WorkflowExecutionSignaled,
    WorkflowExecutionTerminated,
)

from .. import transient
from ..transition import Transition
from .common import HandlerEnv, log, payload_too_large, reply_command


def _target(tr: Transition, cmd: Command, first_run_id: str = "") -> RunState | None:
    """The open run a command addresses; `first_run_id` pins a chain (parent close policies)."""
    if tr.state is None:
        return None
    run = tr.state.run(cmd["run_id"])
    if (
        run is None
        and cmd["run_id"]
        and tr.state.current is not None
        and tr.state.current.first_run_id == cmd["run_id"]
    ):
        run = tr.state.current  # addressed by the chain's first run id: it continued as new since
    if run is None or not run.is_open:
        return None
    if first_run_id and run.first_run_id != first_run_id:
        return None  # an unrelated workflow reusing the id: never touch it
    return run


def handle_signal(tr: Transition, cmd: Command, a: SignalWorkflowExecution, env: HandlerEnv) -> None:
    run = _target(tr, cmd)
    external = a["external"]
    too_large = payload_too_large(env, a["input"])
    if run is None or too_large:
        cause = too_large or "workflow execution not found or already closed"
        if external is not None:
            failed: SignalExternalWorkflowExecutionFailed = {
                "domain": tr.domain,
                "workflow_id": tr.workflow_id,
                "run_id": cmd["run_id"],
                "cause": cause,
                "initiated_event_id": external["initiated_event_id"],
                "decision_task_completed_event_id": 0,
                "control": "",
            }
            _reply(tr, cmd, external, ("SignalExternalWorkflowExecutionFailed", failed))
        else:
            log.info("signal %s to %s refused: %s", a["signal_name"], tr.workflow_id, cause)
            _answer(tr, cmd, NOT_FOUND if run is None else REFUSED, cause)
        return
    if external is None:
        _answer(tr, cmd, ACCEPTED, run.run_id)
    duplicate = bool(a["request_id"]) and a["request_id"] in run.signal_request_ids
    if not duplicate:
        signaled: WorkflowExecutionSignaled = {
            "signal_name": a["signal_name"],
            "input": a["input"],
            "identity": a["identity"],
            "request_id": a["request_id"],
        }
        tr.add(("WorkflowExecutionSignaled", signaled))
    if external is not None:
        done: ExternalWorkflowExecutionSignaled = {
            "domain": tr.domain,
            "workflow_id": tr.workflow_id,
            "run_id": run.run_id,
            "initiated_event_id": external["initiated_event_id"],
            "control": "",
        }
        _reply(tr, cmd, external, ("ExternalWorkflowExecutionSignaled", done))
    tr.schedule_decision_if_needed()


def handle_cancel_request(
    tr: Transition, cmd: Command, a: RequestCancelWorkflowExecution, env: HandlerEnv
) -> None:
    run = _target(tr, cmd, a["first_execution_run_id"])
    external = a["external"]
    if run is None:
        if external is not None:
            failed: RequestCancelExternalWorkflowExecutionFailed = {
                "domain": tr.domain,
                "workflow_id": tr.workflow_id,
                "run_id": cmd["run_id"],
                "cause": "workflow execution not found or already closed",
                "initiated_event_id": external["initiated_event_id"],
                "decision_task_completed_event_id": 0,
                "control": "",
            }
            _reply(tr, cmd, external, ("RequestCancelExternalWorkflowExecutionFailed", failed))
        else:
            _answer(tr, cmd, NOT_FOUND, "workflow execution not found or already closed")
        return
    if external is None:
        _answer(tr, cmd, ACCEPTED, run.run_id)
    if not run.cancel_requested:
        requested: WorkflowExecutionCancelRequested = {
            "cause": a["cause"],
            "identity": a["identity"],
            "request_id": a["request_id"],
            "external_initiated_event_id": external["initiated_event_id"] if external else 0,
            "external_workflow_execution": (
                {
                    "domain": external["domain"],
                    "workflow_id": external["workflow_id"],
                    "run_id": external["run_id"],
                }
                if external
                else None
            ),
        }
        tr.add(("WorkflowExecutionCancelRequested", requested))
    if external is not None and external["initiated_event_id"] > 0:
        done: ExternalWorkflowExecutionCancelRequested = {
            "domain": tr.domain,
            "workflow_id": tr.workflow_id,
            "run_id": run.run_id,
            "initiated_event_id": external["initiated_event_id"],
        }
        _reply(tr, cmd, external, ("ExternalWorkflowExecutionCancelRequested", done))
    tr.schedule_decision_if_needed()


def handle_terminate(tr: Transition, cmd: Command, a: TerminateWorkflowExecution, env: HandlerEnv) -> None:
    run = _target(tr, cmd, a["first_execution_run_id"])
    if run is None:
        log.info(
            "terminate of %s ignored: no open run%s",
            tr.workflow_id,
            f" of chain {a['first_execution_run_id']}" if a["first_execution_run_id"] else "",
        )
        _answer(tr, cmd, NOT_FOUND, "workflow execution not found or already closed")
        return
    _answer(tr, cmd, ACCEPTED, run.run_id)
    terminated: WorkflowExecutionTerminated = {
        "reason": a["reason"],
        "details": a["details"],
        "identity": a["identity"],
        "new_execution_run_id": "",
        "reset_last_event_id": 0,
    }
    tr.add(("WorkflowExecutionTerminated", terminated))


def handle_query(tr: Transition, cmd: Command, a: QueryWorkflow, env: HandlerEnv) -> None:
    """Queries write nothing to history: the run's events go to a worker as a QueryTask. The
    built-in LIVE_STATE_QUERY is answered here, from the processor's state (`kadence audit`)."""
    if a["query_type"] == LIVE_STATE_QUERY:
        answer: QueryResult = {
            "query_id": a["query_id"],
            "result": {"encoding": LIVE_STATE_ENCODING, "data": encode_live_state(tr.state)},
            "error": None,
        }
        tr.query_results.append((a["reply_topic"], answer))
        return
    run = tr.state.run(cmd["run_id"]) if tr.state is not None else None
    if a["query_type"] == DECISION_ATTEMPT_QUERY and run is not None:
        tr.query_results.append((a["reply_topic"], _decision_attempt(tr, run, a["query_id"])))
        return
    if run is not None and a.get("update_id") and a["update_id"] in run.updates:
        # an update id already accepted is not validated again (de-duplication, docs/updates.md)
        known: QueryResult = {"query_id": a["query_id"], "result": None, "error": None}
        tr.query_results.append((a["reply_topic"], known))
        return
    if run is None:
        result: QueryResult = {
            "query_id": a["query_id"],
            "result": None,
            "error": {
                "type": "QueryFailed",
                "message": f"workflow {tr.workflow_id!r} (run {cmd['run_id'] or 'current'}) not found "
                f"in domain {tr.domain!r}",
                "stack": "",
                "non_retryable": True,
                "details": None,
                "cause": None,
            },
        }
        tr.query_results.append((a["reply_topic"], result))
        return
    tr.dispatches.append(("query", run.run_id, a))


def _decision_attempt(tr: Transition, run: RunState, query_id: str) -> QueryResult:
    """The built-in DECISION_ATTEMPT_QUERY: the run's decision task attempt, counting transient
    attempts (..transient), which history does not record."""
    t = tr.transient if transient.current(tr.transient, run) else None
    attempt = t.attempt if t is not None else run.decision.attempt if run.decision else run.decision_attempt
    answer = {
        "attempt": attempt,
        "recorded_attempt": run.decision_attempt,
        "outstanding": bool(t and t.outstanding),
    }
    return {
        "query_id": query_id,
        "result": {"encoding": LIVE_STATE_ENCODING, "data": json.dumps(answer).encode()},
        "error": None,
    }


def _answer(tr: Transition, cmd: Command, status: str, reason: str) -> None:
    """Answer a command from outside the engine on `completions` (history.answers)."""
    tr.outcome(command_answer(cmd, status, reason, tr.now_ms))


def _reply(tr: Transition, cmd: Command, external: ParentExecution, payload: CommandPayload) -> None:
    reply_command(
        tr,
        command_id=reply_command_id(cmd["command_id"]),
        domain=external["domain"],
        workflow_id=external["workflow_id"],
        run_id=external["run_id"],
        payload=payload,
    )
