"""The `Command` record (schemas/commands.avsc): the one envelope every writer of `commands` uses.

Clients, workers, the history processor (replies, liveness fires) and the derived processors
all send commands; they build the record here so its shape has one owner. The ids go in from
`history.ids`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast, overload

from .ids import timer_fire_command_id
from .state import CLOSE_EVENTS

if TYPE_CHECKING:
    from kadence.schemas.records import (
        Command,
        CommandPayload,
        ExternalWorkflowExecutionClosed,
        FireTimer,
        WorkflowExecutionWatched,
    )


@overload
def command_record(
    *, command_id: str, domain: str, workflow_id: str, run_id: str, timestamp: int, payload: CommandPayload
) -> Command: ...


@overload
def command_record(
    *,
    command_id: str,
    domain: str,
    workflow_id: str,
    run_id: str,
    timestamp: int,
    payload_type: str,
    attrs: Mapping[str, Any],
) -> Command: ...


def command_record(
    *,
    command_id: str,
    domain: str,
    workflow_id: str,
    run_id: str,
    timestamp: int,
    payload: CommandPayload | None = None,
    payload_type: str = "",
    attrs: Mapping[str, Any] | None = None,
) -> Command:
    """A `Command` record: `payload` is the (record type, attributes) union of its payload, e.g.
    `("FireTimer", FireTimer(kind=..., ...))`; a caller with an untyped body may pass its
    `payload_type` and `attrs` instead.

    `run_id` empty = the current run of the workflow id. The record key on the topic is the
    workflow id (docs/protocol.md, "Topics and keys").
    """
    if payload is None:
        payload = cast("CommandPayload", (payload_type, attrs))
    return {
        "command_id": command_id,
        "domain": domain,
        "workflow_id": workflow_id,
        "run_id": run_id,
        "timestamp": timestamp,
        "payload": payload,
    }


def fire_timer_command(
    *,
    kind: str,
    domain: str,
    workflow_id: str,
    run_id: str,
    event_id: int,
    attempt: int,
    timestamp: int,
    timer_id: str = "",
) -> Command:
    """The FireTimer command of a due deadline (a user timer, a timeout, a retry backoff).

    Sent by the timers processor (`timestamp` = the due time) and by the history processor's
    heartbeat / schedule-to-start checks (`timestamp` = now); the id names the deadline, so the
    history processor records a fire once and drops it as stale when the deadline's event id or
    attempt is no longer pending."""
    fire: FireTimer = {"kind": kind, "event_id": event_id, "attempt": attempt, "timer_id": timer_id}
    return command_record(
        command_id=timer_fire_command_id(kind, run_id, event_id, attempt),
        domain=domain,
        workflow_id=workflow_id,
        run_id=run_id,
        timestamp=timestamp,
        payload=("FireTimer", fire),
    )


#: Command types only the engine sends: deadline fires (the timers processor, the history
#: processor's liveness checks), what a child's run tells its parent (the children module) and
#: the results of a signal or cancel one run sent another (history processor replies). A client
#: that sent them could time a run out or complete a child for it.
ENGINE_ONLY_COMMAND_TYPES = frozenset(
    {
        "FireTimer",
        "StartChildWorkflowExecutionFailed",
        "ChildWorkflowExecutionStarted",
        "ChildWorkflowExecutionCompleted",
        "ChildWorkflowExecutionFailed",
        "ChildWorkflowExecutionCanceled",
        "ChildWorkflowExecutionTimedOut",
        "ChildWorkflowExecutionTerminated",
        "SignalExternalWorkflowExecutionFailed",
        "ExternalWorkflowExecutionSignaled",
        "RequestCancelExternalWorkflowExecutionFailed",
        "ExternalWorkflowExecutionCancelRequested",
        "WatchWorkflowExecution",
        "WatchExternalWorkflowExecutionFailed",
        "ExternalWorkflowExecutionClosed",
    }
)
#: Command types clients and workers send. The engine sends some of them too (a child's start,
#: a workflow's signal or cancel of another, a parent close policy's terminate or cancel); the
#: forms that name an initiating run (`parent`, `external`) are the engine's alone.
CLIENT_COMMAND_TYPES = frozenset(
    {
        "StartWorkflowExecution",
        "SignalWorkflowExecution",
        "RequestCancelWorkflowExecution",
        "TerminateWorkflowExecution",
        "RespondDecisionTaskCompleted",
        "RespondDecisionTaskFailed",
        "RespondActivityTaskCompleted",
        "RespondActivityTaskFailed",
        "RespondActivityTaskCanceled",
        "RecordActivityTaskHeartbeat",
        "QueryWorkflow",
        "UpdateWorkflowExecution",
        "ResetWorkflowExecution",
    }
)


def engine_only_reason(command: Command) -> str | None:
    """Why only the engine may send `command`, or None when a client may. The rule a reader of the
    public commands topic applies (README, "Security")."""
    payload_type, body = command["payload"]
    attrs = cast(Mapping[str, Any], body)
    if payload_type in ENGINE_ONLY_COMMAND_TYPES:
        return f"{payload_type} is an engine-internal command: only the engine sends it"
    if payload_type == "StartWorkflowExecution" and attrs.get("parent") is not None:
        return "a StartWorkflowExecution naming a parent run starts a child: only the engine sends it"
    if payload_type == "StartWorkflowExecution" and attrs.get("signal_sender") is not None:
        # a workflow's signal-with-start: the target reports the signal to that run
        return "a StartWorkflowExecution naming a signal's sending run (signal_sender) is only sent by the engine"
    if payload_type in ("SignalWorkflowExecution", "RequestCancelWorkflowExecution") and (
        attrs.get("external") is not None
    ):
        return f"a {payload_type} naming an initiating run (external) is only sent by the engine"
    return None


def watch_closed_payload(
    watched: WorkflowExecutionWatched,
    *,
    domain: str,
    workflow_id: str,
    run_id: str,
    workflow_type: str,
    close_type: str,
    close: Mapping[str, Any],
) -> CommandPayload | None:
    """What a watcher is told of a watched chain's end (docs/protocol.md, "Watching another
    workflow's close"), from its last run's close event type and attributes: a parent attached by
    USE_EXISTING (`as_child`) gets the ChildWorkflowExecution<Close> a child's own parent gets,
    any other watcher an ExternalWorkflowExecutionClosed. None for a continue-as-new (no end)."""
    status = _CLOSE_STATUS.get(close_type)
    if status is None:
        return None
    initiated = watched["watcher"]["initiated_event_id"]
    if watched.get("as_child"):
        return child_closed_payload(
            close_type,
            close,
            domain=domain,
            workflow_id=workflow_id,
            run_id=run_id,
            workflow_type=workflow_type,
            initiated_event_id=initiated,
        )
    closed: ExternalWorkflowExecutionClosed = {
        "domain": domain,
        "workflow_id": workflow_id,
        "run_id": run_id,
        "workflow_type": workflow_type,
        "initiated_event_id": initiated,
        "status": status,
        "result": close.get("result") if status == "COMPLETED" else None,
        "failure": close.get("failure") if status == "FAILED" else None,
        "details": close.get("details") if status in ("CANCELED", "TERMINATED") else None,
        "reason": close.get("reason", "") if status == "TERMINATED" else "",
        "timeout_type": close.get("timeout_type") if status == "TIMED_OUT" else None,
    }
    return ("ExternalWorkflowExecutionClosed", closed)


def child_closed_payload(
    close_type: str,
    close: Mapping[str, Any],
    *,
    domain: str,
    workflow_id: str,
    run_id: str,
    workflow_type: str,
    initiated_event_id: int,
) -> CommandPayload | None:
    """The ChildWorkflowExecution<Close> a parent is told when its child's chain ends with the close
    event `close_type` (attributes `close`), for a child it started or attached by USE_EXISTING.
    None for a continue-as-new (the chain goes on) or any other event."""
    status = _CLOSE_STATUS.get(close_type)
    if status is None:
        return None
    child: dict[str, Any] = {
        "domain": domain,
        "workflow_id": workflow_id,
        "run_id": run_id,
        "workflow_type": workflow_type,
        "initiated_event_id": initiated_event_id,
        "started_event_id": 0,
    }
    match status:
        case "COMPLETED":
            child["result"] = close.get("result")
        case "FAILED":
            child["failure"] = close["failure"]
        case "CANCELED":
            child["details"] = close.get("details")
        case "TIMED_OUT":
            child["timeout_type"] = close["timeout_type"]
        case _:
            child["reason"] = close.get("reason", "")
    return cast("CommandPayload", (f"ChildWorkflowExecution{_CHILD_CLOSE[status]}", child))


#: The close events that end a chain, and the status a watcher is told (state.CLOSE_EVENTS less
#: continue-as-new, which goes on with the next run).
_CLOSE_STATUS = {event: status for event, status in CLOSE_EVENTS.items() if status != "CONTINUED_AS_NEW"}
_CHILD_CLOSE = {
    "COMPLETED": "Completed",
    "FAILED": "Failed",
    "CANCELED": "Canceled",
    "TERMINATED": "Terminated",
    "TIMED_OUT": "TimedOut",
}
