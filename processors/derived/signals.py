"""Signals: a run's SignalExternalWorkflowExecutionInitiated -> a signal command to the target,
carrying the sender (so the target replies Signaled/Failed to it) and a request id that makes a
redelivered signal a no-op. A signal-with-start (the event names a workflow to `start`) becomes a
StartWorkflowExecution naming the signal: the target's history processor signals an open run of
the id or starts one with the signal (processors/history/handlers/start.py)."""

from __future__ import annotations

from kadence.history import ExecutionState, RunState
from kadence.history.ids import signal_external_command_id
from kadence.schemas.records import (
    HistoryEvent,
    ParentExecution,
    SignalExternalWorkflowExecutionInitiated,
    SignalWithStartOptions,
    SignalWorkflowExecution,
    StartWorkflowExecution,
)

from .base import Emitter


class SignalsModule:
    name = "signals"

    def on_event(
        self, event: HistoryEvent, before: RunState | None, state: ExecutionState, out: Emitter
    ) -> None:
        attributes = event["attributes"]
        if attributes[0] != "SignalExternalWorkflowExecutionInitiated":
            return
        a = attributes[1]
        request_id = signal_external_command_id(event["run_id"], event["event_id"])
        run_id = a["run_id"]
        run = state.current
        if not run_id and run is not None:  # signalling our own child: pin its chain
            run_id = next(
                (
                    c.first_run_id
                    for c in run.children.values()
                    if c.workflow_id == a["workflow_id"] and c.domain == a["domain"]
                ),
                "",
            )
        sender = ParentExecution(
            domain=event["domain"],
            workflow_id=event["workflow_id"],
            run_id=event["run_id"],
            initiated_event_id=event["event_id"],
        )
        start = a.get("start")
        if start is not None:
            out.command(
                command_id=request_id,
                domain=a["domain"],
                workflow_id=a["workflow_id"],
                run_id="",
                timestamp=event["timestamp"],
                payload=("StartWorkflowExecution", _signal_with_start(a, start, request_id, sender)),
            )
            return
        out.command(
            command_id=request_id,
            domain=a["domain"],
            workflow_id=a["workflow_id"],
            run_id=run_id,
            timestamp=event["timestamp"],
            payload=(
                "SignalWorkflowExecution",
                SignalWorkflowExecution(
                    signal_name=a["signal_name"],
                    input=a["input"],
                    identity="",
                    request_id=request_id,
                    external=sender,
                ),
            ),
        )


def _signal_with_start(
    a: SignalExternalWorkflowExecutionInitiated,
    start: SignalWithStartOptions,
    request_id: str,
    sender: ParentExecution,
) -> StartWorkflowExecution:
    return {
        "workflow_type": start["workflow_type"],
        "task_list": start["task_list"],
        "input": start["input"],
        "execution_timeout_ms": start["execution_timeout_ms"],
        "run_timeout_ms": start["run_timeout_ms"],
        "task_timeout_ms": start["task_timeout_ms"],
        "id_reuse_policy": start["id_reuse_policy"],
        "retry_policy": start["retry_policy"],
        "memo": start["memo"],
        "request_id": request_id,
        "identity": "",
        "parent": None,
        "cron_schedule": "",
        "search_attributes": {},
        "signal_name": a["signal_name"],
        "signal_input": a["input"],
        "signal_sender": sender,
    }
