"""Cancellations: external cancel requests, and each open child's parent close policy when a run
closes (completes, fails, times out, is terminated or canceled, or continues as new without
keep_children). Children kept by earlier runs of the chain (`RunState.kept_children`) get it when
the chain ends; children attached by USE_EXISTING never do (the parent watches them, not owns them).

Children are addressed by their chain's first run id, so a child that continued as new is still
reached and an unrelated workflow that reuses the child's id is never touched.
"""

from __future__ import annotations

from typing import Any, cast

from kadence.history import CLOSE_EVENTS, ExecutionState, RunState
from kadence.history.ids import (
    cancel_external_command_id,
    kept_child_close_command_id,
    parent_close_command_id,
)
from kadence.schemas.records import (
    HistoryEvent,
    ParentExecution,
    RequestCancelExternalWorkflowExecutionInitiated,
    RequestCancelWorkflowExecution,
    TerminateWorkflowExecution,
)

from .base import Emitter


class CancellationsModule:
    name = "cancellations"

    def on_event(
        self, event: HistoryEvent, before: RunState | None, state: ExecutionState, out: Emitter
    ) -> None:
        attributes = event["attributes"]
        if attributes[0] == "RequestCancelExternalWorkflowExecutionInitiated":
            self._request_cancel(event, attributes[1], state, out)
        elif attributes[0] in CLOSE_EVENTS and before is not None and not attributes[1].get("keep_children"):
            # keep_children: a run that continues as new leaves its children to the next run.
            self._apply_parent_close_policies(event, before, out)

    @staticmethod
    def _request_cancel(
        event: HistoryEvent,
        a: RequestCancelExternalWorkflowExecutionInitiated,
        state: ExecutionState,
        out: Emitter,
    ) -> None:
        run = state.current
        first_run_id = ""
        if run is not None:
            first_run_id = next(
                (
                    c.first_run_id
                    for c in run.children.values()
                    if c.workflow_id == a["workflow_id"] and c.domain == a["domain"]
                ),
                "",
            )
        command_id = cancel_external_command_id(event["run_id"], event["event_id"])
        sender = ParentExecution(
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
                "RequestCancelWorkflowExecution",
                RequestCancelWorkflowExecution(
                    cause="requested by another workflow",
                    identity="",
                    request_id=command_id,
                    first_execution_run_id=first_run_id,
                    external=sender,
                ),
            ),
        )

    @staticmethod
    def _apply_parent_close_policies(event: HistoryEvent, run: RunState, out: Emitter) -> None:
        closed = CLOSE_EVENTS[event["attributes"][0]]
        # the run's own children, then those earlier runs of the chain kept (keep_children): the
        # chain's end reaches them too. An attached child (USE_EXISTING) is watched, not owned.
        # (a reset's close: the children the run initiated up to the reset point stay with the new run)
        kept_up_to = int(cast(dict[str, Any], event["attributes"][1]).get("reset_last_event_id", 0))
        owned = [
            (parent_close_command_id(run.run_id, c.initiated_event_id), c)
            for c in run.children.values()
            if c.initiated_event_id > kept_up_to
        ]
        owned += [(kept_child_close_command_id(run.run_id, c.first_run_id), c) for c in run.kept_children]
        for command_id, child in owned:
            if child.attached:
                continue
            if child.parent_close_policy == "TERMINATE":
                out.command(
                    command_id=command_id,
                    domain=child.domain,
                    workflow_id=child.workflow_id,
                    run_id="",
                    timestamp=event["timestamp"],
                    payload=(
                        "TerminateWorkflowExecution",
                        TerminateWorkflowExecution(
                            reason=f"parent {event['workflow_id']} closed {closed} (parent close policy "
                            "TERMINATE)",
                            details=None,
                            identity="kadence",
                            first_execution_run_id=child.first_run_id,
                        ),
                    ),
                )
            elif child.parent_close_policy == "REQUEST_CANCEL":
                out.command(
                    command_id=command_id,
                    domain=child.domain,
                    workflow_id=child.workflow_id,
                    run_id="",
                    timestamp=event["timestamp"],
                    payload=(
                        "RequestCancelWorkflowExecution",
                        RequestCancelWorkflowExecution(
                            cause=f"parent {event['workflow_id']} closed {closed} (parent close policy "
                            "REQUEST_CANCEL)",
                            identity="kadence",
                            request_id=command_id,
                            first_execution_run_id=child.first_run_id,
                            external=None,
                        ),
                    ),
                )
            # ABANDON: the child lives on (and still starts if it had not yet).
