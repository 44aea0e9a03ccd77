"""StartWorkflowExecution: the id reuse policy, request-id idempotence, rejection replies, and
signal-with-start (a start naming a signal: an open run of the id gets the signal instead), and a
child start with id_conflict_policy USE_EXISTING (an open run of the id gets the parent as a watcher)."""

from __future__ import annotations

from kadence.history import search_attributes
from kadence.history.ids import derive_run_id, reply_command_id, start_failed_command_id
from kadence.history.validation import command_problem
from kadence.schemas.records import (
    Command,
    CommandPayload,
    ExternalWorkflowExecutionSignaled,
    SignalExternalWorkflowExecutionFailed,
    SignalWorkflowExecution,
    StartChildWorkflowExecutionFailed,
    StartFailureCause,
    StartWorkflowExecution,
    WorkflowExecutionSignaled,
    WorkflowExecutionStarted,
    WorkflowExecutionTerminated,
    WorkflowOutcome,
)

from ..transition import Transition
from .common import HandlerEnv, payload_too_large, reply_command
from .external import handle_signal
from .watches import attach_child

#: Closed statuses after which ALLOW_DUPLICATE_FAILED_ONLY admits a new run.
_FAILED_STATUSES = frozenset({"FAILED", "CANCELED", "TERMINATED", "TIMED_OUT"})


def handle_start(tr: Transition, cmd: Command, a: StartWorkflowExecution, env: HandlerEnv) -> None:
    problem = command_problem(cmd)  # ids were checked on entry: here timeouts, types, task list
    if problem is not None:
        return reject(tr, cmd, a, f"start rejected: {problem}", "INVALID_REQUEST")
    cur = tr.run
    if cur is not None and a["request_id"] and cur.request_id == a["request_id"]:
        return  # the same start again (client retry, or a redone command): the run exists already
    if cur is not None and cur.is_open:
        if a.get("signal_name") and a["id_reuse_policy"] != "TERMINATE_IF_RUNNING":
            return handle_signal(tr, cmd, _start_signal(a), env)  # signal-with-start, run open: signal it
        if a.get("id_conflict_policy") == "USE_EXISTING" and a["parent"] is not None:
            return attach_child(tr, cmd, a, cur)  # the parent watches the open run instead
        if a["id_reuse_policy"] != "TERMINATE_IF_RUNNING":
            return reject(
                tr,
                cmd,
                a,
                f"workflow execution already running (run id {cur.run_id})",
                "WORKFLOW_ALREADY_RUNNING",
            )
        terminated: WorkflowExecutionTerminated = {
            "reason": "terminated by a new start (TERMINATE_IF_RUNNING)",
            "details": None,
            "identity": a["identity"],
            "new_execution_run_id": "",
            "reset_last_event_id": 0,
        }
        tr.add(("WorkflowExecutionTerminated", terminated))
    elif cur is not None:
        policy = a["id_reuse_policy"]
        if policy == "REJECT_DUPLICATE":
            return reject(
                tr,
                cmd,
                a,
                f"a run of this workflow id closed ({cur.status}) and the id reuse policy "
                "is REJECT_DUPLICATE",
                "ID_REUSE_REJECTED",
            )
        if policy == "ALLOW_DUPLICATE_FAILED_ONLY" and cur.status not in _FAILED_STATUSES:
            return reject(
                tr,
                cmd,
                a,
                f"a run of this workflow id closed {cur.status} and the id reuse policy "
                "ALLOW_DUPLICATE_FAILED_ONLY admits a new run only after a failure",
                "ID_REUSE_REJECTED",
            )
    too_large = payload_too_large(env, a["input"]) or payload_too_large(env, a.get("signal_input"))
    if too_large:
        return reject(tr, cmd, a, f"input rejected: {too_large}", "PAYLOAD_TOO_LARGE")
    bad_attributes = search_attributes.invalid(a.get("search_attributes", {}))
    if bad_attributes:
        return reject(
            tr, cmd, a, f"search attributes rejected: {bad_attributes}", "INVALID_SEARCH_ATTRIBUTES"
        )
    run_id = derive_run_id(tr.domain, tr.workflow_id, cmd["command_id"])
    timeout = a["execution_timeout_ms"]
    started: WorkflowExecutionStarted = {
        "workflow_type": a["workflow_type"],
        "task_list": a["task_list"],
        "input": a["input"],
        "execution_timeout_ms": timeout,
        "run_timeout_ms": a["run_timeout_ms"],
        "task_timeout_ms": a["task_timeout_ms"] or 10_000,
        "retry_policy": a["retry_policy"],
        "memo": a["memo"],
        "request_id": a["request_id"],
        "identity": a["identity"],
        "first_run_id": run_id,
        "continued_execution_run_id": None,
        "parent": a["parent"],
        "attempt": 1,
        "execution_deadline_ms": tr.now_ms + timeout if timeout else 0,
        "initiator": "",
        "continued_failure": None,
        "last_completion_result": None,
        "search_attributes": a.get("search_attributes", {}),
    }
    tr.add(("WorkflowExecutionStarted", started), run_id=run_id)
    if a.get("signal_name"):  # signal-with-start: the signal comes before the first decision task
        signal = _start_signal(a)
        signaled: WorkflowExecutionSignaled = {
            "signal_name": signal["signal_name"],
            "input": signal["input"],
            "identity": signal["identity"],
            "request_id": signal["request_id"],
        }
        tr.add(("WorkflowExecutionSignaled", signaled))
        sender = a.get("signal_sender")
        if sender is not None:
            done: ExternalWorkflowExecutionSignaled = {
                "domain": tr.domain,
                "workflow_id": tr.workflow_id,
                "run_id": run_id,
                "initiated_event_id": sender["initiated_event_id"],
                "control": "",
            }
            _reply_sender(tr, cmd, a, ("ExternalWorkflowExecutionSignaled", done))
    tr.schedule_decision(full_history=True)


def _start_signal(a: StartWorkflowExecution) -> SignalWorkflowExecution:
    """The signal of a signal-with-start (its request id is the start's: a retry is one signal)."""
    return {
        "signal_name": a.get("signal_name", ""),
        "input": a.get("signal_input"),
        "identity": a["identity"],
        "request_id": a["request_id"],
        "external": a.get("signal_sender"),
    }


def _reply_sender(tr: Transition, cmd: Command, a: StartWorkflowExecution, payload: CommandPayload) -> None:
    sender = a.get("signal_sender")
    assert sender is not None
    reply_command(
        tr,
        command_id=reply_command_id(cmd["command_id"]),
        domain=sender["domain"],
        workflow_id=sender["workflow_id"],
        run_id=sender["run_id"],
        payload=payload,
    )


def reject(
    tr: Transition,
    cmd: Command,
    a: StartWorkflowExecution,
    reason: str,
    cause_type: StartFailureCause = "UNSPECIFIED",
) -> None:
    """A rejected start has no history: tell whoever asked (the parent, the workflow that sent a
    signal-with-start, or the client via completions)."""
    sender = a.get("signal_sender")
    if sender is not None:
        failed_signal: SignalExternalWorkflowExecutionFailed = {
            "domain": tr.domain,
            "workflow_id": tr.workflow_id,
            "run_id": "",
            "cause": reason,
            "initiated_event_id": sender["initiated_event_id"],
            "decision_task_completed_event_id": 0,
            "control": "",
        }
        _reply_sender(tr, cmd, a, ("SignalExternalWorkflowExecutionFailed", failed_signal))
        return
    parent = a["parent"]
    if parent is not None:
        failed: StartChildWorkflowExecutionFailed = {
            "domain": tr.domain,
            "workflow_id": tr.workflow_id,
            "workflow_type": a["workflow_type"],
            "cause": reason,
            "initiated_event_id": parent["initiated_event_id"],
            "decision_task_completed_event_id": 0,
            "control": "",
            "cause_type": cause_type,
        }
        reply_command(
            tr,
            command_id=start_failed_command_id(cmd["command_id"]),
            domain=parent["domain"],
            workflow_id=parent["workflow_id"],
            run_id=parent["run_id"],
            payload=("StartChildWorkflowExecutionFailed", failed),
        )
        return
    rejected: WorkflowOutcome = {
        "domain": tr.domain,
        "workflow_id": tr.workflow_id,
        "run_id": "",
        "first_run_id": "",
        "request_id": a["request_id"],
        "status": "START_REJECTED",
        "result": None,
        "failure": None,
        "new_run_id": "",
        "reason": reason,
        "close_event_id": 0,
        "timestamp": tr.now_ms,
        "workflow_type": a["workflow_type"],
        "parent": None,
        "start_failure_cause": cause_type,
    }
    tr.outcome(rejected)
