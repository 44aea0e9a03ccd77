"""Answers to a client's signal, cancel request or terminate (docs/protocol.md, "Answers"), and to
an activity heartbeat whose attempt should stop (docs/protocol.md, "Activity cancellation").

The history processor answers each of these commands that came from outside the engine (no
`external` sender: not a workflow's own signal or cancel, which get their reply as a command) with
a `WorkflowOutcome` on `completions`, the way it answers a start it rejects: `request_id` is the
command's id, `run_id` is empty (the record is no run's outcome) and `status` is one of
ANSWER_STATUSES. A client waits for the answer of its command: NOT_FOUND becomes
`kadence.failures.WorkflowNotFoundError`, as Temporal's NotFound.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kadence.schemas.records import Command, QueryResult, WorkflowOutcome

#: The command reached an open run (`reason`: the run id it reached).
ACCEPTED = "ACCEPTED"
#: No open run of the workflow id (or of the addressed run) in the domain.
NOT_FOUND = "NOT_FOUND"
#: The run is open but the command was refused (`reason` says why: e.g. a payload over the limit).
REFUSED = "REFUSED"
ANSWER_STATUSES = frozenset({ACCEPTED, NOT_FOUND, REFUSED})


def command_answer(cmd: Command, status: str, reason: str, timestamp: int) -> WorkflowOutcome:
    """The outcome record answering `cmd` (a signal, cancel request or terminate)."""
    return {
        "domain": cmd["domain"],
        "workflow_id": cmd["workflow_id"],
        "run_id": "",
        "first_run_id": "",
        "request_id": cmd["command_id"],
        "status": status,
        "result": None,
        "failure": None,
        "new_run_id": "",
        "reason": reason,
        "close_event_id": 0,
        "timestamp": timestamp,
        "workflow_type": "",
        "parent": None,
    }


#: Why a heartbeat is answered (the `type` of the answer's error): the attempt's cancel was
#: requested (RequestCancelActivityTask recorded ActivityTaskCancelRequested) ...
CANCEL_REQUESTED = "ActivityCancelRequested"
#: ... or the attempt is no longer pending (closed, timed out, retried, its run closed): the worker
#: stops it too, as Temporal's SDKs do when a heartbeat finds no activity.
NOT_PENDING = "ActivityNotPending"


def heartbeat_answer(heartbeat_command_id: str, why: str, message: str) -> QueryResult:
    """The answer to an activity heartbeat that asked for one (`reply_topic`), sent only when the
    attempt should stop (`why`: CANCEL_REQUESTED or NOT_PENDING); keyed by the heartbeat's command
    id (docs/protocol.md, "Activity cancellation"). Nothing is answered while the attempt may go on."""
    return {
        "query_id": heartbeat_command_id,
        "result": None,
        "error": {
            "type": why,
            "message": message,
            "stack": "",
            "non_retryable": True,
            "details": None,
            "cause": None,
        },
    }


__all__ = [
    "ACCEPTED",
    "ANSWER_STATUSES",
    "CANCEL_REQUESTED",
    "NOT_FOUND",
    "NOT_PENDING",
    "REFUSED",
    "command_answer",
    "heartbeat_answer",
]
