"""Prometheus metrics of a worker: decision (workflow) and activity task latencies and failures.

Names follow Temporal's SDK metrics (`temporal_workflow_task_schedule_to_start_latency`, ...) with
the `kadence_` prefix and Prometheus' unit suffixes; docs/metrics.md lists them. Schedule-to-start
is measured from the task record's timestamp (when the history processor dispatched it) to the
moment this worker's consumer hands it over; an eager activity has none (it never was a task
record). Execution latency is the workflow code's activation, or the activity function's run.
`Worker(..., metrics_port=P)` (and `kadence worker --metrics-port P`) serves them, with the
process's other metrics, on P.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from kadence.streams.metrics import LATENCY_BUCKETS

WORKFLOW_TASK_SCHEDULE_TO_START = Histogram(
    "kadence_workflow_task_schedule_to_start_latency_seconds",
    "From a decision task's dispatch to its arrival at a worker",
    ["task_list", "workflow_type"],
    buckets=LATENCY_BUCKETS,
)
WORKFLOW_TASK_EXECUTION = Histogram(
    "kadence_workflow_task_execution_latency_seconds",
    "Time a worker spends on one decision task (replay and the workflow code's activation)",
    ["task_list", "workflow_type"],
    buckets=LATENCY_BUCKETS,
)
WORKFLOW_TASK_FAILED = Counter(
    "kadence_workflow_task_execution_failed_total",
    "Decision tasks this worker answered as failed, by cause",
    ["task_list", "workflow_type", "failure_reason"],
)
ACTIVITY_SCHEDULE_TO_START = Histogram(
    "kadence_activity_schedule_to_start_latency_seconds",
    "From an activity task's dispatch to its arrival at a worker (eager attempts excluded)",
    ["task_list", "activity_type"],
    buckets=LATENCY_BUCKETS,
)
ACTIVITY_EXECUTION = Histogram(
    "kadence_activity_execution_latency_seconds",
    "Run time of one activity attempt",
    ["task_list", "activity_type"],
    buckets=LATENCY_BUCKETS,
)
ACTIVITY_FAILED = Counter(
    "kadence_activity_execution_failed_total",
    "Activity attempts that raised (each retry counts)",
    ["task_list", "activity_type"],
)
CONSUMER_REJOINS = Counter(
    "kadence_worker_consumer_rejoins_total",
    "Task consumers replaced because they stayed out of their group",
    ["task_list"],
)
ANSWERS_REFUSED = Counter(
    "kadence_worker_answers_refused_total",
    "Answers the broker refused to take (no write permission, a record it never takes); each is "
    "sent again with backoff",
    ["task_list", "topic", "error"],
)

__all__ = [
    "ACTIVITY_EXECUTION",
    "ANSWERS_REFUSED",
    "ACTIVITY_FAILED",
    "ACTIVITY_SCHEDULE_TO_START",
    "CONSUMER_REJOINS",
    "WORKFLOW_TASK_EXECUTION",
    "WORKFLOW_TASK_FAILED",
    "WORKFLOW_TASK_SCHEDULE_TO_START",
]
