"""Task records for workers: decision, activity and query tasks, built from state and stored events."""

from __future__ import annotations

from kadence.history import ExecutionState, RunState, task_token
from kadence.history.tasks import activity_task as build_activity_task
from kadence.schemas.records import ActivityTask, DecisionTask, QueryTask, QueryWorkflow

from .config import HistoryConfig


def decision_task(
    state: ExecutionState, run: RunState, full_history: bool, config: HistoryConfig
) -> DecisionTask:
    """The DecisionTask record with empty `events` (stored event bodies, spliced in when encoded)."""
    d = run.decision
    assert d is not None
    history_length = run.next_event_id - 1
    return {
        "task_token": task_token(
            "d", state.domain, state.workflow_id, run.run_id, d.scheduled_event_id, d.attempt
        ),
        "domain": state.domain,
        "workflow_id": state.workflow_id,
        "run_id": run.run_id,
        "workflow_type": run.workflow_type,
        "task_list": d.task_list,
        "scheduled_event_id": d.scheduled_event_id,
        "started_event_id": d.started_event_id,
        "attempt": d.attempt,
        "previous_started_event_id": 0 if full_history else run.last_completed_started_event_id,
        "full_history": full_history,
        "events": [],
        "history_length": history_length,
        "history_size_bytes": run.history_size,
        "continue_as_new_suggested": (
            history_length >= config.suggest_continue_as_new_events
            or run.history_size >= config.suggest_continue_as_new_bytes
        ),
    }


def activity_task(state: ExecutionState, run: RunState, scheduled_event_id: int) -> ActivityTask | None:
    """The ActivityTask of the pending attempt of the activity scheduled at `scheduled_event_id`
    (None if it is not pending)."""
    info = run.activities.get(scheduled_event_id)
    if info is None:
        return None
    return build_activity_task(
        domain=state.domain,
        workflow_id=state.workflow_id,
        run_id=run.run_id,
        workflow_type=run.workflow_type,
        scheduled_event_id=scheduled_event_id,
        scheduled=info.scheduled,
        attempt=info.attempt,
        scheduled_time=info.scheduled_time,
    )


def query_task(state: ExecutionState, run: RunState, query: QueryWorkflow) -> QueryTask:
    """The QueryTask record with empty `events` (the run's stored history, spliced in when encoded)."""
    return {
        "query_id": query["query_id"],
        "domain": state.domain,
        "workflow_id": state.workflow_id,
        "run_id": run.run_id,
        "workflow_type": run.workflow_type,
        "query_type": query["query_type"],
        "args": query["args"],
        "reply_topic": query["reply_topic"],
        "events": [],
        "update_id": query.get("update_id", ""),
    }
