"""Completions: every run close -> a WorkflowOutcome on the completions topic, for clients."""

from __future__ import annotations

from typing import Any

from history import ExecutionState, RunState

from .base import CLOSE_EVENTS, Emitter


class CompletionsModule:
    name = "completions"

    def on_event(self, event: dict[str, Any], before: RunState | None, state: ExecutionState, out: Emitter) -> None:
        event_type, a = event["attributes"]
        status = CLOSE_EVENTS.get(event_type)
        if status is None or before is None:
            return
        out.outcome({
            "domain": event["domain"], "workflow_id": event["workflow_id"], "run_id": event["run_id"],
            "first_run_id": before.first_run_id, "request_id": before.request_id, "status": status,
            "result": a.get("result"), "failure": a.get("failure"), "new_run_id": a.get("new_execution_run_id", ""),
            "reason": a.get("reason", "") or (a["timeout_type"] if "timeout_type" in a else ""),
            "close_event_id": event["event_id"], "timestamp": event["timestamp"], "workflow_type": before.workflow_type,
            "parent": before.parent})
