"""The protocol's lowest layer: execution state, the one pure reducer, and every fact of the wire
format that more than one part needs (ids, the Command envelope, decision -> event, activity tasks).

Imported by the processors (history processor state, derived processors' indexes), by the SDK
(replay, eager activities, the client's `describe`) and by the audit replayer: one definition of
what a history means. It imports nothing of Kadence above it and knows no Kafka; it sits apart
from `processors/` so the SDK may import it too (docs/deviations.md 1).
"""

from .commands import command_record, fire_timer_command
from .ids import TaskToken, derive_run_id, parse_task_token, task_token
from .reducer import UnknownEventError, apply, fold, fold_transition
from .state import (
    CLOSE_EVENTS,
    CLOSED_STATUSES,
    DECISION_TRIGGERING_EVENTS,
    ActivityInfo,
    ChildInfo,
    DecisionInfo,
    ExecutionState,
    RunState,
    TimerInfo,
)
from .summary import describe_state

__all__ = [
    "apply",
    "fold",
    "fold_transition",
    "UnknownEventError",
    "ExecutionState",
    "RunState",
    "ActivityInfo",
    "ChildInfo",
    "DecisionInfo",
    "TimerInfo",
    "CLOSE_EVENTS",
    "CLOSED_STATUSES",
    "DECISION_TRIGGERING_EVENTS",
    "derive_run_id",
    "task_token",
    "parse_task_token",
    "TaskToken",
    "command_record",
    "fire_timer_command",
    "describe_state",
]
