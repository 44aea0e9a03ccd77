"""StartWorkflowExecution: the id reuse policy, request-id idempotence, rejection replies."""

from __future__ import annotations

from kadence.history.ids import derive_run_id, start_failed_command_id
from kadence.schemas.records import (
    Command,
    StartChildWorkflowExecutionFailed,
    StartWorkflowExecution,
    WorkflowExecutionStarted,
    WorkflowExecutionTerminated,
    WorkflowOutcome,
)

from ..transition import Transition
from .common import HandlerEnv, payload_too_large, reply_command

#: Closed statuses after which ALLOW_DUPLICATE_FAILED_ONLY admits a new run.
_FAILED_STATUSES = frozenset({"FAILED", "CANCELED", "TERMINATED", "TIMED_OUT"})


def handle_start(tr: Transition, cmd: Command, a: StartWorkflowExecution, env: HandlerEnv) -> None:
    cur = tr.run
    if cur is not None and a["request_id"] and cur.request_id == a["request_id"]:
        return  # the same start again (client retry, or a redone command): the run exists already
    if cur is not None and cur.is_open:
        if a["id_reuse_policy"] != "TERMINATE_IF_RUNNING":
            return reject(tr, cmd, a, f"workflow execution already running (run id {cur.run_id})")
        terminated: WorkflowExecutionTerminated = {
            "reason": "terminated by a new start (TERMINATE_IF_RUNNING)",
            "details": None,
            "identity": a["identity"],
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
            )
        if policy == "ALLOW_DUPLICATE_FAILED_ONLY" and cur.status not in _FAILED_STATUSES:
            return reject(
                tr,
                cmd,
                a,
                f"a run of this workflow id closed {cur.status} and the id reuse policy "
                "ALLOW_DUPLICATE_FAILED_ONLY admits a new run only after a failure",
            )
    too_large = payload_too_large(env, a["input"])
    if too_large:
        return reject(tr, cmd, a, f"input rejected: {too_large}")
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
    }
    tr.add(("WorkflowExecutionStarted", started), run_id=run_id)
    tr.schedule_decision(full_history=True)


def reject(tr: Transition, cmd: Command, a: StartWorkflowExecution, reason: str) -> None:
    """A rejected start has no history: tell whoever asked (the parent, or the client via completions)."""
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
    }
    tr.outcome(rejected)
