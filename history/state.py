"""Execution state: everything the engine knows of a workflow id, derived from its history alone.

Values, not objects with behaviour: the reducer never mutates a state it was given (it copies
what an event changes), so `fold(history) == live state` is a test anyone can write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CLOSED_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELED", "TERMINATED", "CONTINUED_AS_NEW", "TIMED_OUT"})

#: The events that close a run, and the status each gives it.
CLOSE_EVENTS = {
    "WorkflowExecutionCompleted": "COMPLETED", "WorkflowExecutionFailed": "FAILED",
    "WorkflowExecutionCanceled": "CANCELED", "WorkflowExecutionTerminated": "TERMINATED",
    "WorkflowExecutionTimedOut": "TIMED_OUT", "WorkflowExecutionContinuedAsNew": "CONTINUED_AS_NEW",
}

#: Events that the workflow code must see: one arriving makes a new decision task necessary.
DECISION_TRIGGERING_EVENTS = frozenset({
    "ActivityTaskCompleted", "ActivityTaskFailed", "ActivityTaskTimedOut", "ActivityTaskCanceled",
    "TimerFired", "WorkflowExecutionSignaled", "WorkflowExecutionCancelRequested",
    "StartChildWorkflowExecutionFailed", "ChildWorkflowExecutionStarted", "ChildWorkflowExecutionCompleted",
    "ChildWorkflowExecutionFailed", "ChildWorkflowExecutionCanceled", "ChildWorkflowExecutionTimedOut",
    "ChildWorkflowExecutionTerminated", "SignalExternalWorkflowExecutionFailed", "ExternalWorkflowExecutionSignaled",
    "RequestCancelExternalWorkflowExecutionFailed", "ExternalWorkflowExecutionCancelRequested",
    "RequestCancelActivityTaskFailed", "CancelTimerFailed",
})


@dataclass(slots=True, frozen=True)
class DecisionInfo:
    scheduled_event_id: int
    attempt: int
    task_list: str
    timeout_ms: int
    scheduled_time: int
    started_event_id: int = 0


@dataclass(slots=True, frozen=True)
class ActivityInfo:
    scheduled_event_id: int
    activity_id: str
    activity_type: str
    task_list: str
    #: The ActivityTaskScheduled attributes (input, timeouts, retry policy): needed to re-dispatch.
    scheduled: dict[str, Any]
    scheduled_time: int
    attempt: int = 1
    cancel_requested: bool = False
    #: When the current attempt is (or was) dispatched: scheduled_time, or after a retry's backoff.
    attempt_time: int = 0

    @property
    def dispatch_time(self) -> int:
        return self.attempt_time or self.scheduled_time


@dataclass(slots=True, frozen=True)
class TimerInfo:
    timer_id: str
    started_event_id: int
    fire_at_ms: int


@dataclass(slots=True, frozen=True)
class ChildInfo:
    initiated_event_id: int
    domain: str
    workflow_id: str
    workflow_type: str
    parent_close_policy: str
    #: The child's first run id, known before it starts (derived from the start command id).
    first_run_id: str
    run_id: str = ""
    started_event_id: int = 0


@dataclass(slots=True, frozen=True)
class RunState:
    run_id: str
    first_run_id: str
    workflow_type: str
    task_list: str
    task_timeout_ms: int
    run_timeout_ms: int
    execution_timeout_ms: int
    execution_deadline_ms: int
    start_time: int
    request_id: str
    input: dict[str, Any] | None
    parent: dict[str, Any] | None
    retry_policy: dict[str, Any] | None
    attempt: int
    memo: dict[str, Any]
    status: str = "RUNNING"
    close_event_id: int = 0
    close_time: int = 0
    #: Attributes of the close event (result, failure, new run id...).
    close: dict[str, Any] | None = None
    close_type: str = ""
    next_event_id: int = 1
    #: Approximate history size in bytes (payload bytes + a fixed cost per event).
    history_size: int = 0
    decision: DecisionInfo | None = None
    decision_attempt: int = 1
    #: Started event id of the last completed decision task (what a cached worker has seen).
    last_completed_started_event_id: int = 0
    #: Events the workflow code has not seen yet (arrived after the last decision task started).
    unhandled_events: int = 0
    activities: dict[int, ActivityInfo] = field(default_factory=dict)
    activity_ids: dict[str, int] = field(default_factory=dict)
    timers: dict[str, TimerInfo] = field(default_factory=dict)
    children: dict[int, ChildInfo] = field(default_factory=dict)
    signals_out: dict[int, dict[str, Any]] = field(default_factory=dict)
    cancels_out: dict[int, dict[str, Any]] = field(default_factory=dict)
    signal_request_ids: frozenset[str] = frozenset()
    cancel_requested: bool = False

    @property
    def is_open(self) -> bool:
        return self.status == "RUNNING"


@dataclass(slots=True, frozen=True)
class ExecutionState:
    """A workflow id in a domain: its latest run and the chain of run ids before it."""

    domain: str
    workflow_id: str
    current: RunState | None = None
    #: (run_id, status) of earlier runs, oldest first (bounded; see reducer.MAX_CHAIN).
    previous_runs: tuple[tuple[str, str], ...] = ()

    def run(self, run_id: str) -> RunState | None:
        """The current run if `run_id` names it (or is empty)."""
        cur = self.current
        if cur is not None and (not run_id or run_id == cur.run_id):
            return cur
        return None

    def knows_run(self, run_id: str) -> bool:
        return (self.current is not None and self.current.run_id == run_id) or any(r == run_id for r, _ in self.previous_runs)
