"""`describe_state`: what the reducer's state of a workflow id says, as plain JSON-able values.

`WorkflowHandle.describe()` returns it and `kadence describe` prints the same fields; both fold
the workflow's history with the one reducer (`history.reducer.fold`) first.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .state import ExecutionState


def describe_state(state: ExecutionState) -> dict[str, Any] | None:
    """A summary of the latest run of `state` (None if no run has started): status, the run chain
    (oldest first, bounded by `reducer.MAX_CHAIN`), history length and bytes, pending work."""
    run = state.current
    if run is None:
        return None
    return {
        "workflow_id": state.workflow_id,
        "domain": state.domain,
        "status": run.status,
        "run_id": run.run_id,
        "first_run_id": run.first_run_id,
        "chain": [r for r, _ in state.previous_runs] + [run.run_id],
        "workflow_type": run.workflow_type,
        "task_list": run.task_list,
        "history_length": run.next_event_id - 1,
        "history_bytes": run.history_size,
        "pending_activities": len(run.activities),
        "pending_timers": len(run.timers),
        "pending_children": [c.workflow_id for c in run.children.values()],
        "decision_outstanding": run.decision is not None,
        #: The decision task's attempt and its last failure since the last completed one (None).
        "decision_attempt": run.decision_attempt,
        "decision_failure": run.decision_failure,
        "parent": run.parent,
        "close": run.close_type or None,
        #: Typed values, a datetime as its ISO 8601 text (JSON-able).
        "search_attributes": {
            k: v.isoformat() if isinstance(v, datetime) else v for k, v in run.search_attributes.items()
        },
    }
