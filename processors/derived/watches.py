"""Watches (docs/protocol.md, "Watching another workflow's close"): a run's
WatchExternalWorkflowExecutionInitiated -> a WatchWorkflowExecution command to the target; and when
a watched chain's last run closes, each watcher in its state (`RunState.watchers`, carried across
continue-as-new by the reducer) is told how it ended: ExternalWorkflowExecutionClosed, or for a
parent attached by USE_EXISTING the ChildWorkflowExecution<Close> a child's own parent gets."""

from __future__ import annotations

from kadence.history import ExecutionState, RunState
from kadence.history.commands import watch_closed_payload
from kadence.history.ids import watch_closed_command_id, watch_command_id
from kadence.schemas.records import HistoryEvent, ParentExecution, WatchWorkflowExecution

from .base import Emitter


class WatchesModule:
    name = "watches"

    def on_event(
        self, event: HistoryEvent, before: RunState | None, state: ExecutionState, out: Emitter
    ) -> None:
        attributes = event["attributes"]
        if attributes[0] == "WatchExternalWorkflowExecutionInitiated":
            a = attributes[1]
            command_id = watch_command_id(event["run_id"], event["event_id"])
            watcher = ParentExecution(
                domain=event["domain"],
                workflow_id=event["workflow_id"],
                run_id=event["run_id"],
                initiated_event_id=event["event_id"],
            )
            out.command(
                command_id=command_id,
                domain=a["domain"],
                workflow_id=a["workflow_id"],
                run_id=a["run_id"],
                timestamp=event["timestamp"],
                payload=(
                    "WatchWorkflowExecution",
                    WatchWorkflowExecution(watcher=watcher, request_id=command_id),
                ),
            )
            return
        run = state.current
        if before is None or run is None or run.run_id != event["run_id"] or run.is_open or not run.watchers:
            return
        if run.close_event_id != event["event_id"]:
            return  # not the close event itself
        for watched in run.watchers:
            payload = watch_closed_payload(
                watched,
                domain=event["domain"],
                workflow_id=event["workflow_id"],
                run_id=event["run_id"],
                workflow_type=run.workflow_type,
                close_type=run.close_type,
                close=attributes[1],
            )
            if payload is None:
                return  # continued as new: the next run holds the watchers
            w = watched["watcher"]
            out.command(
                command_id=watch_closed_command_id(event["run_id"], w["run_id"], w["initiated_event_id"]),
                domain=w["domain"],
                workflow_id=w["workflow_id"],
                run_id=w["run_id"],
                timestamp=event["timestamp"],
                payload=payload,
            )
