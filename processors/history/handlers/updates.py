"""Workflow updates (docs/updates.md): accepting a validated update, recording its completion.

Validation happens before anything is recorded: the client's QueryWorkflow with an `update_id` goes
to a worker as a QueryTask that runs the update's validator (handlers/external.py `handle_query`).
Only an update that passed it is sent here (UpdateWorkflowExecution), recorded once per update id
as WorkflowExecutionUpdateAccepted; the workflow's handler runs at the next activation and its
CompleteWorkflowUpdateDecision is recorded as WorkflowExecutionUpdateCompleted. Every answer goes to
the client's query-results topic as a QueryResult (`history.ids.update_answer_id`).
"""

from __future__ import annotations

from typing import cast

from kadence.history.ids import update_answer_id
from kadence.schemas.records import (
    Command,
    CompleteWorkflowUpdateDecision,
    Failure,
    Payload,
    QueryResult,
    UpdateWorkflowExecution,
    WorkflowExecutionUpdateAccepted,
    WorkflowExecutionUpdateCompleted,
)

from ..transition import Transition
from .common import HandlerEnv, payload_too_large


def _answer(
    tr: Transition,
    reply_topic: str,
    update_id: str,
    stage: str,
    *,
    result: Payload | None = None,
    error: Failure | None = None,
) -> None:
    answer: QueryResult = {"query_id": update_answer_id(update_id, stage), "result": result, "error": error}
    tr.query_results.append((reply_topic, answer))


def _refused(message: str) -> Failure:
    return {
        "type": "UpdateRefused",
        "message": message,
        "stack": "",
        "non_retryable": True,
        "details": None,
        "cause": None,
    }


def handle_update(tr: Transition, cmd: Command, a: UpdateWorkflowExecution, env: HandlerEnv) -> None:
    update_id, reply_topic = a["update_id"], a["reply_topic"]
    run = tr.state.run(cmd["run_id"]) if tr.state is not None else None
    if run is None or not run.is_open:
        where = f"workflow {tr.workflow_id!r} (run {cmd['run_id'] or 'current'}) in domain {tr.domain!r}"
        _answer(tr, reply_topic, update_id, "accepted", error=_refused(f"{where} is not open"))
        return
    known = run.updates.get(update_id)
    if known is not None:  # the same update again: answered from state, nothing recorded
        _answer(tr, reply_topic, update_id, "accepted")
        if "decision_task_completed_event_id" in known:  # completed: its result or failure
            done = cast(WorkflowExecutionUpdateCompleted, known)
            _answer(tr, reply_topic, update_id, "completed", result=done["result"], error=done["failure"])
        return
    too_large = payload_too_large(env, a["input"])
    if too_large:
        _answer(tr, reply_topic, update_id, "accepted", error=_refused(f"update input rejected: {too_large}"))
        return
    accepted: WorkflowExecutionUpdateAccepted = {
        "update_id": update_id,
        "update_name": a["update_name"],
        "input": a["input"],
        "identity": a["identity"],
        "reply_topic": reply_topic,
    }
    tr.add(("WorkflowExecutionUpdateAccepted", accepted))
    _answer(tr, reply_topic, update_id, "accepted")
    tr.schedule_decision_if_needed()


def record_update_completed(tr: Transition, a: CompleteWorkflowUpdateDecision, dtc: int) -> None:
    """Record a CompleteWorkflowUpdateDecision and send the completion to the accepting client."""
    run = tr.run
    assert run is not None
    accepted = run.updates.get(a["update_id"])
    completed: WorkflowExecutionUpdateCompleted = {
        "update_id": a["update_id"],
        "result": a["result"],
        "failure": a["failure"],
        "decision_task_completed_event_id": dtc,
    }
    tr.add(("WorkflowExecutionUpdateCompleted", completed))
    reply_topic = (
        cast(WorkflowExecutionUpdateAccepted, accepted)["reply_topic"]
        if accepted is not None and "reply_topic" in accepted
        else ""
    )
    if reply_topic:
        _answer(tr, reply_topic, a["update_id"], "completed", result=a["result"], error=a["failure"])
