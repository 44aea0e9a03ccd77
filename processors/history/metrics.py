"""Prometheus metrics of workflows, as the history processor records their events.

Counted where the events are made (`HistoryProcessor._write`), once per processed command: a batch
redone after an aborted transaction counts again (rare; the counters are for rates and alerts,
the history topic is the record). Restore does not count. `kadence_workflow_open` is per
partition: set from the store when a partition is assigned, then moved by starts and closes; the
sum over partitions (and instances) is the number of open runs. `on_revoked` (a rebalance, or an
aborted transaction whose events are redone) drops the partition's series until its next
assignment counts it again: missing rather than wrong. Names follow Temporal's SDK
metrics (`temporal_workflow_completed`, ...) with the `kadence_` prefix; docs/metrics.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

STARTED = Counter("kadence_workflow_started_total", "Workflow runs started", ["workflow_type"])
#: Close event type -> counter of runs closed that way.
CLOSED = {
    "WorkflowExecutionCompleted": Counter(
        "kadence_workflow_completed_total", "Workflow runs completed", ["workflow_type"]
    ),
    "WorkflowExecutionFailed": Counter(
        "kadence_workflow_failed_total", "Workflow runs failed", ["workflow_type"]
    ),
    "WorkflowExecutionCanceled": Counter(
        "kadence_workflow_canceled_total", "Workflow runs canceled", ["workflow_type"]
    ),
    "WorkflowExecutionTerminated": Counter(
        "kadence_workflow_terminated_total", "Workflow runs terminated", ["workflow_type"]
    ),
    "WorkflowExecutionTimedOut": Counter(
        "kadence_workflow_timed_out_total", "Workflow runs timed out", ["workflow_type"]
    ),
    "WorkflowExecutionContinuedAsNew": Counter(
        "kadence_workflow_continue_as_new_total", "Workflow runs closed by continue-as-new", ["workflow_type"]
    ),
}
OPEN = Gauge("kadence_workflow_open", "Workflow runs open, per history partition", ["partition"])
#: partition -> its OPEN child, for the partitions whose count is known (set_open .. forget_partition)
_open: dict[int, Any] = {}
HISTORY_LENGTH = Histogram(
    "kadence_workflow_history_length_events",
    "Events in a run's history when it closes",
    ["workflow_type"],
    buckets=(10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000),
)
WORKFLOW_TASK_TIMEOUTS = Counter(
    "kadence_workflow_task_timeouts_total", "Decision (workflow) tasks timed out", ["timeout_type"]
)
WORKFLOW_TASK_FAILURES = Counter(
    "kadence_workflow_task_failed_total",
    "Decision (workflow) tasks failed, by the cause the worker gave (WORKFLOW_ERROR, NONDETERMINISM, CACHE_MISS, ...)",
    ["cause"],
)
ACTIVITY_TASK_TIMEOUTS = Counter(
    "kadence_activity_task_timeouts_total", "Activity attempts timed out", ["timeout_type"]
)
ACTIVITY_TASK_FAILURES = Counter(
    "kadence_activity_task_failed_total", "Activity attempts failed (each retry counts)"
)


def _started(event: Any, workflow_type: str, partition: int) -> None:
    STARTED.labels(event["attributes"][1]["workflow_type"]).inc()
    gauge = _open.get(partition)
    if gauge is not None:
        gauge.inc()


def _closer(counter: Counter) -> Callable[[Any, str, int], None]:
    def closed(event: Any, workflow_type: str, partition: int) -> None:
        counter.labels(workflow_type).inc()
        HISTORY_LENGTH.labels(workflow_type).observe(event["event_id"])
        gauge = _open.get(partition)
        if gauge is not None:
            gauge.dec()

    return closed


def _timeout(counter: Counter) -> Callable[[Any, str, int], None]:
    def timed_out(event: Any, workflow_type: str, partition: int) -> None:
        counter.labels(str(event["attributes"][1]["timeout_type"])).inc()

    return timed_out


def _decision_failed(event: Any, workflow_type: str, partition: int) -> None:
    WORKFLOW_TASK_FAILURES.labels(str(event["attributes"][1]["cause"])).inc()


def _activity_failed(event: Any, workflow_type: str, partition: int) -> None:
    ACTIVITY_TASK_FAILURES.inc()


#: Event type -> what it counts; every other event costs one dict lookup.
_HOOKS: dict[str, Callable[[Any, str, int], None]] = {
    "WorkflowExecutionStarted": _started,
    **{name: _closer(counter) for name, counter in CLOSED.items()},
    "DecisionTaskTimedOut": _timeout(WORKFLOW_TASK_TIMEOUTS),
    "DecisionTaskFailed": _decision_failed,
    "ActivityTaskTimedOut": _timeout(ACTIVITY_TASK_TIMEOUTS),
    "ActivityTaskFailed": _activity_failed,
}


def observe_events(events: Sequence[Any], workflow_type: str, partition: int) -> None:
    """Count the events one command made (`workflow_type`: the execution's current run's type)."""
    hooks = _HOOKS
    for event in events:
        hook = hooks.get(event["attributes"][0])
        if hook is not None:
            hook(event, workflow_type, partition)


def set_open(partition: int, count: int) -> None:
    """A partition was assigned: its open runs, counted from the store."""
    gauge = _open[partition] = OPEN.labels(str(partition))
    gauge.set(count)


def forget_partition(partition: int) -> None:
    """A partition was revoked: its new owner reports its open runs."""
    if _open.pop(partition, None) is not None:
        with contextlib.suppress(KeyError):
            OPEN.remove(str(partition))


__all__ = ["observe_events", "set_open", "forget_partition"]
