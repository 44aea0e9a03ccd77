"""The `ActivityTask` record (schemas/tasks.avsc), built once for both of its senders.

The history processor dispatches activity tasks to `tasks.<list>`; a worker running an eager
activity builds the task of attempt 1 itself (kadence/worker/_eager.py). Both must build the same record:
the worker answers with the task's token, and the processor accepts the answer only if it names
the pending attempt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .ids import task_token

if TYPE_CHECKING:
    from kadence.schemas.records import ActivityTask, ActivityTaskScheduled


def activity_task(
    *,
    domain: str,
    workflow_id: str,
    run_id: str,
    workflow_type: str,
    scheduled_event_id: int,
    scheduled: ActivityTaskScheduled,
    attempt: int,
    scheduled_time: int,
) -> ActivityTask:
    """The ActivityTask of one attempt of the activity that `scheduled` (its ActivityTaskScheduled
    attributes, as `history.decisions.activity_scheduled_attrs` makes them) records at event
    `scheduled_event_id`. `scheduled_time`: when the activity was scheduled, in ms."""
    return {
        "task_token": task_token("a", domain, workflow_id, run_id, scheduled_event_id, attempt),
        "domain": domain,
        "workflow_id": workflow_id,
        "run_id": run_id,
        "workflow_type": workflow_type,
        "activity_id": scheduled["activity_id"],
        "activity_type": scheduled["activity_type"],
        "task_list": scheduled["task_list"],
        "input": scheduled["input"],
        "scheduled_event_id": scheduled_event_id,
        "attempt": attempt,
        "scheduled_time": scheduled_time,
        "start_to_close_timeout_ms": scheduled["start_to_close_timeout_ms"],
        "heartbeat_timeout_ms": scheduled["heartbeat_timeout_ms"],
        "heartbeat_details": None,
        "schedule_to_start_timeout_ms": scheduled["schedule_to_start_timeout_ms"],
    }
