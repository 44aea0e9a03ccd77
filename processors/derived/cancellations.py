"""Cancellations: external cancel requests, and each open child's parent close policy when a run
closes (completes, fails, times out, is terminated or canceled, or continues as new).

Children are addressed by their chain's first run id, so a child that continued as new is still
reached and an unrelated workflow that reuses the child's id is never touched.
"""

from __future__ import annotations

from typing import Any

from kadence.history import ExecutionState, RunState
from kadence.history.ids import cancel_external_command_id, parent_close_command_id

from .base import CLOSE_EVENTS, Emitter


class CancellationsModule:
    name = "cancellations"

    def on_event(self, event: dict[str, Any], before: RunState | None, state: ExecutionState, out: Emitter) -> None:
        event_type, a = event["attributes"]
        if event_type == "RequestCancelExternalWorkflowExecutionInitiated":
            self._request_cancel(event, a, state, out)
        elif event_type in CLOSE_EVENTS and before is not None and not a.get("keep_children"):
            # keep_children: a run that continues as new leaves its children to the next run.
            self._apply_parent_close_policies(event, before, out)

    @staticmethod
    def _request_cancel(event: dict[str, Any], a: dict[str, Any], state: ExecutionState, out: Emitter) -> None:
        run = state.current
        first_run_id = ""
        if run is not None:
            first_run_id = next((c.first_run_id for c in run.children.values()
                                 if c.workflow_id == a["workflow_id"] and c.domain == a["domain"]), "")
        command_id = cancel_external_command_id(event["run_id"], event["event_id"])
        out.command(command_id=command_id, domain=a["domain"], workflow_id=a["workflow_id"], run_id=a["run_id"],
                    timestamp=event["timestamp"], payload_type="RequestCancelWorkflowExecution", attrs={
                        "cause": "requested by another workflow", "identity": "", "request_id": command_id,
                        "first_execution_run_id": first_run_id,
                        "external": {"domain": event["domain"], "workflow_id": event["workflow_id"],
                                     "run_id": event["run_id"], "initiated_event_id": event["event_id"]}})

    @staticmethod
    def _apply_parent_close_policies(event: dict[str, Any], run: RunState, out: Emitter) -> None:
        closed = CLOSE_EVENTS[event["attributes"][0]]
        for child in run.children.values():
            command_id = parent_close_command_id(run.run_id, child.initiated_event_id)
            if child.parent_close_policy == "TERMINATE":
                out.command(command_id=command_id, domain=child.domain, workflow_id=child.workflow_id, run_id="",
                            timestamp=event["timestamp"], payload_type="TerminateWorkflowExecution", attrs={
                                "reason": f"parent {event['workflow_id']} closed {closed} (parent close policy TERMINATE)",
                                "details": None, "identity": "kadence", "first_execution_run_id": child.first_run_id})
            elif child.parent_close_policy == "REQUEST_CANCEL":
                out.command(command_id=command_id, domain=child.domain, workflow_id=child.workflow_id, run_id="",
                            timestamp=event["timestamp"], payload_type="RequestCancelWorkflowExecution", attrs={
                                "cause": f"parent {event['workflow_id']} closed {closed} (parent close policy REQUEST_CANCEL)",
                                "identity": "kadence", "request_id": command_id,
                                "first_execution_run_id": child.first_run_id, "external": None})
            # ABANDON: the child lives on (and still starts if it had not yet).
