"""Eager activities: the worker that decides to schedule an activity runs its first attempt itself.

Without it an activity costs two extra hops: the history processor records ActivityTaskScheduled
and dispatches a task to `tasks.<list>`, a worker fetches it. With it the worker predicts the id
the ActivityTaskScheduled event will get, marks the decision with it
(`eager_scheduled_event_id`), runs the activity at once and answers with the token of that id.
The history processor skips the dispatch when the prediction holds (no events arrived while the
decision task was out); otherwise it dispatches as usual and the eager answer is dropped as stale
(the answer names its activity id, so it can never complete another activity). docs/protocol.md
("Eager activities") has the rules; a worker that dies mid-attempt costs one start-to-close
timeout, as with a dispatched attempt.

The prediction: the decision task's DecisionTaskStarted is the run's last event, so
DecisionTaskCompleted gets `started_event_id + 1` and each decision one event after it, in order.
Decisions with a variable number of events end the prediction (RequestCancelActivityTask:
one or two) or void it (a close decision: nothing scheduled with it would run).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from kadence.history.decisions import CLOSE_DECISIONS, activity_scheduled_attrs
from kadence.history.tasks import activity_task

if TYPE_CHECKING:
    from kadence.schemas.records import ActivityTask, ScheduleActivityTaskDecision

#: Decisions whose event count is not known in advance: nothing after them is predicted.
_UNPREDICTABLE = frozenset({"RequestCancelActivityTaskDecision"})


def plan_eager(
    task: Mapping[str, Any],
    decisions: list[dict[str, Any]],
    runs_here: Callable[[dict[str, Any]], bool],
    slots: int,
) -> tuple[list[dict[str, Any]], list[ActivityTask]]:
    """The decisions to send (eager ones copied with their predicted id) and the tasks of the eager
    attempts to run (every one of them eager: the worker answers them with eager command ids).

    `runs_here(attrs)`: whether this worker can run the scheduled activity (registered, same task
    list). `slots`: how many more activities it may start now.
    """
    if slots <= 0 or any(d["attributes"][0] in CLOSE_DECISIONS for d in decisions):
        return decisions, []
    out: list[dict[str, Any]] = []
    eager: list[ActivityTask] = []
    event_id = task["started_event_id"] + 1  # DecisionTaskCompleted
    predicting = True
    for decision in decisions:
        name, attrs = decision["attributes"]
        event_id += 1
        if predicting and name in _UNPREDICTABLE:
            predicting = False
        if (
            predicting
            and name == "ScheduleActivityTaskDecision"
            and len(eager) < slots
            and (attrs["start_to_close_timeout_ms"] or attrs["schedule_to_close_timeout_ms"])
            and runs_here(attrs)
        ):
            attrs = dict(attrs, eager_scheduled_event_id=event_id)
            decision = dict(decision, attributes=(name, attrs))
            eager.append(eager_activity_task(task, cast("ScheduleActivityTaskDecision", attrs), event_id))
        out.append(decision)
    return out, eager


def eager_activity_task(
    task: Mapping[str, Any], attrs: ScheduleActivityTaskDecision, scheduled_event_id: int
) -> ActivityTask:
    """The ActivityTask the history processor would have dispatched for attempt 1 (same token),
    built from the ActivityTaskScheduled event the decision `attrs` will be recorded as, except:
    no schedule-to-start timeout (the attempt starts now)."""
    completed_event_id = task["started_event_id"] + 1  # the DecisionTaskCompleted (not in the task)
    scheduled = activity_scheduled_attrs(attrs, task["task_list"], completed_event_id)
    eager = activity_task(
        domain=task["domain"],
        workflow_id=task["workflow_id"],
        run_id=task["run_id"],
        workflow_type=task["workflow_type"],
        scheduled_event_id=scheduled_event_id,
        scheduled=scheduled,
        attempt=1,
        scheduled_time=int(time.time() * 1000),
    )
    eager["schedule_to_start_timeout_ms"] = 0
    return eager
