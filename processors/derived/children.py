"""Children: start the child a parent initiated; report the child's start and final close back.

The child's start command id is `child_start_command_id(parent run, initiated event)`, so the
child's first run id is known to everyone in advance (and a redo starts nothing twice: the
request id repeats). A chain (continue-as-new, retries) is one child execution: its start is the
first run's start and its close is the last run's close.
"""

from __future__ import annotations

from typing import Any

from kadence.history import ExecutionState, RunState
from kadence.history.ids import child_closed_command_id, child_start_command_id, child_started_command_id

from .base import Emitter

_CLOSE_TO_CHILD_EVENT = {
    "WorkflowExecutionCompleted": ("ChildWorkflowExecutionCompleted", lambda a: {"result": a["result"]}),
    "WorkflowExecutionFailed": ("ChildWorkflowExecutionFailed", lambda a: {"failure": a["failure"]}),
    "WorkflowExecutionCanceled": ("ChildWorkflowExecutionCanceled", lambda a: {"details": a["details"]}),
    "WorkflowExecutionTimedOut": ("ChildWorkflowExecutionTimedOut", lambda a: {"timeout_type": a["timeout_type"]}),
    "WorkflowExecutionTerminated": ("ChildWorkflowExecutionTerminated", lambda a: {"reason": a["reason"]}),
}


class ChildrenModule:
    name = "children"

    def on_event(self, event: dict[str, Any], before: RunState | None, state: ExecutionState, out: Emitter) -> None:
        event_type, a = event["attributes"]
        if event_type == "StartChildWorkflowExecutionInitiated":
            self._start_child(event, a, out)
        elif event_type == "WorkflowExecutionStarted" and a["parent"] is not None and a["continued_execution_run_id"] is None:
            parent = a["parent"]
            out.command(command_id=child_started_command_id(event["run_id"]), domain=parent["domain"],
                        workflow_id=parent["workflow_id"], run_id=parent["run_id"], timestamp=event["timestamp"],
                        payload_type="ChildWorkflowExecutionStarted", attrs={
                            "domain": event["domain"], "workflow_id": event["workflow_id"], "run_id": event["run_id"],
                            "workflow_type": a["workflow_type"], "initiated_event_id": parent["initiated_event_id"],
                            "started_event_id": 0})
        elif event_type in _CLOSE_TO_CHILD_EVENT:
            run = state.current
            if run is None or run.parent is None:
                return
            parent = run.parent
            child_event, extra = _CLOSE_TO_CHILD_EVENT[event_type]
            out.command(command_id=child_closed_command_id(event["run_id"]), domain=parent["domain"],
                        workflow_id=parent["workflow_id"], run_id=parent["run_id"], timestamp=event["timestamp"],
                        payload_type=child_event, attrs={
                            "domain": event["domain"], "workflow_id": event["workflow_id"], "run_id": event["run_id"],
                            "workflow_type": run.workflow_type, "initiated_event_id": parent["initiated_event_id"],
                            "started_event_id": 0, **extra(a)})

    @staticmethod
    def _start_child(event: dict[str, Any], a: dict[str, Any], out: Emitter) -> None:
        command_id = child_start_command_id(event["run_id"], event["event_id"])
        out.command(command_id=command_id, domain=a["domain"], workflow_id=a["workflow_id"], run_id="",
                    timestamp=event["timestamp"], payload_type="StartWorkflowExecution", attrs={
                        "workflow_type": a["workflow_type"], "task_list": a["task_list"], "input": a["input"],
                        "execution_timeout_ms": a["execution_timeout_ms"], "run_timeout_ms": a["run_timeout_ms"],
                        "task_timeout_ms": a["task_timeout_ms"], "id_reuse_policy": a["id_reuse_policy"],
                        "retry_policy": a["retry_policy"], "memo": a["memo"], "request_id": command_id, "identity": "",
                        "parent": {"domain": event["domain"], "workflow_id": event["workflow_id"],
                                   "run_id": event["run_id"], "initiated_event_id": event["event_id"]},
                        "cron_schedule": ""})
