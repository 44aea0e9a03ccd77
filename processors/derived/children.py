"""Children: start the child a parent initiated; report the child's start and final close back.

The child's start command id is `child_start_command_id(parent run, initiated event)`, so the
child's first run id is known to everyone in advance (and a redo starts nothing twice: the
request id repeats). A chain (continue-as-new, retries) is one child execution: its start is the
first run's start and its close is the last run's close.
"""

from __future__ import annotations

from kadence.history import CLOSE_EVENTS, ExecutionState, RunState
from kadence.history.commands import child_closed_payload
from kadence.history.ids import child_closed_command_id, child_start_command_id, child_started_command_id
from kadence.schemas.records import (
    ChildWorkflowExecutionStarted,
    HistoryEvent,
    ParentExecution,
    StartChildWorkflowExecutionInitiated,
    StartWorkflowExecution,
)

from .base import Emitter


class ChildrenModule:
    name = "children"

    def on_event(
        self, event: HistoryEvent, before: RunState | None, state: ExecutionState, out: Emitter
    ) -> None:
        attributes = event["attributes"]
        if attributes[0] == "StartChildWorkflowExecutionInitiated":
            self._start_child(event, attributes[1], out)
        elif attributes[0] == "WorkflowExecutionStarted":
            a = attributes[1]
            parent = a["parent"]
            if parent is None or a["continued_execution_run_id"] is not None:
                return
            out.command(
                command_id=child_started_command_id(event["run_id"]),
                domain=parent["domain"],
                workflow_id=parent["workflow_id"],
                run_id=parent["run_id"],
                timestamp=event["timestamp"],
                payload=(
                    "ChildWorkflowExecutionStarted",
                    ChildWorkflowExecutionStarted(
                        domain=event["domain"],
                        workflow_id=event["workflow_id"],
                        run_id=event["run_id"],
                        workflow_type=a["workflow_type"],
                        initiated_event_id=parent["initiated_event_id"],
                        started_event_id=0,
                    ),
                ),
            )
        elif attributes[0] in CLOSE_EVENTS:  # (a continue-as-new is no close of the chain: None below)
            run = state.current
            if run is None or run.parent is None:
                return
            parent = run.parent
            notification = child_closed_payload(
                attributes[0],
                attributes[1],
                domain=event["domain"],
                workflow_id=event["workflow_id"],
                run_id=event["run_id"],
                workflow_type=run.workflow_type,
                initiated_event_id=parent["initiated_event_id"],
            )
            if notification is not None:
                out.command(
                    command_id=child_closed_command_id(event["run_id"]),
                    domain=parent["domain"],
                    workflow_id=parent["workflow_id"],
                    run_id=parent["run_id"],
                    timestamp=event["timestamp"],
                    payload=notification,
                )

    @staticmethod
    def _start_child(event: HistoryEvent, a: StartChildWorkflowExecutionInitiated, out: Emitter) -> None:
        command_id = child_start_command_id(event["run_id"], event["event_id"])
        parent = ParentExecution(
            domain=event["domain"],
            workflow_id=event["workflow_id"],
            run_id=event["run_id"],
            initiated_event_id=event["event_id"],
        )
        out.command(
            command_id=command_id,
            domain=a["domain"],
            workflow_id=a["workflow_id"],
            run_id="",
            timestamp=event["timestamp"],
            payload=(
                "StartWorkflowExecution",
                StartWorkflowExecution(
                    workflow_type=a["workflow_type"],
                    task_list=a["task_list"],
                    input=a["input"],
                    execution_timeout_ms=a["execution_timeout_ms"],
                    run_timeout_ms=a["run_timeout_ms"],
                    task_timeout_ms=a["task_timeout_ms"],
                    id_reuse_policy=a["id_reuse_policy"],
                    retry_policy=a["retry_policy"],
                    memo=a["memo"],
                    request_id=command_id,
                    identity="",
                    parent=parent,
                    cron_schedule="",
                    search_attributes=a.get("search_attributes", {}),
                    id_conflict_policy=a.get("id_conflict_policy", "FAIL"),
                ),
            ),
        )
