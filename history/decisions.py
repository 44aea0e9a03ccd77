"""Decision -> event: which history events record each decision a workflow task returns.

One table for everyone who needs the mapping (docs/protocol.md, "A run's history"):
- the history processor records each accepted decision as its `event` (its handlers are keyed
  by this table, processors/history/handlers/decisions.py);
- the SDK's replay matches recorded events against the decisions workflow code produces, by
  `events` and the `keys` attributes (kadence/_runtime.py);
- the worker's eager activities predict the ActivityTaskScheduled event (kadence/worker/_eager.py);
- the test history builder writes what the processor would (kadence/testing.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from kadence.schemas.records import ActivityTaskScheduled, ScheduleActivityTaskDecision


class DecisionEvents(NamedTuple):
    """How one decision type is recorded."""

    #: The event types that may record the decision, the usual one first; the others record a
    #: decision the processor could not carry out (e.g. CancelTimerFailed for an unknown timer).
    events: tuple[str, ...]
    #: Attributes the decision and its event must agree on for replay to match them.
    keys: tuple[str, ...]

    @property
    def event(self) -> str:
        """The event that records the decision when it is carried out."""
        return self.events[0]


DECISION_EVENTS: dict[str, DecisionEvents] = {
    "ScheduleActivityTaskDecision": DecisionEvents(
        ("ActivityTaskScheduled",), ("activity_id", "activity_type")
    ),
    "RequestCancelActivityTaskDecision": DecisionEvents(
        ("ActivityTaskCancelRequested", "RequestCancelActivityTaskFailed"), ("activity_id",)
    ),
    "StartTimerDecision": DecisionEvents(("TimerStarted",), ("timer_id",)),
    "CancelTimerDecision": DecisionEvents(("TimerCanceled", "CancelTimerFailed"), ("timer_id",)),
    "CompleteWorkflowExecutionDecision": DecisionEvents(("WorkflowExecutionCompleted",), ()),
    "FailWorkflowExecutionDecision": DecisionEvents(("WorkflowExecutionFailed",), ()),
    "CancelWorkflowExecutionDecision": DecisionEvents(("WorkflowExecutionCanceled",), ()),
    "ContinueAsNewWorkflowExecutionDecision": DecisionEvents(("WorkflowExecutionContinuedAsNew",), ()),
    "RecordMarkerDecision": DecisionEvents(("MarkerRecorded",), ("marker_name",)),
    "StartChildWorkflowExecutionDecision": DecisionEvents(
        ("StartChildWorkflowExecutionInitiated",), ("workflow_id", "workflow_type")
    ),
    "SignalExternalWorkflowExecutionDecision": DecisionEvents(
        ("SignalExternalWorkflowExecutionInitiated",), ("workflow_id", "signal_name")
    ),
    "RequestCancelExternalWorkflowExecutionDecision": DecisionEvents(
        ("RequestCancelExternalWorkflowExecutionInitiated",), ("workflow_id",)
    ),
    "WatchExternalWorkflowExecutionDecision": DecisionEvents(
        ("WatchExternalWorkflowExecutionInitiated",), ("workflow_id",)
    ),
    "UpsertWorkflowMemoDecision": DecisionEvents(("UpsertWorkflowMemo",), ()),
    "CompleteWorkflowUpdateDecision": DecisionEvents(("WorkflowExecutionUpdateCompleted",), ("update_id",)),
    "UpsertWorkflowSearchAttributesDecision": DecisionEvents(
        ("UpsertWorkflowSearchAttributes",), ("search_attributes",)
    ),
}

#: `marker_name` of the markers `workflow.patched` and `workflow.deprecate_patch` record
#: (docs/versioning.md). Their details name the patch: `patch_marker_details`/`patch_marker_id`.
PATCH_MARKER = "Version"
#: The details of a patch marker are JSON in this encoding, whatever the user's data converter.
PATCH_MARKER_ENCODING = "json/plain"


def patch_marker_details(patch_id: str, *, deprecated: bool) -> dict[str, Any]:
    """The `details` Payload of the patch marker for `patch_id` (`deprecated`: by deprecate_patch)."""
    data = json.dumps({"patch_id": patch_id, "deprecated": deprecated}, sort_keys=True)
    return {"encoding": PATCH_MARKER_ENCODING, "data": data.encode()}


def patch_marker_id(marker: Mapping[str, Any]) -> str | None:
    """The patch id a RecordMarker decision or MarkerRecorded event records, None for other markers."""
    details = marker.get("details")
    if marker.get("marker_name") != PATCH_MARKER or not details:
        return None
    if details.get("encoding") != PATCH_MARKER_ENCODING:
        return None
    try:
        patch_id = json.loads(details["data"]).get("patch_id")
    except (ValueError, AttributeError):
        return None
    return patch_id if isinstance(patch_id, str) else None


#: Every event type that records a decision.
DECISION_EVENT_TYPES = frozenset(e for recorded in DECISION_EVENTS.values() for e in recorded.events)

#: Decisions that close the run. A failure the run's retry policy retries is recorded as
#: WorkflowExecutionContinuedAsNew (initiator RETRY_POLICY) instead of its usual event.
CLOSE_DECISIONS = frozenset(
    {
        "CompleteWorkflowExecutionDecision",
        "FailWorkflowExecutionDecision",
        "CancelWorkflowExecutionDecision",
        "ContinueAsNewWorkflowExecutionDecision",
    }
)


def activity_scheduled_attrs(
    decision: ScheduleActivityTaskDecision, run_task_list: str, decision_task_completed_event_id: int
) -> ActivityTaskScheduled:
    """The ActivityTaskScheduled attributes that record a ScheduleActivityTaskDecision.

    Defaults are resolved here, once: the task list is the run's when the decision names none,
    and start-to-close is schedule-to-close when only that is given (one of them is required).
    """
    return {
        "activity_id": decision["activity_id"],
        "activity_type": decision["activity_type"],
        "task_list": decision["task_list"] or run_task_list,
        "input": decision["input"],
        "schedule_to_close_timeout_ms": decision["schedule_to_close_timeout_ms"],
        "schedule_to_start_timeout_ms": decision["schedule_to_start_timeout_ms"],
        "start_to_close_timeout_ms": (
            decision["start_to_close_timeout_ms"] or decision["schedule_to_close_timeout_ms"]
        ),
        "heartbeat_timeout_ms": decision["heartbeat_timeout_ms"],
        "retry_policy": decision["retry_policy"],
        "decision_task_completed_event_id": decision_task_completed_event_id,
    }
