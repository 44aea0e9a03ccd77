"""The live-state answer: what the history processor holds for a workflow id, as JSON-able values.

`kadence audit` folds the history topic with the one reducer and compares the result with what
the history processor really holds. It asks the processor through Kafka, with the built-in query
`LIVE_STATE_QUERY` (a QueryWorkflow command like any other): the processor answers it itself,
from its state, without a worker, with `live_state(state)` as the JSON of the QueryResult. The
audit computes `live_state` of its own fold and compares the two field by field. One function on
both sides, so the comparison is of like with like.

Every field is derived from history alone (no clock, no soft state), so a processor that applied
exactly the recorded history gives exactly the fold's answer.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .state import ExecutionState

#: The query type the history processor answers itself (a worker never sees it).
LIVE_STATE_QUERY = "__kadence_live_state"
#: Encoding of the QueryResult payload that carries the answer.
LIVE_STATE_ENCODING = "json/plain"
#: The other built-in query: the attempt count of a failing decision task, which is processor
#: state rather than history while its attempts are transient (processors/history/transient.py).
#: Answered as JSON {"attempt", "recorded_attempt", "outstanding"} (`WorkflowHandle.describe`).
DECISION_ATTEMPT_QUERY = "__kadence_decision_attempt"


def live_state(state: ExecutionState | None) -> dict[str, Any] | None:
    """The comparable summary of a workflow id's state (None when there is none): the current run
    (status, close event and its outcome, history length and size, pending activities, children,
    timers, outgoing signals and cancels, the outstanding decision task, search attributes) and
    the chain of earlier runs."""
    if state is None or state.current is None:
        return None
    run = state.current
    close: Mapping[str, Any] = run.close or {}
    decision = run.decision
    return {
        "run_id": run.run_id,
        "first_run_id": run.first_run_id,
        "workflow_type": run.workflow_type,
        "status": run.status,
        "close_type": run.close_type,
        "close_event_id": run.close_event_id,
        "close": _outcome(close),
        "next_event_id": run.next_event_id,
        "history_size": run.history_size,
        "activities": sorted(
            [a.scheduled_event_id, a.activity_id, a.attempt] for a in run.activities.values()
        ),
        "children": sorted([c.initiated_event_id, c.workflow_id, c.run_id] for c in run.children.values()),
        "timers": sorted(run.timers),
        "signals_out": sorted(run.signals_out),
        "cancels_out": sorted(run.cancels_out),
        "decision": [decision.scheduled_event_id, decision.attempt, decision.started_event_id]
        if decision is not None
        else None,
        "cancel_requested": run.cancel_requested,
        "search_attributes": _plain(run.search_attributes),
        "previous_runs": [list(r) for r in state.previous_runs],
    }


def encode_live_state(state: ExecutionState | None) -> bytes:
    return json.dumps(live_state(state), sort_keys=True, separators=(",", ":")).encode()


def decode_live_state(data: bytes) -> dict[str, Any] | None:
    answer: dict[str, Any] | None = json.loads(data)
    return answer


def _outcome(close: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a close event a caller sees: result, failure, details, reason, new run id,
    timeout type (by name, so that records with and without defaulted fields compare equal)."""
    failure = close.get("failure")
    return {
        "result": _payload(close.get("result")),
        "details": _payload(close.get("details")),
        "failure": [failure.get("type", ""), failure.get("message", "")] if failure else None,
        "reason": close.get("reason") or "",
        "new_run_id": close.get("new_execution_run_id") or "",
        "timeout_type": close.get("timeout_type") or "",
    }


def _payload(payload: Mapping[str, Any] | None) -> list[str] | None:
    if payload is None:
        return None
    return [payload["encoding"], base64.b64encode(payload["data"]).decode()]


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items()}
